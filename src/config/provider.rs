//! Settings of the OpenID/OAuth provider and of our client there.
//!
//! Everything about one provider lives in `ProviderSettings`; the same code reads the default
//! provider (`[provider]`) and each further one (`[providers.<name>]`, see `providers.rs`).

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::reader::{build_config, Reader};
use super::{env_name, invalid, SettingsError, Sources};
use crate::client_key::ClientKey;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// client_secret_basic
    Basic,
    /// client_secret_post
    Post,
    /// RFC 7523 client assertions signed with `client_key`.
    PrivateKeyJwt,
}

#[derive(Debug, Clone)]
pub struct ProviderSettings {
    /// Exactly as configured (no normalisation): `iss` in callbacks and ID tokens and the
    /// discovery document's `issuer` must equal it character for character (RFC 9207 2.4,
    /// OpenID Connect Discovery 4.3, Core 3.1.3.7).
    pub issuer: Option<String>,
    pub auth_url: Option<Url>,
    pub token_url: Option<Url>,
    pub userinfo_url: Option<Url>,
    pub jwks_url: Option<Url>,
    pub client_id: String,
    pub client_secret: Option<SecretString>,
    pub client_auth: ClientAuth,
    /// Set exactly when `client_auth` is `PrivateKeyJwt`.
    pub client_key: Option<ClientKey>,
    pub scopes: Vec<String>,
    pub timeout: Duration,
    /// Trusted for the provider's TLS besides the built-in and system roots.
    pub ca_certificates: Vec<oauth2::reqwest::Certificate>,
    /// ID-token audiences accepted besides the client id.
    pub extra_audiences: Vec<String>,
    /// Added to every authorization request, in this order.
    pub auth_params: Vec<(String, String)>,
    /// Userinfo fields naming the user and the email when there is no ID token.
    pub subject_claim: String,
    pub email_claim: String,
    /// Hosts besides loopback whose provider URLs may be plain http (development only).
    pub plain_http_hosts: Vec<String>,
}

impl ProviderSettings {
    pub fn wants_openid(&self) -> bool {
        self.scopes.iter().any(|s| s == "openid")
    }

    /// Whether a provider URL (configured or discovered) may be used: https, or plain http on
    /// a loopback host or one listed in PLAIN_HTTP_HOSTS.
    pub fn url_allowed(&self, url: &Url) -> bool {
        secure_enough(url, &self.plain_http_hosts)
    }
}

/// The authorization request's own parameters, which AUTH_PARAMS may not name: each is set
/// by gatehouse, and a second value would be ambiguous or would switch a protection off.
/// `response_mode`, `request` and `request_uri` are refused too: they would change how the
/// answer comes back or replace the whole request.
pub const PROTOCOL_PARAMS: &[&str] = &[
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "redirect_uri",
    "client_id",
    "response_type",
    "scope",
    "response_mode",
    "request",
    "request_uri",
];

/// https, or plain http on a loopback host (`127.0.0.0/8`, `::1`, `localhost`) or on one of
/// `plain_http_hosts`.
pub fn secure_enough(url: &Url, plain_http_hosts: &[String]) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => match url.host() {
            Some(url::Host::Ipv4(ip)) => {
                ip.is_loopback() || plain_http_hosts.contains(&ip.to_string())
            }
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(name)) => {
                let name = name.to_ascii_lowercase();
                name == "localhost" || plain_http_hosts.contains(&name)
            }
            None => false,
        },
        _ => false,
    }
}

impl ProviderSettings {
    pub(super) fn read(r: &Reader) -> Result<Self, SettingsError> {
        Self::read_section(r, "provider")
    }

