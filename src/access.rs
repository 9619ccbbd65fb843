//! Who may go where.
//!
//! Global rules (`ACCESS__ALLOWED_EMAIL_DOMAINS`, `ACCESS__ALLOWED_EMAILS`,
//! `ACCESS__ALLOWED_GROUPS`, `ACCESS__REQUIRE_EMAIL_VERIFIED`) are checked at sign-in, after
//! every refresh (claims may change) and on every `/auth`; per-route rules come with each
//! `/auth` as query parameters set by the proxy (`allowed_groups`, `allowed_emails`,
//! `allowed_email_domains`). A user passes when the global rules pass AND every given route
//! parameter passes; email rules match only a verified email.
//!
//! A refusal names the rule and the claims it looked at, never their values: that is what the
//! log says.

use crate::config::AccessSettings;
use crate::error::AppError;
use crate::identity::Identity;

/// The facts the rules look at, borrowed from wherever they were read.
pub struct Who<'a, G> {
    pub email: Option<&'a str>,
    pub email_verified: Option<bool>,
    pub groups: &'a [G],
}

impl<'a> Who<'a, String> {
    pub fn of(identity: &'a Identity) -> Self {
        Who {
            email: identity.email.as_deref(),
            email_verified: identity.email_verified,
            groups: &identity.groups,
        }
    }
}

/// Why a rule refused: the rule's name and the claims it read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub rule: &'static str,
    pub claims: String,
    /// For a group rule, how many groups the user has: 0 is the usual misconfiguration (a
    /// GROUPS_CLAIM naming a claim the provider does not send, or not in the ID token). A
    /// count, never the groups.
    pub groups_found: Option<usize>,
    /// For the person refused.
    pub reason: &'static str,
}

impl Refusal {
    pub fn log(&self, subject: &str, when: &str) {
        tracing::info!(
            subject = %subject,
            rule = self.rule,
            claims = %self.claims,
            groups_found = self.groups_found,
            "access refused {when}"
        );
    }
}

impl From<Refusal> for AppError {
    fn from(r: Refusal) -> Self {
        AppError::AccessDenied(r.reason)
    }
}

/// Per-route rules from `/auth`'s query. `None`: the parameter was not given.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RouteRules {
    pub groups: Option<Vec<String>>,
    /// Lower-case.
    pub emails: Option<Vec<String>>,
    /// Lower-case, without `@`.
    pub domains: Option<Vec<String>>,
    /// `provider=NAME`: the session must come from that provider.
    pub provider: Option<String>,
}

impl RouteRules {
    pub fn is_empty(&self) -> bool {
        self.groups.is_none()
            && self.emails.is_none()
            && self.domains.is_none()
            && self.provider.is_none()
    }

    /// Reads the rules a proxy put in `/auth`'s query. Unknown parameters are ignored; an empty
    /// list (or one of empty entries only) or a repeated rule is a malformed request.
    pub fn parse(query: &str) -> Result<RouteRules, AppError> {
        let mut rules = RouteRules::default();
        if query.is_empty() {
            return Ok(rules);
        }
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match name.as_ref() {
                "allowed_groups" => &mut rules.groups,
                "allowed_emails" => &mut rules.emails,
                "allowed_email_domains" => &mut rules.domains,
                "provider" => {
                    if rules.provider.is_some() || value.is_empty() {
                        return Err(malformed("provider"));
                    }
                    rules.provider = Some(value.into_owned());
                    continue;
                }
                _ => continue,
            };
            if slot.is_some() {
                return Err(AppError::InvalidRequest(format!(
                    "the `{name}` parameter is repeated; give one comma-separated list"
                )));
            }
            let items: Vec<String> = value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            if items.is_empty() {
                return Err(malformed(&name));
            }
            *slot = Some(items);
        }
        if let Some(emails) = rules.emails.as_mut() {
            if emails.iter().any(|e| !e.contains('@')) {
                return Err(AppError::InvalidRequest(
                    "`allowed_emails` must list email addresses".into(),
                ));
            }
            emails.iter_mut().for_each(|e| e.make_ascii_lowercase());
        }
        if let Some(domains) = rules.domains.as_mut() {
            for d in domains.iter_mut() {
                *d = d.trim_start_matches('@').to_ascii_lowercase();
            }
        }
        Ok(rules)
    }
}

