//! Wiring: `Application::build(settings)` binds the listener (port 0 works) and assembles the
//! app; `run_until_stopped` serves until SIGTERM/SIGINT, letting in-flight requests finish.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_session::config::{BrowserSession, CookieContentSecurity};
use actix_session::SessionMiddleware;
use actix_web::body::{BodyStream, BoxBody, MessageBody};
use actix_web::cookie::{Key, SameSite};
use actix_web::dev::{Payload, Server, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, App, HttpServer};
use secrecy::ExposeSecret;
use tracing_actix_web::TracingLogger;

use crate::browser::BrowserBinding;
use crate::config::{env_name, Settings};
use crate::cookie_keys::{rotate_cookie_keys, CookieKeys};
use crate::error::AppError;
use crate::metrics::Metrics;
use crate::middleware::contract_errors;
use crate::providers::Providers;
use crate::proxy::TrustedProxies;
use crate::refresh::Refresher;
use crate::return_to::RedirectPolicy;
use crate::routes;
use crate::session_cookie::SessionCookie;
use crate::state::AppState;
use crate::store::index::SessionIndex;
use crate::store::locks::Locks;
use crate::store::pending::PendingSignIns;
use crate::store::sessions::RedisSessionStore;
use crate::store::RedisStore;
use crate::telemetry::GatehouseRootSpan;

/// How long in-flight requests get to finish after SIGTERM.
const SHUTDOWN_GRACE_SECS: u64 = 30;
/// After them, how long queued audit events get to reach the database.
const AUDIT_FLUSH_BOUND: Duration = Duration::from_secs(5);

/// Request size limits, on every endpoint (answered 400 `invalid_request`).
///
/// The request target (path and query): the longest legitimate one is a callback, whose query
/// the callback itself caps at 8 KiB, or a `/signin` with a 2 KiB `return_to` (at most 6 KiB
/// percent-encoded). Header blocks over actix-http's own buffer (128 KiB) never reach us.
pub const MAX_URI_LEN: usize = 16 * 1024;
/// The body: no endpoint reads one (the sign-out form posts an empty body); what a proxy or a
/// browser may attach anyway is small.
pub const MAX_BODY_LEN: usize = 4 * 1024;
/// A chunked body (no length announced) is read up to the limit, and must arrive within this.
const BODY_READ_BOUND: Duration = Duration::from_secs(5);
/// The request head must arrive within this (actix-web's default, stated here).
const REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// After an early answer to a body we did not read, the connection is closed gracefully: the
/// rest of the body is read and dropped for up to this long, so the client sees the answer
/// rather than a reset (actix-web's default, stated here).
const CLIENT_DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("{setting} cannot be bound: {source}")]
    Bind {
        setting: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Setting(String),
}

pub struct Application {
    port: u16,
    server: Server,
    /// /metrics on its own listener (METRICS__BIND), when configured.
    metrics_server: Option<Server>,
    metrics_port: Option<u16>,
    /// Flushed once the server has stopped: queued audit events are written before exit.
    audit: crate::directory::Audit,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Application, StartupError> {
        let listener =
            TcpListener::bind(settings.server.bind).map_err(|source| StartupError::Bind {
                setting: env_name("server.bind"),
                source,
            })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartupError::Bind {
                setting: env_name("server.bind"),
                source,
            })?
            .port();

        let metrics = web::Data::new(
            Metrics::new().map_err(|e| StartupError::Setting(format!("metrics: {e}")))?,
        );
        let redis_metrics = metrics.clone();
        let store = RedisStore::connect(&settings.redis)
            .map_err(|e| StartupError::Setting(e.to_string()))?
            .observed(Arc::new(move |took, ok| redis_metrics.redis_call(took, ok)));
        // Migrates when DATABASE__MIGRATE is on (an unreachable database stops start-up);
        // otherwise connects lazily: serving needs only Redis.
        let (directory, audit) = crate::directory::start(&settings.database, metrics.audit())
            .await
            .map_err(|e| StartupError::Setting(e.to_string()))?;
        let providers = Arc::new(
            Providers::start(&settings)
                .await
                .map_err(StartupError::Setting)?,
        );
        metrics.know_providers(providers.iter().map(|p| p.name.as_str()));
        let key =
            Key::try_from(settings.session.secret.expose_secret().as_slice()).map_err(|_| {
                StartupError::Setting(format!(
                    "{} must be base64 of at least 64 bytes",
                    env_name("session.secret")
                ))
            })?;

