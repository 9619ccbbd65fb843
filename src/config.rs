//! Typed settings: loading order, validation and secrets.
//!
//! Every value is read as text and parsed here, so that a bad value is reported with the
//! environment-variable name a user would type, in one line.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use url::Url;

/// The settings file compiled into the binary, so it runs from any directory.
const DEFAULT_TOML: &str = include_str!("../config/default.toml");
const ENV_PREFIX: &str = "GATEHOUSE";
const MIN_SESSION_SECRET_BYTES: usize = 64;

/// Every key the service understands (`section.key`). Anything else is reported as unknown.
pub const KNOWN_KEYS: &[&str] = &[
    "server.bind",
    "server.public_url",
    "server.allowed_redirect_hosts",
    "provider.issuer",
    "provider.auth_url",
    "provider.token_url",
    "provider.userinfo_url",
    "provider.jwks_url",
    "provider.client_id",
    "provider.client_secret",
    "provider.client_secret_file",
    "provider.client_auth",
    "provider.scopes",
    "provider.timeout_secs",
    "redis.url",
    "redis.key_prefix",
    "redis.ca_file",
    "redis.cluster",
    "redis.cluster_nodes",
    "session.secret",
    "session.secret_file",
    "session.cookie_name",
    "session.cookie_secure",
    "session.cookie_domain",
    "session.ttl_secs",
    "session.signin_ttl_secs",
    "session.previous_secrets",
    "tokens.refresh_before_secs",
    "tokens.outlive_access_token",
    "signout.provider_logout",
    "access.allowed_email_domains",
    "access.allowed_emails",
    "access.require_email_verified",
    "proxy.trusted",
    "forward.pass_access_token",
    "metrics.bind",
    "log.format",
    "ui.title",
    "ui.logo_url",
];

/// A setting that is missing or invalid; its text is the one line printed at start-up.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct SettingsError(pub String);

/// The name a user types for a key: `provider.client_id` → `GATEHOUSE__PROVIDER__CLIENT_ID`.
pub fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}__{}", key.replace('.', "__").to_uppercase())
}

fn invalid(key: &str, why: impl std::fmt::Display) -> SettingsError {
    SettingsError(format!("{} {why}", env_name(key)))
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub server: ServerSettings,
    pub provider: ProviderSettings,
    pub redis: RedisSettings,
    pub session: SessionSettings,
    pub proxy: ProxySettings,
    pub forward: ForwardSettings,
    pub tokens: TokenSettings,
    pub signout: SignoutSettings,
    pub access: AccessSettings,
    pub metrics: MetricsSettings,
    pub log: LogSettings,
    pub ui: UiSettings,
}

/// What gatehouse's own pages show: the product name and an optional logo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiSettings {
    /// Product name: page titles and the header of every page.
    pub title: String,
    /// An http(s) image shown beside the name; its origin is allowed in `img-src`.
    pub logo_url: Option<Url>,
}

impl Default for UiSettings {
    fn default() -> Self {
        UiSettings {
            title: "gatehouse".to_owned(),
            logo_url: None,
        }
    }
}

/// The longest product name accepted (it has to fit a phone's title bar).
const MAX_UI_TITLE_CHARS: usize = 80;

#[derive(Debug, Clone, Default)]
pub struct MetricsSettings {
    /// A separate listener for /metrics; None: served on the main one.
    pub bind: Option<SocketAddr>,
}

#[derive(Debug, Clone)]
pub struct TokenSettings {
    pub refresh_before: Duration,
    pub outlive_access_token: bool,
}

#[derive(Debug, Clone, Default)]
pub struct SignoutSettings {
    pub provider_logout: bool,
}

#[derive(Debug, Clone, Default)]
pub struct AccessSettings {
    /// Lower-case, without a leading `@`.
    pub allowed_email_domains: Vec<String>,
    /// Lower-case.
    pub allowed_emails: Vec<String>,
    pub require_email_verified: bool,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub bind: SocketAddr,
    /// Without a trailing slash.
    pub public_url: Url,
    pub allowed_redirect_hosts: Vec<HostRule>,
}