    /// Reads the provider whose keys are under `section` (`provider`, or `providers.<name>`
    /// for a further one): every message names that section's own variables.
    pub(super) fn read_section(r: &Reader, section: &str) -> Result<Self, SettingsError> {
        let k = |name: &str| format!("{section}.{name}");
        let env = |name: &str| env_name(&k(name));
        let plain_http_hosts: Vec<String> = r
            .list(&k("plain_http_hosts"))?
            .into_iter()
            .map(|h| h.to_ascii_lowercase())
            .collect();
        let url = |key: &str| provider_url(r, &k(key), &plain_http_hosts, &env("plain_http_hosts"));
        let issuer = read_issuer(r, section, &plain_http_hosts)?;
        let mut auth_url = url("auth_url")?;
        let token_url = url("token_url")?;
        if issuer.is_none() {
            let unless = format!("is required unless {} is set", env("issuer"));
            if auth_url.is_none() {
                return Err(invalid(&k("auth_url"), &unless));
            }
            if token_url.is_none() {
                return Err(invalid(&k("token_url"), &unless));
            }
        }
        // An authorize URL with a query would have its parameters merged with ours; refuse
        // fragments, which browsers never send.
        if let Some(u) = auth_url.as_mut() {
            if u.fragment().is_some() {
                return Err(invalid(&k("auth_url"), "must not have a fragment"));
            }
        }
        let client_id = r
            .optional(&k("client_id"))
            .ok_or_else(|| invalid(&k("client_id"), "is required"))?;
        let client_secret = r.secret(&k("client_secret"))?.map(|bytes| {
            SecretString::from(String::from_utf8_lossy(bytes.expose_secret()).into_owned())
        });
        let client_auth = match r.required(&k("client_auth"))?.to_ascii_lowercase().as_str() {
            "basic" => ClientAuth::Basic,
            "post" => ClientAuth::Post,
            "private_key_jwt" => ClientAuth::PrivateKeyJwt,
            _ => {
                return Err(invalid(
                    &k("client_auth"),
                    "must be `basic`, `post` or `private_key_jwt`",
                ))
            }
        };
        let client_key = read_client_key(r, section)?;
        match (client_auth, &client_key) {
            (ClientAuth::PrivateKeyJwt, None) => {
                return Err(invalid(
                    &k("client_key_file"),
                    format!("is required when {} is private_key_jwt", env("client_auth")),
                ))
            }
            (ClientAuth::PrivateKeyJwt, Some(_)) if client_secret.is_some() => {
                return Err(invalid(
                    &k("client_secret"),
                    format!(
                        "is set, but CLIENT_AUTH private_key_jwt authenticates with {} \
                         instead; unset one",
                        env("client_key_file")
                    ),
                ))
            }
            (ClientAuth::Basic | ClientAuth::Post, Some(_)) => {
                return Err(invalid(
                    &k("client_key_file"),
                    format!(
                        "is set, but it is used only with {}=private_key_jwt",
                        env("client_auth")
                    ),
                ))
            }
            _ => {}
        }
        let scopes: Vec<String> = r
            .required(&k("scopes"))?
            .split_ascii_whitespace()
            .map(str::to_owned)
            .collect();
        if scopes.is_empty() {
            return Err(invalid(&k("scopes"), "must name at least one scope"));
        }
        let userinfo_url = url("userinfo_url")?;
        if !scopes.iter().any(|s| s == "openid") && userinfo_url.is_none() && issuer.is_none() {
            return Err(invalid(
                &k("userinfo_url"),
                format!("is required when {} does not include openid", env("scopes")),
            ));
        }
        let provider = ProviderSettings {
            issuer,
            auth_url,
            token_url,
            userinfo_url,
            jwks_url: url("jwks_url")?,
            client_id,
            client_secret,
            client_auth,
            client_key,
            scopes,
            timeout: Duration::from_secs(r.number(&k("timeout_secs"), 1, 300)?),
            ca_certificates: read_ca_file(r, &k("ca_file"))?,
            extra_audiences: r.list(&k("extra_audiences"))?,
            auth_params: read_auth_params(r, &k("auth_params"))?,
            subject_claim: r.required(&k("subject_claim"))?,
            email_claim: r.required(&k("email_claim"))?,
            plain_http_hosts,
        };
        Ok(provider)
    }
}

fn provider_url(
    r: &Reader,
    key: &str,
    plain: &[String],
    plain_setting: &str,
) -> Result<Option<Url>, SettingsError> {
    let url = r.url(key)?;
    if let Some(u) = &url {
        if !secure_enough(u, plain) {
            return Err(invalid(
                key,
                format!(
                    "must be an https:// URL (plain http only on 127.0.0.1, ::1, localhost or \
                     {plain_setting})"
                ),
            ));
        }
    }
    Ok(url)
}

fn read_issuer(
    r: &Reader,
    section: &str,
    plain: &[String],
) -> Result<Option<String>, SettingsError> {
    let key = format!("{section}.issuer");
    let plain_setting = env_name(&format!("{section}.plain_http_hosts"));
    let Some(url) = provider_url(r, &key, plain, &plain_setting)? else {
        return Ok(None);
    };
    // OpenID Connect Core 2: an issuer has no query or fragment.
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(&key, "must not have a query or fragment"));
    }
    Ok(r.optional(&key))
}