        let index = SessionIndex::new(
            store.clone(),
            settings.session.ttl,
            settings.session.max_lifetime,
        );
        let session_store = RedisSessionStore::new(store.clone(), settings.session.ttl, index);
        let refresher = Arc::new(Refresher::new(
            session_store.clone(),
            Locks::new(store.clone()),
            providers.clone(),
            settings.tokens.clone(),
            metrics.clone().into_inner(),
            audit.clone(),
        ));
        let assertions = crate::assertion::Assertions::new(
            &settings.session,
            &settings.server.public_url,
            settings.forward.assertion_ttl,
        )
        .map_err(|e| StartupError::Setting(format!("{}: {e}", env_name("session.secret"))))?;
        let bearer = if settings.bearer.enabled {
            let bearer = crate::bearer::Bearer::start(
                &settings.bearer,
                settings.provider.issuer.as_deref(),
                settings.provider.timeout,
                settings.access.groups_claim.clone(),
                settings
                    .forward
                    .claim_headers
                    .iter()
                    .map(|h| h.claim.split('.').map(str::to_owned).collect())
                    .collect(),
            )
            .map_err(|e| StartupError::Setting(format!("{}: {e}", env_name("bearer.enabled"))))?;
            Some(Arc::new(bearer))
        } else {
            None
        };

        let state = web::Data::new(AppState {
            pending: PendingSignIns::new(
                store.clone(),
                settings.session.signin_ttl,
                settings.signin.clone(),
            ),
            binding: BrowserBinding::new(&settings.session),
            redirects: RedirectPolicy::new(&settings.server),
            proxies: TrustedProxies::new(settings.proxy.trusted.clone()),
            forward: settings.forward.clone(),
            tokens: settings.tokens.clone(),
            signout: settings.signout.clone(),
            sessions: session_store.clone(),
            session_cookie: SessionCookie::new(&key, &settings.session.cookie_name),
            refresher,
            cookie_keys: Arc::new(CookieKeys::new(key.clone(), &settings.session)),
            metrics: metrics.clone(),
            public_url: settings
                .server
                .public_url
                .as_str()
                .trim_end_matches('/')
                .to_owned(),
            providers,
            store: store.clone(),
            assertions: Arc::new(assertions),
            bearer,
            directory,
            audit: audit.clone(),
        });
        let session = settings.session.clone();
        let metrics_on_main = settings.metrics.public;
        let metrics_for_app = metrics.clone();
        let gatehouse_document = web::Data::new(routes::well_known::GatehouseDocument::new(
            &settings.cli,
            &settings.provider,
        ));

        let cookie_keys = web::Data::from(state.cookie_keys.clone());
        let proxies = web::Data::new(state.proxies.clone());
        let logout_at = state.providers.clone();
        let server = HttpServer::new(move || {
            let session_middleware = SessionMiddleware::builder(session_store.clone(), key.clone())
                .cookie_name(session.cookie_name.clone())
                .cookie_secure(session.cookie_secure)
                .cookie_http_only(true)
                .cookie_same_site(SameSite::Lax)
                .cookie_path("/".to_owned())
                .cookie_domain(session.cookie_domain.clone())
                .cookie_content_security(CookieContentSecurity::Signed)
                // The cookie lives with the browser; Redis enforces the idle lifetime.
                .session_lifecycle(BrowserSession::default().state_ttl(
                    actix_web::cookie::time::Duration::seconds(session.ttl.as_secs() as i64),
                ))
                .build();
            let app = App::new()
                // Inside `contract_errors`: a refused request is answered in the format.
                .wrap(from_fn(limit_request_size))
                .wrap(from_fn(contract_errors))
                .wrap(crate::security_headers::SecurityHeaders::new(
                    &settings.ui,
                    settings.signout.provider_logout.then(|| logout_at.clone()),
                ))
                .wrap(from_fn(crate::metrics::record))
                .wrap(TracingLogger::<GatehouseRootSpan>::new())
                .app_data(state.clone())
                // The parts middleware reads (they take no more than they use).
                .app_data(cookie_keys.clone())
                .app_data(proxies.clone())
                .app_data(metrics_for_app.clone())
                .app_data(gatehouse_document.clone())
                .app_data(web::QueryConfig::default())
                // For any body extractor a handler may use one day; `limit_request_size`
                // already refuses larger bodies on every route.
                .app_data(web::PayloadConfig::new(MAX_BODY_LEN))
                .app_data(web::FormConfig::default().limit(MAX_BODY_LEN))
                .app_data(web::JsonConfig::default().limit(MAX_BODY_LEN))
                // Health routes sit outside the session middleware: they touch no session.
                .configure(routes::sessionless);
            let app = if metrics_on_main {
                app.route("/metrics", web::get().to(crate::metrics::serve))
            } else {
                app
            };
            app.service(
                // Outside actix-session: `/auth` reads the session record itself.
                web::resource("/auth")
                    .wrap(from_fn(rotate_cookie_keys))
                    .route(web::get().to(routes::forward_auth::forward_auth))
                    .default_service(web::to(|| async {
                        Err::<actix_web::HttpResponse, AppError>(AppError::MethodNotAllowed("GET"))
                    })),
            )
            .service(
                web::scope("")
                    // Inside the session middleware: sees the loaded session.
                    .wrap(from_fn(crate::middleware::upgrade_stored_format))
                    .wrap(session_middleware)
                    // Runs before the session middleware: old-secret cookies re-signed.
                    .wrap(from_fn(rotate_cookie_keys))
                    .configure(routes::with_session),
            )
            .default_service(web::to(not_found))
        })
        .shutdown_timeout(SHUTDOWN_GRACE_SECS)
        .client_request_timeout(REQUEST_HEAD_TIMEOUT)
        .client_disconnect_timeout(CLIENT_DISCONNECT_TIMEOUT)
        // Signals are handled by `shutdown_on_signals`, installed before we announce that we
        // listen; actix's own handlers only exist once the server is first polled.
        .disable_signals()
        .listen(listener)
        .map_err(|source| StartupError::Bind {
            setting: env_name("server.bind"),
            source,
        })?
        .run();

