//! GET /auth: the reverse proxy asks whether this request's user is signed in.

use actix_session::Session;
use actix_web::HttpResponse;

use crate::error::AppError;

/// 200 with identity headers, or 401. Never a redirect: proxies and XHRs need a status.
pub async fn forward_auth(session: Session) -> Result<HttpResponse, AppError> {
    let identity = crate::session::identity(&session).ok_or(AppError::Unauthorized)?;
    let mut res = HttpResponse::Ok();
    res.insert_header(super::no_store())
        .insert_header(("X-Auth-Request-User", identity.subject.as_str()));
    if let Some(email) = &identity.email {
        res.insert_header(("X-Auth-Request-Email", email.as_str()));
    }
    Ok(res.finish())
}
