//! Where settings come from and how one key is read: files, environment, unknown keys.

use std::collections::BTreeSet;
use std::path::Path;

use base64::Engine;
use secrecy::SecretBox;
use url::Url;

use super::{env_name, invalid, SettingsError, Sources, DEFAULT_TOML, ENV_PREFIX, KNOWN_KEYS};

pub(super) fn decode_base64(text: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(text).ok()?.trim();
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
}

pub(super) fn build_config(sources: &Sources) -> Result<config::Config, SettingsError> {
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

/// The built-in defaults alone (the default file compiled into the binary).
pub(super) fn defaults() -> Result<config::Config, SettingsError> {
    use config::{File, FileFormat};
    config::Config::builder()
        .add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml))
        .build()
        .map_err(|_| SettingsError("the built-in default settings do not parse".into()))
}

fn file_source(path: &Path) -> config::File<config::FileSourceFile, config::FileFormat> {
    config::File::from(path.to_path_buf())
        .format(config::FileFormat::Toml)
        .required(false)
}

pub(super) fn unknown_keys(cfg: &config::Config) -> Vec<String> {
    let known: BTreeSet<&str> = KNOWN_KEYS.iter().copied().collect();
    let mut found = Vec::new();
    if let Ok(table) = cfg
        .clone()
        .try_deserialize::<config::Map<String, config::Value>>()
    {
        flatten("", table, &mut found);
    }
    found.retain(|k| !known.contains(k.as_str()) && !is_further_provider_key(k, &known));
    found.sort();
    found
}

/// `providers.<name>.<key>` where `provider.<key>` is known, or `providers.<name>.access.<key>`
/// where `access.<key>` is (the name itself is checked when the providers are read).
fn is_further_provider_key(key: &str, known: &BTreeSet<&str>) -> bool {
    let Some((_name, rest)) = key
        .strip_prefix("providers.")
        .and_then(|k| k.split_once('.'))
    else {
        return false;
    };
    match rest.strip_prefix("access.") {
        Some(access_key) => known.contains(format!("access.{access_key}").as_str()),
        None => known.contains(format!("provider.{rest}").as_str()),
    }
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
pub(super) struct Reader<'a> {
    pub(super) cfg: &'a config::Config,
}

impl Reader<'_> {
    pub(super) fn optional(&self, key: &str) -> Option<String> {
        self.cfg
            .get_string(key)
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    }

    pub(super) fn required(&self, key: &str) -> Result<String, SettingsError> {
        self.optional(key)
            .ok_or_else(|| invalid(key, "is required"))
    }

    /// A TOML array, or comma-separated text (environment variables). Empty items dropped.
    pub(super) fn list(&self, key: &str) -> Result<Vec<String>, SettingsError> {
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

    pub(super) fn url(&self, key: &str) -> Result<Option<Url>, SettingsError> {
        let Some(text) = self.optional(key) else {
            return Ok(None);
        };
        match Url::parse(&text) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(Some(u)),
            _ => Err(invalid(key, "must be an http:// or https:// URL")),
        }
    }

    pub(super) fn number(&self, key: &str, min: u64, max: u64) -> Result<u64, SettingsError> {
        let text = self.required(key)?;
        match text.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(invalid(
                key,
                format!("must be a whole number from {min} to {max}"),
            )),
        }
    }

    pub(super) fn boolean(&self, key: &str) -> Result<bool, SettingsError> {
        match self.required(key)?.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(invalid(key, "must be true or false")),
        }
    }

    /// A secret given inline (`key`) or as a file (`key_file`), never both.
    pub(super) fn secret(&self, key: &str) -> Result<Option<SecretBox<Vec<u8>>>, SettingsError> {
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
