//! GET /session: who is signed in, as JSON. Never a raw token.

use actix_session::Session;
use actix_web::{web, HttpResponse};
use serde::Serialize;

use crate::error::AppError;
use crate::refresh::{Outcome, Seen};
use crate::state::AppState;
use crate::store::record::SessionKey;

#[derive(Serialize)]
struct SessionView<'a> {
    subject: &'a str,
    email: Option<&'a str>,
    name: Option<&'a str>,
    expires_at: Option<u64>,
    scopes: &'a [String],
    groups: &'a [String],
    provider: &'a str,
}

pub async fn session(
    session: Session,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let identity = crate::session::identity(&session).ok_or(AppError::Unauthorized)?;
    let tokens = crate::session::tokens(&session).ok_or(AppError::Unauthorized)?;
    let meta = crate::session::meta(&session).unwrap_or_default();
    let key_text = crate::session::key(&session).ok_or(AppError::Unauthorized)?;
    let key = SessionKey::parse(&key_text).ok_or(AppError::Unauthorized)?;
    let seen = Seen {
        id: key.id,
        key: key.key,
        expires_at: tokens.expires_at,
        refreshable: tokens.refresh_token.is_some(),
        provider: meta.provider.as_deref(),
    };
    let (identity, tokens) = match state.refresher.ensure_fresh(seen).await? {
        Outcome::Live => (identity, tokens),
        Outcome::Refreshed(fresh) => (fresh.identity, fresh.tokens),
        Outcome::Ended => {
            crate::session::end(&session);
            return Err(AppError::Unauthorized);
        }
        Outcome::Refused => {
            crate::session::end(&session);
            return Err(AppError::AccessDenied(
                "you are no longer allowed here; ask your administrator for access",
            ));
        }
    };
    let view = SessionView {
        subject: &identity.subject,
        email: identity.email.as_deref(),
        name: identity.name.as_deref(),
        expires_at: tokens.expires_at,
        scopes: &tokens.scopes,
        groups: &identity.groups,
        provider: meta.provider.as_deref().unwrap_or("default"),
    };
    Ok(HttpResponse::Ok()
        .insert_header(super::no_store())
        .json(view))
}
