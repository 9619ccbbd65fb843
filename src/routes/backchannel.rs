//! POST /backchannel-logout: the provider says a user signed out there (OpenID Connect
//! Back-Channel Logout 1.0); the matching sessions end at once, on every instance.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::directory::EventKind;
use crate::error::AppError;
use crate::oauth::logout_token::{verify_for, LogoutTarget};
use crate::state::AppState;
use crate::store::logout_jti::LogoutJtis;

pub async fn backchannel_logout(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let token = logout_token(&body)?;
    // Which provider speaks: the one whose issuer the token names (then checked with its keys).
    let (entry, provider) = issuer_of(&token)
        .and_then(|iss| state.providers.by_issuer(&iss))
        .ok_or_else(|| {
            tracing::warn!("back-channel logout token from no configured provider");
            AppError::InvalidRequest("the logout token is not valid".into())
        })?;
    let jtis = LogoutJtis::new(state.store.clone());
    let target = verify_for(&provider, &token, &jtis).await.map_err(|e| {
        if e.is_transient() {
            tracing::warn!(reason = %e, "back-channel logout could not be checked now");
            AppError::ProviderUnavailable
        } else {
            // The reason names the failed check, never the token.
            tracing::warn!(reason = %e, "back-channel logout token refused");
            AppError::InvalidRequest("the logout token is not valid".into())
        }
    })?;
    let ended = end_sessions(&state, &entry.name, &target).await?;
    tracing::info!(ended, "back-channel logout from the provider");
    let mut event = super::audit_event(&req, &state, EventKind::BackchannelLogout);
    if let Some(sub) = &target.sub {
        event = event.subject(sub);
    }
    state.audit.record(event);
    // §2.8: 200 on success, never cached.
    Ok(HttpResponse::Ok()
        .insert_header(super::no_store())
        .insert_header((header::PRAGMA, "no-cache"))
        .finish())
}

/// By the provider's session id stored at sign-in; without one, every session of the subject.
async fn end_sessions(
    state: &AppState,
    provider: &str,
    target: &LogoutTarget,
) -> Result<usize, AppError> {
    let index = state.sessions.index();
    Ok(match (&target.sid, &target.sub) {
        (Some(sid), _) => index.end_sid(provider, sid).await?,
        (None, Some(sub)) => index.end_all(sub, None).await?,
        (None, None) => 0,
    })
}

/// The `iss` the (not yet verified) token claims: only to choose whose keys verify it.
fn issuer_of(token: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Claims {
        iss: String,
    }
    crate::oauth::jws::Jws::parse(token)
        .ok()?
        .claims::<Claims>()
        .map(|c| c.iss)
}

/// The form's `logout_token`, exactly once.
fn logout_token(body: &[u8]) -> Result<String, AppError> {
    let mut token = None;
    for (name, value) in url::form_urlencoded::parse(body) {
        if name == "logout_token" {
            if token.is_some() {
                return Err(AppError::InvalidRequest(
                    "the `logout_token` field is repeated".into(),
                ));
            }
            token = Some(value.into_owned());
        }
    }
    token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| AppError::InvalidRequest("the `logout_token` field is missing".into()))
}
