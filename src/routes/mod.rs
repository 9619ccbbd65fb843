//! HTTP: parse requests, call the domain, answer. One file per endpoint group.

pub mod callback;
pub mod forward_auth;
pub mod health;
pub mod pages;
pub mod session;
pub mod signin;
pub mod signout;

use actix_web::http::header::{CacheControl, CacheDirective};

/// Answers that depend on who is signed in must never be cached or shared.
pub fn no_store() -> CacheControl {
    CacheControl(vec![CacheDirective::NoStore])
}
