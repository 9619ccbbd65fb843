//! The token-exchange module: the only code that talks to the token endpoint (code exchange
//! and refresh) and the revocation endpoint; also builds the provider's end-session URL.

use std::time::Duration;

use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet,
    EndpointSet, ExtraTokenFields, HttpClientError, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, RefreshToken, RequestTokenError, Scope, StandardRevocableToken,
    StandardTokenResponse, TokenResponse, TokenUrl,
};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use url::Url;

use super::jwks::KeySet;
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
    /// The JWKS that ID-token signatures are checked against; `None` = claims only.
    keys: Option<KeySet>,
    /// RFC 7009; from discovery only (there is no setting).
    revocation_endpoint: Option<Url>,
    /// OIDC RP-Initiated Logout; from discovery only.
    end_session_endpoint: Option<Url>,
    /// RFC 9207: callbacks must carry `iss`.
    iss_parameter_supported: bool,
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
        let discovered = if Self::needs_discovery(&settings) {
            discovery::fill(&mut settings, &http).await?
        } else {
            discovery::Discovered::default()
        };
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
        let keys = settings
            .jwks_url
            .clone()
            .map(|url| KeySet::new(url, http.clone()));
        if keys.is_none() && settings.wants_openid() {
            tracing::warn!(
                "no JWKS URL (neither PROVIDER__ISSUER nor PROVIDER__JWKS_URL): ID-token \
                 signatures are not verified, only their claims"
            );
        }
        let revocation_endpoint = discovered.revocation_endpoint.filter(|url| {
            let fine = secure_enough(url);
            if !fine {
                tracing::warn!("the discovered revocation endpoint is not https; not used");
            }
            fine
        });
        Ok(Provider {
            oauth,
            http,
            settings,
            keys,
            revocation_endpoint,
            end_session_endpoint: discovered.end_session_endpoint,
            iss_parameter_supported: discovered.iss_parameter_supported,
        })
    }

    /// Whether an issuer is set and some endpoint must come from its discovery document.
    /// When every endpoint is set explicitly, nothing is fetched (a deployment may do that
    /// precisely because gatehouse cannot reach the issuer's address, see docker-compose.yml);
    /// the revocation and end-session endpoints and RFC 9207 support then stay unknown.
    pub fn needs_discovery(settings: &ProviderSettings) -> bool {
        settings.issuer.is_some()
            && (settings.auth_url.is_none()
                || settings.token_url.is_none()
                || settings.jwks_url.is_none()
                || (settings.userinfo_url.is_none() && !settings.wants_openid()))
    }

    /// RFC 9207: the provider advertises `iss` in authorization responses, so a callback
    /// without it (or with another value) is a mix-up attempt.
    pub fn requires_iss(&self) -> bool {
        self.iss_parameter_supported
    }

    pub fn settings(&self) -> &ProviderSettings {
        &self.settings
    }

    /// The provider's signing keys (from `JWKS_URL` or discovery), when it has any.
    pub fn keys(&self) -> Option<&KeySet> {
        self.keys.as_ref()
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
        self.token_set(&response)
    }

    /// A token response checked like every one we accept (Bearer, a non-empty access token).
    fn token_set(&self, response: &TokenResponseWithId) -> Result<TokenSet, ProviderError> {
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

    /// Refreshes the access token (grant_type=refresh_token) through the same client as the
    /// code exchange: same client authentication, timeout, no redirects, same answer checks.
    ///
    /// The returned `refresh_token` is the new one when the provider rotated it, else `None`
    /// (keep the old one); `id_token` likewise is the new one or `None`. A new ID token is
    /// verified (signature, iss, aud, exp, iat; no nonce, which OIDC Core 12.2 lets it omit)
    /// and must be about `subject`. An OAuth error answer comes back as
    /// `ProviderError::ErrorResponse(code)`, e.g. `invalid_grant` for a dead refresh token.
    pub async fn refresh(
        &self,
        refresh_token: &Token,
        subject: &str,
    ) -> Result<TokenSet, ProviderError> {
        let sent = RefreshToken::new(refresh_token.expose().to_owned());
        let response = self
            .oauth
            .exchange_refresh_token(&sent)
            .request_async(&self.http)
            .await
            .map_err(classify)?;
        let mut tokens = self.token_set(&response)?;
        if tokens
            .refresh_token
            .as_ref()
            .is_some_and(|new| new.expose() == refresh_token.expose())
        {
            tokens.refresh_token = None;
        }
        if let Some(raw) = &tokens.id_token {
            let identity = self.verify_id_token(raw, None).await?;
            // OIDC Core 12.2: a refreshed ID token must be about the same user.
            if identity.subject != subject {
                return Err(ProviderError::IdToken(
                    "the refreshed ID token is about another subject".into(),
                ));
            }
        }
        Ok(tokens)
    }

    /// Revokes a refresh token (RFC 7009, `token_type_hint=refresh_token`) with the client's
    /// authentication. `Ok(false)`: no revocation endpoint is known, nothing was sent.
    pub async fn revoke(&self, token: &Token) -> Result<bool, ProviderError> {
        let Some(url) = &self.revocation_endpoint else {
            return Ok(false);
        };
        let params = [
            ("token", token.expose()),
            ("token_type_hint", "refresh_token"),
        ];
        let response = self
            .client_authenticated_post(url, &params)
            .send()
            .await
            .map_err(ProviderError::from_reqwest)?;
        let status = response.status();
        if status.is_success() {
            return Ok(true);
        }
        let body = response.bytes().await.unwrap_or_default();
        Err(match oauth_error_code(&body) {
            Some(code) => ProviderError::ErrorResponse(code),
            None => ProviderError::UnexpectedStatus(status.as_u16()),
        })
    }

    /// The provider's logout URL (OIDC RP-Initiated Logout 1.0), with `id_token_hint` when
    /// given, `post_logout_redirect_uri` and `client_id` (which lets the provider check the
    /// redirect even without a hint). `None` when no end-session endpoint is known.
    pub fn end_session_url(
        &self,
        id_token_hint: Option<&Token>,
        post_logout_redirect_uri: &str,
    ) -> Option<Url> {
        let mut url = self.end_session_endpoint.clone()?;
        {
            let mut query = url.query_pairs_mut();
            if let Some(hint) = id_token_hint {
                query.append_pair("id_token_hint", hint.expose());
            }
            query.append_pair("post_logout_redirect_uri", post_logout_redirect_uri);
            query.append_pair("client_id", &self.settings.client_id);
        }
        Some(url)
    }

    /// A POST to a provider endpoint authenticated as oauth2 does for the token endpoint
    /// (RFC 6749 2.3.1: id and secret form-encoded before Basic; or both in the body; a public
    /// client sends its id only), for the endpoints oauth2 cannot reach for us.
    fn client_authenticated_post(
        &self,
        url: &Url,
        params: &[(&str, &str)],
    ) -> oauth2::reqwest::RequestBuilder {
        use base64::Engine;
        let mut form: Vec<(&str, &str)> = params.to_vec();
        let mut request = self
            .http
            .post(url.clone())
            .header("accept", "application/json");
        match (&self.settings.client_auth, &self.settings.client_secret) {
            (ClientAuth::Basic, Some(secret)) => {
                let encode = |s: &str| {
                    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
                };
                let credentials = format!(
                    "{}:{}",
                    encode(&self.settings.client_id),
                    encode(secret.expose_secret())
                );
                let value = base64::engine::general_purpose::STANDARD.encode(credentials);
                request = request.header("authorization", format!("Basic {value}"));
            }
            (_, secret) => {
                form.push(("client_id", &self.settings.client_id));
                if let Some(secret) = secret {
                    form.push(("client_secret", secret.expose_secret()));
                }
            }
        }
        request.form(&form)
    }

    async fn verify_id_token(
        &self,
        raw: &Token,
        nonce: Option<&str>,
    ) -> Result<Identity, ProviderError> {
        id_token::verify(
            raw.expose(),
            self.keys.as_ref(),
            &id_token::Expectations {
                client_id: &self.settings.client_id,
                issuer: self.issuer(),
                nonce,
                now: now_unix(),
            },
        )
        .await
        .map_err(|e| ProviderError::IdToken(e.to_string()))
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
            let mut identity = self.verify_id_token(raw, nonce).await?;
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

/// RFC 7009 2: the revocation endpoint must be https; plain http only on this machine (a
/// development provider).
fn secure_enough(url: &Url) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
            None => false,
        },
        _ => false,
    }
}

