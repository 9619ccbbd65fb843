//! GET /.well-known/jwks.json: the public keys of the signed assertion, for apps to verify it.

use actix_web::http::header::{CacheControl, CacheDirective};
use actix_web::{web, HttpResponse};

use crate::state::AppState;

/// How long apps and caches may keep the key set. Keys change only when the session secret
/// is rotated, and JWT libraries fetch the set again when an assertion names an unknown key.
const MAX_AGE_SECS: u32 = 300;

pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(CacheControl(vec![
            CacheDirective::Public,
            CacheDirective::MaxAge(MAX_AGE_SECS),
        ]))
        .content_type("application/jwk-set+json")
        .body(state.assertions.jwks())
}
