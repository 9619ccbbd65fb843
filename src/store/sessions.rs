//! actix-session's store, on each worker's own Redis connection. A session lives at
//! `<prefix>session:{<id>}`: the id is a hash tag, so its refresh lease (`<prefix>lock:{<id>}`)
//! shares its cluster slot.
//!
//! actix-session's own Redis store opens its own untunable connection and hangs for minutes
//! when Redis is down; this one shares [`RedisStore`]'s bounded connection, so a failure is a
//! quick error that the error middleware turns into 503.

use std::collections::HashMap;
use std::time::Duration as StdDuration;

use actix_session::storage::{LoadError, SaveError, SessionKey, SessionStore, UpdateError};
use actix_web::cookie::time::Duration;

use super::{RedisStore, StoreError};

const KIND: &str = "session";
/// Entry the store adds to every loaded session so the domain can address the session's record
/// directly (locks, re-reads); never written back.
pub const KEY_ENTRY: &str = "_key";

type SessionState = HashMap<String, String>;

#[derive(Clone)]
pub struct RedisSessionStore {
    store: RedisStore,
    /// Idle lifetime: every read extends the key by this much (`GETEX`, still one round trip).
    idle_ttl: StdDuration,
}

impl RedisSessionStore {
    pub fn new(store: RedisStore, idle_ttl: StdDuration) -> Self {
        RedisSessionStore { store, idle_ttl }
    }

    fn key(&self, session_key: &str) -> String {
        self.store.key(KIND, session_key)
    }

    /// The session's state as stored now (no TTL change), bypassing actix-session's snapshot.
    pub async fn read(&self, session_key: &str) -> Result<Option<SessionState>, StoreError> {
        let mut conn = self.store.conn();
        let value: Option<String> = redis::cmd("GET")
            .arg(self.key(session_key))
            .query_async(&mut conn)
            .await?;
        Ok(match value {
            Some(v) => Some(serde_json::from_str(&v)?),
            None => None,
        })
    }

    /// Overwrites an existing session's state at once (not at the end of the request, as the
    /// middleware would): a refresh must be visible before its lock is released.
    pub async fn replace(
        &self,
        session_key: &str,
        state: &SessionState,
    ) -> Result<bool, StoreError> {
        let mut conn = self.store.conn();
        let set: Option<String> = redis::cmd("SET")
            .arg(self.key(session_key))
            .arg(serialize(state)?)
            .arg("XX")
            .arg("EX")
            .arg(self.idle_ttl.as_secs().max(1))
            .query_async(&mut conn)
            .await?;
        Ok(set.is_some())
    }

    pub async fn delete_now(&self, session_key: &str) -> Result<(), StoreError> {
        let mut conn = self.store.conn();
        let _: i64 = redis::cmd("DEL")
            .arg(self.key(session_key))
            .query_async(&mut conn)
            .await?;
        Ok(())
    }
}

/// JSON of the state without the entries the store itself adds.
fn serialize(state: &SessionState) -> Result<String, serde_json::Error> {
    let mut map = serde_json::Map::new();
    for (k, v) in state.iter().filter(|(k, _)| k.as_str() != KEY_ENTRY) {
        map.insert(k.clone(), serde_json::Value::String(v.clone()));
    }
    serde_json::to_string(&map)
}

fn ttl_secs(ttl: &Duration) -> u64 {
    ttl.whole_seconds().max(1) as u64
}

impl SessionStore for RedisSessionStore {
    async fn load(&self, session_key: &SessionKey) -> Result<Option<SessionState>, LoadError> {
        let mut conn = self.store.conn();
        let value: Option<String> = redis::cmd("GETEX")
            .arg(self.key(session_key.as_ref()))
            .arg("EX")
            .arg(self.idle_ttl.as_secs().max(1))
            .query_async(&mut conn)
            .await
            .map_err(|e| LoadError::Other(e.into()))?;
        match value {
            None => Ok(None),
            Some(v) => {
                let mut state: SessionState =
                    serde_json::from_str(&v).map_err(|e| LoadError::Deserialization(e.into()))?;
                let key = serde_json::to_string(session_key.as_ref())
                    .map_err(|e| LoadError::Deserialization(e.into()))?;
                state.insert(KEY_ENTRY.to_owned(), key);
                Ok(Some(state))
            }
        }
    }

    async fn save(&self, state: SessionState, ttl: &Duration) -> Result<SessionKey, SaveError> {
        let body = serialize(&state).map_err(|e| SaveError::Serialization(e.into()))?;
        let mut conn = self.store.conn();
        // A collision of 256 random bits will not happen; NX still makes sure a write never
        // lands on someone else's session.
        for _ in 0..3 {
            let key = crate::random::token();
            let set: Option<String> = redis::cmd("SET")
                .arg(self.key(&key))
                .arg(&body)
                .arg("NX")
                .arg("EX")
                .arg(ttl_secs(ttl))
                .query_async(&mut conn)
                .await
                .map_err(|e| SaveError::Other(e.into()))?;
            if set.is_some() {
                return SessionKey::try_from(key).map_err(|e| SaveError::Other(e.into()));
            }
        }
        Err(SaveError::Other(anyhow::anyhow!(
            "could not allocate a session key"
        )))
    }

    async fn update(
        &self,
        session_key: SessionKey,
        state: SessionState,
        ttl: &Duration,
    ) -> Result<SessionKey, UpdateError> {
        let body = serialize(&state).map_err(|e| UpdateError::Serialization(e.into()))?;
        let mut conn = self.store.conn();
        // XX: a session deleted meanwhile (signed out elsewhere) stays deleted instead of
        // being resurrected by a late write.
        let _: Option<String> = redis::cmd("SET")
            .arg(self.key(session_key.as_ref()))
            .arg(body)
            .arg("XX")
            .arg("EX")
            .arg(ttl_secs(ttl))
            .query_async(&mut conn)
            .await
            .map_err(|e| UpdateError::Other(e.into()))?;
        Ok(session_key)
    }

    async fn update_ttl(&self, session_key: &SessionKey, ttl: &Duration) -> anyhow::Result<()> {
        let mut conn = self.store.conn();
        let _: i64 = redis::cmd("EXPIRE")
            .arg(self.key(session_key.as_ref()))
            .arg(ttl_secs(ttl))
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn delete(&self, session_key: &SessionKey) -> anyhow::Result<()> {
        let mut conn = self.store.conn();
        let _: i64 = redis::cmd("DEL")
            .arg(self.key(session_key.as_ref()))
            .query_async(&mut conn)
            .await?;
        Ok(())
    }
}
