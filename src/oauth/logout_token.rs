//! OpenID Connect Back-Channel Logout 1.0: verifying a logout token (§2.4 and §2.6).
//!
//! In the spec's order: the signature (exactly as for ID tokens: the provider's JWKS and the
//! same algorithm allow-list, see `jws`), then `iss`, `aud` (contains the client id), `iat`
//! (present, not in the future beyond the leeway), `exp` when present, `jti` present, `events`
//! holding the back-channel logout event with a JSON object value, `sub` and/or `sid`, and no
//! `nonce` (which keeps an ID token from passing for a logout token). Last, the `jti` must not
//! have been seen before, on any instance ([`JtiRegistry`]); it is only recorded once every
//! other check has passed, so a token refused for another reason burns nothing.
//!
//! Replays: a token is accepted at most [`MAX_AGE_SECS`] after its `iat` (OIDC Core 3.1.3.7
//! lets a client bound `iat`'s age "limiting the amount of time that nonces need to be stored"),
//! and its `jti` is remembered a little longer than that window, so a replay is always refused.
//! Providers send logout tokens the moment a user signs out.

use std::future::Future;
use std::time::Duration;

use serde::Deserialize;

use super::jwks::KeySet;
use super::jws::{Jws, JwsError};

/// The member `events` must hold.
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// Clock skew tolerated on `iat` and `exp` (as for ID tokens).
pub const LEEWAY_SECS: u64 = 60;
/// A logout token older than this (by its `iat`) is refused.
pub const MAX_AGE_SECS: u64 = 600;
/// How long a `jti` is remembered: longer than any token carrying it can be accepted.
pub const JTI_MEMORY: Duration = Duration::from_secs(MAX_AGE_SECS + 2 * LEEWAY_SECS);

pub struct Expectations<'a> {
    /// The provider's issuer, exactly as for ID tokens (a trailing `/` is not significant).
    pub issuer: &'a str,
    pub client_id: &'a str,
    /// Unix seconds.
    pub now: u64,
}

/// Whose sessions end: by the provider's session id when given, else every session of `sub`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutTarget {
    pub sub: Option<String>,
    pub sid: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LogoutTokenError {
    #[error(transparent)]
    Jws(#[from] JwsError),
    #[error("claims are not a JSON object of the expected shape")]
    Claims,
    #[error("issuer does not match")]
    Issuer,
    #[error("audience does not contain the client id")]
    Audience,
    #[error("issued-at time is missing or in the future")]
    IssuedAt,
    #[error("the token was issued too long ago")]
    Stale,
    #[error("token has expired")]
    Expired,
    #[error("jti is missing")]
    Jti,
    #[error("events does not hold the back-channel logout event as a JSON object")]
    Events,
    #[error("neither sub nor sid is present")]
    NoTarget,
    #[error("a logout token must not carry a nonce")]
    Nonce,
    #[error("this logout token was already used")]
    Replayed,
    #[error("the replay check is unavailable: {0}")]
    ReplayCheck(String),
    /// Without an issuer and signing keys nothing can be verified: every token is refused.
    #[error("back-channel logout needs PROVIDER__ISSUER and the provider's signing keys (JWKS)")]
    NotConfigured,
}

impl LogoutTokenError {
    /// A failure on our side (keys or the replay store unreachable), not a bad token: the
    /// provider may try again later.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            LogoutTokenError::Jws(JwsError::KeysUnavailable(_)) | LogoutTokenError::ReplayCheck(_)
        )
    }
}

