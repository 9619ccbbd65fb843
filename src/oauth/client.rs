//! The token-exchange module: the only code that talks to the token endpoint (code exchange
//! and refresh) and the revocation endpoint; also builds the provider's end-session URL.

use std::time::Duration;

use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RefreshToken, Scope, TokenUrl,
};
use secrecy::ExposeSecret;
use url::Url;

use super::error::{classify, oauth_error_code};
use super::jwks::KeySet;
use super::token_response::{self, OAuthClient};
use super::{client_auth, discovery, id_token, trust, userinfo, ProviderError};
use crate::config::{ClientAuth, ProviderSettings, ServerSettings};
use crate::identity::{now_unix, Identity, Token, TokenSet};

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
    /// The token endpoint: also the `aud` of client assertions.
    token_url: Url,
}

impl Provider {
    /// Builds the client; runs discovery first when an issuer is configured.
    pub async fn build(
        settings: ProviderSettings,
        server: &ServerSettings,
    ) -> Result<Provider, ProviderError> {
        Self::build_for_redirect(settings, &server.redirect_uri()).await
    }

    /// Like [`Provider::build`], for a client whose redirect URI is not the server's: the
    /// command line's loopback listener (RFC 8252), which shares every check with the server.
    pub async fn build_for_redirect(
        mut settings: ProviderSettings,
        redirect_uri: &str,
    ) -> Result<Provider, ProviderError> {
        let http = http_client(&settings)?;
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
        let redirect = RedirectUrl::new(redirect_uri.to_owned())
            .map_err(|e| ProviderError::Settings(format!("redirect URI: {e}")))?;
        let mut oauth = oauth2::Client::new(ClientId::new(settings.client_id.clone()))
            .set_auth_uri(AuthUrl::from_url(auth_url))
            .set_token_uri(TokenUrl::from_url(token_url.clone()))
            .set_redirect_uri(redirect)
            .set_auth_type(match settings.client_auth {
                ClientAuth::Basic => AuthType::BasicAuth,
                // private_key_jwt: no secret, so oauth2 puts `client_id` in the body, beside
                // the assertion added to each request.
                ClientAuth::Post | ClientAuth::PrivateKeyJwt => AuthType::RequestBody,
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
        Ok(Provider {
            oauth,
            http,
            settings,
            keys,
            revocation_endpoint: discovered.revocation_endpoint,
            end_session_endpoint: discovered.end_session_endpoint,
            iss_parameter_supported: discovered.iss_parameter_supported,
            token_url,
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

    /// The provider's signing keys, when it has a JWKS (bearer tokens are checked with them).
    pub fn keys(&self) -> Option<&KeySet> {
        self.keys.as_ref()
    }

    /// The issuer exactly as configured: `iss` values are compared with it as they are, with
    /// no trailing-slash trimming (RFC 9207 2.4, OpenID Connect Core 3.1.3.7).
    pub fn issuer(&self) -> Option<&str> {
        self.settings.issuer.as_deref()
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
        // AUTH_PARAMS never name the parameters above (refused at start-up).
        for (name, value) in &self.settings.auth_params {
            request = request.add_extra_param(name.as_str(), value.as_str());
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
        let mut request = self
            .oauth
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()));
        for (name, value) in client_auth::assertion_params(&self.settings, &self.token_url)? {
            request = request.add_extra_param(name, value);
        }
        let response = request.request_async(&self.http).await.map_err(classify)?;
        token_response::token_set(&response, &self.settings.scopes)
    }

    /// Refreshes the access token (grant_type=refresh_token) through the same client as the
    /// code exchange: same client authentication, timeout, no redirects, same answer checks.
    ///
    /// The returned `refresh_token` is the new one when the provider rotated it, else `None`
    /// (keep the old one); `id_token` likewise is the new one or `None`, with the identity it
    /// states (claims may have changed). A new ID token is
    /// verified (signature, iss, aud, exp, iat; no nonce, which OIDC Core 12.2 lets it omit)
    /// and must be about `subject`. An OAuth error answer comes back as
    /// `ProviderError::ErrorResponse(code)`, e.g. `invalid_grant` for a dead refresh token.
    pub async fn refresh(
        &self,
        refresh_token: &Token,
        subject: &str,
    ) -> Result<(TokenSet, Option<Identity>), ProviderError> {
        let sent = RefreshToken::new(refresh_token.expose().to_owned());
        let mut request = self.oauth.exchange_refresh_token(&sent);
        for (name, value) in client_auth::assertion_params(&self.settings, &self.token_url)? {
            request = request.add_extra_param(name, value);
        }
        let response = request.request_async(&self.http).await.map_err(classify)?;
        let mut tokens = token_response::token_set(&response, &self.settings.scopes)?;
        if tokens
            .refresh_token
            .as_ref()
            .is_some_and(|new| new.expose() == refresh_token.expose())
        {
            tokens.refresh_token = None;
        }
        let mut refreshed = None;
        if let Some(raw) = &tokens.id_token {
            let identity = self.verify_id_token(raw, None).await?;
            // OIDC Core 12.2: a refreshed ID token must be about the same user.
            if identity.subject != subject {
                return Err(ProviderError::IdToken(
                    "the refreshed ID token is about another subject".into(),
                ));
            }
            refreshed = Some(identity);
        }
        Ok((tokens, refreshed))
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
        let response = client_auth::authenticated_post(
            &self.http,
            &self.settings,
            &self.token_url,
            url,
            &params,
        )?
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
                extra_audiences: &self.settings.extra_audiences,
                issuer: self.issuer(),
                nonce,
                now: now_unix(),
            },
        )
        .await
        .map_err(|e| ProviderError::IdToken(e.to_string()))
    }

    /// Userinfo's claims about `subject`, to fill in what the ID token lacks (groups kept only
    /// in userinfo, say). `None` when the provider has no userinfo endpoint, or it speaks of
    /// someone else.
    pub async fn userinfo_claims(
        &self,
        access_token: &crate::identity::Token,
        subject: &str,
    ) -> Result<Option<serde_json::Map<String, serde_json::Value>>, ProviderError> {
        let Some(url) = &self.settings.userinfo_url else {
            return Ok(None);
        };
        let fields = userinfo::Fields {
            subject: "sub",
            email: &self.settings.email_claim,
        };
        let info = userinfo::fetch(&self.http, url, access_token, &fields).await?;
        Ok((info.subject == subject).then_some(info.raw_claims))
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
                    // OpenID Connect's userinfo always names the user `sub` (Core 5.3.2).
                    let fields = userinfo::Fields {
                        subject: "sub",
                        email: &self.settings.email_claim,
                    };
                    let extra =
                        userinfo::fetch(&self.http, url, &tokens.access_token, &fields).await?;
                    if extra.subject == identity.subject {
                        for (name, value) in extra.raw_claims {
                            identity.raw_claims.entry(name).or_insert(value);
                        }
                        identity.asked_userinfo = true;
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
            let fields = userinfo::Fields {
                subject: &self.settings.subject_claim,
                email: &self.settings.email_claim,
            };
            userinfo::fetch(&self.http, url, &tokens.access_token, &fields).await
        }
    }
}

/// The one HTTP client every call to the provider uses: no redirects, bounded in time, the
/// provider's CA besides the built-in and system roots, and a User-Agent (GitHub's API refuses
/// requests without one).
fn http_client(settings: &ProviderSettings) -> Result<oauth2::reqwest::Client, ProviderError> {
    let builder = oauth2::reqwest::Client::builder()
        .redirect(oauth2::reqwest::redirect::Policy::none())
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
        .user_agent(concat!("gatehouse/", env!("CARGO_PKG_VERSION")));
    trust::with_roots(builder, &settings.ca_certificates)
        .build()
        .map_err(|e| ProviderError::Settings(format!("HTTP client: {e}")))
}
