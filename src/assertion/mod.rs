//! The signed identity assertion (`FORWARD__ASSERTION`): a short-lived JWT that `/auth` adds
//! as `X-Auth-Request-Assertion`, so an app can check who the user is with any JWT library
//! instead of trusting raw headers that a misconfigured proxy might let a client set.
//!
//! EdDSA (Ed25519) with a key derived from the session secret (see `keys`). Signing costs a
//! few tens of microseconds, so an assertion is reused while it has more than a quarter of its
//! lifetime left: the cache is keyed by a digest of the audience and every claim but the times,
//! so a changed identity (new groups, a newly verified email) never gets an old assertion.

pub mod keys;

use std::time::Duration;

use actix_web::http::header::HeaderValue;
use actix_web::web::Bytes;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Serialize;
use url::Url;

use crate::cache::{digest, BoundedCache};
use crate::config::SessionSettings;
use crate::identity::now_unix;

/// Assertions kept at once (all users and audiences) and the bytes they may take.
const CACHE_ENTRIES: usize = 20_000;
const CACHE_BYTES: usize = 16 * 1024 * 1024;

/// Who the assertion is about. The caller decides what it may say: `email` only when verified.
pub struct AssertionClaims<'a> {
    pub subject: &'a str,
    pub email: Option<&'a str>,
    pub groups: &'a [String],
}

#[derive(Debug, thiserror::Error)]
pub enum AssertionError {
    #[error("the assertion signing key could not be derived")]
    Key,
    #[error("the assertion cannot be sent as a header")]
    Header,
}

#[derive(Serialize)]
struct Payload<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    groups: &'a [String],
    iat: u64,
    exp: u64,
}

#[derive(Clone)]
struct Signed {
    value: HeaderValue,
    /// Unix seconds from which a new one is signed instead.
    renew_at: u64,
}

pub struct Assertions {
    issuer: String,
    /// PUBLIC_URL's origin: the audience when no trusted proxy names the protected origin.
    default_audience: String,
    ttl: u64,
    key: keys::SigningKey,
    /// The JOSE header, base64url, the same for every assertion.
    header: String,
    jwks: Bytes,
    cache: BoundedCache<Signed>,
}

impl Assertions {
    /// Keys from the session secrets; issuer = PUBLIC_URL; each assertion lives `ttl`.
    pub fn new(
        session: &SessionSettings,
        public_url: &Url,
        ttl: Duration,
    ) -> Result<Assertions, AssertionError> {
        let (key, jwks) = keys::from_settings(session).map_err(|_| AssertionError::Key)?;
        let header = serde_json::json!({"alg": "EdDSA", "kid": key.kid, "typ": "JWT"});
        Ok(Assertions {
            issuer: public_url.as_str().trim_end_matches('/').to_owned(),
            default_audience: public_url.origin().ascii_serialization(),
            ttl: ttl.as_secs().max(1),
            header: URL_SAFE_NO_PAD.encode(header.to_string()),
            key,
            jwks: Bytes::from(jwks),
            cache: BoundedCache::new(CACHE_ENTRIES, CACHE_BYTES),
        })
    }

    /// The JWK Set (`/.well-known/jwks.json`), made once at start-up.
    pub fn jwks(&self) -> Bytes {
        self.jwks.clone()
    }

    /// The `kid` of the key that signs now.
    pub fn kid(&self) -> &str {
        &self.key.kid
    }

    /// The `X-Auth-Request-Assertion` value for `claims`, for the protected origin `audience`
    /// (`scheme://host[:port]`, from trusted forwarded headers; `None`: PUBLIC_URL's origin).
    pub fn header_for(
        &self,
        audience: Option<&str>,
        claims: &AssertionClaims,
    ) -> Result<HeaderValue, AssertionError> {
        self.header_at(now_unix(), audience, claims)
    }

    fn header_at(
        &self,
        now: u64,
        audience: Option<&str>,
        claims: &AssertionClaims,
    ) -> Result<HeaderValue, AssertionError> {
        let aud = audience.unwrap_or(&self.default_audience);
        let email = claims.email.map(str::as_bytes);
        let key = digest(
            [aud.as_bytes(), claims.subject.as_bytes()]
                .into_iter()
                // "No email" and an empty email must differ.
                .chain([email.map_or(b"-".as_slice(), |_| b"+".as_slice())])
                .chain(email)
                .chain(claims.groups.iter().map(String::as_bytes)),
        );
        if let Some(signed) = self.cache.get(&key, |s| now < s.renew_at) {
            return Ok(signed.value);
        }
        let token = self.sign(now, aud, claims);
        let weight = token.len() + 128;
        let mut value = HeaderValue::from_str(&token).map_err(|_| AssertionError::Header)?;
        value.set_sensitive(true);
        let renew_at = (now + self.ttl).saturating_sub(self.ttl.div_ceil(4));
        self.cache.insert(
            key,
            Signed {
                value: value.clone(),
                renew_at,
            },
            weight,
        );
        Ok(value)
    }

