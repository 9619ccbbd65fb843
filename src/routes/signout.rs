//! POST /signout: end the session, refusing cross-site requests.

use actix_session::Session;
use actix_web::http::header::{self, HeaderMap};
use actix_web::{web, HttpRequest, HttpResponse};

use crate::error::AppError;
use crate::return_to::RedirectPolicy;
use crate::state::AppState;

pub async fn signout(
    req: HttpRequest,
    session: Session,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    if !same_origin(req.headers(), &state.redirects) {
        tracing::warn!("cross-site sign-out refused");
        return Err(AppError::Forbidden(
            "cross-site sign-out requests are refused",
        ));
    }
    let tokens = crate::session::tokens(&session);
    // Revocation and the provider's logout go to the provider the session came from.
    let meta = crate::session::meta(&session);
    let provider = state
        .providers
        .of_record(meta.as_ref().and_then(|m| m.provider.as_deref()))
        .and_then(|entry| entry.ready());
    if let (Some(provider), Some(refresh)) = (
        &provider,
        tokens.as_ref().and_then(|t| t.refresh_token.as_ref()),
    ) {
        // Best effort: a provider that cannot be reached must not keep anyone signed in here.
        match provider.revoke(refresh).await {
            Ok(true) => tracing::info!("refresh token revoked at sign-out"),
            Ok(false) => {}
            Err(e) => tracing::warn!(reason = %e, "revocation at sign-out failed"),
        }
    }
    if let Some(identity) = crate::session::identity(&session) {
        state.audit.record(
            super::audit_event(&req, &state, crate::directory::EventKind::Signout)
                .subject(&identity.subject),
        );
    }
    crate::session::end(&session);
    let mut location = "/".to_owned();
    if state.signout.provider_logout {
        let back = format!("{}/", state.public_url);
        let hint = tokens.as_ref().and_then(|t| t.id_token.as_ref());
        if let Some(url) = provider.and_then(|p| p.end_session_url(hint, &back)) {
            location = url.to_string();
        }
    }
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .insert_header(super::no_store())
        .finish())
}

/// Fetch metadata first, then `Origin`, then `Referer`: only our own origin (PUBLIC_URL's). A
/// request with none of them comes from a non-browser client, which cannot be forged by
/// another site.
pub fn same_origin(headers: &HeaderMap, allowed: &RedirectPolicy) -> bool {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let site = text(header::HeaderName::from_static("sec-fetch-site"));
    match site {
        Some("cross-site") => return false,
        // Set by the browser, not by pages: a same-origin form post. (Under a no-referrer
        // policy Chrome sends such posts with `Origin: null`, so Origin cannot decide here.)
        Some("same-origin") => return true,
        _ => {}
    }
    if let Some(origin) = text(header::ORIGIN) {
        return allowed.is_own_origin(origin);
    }
    if let Some(referer) = text(header::REFERER) {
        return url::Url::parse(referer)
            .is_ok_and(|u| allowed.is_own_origin(&u.origin().ascii_serialization()));
    }
    // same-site (a sister app under COOKIE_DOMAIN) must prove with Origin that it is us.
    site != Some("same-site")
}
