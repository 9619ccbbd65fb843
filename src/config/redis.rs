//! Settings of the Redis connection (one server or a cluster).

use std::path::PathBuf;

use secrecy::SecretString;
use url::Url;

use super::reader::Reader;
use super::{invalid, SettingsError};

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

impl RedisSettings {
    pub(super) fn read(r: &Reader) -> Result<Self, SettingsError> {
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
        Ok(redis)
    }
}
