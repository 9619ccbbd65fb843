//! The provider's signing keys (its JWKS), for ID-token signatures.
//!
//! Fetched on first use through the provider's bounded HTTP client and kept in memory. When a
//! token names a key we do not hold (the provider rotated its keys), the set is fetched again,
//! but at most once per [`REFETCH_INTERVAL`]: otherwise anyone able to put tokens with made-up
//! `kid`s in front of us (a hostile token endpoint, or a flood of forged callbacks reaching the
//! exchange) could make us hammer the provider. A set older than [`MAX_AGE`] is fetched again on
//! next use, so a key the provider withdrew stops being trusted; if that fetch fails the old set
//! is kept (an outage of the JWKS endpoint must not stop sign-ins signed by a known key).
//!
//! Only asymmetric keys for the algorithms in [`allowed_algorithm`] are kept: `oct` (HMAC) keys
//! are dropped, so an HS* token can never verify, whatever key it names.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use url::Url;

use super::ProviderError;

/// At most one fetch for an unknown `kid` per this interval. Ten seconds is short next to any
/// real rotation (providers publish a new key well before they sign with it, so only a cache
/// filled before the publication misses it) and long enough that a flood costs the provider one
/// request per interval. Also the pause after a failed renewal of a stale set.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(10);

/// A cached set older than this is fetched again on next use.
pub const MAX_AGE: Duration = Duration::from_secs(3600);

/// The signature algorithms we accept. Never `none`, never HS* (a symmetric algorithm with a
/// public key is the classic key-confusion attack), never anything else.
pub fn allowed_algorithm(name: &str) -> Option<Algorithm> {
    Some(match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        _ => return None,
    })
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("the provider's signing keys could not be fetched: {0}")]
    Unavailable(String),
    #[error("no signing key of the provider matches the token's kid and alg")]
    UnknownKey,
    #[error("the signature does not verify")]
    BadSignature,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Rsa,
    P256,
    P384,
}

/// One usable verification key.
struct Key {
    kid: Option<String>,
    /// The JWK's own `alg`, when it names one: then only that algorithm may use the key.
    alg: Option<String>,
    kind: Kind,
    key: DecodingKey,
}

impl Key {
    /// Whether `alg` may be verified with this key: the key type must be the algorithm's.
    /// This is also what keeps `jsonwebtoken::crypto::verify` on its safe paths (an EC
    /// algorithm with an RSA key would reach an `unreachable!` there).
    fn fits(&self, alg: Algorithm) -> bool {
        use Algorithm::*;
        let kind_fits = match alg {
            RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => self.kind == Kind::Rsa,
            ES256 => self.kind == Kind::P256,
            ES384 => self.kind == Kind::P384,
            _ => false,
        };
        kind_fits
            && self
                .alg
                .as_deref()
                .is_none_or(|a| allowed_algorithm(a) == Some(alg))
    }

    fn verifies(&self, signing_input: &[u8], signature: &str, alg: Algorithm) -> bool {
        self.fits(alg)
            && jsonwebtoken::crypto::verify(signature, signing_input, &self.key, alg)
                .unwrap_or(false)
    }
}

/// A JWK as published; unknown members are ignored.
#[derive(Deserialize)]
struct RawKey {
    kty: String,
    kid: Option<String>,
    #[serde(rename = "use")]
    usage: Option<String>,
    key_ops: Option<Vec<String>>,
    alg: Option<String>,
    n: Option<String>,
    e: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

/// Keeps the keys usable for signature verification; skips (does not fail on) the others, so
/// an encryption key or a key type we do not know does not take the whole set down.
fn parse_set(body: &[u8]) -> Result<Vec<Key>, String> {
    let set: RawSet =
        serde_json::from_slice(body).map_err(|_| "the JWKS is not a JSON key set".to_owned())?;
    let keys: Vec<Key> = set
        .keys
        .into_iter()
        .filter_map(|value| serde_json::from_value::<RawKey>(value).ok())
        .filter_map(usable)
        .collect();
    Ok(keys)
}

fn usable(raw: RawKey) -> Option<Key> {
    if raw.usage.as_deref().is_some_and(|u| u != "sig") {
        return None;
    }
    if raw
        .key_ops
        .as_ref()
        .is_some_and(|ops| !ops.iter().any(|op| op == "verify"))
    {
        return None;
    }
    if let Some(alg) = raw.alg.as_deref() {
        allowed_algorithm(alg)?;
    }
    let (kind, key) = match raw.kty.as_str() {
        "RSA" => (
            Kind::Rsa,
            DecodingKey::from_rsa_components(raw.n.as_deref()?, raw.e.as_deref()?).ok()?,
        ),
        "EC" => {
            let kind = match raw.crv.as_deref()? {
                "P-256" => Kind::P256,
                "P-384" => Kind::P384,
                _ => return None,
            };
            (
                kind,
                DecodingKey::from_ec_components(raw.x.as_deref()?, raw.y.as_deref()?).ok()?,
            )
        }
        _ => return None,
    };
    Some(Key {
        kid: raw.kid,
        alg: raw.alg,
        kind,
        key,
    })
}

struct Cached {
    keys: Vec<Key>,
    fetched_at: Instant,
}

impl Cached {
    fn fresh(&self, now: Instant) -> bool {
        now.duration_since(self.fetched_at) < MAX_AGE
    }

    fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'a Key> + 'a {
        self.keys.iter().filter(move |k| {
            k.fits(alg)
                && match kid {
                    // A token that names its key is checked with that key only.
                    Some(kid) => k.kid.as_deref() == Some(kid),
                    // OIDC Core 10.1: without a kid the set should hold one key; try those
                    // that fit the algorithm.
                    None => true,
                }
        })
    }

    fn verify(
        &self,
        signing_input: &[u8],
        signature: &str,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<(), KeyError> {
        let mut candidates = self.candidates(kid, alg).peekable();
        if candidates.peek().is_none() {
            return Err(KeyError::UnknownKey);
        }
        if candidates.any(|k| k.verifies(signing_input, signature, alg)) {
            Ok(())
        } else {
            Err(KeyError::BadSignature)
        }
    }
}

#[derive(Default)]
struct FetchState {
    /// When the set was last fetched because a token named an unknown key (rate limited).
    last_refetch: Option<Instant>,
    /// When a fetch last failed (a stale set is then kept for a while before asking again).
    last_failure: Option<Instant>,
}

fn within(since: Option<Instant>, now: Instant) -> bool {
    since.is_some_and(|t| now.duration_since(t) < REFETCH_INTERVAL)
}

/// The provider's JWKS at `url`, cached.
pub struct KeySet {
    url: Url,
    http: oauth2::reqwest::Client,
    cache: RwLock<Option<Arc<Cached>>>,
    /// Held while deciding on and making a fetch: one fetch at a time, and the rate limit's
    /// bookkeeping lives under it.
    fetching: tokio::sync::Mutex<FetchState>,
}

impl KeySet {
    pub fn new(url: Url, http: oauth2::reqwest::Client) -> KeySet {
        KeySet {
            url,
            http,
            cache: RwLock::new(None),
            fetching: tokio::sync::Mutex::new(FetchState::default()),
        }
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    fn snapshot(&self) -> Option<Arc<Cached>> {
        self.cache.read().ok().and_then(|c| c.clone())
    }

    fn store(&self, keys: Vec<Key>) -> Arc<Cached> {
        let cached = Arc::new(Cached {
            keys,
            fetched_at: Instant::now(),
        });
        if let Ok(mut slot) = self.cache.write() {
            *slot = Some(Arc::clone(&cached));
        }
        cached
    }

    /// Verifies a JWS signature (`signing_input` = `header.payload` as sent, `signature` its
    /// base64url third part) made with `alg`, which the caller took from the allow-list.
    pub async fn verify(
        &self,
        signing_input: &[u8],
        signature: &str,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<(), KeyError> {
        // The common case: a fresh set that holds the key; no lock, no I/O.
        if let Some(cached) = self.snapshot() {
            if cached.fresh(Instant::now()) && cached.candidates(kid, alg).next().is_some() {
                return cached.verify(signing_input, signature, kid, alg);
            }
        }

        let mut state = self.fetching.lock().await;
        let now = Instant::now();
        let current = self.snapshot();
        match current {
            Some(cached) if cached.fresh(now) => {
                if cached.candidates(kid, alg).next().is_some() {
                    // Someone fetched it while we waited.
                    return cached.verify(signing_input, signature, kid, alg);
                }
                // Also when someone refetched for this very key while we waited: the set is
                // then as new as it gets.
                if within(state.last_refetch, now) {
                    tracing::debug!("unknown signing key; JWKS refetch rate limited");
                    return Err(KeyError::UnknownKey);
                }
                state.last_refetch = Some(now);
                tracing::info!("ID token names an unknown signing key; refetching the JWKS");
                match self.fetch().await {
                    Ok(keys) => self.store(keys).verify(signing_input, signature, kid, alg),
                    Err(e) => {
                        state.last_failure = Some(Instant::now());
                        tracing::warn!(error = %e, "JWKS refetch failed");
                        Err(KeyError::UnknownKey)
                    }
                }
            }
            Some(stale) => {
                if within(state.last_failure, now) {
                    return stale.verify(signing_input, signature, kid, alg);
                }
                match self.fetch().await {
                    Ok(keys) => self.store(keys).verify(signing_input, signature, kid, alg),
                    Err(e) => {
                        state.last_failure = Some(Instant::now());
                        tracing::warn!(error = %e, "JWKS renewal failed; keeping the previous keys");
                        stale.verify(signing_input, signature, kid, alg)
                    }
                }
            }
            None => match self.fetch().await {
                Ok(keys) => self.store(keys).verify(signing_input, signature, kid, alg),
                Err(e) => {
                    state.last_failure = Some(Instant::now());
                    Err(KeyError::Unavailable(e.to_string()))
                }
            },
        }
    }

    async fn fetch(&self) -> Result<Vec<Key>, ProviderError> {
        let body = super::http::body(self.http.get(self.url.clone())).await?;
        let keys = parse_set(&body).map_err(ProviderError::Malformed)?;
        if keys.is_empty() {
            tracing::warn!("the provider's JWKS holds no usable signing key");
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA_JWK: &str = include_str!("../../tests/data/test-only-keys/rsa-jwk.json");
    const EC_JWK: &str = include_str!("../../tests/data/test-only-keys/ec-p256-jwk.json");

    fn with(jwk: &str, extra: serde_json::Value) -> serde_json::Value {
        let mut key: serde_json::Value = serde_json::from_str(jwk).expect("jwk");
        if let (Some(key), Some(extra)) = (key.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                key.insert(k.clone(), v.clone());
            }
        }
        key
    }

    fn set(keys: Vec<serde_json::Value>) -> Vec<Key> {
        parse_set(serde_json::json!({ "keys": keys }).to_string().as_bytes()).expect("set")
    }

    #[test]
    fn the_allow_list_has_no_none_and_no_hmac() {
        for refused in [
            "none", "None", "HS256", "HS384", "HS512", "EdDSA", "rs256", "",
        ] {
            assert_eq!(allowed_algorithm(refused), None, "{refused}");
        }
        for allowed in [
            "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
        ] {
            assert!(allowed_algorithm(allowed).is_some(), "{allowed}");
        }
    }

    #[test]
    fn keys_fit_only_their_algorithms() {
        let keys = set(vec![
            with(RSA_JWK, serde_json::json!({"kid": "r"})),
            with(EC_JWK, serde_json::json!({"kid": "e"})),
        ]);
        assert_eq!(keys.len(), 2);
        let rsa = &keys[0];
        let ec = &keys[1];
        assert!(rsa.fits(Algorithm::RS256) && rsa.fits(Algorithm::PS512));
        assert!(!rsa.fits(Algorithm::ES256) && !rsa.fits(Algorithm::HS256));
        assert!(ec.fits(Algorithm::ES256));
        assert!(!ec.fits(Algorithm::ES384) && !ec.fits(Algorithm::RS256));
        assert!(!ec.fits(Algorithm::HS256));
    }

    #[test]
    fn a_jwk_alg_pins_the_algorithm() {
        let keys = set(vec![with(RSA_JWK, serde_json::json!({"alg": "PS256"}))]);
        assert!(keys[0].fits(Algorithm::PS256));
        assert!(!keys[0].fits(Algorithm::RS256));
    }

    #[test]
    fn unusable_keys_are_skipped_not_fatal() {
        let keys = set(vec![
            serde_json::json!({"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}),
            with(RSA_JWK, serde_json::json!({"use": "enc", "kid": "enc"})),
            with(
                RSA_JWK,
                serde_json::json!({"key_ops": ["encrypt"], "kid": "ops"}),
            ),
            with(
                RSA_JWK,
                serde_json::json!({"alg": "RSA-OAEP", "kid": "oaep"}),
            ),
            serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}),
            serde_json::json!({"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"}),
            serde_json::json!({"kty": "RSA", "kid": "no-n"}),
            serde_json::json!("not an object"),
            with(RSA_JWK, serde_json::json!({"use": "sig", "kid": "good"})),
        ]);
        let kids: Vec<_> = keys.iter().map(|k| k.kid.clone()).collect();
        assert_eq!(kids, vec![Some("good".to_owned())]);
        assert!(parse_set(b"{\"not\":\"a set\"}").is_err());
        assert!(parse_set(b"<html>").is_err());
    }
}
