//! OpenID Connect discovery: fills the endpoint URLs that were not set explicitly, and reports
//! what has no setting of its own (revocation, end session, RFC 9207 support).

use serde::Deserialize;
use url::Url;

use super::ProviderError;
use crate::config::ProviderSettings;

#[derive(Debug, Deserialize)]
struct Document {
    issuer: String,
    authorization_endpoint: Option<String>,
    token_endpoint: Option<String>,
    userinfo_endpoint: Option<String>,
    jwks_uri: Option<String>,
    revocation_endpoint: Option<String>,
    end_session_endpoint: Option<String>,
    authorization_response_iss_parameter_supported: Option<bool>,
}

/// What discovery found beyond the settings it fills.
#[derive(Debug, Default, Clone)]
pub struct Discovered {
    pub revocation_endpoint: Option<Url>,
    pub end_session_endpoint: Option<Url>,
    /// RFC 9207: the provider puts `iss` in every authorization response.
    pub iss_parameter_supported: bool,
}

/// Fetches `<issuer>/.well-known/openid-configuration` once and fills the gaps in `settings`.
/// Explicit settings win. The document's `issuer` must equal the setting exactly (OpenID
/// Connect Discovery 4.3: no trailing-slash leniency), and every URL it gives must be https
/// (or plain http where the settings allow it, see `ProviderSettings::url_allowed`).
pub async fn fill(
    settings: &mut ProviderSettings,
    http: &oauth2::reqwest::Client,
) -> Result<Discovered, ProviderError> {
    let Some(issuer) = settings.issuer.clone() else {
        return Ok(Discovered::default());
    };
    let doc = document(&issuer, http).await?;
    let parse = |name: &str, s: Option<String>| -> Result<Option<Url>, ProviderError> {
        let Some(url) = s.and_then(|s| Url::parse(&s).ok()) else {
            return Ok(None);
        };
        if !settings.url_allowed(&url) {
            return Err(ProviderError::Malformed(format!(
                "discovery's {name} {url} is not https (plain http only on loopback hosts or \
                 GATEHOUSE__PROVIDER__PLAIN_HTTP_HOSTS)"
            )));
        }
        Ok(Some(url))
    };
    let authorization_endpoint = parse("authorization_endpoint", doc.authorization_endpoint)?;
    let token_endpoint = parse("token_endpoint", doc.token_endpoint)?;
    let userinfo_endpoint = parse("userinfo_endpoint", doc.userinfo_endpoint)?;
    let jwks_uri = parse("jwks_uri", doc.jwks_uri)?;
    let revocation_endpoint = parse("revocation_endpoint", doc.revocation_endpoint)?;
    let end_session_endpoint = parse("end_session_endpoint", doc.end_session_endpoint)?;
    if settings.auth_url.is_none() {
        settings.auth_url = authorization_endpoint;
    }
    if settings.token_url.is_none() {
        settings.token_url = token_endpoint;
    }
    if settings.userinfo_url.is_none() {
        settings.userinfo_url = userinfo_endpoint;
    }
    if settings.jwks_url.is_none() {
        settings.jwks_url = jwks_uri;
    }
    if settings.auth_url.is_none() || settings.token_url.is_none() {
        return Err(ProviderError::Malformed(
            "discovery document lacks authorization or token endpoint".into(),
        ));
    }
    Ok(Discovered {
        revocation_endpoint,
        end_session_endpoint,
        iss_parameter_supported: doc
            .authorization_response_iss_parameter_supported
            .unwrap_or(false),
    })
}

/// `<issuer>/.well-known/openid-configuration`, whose `issuer` must equal `issuer` exactly.
async fn document(issuer: &str, http: &oauth2::reqwest::Client) -> Result<Document, ProviderError> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        // Discovery 4.1: a terminating `/` of the issuer is removed before appending the path.
        issuer.trim_end_matches('/')
    );
    let body = super::http::body(http.get(&url)).await?;
    // A wrongly typed member (say `"authorization_response_iss_parameter_supported": "yes"`)
    // fails the document: guessing could switch a protection off. Absent or null: false.
    let doc: Document = serde_json::from_slice(&body)
        .map_err(|e| ProviderError::Malformed(format!("discovery document: {e}")))?;
    // Exactly (Discovery 4.3): no trailing-slash leniency.
    if doc.issuer != issuer {
        return Err(ProviderError::Malformed(format!(
            "discovery issuer {:?} differs from the configured issuer",
            doc.issuer
        )));
    }
    Ok(doc)
}

/// The signing keys' URL of another issuer (bearer tokens from `BEARER__EXTRA_ISSUERS`).
pub async fn jwks_uri(issuer: &str, http: &oauth2::reqwest::Client) -> Result<Url, ProviderError> {
    document(issuer, http)
        .await?
        .jwks_uri
        .and_then(|s| Url::parse(&s).ok())
        .ok_or_else(|| ProviderError::Malformed("discovery document lacks jwks_uri".into()))
}
