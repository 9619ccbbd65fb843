//! Keys for separate purposes, derived from `SESSION__SECRET` with HKDF-SHA256 (RFC 5869), so
//! that a value made for one purpose (a binding cookie, an assertion, a session record) can never
//! be passed off as another. Every instance sharing the secret derives the same keys.

use ring::hkdf;

/// The length of every derived key: 256 bits.
pub const KEY_LEN: usize = 32;

struct Len;

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        KEY_LEN
    }
}

/// The key for `purpose` (a fixed label such as `"binding-cookie"`), from `secret`.
pub fn derive(secret: &[u8], purpose: &str) -> [u8; KEY_LEN] {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"gatehouse key derivation v1").extract(secret);
    let info = [purpose.as_bytes()];
    let mut out = [0u8; KEY_LEN];
    // HKDF-SHA256 can expand to 255 × 32 bytes; 32 always fits, so neither step can fail.
    if let Ok(okm) = prk.expand(&info, Len) {
        let _ = okm.fill(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purposes_and_secrets_give_different_keys() {
        let a = derive(b"secret one", "binding-cookie");
        assert_eq!(a, derive(b"secret one", "binding-cookie"));
        assert_ne!(a, derive(b"secret one", "assertion"));
        assert_ne!(a, derive(b"secret two", "binding-cookie"));
        assert_ne!(a, [0u8; KEY_LEN]);
    }
}
