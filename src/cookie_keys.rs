//! Rotating the cookie-signing secret without logging anybody out.
//!
//! Cookies signed with a secret from `SESSION__PREVIOUS_SECRETS` are re-signed with the current
//! one before actix-session sees them, and the browser is handed the re-signed cookie. While
//! previous secrets are configured, a cookie no secret verifies is dropped from the request and
//! expired in the browser. Either way an unverifiable cookie is a signed-out visitor, never an
//! error (so no error loop).

use actix_web::body::MessageBody;
use actix_web::cookie::{Cookie, CookieJar, Key};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web;
use secrecy::ExposeSecret;

use crate::config::SessionSettings;
use crate::startup::AppState;

#[derive(Clone)]
pub struct CookieKeys {
    current: Key,
    previous: Vec<Key>,
    /// The cookies we sign: the session and the browser binding.
    names: [String; 2],
    secure: bool,
    domain: Option<String>,
}

enum Verdict {
    Current,
    Resigned(String),
    Invalid,
}

impl CookieKeys {
    pub fn new(current: Key, session: &SessionSettings) -> Self {
        let previous = session
            .previous_secrets
            .iter()
            .filter_map(|s| Key::try_from(s.expose_secret().as_slice()).ok())
            .collect();
        CookieKeys {
            current,
            previous,
            names: [
                session.cookie_name.clone(),
                format!("{}_browser", session.cookie_name),
            ],
            secure: session.cookie_secure,
            domain: session.cookie_domain.clone(),
        }
    }

    fn verify(&self, name: &str, raw: &str) -> Verdict {
        let verified_with = |key: &Key| {
            let mut jar = CookieJar::new();
            jar.add_original(Cookie::new(name.to_owned(), raw.to_owned()));
            jar.signed(key).get(name).map(|c| c.value().to_owned())
        };
        if verified_with(&self.current).is_some() {
            return Verdict::Current;
        }
        for old in &self.previous {
            if let Some(value) = verified_with(old) {
                let mut jar = CookieJar::new();
                jar.signed_mut(&self.current)
                    .add(Cookie::new(name.to_owned(), value));
                if let Some(resigned) = jar.get(name) {
                    return Verdict::Resigned(resigned.value().to_owned());
                }
            }
        }
        Verdict::Invalid
    }

    fn cookie(&self, name: &str, value: String) -> Cookie<'static> {
        crate::browser::with_attributes(name.to_owned(), value, self.secure, self.domain.as_deref())
    }
}

pub async fn rotate_cookie_keys(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    // Nothing to rotate from: actix-session alone checks the cookie (an unverifiable one is a
    // signed-out visitor there). This keeps `/auth` at one HMAC when no rotation is under way.
    let Some(keys) = req
        .app_data::<web::Data<AppState>>()
        .map(|s| s.cookie_keys.clone())
        .filter(|k| !k.previous.is_empty())
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
            if !keys.names.iter().any(|n| n == name) {
                kept.push(pair.to_owned());
                continue;
            }
            // Values travel percent-encoded (actix encodes them when setting them).
            let decoded = percent_encoding::percent_decode_str(value).decode_utf8_lossy();
            match keys.verify(name, &decoded) {
                Verdict::Current => kept.push(pair.to_owned()),
                Verdict::Resigned(new_value) => {
                    let cookie = keys.cookie(name, new_value);
                    kept.push(cookie.encoded().stripped().to_string());
                    to_set.push(cookie);
                    changed = true;
                }
                Verdict::Invalid => {
                    let mut gone = keys.cookie(name, String::new());
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
