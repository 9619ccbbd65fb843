//! Bearer tokens on `/auth` (`BEARER__*`): API clients send `Authorization: Bearer <JWT>`.
//!
//! A token is verified like an ID token — its signature against the JWKS of the issuer its
//! `iss` names (the provider's, or one of `BEARER__EXTRA_ISSUERS`; any other is refused), with
//! an allow-listed asymmetric algorithm, then `exp`/`nbf` with leeway — except for the
//! audience: one of its `aud` values must be in `BEARER__AUDIENCES`. Nothing is written to
//! Redis, and a token is verified once: the result is kept in memory under the token's SHA-256
//! until it expires, so the next requests with it cost a hash and a lookup.

mod claims;
mod issuers;

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{HeaderMap, AUTHORIZATION};

pub use claims::VerifiedToken;
use claims::{check, Expect};
use issuers::{ExtraIssuers, Lookup};

use crate::cache::{digest, BoundedCache};
use crate::config::BearerSettings;
use crate::identity::now_unix;
use crate::oauth::jwks::KeySet;
use crate::oauth::jws::{Jws, JwsError};

/// Longer tokens are refused before any work; real access tokens are a few KiB at most.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Verified tokens kept at once, and the bytes their identities may take.
const CACHE_ENTRIES: usize = 20_000;
const CACHE_BYTES: usize = 32 * 1024 * 1024;

/// Header `typ` values of access tokens (RFC 9068, and the generic one most providers write).
/// Other types (`logout+jwt`, `dpop+jwt`, …) are other kinds of token and are refused.
const ACCESS_TOKEN_TYPES: &[&str] = &["jwt", "at+jwt", "application/at+jwt"];

/// Why a bearer token was refused. Texts name the check, never the token.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum BearerError {
    #[error("the Authorization header does not carry a well-formed bearer token")]
    Malformed,
    #[error("the token is longer than {MAX_TOKEN_LEN} bytes")]
    TooLong,
    #[error(transparent)]
    Jws(#[from] JwsError),
    #[error("the token's type is not an access token's")]
    Type,
    #[error("the token's claims are not a JSON object")]
    Claims,
    #[error("the token's issuer is missing or not accepted")]
    Issuer,
    #[error("none of the token's audiences is accepted")]
    Audience,
    #[error("the token has expired (or has no exp)")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token has no subject")]
    Subject,
    #[error("the issuer's signing keys are not available yet")]
    KeysUnavailable,
}

impl BearerError {
    /// Our fault or the issuer's, not the token's: answered 503, not 401.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            BearerError::KeysUnavailable | BearerError::Jws(JwsError::KeysUnavailable(_))
        )
    }
}

/// The token in `Authorization: Bearer <token>`. `None` when there is no such header or it
/// uses another scheme (Basic for the app itself, say): the session cookie decides then.
pub fn token_in(headers: &HeaderMap) -> Option<Result<&str, BearerError>> {
    let bytes = headers.get(AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = match bytes.iter().position(|b| *b == b' ') {
        Some(space) => (&bytes[..space], &bytes[space + 1..]),
        None => (bytes, &[][..]),
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    // RFC 6750 2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
    let Ok(token) = std::str::from_utf8(rest).map(str::trim) else {
        return Some(Err(BearerError::Malformed));
    };
    let body = token.trim_end_matches('=');
    let well_formed = !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b));
    Some(if well_formed {
        Ok(token)
    } else {
        Err(BearerError::Malformed)
    })
}

pub struct Bearer {
    audiences: Vec<String>,
    /// The provider's issuer, without a trailing slash (tokens naming it use its JWKS).
    provider_issuer: Option<String>,
    extra: ExtraIssuers,
    groups_claim: Vec<String>,
    claim_paths: Vec<Vec<String>>,
    cache: BoundedCache<Arc<VerifiedToken>>,
}

impl Bearer {
    /// Starts discovery of the extra issuers in the background (needs a Tokio runtime).
    /// `provider_issuer` is `PROVIDER__ISSUER`; `timeout` bounds each call to an extra issuer
    /// (`PROVIDER__TIMEOUT_SECS`). `groups_claim` is `ACCESS__GROUPS_CLAIM`'s path;
    /// `claim_paths` the claims whose values the caller wants in [`VerifiedToken::claims`]
    /// (the claim headers).
    pub fn start(
        settings: &BearerSettings,
        provider_issuer: Option<&str>,
        timeout: Duration,
        groups_claim: Vec<String>,
        claim_paths: Vec<Vec<String>>,
    ) -> Result<Bearer, String> {
        let http = oauth2::reqwest::Client::builder()
            .redirect(oauth2::reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Bearer {
            audiences: settings.audiences.clone(),
            provider_issuer: provider_issuer.map(str::to_owned),
            extra: ExtraIssuers::start(&settings.extra_issuers, http),
            groups_claim,
            claim_paths,
            cache: BoundedCache::new(CACHE_ENTRIES, CACHE_BYTES),
        })
    }

    /// Verifies `token`; `provider_keys` are the provider's signing keys (`None` while the
    /// provider is not ready). A token seen before and not expired is answered from memory.
    pub async fn verify(
        &self,
        token: &str,
        provider_keys: Option<&KeySet>,
    ) -> Result<Arc<VerifiedToken>, BearerError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(refused(BearerError::TooLong));
        }
        let now = now_unix();
        let key = digest([token.as_bytes()]);
        if let Some(known) = self.cache.get(&key, |t| t.live_at(now)) {
            return Ok(known);
        }
        let verified = Arc::new(
            self.verify_now(token, provider_keys, now)
                .await
                .map_err(refused)?,
        );
        self.cache
            .insert(key, Arc::clone(&verified), verified.weight());
        Ok(verified)
    }

    async fn verify_now(
        &self,
        token: &str,
        provider_keys: Option<&KeySet>,
        now: u64,
    ) -> Result<VerifiedToken, BearerError> {
        let jws = Jws::parse(token)?;
        if let Some(typ) = &jws.header.typ {
            if !ACCESS_TOKEN_TYPES
                .iter()
                .any(|t| typ.eq_ignore_ascii_case(t))
            {
                return Err(BearerError::Type);
            }
        }
        let claims: serde_json::Map<String, serde_json::Value> =
            jws.claims().ok_or(BearerError::Claims)?;
        let issuer = claims
            .get("iss")
            .and_then(|v| v.as_str())
            .map(|s| s.trim_end_matches('/'))
            .ok_or(BearerError::Issuer)?;
        let keys = if self.provider_issuer.as_deref() == Some(issuer) {
            provider_keys.ok_or(BearerError::KeysUnavailable)?
        } else {
            match self.extra.lookup(issuer) {
                Lookup::Ready(keys) => keys,
                Lookup::Pending => return Err(BearerError::KeysUnavailable),
                Lookup::Unknown => return Err(BearerError::Issuer),
            }
        };
        // The cheap checks first: a stale or misdirected token costs no signature check.
        let verified = check(
            issuer,
            &claims,
            &Expect {
                audiences: &self.audiences,
                groups_claim: &self.groups_claim,
                claim_paths: &self.claim_paths,
                now,
            },
        )?;
        jws.verify(keys).await?;
        Ok(verified)
    }
}

fn refused(e: BearerError) -> BearerError {
    if e.is_unavailable() {
        tracing::warn!(reason = %e, "bearer token not checked: signing keys unavailable");
    } else {
        tracing::info!(reason = %e, "bearer token refused");
    }
    e
}

#[cfg(test)]
mod tests;
