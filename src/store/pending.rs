//! Pending sign-ins: one key per state, written once (`SET NX EX`), redeemed once (`GETDEL`).
//! A lone key (`<prefix>signin:<state>`, no hash tag): no command touches it with another key.
//!
//! Keeping them out of the session map is what makes many tabs, replays and several instances
//! safe: Redis decides atomically which single callback gets a state.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{RedisStore, StoreError};

const KIND: &str = "signin";

/// What the callback needs to finish a sign-in. The verifier and nonce are secrets; this type
/// never appears in logs (its `Debug` is redacted).
#[derive(Clone, Serialize, Deserialize)]
pub struct PendingSignIn {
    pub browser_id: String,
    pub pkce_verifier: String,
    pub nonce: Option<String>,
    pub return_to: String,
    /// Unix seconds.
    pub created_at: u64,
}

impl std::fmt::Debug for PendingSignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingSignIn")
            .field("return_to", &self.return_to)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
pub struct PendingSignIns {
    store: RedisStore,
    ttl: Duration,
}

impl PendingSignIns {
    pub fn new(store: RedisStore, ttl: Duration) -> Self {
        PendingSignIns { store, ttl }
    }

    /// Stores a new pending sign-in; `false` if the state already exists (never overwritten).
    pub async fn put(&self, state: &str, pending: &PendingSignIn) -> Result<bool, StoreError> {
        let value = serde_json::to_string(pending)?;
        let mut conn = self.store.conn();
        let set: Option<String> = redis::cmd("SET")
            .arg(self.store.lone_key(KIND, state))
            .arg(value)
            .arg("NX")
            .arg("EX")
            .arg(self.ttl.as_secs().max(1))
            .query_async(&mut conn)
            .await?;
        Ok(set.is_some())
    }

    /// Redeems a state: returns it at most once, whoever asks, on any instance.
    pub async fn take(&self, state: &str) -> Result<Option<PendingSignIn>, StoreError> {
        let mut conn = self.store.conn();
        let value: Option<String> = redis::cmd("GETDEL")
            .arg(self.store.lone_key(KIND, state))
            .query_async(&mut conn)
            .await?;
        match value {
            Some(v) => Ok(Some(serde_json::from_str(&v)?)),
            None => Ok(None),
        }
    }
}