        let (metrics_server, metrics_port) = match settings.metrics.bind {
            None => (None, None),
            Some(addr) => {
                let bind_error = |source| StartupError::Bind {
                    setting: env_name("metrics.bind"),
                    source,
                };
                let listener = TcpListener::bind(addr).map_err(bind_error)?;
                let port = listener.local_addr().map_err(bind_error)?.port();
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(metrics.clone())
                        .route("/metrics", web::get().to(crate::metrics::serve))
                })
                .workers(1)
                .disable_signals()
                .listen(listener)
                .map_err(bind_error)?
                .run();
                (Some(server), Some(port))
            }
        };

        Ok(Application {
            port,
            server,
            metrics_server,
            metrics_port,
            audit,
        })
    }

    /// The port of the separate metrics listener, when METRICS__BIND is set.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_port
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = match self.metrics_server {
            None => self.server.await,
            Some(metrics) => {
                // The main server decides: when it stops, the metrics listener stops too.
                let metrics_handle = metrics.handle();
                let metrics_task = tokio::spawn(metrics);
                let result = self.server.await;
                metrics_handle.stop(false).await;
                let _ = metrics_task.await;
                result
            }
        };
        if let Err(e) = self.audit.flush(AUDIT_FLUSH_BOUND).await {
            tracing::warn!(error = %e, "audit events still queued at exit are lost");
        }
        result
    }

    /// Installs SIGTERM and SIGINT handlers now; on either, stops accepting and lets in-flight
    /// requests finish (up to the grace period).
    pub fn shutdown_on_signals(&self) -> std::io::Result<()> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let handle = self.server.handle();
        actix_web::rt::spawn(async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: finishing in-flight requests"),
                _ = int.recv() => tracing::info!("SIGINT: finishing in-flight requests"),
            }
            handle.stop(true).await;
        });
        Ok(())
    }
}

async fn not_found() -> Result<actix_web::HttpResponse, AppError> {
    Err(AppError::NotFound)
}

/// Refuses a request target over [`MAX_URI_LEN`] and a body over [`MAX_BODY_LEN`], whatever
/// the route. A declared length is judged before anything is read; a chunked body is read up
/// to the limit (and handed on when it fits). A request without a body costs a header lookup.
async fn limit_request_size(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let target_len = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if target_len > MAX_URI_LEN {
        return Ok(req.error_response(AppError::InvalidRequest(format!(
            "the request URI is too long (at most {} KiB)",
            MAX_URI_LEN / 1024
        ))));
    }
    let too_large = || {
        AppError::InvalidRequest(format!(
            "the request body is too large (at most {} KiB)",
            MAX_BODY_LEN / 1024
        ))
    };
    if let Some(length) = req.headers().get(header::CONTENT_LENGTH) {
        // actix-http has already refused a length that is not a number.
        let length = length
            .to_str()
            .ok()
            .and_then(|l| l.parse::<u64>().ok())
            .unwrap_or(u64::MAX);
        if length > MAX_BODY_LEN as u64 {
            return Ok(req.error_response(too_large()));
        }
    } else if req.head().chunked() {
        let stream = BodyStream::new(actix_web::HttpMessage::take_payload(&mut req));
        let read = actix_web::body::to_bytes_limited(stream, MAX_BODY_LEN);
        match tokio::time::timeout(BODY_READ_BOUND, read).await {
            Ok(Ok(Ok(body))) => req.set_payload(Payload::from(body)),
            Ok(Err(_)) => return Ok(req.error_response(too_large())),
            Ok(Ok(Err(_))) => {
                return Ok(req.error_response(AppError::InvalidRequest(
                    "the request body is malformed".into(),
                )))
            }
            Err(_) => {
                return Ok(req.error_response(AppError::InvalidRequest(
                    "the request body arrived too slowly".into(),
                )))
            }
        }
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}
