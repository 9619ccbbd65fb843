//! What the token endpoint answers: oauth2's types for it (with the `id_token` field), and the
//! checks every answer passes before its tokens are kept.

use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    EndpointNotSet, EndpointSet, ExtraTokenFields, StandardRevocableToken, StandardTokenResponse,
    TokenResponse,
};
use serde::{Deserialize, Serialize};

use super::ProviderError;
use crate::identity::{now_unix, Token, TokenSet};

/// The token response's extra field we need: `BasicTokenResponse` would drop `id_token`.
#[derive(Clone, Deserialize, Serialize)]
pub struct IdTokenField {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

impl std::fmt::Debug for IdTokenField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdTokenField([REDACTED])")
    }
}

impl ExtraTokenFields for IdTokenField {}

pub(super) type TokenResponseWithId = StandardTokenResponse<IdTokenField, BasicTokenType>;

/// oauth2's type-state client, with an authorize and a token endpoint set.
pub(super) type OAuthClient = oauth2::Client<
    BasicErrorResponse,
    TokenResponseWithId,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// A token response checked like every one we accept (Bearer, a non-empty access token).
/// `requested` are the scopes asked for: RFC 6749 5.1 says an answer without `scope` granted
/// them.
pub(super) fn token_set(
    response: &TokenResponseWithId,
    requested: &[String],
) -> Result<TokenSet, ProviderError> {
    if *response.token_type() != BasicTokenType::Bearer {
        return Err(ProviderError::Malformed(format!(
            "token_type {:?} is not Bearer",
            response.token_type().as_ref()
        )));
    }
    if response.access_token().secret().is_empty() {
        return Err(ProviderError::Malformed("empty access_token".into()));
    }
    let expires_at = response
        .expires_in()
        .map(|d| now_unix().saturating_add(d.as_secs()));
    let scopes = match response.scopes() {
        Some(granted) => granted.iter().map(|s| s.to_string()).collect(),
        None => requested.to_vec(),
    };
    Ok(TokenSet {
        access_token: Token::new(response.access_token().secret().to_owned()),
        refresh_token: response
            .refresh_token()
            .map(|t| Token::new(t.secret().to_owned())),
        id_token: response.extra_fields().id_token.clone().map(Token::new),
        expires_at,
        scopes,
    })
}
