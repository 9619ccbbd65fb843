//! The assertion's signing key and the public key set (JWKS) apps verify it with.
//!
//! Ed25519 keys are derived from the session secret, so every instance that shares the secret
//! signs with the same key and serves the same set, with no key to distribute or store. Keys
//! derived from `SESSION__PREVIOUS_SECRETS` are published too: after a rotation, assertions that
//! instances still on the old secret sign (or signed a minute ago) keep verifying.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{Ed25519KeyPair, KeyPair};
use secrecy::ExposeSecret;

use crate::config::SessionSettings;

/// The HKDF purpose label of the assertion key; changing it changes every instance's key.
const PURPOSE: &str = "assertion-ed25519";

/// One Ed25519 key with its JWK `kid`.
pub struct SigningKey {
    pub pair: Ed25519KeyPair,
    pub kid: String,
}

impl SigningKey {
    /// Fails only if ring refuses a 32-byte seed, which it does not.
    pub fn derive(secret: &[u8]) -> Result<SigningKey, ring::error::KeyRejected> {
        let seed = crate::keys::derive(secret, PURPOSE);
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed)?;
        let kid = thumbprint(&x(&pair));
        Ok(SigningKey { pair, kid })
    }

    fn jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": x(&self.pair),
            "kid": self.kid,
            "use": "sig",
            "alg": "EdDSA",
        })
    }
}

/// The public key, base64url: the JWK's `x` (RFC 8037).
fn x(pair: &Ed25519KeyPair) -> String {
    URL_SAFE_NO_PAD.encode(pair.public_key().as_ref())
}

/// RFC 7638: SHA-256 of the required members in lexicographic order, no whitespace.
pub fn thumbprint(x: &str) -> String {
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        canonical.as_bytes(),
    ))
}

/// The current key (signs) and the key set (current first, then each previous secret's).
pub fn from_settings(
    session: &SessionSettings,
) -> Result<(SigningKey, Vec<u8>), ring::error::KeyRejected> {
    let current = SigningKey::derive(session.secret.expose_secret())?;
    let mut keys = vec![current.jwk()];
    for previous in session.previous_secrets.iter() {
        let key = SigningKey::derive(previous.expose_secret())?;
        if keys.iter().all(|k| k["kid"] != key.kid.as_str()) {
            keys.push(key.jwk());
        }
    }
    let jwks = serde_json::json!({ "keys": keys }).to_string().into_bytes();
    Ok((current, jwks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_8037_example_key_has_the_rfc_thumbprint() {
        // RFC 8037 appendix A.1 (the key) and A.3 (its RFC 7638 thumbprint).
        assert_eq!(
            thumbprint("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn one_secret_one_key_and_secrets_differ() {
        let a = SigningKey::derive(b"one secret").expect("key");
        let b = SigningKey::derive(b"one secret").expect("key");
        let c = SigningKey::derive(b"another secret").expect("key");
        assert_eq!(a.kid, b.kid);
        assert_eq!(a.pair.public_key().as_ref(), b.pair.public_key().as_ref());
        assert_ne!(a.kid, c.kid);
        let jwk = a.jwk();
        assert_eq!(jwk["kid"], a.kid.as_str());
        assert_eq!(jwk["alg"], "EdDSA");
        assert_eq!(jwk["use"], "sig");
        assert!(jwk.get("d").is_none(), "never the private part");
    }
}
