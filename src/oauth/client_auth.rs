//! How gatehouse proves it is the client at the token and revocation endpoints:
//! client_secret_basic, client_secret_post, no secret (public client), or private_key_jwt.
//!
//! oauth2 handles the first three at the token endpoint itself; private_key_jwt rides on it
//! as two extra body parameters (with `client_id`, which oauth2 sends when there is no
//! secret). The revocation endpoint, which oauth2 does not reach for us, uses
//! [`authenticated_post`] for all four.

use secrecy::ExposeSecret;
use url::Url;

use super::client_key::ASSERTION_TYPE;
use super::ProviderError;
use crate::config::{ClientAuth, ProviderSettings};
use crate::identity::now_unix;

/// The body parameters a private_key_jwt client adds to a token or revocation request: a
/// fresh assertion each time (providers refuse a reused `jti`). Empty for the other methods.
///
/// The assertion's `aud` is the token endpoint, also for revocation: OIDC Core 9 names it,
/// Entra ID requires it, and Keycloak and oidc-provider accept it (a single string; the issuer
/// is not added, see docs/providers.md).
pub(super) fn assertion_params(
    settings: &ProviderSettings,
    token_url: &Url,
) -> Result<Vec<(&'static str, String)>, ProviderError> {
    let (ClientAuth::PrivateKeyJwt, Some(key)) = (settings.client_auth, &settings.client_key)
    else {
        return Ok(Vec::new());
    };
    let assertion = key
        .client_assertion(&settings.client_id, token_url.as_str(), now_unix())
        .map_err(|_| ProviderError::Settings("the client assertion could not be signed".into()))?;
    Ok(vec![
        ("client_assertion_type", ASSERTION_TYPE.to_owned()),
        ("client_assertion", assertion),
    ])
}

/// A form POST to a provider endpoint, authenticated as oauth2 does it at the token endpoint
/// (RFC 6749 2.3.1: id and secret form-encoded before Basic; or both in the body; a public
/// client sends its id only), or with a client assertion.
pub(super) fn authenticated_post(
    http: &oauth2::reqwest::Client,
    settings: &ProviderSettings,
    token_url: &Url,
    url: &Url,
    params: &[(&str, &str)],
) -> Result<oauth2::reqwest::RequestBuilder, ProviderError> {
    use base64::Engine;
    let mut form: Vec<(&str, String)> = params.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    let mut request = http.post(url.clone()).header("accept", "application/json");
    match (&settings.client_auth, &settings.client_secret) {
        (ClientAuth::PrivateKeyJwt, _) => {
            form.push(("client_id", settings.client_id.clone()));
            form.extend(assertion_params(settings, token_url)?);
        }
        (ClientAuth::Basic, Some(secret)) => {
            let encode =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let credentials = format!(
                "{}:{}",
                encode(&settings.client_id),
                encode(secret.expose_secret())
            );
            let value = base64::engine::general_purpose::STANDARD.encode(credentials);
            request = request.header("authorization", format!("Basic {value}"));
        }
        (_, secret) => {
            form.push(("client_id", settings.client_id.clone()));
            if let Some(secret) = secret {
                form.push(("client_secret", secret.expose_secret().to_owned()));
            }
        }
    }
    Ok(request.form(&form))
}
