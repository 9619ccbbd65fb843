//! The userinfo endpoint: identity for providers without ID tokens (plain OAuth, e.g. GitHub),
//! or to fill in the email.

use serde_json::Value;
use url::Url;

use super::ProviderError;
use crate::identity::{Identity, Token};

/// Which fields name the user and the email (`PROVIDER__SUBJECT_CLAIM`, `EMAIL_CLAIM`).
pub struct Fields<'a> {
    pub subject: &'a str,
    pub email: &'a str,
}

pub async fn fetch(
    http: &oauth2::reqwest::Client,
    url: &Url,
    access_token: &Token,
    fields: &Fields<'_>,
) -> Result<Identity, ProviderError> {
    let body = super::http::body(http.get(url.clone()).bearer_auth(access_token.expose())).await?;
    let info: serde_json::Map<String, Value> = serde_json::from_slice(&body)
        .map_err(|_| ProviderError::Malformed("userinfo is not a JSON object".into()))?;
    identity(&info, fields)
}

/// The identity in a userinfo answer. The subject is a non-empty string or an integer (GitHub's
/// `id`), kept as its decimal string; other fields of the wrong type count as absent.
pub fn identity(
    info: &serde_json::Map<String, Value>,
    fields: &Fields<'_>,
) -> Result<Identity, ProviderError> {
    let subject = match info.get(fields.subject) {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => n.to_string(),
        Some(_) => {
            return Err(ProviderError::Malformed(format!(
                "userinfo field `{}` is neither a non-empty string nor an integer",
                fields.subject
            )))
        }
        None => {
            return Err(ProviderError::Malformed(format!(
                "userinfo has no `{}` field to name the user (see \
                 GATEHOUSE__PROVIDER__SUBJECT_CLAIM; GitHub's is `id`)",
                fields.subject
            )))
        }
    };
    let text = |name: &str| info.get(name).and_then(Value::as_str).map(str::to_owned);
    Ok(Identity {
        subject,
        email: text(fields.email),
        email_verified: info.get("email_verified").and_then(Value::as_bool),
        name: text("name"),
        preferred_username: text("preferred_username").or_else(|| text("login")),
        raw_claims: info.clone(),
        asked_userinfo: true,
        ..Identity::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(info: Value, subject: &str, email: &str) -> Result<Identity, ProviderError> {
        let Value::Object(map) = info else {
            panic!("an object")
        };
        identity(&map, &Fields { subject, email })
    }

    #[test]
    fn the_configured_fields_name_the_user_and_the_email() {
        let github = serde_json::json!({
            "id": 583231, "login": "octocat", "email": "octo@example.com", "name": "The Octocat"
        });
        let id = read(github.clone(), "id", "email").expect("identity");
        assert_eq!(id.subject, "583231");
        assert_eq!(id.email.as_deref(), Some("octo@example.com"));
        assert_eq!(id.preferred_username.as_deref(), Some("octocat"));
        assert_eq!(id.email_verified, None);
        let other = read(
            serde_json::json!({"user_id": "u-1", "mail": "m@example.com", "email": "x@example.com"}),
            "user_id",
            "mail",
        )
        .expect("identity");
        assert_eq!(
            (other.subject.as_str(), other.email.as_deref()),
            ("u-1", Some("m@example.com"))
        );
    }

    #[test]
    fn a_missing_or_unusable_subject_is_refused() {
        let github = serde_json::json!({"id": 583231, "login": "octocat"});
        let err = read(github, "sub", "email")
            .expect_err("no sub")
            .to_string();
        assert!(
            err.contains("`sub`") && err.contains("SUBJECT_CLAIM"),
            "{err}"
        );
        for bad in [
            serde_json::json!(""),
            serde_json::json!(1.5),
            serde_json::json!(null),
            serde_json::json!(["a"]),
            serde_json::json!(true),
        ] {
            assert!(
                read(serde_json::json!({ "sub": bad }), "sub", "email").is_err(),
                "{bad}"
            );
        }
        let negative = read(serde_json::json!({"sub": -7}), "sub", "email").expect("integer");
        assert_eq!(negative.subject, "-7");
    }
}
