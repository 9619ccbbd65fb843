//! Binding a sign-in to the browser that started it.
//!
//! Each sign-in's pending record holds a random browser id, and the browser holds that id in a
//! signed binding cookie; the callback must present it. Every sign-in started without such a
//! cookie gets a cookie of its own, under its own name (`<COOKIE_NAME>_signin_<random>`): tabs
//! of a browser that start signing in at the same instant on a first visit (a restored session,
//! typically) can no longer overwrite one another's binding, whatever order their answers
//! arrive in. (oauth2-proxy's `--cookie-csrf-per-request` answers the same bug, its #3258,
//! with a cookie per state.)
//!
//! A browser that already carries [`MAX_COOKIES`] binding cookies shares the newest one with
//! its next sign-ins instead of getting more, so many tabs cannot blow up the `Cookie` header.
//! A shared cookie is marked so, and outlives the callbacks that use it (it expires with
//! its `Max-Age`); an unshared one is deleted by its sign-in's callback.
//!
//! The cookies are host-only, `Path=/`, `__Host-` prefixed whenever they are `Secure` (even
//! when SESSION__COOKIE_DOMAIN widens the session cookie): a sibling subdomain cannot plant
//! one. They are signed with a key derived for this purpose alone (`keys::derive`), so a
//! value signed for them never verifies as the session cookie, nor the reverse. The id is not
//! the session id, so renewing the session at sign-in leaves other tabs' sign-ins intact.

use std::time::Duration;

use actix_web::cookie::{time, Cookie, CookieJar, Key, SameSite};
use actix_web::HttpRequest;
use base64::Engine;
use rand::RngCore;
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;

use crate::config::SessionSettings;

/// The label of the binding cookies' signing key (see [`crate::keys::derive`]).
pub const KEY_PURPOSE: &str = "binding-cookie";

/// Binding cookies a browser gets before its new sign-ins share the newest one. Each is about
/// 110 bytes of `Cookie` header.
pub const MAX_COOKIES: usize = 8;

/// Binding cookies looked at per request, whatever a hostile client sends.
const MAX_READ: usize = 64;

/// Marks a cookie that several sign-ins share.
const SHARED: &str = "s";

/// The signing key of the binding cookies, derived from a session secret.
pub fn binding_key(secret: &[u8]) -> Key {
    Key::derive_from(&crate::keys::derive(secret, KEY_PURPOSE))
}

/// What every binding cookie's name starts with: `__Host-` when Secure (browsers then refuse
/// it unless it is Secure, host-only and `Path=/`).
pub fn name_prefix(session: &SessionSettings) -> String {
    let host = if session.cookie_secure { "__Host-" } else { "" };
    format!("{host}{}_signin_", session.cookie_name)
}

/// A binding cookie as a browser carries it, its signature checked.
#[derive(Debug, Clone)]
pub struct Carried {
    pub name: String,
    pub id: String,
    /// Unix seconds it was (last) issued.
    issued: u64,
    shared: bool,
}

/// The binding of a sign-in about to start: the id its record keeps, and the cookies the
/// answer sets (the binding itself, and the removal of unusable ones).
pub struct NewBinding {
    pub id: String,
    pub cookies: Vec<Cookie<'static>>,
}

#[derive(Clone)]
pub struct BrowserBinding {
    key: Key,
    prefix: String,
    secure: bool,
    max_age: Duration,
    /// The single binding cookie of earlier releases, removed when seen (with the attributes it
    /// was set with, or browsers would keep it).
    legacy: (String, Option<String>),
}

impl BrowserBinding {
    pub fn new(session: &SessionSettings) -> Self {
        BrowserBinding {
            key: binding_key(session.secret.expose_secret()),
            prefix: name_prefix(session),
            secure: session.cookie_secure,
            max_age: session.signin_ttl,
            legacy: (
                format!("{}_browser", session.cookie_name),
                session.cookie_domain.clone(),
            ),
        }
    }

    /// The binding cookies this request carries whose signature checks out (at most
    /// [`MAX_READ`] looked at), and the names of those that do not.
    pub fn carried(&self, req: &HttpRequest) -> (Vec<Carried>, Vec<String>) {
        let mut valid = Vec::new();
        let mut invalid = Vec::new();
        let Ok(cookies) = req.cookies() else {
            return (valid, invalid);
        };
        for cookie in cookies
            .iter()
            .filter(|c| c.name().starts_with(&self.prefix))
            .take(MAX_READ)
        {
            match self.verify(cookie) {
                Some(carried) => valid.push(carried),
                None => invalid.push(cookie.name().to_owned()),
            }
        }
        (valid, invalid)
    }

