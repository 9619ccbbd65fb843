//! Settings of the OpenID/OAuth provider and of our client there.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::reader::Reader;
use super::{invalid, SettingsError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    Basic,
    Post,
}

#[derive(Debug, Clone)]
pub struct ProviderSettings {
    pub issuer: Option<Url>,
    pub auth_url: Option<Url>,
    pub token_url: Option<Url>,
    pub userinfo_url: Option<Url>,
    pub jwks_url: Option<Url>,
    pub client_id: String,
    pub client_secret: Option<SecretString>,
    pub client_auth: ClientAuth,
    pub scopes: Vec<String>,
    pub timeout: Duration,
}

impl ProviderSettings {
    pub fn wants_openid(&self) -> bool {
        self.scopes.iter().any(|s| s == "openid")
    }
}

impl ProviderSettings {
    pub(super) fn read(r: &Reader) -> Result<Self, SettingsError> {
        let issuer = r.url("provider.issuer")?;
        let mut auth_url = r.url("provider.auth_url")?;
        let token_url = r.url("provider.token_url")?;
        if issuer.is_none() {
            if auth_url.is_none() {
                return Err(invalid(
                    "provider.auth_url",
                    "is required unless GATEHOUSE__PROVIDER__ISSUER is set",
                ));
            }
            if token_url.is_none() {
                return Err(invalid(
                    "provider.token_url",
                    "is required unless GATEHOUSE__PROVIDER__ISSUER is set",
                ));
            }
        }
        // An authorize URL with a query would have its parameters merged with ours; refuse
        // fragments, which browsers never send.
        if let Some(u) = auth_url.as_mut() {
            if u.fragment().is_some() {
                return Err(invalid("provider.auth_url", "must not have a fragment"));
            }
        }
        let client_id = r
            .optional("provider.client_id")
            .ok_or_else(|| invalid("provider.client_id", "is required"))?;
        let client_secret = r.secret("provider.client_secret")?.map(|bytes| {
            SecretString::from(String::from_utf8_lossy(bytes.expose_secret()).into_owned())
        });
        let client_auth = match r
            .required("provider.client_auth")?
            .to_ascii_lowercase()
            .as_str()
        {
            "basic" => ClientAuth::Basic,
            "post" => ClientAuth::Post,
            _ => return Err(invalid("provider.client_auth", "must be `basic` or `post`")),
        };
        let scopes: Vec<String> = r
            .required("provider.scopes")?
            .split_ascii_whitespace()
            .map(str::to_owned)
            .collect();
        if scopes.is_empty() {
            return Err(invalid("provider.scopes", "must name at least one scope"));
        }
        let userinfo_url = r.url("provider.userinfo_url")?;
        if !scopes.iter().any(|s| s == "openid") && userinfo_url.is_none() && issuer.is_none() {
            return Err(invalid(
                "provider.userinfo_url",
                "is required when GATEHOUSE__PROVIDER__SCOPES does not include openid",
            ));
        }
        let provider = ProviderSettings {
            issuer,
            auth_url,
            token_url,
            userinfo_url,
            jwks_url: r.url("provider.jwks_url")?,
            client_id,
            client_secret,
            client_auth,
            scopes,
            timeout: Duration::from_secs(r.number("provider.timeout_secs", 1, 300)?),
        };
        Ok(provider)
    }
}
