//! HTTP: parse requests, call the domain, answer. One file per endpoint group.

pub mod backchannel;
pub mod callback;
pub mod choose;
pub mod forward_auth;
pub mod health;
pub mod jwks;
pub mod pages;
pub mod session;
pub mod sessions;
pub mod signin;
pub mod signout;
pub mod well_known;

use actix_web::http::header::{CacheControl, CacheDirective};
use actix_web::{web, HttpResponse, Resource};

use crate::error::AppError;

/// Routes that touch no session (outside the session middleware).
pub fn sessionless(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/healthz", "GET").get(health::healthz))
        .service(resource("/readyz", "GET").get(health::readyz))
        .service(resource("/.well-known/jwks.json", "GET").get(jwks::jwks))
        .service(resource("/.well-known/gatehouse", "GET").get(well_known::gatehouse))
        .service(resource("/backchannel-logout", "POST").post(backchannel::backchannel_logout));
}

/// Routes that read or write the session.
pub fn with_session(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/", "GET").get(pages::index))
        // Any method: a proxy forwards unauthenticated API calls here too (they get 401).
        .service(web::resource("/signin").to(signin::signin))
        .service(resource("/redirect", "GET").get(callback::callback))
        .service(resource("/signout", "POST").post(signout::signout))
        .service(resource("/session", "GET").get(session::session))
        .service(resource("/sessions", "GET").get(sessions::list))
        .service(resource("/sessions/revoke", "POST").post(sessions::revoke));
}

/// An audit event about this request: the client's IP (through trusted proxies) and the
/// request id, for finding its log lines.
pub(crate) fn audit_event(
    req: &actix_web::HttpRequest,
    state: &crate::state::AppState,
    kind: crate::directory::EventKind,
) -> crate::directory::AuditEvent {
    use actix_web::HttpMessage;
    let event = crate::directory::AuditEvent::new(kind).ip(state.proxies.client_ip(req));
    let id = req
        .extensions()
        .get::<tracing_actix_web::RequestId>()
        .copied();
    match id {
        Some(id) => event.request_id(id),
        None => event,
    }
}

/// A resource whose other methods get 405 with `Allow`, in the contract's format.
fn resource(path: &str, allow: &'static str) -> Resource {
    web::resource(path).default_service(web::to(move || async move {
        Err::<HttpResponse, AppError>(AppError::MethodNotAllowed(allow))
    }))
}

/// Answers that depend on who is signed in must never be cached or shared.
pub fn no_store() -> CacheControl {
    CacheControl(vec![CacheDirective::NoStore])
}
