//! Who may pass: the access rules, and what /auth forwards about them.

use super::reader::Reader;
use super::{invalid, SettingsError};

#[derive(Debug, Clone, Default)]
pub struct AccessSettings {
    /// Lower-case, without a leading `@`.
    pub allowed_email_domains: Vec<String>,
    /// Lower-case.
    pub allowed_emails: Vec<String>,
    pub require_email_verified: bool,
}

#[derive(Debug, Clone, Default)]
pub struct ForwardSettings {
    pub pass_access_token: bool,
}

impl ForwardSettings {
    pub(super) fn read(r: &Reader) -> Result<Self, SettingsError> {
        let forward = ForwardSettings {
            pass_access_token: r.boolean("forward.pass_access_token")?,
        };
        Ok(forward)
    }
}

impl AccessSettings {
    pub(super) fn read(r: &Reader) -> Result<Self, SettingsError> {
        let allowed_email_domains: Vec<String> = r
            .list("access.allowed_email_domains")?
            .iter()
            .map(|d| d.trim_start_matches('@').to_ascii_lowercase())
            .collect();
        let allowed_emails: Vec<String> = r
            .list("access.allowed_emails")?
            .iter()
            .map(|e| e.to_ascii_lowercase())
            .collect();
        if allowed_emails.iter().any(|e| !e.contains('@')) {
            return Err(invalid(
                "access.allowed_emails",
                "must list email addresses",
            ));
        }
        let any_email_rule = !allowed_email_domains.is_empty() || !allowed_emails.is_empty();
        let require_email_verified = match r.optional("access.require_email_verified") {
            None => any_email_rule,
            Some(_) => r.boolean("access.require_email_verified")?,
        };
        let access = AccessSettings {
            allowed_email_domains,
            allowed_emails,
            require_email_verified,
        };
        Ok(access)
    }
}
