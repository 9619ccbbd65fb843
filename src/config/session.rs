//! Settings of the session cookie and its lifetimes; the secret that signs it.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretBox};

use super::reader::{decode_base64, Reader};
use super::{invalid, HostRule, SettingsError};

const MIN_SESSION_SECRET_BYTES: usize = 64;

#[derive(Clone)]
pub struct SessionSettings {
    pub secret: std::sync::Arc<SecretBox<Vec<u8>>>,
    /// Former secrets, still accepted on incoming cookies.
    pub previous_secrets: std::sync::Arc<Vec<SecretBox<Vec<u8>>>>,
    pub cookie_name: String,
    pub cookie_secure: bool,
    /// `None`: host-only cookies.
    pub cookie_domain: Option<String>,
    pub ttl: Duration,
    pub signin_ttl: Duration,
    /// Absolute lifetime, however active the session is; `None`: none.
    pub max_lifetime: Option<Duration>,
}

impl std::fmt::Debug for SessionSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionSettings")
            .field("secret", &"[REDACTED]")
            .field(
                "previous_secrets",
                &format!("[{} REDACTED]", self.previous_secrets.len()),
            )
            .field("cookie_name", &self.cookie_name)
            .field("cookie_secure", &self.cookie_secure)
            .field("cookie_domain", &self.cookie_domain)
            .field("ttl", &self.ttl)
            .field("signin_ttl", &self.signin_ttl)
            .field("max_lifetime", &self.max_lifetime)
            .finish()
    }
}

impl SessionSettings {
    pub(super) fn read(r: &Reader) -> Result<Self, SettingsError> {
        let secret = r.secret("session.secret")?.ok_or_else(|| {
            invalid(
                "session.secret",
                "is required (base64 of at least 64 random bytes)",
            )
        })?;
        let decoded = decode_base64(secret.expose_secret())
            .ok_or_else(|| invalid("session.secret", "must be base64 of at least 64 bytes"))?;
        if decoded.len() < MIN_SESSION_SECRET_BYTES {
            return Err(invalid(
                "session.secret",
                "must be base64 of at least 64 bytes",
            ));
        }
        let cookie_name = r.required("session.cookie_name")?;
        if !cookie_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(invalid(
                "session.cookie_name",
                "may contain only letters, digits, `-`, `_` and `.`",
            ));
        }
        let cookie_domain = r
            .optional("session.cookie_domain")
            .map(|d| d.trim_start_matches('.').to_ascii_lowercase());
        if let Some(domain) = &cookie_domain {
            if HostRule::parse(domain).is_none_or(|rule| rule.port.is_some()) {
                return Err(invalid(
                    "session.cookie_domain",
                    "must be a domain such as example.com",
                ));
            }
        }
        let previous_secrets = r
            .list("session.previous_secrets")?
            .iter()
            .map(|text| {
                decode_base64(text.as_bytes())
                    .filter(|bytes| bytes.len() >= MIN_SESSION_SECRET_BYTES)
                    .map(|bytes| SecretBox::new(Box::new(bytes)))
                    .ok_or_else(|| {
                        invalid(
                            "session.previous_secrets",
                            "must each be base64 of at least 64 bytes",
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let session = SessionSettings {
            secret: std::sync::Arc::new(SecretBox::new(Box::new(decoded))),
            previous_secrets: std::sync::Arc::new(previous_secrets),
            cookie_name,
            cookie_secure: r.boolean("session.cookie_secure")?,
            cookie_domain,
            ttl: Duration::from_secs(r.number("session.ttl_secs", 1, 60 * 60 * 24 * 400)?),
            signin_ttl: Duration::from_secs(r.number(
                "session.signin_ttl_secs",
                1,
                60 * 60 * 24,
            )?),
            max_lifetime: match r.number("session.max_lifetime_secs", 0, 60 * 60 * 24 * 400)? {
                0 => None,
                secs => Some(Duration::from_secs(secs)),
            },
        };
        Ok(session)
    }
}
