//! What the HTTP handlers share: built once by `startup`, handed to every worker. Domain
//! modules never take it whole: each is given the parts it uses.

use std::sync::Arc;

use actix_web::web;

use crate::browser::BrowserBinding;
use crate::claims::ClaimNeeds;
use crate::config::{AccessSettings, ForwardSettings, SignoutSettings, TokenSettings};
use crate::cookie_keys::CookieKeys;
use crate::error::AppError;
use crate::metrics::Metrics;
use crate::oauth::ProviderSlot;
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
    pub provider: Arc<ProviderSlot>,
    pub binding: BrowserBinding,
    pub redirects: RedirectPolicy,
    pub proxies: TrustedProxies,
    pub forward: ForwardSettings,
    pub tokens: TokenSettings,
    pub access: AccessSettings,
    pub signout: SignoutSettings,
    pub sessions: RedisSessionStore,
    pub session_cookie: SessionCookie,
    pub refresher: Arc<Refresher>,
    /// The claims kept in sessions beyond the standard ones (groups, claim headers).
    pub needs: ClaimNeeds,
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

impl AppState {
    /// The provider, once ready (503 `provider_unavailable` until discovery succeeds).
    pub fn provider(&self) -> Result<Arc<crate::oauth::Provider>, AppError> {
        self.provider.get().ok_or(AppError::ProviderUnavailable)
    }
}
