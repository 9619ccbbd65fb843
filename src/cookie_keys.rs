//! Rotating the cookie-signing secret without logging anybody out.
//!
//! Cookies signed with a secret from `SESSION__PREVIOUS_SECRETS` are re-signed with the current
//! one before actix-session sees them, and the browser is handed the re-signed cookie. While
//! previous secrets are configured, a cookie no secret verifies is dropped from the request and
//! expired in the browser. Either way an unverifiable cookie is a signed-out visitor, never an
//! error (so no error loop).
//!
//! Two kinds of cookie are signed, each with its own keys: the session cookie with the secret
//! itself (as every release has, so no upgrade logs anyone out), the browser-binding cookies
//! with a key derived from it for that purpose (see `browser`). Previous secrets give previous
//! keys of both kinds, and a value signed as one kind never verifies as the other.

use actix_web::body::MessageBody;
use actix_web::cookie::{Cookie, CookieJar, Key};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web;
use secrecy::ExposeSecret;

use crate::browser::binding_key;
use crate::config::SessionSettings;

#[derive(Clone)]
struct KeySet {
    current: Key,
    previous: Vec<Key>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Session,
    Binding,
}

#[derive(Clone)]
pub struct CookieKeys {
    session: KeySet,
    binding: KeySet,
    session_name: String,
    /// Every binding cookie's name starts with it.
    binding_prefix: String,
    secure: bool,
    domain: Option<String>,
}

enum Verdict {
    Current,
    Resigned(String),
    Invalid,
}

impl CookieKeys {
    /// `current` is the session cookie's key (from SESSION__SECRET as it is).
    pub fn new(current: Key, session: &SessionSettings) -> Self {
        let previous = session
            .previous_secrets
            .iter()
            .filter_map(|s| Key::try_from(s.expose_secret().as_slice()).ok())
            .collect();
        let binding = KeySet {
            current: binding_key(session.secret.expose_secret()),
            previous: session
                .previous_secrets
                .iter()
                .map(|s| binding_key(s.expose_secret()))
                .collect(),
        };
        CookieKeys {
            session: KeySet { current, previous },
            binding,
            session_name: session.cookie_name.clone(),
            binding_prefix: crate::browser::name_prefix(session),
            secure: session.cookie_secure,
            domain: session.cookie_domain.clone(),
        }
    }

    fn kind(&self, name: &str) -> Option<Kind> {
        if name == self.session_name {
            Some(Kind::Session)
        } else if name.starts_with(&self.binding_prefix) {
            Some(Kind::Binding)
        } else {
            None
        }
    }

    fn verify(&self, kind: Kind, name: &str, raw: &str) -> Verdict {
        let keys = match kind {
            Kind::Session => &self.session,
            Kind::Binding => &self.binding,
        };
        let verified_with = |key: &Key| {
            let mut jar = CookieJar::new();
            jar.add_original(Cookie::new(name.to_owned(), raw.to_owned()));
            jar.signed(key).get(name).map(|c| c.value().to_owned())
        };
        if verified_with(&keys.current).is_some() {
            return Verdict::Current;
        }
        for old in &keys.previous {
            if let Some(value) = verified_with(old) {
                let mut jar = CookieJar::new();
                jar.signed_mut(&keys.current)
                    .add(Cookie::new(name.to_owned(), value));
                if let Some(resigned) = jar.get(name) {
                    return Verdict::Resigned(resigned.value().to_owned());
                }
            }
        }
        Verdict::Invalid
    }

    /// The cookie with `kind`'s attributes: the session's may carry a Domain, a binding
    /// cookie never does.
    fn cookie(&self, kind: Kind, name: &str, value: String) -> Cookie<'static> {
        match kind {
            Kind::Session => crate::browser::with_attributes(
                name.to_owned(),
                value,
                self.secure,
                self.domain.as_deref(),
            ),
            Kind::Binding => crate::browser::host_only(name.to_owned(), value, self.secure),
        }
    }
}

pub async fn rotate_cookie_keys(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    // Nothing to rotate from: actix-session alone checks the cookie (an unverifiable one is a
    // signed-out visitor there). This keeps `/auth` at one HMAC when no rotation is under way.
    let Some(keys) = req
        .app_data::<web::Data<CookieKeys>>()
        .map(|k| k.clone().into_inner())
        .filter(|k| !k.session.previous.is_empty())
    else {
        return next.call(req).await;
    };
    // Read the header by hand: `req.cookies()` would cache the parse before we rewrite it.
    let header_text = req
        .headers()
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut to_set: Vec<Cookie<'static>> = Vec::new();
    if let Some(text) = header_text {
        let mut changed = false;
        let mut kept = Vec::new();
        for pair in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let Some(kind) = keys.kind(name) else {
                kept.push(pair.to_owned());
                continue;
            };
            // Values travel percent-encoded (actix encodes them when setting them).
            let decoded = percent_encoding::percent_decode_str(value).decode_utf8_lossy();
            match keys.verify(kind, name, &decoded) {
                Verdict::Current => kept.push(pair.to_owned()),
                Verdict::Resigned(new_value) => {
                    let cookie = keys.cookie(kind, name, new_value);
                    kept.push(cookie.encoded().stripped().to_string());
                    // A binding cookie is re-signed for this request only: it lives minutes,
                    // keeps verifying while the previous secret is configured, and its
                    // lifetime is not ours to reset here.
                    if kind == Kind::Session {
                        to_set.push(cookie);
                    }
                    changed = true;
                }
                Verdict::Invalid => {
                    let mut gone = keys.cookie(kind, name, String::new());
                    gone.make_removal();
                    to_set.push(gone);
                    changed = true;
                }
            }
        }
        if changed {
            match HeaderValue::from_str(&kept.join("; ")) {
                Ok(v) => {
                    req.headers_mut().insert(header::COOKIE, v);
                }
                Err(_) => {
                    req.headers_mut().remove(header::COOKIE);
                }
            }
        }
    }
    let mut res = next.call(req).await?;
    for cookie in to_set {
        // actix-session may have set the same cookie itself (a new session): that one wins.
        let already = res.response().cookies().any(|c| c.name() == cookie.name());
        if !already {
            if let Ok(v) = HeaderValue::from_str(&cookie.encoded().to_string()) {
                res.headers_mut().append(header::SET_COOKIE, v);
            }
        }
    }
    Ok(res)
}
