//! Redis: one shared, tuned connection; key naming; pending sign-ins; sessions.
//!
//! Everything the service keeps lives under `REDIS__KEY_PREFIX`. One `ConnectionManager` is
//! shared by every worker: it multiplexes commands, bounds every connect and command, and
//! reconnects by itself when Redis comes back.

pub mod locks;
pub mod pending;
pub mod sessions;

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use secrecy::ExposeSecret;

use crate::config::RedisSettings;

/// Bounds chosen so that a dead Redis turns into a 503 within about a second, and a revived
/// one is used again within a second (see the field notes in the README).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(1000);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis is unavailable: {0}")]
    Unavailable(#[from] redis::RedisError),
    #[error("stored data could not be read: {0}")]
    Corrupt(#[from] serde_json::Error),
}

#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: Arc<str>,
}

impl RedisStore {
    /// Connects lazily: start-up never waits for Redis (readiness reports it instead).
    pub fn connect(settings: &RedisSettings) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(settings.url.expose_secret())?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(250));
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(RedisStore {
            conn,
            prefix: Arc::from(settings.key_prefix.as_str()),
        })
    }

    /// `<prefix><kind>:<id>`
    pub fn key(&self, kind: &str, id: &str) -> String {
        let mut key = String::with_capacity(self.prefix.len() + kind.len() + id.len() + 1);
        key.push_str(&self.prefix);
        key.push_str(kind);
        key.push(':');
        key.push_str(id);
        key
    }

    /// A clone is a handle on the same multiplexed connection.
    pub fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }
}
