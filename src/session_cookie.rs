//! Reading the session cookie without actix-session, for `/auth`: find it in the `Cookie`
//! header, check its signature once, hand back the session key it carries.
//!
//! The format is actix-web's signed cookie (the `cookie` crate, 0.16): the base64 of an
//! HMAC-SHA256 of the value under the signing half of the key, then the value. The check is
//! constant-time (`ring::hmac::verify`).

use std::borrow::Cow;

use actix_web::cookie::Key;
use actix_web::http::header::{HeaderMap, COOKIE};
use base64::Engine;

/// Length of the base64 digest in front of a signed cookie's value.
const DIGEST_LEN: usize = 44;

pub struct SessionCookie {
    name: String,
    key: ring::hmac::Key,
}

impl SessionCookie {
    pub fn new(key: &Key, name: &str) -> Self {
        SessionCookie {
            name: name.to_owned(),
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.signing()),
        }
    }

    /// The session key of the first cookie by our name whose signature verifies.
    pub fn read<'h>(&self, headers: &'h HeaderMap) -> Option<Cow<'h, str>> {
        headers
            .get_all(COOKIE)
            .filter_map(|v| v.to_str().ok())
            .flat_map(|line| line.split(';'))
            .filter_map(|pair| {
                let (name, value) = pair.trim().split_once('=')?;
                (name == self.name).then_some(value)
            })
            .find_map(|value| self.verify(value))
    }

    fn verify<'v>(&self, raw: &'v str) -> Option<Cow<'v, str>> {
        // Values are percent-encoded when set; ours only are when a proxy re-encodes them.
        let value: Cow<'v, str> = if raw.contains('%') {
            Cow::Owned(
                percent_encoding::percent_decode_str(raw)
                    .decode_utf8()
                    .ok()?
                    .into_owned(),
            )
        } else {
            Cow::Borrowed(raw)
        };
        if value.len() <= DIGEST_LEN || !value.is_char_boundary(DIGEST_LEN) {
            return None;
        }
        let (digest, session_key) = value.split_at(DIGEST_LEN);
        let digest = base64::engine::general_purpose::STANDARD
            .decode(digest)
            .ok()?;
        ring::hmac::verify(&self.key, session_key.as_bytes(), &digest).ok()?;
        Some(match value {
            Cow::Borrowed(v) => Cow::Borrowed(&v[DIGEST_LEN..]),
            Cow::Owned(v) => Cow::Owned(v[DIGEST_LEN..].to_owned()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::cookie::{Cookie, CookieJar};
    use actix_web::http::header::HeaderValue;

    fn signed(key: &Key, name: &str, value: &str) -> String {
        let mut jar = CookieJar::new();
        jar.signed_mut(key)
            .add(Cookie::new(name.to_owned(), value.to_owned()));
        jar.get(name)
            .map(|c| c.value().to_owned())
            .unwrap_or_default()
    }

    fn headers(cookie: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_str(cookie).expect("ascii"));
        h
    }

    #[test]
    fn reads_what_actix_signed_and_nothing_else() {
        let key = Key::from(&[3u8; 64]);
        let reader = SessionCookie::new(&key, "gh");
        let good = signed(&key, "gh", "abc.def");
        let h = headers(&format!("other=1; gh={good}; x=y"));
        assert_eq!(reader.read(&h).as_deref(), Some("abc.def"));
        // Another key's signature, a changed value, a changed digest: nothing.
        let other = signed(&Key::from(&[4u8; 64]), "gh", "abc.def");
        assert_eq!(reader.read(&headers(&format!("gh={other}"))), None);
        let tampered = good.replace("abc.def", "abc.deg");
        assert_eq!(reader.read(&headers(&format!("gh={tampered}"))), None);
        let mut bad_sig = good.clone();
        bad_sig.replace_range(0..1, if good.starts_with('A') { "B" } else { "A" });
        assert_eq!(reader.read(&headers(&format!("gh={bad_sig}"))), None);
        assert_eq!(reader.read(&headers("gh=short")), None);
        // A forged first cookie does not hide a good second one.
        let h = headers(&format!("gh={other}; gh={good}"));
        assert_eq!(reader.read(&h).as_deref(), Some("abc.def"));
        // Percent-encoded by a proxy.
        let encoded = good
            .replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D");
        assert_eq!(
            reader.read(&headers(&format!("gh={encoded}"))).as_deref(),
            Some("abc.def")
        );
    }
}
