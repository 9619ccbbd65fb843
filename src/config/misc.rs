//! The smaller sections: tokens, sign-out, metrics, logs and pages.

use std::net::SocketAddr;
use std::time::Duration;

use url::Url;

use super::reader::Reader;
use super::{invalid, SettingsError};

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
    /// A separate listener for /metrics (for the scraper only).
    pub bind: Option<SocketAddr>,
    /// Also serve /metrics on the main, public listener. Off by default: the figures (sign-in
    /// failures by reason, Redis errors) are for operators, not for everyone who can reach
    /// the sign-in page.
    pub public: bool,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    pub format: LogFormat,
    /// Lines the log writer may hold while stdout's reader catches up; past that, lines are
    /// dropped and counted (`gatehouse_log_lines_dropped_total`), never waited for.
    pub buffer_lines: usize,
}

/// Bounds of `log.buffer_lines`: one line (tests make the writer fall behind with it), up to
/// about 300 MB of queued lines at ~300 bytes each.
const MAX_LOG_BUFFER_LINES: u64 = 1_000_000;

impl TokenSettings {
    pub(super) fn read(r: &Reader) -> Result<Self, SettingsError> {
        let tokens = TokenSettings {
            refresh_before: Duration::from_secs(r.number(
                "tokens.refresh_before_secs",
                0,
                60 * 60 * 24,
            )?),
            outlive_access_token: r.boolean("tokens.outlive_access_token")?,
        };
        Ok(tokens)
    }
}

impl SignoutSettings {
    pub(super) fn read(r: &Reader) -> Result<Self, SettingsError> {
        let signout = SignoutSettings {
            provider_logout: r.boolean("signout.provider_logout")?,
        };
        Ok(signout)
    }
}

impl MetricsSettings {
    pub(super) fn read(r: &Reader) -> Result<Self, SettingsError> {
        let metrics = MetricsSettings {
            bind: match r.optional("metrics.bind") {
                None => None,
                Some(text) => Some(text.parse::<SocketAddr>().map_err(|_| {
                    invalid("metrics.bind", "must be an address such as 127.0.0.1:9100")
                })?),
            },
            public: r.boolean("metrics.public")?,
        };
        Ok(metrics)
    }
}

impl LogSettings {
    pub(super) fn read(r: &Reader) -> Result<Self, SettingsError> {
        let format = match r.required("log.format")?.to_ascii_lowercase().as_str() {
            "pretty" => LogFormat::Pretty,
            "json" => LogFormat::Json,
            _ => return Err(invalid("log.format", "must be `pretty` or `json`")),
        };
        let buffer_lines = r.number("log.buffer_lines", 1, MAX_LOG_BUFFER_LINES)? as usize;
        Ok(LogSettings {
            format,
            buffer_lines,
        })
    }
}

impl UiSettings {
    pub(super) fn read(r: &Reader) -> Result<Self, SettingsError> {
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
        Ok(ui)
    }
}
