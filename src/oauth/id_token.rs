//! ID-token claim checks (OpenID Connect Core 3.1.3.7).
//!
//! The token comes straight from the token endpoint over a connection we opened (TLS in
//! production), which OIDC Core allows as the basis of trust for the code flow. Signature
//! verification against the provider's JWKS is the next step (issue: tokens and identity).

use base64::Engine;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::identity::Identity;

/// Clock skew we tolerate on `exp`.
const LEEWAY_SECS: u64 = 60;

pub struct Expectations<'a> {
    pub client_id: &'a str,
    pub issuer: Option<&'a str>,
    pub nonce: Option<&'a str>,
    pub now: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdTokenError {
    #[error("not a JWS compact token")]
    Format,
    #[error("unsigned tokens (alg none) are refused")]
    Unsigned,
    #[error("claims are not valid JSON")]
    Claims,
    #[error("issuer does not match")]
    Issuer,
    #[error("audience does not contain the client id")]
    Audience,
    #[error("authorized party is not the client id")]
    AuthorizedParty,
    #[error("token has expired")]
    Expired,
    #[error("nonce does not match the sign-in")]
    Nonce,
    #[error("subject is empty")]
    Subject,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, id: &str) -> bool {
        match self {
            Audience::One(a) => a == id,
            Audience::Many(list) => list.iter().any(|a| a == id),
        }
    }

    fn len(&self) -> usize {
        match self {
            Audience::One(_) => 1,
            Audience::Many(list) => list.len(),
        }
    }
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: Audience,
    exp: u64,
    nonce: Option<String>,
    azp: Option<String>,
    email: Option<String>,
    email_verified: Option<bool>,
    name: Option<String>,
    preferred_username: Option<String>,
}

fn decode_part<T: serde::de::DeserializeOwned>(part: &str) -> Option<T> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

pub fn verify_claims(token: &str, expect: &Expectations) -> Result<Identity, IdTokenError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(IdTokenError::Format);
    };
    let header: Header = decode_part(header).ok_or(IdTokenError::Format)?;
    if header.alg.eq_ignore_ascii_case("none") {
        return Err(IdTokenError::Unsigned);
    }
    let claims: Claims = decode_part(payload).ok_or(IdTokenError::Claims)?;
    if let Some(issuer) = expect.issuer {
        if claims.iss.trim_end_matches('/') != issuer.trim_end_matches('/') {
            return Err(IdTokenError::Issuer);
        }
    }
    if !claims.aud.contains(expect.client_id) {
        return Err(IdTokenError::Audience);
    }
    if (claims.aud.len() > 1 || claims.azp.is_some())
        && claims.azp.as_deref() != Some(expect.client_id)
    {
        return Err(IdTokenError::AuthorizedParty);
    }
    if claims.exp.saturating_add(LEEWAY_SECS) <= expect.now {
        return Err(IdTokenError::Expired);
    }
    if let Some(expected) = expect.nonce {
        let got = claims.nonce.as_deref().unwrap_or("");
        if !bool::from(got.as_bytes().ct_eq(expected.as_bytes())) {
            return Err(IdTokenError::Nonce);
        }
    }
    if claims.sub.is_empty() {
        return Err(IdTokenError::Subject);
    }
    Ok(Identity {
        subject: claims.sub,
        email: claims.email,
        email_verified: claims.email_verified,
        name: claims.name,
        preferred_username: claims.preferred_username,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(v: &serde_json::Value) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    }

    fn token(header: serde_json::Value, claims: serde_json::Value) -> String {
        format!("{}.{}.c2ln", b64(&header), b64(&claims))
    }

    fn good_claims() -> serde_json::Value {
        serde_json::json!({
            "iss": "https://idp.example", "sub": "alice", "aud": "gh", "exp": 2_000,
            "nonce": "n-1", "email": "alice@example.com", "name": "Alice"
        })
    }

    fn expect() -> Expectations<'static> {
        Expectations {
            client_id: "gh",
            issuer: Some("https://idp.example/"),
            nonce: Some("n-1"),
            now: 1_000,
        }
    }

    fn check(claims: serde_json::Value) -> Result<Identity, IdTokenError> {
        verify_claims(
            &token(serde_json::json!({"alg": "RS256"}), claims),
            &expect(),
        )
    }

    #[test]
    fn accepts_matching_claims() {
        let id = check(good_claims()).expect("valid");
        assert_eq!(id.subject, "alice");
        assert_eq!(id.email.as_deref(), Some("alice@example.com"));
    }

    #[test]
    fn refuses_each_wrong_claim() {
        let cases = [
            ("nonce", serde_json::json!("other"), IdTokenError::Nonce),
            (
                "aud",
                serde_json::json!("someone-else"),
                IdTokenError::Audience,
            ),
            (
                "aud",
                serde_json::json!(["gh", "x"]),
                IdTokenError::AuthorizedParty,
            ),
            (
                "iss",
                serde_json::json!("https://evil.example"),
                IdTokenError::Issuer,
            ),
            ("exp", serde_json::json!(100), IdTokenError::Expired),
            ("sub", serde_json::json!(""), IdTokenError::Subject),
        ];
        for (field, value, want) in cases {
            let mut claims = good_claims();
            claims[field] = value;
            assert_eq!(check(claims).err(), Some(want), "{field}");
        }
        let mut no_nonce = good_claims();
        no_nonce.as_object_mut().map(|o| o.remove("nonce"));
        assert_eq!(check(no_nonce).err(), Some(IdTokenError::Nonce));
    }

    #[test]
    fn refuses_unsigned_and_garbage() {
        let unsigned = token(serde_json::json!({"alg": "none"}), good_claims());
        assert_eq!(
            verify_claims(&unsigned, &expect()).err(),
            Some(IdTokenError::Unsigned)
        );
        assert_eq!(
            verify_claims("a.b", &expect()).err(),
            Some(IdTokenError::Format)
        );
        assert_eq!(
            verify_claims("!!.!!.!!", &expect()).err(),
            Some(IdTokenError::Format)
        );
    }
}
