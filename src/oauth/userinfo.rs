//! The userinfo endpoint: identity for providers without ID tokens, or to fill in the email.

use serde::Deserialize;
use url::Url;

use super::ProviderError;
use crate::identity::{Identity, Token};

#[derive(Deserialize)]
#[serde(untagged)]
enum Subject {
    Text(String),
    Number(u64),
}

#[derive(Deserialize)]
struct UserInfo {
    // OIDC says `sub`; plain OAuth providers (GitHub-like) say `id`.
    sub: Option<Subject>,
    id: Option<Subject>,
    email: Option<String>,
    email_verified: Option<bool>,
    name: Option<String>,
    preferred_username: Option<String>,
    login: Option<String>,
}

pub async fn fetch(
    http: &oauth2::reqwest::Client,
    url: &Url,
    access_token: &Token,
) -> Result<Identity, ProviderError> {
    let body = super::http::body(http.get(url.clone()).bearer_auth(access_token.expose())).await?;
    let malformed = || ProviderError::Malformed("userinfo is not the expected JSON".into());
    let raw: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&body).map_err(|_| malformed())?;
    let info: UserInfo =
        serde_json::from_value(serde_json::Value::Object(raw.clone())).map_err(|_| malformed())?;
    let subject = match info.sub.or(info.id) {
        Some(Subject::Text(s)) if !s.is_empty() => s,
        Some(Subject::Number(n)) => n.to_string(),
        _ => return Err(ProviderError::Malformed("userinfo has no subject".into())),
    };
    Ok(Identity {
        subject,
        email: info.email,
        email_verified: info.email_verified,
        name: info.name,
        preferred_username: info.preferred_username.or(info.login),
        raw_claims: raw,
        asked_userinfo: true,
        ..Identity::default()
    })
}