fn read_client_key(r: &Reader, section: &str) -> Result<Option<ClientKey>, SettingsError> {
    let id_key = format!("{section}.client_key_id");
    let file_key = format!("{section}.client_key_file");
    let kid = r.optional(&id_key);
    let Some(path) = r.optional(&file_key) else {
        if kid.is_some() {
            return Err(invalid(
                &id_key,
                format!("is set without {}", env_name(&file_key)),
            ));
        }
        return Ok(None);
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| invalid(&file_key, format!("cannot be read ({})", e.kind())))?;
    ClientKey::from_pem(&text, kid)
        .map(Some)
        .map_err(|e| invalid(&file_key, e))
}

fn read_ca_file(r: &Reader, key: &str) -> Result<Vec<oauth2::reqwest::Certificate>, SettingsError> {
    let Some(path) = r.optional(key) else {
        return Ok(Vec::new());
    };
    let pem =
        std::fs::read(&path).map_err(|e| invalid(key, format!("cannot be read ({})", e.kind())))?;
    let certificates = oauth2::reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|_| invalid(key, "is not a PEM certificate bundle"))?;
    if certificates.is_empty() {
        return Err(invalid(key, "holds no PEM certificate"));
    }
    // The DER inside is parsed only when a client is built: build one now, so that a broken
    // certificate is a start-up error rather than a discovery failure retried for ever.
    let mut probe = oauth2::reqwest::Client::builder().tls_built_in_root_certs(false);
    for certificate in &certificates {
        probe = probe.add_root_certificate(certificate.clone());
    }
    probe
        .build()
        .map_err(|_| invalid(key, "holds a certificate that does not parse"))?;
    Ok(certificates)
}

fn read_auth_params(r: &Reader, key: &str) -> Result<Vec<(String, String)>, SettingsError> {
    let mut params: Vec<(String, String)> = Vec::new();
    for item in r.list(key)? {
        let Some((name, value)) = item.split_once('=') else {
            return Err(invalid(key, format!("entry `{item}` is not name=value")));
        };
        let (name, value) = (name.trim(), value.trim());
        let fine = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
        if name.is_empty() || !name.chars().all(fine) {
            return Err(invalid(
                key,
                format!("entry `{item}`: a parameter name is letters, digits, `_`, `-` or `.`"),
            ));
        }
        if value.is_empty() {
            return Err(invalid(key, format!("entry `{item}` has no value")));
        }
        if PROTOCOL_PARAMS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(invalid(
                key,
                format!(
                    "may not set `{name}`: gatehouse sets that parameter of the protocol itself"
                ),
            ));
        }
        if params.iter().any(|(n, _)| n == name) {
            return Err(invalid(key, format!("names `{name}` twice")));
        }
        params.push((name.to_owned(), value.to_owned()));
    }
    Ok(params)
}

/// The client key alone, for `gatehouse client-jwk`: the same sources as the server, but
/// nothing else needs to be set yet (an operator registers the key before the rest is ready).
pub fn load_client_key(sources: Sources) -> Result<ClientKey, SettingsError> {
    let cfg = build_config(&sources)?;
    let r = Reader { cfg: &cfg };
    read_client_key(&r, "provider")?.ok_or_else(|| {
        SettingsError(format!(
            "{} is not set: it names the PEM private key whose public JWK to print",
            env_name("provider.client_key_file")
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_or_loopback_http_or_a_listed_host() {
        let ok = |u: &str| secure_enough(&Url::parse(u).expect("url"), &["idp".to_owned()]);
        assert!(ok("https://idp.example/token"));
        assert!(ok("http://127.0.0.1:9090/token"));
        assert!(ok("http://127.1.2.3/token"));
        assert!(ok("http://[::1]:9090/r"));
        assert!(ok("http://localhost/r"));
        assert!(ok("http://LOCALHOST/r"));
        assert!(ok("http://idp:9090/token"), "listed");
        assert!(!ok("http://idp.example/token"));
        assert!(!ok("http://10.0.0.1/token"));
        assert!(!ok("http://localhost.evil.example/r"));
        assert!(!ok("http://[::2]/r"));
        assert!(!ok("ftp://127.0.0.1/r"));
    }
}
