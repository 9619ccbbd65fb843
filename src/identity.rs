//! Who signed in and the tokens kept for them, as stored in the server-side session.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The signed-in user. Safe to show and to log (no secrets).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Identity {
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: Option<bool>,
    pub name: Option<String>,
    pub preferred_username: Option<String>,
    /// From `ACCESS__GROUPS_CLAIM`; empty when the user has none (or none are asked for).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// The values of the claims `FORWARD__CLAIM_HEADERS` names, by claim path as configured:
    /// only what a header needs is kept.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub claims: BTreeMap<String, String>,
    /// Every claim the provider sent (ID token, else userinfo), while signing in; never stored.
    /// Groups and claim values are picked from it by the claims module.
    #[serde(skip)]
    pub raw_claims: serde_json::Map<String, serde_json::Value>,
    /// Whether userinfo's claims are already in `raw_claims` (no need to ask again).
    #[serde(skip)]
    pub asked_userinfo: bool,
}

/// A token string whose `Debug` never prints it.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Token(String);

impl Token {
    pub fn new(value: String) -> Self {
        Token(value)
    }

    /// Only for the provider calls that need it; never log the result.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token([REDACTED])")
    }
}

/// The provider's tokens. They stay in Redis; no endpoint returns them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenSet {
    pub access_token: Token,
    pub refresh_token: Option<Token>,
    pub id_token: Option<Token>,
    /// Unix seconds when the access token expires, when the provider said.
    pub expires_at: Option<u64>,
    pub scopes: Vec<String>,
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
