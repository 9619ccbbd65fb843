//! Who may pass: the access rules, and what /auth forwards about them.

use actix_web::http::header::HeaderName;

use super::reader::Reader;
use super::{env_name, invalid, SettingsError};

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
    /// `ACCESS__REQUIRE_EMAIL_VERIFIED=false` said explicitly: this provider's emails count as
    /// verified, for rules and headers alike (for providers that never send `email_verified`).
    pub trust_unverified_email: bool,
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
    /// `FORWARD__CLAIM_HEADERS`: extra identity headers on `/auth`'s 200.
    pub claim_headers: Vec<ClaimHeader>,
    /// Add `X-Auth-Request-Assertion` (a JWT gatehouse signs) to `/auth`'s 200.
    pub assertion: bool,
    /// Lifetime of that JWT: 1 s to 10 min.
    pub assertion_ttl: std::time::Duration,
}

/// One `claim=Header-Name` entry of `FORWARD__CLAIM_HEADERS`.
#[derive(Debug, Clone)]
pub struct ClaimHeader {
    /// The claim name or dotted path, as configured.
    pub claim: String,
    pub header: HeaderName,
}

/// Headers gatehouse sets itself on `/auth`: a claim header may not take their place.
const OWN_HEADERS: &[&str] = &[
    "x-auth-request-user",
    "x-auth-request-email",
    "x-auth-request-preferred-username",
    "x-auth-request-groups",
    "x-auth-request-assertion",
    "x-auth-request-access-token",
];

impl ForwardSettings {
    pub(super) fn read(r: &Reader) -> Result<Self, SettingsError> {
        const KEY: &str = "forward.claim_headers";
        let mut claim_headers: Vec<ClaimHeader> = Vec::new();
        for entry in r.list(KEY)? {
            let Some((claim, header)) = entry.split_once('=') else {
                return Err(invalid(
                    KEY,
                    format!("has an invalid entry {entry:?} (claim=Header-Name)"),
                ));
            };
            let claim = claim.trim();
            claim_path(KEY, claim)?;
            let header = HeaderName::from_bytes(header.trim().as_bytes())
                .map_err(|_| invalid(KEY, format!("has an invalid header name in {entry:?}")))?;
            if OWN_HEADERS.contains(&header.as_str()) {
                return Err(invalid(
                    KEY,
                    format!("names {header}, which gatehouse sets itself"),
                ));
            }
            if claim_headers.iter().any(|h| h.header == header) {
                return Err(invalid(KEY, format!("names {header} twice")));
            }
            claim_headers.push(ClaimHeader {
                claim: claim.to_owned(),
                header,
            });
        }
        let forward = ForwardSettings {
            pass_access_token: r.boolean("forward.pass_access_token")?,
            claim_headers,
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
        Self::read_section(r, "access")
    }

    /// Reads the rules under `section` (`access`, or `providers.<name>.access` for the rules
    /// of one further provider); every message names that section's own variables.
    pub(super) fn read_section(r: &Reader, section: &str) -> Result<Self, SettingsError> {
        let k = |name: &str| format!("{section}.{name}");
        let env = |name: &str| env_name(&k(name));
        let allowed_email_domains: Vec<String> = r
            .list(&k("allowed_email_domains"))?
            .iter()
            .map(|d| d.trim_start_matches('@').to_ascii_lowercase())
            .collect();
        let allowed_emails: Vec<String> = r
            .list(&k("allowed_emails"))?
            .iter()
            .map(|e| e.to_ascii_lowercase())
            .collect();
        if allowed_emails.iter().any(|e| !e.contains('@')) {
            return Err(invalid(&k("allowed_emails"), "must list email addresses"));
        }
        let any_email_rule = !allowed_email_domains.is_empty() || !allowed_emails.is_empty();
        let (require_email_verified, trust_unverified_email) =
            match r.optional(&k("require_email_verified")) {
                None => (any_email_rule, false),
                Some(_) => {
                    let required = r.boolean(&k("require_email_verified"))?;
                    (required, !required)
                }
            };
        let access = AccessSettings {
            allowed_email_domains,
            allowed_emails,
            require_email_verified,
            allowed_groups: r.list(&k("allowed_groups"))?,
            groups_claim: claim_path(&k("groups_claim"), &r.required(&k("groups_claim"))?)?,
            allow_any_user: r.boolean(&k("allow_any_user"))?,
            trust_unverified_email,
        };
        if !access.has_rules() && !access.allow_any_user {
            // With a provider such as Google or Entra "common", no rule means anyone on earth.
            return Err(invalid(
                &k("allow_any_user"),
                format!(
                    "is not true and no access rule is set: set {}, {} or {}, or {}=true to let \
                     everyone the provider signs in pass",
                    env("allowed_emails"),
                    env("allowed_email_domains"),
                    env("allowed_groups"),
                    env("allow_any_user"),
                ),
            ));
        }
        Ok(access)
    }
}
