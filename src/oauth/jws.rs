//! Compact JWS (RFC 7515) as providers sign them: split and decoded, then the signature checked
//! against an issuer's key set with an algorithm from the allow-list. Shared by ID tokens and
//! bearer tokens, which differ only in the claims they check afterwards.

use base64::Engine;
use serde::Deserialize;

use super::jwks::{allowed_algorithm, KeyError, KeySet};

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum JwsError {
    #[error("not a JWS compact token")]
    Format,
    #[error("unsigned tokens (alg none) are refused")]
    Unsigned,
    #[error("signature algorithm {0:?} is not accepted")]
    Algorithm(String),
    #[error("the token names critical header parameters we do not process")]
    Critical,
    #[error("no signing key matches the token")]
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
pub struct Header {
    pub alg: String,
    pub kid: Option<String>,
    pub typ: Option<String>,
    crit: Option<serde_json::Value>,
}

/// A token split and its header decoded; nothing verified yet.
pub struct Jws<'a> {
    pub header: Header,
    payload: &'a str,
    /// `header.payload` exactly as received: what the signature covers.
    signing_input: &'a str,
    signature: &'a str,
}

fn decode_part<T: serde::de::DeserializeOwned>(part: &str) -> Option<T> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

impl<'a> Jws<'a> {
    /// Three parts and a JSON header; `alg: none` refused here already.
    pub fn parse(token: &'a str) -> Result<Jws<'a>, JwsError> {
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

    /// The payload as `T`; `None` when it is not base64url JSON of that shape. Unverified
    /// until [`Jws::verify`] succeeds.
    pub fn claims<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        decode_part(self.payload)
    }

    /// The signature against `keys`, with the header's algorithm when it is on the allow-list.
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
