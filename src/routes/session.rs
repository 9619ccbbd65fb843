//! GET /session: who is signed in, as JSON. Never a raw token.

use actix_session::Session;
use actix_web::{web, HttpResponse};
use serde::Serialize;

use crate::error::AppError;
use crate::refresh::Outcome;
use crate::startup::AppState;

#[derive(Serialize)]
struct SessionView<'a> {
    subject: &'a str,
    email: Option<&'a str>,
    name: Option<&'a str>,
    expires_at: Option<u64>,
    scopes: Vec<String>,
}

pub async fn session(
    session: Session,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let identity = crate::session::identity(&session).ok_or(AppError::Unauthorized)?;
    if crate::refresh::ensure_fresh(&session, &state).await? == Outcome::Ended {
        return Err(AppError::Unauthorized);
    }
    let tokens = crate::session::tokens(&session);
    let view = SessionView {
        subject: &identity.subject,
        email: identity.email.as_deref(),
        name: identity.name.as_deref(),
        expires_at: tokens.as_ref().and_then(|t| t.expires_at),
        scopes: tokens.map(|t| t.scopes).unwrap_or_default(),
    };
    Ok(HttpResponse::Ok()
        .insert_header(super::no_store())
        .json(view))
}
