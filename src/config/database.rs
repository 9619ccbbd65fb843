//! Settings of the durable directory (users, audit trail): which database, and whether to
//! migrate it at start-up.

use secrecy::{ExposeSecret, SecretString};

use super::reader::Reader;
use super::{invalid, SettingsError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// `sqlite://PATH` or `postgres://…`. May carry a password, hence secret.
    pub url: SecretString,
    pub engine: Engine,
    /// Apply pending migrations at start-up.
    pub migrate: bool,
}

impl DatabaseSettings {
    pub(super) fn read(r: &Reader) -> Result<Self, SettingsError> {
        let url = r.required("database.url")?;
        let engine = engine_of(&url)
            .ok_or_else(|| invalid("database.url", "must be a sqlite://PATH or postgres:// URL"))?;
        Ok(DatabaseSettings {
            url: SecretString::from(url),
            engine,
            migrate: r.boolean("database.migrate")?,
        })
    }

    /// For code outside the settings (tests, tools) that build settings by hand.
    pub fn new(url: &str, migrate: bool) -> Result<Self, SettingsError> {
        let engine = engine_of(url)
            .ok_or_else(|| invalid("database.url", "must be a sqlite://PATH or postgres:// URL"))?;
        Ok(DatabaseSettings {
            url: SecretString::from(url.to_owned()),
            engine,
            migrate,
        })
    }

    pub fn url(&self) -> &str {
        self.url.expose_secret()
    }
}

/// The engine a URL names; the scheme only (the drivers parse the rest, and say what is wrong).
fn engine_of(url: &str) -> Option<Engine> {
    let scheme = url.split_once(':')?.0.to_ascii_lowercase();
    match scheme.as_str() {
        "sqlite" if url.len() > "sqlite:".len() => Some(Engine::Sqlite),
        "postgres" | "postgresql" if url[scheme.len()..].starts_with("://") => {
            Some(Engine::Postgres)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engines_by_scheme() {
        assert_eq!(
            engine_of("sqlite://data/gatehouse.db"),
            Some(Engine::Sqlite)
        );
        assert_eq!(engine_of("sqlite:///var/lib/g.db"), Some(Engine::Sqlite));
        assert_eq!(engine_of("SQLITE://x.db"), Some(Engine::Sqlite));
        assert_eq!(engine_of("postgres://u:p@h/db"), Some(Engine::Postgres));
        assert_eq!(engine_of("postgresql://h/db"), Some(Engine::Postgres));
        for bad in [
            "sqlite:",
            "mysql://h/db",
            "postgres:h",
            "data/gatehouse.db",
            "",
        ] {
            assert_eq!(engine_of(bad), None, "{bad}");
        }
    }
}
