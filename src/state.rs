//! What the HTTP handlers share: built once by `startup`, handed to every worker. Domain
//! modules never take it whole: each is given the parts it uses.

use std::sync::Arc;

use actix_web::web;

use crate::browser::BrowserBinding;
use crate::config::{ForwardSettings, SignoutSettings, TokenSettings};
use crate::cookie_keys::CookieKeys;
use crate::metrics::Metrics;
use crate::providers::Providers;
use crate::proxy::TrustedProxies;
use crate::refresh::Refresher;
use crate::return_to::RedirectPolicy;
use crate::session_cookie::SessionCookie;
use crate::store::pending::PendingSignIns;
use crate::store::sessions::RedisSessionStore;
use crate::store::RedisStore;

/// What every handler may use. Built once, shared by all workers.
pub struct AppState {
    pub store: RedisStore,
    pub pending: PendingSignIns,
    /// Every configured provider by name, the default one first.
    pub providers: Arc<Providers>,
    pub binding: BrowserBinding,
    pub redirects: RedirectPolicy,
    pub proxies: TrustedProxies,
    pub forward: ForwardSettings,
    pub tokens: TokenSettings,
    pub signout: SignoutSettings,
    pub sessions: RedisSessionStore,
    pub session_cookie: SessionCookie,
    pub refresher: Arc<Refresher>,
    pub cookie_keys: Arc<CookieKeys>,
    pub metrics: web::Data<Metrics>,
    /// Without a trailing slash.
    pub public_url: String,
    /// Signs `X-Auth-Request-Assertion`; serves `/.well-known/jwks.json` (always, so apps can
    /// be set up before FORWARD__ASSERTION is turned on).
    pub assertions: Arc<crate::assertion::Assertions>,
    /// `Some` when BEARER__ENABLED.
    pub bearer: Option<Arc<crate::bearer::Bearer>>,
    /// The durable directory (users, blocks) and the audit queue.
    pub directory: crate::directory::Directory,
    pub audit: crate::directory::Audit,
}