fn malformed(name: &str) -> AppError {
    AppError::InvalidRequest(format!("the `{name}` parameter must be a non-empty list"))
}

/// The global rules, for an identity about to get (or keep) a session.
pub fn check(policy: &AccessSettings, identity: &Identity) -> Result<(), Refusal> {
    check_who(policy, &Who::of(identity))
}

/// The global rules.
pub fn check_who<G: AsRef<str>>(policy: &AccessSettings, who: &Who<'_, G>) -> Result<(), Refusal> {
    if policy.require_email_verified && !email_counts_as_verified(policy, who) {
        return Err(Refusal {
            rule: "require_email_verified",
            claims: "email, email_verified".into(),
            groups_found: None,
            reason: "your email address is not verified by your identity provider",
        });
    }
    let email_rules = !policy.allowed_emails.is_empty() || !policy.allowed_email_domains.is_empty();
    if email_rules
        && !email_matches(
            policy,
            who,
            &policy.allowed_emails,
            &policy.allowed_email_domains,
        )
    {
        return Err(Refusal {
            rule: "allowed_emails/allowed_email_domains",
            claims: "email, email_verified".into(),
            groups_found: None,
            reason: "your email address is not allowed here",
        });
    }
    if !policy.allowed_groups.is_empty() && !in_any(who.groups, &policy.allowed_groups) {
        return Err(Refusal {
            rule: "allowed_groups",
            claims: policy.groups_claim.join("."),
            groups_found: Some(who.groups.len()),
            reason: "you are not in a group allowed here",
        });
    }
    Ok(())
}

/// The per-route rules (after the global ones). `provider` is the session's provider name.
pub fn check_route<G: AsRef<str>>(
    policy: &AccessSettings,
    rules: &RouteRules,
    who: &Who<'_, G>,
    provider: &str,
) -> Result<(), Refusal> {
    if let Some(wanted) = &rules.provider {
        if wanted != provider {
            return Err(Refusal {
                rule: "provider",
                claims: "(session's provider)".into(),
                groups_found: None,
                reason: "this page needs a sign-in with another identity provider",
            });
        }
    }
    if rules.emails.is_some() || rules.domains.is_some() {
        let none = Vec::new();
        let emails = rules.emails.as_ref().unwrap_or(&none);
        let domains = rules.domains.as_ref().unwrap_or(&none);
        if !email_matches(policy, who, emails, domains) {
            return Err(Refusal {
                rule: "route allowed_emails/allowed_email_domains",
                claims: "email, email_verified".into(),
                groups_found: None,
                reason: "your email address is not allowed on this page",
            });
        }
    }
    if let Some(groups) = &rules.groups {
        if !in_any(who.groups, groups) {
            return Err(Refusal {
                rule: "route allowed_groups",
                claims: policy.groups_claim.join("."),
                groups_found: Some(who.groups.len()),
                reason: "you are not in a group allowed on this page",
            });
        }
    }
    Ok(())
}

/// Whether the email may be trusted: the provider verified it, or the operator said this
/// provider's emails are trustworthy (`ACCESS__REQUIRE_EMAIL_VERIFIED=false`).
pub fn email_counts_as_verified<G>(policy: &AccessSettings, who: &Who<'_, G>) -> bool {
    who.email.is_some() && (who.email_verified == Some(true) || policy.trust_unverified_email)
}

fn email_matches<G>(
    policy: &AccessSettings,
    who: &Who<'_, G>,
    emails: &[String],
    domains: &[String],
) -> bool {
    if !email_counts_as_verified(policy, who) {
        return false;
    }
    let Some(email) = who.email else {
        return false;
    };
    let domain = email.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
    emails.iter().any(|e| e.eq_ignore_ascii_case(email))
        || domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
}

