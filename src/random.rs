//! Unguessable tokens for states, nonces and ids.

use base64::Engine;
use rand::RngCore;

/// 256 random bits from the OS, URL-safe base64 without padding (43 characters).
pub fn token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
