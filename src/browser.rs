//! Binding a sign-in to the browser that started it.
//!
//! The browser holds a random id in a signed, HttpOnly cookie; every pending sign-in records
//! it and the callback must present the same one. The id is not the session id, so renewing
//! the session at sign-in leaves the other tabs' sign-ins intact.

use actix_web::cookie::{Cookie, CookieJar, Key, SameSite};
use actix_web::HttpRequest;
use subtle::ConstantTimeEq;

use crate::config::SessionSettings;
use crate::random::token;

#[derive(Clone)]
pub struct BrowserBinding {
    key: Key,
    cookie_name: String,
    secure: bool,
    domain: Option<String>,
}

impl BrowserBinding {
    pub fn new(key: Key, session: &SessionSettings) -> Self {
        BrowserBinding {
            key,
            cookie_name: format!("{}_browser", session.cookie_name),
            secure: session.cookie_secure,
            domain: session.cookie_domain.clone(),
        }
    }

    pub fn cookie_name(&self) -> &str {
        &self.cookie_name
    }

    /// The browser id this request carries, if its signature checks out.
    pub fn read(&self, req: &HttpRequest) -> Option<String> {
        let cookie = req.cookie(&self.cookie_name)?;
        let mut jar = CookieJar::new();
        jar.add_original(cookie);
        jar.signed(&self.key)
            .get(&self.cookie_name)
            .map(|c| c.value().to_owned())
            .filter(|v| !v.is_empty() && v.len() <= 64)
    }

    /// The request's browser id, or a new one with the cookie that carries it.
    pub fn read_or_mint(&self, req: &HttpRequest) -> (String, Option<Cookie<'static>>) {
        match self.read(req) {
            Some(id) => (id, None),
            None => {
                let id = token();
                let cookie = self.cookie(&id);
                (id, Some(cookie))
            }
        }
    }

    fn cookie(&self, id: &str) -> Cookie<'static> {
        let mut jar = CookieJar::new();
        jar.signed_mut(&self.key).add(with_attributes(
            self.cookie_name.clone(),
            id.to_owned(),
            self.secure,
            self.domain.as_deref(),
        ));
        jar.delta()
            .next()
            .cloned()
            .unwrap_or_else(|| Cookie::new(self.cookie_name.clone(), ""))
    }
}

/// A cookie of ours (the session and the browser binding alike): HttpOnly, SameSite=Lax,
/// Path=/, Secure unless turned off, Domain when COOKIE_DOMAIN is set.
pub fn with_attributes(
    name: String,
    value: String,
    secure: bool,
    domain: Option<&str>,
) -> Cookie<'static> {
    let mut cookie = Cookie::build(name, value)
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Lax)
        .path("/");
    if let Some(domain) = domain {
        cookie = cookie.domain(domain.to_owned());
    }
    cookie.finish()
}

/// Constant-time equality for secrets.
pub fn same_secret(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}