    fn verify(&self, cookie: &Cookie<'_>) -> Option<Carried> {
        let mut jar = CookieJar::new();
        jar.add_original(Cookie::new(
            cookie.name().to_owned(),
            cookie.value().to_owned(),
        ));
        let value = jar.signed(&self.key).get(cookie.name())?.value().to_owned();
        let mut parts = value.split('.');
        let id = parts.next().filter(|id| !id.is_empty() && id.len() <= 64)?;
        let issued = parts.next()?.parse::<u64>().ok()?;
        let shared = match parts.next() {
            None => false,
            Some(SHARED) => true,
            Some(_) => return None,
        };
        Some(Carried {
            name: cookie.name().to_owned(),
            id: id.to_owned(),
            issued,
            shared,
        })
    }

    /// The binding for a new sign-in from this request: a new id in a cookie of its own, or,
    /// when the browser carries [`MAX_COOKIES`] already, the newest one's id (that cookie is
    /// issued again, marked shared, with a fresh lifetime).
    pub fn for_new_sign_in(&self, req: &HttpRequest) -> NewBinding {
        let (valid, invalid) = self.carried(req);
        let mut cookies: Vec<Cookie<'static>> =
            invalid.into_iter().map(|name| self.removal(name)).collect();
        if req.cookie(&self.legacy.0).is_some() {
            cookies.push(self.legacy_removal());
        }
        let now = crate::identity::now_unix();
        let newest = valid.iter().max_by_key(|c| c.issued);
        let (name, id, shared) = match newest {
            Some(newest) if valid.len() >= MAX_COOKIES => {
                (newest.name.clone(), newest.id.clone(), true)
            }
            _ => (
                format!("{}{}", self.prefix, random_text(6)),
                random_text(16),
                false,
            ),
        };
        let payload = if shared {
            format!("{id}.{now}.{SHARED}")
        } else {
            format!("{id}.{now}")
        };
        cookies.push(self.signed(name, payload));
        NewBinding { id, cookies }
    }

    /// The removal of `carried` once its sign-in is over, unless other sign-ins share it.
    pub fn spent(&self, carried: &Carried) -> Option<Cookie<'static>> {
        (!carried.shared).then(|| self.removal(carried.name.clone()))
    }

    fn signed(&self, name: String, payload: String) -> Cookie<'static> {
        let mut cookie = host_only(name.clone(), payload, self.secure);
        cookie.set_max_age(time::Duration::seconds(self.max_age.as_secs().max(1) as i64));
        let mut jar = CookieJar::new();
        jar.signed_mut(&self.key).add(cookie);
        jar.delta()
            .next()
            .cloned()
            .unwrap_or_else(|| Cookie::new(name, ""))
    }

    fn removal(&self, name: String) -> Cookie<'static> {
        let mut cookie = host_only(name, String::new(), self.secure);
        cookie.make_removal();
        cookie
    }

    fn legacy_removal(&self) -> Cookie<'static> {
        let mut cookie = with_attributes(
            self.legacy.0.clone(),
            String::new(),
            self.secure,
            self.legacy.1.as_deref(),
        );
        cookie.make_removal();
        cookie
    }
}

/// A binding cookie's attributes: HttpOnly, SameSite=Lax (the callback is a top-level
/// cross-site GET), `Path=/`, never a `Domain`, Secure unless turned off.
pub fn host_only(name: String, value: String, secure: bool) -> Cookie<'static> {
    with_attributes(name, value, secure, None)
}

/// A cookie of ours (the session cookie, and with no domain the binding cookies): HttpOnly,
/// SameSite=Lax, Path=/, Secure unless turned off, Domain when given.
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

