//! Further providers beside the default one: `[providers.<name>]` in files,
//! `GATEHOUSE__PROVIDERS__<NAME>__<KEY>` in the environment, each with every `[provider]` key
//! (read by the same code, so validated the same way) plus a display name and, optionally,
//! access rules of its own (`[providers.<name>.access]`, the `[access]` keys).
//!
//! A name is ASCII letters and digits: it appears in URLs (`/signin?provider=`), in Redis
//! records, in metrics labels and, upper-cased, in environment variable names (which the
//! settings loader lower-cases: files must write it in lower case to mean the same provider).

use super::reader::{defaults, Reader};
use super::{env_name, invalid, AccessSettings, ProviderSettings, SettingsError};

/// The default provider's name (the `[provider]` section).
pub const DEFAULT_PROVIDER: &str = "default";
/// Long enough for any sensible name; short enough for a label and a stored record.
pub const MAX_NAME_LEN: usize = 32;
/// A display name fits a button.
const MAX_DISPLAY_NAME_CHARS: usize = 64;

/// A provider beside the default one.
#[derive(Debug, Clone)]
pub struct NamedProvider {
    /// Lower-case ASCII letters and digits.
    pub name: String,
    /// What the sign-in page shows (`PROVIDERS__<NAME>__DISPLAY_NAME`); `None`: the name.
    pub display_name: Option<String>,
    pub provider: ProviderSettings,
    /// Its own rules (`PROVIDERS__<NAME>__ACCESS__*`), replacing `[access]` for its sessions;
    /// `None`: `[access]` applies.
    pub access: Option<AccessSettings>,
}

#[derive(Debug, Clone, Default)]
pub struct ProvidersSettings {
    /// `PROVIDER__DISPLAY_NAME`: the default provider on the sign-in page.
    pub default_display_name: Option<String>,
    /// Sorted by name.
    pub named: Vec<NamedProvider>,
}

impl ProvidersSettings {
    pub(super) fn read(r: &Reader) -> Result<Self, SettingsError> {
        let default_display_name = read_display_name(r, "provider")?;
        let names = match r.cfg.get::<config::Value>("providers") {
            Err(_) => Vec::new(),
            Ok(value) => {
                let table = value.into_table().map_err(|_| {
                    SettingsError(format!(
                        "{} must be a section of providers: set {}",
                        env_name("providers"),
                        env_name("providers.<name>.<key>")
                    ))
                })?;
                let mut names: Vec<String> = table.into_keys().collect();
                names.sort();
                names
            }
        };
        let mut named = Vec::with_capacity(names.len());
        for name in names {
            check_name(&name)?;
            named.push(read_named(r, name)?);
        }
        Ok(ProvidersSettings {
            default_display_name,
            named,
        })
    }
}

/// Letters and digits; lower case in files (environment variables are lower-cased by the
/// loader); not `default`, which names the `[provider]` section.
fn check_name(name: &str) -> Result<(), SettingsError> {
    let shown = format!("{name:?}");
    let place = || env_name(&format!("providers.{}", name.escape_default()));
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(SettingsError(format!(
            "{}__…: the provider name {shown} is invalid: a provider name is ASCII letters and \
             digits only (e.g. GATEHOUSE__PROVIDERS__CORP__CLIENT_ID)",
            place()
        )));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(SettingsError(format!(
            "{}__…: the provider name {shown} is longer than {MAX_NAME_LEN} characters",
            place()
        )));
    }
    if name.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(SettingsError(format!(
            "[providers.{name}] in a settings file: write provider names in lower case \
             ([providers.{}]); environment variables use upper case",
            name.to_ascii_lowercase()
        )));
    }
    if name == DEFAULT_PROVIDER {
        return Err(SettingsError(format!(
            "{}__…: `default` names the [provider] section (GATEHOUSE__PROVIDER__…); give \
             further providers other names",
            place()
        )));
    }
    Ok(())
}

fn read_named(r: &Reader, name: String) -> Result<NamedProvider, SettingsError> {
    let section = format!("providers.{name}");
    let raw = r
        .cfg
        .get::<config::Value>(&section)
        .ok()
        .and_then(|v| v.into_table().ok())
        .ok_or_else(|| {
            invalid(
                &section,
                format!(
                    "must be a section of settings (e.g. {})",
                    env_name(&format!("{section}.client_id"))
                ),
            )
        })?;
    let access_section = format!("{section}.access");
    let own_access = match raw.get("access") {
        None => false,
        Some(value) if value.clone().into_table().is_ok() => true,
        Some(_) => {
            return Err(invalid(
                &access_section,
                format!(
                    "must be a section of access rules (e.g. {})",
                    env_name(&format!("{access_section}.allowed_groups"))
                ),
            ))
        }
    };
    // The built-in defaults of [provider] and [access] stand in for what this provider leaves
    // unset: a further provider inherits nothing from the default one (not its secret, not
    // its rules).
    let merged = with_defaults(
        r.cfg,
        &[("provider", &section), ("access", &access_section)],
    )?;
    let m = Reader { cfg: &merged };
    Ok(NamedProvider {
        display_name: read_display_name(&m, &section)?,
        provider: ProviderSettings::read_section(&m, &section)?,
        access: if own_access {
            Some(AccessSettings::read_section(&m, &access_section)?)
        } else {
            None
        },
        name,
    })
}

/// `cfg` with the built-in defaults of each `(from, to)`: the keys of the default file's
/// `[from]` section, under `to`.
fn with_defaults(
    cfg: &config::Config,
    moves: &[(&str, &str)],
) -> Result<config::Config, SettingsError> {
    let builtin = defaults()?;
    let failed = |e: config::ConfigError| {
        SettingsError(format!(
            "settings could not be read: {}",
            e.to_string().lines().next().unwrap_or_default()
        ))
    };
    let mut builder = config::Config::builder();
    for (from, to) in moves {
        let table = builtin.get_table(from).map_err(failed)?;
        for (key, value) in table {
            builder = builder
                .set_default(format!("{to}.{key}"), value)
                .map_err(failed)?;
        }
    }
    builder.add_source(cfg.clone()).build().map_err(failed)
}

fn read_display_name(r: &Reader, section: &str) -> Result<Option<String>, SettingsError> {
    let key = format!("{section}.display_name");
    let Some(name) = r.optional(&key) else {
        return Ok(None);
    };
    if name.chars().count() > MAX_DISPLAY_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(invalid(
            &key,
            format!(
                "must be at most {MAX_DISPLAY_NAME_CHARS} characters, without control characters"
            ),
        ));
    }
    Ok(Some(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_letters_and_digits_in_lower_case_and_not_default() {
        assert!(check_name("corp").is_ok());
        assert!(check_name("partners2").is_ok());
        for bad in ["", "corp_eu", "corp-eu", "cörp", "a b", "corp\n", "default"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        let upper = check_name("Corp").expect_err("upper case in a file");
        assert!(upper.0.contains("[providers.corp]"), "{upper}");
        assert!(check_name(&"a".repeat(MAX_NAME_LEN)).is_ok());
        assert!(check_name(&"a".repeat(MAX_NAME_LEN + 1)).is_err());
        let line = check_name("x\ny").expect_err("control character");
        assert!(!line.0.contains('\n'), "one line: {line}");
    }
}