/// One `ALLOWED_REDIRECT_HOSTS` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRule {
    /// Lower-case host, without the leading dot of a suffix rule.
    pub host: String,
    /// Also the host's subdomains (`.example.com`).
    pub suffix: bool,
    /// `None`: the scheme's default port only.
    pub port: Option<u16>,
}

impl HostRule {
    pub fn parse(entry: &str) -> Option<HostRule> {
        let entry = entry.trim().to_ascii_lowercase();
        let (suffix, rest) = match entry.strip_prefix('.') {
            Some(rest) => (true, rest.to_owned()),
            None => (false, entry),
        };
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (
                h.to_owned(),
                Some(p.parse::<u16>().ok().filter(|p| *p > 0)?),
            ),
            None => (rest, None),
        };
        let valid = !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        valid.then_some(HostRule { host, suffix, port })
    }
}

#[derive(Debug, Clone, Default)]
pub struct ProxySettings {
    pub trusted: Vec<ipnet::IpNet>,
}

#[derive(Debug, Clone, Default)]
pub struct ForwardSettings {
    pub pass_access_token: bool,
}

impl ServerSettings {
    pub fn redirect_uri(&self) -> String {
        format!(
            "{}/redirect",
            self.public_url.as_str().trim_end_matches('/')
        )
    }
}

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

#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// May carry a password, hence secret.
    pub url: SecretString,
    pub key_prefix: String,
    /// CA bundle for `rediss://` (None: system roots).
    pub ca_file: Option<PathBuf>,
    /// Seed nodes when Redis runs as a cluster (empty: a single server at `url`). May carry
    /// passwords, hence secret.
    pub cluster_nodes: Vec<SecretString>,
}

impl RedisSettings {
    pub fn is_cluster(&self) -> bool {
        !self.cluster_nodes.is_empty()
    }
}

#[derive(Clone)]
pub struct SessionSettings {
    pub secret: std::sync::Arc<SecretBox<Vec<u8>>>,
    /// Former secrets, still accepted on incoming cookies.
    pub previous_secrets: std::sync::Arc<Vec<SecretBox<Vec<u8>>>>,
    pub cookie_name: String,
    pub cookie_secure: bool,
    /// `None`: host-only cookies.
    pub cookie_domain: Option<String>,
    pub ttl: Duration,
    pub signin_ttl: Duration,
}

impl std::fmt::Debug for SessionSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionSettings")
            .field("secret", &"[REDACTED]")
            .field(
                "previous_secrets",
                &format!("[{} REDACTED]", self.previous_secrets.len()),
            )
            .field("cookie_name", &self.cookie_name)
            .field("cookie_secure", &self.cookie_secure)
            .field("cookie_domain", &self.cookie_domain)
            .field("ttl", &self.ttl)
            .field("signin_ttl", &self.signin_ttl)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    pub format: LogFormat,
}

/// Where settings come from; the process uses [`Sources::from_process`], tests build their own.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// Folder with `default.toml` and `<env>.toml`; missing files are skipped.
    pub config_dir: Option<PathBuf>,
    /// Value of `GATEHOUSE_ENV` (selects `<config_dir>/<env>.toml`).
    pub environment: Option<String>,
    /// `GATEHOUSE__…` variables.
    pub vars: HashMap<String, String>,
}

impl Sources {
    pub fn from_process() -> Self {
        let vars: HashMap<String, String> = std::env::vars()
            .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}__")))
            .collect();
        Sources {
            config_dir: Some(
                std::env::var_os("GATEHOUSE_CONFIG_DIR")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from("config")),
            ),
            environment: std::env::var("GATEHOUSE_ENV")
                .ok()
                .filter(|s| !s.is_empty()),
            vars,
        }
    }
}

/// Settings plus what deserves a warning (unknown keys) once logging is up.
#[derive(Debug)]
pub struct Loaded {
    pub settings: Settings,
    pub warnings: Vec<String>,
}

impl Settings {
    pub fn load(sources: Sources) -> Result<Loaded, SettingsError> {
        let cfg = build_config(&sources)?;
        let warnings = unknown_keys(&cfg)
            .into_iter()
            .map(|k| format!("unknown setting {} is ignored", env_name(&k)))
            .collect();
        let r = Reader { cfg: &cfg };
        let settings = Settings::from_reader(&r)?;
        Ok(Loaded { settings, warnings })
    }

