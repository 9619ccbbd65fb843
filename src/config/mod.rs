//! Typed settings: loading order, validation and secrets.
//!
//! Every value is read as text and parsed here, so that a bad value is reported with the
//! environment-variable name a user would type, in one line.

//!
//! One file per section (`server.rs`, `provider.rs`, …): each holds its settings type and the
//! `read` that validates it; `reader.rs` knows where values come from.

mod access;
mod bearer;
mod cli;
mod database;
mod misc;
mod provider;
mod providers;
mod reader;
mod redis;
mod server;
mod session;
mod signin;

use std::collections::HashMap;
use std::path::PathBuf;

pub use access::{AccessSettings, ClaimHeader, ForwardSettings};
pub use bearer::BearerSettings;
pub use cli::CliSettings;
pub use database::{DatabaseSettings, Engine};
pub use misc::{
    LogFormat, LogSettings, MetricsSettings, SignoutSettings, TokenSettings, UiSettings,
};
pub use provider::{load_client_key, secure_enough, ClientAuth, ProviderSettings, PROTOCOL_PARAMS};
pub use providers::{NamedProvider, ProvidersSettings, DEFAULT_PROVIDER, MAX_NAME_LEN};
pub use redis::RedisSettings;
pub use server::{HostRule, ProxySettings, ServerSettings};
pub use session::SessionSettings;
pub use signin::SigninSettings;

use reader::{build_config, unknown_keys, Reader};

/// The settings file compiled into the binary, so it runs from any directory.
const DEFAULT_TOML: &str = include_str!("../../config/default.toml");
const ENV_PREFIX: &str = "GATEHOUSE";

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
    "provider.client_key_file",
    "provider.client_key_id",
    "provider.ca_file",
    "provider.extra_audiences",
    "provider.auth_params",
    "provider.subject_claim",
    "provider.email_claim",
    "provider.plain_http_hosts",
    "provider.display_name",
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
    "session.max_lifetime_secs",
    "session.previous_secrets",
    "signin.per_client_per_minute",
    "signin.max_pending",
    "tokens.refresh_before_secs",
    "tokens.outlive_access_token",
    "signout.provider_logout",
    "access.allowed_email_domains",
    "access.allowed_emails",
    "access.require_email_verified",
    "access.allowed_groups",
    "access.groups_claim",
    "access.allow_any_user",
    "database.url",
    "database.migrate",
    "proxy.trusted",
    "forward.pass_access_token",
    "forward.claim_headers",
    "forward.assertion",
    "forward.assertion_ttl_secs",
    "bearer.enabled",
    "bearer.audiences",
    "bearer.extra_issuers",
    "metrics.bind",
    "metrics.public",
    "log.format",
    "log.buffer_lines",
    "ui.title",
    "ui.logo_url",
    "cli.client_id",
    "cli.scopes",
];

/// A setting that is missing or invalid; its text is the one line printed at start-up.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct SettingsError(pub String);

/// The name a user types for a key: `provider.client_id` → `GATEHOUSE__PROVIDER__CLIENT_ID`.
pub fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}__{}", key.replace('.', "__").to_uppercase())
}

pub(crate) fn invalid(key: &str, why: impl std::fmt::Display) -> SettingsError {
    SettingsError(format!("{} {why}", env_name(key)))
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub server: ServerSettings,
    pub provider: ProviderSettings,
    /// The default provider's display name and the further providers (`[providers.<name>]`).
    pub providers: ProvidersSettings,
    pub redis: RedisSettings,
    pub session: SessionSettings,
    pub signin: SigninSettings,
    pub proxy: ProxySettings,
    pub forward: ForwardSettings,
    pub tokens: TokenSettings,
    pub signout: SignoutSettings,
    pub access: AccessSettings,
    pub bearer: BearerSettings,
    pub metrics: MetricsSettings,
    pub log: LogSettings,
    pub ui: UiSettings,
    pub cli: CliSettings,
    pub database: DatabaseSettings,
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
        Ok(Settings {
            server: ServerSettings::read(r)?,
            provider: ProviderSettings::read(r)?,
            providers: ProvidersSettings::read(r)?,
            redis: RedisSettings::read(r)?,
            session: SessionSettings::read(r)?,
            signin: SigninSettings::read(r)?,
            proxy: ProxySettings::read(r)?,
            forward: ForwardSettings::read(r)?,
            tokens: TokenSettings::read(r)?,
            signout: SignoutSettings::read(r)?,
            access: AccessSettings::read(r)?,
            bearer: BearerSettings::read(r)?,
            metrics: MetricsSettings::read(r)?,
            log: LogSettings::read(r)?,
            ui: UiSettings::read(r)?,
            cli: CliSettings::read(r)?,
            database: DatabaseSettings::read(r)?,
        })
    }
}
