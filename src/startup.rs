//! Wiring: `Application::build(settings)` binds the listener (port 0 works) and assembles the
//! app; `run_until_stopped` serves until SIGTERM/SIGINT, letting in-flight requests finish.

use std::net::TcpListener;
use std::sync::Arc;

use actix_session::config::{BrowserSession, CookieContentSecurity};
use actix_session::SessionMiddleware;
use actix_web::cookie::{Key, SameSite};
use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use secrecy::ExposeSecret;
use tracing_actix_web::TracingLogger;

use crate::browser::BrowserBinding;
use crate::config::{
    env_name, AccessSettings, ForwardSettings, Settings, SignoutSettings, TokenSettings,
};
use crate::cookie_keys::{rotate_cookie_keys, CookieKeys};
use crate::error::AppError;
use crate::metrics::Metrics;
use crate::middleware::contract_errors;
use crate::oauth::ProviderSlot;
use crate::proxy::TrustedProxies;
use crate::return_to::RedirectPolicy;
use crate::routes;
use crate::store::locks::Locks;
use crate::store::pending::PendingSignIns;
use crate::store::sessions::RedisSessionStore;
use crate::store::RedisStore;
use crate::telemetry::GatehouseRootSpan;

/// How long in-flight requests get to finish after SIGTERM.
const SHUTDOWN_GRACE_SECS: u64 = 30;

/// What every handler may use. Built once, shared by all workers.
pub struct AppState {
    pub store: RedisStore,
    pub pending: PendingSignIns,
    pub provider: Arc<ProviderSlot>,
    pub binding: BrowserBinding,
    pub redirects: RedirectPolicy,
    pub proxies: TrustedProxies,
    pub forward: ForwardSettings,
    pub tokens: TokenSettings,
    pub access: AccessSettings,
    pub signout: SignoutSettings,
    pub sessions: RedisSessionStore,
    pub locks: Locks,
    pub cookie_keys: CookieKeys,
    pub metrics: web::Data<Metrics>,
    /// Without a trailing slash.
    pub public_url: String,
}

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

        let store = RedisStore::connect(&settings.redis).map_err(|e| {
            StartupError::Setting(format!("{} is not usable: {e}", env_name("redis.url")))
        })?;
        let provider = Arc::new(ProviderSlot::default());
        provider
            .start(settings.provider.clone(), settings.server.clone())
            .await
            .map_err(|e| StartupError::Setting(format!("{}: {e}", env_name("provider.issuer"))))?;
        let key =
            Key::try_from(settings.session.secret.expose_secret().as_slice()).map_err(|_| {
                StartupError::Setting(format!(
                    "{} must be base64 of at least 64 bytes",
                    env_name("session.secret")
                ))
            })?;

        let metrics = web::Data::new(
            Metrics::new().map_err(|e| StartupError::Setting(format!("metrics: {e}")))?,
        );
        let state = web::Data::new(AppState {
            pending: PendingSignIns::new(store.clone(), settings.session.signin_ttl),
            binding: BrowserBinding::new(key.clone(), &settings.session),
            redirects: RedirectPolicy::new(&settings.server),
            proxies: TrustedProxies::new(settings.proxy.trusted.clone()),
            forward: settings.forward.clone(),
            tokens: settings.tokens.clone(),
            access: settings.access.clone(),
            signout: settings.signout.clone(),
            sessions: RedisSessionStore::new(store.clone(), settings.session.ttl),
            locks: Locks::new(store.clone()),
            cookie_keys: CookieKeys::new(key.clone(), &settings.session),
            metrics: metrics.clone(),
            public_url: settings
                .server
                .public_url
                .as_str()
                .trim_end_matches('/')
                .to_owned(),
            provider,
            store: store.clone(),
        });
        let session_store = RedisSessionStore::new(store, settings.session.ttl);
        let session = settings.session.clone();
        let metrics_on_main = settings.metrics.bind.is_none();
        let metrics_for_app = metrics.clone();

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
                .wrap(from_fn(contract_errors))
                .wrap(from_fn(crate::metrics::record))
                .wrap(TracingLogger::<GatehouseRootSpan>::new())
                .app_data(state.clone())
                .app_data(metrics_for_app.clone())
                .app_data(web::QueryConfig::default())
                // Health routes sit outside the session middleware: they touch no session.
                .configure(routes::sessionless);
            let app = if metrics_on_main {
                app.route("/metrics", web::get().to(crate::metrics::serve))
            } else {
                app
            };
            app.service(
                web::scope("")
                    .wrap(session_middleware)
                    // Runs before the session middleware: old-secret cookies re-signed.
                    .wrap(from_fn(rotate_cookie_keys))
                    .configure(routes::with_session),
            )
            .default_service(web::to(not_found))
        })
        .shutdown_timeout(SHUTDOWN_GRACE_SECS)
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
        match self.metrics_server {
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
        }
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

impl AppState {
    /// The provider, once ready (503 `provider_unavailable` until discovery succeeds).
    pub fn provider(&self) -> Result<Arc<crate::oauth::Provider>, AppError> {
        self.provider.get().ok_or(AppError::ProviderUnavailable)
    }
}

async fn not_found() -> Result<actix_web::HttpResponse, AppError> {
    Err(AppError::NotFound)
}
