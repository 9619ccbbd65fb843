//! Who may sign in: `ACCESS__ALLOWED_EMAIL_DOMAINS`, `ACCESS__ALLOWED_EMAILS`,
//! `ACCESS__REQUIRE_EMAIL_VERIFIED`. Applied at sign-in and at each refresh, never on the hot
//! path of `/auth`.

use crate::config::AccessSettings;
use crate::error::AppError;
use crate::identity::Identity;

pub fn check(policy: &AccessSettings, identity: &Identity) -> Result<(), AppError> {
    let has_rules = !policy.allowed_email_domains.is_empty() || !policy.allowed_emails.is_empty();
    if !has_rules && !policy.require_email_verified {
        return Ok(());
    }
    let denied = || {
        tracing::info!(subject = %identity.subject, "sign-in refused by the access policy");
        AppError::AccessDenied
    };
    let email = identity
        .email
        .as_deref()
        .map(str::to_ascii_lowercase)
        .ok_or_else(denied)?;
    if policy.require_email_verified && identity.email_verified != Some(true) {
        return Err(denied());
    }
    if !has_rules {
        return Ok(());
    }
    let domain = email.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
    let allowed = policy.allowed_emails.contains(&email)
        || policy.allowed_email_domains.iter().any(|d| d == domain);
    if allowed {
        Ok(())
    } else {
        Err(denied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(email: Option<&str>, verified: Option<bool>) -> Identity {
        Identity {
            subject: "s".into(),
            email: email.map(str::to_owned),
            email_verified: verified,
            name: None,
            preferred_username: None,
        }
    }

    fn policy(domains: &[&str], emails: &[&str], verified: bool) -> AccessSettings {
        AccessSettings {
            allowed_email_domains: domains.iter().map(|s| s.to_string()).collect(),
            allowed_emails: emails.iter().map(|s| s.to_string()).collect(),
            require_email_verified: verified,
            ..Default::default()
        }
    }

    #[test]
    fn no_rules_let_everyone_in() {
        assert!(check(&policy(&[], &[], false), &who(None, None)).is_ok());
    }

    #[test]
    fn domains_and_emails_are_an_allow_list() {
        let p = policy(&["example.com"], &["guest@other.org"], true);
        assert!(check(&p, &who(Some("Ann@Example.com"), Some(true))).is_ok());
        assert!(check(&p, &who(Some("guest@other.org"), Some(true))).is_ok());
        assert!(check(&p, &who(Some("eve@other.org"), Some(true))).is_err());
        assert!(check(&p, &who(Some("eve@evilexample.com"), Some(true))).is_err());
        assert!(check(&p, &who(Some("eve@example.com.evil"), Some(true))).is_err());
        assert!(check(&p, &who(None, None)).is_err());
    }

    #[test]
    fn unverified_emails_are_refused_when_required() {
        let p = policy(&["example.com"], &[], true);
        assert!(check(&p, &who(Some("ann@example.com"), Some(false))).is_err());
        assert!(check(&p, &who(Some("ann@example.com"), None)).is_err());
        let lax = policy(&["example.com"], &[], false);
        assert!(check(&lax, &who(Some("ann@example.com"), None)).is_ok());
    }
}
