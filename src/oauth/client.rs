//! The token-exchange module: the only code that talks to the token endpoint.

use std::time::Duration;

use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet,
    EndpointSet, ExtraTokenFields, HttpClientError, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, RequestTokenError, Scope, StandardRevocableToken, StandardTokenResponse,
    TokenResponse, TokenUrl,
};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use url::Url;

use super::{discovery, id_token, userinfo};
use crate::config::{ClientAuth, ProviderSettings, ServerSettings};
use crate::identity::{now_unix, Identity, Token, TokenSet};

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

type TokenResponseWithId = StandardTokenResponse<IdTokenField, BasicTokenType>;

/// oauth2's type-state client, with an authorize and a token endpoint set.
type OAuthClient = oauth2::Client<
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

/// Why a call to the provider failed. Texts name codes and statuses, never codes or tokens.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("provider unreachable")]
    Unreachable,
    #[error("provider did not answer within the timeout")]
    Timeout,
    #[error("provider answered with OAuth error `{0}`")]
    ErrorResponse(String),
    #[error("provider answered with HTTP status {0}")]
    UnexpectedStatus(u16),
    #[error("provider's answer is malformed: {0}")]
    Malformed(String),
    #[error("ID token rejected: {0}")]
    IdToken(String),
    #[error("provider settings are incomplete: {0}")]
    Settings(String),
}

impl ProviderError {
    pub fn from_reqwest(e: oauth2::reqwest::Error) -> Self {
        if e.is_timeout() {
            ProviderError::Timeout
        } else if let Some(status) = e.status() {
            ProviderError::UnexpectedStatus(status.as_u16())
        } else {
            ProviderError::Unreachable
        }
    }
}

/// A new authorization request: what goes to the browser and what stays in the pending sign-in.
pub struct AuthorizationRequest {
    pub url: Url,
    pub pkce_verifier: String,
}

pub struct Provider {
    oauth: OAuthClient,
    http: oauth2::reqwest::Client,
    settings: ProviderSettings,
}

impl Provider {
    /// Builds the client; runs discovery first when an issuer is configured.
    pub async fn build(
        mut settings: ProviderSettings,
        server: &ServerSettings,
    ) -> Result<Provider, ProviderError> {
        let http = oauth2::reqwest::Client::builder()
            .redirect(oauth2::reqwest::redirect::Policy::none())
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(|e| ProviderError::Settings(format!("HTTP client: {e}")))?;
        if Self::needs_discovery(&settings) {
            discovery::fill(&mut settings, &http).await?;
        }
        let auth_url = settings
            .auth_url
            .clone()
            .ok_or_else(|| ProviderError::Settings("no authorization endpoint".into()))?;
        let token_url = settings
            .token_url
            .clone()
            .ok_or_else(|| ProviderError::Settings("no token endpoint".into()))?;
        if !settings.wants_openid() && settings.userinfo_url.is_none() {
            return Err(ProviderError::Settings(
                "scopes lack openid and no userinfo endpoint is known".into(),
            ));
        }
        let redirect = RedirectUrl::new(server.redirect_uri())
            .map_err(|e| ProviderError::Settings(format!("redirect URI: {e}")))?;
        let mut oauth = oauth2::Client::new(ClientId::new(settings.client_id.clone()))
            .set_auth_uri(AuthUrl::from_url(auth_url))
            .set_token_uri(TokenUrl::from_url(token_url))
            .set_redirect_uri(redirect)
            .set_auth_type(match settings.client_auth {
                ClientAuth::Basic => AuthType::BasicAuth,
                ClientAuth::Post => AuthType::RequestBody,
            });
        if let Some(secret) = &settings.client_secret {
            oauth = oauth.set_client_secret(ClientSecret::new(secret.expose_secret().to_owned()));
        }
        Ok(Provider {
            oauth,
            http,
            settings,
        })
    }

    /// Whether an issuer is set and some endpoint must come from its discovery document.
    pub fn needs_discovery(settings: &ProviderSettings) -> bool {
        settings.issuer.is_some()
            && (settings.auth_url.is_none()
                || settings.token_url.is_none()
                || settings.jwks_url.is_none()
                || (settings.userinfo_url.is_none() && !settings.wants_openid()))
    }