    fn sign(&self, now: u64, aud: &str, claims: &AssertionClaims) -> String {
        let payload = Payload {
            iss: &self.issuer,
            aud,
            sub: claims.subject,
            email: claims.email,
            groups: claims.groups,
            iat: now,
            exp: now + self.ttl,
        };
        // Strings and numbers only: serialising cannot fail.
        let payload = serde_json::to_vec(&payload).unwrap_or_default();
        let mut token = String::with_capacity(self.header.len() + payload.len() * 2 + 100);
        token.push_str(&self.header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
        let signature = self.key.pair.sign(token.as_bytes());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.as_ref(), &mut token);
        token
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use jsonwebtoken::{Algorithm, DecodingKey, Validation};
    use secrecy::SecretBox;

    use super::*;

    fn session(secret: &[u8], previous: &[&[u8]]) -> SessionSettings {
        SessionSettings {
            secret: Arc::new(SecretBox::new(Box::new(secret.to_vec()))),
            previous_secrets: Arc::new(
                previous
                    .iter()
                    .map(|p| SecretBox::new(Box::new(p.to_vec())))
                    .collect(),
            ),
            cookie_name: "gatehouse".into(),
            cookie_secure: true,
            cookie_domain: None,
            ttl: Duration::from_secs(60),
            signin_ttl: Duration::from_secs(60),
            max_lifetime: None,
        }
    }

    fn assertions(secret: &[u8], previous: &[&[u8]], ttl: u64) -> Assertions {
        let url = Url::parse("https://auth.example.com/").expect("url");
        Assertions::new(&session(secret, previous), &url, Duration::from_secs(ttl)).expect("keys")
    }

    fn groups() -> Vec<String> {
        vec!["admins".into(), "staff".into()]
    }

    /// Verified with jsonwebtoken and the `x` of the published key: not our signing code.
    fn verify(a: &Assertions, token: &str, aud: &str) -> serde_json::Value {
        let jwks: serde_json::Value = serde_json::from_slice(&a.jwks()).expect("jwks");
        let x = jwks["keys"][0]["x"].as_str().expect("x");
        let key = DecodingKey::from_ed_components(x).expect("key");
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_audience(&[aud]);
        validation.set_issuer(&["https://auth.example.com"]);
        validation.validate_exp = false;
        jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
            .expect("verifies")
            .claims
    }

    #[test]
    fn claims_and_signature() {
        let a = assertions(b"secret", &[], 120);
        let g = groups();
        let claims = AssertionClaims {
            subject: "ann",
            email: Some("ann@example.com"),
            groups: &g,
        };
        let value = a
            .header_at(1_000, Some("https://app.example.com"), &claims)
            .expect("header");
        assert!(value.is_sensitive());
        let token = value.to_str().expect("ascii");
        let header = jsonwebtoken::decode_header(token).expect("header");
        assert_eq!(header.alg, Algorithm::EdDSA);
        assert_eq!(header.kid.as_deref(), Some(a.kid()));
        let got = verify(&a, token, "https://app.example.com");
        assert_eq!(
            got,
            serde_json::json!({
                "iss": "https://auth.example.com", "aud": "https://app.example.com",
                "sub": "ann", "email": "ann@example.com", "groups": ["admins", "staff"],
                "iat": 1_000, "exp": 1_120
            })
        );
        let no_email = AssertionClaims {
            subject: "ann",
            email: None,
            groups: &[],
        };
        let value = a.header_at(1_000, None, &no_email).expect("header");
        let got = verify(
            &a,
            value.to_str().expect("ascii"),
            "https://auth.example.com",
        );
        assert!(got.get("email").is_none(), "{got}");
        assert_eq!(got["groups"], serde_json::json!([]));
    }

    #[test]
    fn reused_until_a_quarter_of_its_life_is_left() {
        let a = assertions(b"secret", &[], 120);
        let g = groups();
        let claims = AssertionClaims {
            subject: "ann",
            email: None,
            groups: &g,
        };
        let first = a.header_at(1_000, None, &claims).expect("header");
        let same = a.header_at(1_089, None, &claims).expect("header");
        assert_eq!(first, same, "reused while more than 30 s of 120 are left");
        let renewed = a.header_at(1_090, None, &claims).expect("header");
        assert_ne!(first, renewed);
        let got = verify(
            &a,
            renewed.to_str().expect("ascii"),
            "https://auth.example.com",
        );
        assert_eq!(
            (got["iat"].as_u64(), got["exp"].as_u64()),
            (Some(1_090), Some(1_210))
        );
    }

    #[test]
    fn other_claims_or_audience_never_get_a_cached_assertion() {
        let a = assertions(b"secret", &[], 120);
        let g = groups();
        let base = AssertionClaims {
            subject: "ann",
            email: None,
            groups: &g,
        };
        let first = a.header_at(1_000, None, &base).expect("header");
        let fewer = ["admins".to_owned()];
        let variants = [
            AssertionClaims {
                groups: &fewer,
                ..base
            },
            AssertionClaims {
                email: Some("ann@example.com"),
                ..base
            },
            AssertionClaims {
                email: Some(""),
                ..base
            },
            AssertionClaims {
                subject: "bob",
                ..base
            },
        ];
        for claims in &variants {
            assert_ne!(a.header_at(1_001, None, claims).expect("header"), first);
        }
        let other_aud = a
            .header_at(1_001, Some("https://other.example.com"), &base)
            .expect("header");
        assert_ne!(other_aud, first);
        assert_eq!(a.header_at(1_001, None, &base).expect("header"), first);
    }

    #[test]
    fn a_one_second_lifetime_is_never_reused() {
        let a = assertions(b"secret", &[], 1);
        let claims = AssertionClaims {
            subject: "ann",
            email: None,
            groups: &[],
        };
        let first = a.header_at(1_000, None, &claims).expect("header");
        let next = a.header_at(1_001, None, &claims).expect("header");
        assert_ne!(first, next);
    }

    #[test]
    fn rotation_publishes_current_and_previous_keys() {
        let old = assertions(b"old secret", &[], 120);
        let new = assertions(b"new secret", &[b"old secret", b"new secret"], 120);
        let jwks: serde_json::Value = serde_json::from_slice(&new.jwks()).expect("jwks");
        let kids: Vec<&str> = jwks["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .filter_map(|k| k["kid"].as_str())
            .collect();
        assert_eq!(
            kids,
            vec![new.kid(), old.kid()],
            "current first, no duplicate"
        );
    }
}
