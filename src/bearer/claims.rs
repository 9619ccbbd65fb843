//! A bearer token's claims: the time and audience checks, and the identity `/auth` needs.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::BearerError;
use crate::identity::Identity;

/// Clock skew tolerated on `exp` and `nbf`, as for ID tokens.
pub const LEEWAY_SECS: u64 = 60;

/// Who a verified token speaks for, with what the rules and headers need.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: Option<bool>,
    pub name: Option<String>,
    pub preferred_username: Option<String>,
    /// From the groups claim path (`ACCESS__GROUPS_CLAIM`): a string or an array of strings.
    pub groups: Vec<String>,
    /// The values of the claims asked for (claim headers), by dotted path; absent ones left out.
    pub claims: BTreeMap<String, Value>,
    /// Unix seconds.
    pub expires_at: u64,
}

impl VerifiedToken {
    pub fn identity(&self) -> Identity {
        Identity {
            subject: self.subject.clone(),
            email: self.email.clone(),
            email_verified: self.email_verified,
            name: self.name.clone(),
            preferred_username: self.preferred_username.clone(),
            groups: self.groups.clone(),
            ..Identity::default()
        }
    }

    /// Still acceptable at `now` (a cached token is dropped once this is false).
    pub fn live_at(&self, now: u64) -> bool {
        now < self.expires_at.saturating_add(LEEWAY_SECS)
    }

    /// About the bytes it holds, for the cache's bound.
    pub fn weight(&self) -> usize {
        let strings = [&self.issuer, &self.subject]
            .into_iter()
            .chain(&self.email)
            .chain(&self.name)
            .chain(&self.preferred_username)
            .chain(&self.groups)
            .map(String::len)
            .sum::<usize>();
        let claims: usize = self
            .claims
            .iter()
            .map(|(k, v)| k.len() + v.to_string().len())
            .sum();
        256 + strings + claims
    }
}

/// The value at a claim path (`groups`, `realm_access.roles`): the same lookup as sessions'.
fn lookup<'v>(claims: &'v Map<String, Value>, path: &[String]) -> Option<&'v Value> {
    crate::claims::lookup(claims, path.iter().map(String::as_str))
}

/// A string is one group; an array's strings are groups; anything else is none.
fn groups(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(one)) => vec![one.clone()],
        Some(Value::Array(many)) => many
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// Seconds since the epoch; a fractional value (allowed by RFC 7519) is rounded down.
fn seconds(value: &Value) -> Option<u64> {
    value
        .as_u64()
        .or_else(|| value.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
}

fn string(claims: &Map<String, Value>, name: &str) -> Option<String> {
    claims.get(name).and_then(Value::as_str).map(str::to_owned)
}

/// What a token must satisfy besides its signature.
pub struct Expect<'a> {
    pub audiences: &'a [String],
    pub groups_claim: &'a [String],
    pub claim_paths: &'a [Vec<String>],
    pub now: u64,
}

/// `exp` (required), `nbf`, `aud` (one value listed), `sub`; then the identity.
pub fn check(
    issuer: &str,
    claims: &Map<String, Value>,
    expect: &Expect,
) -> Result<VerifiedToken, BearerError> {
    let expires_at = claims
        .get("exp")
        .and_then(seconds)
        .ok_or(BearerError::Expired)?;
    if expires_at.saturating_add(LEEWAY_SECS) <= expect.now {
        return Err(BearerError::Expired);
    }
    if let Some(nbf) = claims.get("nbf") {
        let nbf = seconds(nbf).ok_or(BearerError::NotYetValid)?;
        if nbf > expect.now.saturating_add(LEEWAY_SECS) {
            return Err(BearerError::NotYetValid);
        }
    }
    let listed = |aud: &str| expect.audiences.iter().any(|a| a == aud);
    let audience_ok = match claims.get("aud") {
        Some(Value::String(aud)) => listed(aud),
        Some(Value::Array(auds)) => auds.iter().filter_map(Value::as_str).any(listed),
        _ => false,
    };
    if !audience_ok {
        return Err(BearerError::Audience);
    }
    let subject = string(claims, "sub")
        .filter(|s| !s.is_empty())
        .ok_or(BearerError::Subject)?;
    let picked = expect
        .claim_paths
        .iter()
        .filter_map(|path| Some((path.join("."), lookup(claims, path)?.clone())))
        .collect();
    Ok(VerifiedToken {
        issuer: issuer.to_owned(),
        subject,
        email: string(claims, "email"),
        email_verified: claims.get("email_verified").and_then(Value::as_bool),
        name: string(claims, "name"),
        preferred_username: string(claims, "preferred_username"),
        groups: groups(lookup(claims, expect.groups_claim)),
        claims: picked,
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> Vec<String> {
        p.split('.').map(str::to_owned).collect()
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    fn good() -> Value {
        serde_json::json!({
            "iss": "https://idp.example", "sub": "svc", "aud": ["other", "api"],
            "exp": 2_000, "nbf": 900, "email": "svc@example.com", "email_verified": true,
            "realm_access": {"roles": ["admins", 7, "staff"]}, "dept": {"name": "ops"}
        })
    }

    fn run(v: Value) -> Result<VerifiedToken, BearerError> {
        let audiences = ["api".to_owned()];
        let groups = path("realm_access.roles");
        let wanted = [path("dept.name"), path("missing")];
        check(
            "https://idp.example",
            &claims(v),
            &Expect {
                audiences: &audiences,
                groups_claim: &groups,
                claim_paths: &wanted,
                now: 1_000,
            },
        )
    }

    #[test]
    fn a_good_token_gives_its_identity() {
        let token = run(good()).expect("valid");
        assert_eq!(token.subject, "svc");
        assert_eq!(token.groups, vec!["admins", "staff"]);
        assert_eq!(token.email_verified, Some(true));
        assert_eq!(
            token.claims.into_iter().collect::<Vec<_>>(),
            vec![("dept.name".to_owned(), serde_json::json!("ops"))]
        );
        let mut one_group = good();
        one_group["realm_access"]["roles"] = serde_json::json!("admins");
        assert_eq!(run(one_group).expect("valid").groups, vec!["admins"]);
    }

    #[test]
    fn each_failed_check_is_named() {
        let cases = [
            ("aud", serde_json::json!("other"), BearerError::Audience),
            ("aud", serde_json::json!([]), BearerError::Audience),
            ("aud", serde_json::json!(null), BearerError::Audience),
            ("exp", serde_json::json!(940), BearerError::Expired),
            ("exp", serde_json::json!("2000"), BearerError::Expired),
            ("nbf", serde_json::json!(1_061), BearerError::NotYetValid),
            ("sub", serde_json::json!(""), BearerError::Subject),
            ("sub", serde_json::json!(5), BearerError::Subject),
        ];
        for (field, value, want) in cases {
            let mut v = good();
            v[field] = value;
            assert_eq!(run(v).err(), Some(want), "{field}");
        }
        let mut no_exp = good();
        no_exp.as_object_mut().map(|o| o.remove("exp"));
        assert_eq!(run(no_exp).err(), Some(BearerError::Expired));
    }

    #[test]
    fn leeway_is_sixty_seconds() {
        let mut v = good();
        v["exp"] = serde_json::json!(941);
        v["nbf"] = serde_json::json!(1_060.5);
        assert!(run(v).is_ok());
    }
}
