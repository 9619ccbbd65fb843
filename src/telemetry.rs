//! Logging: a tracing subscriber (pretty or JSON) writing through a non-blocking writer, and
//! request spans that never carry secrets.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::{Error, HttpMessage};
use tracing::Span;
use tracing_actix_web::{RequestId, RootSpanBuilder};
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};
use crate::log_format::{JsonFields, JsonLines};
use crate::log_writer::{self, Guard};

/// Installs the global subscriber: level from `RUST_LOG` (default `info`), one line per
/// finished request, written to stdout by the log writer's thread (src/log_writer.rs). Keep
/// the guard until exit: dropping it writes out what is still queued. A second call (tests
/// building many apps) leaves the first subscriber in place.
pub fn init(settings: &LogSettings) -> std::io::Result<Guard> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = log_writer::spawn(std::io::stdout(), settings.buffer_lines)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(FmtSpan::CLOSE)
        // Colours only on a terminal: piped into a file or a collector they are noise.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_writer(writer);
    let _ = match settings.format {
        LogFormat::Json => builder
            .fmt_fields(JsonFields)
            .event_format(JsonLines)
            .try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
    Ok(guard)
}

/// The request span: method, path (never the query string, which carries codes and states on
/// the callback), request id and status.
pub struct GatehouseRootSpan;

impl RootSpanBuilder for GatehouseRootSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let request_id = request
            .extensions()
            .get::<RequestId>()
            .map(|id| id.to_string())
            .unwrap_or_default();
        // The client's address: X-Forwarded-For only counts from a trusted proxy.
        let client_ip = request
            .app_data::<actix_web::web::Data<crate::startup::AppState>>()
            .and_then(|state| state.proxies.client_ip(request.request()))
            .map(|ip| ip.to_string())
            .unwrap_or_default();
        tracing::info_span!(
            "request",
            method = %request.method(),
            path = %request.path(),
            request_id = %request_id,
            client_ip = %client_ip,
            status = tracing::field::Empty,
        )
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        let status = match outcome {
            Ok(res) => res.status().as_u16(),
            Err(e) => e.as_response_error().status_code().as_u16(),
        };
        span.record("status", status);
    }
}
