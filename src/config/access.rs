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
    /// Users must be in one of these groups (empty: no group rule). Compared exactly.
    pub allowed_groups: Vec<String>,
    /// Where groups come from: a claim name or a dotted path, split into its segments.
    pub groups_claim: Vec<String>,
    /// Let everyone the provider signs in pass when no rule is set (an explicit choice).
    pub allow_any_user: bool,
}

impl AccessSettings {
    /// Whether any email, domain or group rule is configured.
    pub fn has_rules(&self) -> bool {
        !self.allowed_email_domains.is_empty()
            || !self.allowed_emails.is_empty()
            || !self.allowed_groups.is_empty()
    }
}

/// A claim name or dotted path (`realm_access.roles`) as its segments; empty segments refused.
pub fn claim_path(key: &str, text: &str) -> Result<Vec<String>, SettingsError> {
    let segments: Vec<String> = text.split('.').map(str::to_owned).collect();
    if segments.iter().any(|s| s.is_empty()) {
        return Err(invalid(
            key,
            format!("has an invalid claim path {text:?} (a name, or names joined by dots)"),
        ));
    }
    Ok(segments)
}

#[derive(Debug, Clone, Default)]
pub struct ForwardSettings {
    pub pass_access_token: bool,
    /// Add `X-Auth-Request-Assertion` (a JWT gatehouse signs) to `/auth`'s 200.
    pub assertion: bool,
    /// Lifetime of that JWT: 1 s to 10 min.
    pub assertion_ttl: std::time::Duration,
}

impl ForwardSettings {
    pub(super) fn read(r: &Reader) -> Result<Self, SettingsError> {
        let forward = ForwardSettings {
            pass_access_token: r.boolean("forward.pass_access_token")?,
            assertion: r.boolean("forward.assertion")?,
            assertion_ttl: std::time::Duration::from_secs(r.number(
                "forward.assertion_ttl_secs",
                1,
                600,
            )?),
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
            allowed_groups: r.list("access.allowed_groups")?,
            groups_claim: claim_path("access.groups_claim", &r.required("access.groups_claim")?)?,
            allow_any_user: r.boolean("access.allow_any_user")?,
        };
        if !access.has_rules() && !access.allow_any_user {
            // With a provider such as Google or Entra "common", no rule means anyone on earth.
            return Err(invalid(
                "access.allow_any_user",
                "is not true and no access rule is set: set GATEHOUSE__ACCESS__ALLOWED_EMAILS, \
                 GATEHOUSE__ACCESS__ALLOWED_EMAIL_DOMAINS or GATEHOUSE__ACCESS__ALLOWED_GROUPS, or \
                 GATEHOUSE__ACCESS__ALLOW_ANY_USER=true to let everyone the provider signs in pass",
            ));
        }
        Ok(access)
    }
}