/// Remembers the `jti`s seen, across instances (`store::logout_jti` on Redis).
pub trait JtiRegistry {
    /// Records `jti` from `issuer` for `ttl`; `true` the first time, `false` when it was
    /// already recorded. An error (one line, no secret) when the record cannot be made.
    fn first_use(
        &self,
        issuer: &str,
        jti: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, String>>;
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
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    aud: Audience,
    iat: Option<u64>,
    exp: Option<u64>,
    jti: Option<String>,
    events: Option<serde_json::Map<String, serde_json::Value>>,
    sub: Option<String>,
    sid: Option<String>,
}

/// Verifies `token` (the `logout_token` form field) and records its `jti`. Every failure
/// refuses the token; the error names the check, never the token.
pub async fn verify(
    token: &str,
    keys: &KeySet,
    expect: &Expectations<'_>,
    jtis: &impl JtiRegistry,
) -> Result<LogoutTarget, LogoutTokenError> {
    let jws = Jws::parse(token)?;
    jws.verify(keys).await?;
    let raw: serde_json::Map<String, serde_json::Value> =
        jws.claims().ok_or(LogoutTokenError::Claims)?;
    let (target, jti) = check_claims(raw, expect)?;
    match jtis.first_use(expect.issuer, &jti, JTI_MEMORY).await {
        Ok(true) => Ok(target),
        Ok(false) => Err(LogoutTokenError::Replayed),
        Err(why) => Err(LogoutTokenError::ReplayCheck(why)),
    }
}

/// [`verify`] with what `provider` is configured with: its issuer, its JWKS, the client id.
pub async fn verify_for(
    provider: &super::Provider,
    token: &str,
    jtis: &impl JtiRegistry,
) -> Result<LogoutTarget, LogoutTokenError> {
    let (Some(issuer), Some(keys)) = (provider.issuer(), provider.keys()) else {
        return Err(LogoutTokenError::NotConfigured);
    };
    let expect = Expectations {
        issuer,
        client_id: &provider.settings().client_id,
        now: crate::identity::now_unix(),
    };
    verify(token, keys, &expect, jtis).await
}

/// §2.6 steps 3–6 on the decoded claims; returns the target and the `jti`.
fn check_claims(
    raw: serde_json::Map<String, serde_json::Value>,
    expect: &Expectations,
) -> Result<(LogoutTarget, String), LogoutTokenError> {
    // Present at all, even as null: §2.4 says a logout token MUST NOT contain one.
    let has_nonce = raw.contains_key("nonce");
    let claims: Claims = serde_json::from_value(serde_json::Value::Object(raw))
        .map_err(|_| LogoutTokenError::Claims)?;
    if claims.iss.trim_end_matches('/') != expect.issuer.trim_end_matches('/') {
        return Err(LogoutTokenError::Issuer);
    }
    if !claims.aud.contains(expect.client_id) {
        return Err(LogoutTokenError::Audience);
    }
    match claims.iat {
        Some(iat) if iat <= expect.now.saturating_add(LEEWAY_SECS) => {
            if iat.saturating_add(MAX_AGE_SECS) < expect.now {
                return Err(LogoutTokenError::Stale);
            }
        }
        _ => return Err(LogoutTokenError::IssuedAt),
    }
    if let Some(exp) = claims.exp {
        if exp.saturating_add(LEEWAY_SECS) <= expect.now {
            return Err(LogoutTokenError::Expired);
        }
    }
    let jti = claims
        .jti
        .filter(|j| !j.is_empty())
        .ok_or(LogoutTokenError::Jti)?;
    let event_ok = claims
        .events
        .as_ref()
        .and_then(|events| events.get(BACKCHANNEL_LOGOUT_EVENT))
        .is_some_and(serde_json::Value::is_object);
    if !event_ok {
        return Err(LogoutTokenError::Events);
    }
    let non_empty = |v: Option<String>| v.filter(|s| !s.is_empty());
    let target = LogoutTarget {
        sub: non_empty(claims.sub),
        sid: non_empty(claims.sid),
    };
    if target.sub.is_none() && target.sid.is_none() {
        return Err(LogoutTokenError::NoTarget);
    }
    if has_nonce {
        return Err(LogoutTokenError::Nonce);
    }
    Ok((target, jti))
}

#[cfg(test)]
#[path = "logout_token_tests.rs"]
mod tests;