/// The `error` code of an OAuth error body, when it is one (RFC 6749 5.2 limits codes to
/// printable ASCII without `"` and `\`; anything else is not trusted into a log line).
fn oauth_error_code(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct ErrorBody {
        error: String,
    }
    let parsed: ErrorBody = serde_json::from_slice(body).ok()?;
    let fine = |b: u8| (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\';
    (!parsed.error.is_empty() && parsed.error.len() <= 64 && parsed.error.bytes().all(fine))
        .then_some(parsed.error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http_revocation_endpoints_are_used() {
        let ok = |u: &str| secure_enough(&Url::parse(u).expect("url"));
        assert!(ok("https://idp.example/revoke"));
        assert!(ok("http://127.0.0.1:9090/token/revocation"));
        assert!(ok("http://[::1]:9090/r"));
        assert!(ok("http://localhost/r"));
        assert!(!ok("http://idp.example/revoke"));
        assert!(!ok("http://10.0.0.1/revoke"));
        assert!(!ok("ftp://127.0.0.1/r"));
    }

    #[test]
    fn oauth_error_codes_are_read_only_when_printable() {
        assert_eq!(
            oauth_error_code(br#"{"error":"invalid_grant","error_description":"x"}"#).as_deref(),
            Some("invalid_grant")
        );
        assert_eq!(oauth_error_code(b"<html>"), None);
        assert_eq!(oauth_error_code(br#"{"error":""}"#), None);
        assert_eq!(
            oauth_error_code("{\"error\":\"bad\\nline\"}".as_bytes()),
            None
        );
    }
}