    fn from_reader(r: &Reader) -> Result<Settings, SettingsError> {
        let bind = r
            .required("server.bind")?
            .parse::<SocketAddr>()
            .map_err(|_| invalid("server.bind", "must be an address such as 127.0.0.1:8080"))?;
        let public_url = r
            .url("server.public_url")?
            .ok_or_else(|| invalid("server.public_url", "is required"))?;
        if public_url.query().is_some() || public_url.fragment().is_some() {
            return Err(invalid(
                "server.public_url",
                "must not have a query or fragment",
            ));
        }
        let allowed_redirect_hosts = r
            .list("server.allowed_redirect_hosts")?
            .iter()
            .map(|entry| {
                HostRule::parse(entry).ok_or_else(|| {
                    invalid(
                        "server.allowed_redirect_hosts",
                        format!("has an invalid entry {entry:?} (host, host:port or .suffix)"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;

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

        let redis_url = r.required("redis.url")?;
        match Url::parse(&redis_url) {
            Ok(u) if matches!(u.scheme(), "redis" | "rediss") && u.host().is_some() => {}
            _ => return Err(invalid("redis.url", "must be a redis:// or rediss:// URL")),
        }
        let redis_url_ok = |u: &str| matches!(Url::parse(u), Ok(u) if matches!(u.scheme(), "redis" | "rediss") && u.host().is_some());
        let ca_file = r.optional("redis.ca_file").map(PathBuf::from);
        if let Some(path) = &ca_file {
            if !path.is_file() {
                return Err(invalid("redis.ca_file", "must name a readable PEM file"));
            }
        }
        let mut cluster_nodes = r.list("redis.cluster_nodes")?;
        if cluster_nodes.iter().any(|n| !redis_url_ok(n)) {
            return Err(invalid(
                "redis.cluster_nodes",
                "must list redis:// or rediss:// URLs",
            ));
        }
        if cluster_nodes.is_empty() && r.boolean("redis.cluster")? {
            cluster_nodes.push(redis_url.clone());
        }
        let redis = RedisSettings {
            url: SecretString::from(redis_url),
            key_prefix: r.optional("redis.key_prefix").unwrap_or_default(),
            ca_file,
            cluster_nodes: cluster_nodes.into_iter().map(SecretString::from).collect(),
        };

        let secret = r.secret("session.secret")?.ok_or_else(|| {
            invalid(
                "session.secret",
                "is required (base64 of at least 64 random bytes)",
            )
        })?;
        let decoded = decode_base64(secret.expose_secret())
            .ok_or_else(|| invalid("session.secret", "must be base64 of at least 64 bytes"))?;
        if decoded.len() < MIN_SESSION_SECRET_BYTES {
            return Err(invalid(
                "session.secret",
                "must be base64 of at least 64 bytes",
            ));
        }
        let cookie_name = r.required("session.cookie_name")?;
        if !cookie_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(invalid(
                "session.cookie_name",
                "may contain only letters, digits, `-`, `_` and `.`",
            ));
        }
        let cookie_domain = r
            .optional("session.cookie_domain")
            .map(|d| d.trim_start_matches('.').to_ascii_lowercase());
        if let Some(domain) = &cookie_domain {
            if HostRule::parse(domain).is_none_or(|rule| rule.port.is_some()) {
                return Err(invalid(
                    "session.cookie_domain",
                    "must be a domain such as example.com",
                ));
            }
        }
        let previous_secrets = r
            .list("session.previous_secrets")?
            .iter()
            .map(|text| {
                decode_base64(text.as_bytes())
                    .filter(|bytes| bytes.len() >= MIN_SESSION_SECRET_BYTES)
                    .map(|bytes| SecretBox::new(Box::new(bytes)))
                    .ok_or_else(|| {
                        invalid(
                            "session.previous_secrets",
                            "must each be base64 of at least 64 bytes",
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let session = SessionSettings {
            secret: std::sync::Arc::new(SecretBox::new(Box::new(decoded))),
            previous_secrets: std::sync::Arc::new(previous_secrets),
            cookie_name,
            cookie_secure: r.boolean("session.cookie_secure")?,
            cookie_domain,
            ttl: Duration::from_secs(r.number("session.ttl_secs", 1, 60 * 60 * 24 * 400)?),
            signin_ttl: Duration::from_secs(r.number(
                "session.signin_ttl_secs",
                1,
                60 * 60 * 24,
            )?),
        };

        let trusted = r
            .list("proxy.trusted")?
            .iter()
            .map(|entry| {
                entry
                    .parse::<ipnet::IpNet>()
                    .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map(|net| net.trunc())
                    .map_err(|_| {
                        invalid(
                            "proxy.trusted",
                            format!("has an invalid entry {entry:?} (CIDR such as 10.0.0.0/8)"),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let forward = ForwardSettings {
            pass_access_token: r.boolean("forward.pass_access_token")?,
        };
        let tokens = TokenSettings {
            refresh_before: Duration::from_secs(r.number(
                "tokens.refresh_before_secs",
                0,
                60 * 60 * 24,
            )?),
            outlive_access_token: r.boolean("tokens.outlive_access_token")?,
        };
        let signout = SignoutSettings {
            provider_logout: r.boolean("signout.provider_logout")?,
        };
        let allowed_email_domains: Vec<String> = r
            .list("access.allowed_email_domains")?
            .iter()
            .map(|d| d.trim_start_matches('@').to_ascii_lowercase())
            .collect();
        let allowed_emails: Vec<String> = r
            .list("access.allowed_emails")?
            .iter()
            .map(|e| e.to_ascii_lowercase())
            .collect();
        if allowed_emails.iter().any(|e| !e.contains('@')) {
            return Err(invalid(
                "access.allowed_emails",
                "must list email addresses",
            ));
        }
        let any_email_rule = !allowed_email_domains.is_empty() || !allowed_emails.is_empty();
        let require_email_verified = match r.optional("access.require_email_verified") {
            None => any_email_rule,
            Some(_) => r.boolean("access.require_email_verified")?,
        };
        let access = AccessSettings {
            allowed_email_domains,
            allowed_emails,
            require_email_verified,
        };

        let metrics = MetricsSettings {
            bind: match r.optional("metrics.bind") {
                None => None,
                Some(text) => Some(text.parse::<SocketAddr>().map_err(|_| {
                    invalid("metrics.bind", "must be an address such as 127.0.0.1:9100")
                })?),
            },
        };

        let format = match r.required("log.format")?.to_ascii_lowercase().as_str() {
            "pretty" => LogFormat::Pretty,
            "json" => LogFormat::Json,
            _ => return Err(invalid("log.format", "must be `pretty` or `json`")),
        };

        let title = r.required("ui.title")?;
        if title.chars().count() > MAX_UI_TITLE_CHARS || title.chars().any(char::is_control) {
            return Err(invalid(
                "ui.title",
                format!(
                    "must be at most {MAX_UI_TITLE_CHARS} characters, without control characters"
                ),
            ));
        }
        let ui = UiSettings {
            title,
            logo_url: r.url("ui.logo_url")?,
        };

        Ok(Settings {
            server: ServerSettings {
                bind,
                public_url,
                allowed_redirect_hosts,
            },
            provider,
            redis,
            session,
            proxy: ProxySettings { trusted },
            forward,
            tokens,
            signout,
            access,
            metrics,
            log: LogSettings { format },
            ui,
        })
    }
}

fn decode_base64(text: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(text).ok()?.trim();
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
}

fn build_config(sources: &Sources) -> Result<config::Config, SettingsError> {
    use config::{Environment, File, FileFormat};
    let mut builder =
        config::Config::builder().add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml));
    if let Some(dir) = &sources.config_dir {
        builder = builder.add_source(file_source(&dir.join("default.toml")));
        if let Some(env) = &sources.environment {
            builder = builder.add_source(file_source(&dir.join(format!("{env}.toml"))));
        }
    }
    builder = builder.add_source(
        Environment::with_prefix(ENV_PREFIX)
            .separator("__")
            .ignore_empty(true)
            .source(Some(sources.vars.clone().into_iter().collect())),
    );
    builder.build().map_err(|e| match e {
        // The parser's message quotes the offending line, which may hold a secret, over
        // several lines: name the file only.
        config::ConfigError::FileParse { uri, .. } => SettingsError(format!(
            "settings file {} is not valid TOML",
            uri.unwrap_or_else(|| "(unknown)".into())
        )),
        other => SettingsError(format!(
            "settings could not be read: {}",
            other.to_string().lines().next().unwrap_or_default()
        )),
    })
}

fn file_source(path: &Path) -> config::File<config::FileSourceFile, config::FileFormat> {
    config::File::from(path.to_path_buf())
        .format(config::FileFormat::Toml)
        .required(false)
}

fn unknown_keys(cfg: &config::Config) -> Vec<String> {
    let known: BTreeSet<&str> = KNOWN_KEYS.iter().copied().collect();
    let mut found = Vec::new();
    if let Ok(table) = cfg
        .clone()
        .try_deserialize::<config::Map<String, config::Value>>()
    {
        flatten("", table, &mut found);
    }
    found.retain(|k| !known.contains(k.as_str()));
    found.sort();
    found
}

fn flatten(prefix: &str, table: config::Map<String, config::Value>, out: &mut Vec<String>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k
        } else {
            format!("{prefix}.{k}")
        };
        match v.clone().into_table() {
            Ok(inner) => flatten(&key, inner, out),
            Err(_) => out.push(key),
        }
    }
}

/// Reads one key at a time, treating empty strings as unset.
struct Reader<'a> {
    cfg: &'a config::Config,
}

impl Reader<'_> {
    fn optional(&self, key: &str) -> Option<String> {
        self.cfg
            .get_string(key)
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    }

    fn required(&self, key: &str) -> Result<String, SettingsError> {
        self.optional(key)
            .ok_or_else(|| invalid(key, "is required"))
    }

    /// A TOML array, or comma-separated text (environment variables). Empty items dropped.
    fn list(&self, key: &str) -> Result<Vec<String>, SettingsError> {
        let items = match self.cfg.get_array(key) {
            Ok(values) => values
                .into_iter()
                .map(|v| {
                    v.into_string()
                        .map_err(|_| invalid(key, "must be a list of strings"))
                })
                .collect::<Result<Vec<_>, _>>()?,
            Err(_) => self
                .optional(key)
                .map(|text| text.split(',').map(str::to_owned).collect())
                .unwrap_or_default(),
        };
        Ok(items
            .into_iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect())
    }

    fn url(&self, key: &str) -> Result<Option<Url>, SettingsError> {
        let Some(text) = self.optional(key) else {
            return Ok(None);
        };
        match Url::parse(&text) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(Some(u)),
            _ => Err(invalid(key, "must be an http:// or https:// URL")),
        }
    }

    fn number(&self, key: &str, min: u64, max: u64) -> Result<u64, SettingsError> {
        let text = self.required(key)?;
        match text.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(invalid(
                key,
                format!("must be a whole number from {min} to {max}"),
            )),
        }
    }

    fn boolean(&self, key: &str) -> Result<bool, SettingsError> {
        match self.required(key)?.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(invalid(key, "must be true or false")),
        }
    }

    /// A secret given inline (`key`) or as a file (`key_file`), never both.
    fn secret(&self, key: &str) -> Result<Option<SecretBox<Vec<u8>>>, SettingsError> {
        let file_key = format!("{key}_file");
        let inline = self.optional(key);
        let file = self.optional(&file_key);
        match (inline, file) {
            (Some(_), Some(_)) => Err(SettingsError(format!(
                "{} and {} are both set; set only one",
                env_name(key),
                env_name(&file_key)
            ))),
            (Some(v), None) => Ok(Some(SecretBox::new(Box::new(v.into_bytes())))),
            (None, Some(path)) => {
                let bytes = std::fs::read(&path)
                    .map_err(|e| invalid(&file_key, format!("cannot be read ({})", e.kind())))?;
                let text = String::from_utf8(bytes)
                    .map_err(|_| invalid(&file_key, "must name a UTF-8 text file"))?;
                let trimmed = text.trim_end_matches(['\n', '\r']).to_owned();
                if trimmed.is_empty() {
                    return Err(invalid(&file_key, "names an empty file"));
                }
                Ok(Some(SecretBox::new(Box::new(trimmed.into_bytes()))))
            }
            (None, None) => Ok(None),
        }
    }
}