/// `bytes` random bytes from the OS as URL-safe text.
fn random_text(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// Constant-time equality for secrets.
pub fn same_secret(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use actix_web::test::TestRequest;
    use secrecy::SecretBox;

    use super::*;

    fn settings(secure: bool, domain: Option<&str>) -> SessionSettings {
        SessionSettings {
            secret: Arc::new(SecretBox::new(Box::new(vec![7u8; 64]))),
            previous_secrets: Arc::new(Vec::new()),
            cookie_name: "gatehouse".into(),
            cookie_secure: secure,
            cookie_domain: domain.map(str::to_owned),
            ttl: Duration::from_secs(86400),
            signin_ttl: Duration::from_secs(600),
            max_lifetime: None,
        }
    }

    /// A request carrying `cookies` (as a browser sends them back: name and value only).
    fn carrying(cookies: &[Cookie<'static>]) -> HttpRequest {
        let header = cookies
            .iter()
            .map(|c| c.stripped().encoded().to_string())
            .collect::<Vec<_>>()
            .join("; ");
        let mut req = TestRequest::default();
        if !header.is_empty() {
            req = req.insert_header(("cookie", header));
        }
        req.to_http_request()
    }

    fn binding_cookies(new: &NewBinding) -> Vec<Cookie<'static>> {
        new.cookies
            .iter()
            .filter(|c| c.max_age() != Some(time::Duration::ZERO))
            .cloned()
            .collect()
    }

    #[test]
    fn a_secure_binding_cookie_is_host_only_and_host_prefixed_even_with_a_cookie_domain() {
        for domain in [None, Some("example.com")] {
            let binding = BrowserBinding::new(&settings(true, domain));
            let new = binding.for_new_sign_in(&carrying(&[]));
            let cookies = binding_cookies(&new);
            assert_eq!(cookies.len(), 1);
            let c = &cookies[0];
            assert!(c.name().starts_with("__Host-gatehouse_signin_"), "{c}");
            assert_eq!(c.domain(), None, "{c}");
            assert_eq!(c.path(), Some("/"));
            assert_eq!(c.secure(), Some(true));
            assert_eq!(c.http_only(), Some(true));
            assert_eq!(c.same_site(), Some(SameSite::Lax));
            assert_eq!(c.max_age(), Some(time::Duration::seconds(600)));
        }
        let plain = BrowserBinding::new(&settings(false, Some("example.com")));
        let c = binding_cookies(&plain.for_new_sign_in(&carrying(&[])))[0].clone();
        assert!(c.name().starts_with("gatehouse_signin_"), "{c}");
        assert_eq!((c.domain(), c.secure()), (None, Some(false)), "{c}");
    }

    #[test]
    fn each_sign_in_without_a_cookie_gets_its_own_and_the_browser_carries_them_all() {
        let binding = BrowserBinding::new(&settings(true, None));
        let news: Vec<NewBinding> = (0..3)
            .map(|_| binding.for_new_sign_in(&carrying(&[])))
            .collect();
        let cookies: Vec<Cookie<'static>> = news.iter().flat_map(binding_cookies).collect();
        let names: std::collections::HashSet<&str> = cookies.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), 3, "one name per sign-in");
        let (carried, invalid) = binding.carried(&carrying(&cookies));
        assert!(invalid.is_empty());
        let ids: Vec<&str> = carried.iter().map(|c| c.id.as_str()).collect();
        for new in &news {
            assert!(ids.contains(&new.id.as_str()));
        }
        assert!(carried.iter().all(|c| binding.spent(c).is_some()));
    }

    #[test]
    fn past_the_maximum_the_newest_cookie_is_shared_and_survives_its_callbacks() {
        let binding = BrowserBinding::new(&settings(true, None));
        let mut jar: Vec<Cookie<'static>> = Vec::new();
        for _ in 0..MAX_COOKIES {
            let new = binding.for_new_sign_in(&carrying(&jar));
            jar.extend(binding_cookies(&new));
        }
        assert_eq!(jar.len(), MAX_COOKIES);
        let shared = binding.for_new_sign_in(&carrying(&jar));
        let reissued = binding_cookies(&shared);
        assert_eq!(reissued.len(), 1);
        assert!(
            jar.iter().any(|c| c.name() == reissued[0].name()),
            "no new name: an existing cookie is issued again"
        );
        let (carried, _) = binding.carried(&carrying(&reissued));
        assert_eq!(carried[0].id, shared.id);
        assert!(
            binding.spent(&carried[0]).is_none(),
            "a shared cookie stays"
        );
    }

    #[test]
    fn a_value_signed_with_the_session_key_is_not_a_binding_and_the_reverse() {
        let session = settings(true, None);
        let binding = BrowserBinding::new(&session);
        let name = format!("{}abc", name_prefix(&session));
        let session_key = Key::from(session.secret.expose_secret());
        let signed_with = |key: &Key, name: &str, value: &str| {
            let mut jar = CookieJar::new();
            jar.signed_mut(key)
                .add(Cookie::new(name.to_owned(), value.to_owned()));
            jar.get(name).expect("signed").clone()
        };
        let forged = signed_with(&session_key, &name, "someid.1700000000");
        let (carried, invalid) = binding.carried(&carrying(&[forged]));
        assert!(carried.is_empty());
        assert_eq!(invalid, vec![name.clone()]);
        let genuine = signed_with(
            &binding_key(session.secret.expose_secret()),
            &name,
            "someid.1",
        );
        assert_eq!(
            binding
                .carried(&carrying(std::slice::from_ref(&genuine)))
                .0
                .len(),
            1
        );

        // The binding's signature under the session cookie's name fails the session key.
        let relabelled = Cookie::new("gatehouse", genuine.value().to_owned());
        let mut jar = CookieJar::new();
        jar.add_original(relabelled);
        assert!(jar.signed(&session_key).get("gatehouse").is_none());
    }

    #[test]
    fn unusable_and_legacy_cookies_are_removed_when_a_sign_in_starts() {
        let binding = BrowserBinding::new(&settings(false, Some("example.com")));
        let req = carrying(&[
            Cookie::new("gatehouse_signin_bogus", "not-signed"),
            Cookie::new("gatehouse_browser", "old"),
        ]);
        let new = binding.for_new_sign_in(&req);
        let removed: Vec<(String, Option<String>)> = new
            .cookies
            .iter()
            .filter(|c| c.max_age() == Some(time::Duration::ZERO))
            .map(|c| (c.name().to_owned(), c.domain().map(str::to_owned)))
            .collect();
        assert!(removed.contains(&("gatehouse_signin_bogus".into(), None)));
        assert!(removed.contains(&("gatehouse_browser".into(), Some("example.com".into()))));
    }
}