fn in_any<G: AsRef<str>>(have: &[G], wanted: &[String]) -> bool {
    have.iter().any(|g| wanted.iter().any(|w| w == g.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(email: Option<&str>, verified: Option<bool>) -> Identity {
        Identity {
            subject: "s".into(),
            email: email.map(str::to_owned),
            email_verified: verified,
            ..Identity::default()
        }
    }

    fn policy(domains: &[&str], emails: &[&str], verified: bool) -> AccessSettings {
        AccessSettings {
            allowed_email_domains: domains.iter().map(|s| s.to_string()).collect(),
            allowed_emails: emails.iter().map(|s| s.to_string()).collect(),
            require_email_verified: verified,
            groups_claim: vec!["groups".into()],
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
        assert!(check(&p, &who(Some("eve@sub.example.com"), Some(true))).is_err());
        assert!(check(&p, &who(None, None)).is_err());
    }

    #[test]
    fn unverified_emails_are_refused_when_required() {
        let p = policy(&["example.com"], &[], true);
        assert!(check(&p, &who(Some("ann@example.com"), Some(false))).is_err());
        assert!(check(&p, &who(Some("ann@example.com"), None)).is_err());
        // Email rules match only a verified email, unless the operator trusts the provider.
        let lax = policy(&["example.com"], &[], false);
        assert!(check(&lax, &who(Some("ann@example.com"), None)).is_err());
        let trusting = AccessSettings {
            trust_unverified_email: true,
            ..lax
        };
        assert!(check(&trusting, &who(Some("ann@example.com"), None)).is_ok());
    }

    #[test]
    fn groups_rule_needs_one_listed_group() {
        let p = AccessSettings {
            allowed_groups: vec!["admins".into(), "ops".into()],
            ..policy(&[], &[], false)
        };
        let mut ann = who(None, None);
        assert_eq!(
            check(&p, &ann).err().map(|r| r.rule),
            Some("allowed_groups")
        );
        ann.groups = vec!["staff".into(), "ops".into()];
        assert!(check(&p, &ann).is_ok());
        ann.groups = vec!["Ops".into()];
        assert!(check(&p, &ann).is_err(), "groups compare exactly");
    }

    #[test]
    fn route_rules_parse_strictly() {
        let r = RouteRules::parse("allowed_groups=a,%20b&allowed_email_domains=@Example.COM&x=1")
            .expect("valid");
        assert_eq!(r.groups, Some(vec!["a".into(), "b".into()]));
        assert_eq!(r.domains, Some(vec!["example.com".into()]));
        assert_eq!(r.emails, None);
        assert!(RouteRules::parse("").expect("none").is_empty());
        for bad in [
            "allowed_groups=",
            "allowed_groups=,,",
            "allowed_groups=a&allowed_groups=b",
            "allowed_emails=notanemail",
            "allowed_email_domains=%20",
            "provider=",
        ] {
            assert!(
                matches!(RouteRules::parse(bad), Err(AppError::InvalidRequest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn route_rules_and_email_rules_either_match() {
        let p = policy(&[], &[], false);
        let r =
            RouteRules::parse("allowed_emails=boss@corp.test&allowed_email_domains=example.com")
                .expect("valid");
        let ok = |email: &str| {
            check_route(&p, &r, &Who::of(&who(Some(email), Some(true))), "default").is_ok()
        };
        assert!(ok("ann@example.com"));
        assert!(ok("BOSS@corp.test"));
        assert!(!ok("eve@corp.test"));
        let unverified = who(Some("ann@example.com"), Some(false));
        assert!(check_route(&p, &r, &Who::of(&unverified), "default").is_err());
        let g = RouteRules::parse("allowed_groups=admins").expect("valid");
        let mut admin = who(None, None);
        admin.groups = vec!["admins".into()];
        assert!(check_route(&p, &g, &Who::of(&admin), "default").is_ok());
        assert!(check_route(&p, &g, &Who::of(&who(None, None)), "default").is_err());
        let prov = RouteRules::parse("provider=corp").expect("valid");
        assert!(check_route(&p, &prov, &Who::of(&admin), "corp").is_ok());
        assert!(check_route(&p, &prov, &Who::of(&admin), "default").is_err());
    }
}