    pub fn settings(&self) -> &ProviderSettings {
        &self.settings
    }

    /// The issuer as configured, without a trailing slash (how providers write it).
    pub fn issuer(&self) -> Option<&str> {
        self.settings
            .issuer
            .as_ref()
            .map(|u| u.as_str().trim_end_matches('/'))
    }

    /// The provider's authorize URL for a new sign-in, with a fresh PKCE S256 pair.
    pub fn authorization_request(&self, state: &str, nonce: Option<&str>) -> AuthorizationRequest {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let state = state.to_owned();
        let mut request = self
            .oauth
            .authorize_url(move || CsrfToken::new(state))
            .add_scopes(self.settings.scopes.iter().cloned().map(Scope::new))
            .set_pkce_challenge(challenge);
        if let Some(nonce) = nonce {
            request = request.add_extra_param("nonce", nonce.to_owned());
        }
        let (url, _) = request.url();
        AuthorizationRequest {
            url,
            pkce_verifier: verifier.secret().to_owned(),
        }
    }

    /// Exchanges a code for tokens and establishes who signed in.
    pub async fn sign_in(
        &self,
        code: &str,
        pkce_verifier: &str,
        nonce: Option<&str>,
    ) -> Result<(Identity, TokenSet), ProviderError> {
        let tokens = self.exchange(code, pkce_verifier).await?;
        let identity = self.identity(&tokens, nonce).await?;
        Ok((identity, tokens))
    }

    async fn exchange(&self, code: &str, pkce_verifier: &str) -> Result<TokenSet, ProviderError> {
        let response = self
            .oauth
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
            .request_async(&self.http)
            .await
            .map_err(classify)?;
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
        // RFC 6749 5.1: no `scope` in the answer means the requested scopes were granted.
        let scopes = match response.scopes() {
            Some(granted) => granted.iter().map(|s| s.to_string()).collect(),
            None => self.settings.scopes.clone(),
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

    async fn identity(
        &self,
        tokens: &TokenSet,
        nonce: Option<&str>,
    ) -> Result<Identity, ProviderError> {
        if self.settings.wants_openid() {
            let raw = tokens.id_token.as_ref().ok_or_else(|| {
                ProviderError::IdToken("the token response has no id_token".into())
            })?;
            let mut identity = id_token::verify_claims(
                raw.expose(),
                &id_token::Expectations {
                    client_id: &self.settings.client_id,
                    issuer: self.issuer(),
                    nonce,
                    now: now_unix(),
                },
            )
            .map_err(|e| ProviderError::IdToken(e.to_string()))?;
            // Some providers keep email out of the ID token; ask userinfo when we can.
            if identity.email.is_none() {
                if let Some(url) = &self.settings.userinfo_url {
                    let extra = userinfo::fetch(&self.http, url, &tokens.access_token).await?;
                    if extra.subject == identity.subject {
                        identity.email = extra.email;
                        identity.email_verified = extra.email_verified;
                        identity.name = identity.name.or(extra.name);
                        identity.preferred_username =
                            identity.preferred_username.or(extra.preferred_username);
                    }
                }
            }
            Ok(identity)
        } else {
            let url = self
                .settings
                .userinfo_url
                .as_ref()
                .ok_or_else(|| ProviderError::Settings("no userinfo endpoint".into()))?;
            userinfo::fetch(&self.http, url, &tokens.access_token).await
        }
    }
}

fn classify(
    e: RequestTokenError<HttpClientError<oauth2::reqwest::Error>, BasicErrorResponse>,
) -> ProviderError {
    match e {
        RequestTokenError::ServerResponse(err) => {
            ProviderError::ErrorResponse(err.error().as_ref().to_owned())
        }
        RequestTokenError::Request(HttpClientError::Reqwest(e)) => ProviderError::from_reqwest(*e),
        RequestTokenError::Request(_) => ProviderError::Unreachable,
        // The path only: serde messages can quote the offending value, which may be a token.
        RequestTokenError::Parse(e, _body) => {
            ProviderError::Malformed(format!("unexpected JSON at `{}`", e.path()))
        }
        RequestTokenError::Other(text) => ProviderError::Malformed(text),
    }
}
