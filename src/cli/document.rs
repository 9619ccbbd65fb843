//! The server's `/.well-known/gatehouse`: which provider to sign in at, with which client.

use serde::Deserialize;
use url::Url;

use crate::oauth::ProviderError;

#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error(
        "{0} does not offer command-line sign-in (GATEHOUSE__CLI__CLIENT_ID is not set there)"
    )]
    Off(String),
    #[error("cannot read {url}: {source}")]
    Unreachable { url: String, source: ProviderError },
    #[error("{url} is not a gatehouse document: {why}")]
    Malformed { url: String, why: String },
}

/// What `gatehouse login` needs from the server.
#[derive(Debug, Clone)]
pub struct ServerDocument {
    /// Exactly as the server states it: `iss` values must equal it character for character.
    pub issuer: String,
    pub client_id: String,
    pub scopes: Vec<String>,
}

#[derive(Deserialize)]
struct Raw {
    issuer: String,
    cli_client_id: String,
    scopes: Vec<String>,
}

/// Fetches `<server>/.well-known/gatehouse`: bounded in time and size, following no redirect
/// (an http-to-https redirect would hide that the user typed the wrong URL).
pub async fn fetch(server: &Url) -> Result<ServerDocument, DocumentError> {
    let url = format!(
        "{}/.well-known/gatehouse",
        server.as_str().trim_end_matches('/')
    );
    let unreachable = |source| DocumentError::Unreachable {
        url: url.clone(),
        source,
    };
    let http = oauth2::reqwest::Client::builder()
        .redirect(oauth2::reqwest::redirect::Policy::none())
        .timeout(super::HTTP_TIMEOUT)
        .build()
        .map_err(|e| unreachable(ProviderError::Settings(format!("HTTP client: {e}"))))?;
    let body = match crate::oauth::http::body(http.get(&url)).await {
        Ok(body) => body,
        Err(ProviderError::UnexpectedStatus(404)) => {
            return Err(DocumentError::Off(server.as_str().to_owned()))
        }
        Err(source) => return Err(unreachable(source)),
    };
    let malformed = |why: &str| DocumentError::Malformed {
        url: url.clone(),
        why: why.to_owned(),
    };
    let raw: Raw = serde_json::from_slice(&body).map_err(|_| malformed("not the JSON expected"))?;
    let issuer_url = Url::parse(&raw.issuer).map_err(|_| malformed("its issuer is not a URL"))?;
    // The issuer decides whom we trust for the user's identity: the same rule as the server's.
    if !super::args::trustworthy(&issuer_url) {
        return Err(malformed(
            "its issuer is not https:// (http:// only to this machine)",
        ));
    }
    if raw.cli_client_id.is_empty() {
        return Err(malformed("its cli_client_id is empty"));
    }
    if !raw.scopes.iter().any(|s| s == "openid") {
        return Err(malformed("its scopes lack openid"));
    }
    Ok(ServerDocument {
        issuer: raw.issuer,
        client_id: raw.cli_client_id,
        scopes: raw.scopes,
    })
}
