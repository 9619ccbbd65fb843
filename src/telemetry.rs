//! Logging: a tracing subscriber (pretty or JSON) writing through a non-blocking writer, and
//! request spans that never carry secrets.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::{Error, HttpMessage};
use tracing::Span;
use tracing_actix_web::{RequestId, RootSpanBuilder};
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};
use crate::log_format::{JsonFields, JsonLines};
use crate::log_writer::{self, Guard};

/// Installs the global subscriber: level from `RUST_LOG` (default `info`), one line per
/// answered request (see [`GatehouseRootSpan`]), written to stdout by the log writer's thread
/// (src/log_writer.rs). Keep
/// the guard until exit: dropping it writes out what is still queued. A second call (tests
/// building many apps) leaves the first subscriber in place.
pub fn init(settings: &LogSettings) -> std::io::Result<Guard> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = log_writer::spawn(std::io::stdout(), settings.buffer_lines)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
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
/// the callback), request id and client address, the context of every line logged while the
/// request is served; and the request line, logged in that span when the answer is ready:
/// `request status=200 micros=412`.
///
/// The line is an event of our own rather than the span's close (`FmtSpan::CLOSE`), which
/// reads the clock twice on every entry into the span (a request enters it at each poll) and
/// prints two floating-point durations: together about a tenth of the line's cost.
pub struct GatehouseRootSpan;

/// When the request came in, for the request line's duration.
struct Received(Instant);

impl RootSpanBuilder for GatehouseRootSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        request.extensions_mut().insert(Received(Instant::now()));
        let request_id = request
            .extensions()
            .get::<RequestId>()
            .map(|id| id.to_string())
            .unwrap_or_default();
        // The client's address: X-Forwarded-For only counts from a trusted proxy.
        let client_ip = request
            .app_data::<actix_web::web::Data<crate::proxy::TrustedProxies>>()
            .and_then(|proxies| proxies.client_ip(request.request()))
            .map(|ip| ip.to_string())
            .unwrap_or_default();
        tracing::info_span!(
            "request",
            method = %request.method(),
            path = %request.path(),
            request_id = %request_id,
            client_ip = %client_ip,
        )
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        let (status, received) = match outcome {
            Ok(res) => (
                res.status().as_u16(),
                res.request().extensions().get::<Received>().map(|r| r.0),
            ),
            Err(e) => (e.as_response_error().status_code().as_u16(), None),
        };
        let micros = received.map(|r| r.elapsed().as_micros() as u64);
        tracing::info!(parent: &span, status, micros, "request");
    }
}
