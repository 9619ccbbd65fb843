//! ID tokens (OpenID Connect Core 3.1.3.7): signature against the provider's JWKS, then claims.
//!
//! With a JWKS (from `PROVIDER__JWKS_URL` or discovery) the signature is verified first, with
//! an algorithm from the allow-list whose key type matches the key (see `jwks`). Without one
//! (no issuer and no JWKS URL configured) only the claims are checked: the token then comes
//! straight from the token endpoint over a connection we opened, which OIDC Core allows as the
//! basis of trust for the code flow; the provider warns about that once at start.

use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::jwks::KeySet;
use super::jws::{Jws, JwsError};
use crate::identity::Identity;

/// Clock skew we tolerate on `exp` and `iat`.
const LEEWAY_SECS: u64 = 60;

#[derive(Default)]
pub struct Expectations<'a> {
    pub client_id: &'a str,
    /// Audiences trusted besides the client id (`PROVIDER__EXTRA_AUDIENCES`).
    pub extra_audiences: &'a [String],
    pub issuer: Option<&'a str>,
    /// The pending sign-in's nonce, compared in constant time. `None` skips the check: only for
    /// ID tokens from a refresh, which OIDC Core 12.2 lets carry no nonce.
    pub nonce: Option<&'a str>,
    pub now: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdTokenError {
    #[error("not a JWS compact token")]
    Format,
    #[error("unsigned tokens (alg none) are refused")]
    Unsigned,
    #[error("signature algorithm {0:?} is not accepted")]
    Algorithm(String),
    #[error("the token names critical header parameters we do not process")]
    Critical,
    #[error("no signing key of the provider matches the token")]
    UnknownKey,
    #[error("the signature does not verify")]
    Signature,
    #[error("signing keys unavailable: {0}")]
    KeysUnavailable(String),
    #[error("claims are not valid JSON")]
    Claims,
    #[error("issuer does not match")]
    Issuer,
    #[error("audience does not contain the client id")]
    Audience,
    #[error(
        "audience names a party that is neither the client id nor in PROVIDER__EXTRA_AUDIENCES"
    )]
    UntrustedAudience,
    #[error("authorized party is not the client id")]
    AuthorizedParty,
    #[error("token has expired")]
    Expired,
    #[error("issued-at time is missing or in the future")]
    IssuedAt,
    #[error("nonce does not match the sign-in")]
    Nonce,
    #[error("subject is empty")]
    Subject,
}

impl From<JwsError> for IdTokenError {
    fn from(e: JwsError) -> Self {
        match e {
            JwsError::Format => IdTokenError::Format,
            JwsError::Unsigned => IdTokenError::Unsigned,
            JwsError::Algorithm(alg) => IdTokenError::Algorithm(alg),
            JwsError::Critical => IdTokenError::Critical,
            JwsError::UnknownKey => IdTokenError::UnknownKey,
            JwsError::Signature => IdTokenError::Signature,
            JwsError::KeysUnavailable(why) => IdTokenError::KeysUnavailable(why),
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn values(&self) -> &[String] {
        match self {
            Audience::One(a) => std::slice::from_ref(a),
            Audience::Many(list) => list,
        }
    }
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: Audience,
    exp: u64,
    iat: Option<u64>,
    nonce: Option<String>,
    azp: Option<String>,
    email: Option<String>,
    email_verified: Option<bool>,
    name: Option<String>,
    preferred_username: Option<String>,
}

/// The full check: the signature against `keys` (when the provider has a JWKS), then the
/// claims. Every failure refuses the token; the error names the check, never the token.
pub async fn verify(
    token: &str,
    keys: Option<&KeySet>,
    expect: &Expectations<'_>,
) -> Result<Identity, IdTokenError> {
    let jws = Jws::parse(token)?;
    let claims: Claims = jws.claims().ok_or(IdTokenError::Claims)?;
    if let Some(keys) = keys {
        jws.verify(keys).await?;
    }
    let raw: serde_json::Map<String, serde_json::Value> =
        jws.claims().ok_or(IdTokenError::Claims)?;
    check_claims(claims, raw, expect)
}

/// Claims only, for providers without a JWKS (see the module comment).
pub fn verify_claims(token: &str, expect: &Expectations) -> Result<Identity, IdTokenError> {
    let jws = Jws::parse(token)?;
    let claims: Claims = jws.claims().ok_or(IdTokenError::Claims)?;
    let raw: serde_json::Map<String, serde_json::Value> =
        jws.claims().ok_or(IdTokenError::Claims)?;
    check_claims(claims, raw, expect)
}

fn check_claims(
    claims: Claims,
    raw: serde_json::Map<String, serde_json::Value>,
    expect: &Expectations,
) -> Result<Identity, IdTokenError> {
    // Exactly (Core 3.1.3.7 2): `https://idp.example/` is another issuer than `https://idp.example`.
    if let Some(issuer) = expect.issuer {
        if claims.iss != issuer {
            return Err(IdTokenError::Issuer);
        }
    }
    // Core 3.1.3.7 3: the client id must be an audience, and every other audience one we
    // trust. Core 3.1.3.7 (errata set 2): `azp`, when present, must be the client id.
    let audiences = claims.aud.values();
    if !audiences.iter().any(|a| a == expect.client_id) {
        return Err(IdTokenError::Audience);
    }
    if !audiences
        .iter()
        .all(|a| a == expect.client_id || expect.extra_audiences.contains(a))
    {
        return Err(IdTokenError::UntrustedAudience);
    }
    if claims
        .azp
        .as_deref()
        .is_some_and(|azp| azp != expect.client_id)
    {
        return Err(IdTokenError::AuthorizedParty);
    }
    if claims.exp.saturating_add(LEEWAY_SECS) <= expect.now {
        return Err(IdTokenError::Expired);
    }
    // OIDC Core 2: iat is required; one in the future (beyond the skew) was not issued for us now.
    match claims.iat {
        Some(iat) if iat <= expect.now.saturating_add(LEEWAY_SECS) => {}
        _ => return Err(IdTokenError::IssuedAt),
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
        raw_claims: raw,
        ..Identity::default()
    })
}

#[cfg(test)]
#[path = "id_token_tests.rs"]
mod tests;
