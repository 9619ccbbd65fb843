//! Picking groups and claim values out of a provider's claims by path (`groups`,
//! `realm_access.roles`), for the access rules and the identity headers. Only what a rule or
//! a header needs is kept in the session.

use serde_json::{Map, Value};

use crate::identity::Identity;

/// The claims gatehouse keeps beyond the standard ones: where groups come from, and the claim
/// paths that `FORWARD__CLAIM_HEADERS` names (as configured, e.g. `"org.team"`).
#[derive(Debug, Clone, Default)]
pub struct ClaimNeeds {
    pub groups: Vec<String>,
    /// A group rule is configured: groups missing from the ID token are worth asking
    /// userinfo for (otherwise they are kept only when the ID token has them).
    pub groups_required: bool,
    pub headers: Vec<String>,
}

impl ClaimNeeds {
    /// Whether `claims` lacks something we need (so userinfo may be asked for it).
    pub fn missing_from(&self, claims: &Map<String, Value>) -> bool {
        (self.groups_required && lookup(claims, self.groups.iter().map(String::as_str)).is_none())
            || self
                .headers
                .iter()
                .any(|path| lookup(claims, path.split('.')).is_none())
    }

    /// Fills `identity.groups` and `identity.claims` from its raw claims.
    pub fn fill(&self, identity: &mut Identity) {
        identity.groups = lookup(&identity.raw_claims, self.groups.iter().map(String::as_str))
            .map(groups)
            .unwrap_or_default();
        identity.claims = self
            .headers
            .iter()
            .filter_map(|path| {
                lookup(&identity.raw_claims, path.split('.'))
                    .and_then(text)
                    .map(|value| (path.clone(), value))
            })
            .collect();
    }
}

/// Fills in what `identity`'s claims lack from userinfo (when the provider has it), then picks
/// the groups and claim values. A userinfo failure keeps what the ID token said: the rules
/// then judge on that.
pub async fn complete(
    identity: &mut Identity,
    needs: &ClaimNeeds,
    provider: &crate::oauth::Provider,
    access_token: &crate::identity::Token,
) {
    if !identity.asked_userinfo && needs.missing_from(&identity.raw_claims) {
        match provider
            .userinfo_claims(access_token, &identity.subject)
            .await
        {
            Ok(Some(extra)) => {
                for (name, value) in extra {
                    identity.raw_claims.entry(name).or_insert(value);
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(reason = %e, "userinfo could not fill in claims"),
        }
    }
    needs.fill(identity);
}

/// The value at a claim path: each segment names a member of the object before it.
pub fn lookup<'a, 'p>(
    claims: &'a Map<String, Value>,
    path: impl IntoIterator<Item = &'p str>,
) -> Option<&'a Value> {
    let mut segments = path.into_iter();
    let mut value = claims.get(segments.next()?)?;
    for segment in segments {
        value = value.as_object()?.get(segment)?;
    }
    (!value.is_null()).then_some(value)
}

/// Groups from a claim: a string is one group, an array gives its strings (other members are
/// not groups and are skipped).
pub fn groups(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) if !s.is_empty() => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// A claim as header text: strings as they are, numbers and booleans printed, arrays of those
/// joined with commas. Objects have no single text and give none.
pub fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(items) => {
            let parts: Option<Vec<String>> = items
                .iter()
                .map(|item| match item {
                    Value::Array(_) | Value::Object(_) => None,
                    other => text(other),
                })
                .collect();
            parts.map(|p| p.join(","))
        }
        Value::Null | Value::Object(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn paths_reach_into_nested_objects() {
        let c = claims(json!({"groups": ["a"], "realm_access": {"roles": ["x", "y"]}, "n": null}));
        assert_eq!(lookup(&c, ["groups"]), Some(&json!(["a"])));
        assert_eq!(
            lookup(&c, "realm_access.roles".split('.')),
            Some(&json!(["x", "y"]))
        );
        assert_eq!(lookup(&c, "realm_access.nope".split('.')), None);
        assert_eq!(lookup(&c, "groups.0".split('.')), None);
        assert_eq!(lookup(&c, ["n"]), None);
    }

    #[test]
    fn groups_come_from_a_string_or_an_array_of_strings() {
        assert_eq!(groups(&json!("admins")), ["admins"]);
        assert_eq!(groups(&json!(["a", 1, "b", "", null])), ["a", "b"]);
        assert!(groups(&json!({"a": 1})).is_empty());
        assert!(groups(&json!("")).is_empty());
    }

    #[test]
    fn claim_text_for_headers() {
        assert_eq!(text(&json!("x")).as_deref(), Some("x"));
        assert_eq!(text(&json!(42)).as_deref(), Some("42"));
        assert_eq!(text(&json!(true)).as_deref(), Some("true"));
        assert_eq!(text(&json!(["a", 2])).as_deref(), Some("a,2"));
        assert_eq!(text(&json!([["a"]])), None);
        assert_eq!(text(&json!({"a": 1})), None);
    }

    #[test]
    fn fill_keeps_only_what_is_needed() {
        let needs = ClaimNeeds {
            groups: vec!["realm_access".into(), "roles".into()],
            groups_required: true,
            headers: vec!["dept".into(), "missing".into()],
        };
        let mut who = Identity {
            raw_claims: claims(json!({
                "realm_access": {"roles": ["staff"]}, "dept": "R&D", "secret_stuff": "no"
            })),
            ..Identity::default()
        };
        assert!(needs.missing_from(&who.raw_claims));
        needs.fill(&mut who);
        assert_eq!(who.groups, ["staff"]);
        assert_eq!(who.claims.len(), 1);
        assert_eq!(who.claims["dept"], "R&D");
    }
}
