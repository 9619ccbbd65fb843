//! Limits on starting sign-ins: per client and for all clients together, so that a flood of
//! `/signin` can neither fill Redis nor lock other people out.

use super::reader::Reader;
use super::SettingsError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigninSettings {
    /// Sign-ins one client (its IP as resolved through PROXY__TRUSTED) may start per minute;
    /// 0 = no per-client limit.
    pub per_client_per_minute: u64,
    /// Pending (started, unfinished) sign-ins kept at once, all clients together.
    pub max_pending: u64,
}

impl Default for SigninSettings {
    fn default() -> Self {
        SigninSettings {
            per_client_per_minute: 300,
            max_pending: 100_000,
        }
    }
}

impl SigninSettings {
    pub(super) fn read(r: &Reader) -> Result<Self, SettingsError> {
        Ok(SigninSettings {
            per_client_per_minute: r.number("signin.per_client_per_minute", 0, 1_000_000)?,
            // At least one: 0 would refuse every sign-in, which no one means.
            max_pending: r.number("signin.max_pending", 1, 100_000_000)?,
        })
    }
}
