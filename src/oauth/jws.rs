//! Signed JWTs from the provider (compact JWS): split and decode them, and verify the signature
//! against the provider's JWKS with an algorithm from the allow-list. Shared by ID tokens and
//! back-channel logout tokens, so both get exactly the same signature rules.

use base64::Engine;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::jwks::{allowed_algorithm, KeyError, KeySet};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwsError {
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
}

impl From<KeyError> for JwsError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::UnknownKey => JwsError::UnknownKey,
            KeyError::BadSignature => JwsError::Signature,
            KeyError::Unavailable(why) => JwsError::KeysUnavailable(why),
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct Header {
    pub alg: String,
    pub kid: Option<String>,
    pub crit: Option<serde_json::Value>,
}

/// A token split and its header decoded; nothing verified yet.
pub(crate) struct Jws<'a> {
    pub header: Header,
    payload: &'a str,
    /// `header.payload` exactly as received: what the signature covers.
    signing_input: &'a str,
    signature: &'a str,
}

pub(crate) fn decode_part<T: DeserializeOwned>(part: &str) -> Option<T> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Three dot-separated parts (a five-part JWE is refused as malformed) and a header that is
/// not `alg: none`.
pub(crate) fn split(token: &str) -> Result<Jws<'_>, JwsError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwsError::Format);
    };
    let signing_input = &token[..header.len() + 1 + payload.len()];
    let header: Header = decode_part(header).ok_or(JwsError::Format)?;
    if header.alg.eq_ignore_ascii_case("none") {
        return Err(JwsError::Unsigned);
    }
    Ok(Jws {
        header,
        payload,
        signing_input,
        signature,
    })
}

impl Jws<'_> {
    /// The payload as `T`; None when it is not base64url JSON of that shape.
    pub fn claims<T: DeserializeOwned>(&self) -> Option<T> {
        decode_part(self.payload)
    }

    /// The signature, with an allow-listed algorithm whose key type matches the key.
    pub async fn verify(&self, keys: &KeySet) -> Result<(), JwsError> {
        let alg = allowed_algorithm(&self.header.alg)
            .ok_or_else(|| JwsError::Algorithm(printable(&self.header.alg)))?;
        // RFC 7515 4.1.11: critical extensions we do not understand make the token invalid.
        if self.header.crit.is_some() {
            return Err(JwsError::Critical);
        }
        keys.verify(
            self.signing_input.as_bytes(),
            self.signature,
            self.header.kid.as_deref(),
            alg,
        )
        .await?;
        Ok(())
    }
}

/// The header's `alg` as it may appear in a log line: the sender chose it.
fn printable(alg: &str) -> String {
    alg.chars()
        .filter(char::is_ascii_graphic)
        .take(16)
        .collect()
}
