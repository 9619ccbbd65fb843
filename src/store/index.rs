//! Which sessions a user has, so that they can be listed and ended: one Redis hash per user,
//! `<prefix>user:{<subject digest>}`, mapping each session's opaque handle to its record id,
//! and, for back-channel logout, one set per provider session, `<prefix>sid:{<digest>}`, of
//! record ids.
//!
//! The records stay the truth: an entry whose record has expired is skipped (and pruned) when
//! read, so the index never lists a session Redis has forgotten, on any instance. Nothing here
//! runs on `/auth`. When a session was last seen is read off its record's remaining idle
//! lifetime (every use renews it), so it costs no write at all.

use std::time::Duration;

use base64::Engine;

use super::record::{self, SessionKey};
use super::{RedisStore, StoreError};
use crate::identity::now_unix;

const USER: &str = "user";
const SID: &str = "sid";
const SESSION: &str = "session";

/// One of a user's live sessions, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub handle: String,
    pub created_at: Option<u64>,
    pub last_seen_at: u64,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// The record's id, to tell the caller's own session apart; never shown.
    pub id: String,
}

#[derive(Clone)]
pub struct SessionIndex {
    store: RedisStore,
    idle_ttl: Duration,
    /// `None`: sessions have no absolute lifetime.
    max_lifetime: Option<Duration>,
}

/// A short, fixed-length digest of a name chosen elsewhere (a subject, a provider's sid), so
/// that any text makes a well-formed key.
fn digest(parts: &[&str]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in parts {
        ctx.update(part.as_bytes());
        ctx.update(&[0]);
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&ctx.finish().as_ref()[..18])
}

impl SessionIndex {
    pub fn new(store: RedisStore, idle_ttl: Duration, max_lifetime: Option<Duration>) -> Self {
        SessionIndex {
            store,
            idle_ttl,
            max_lifetime,
        }
    }

    pub fn store(&self) -> &RedisStore {
        &self.store
    }

    fn user_key(&self, subject: &str) -> String {
        self.store.key(USER, &digest(&[subject]))
    }

    fn sid_key(&self, provider: &str, sid: &str) -> String {
        self.store.key(SID, &digest(&[provider, sid]))
    }

    /// Whether a session started at `created_at` has outlived the absolute lifetime.
    pub fn past_lifetime(&self, created_at: Option<u64>, now: u64) -> bool {
        match (self.max_lifetime, created_at) {
            (Some(max), Some(created)) => created.saturating_add(max.as_secs()) <= now,
            _ => false,
        }
    }

    /// Lists a new session under its user (and its provider session, when known).
    pub async fn add(
        &self,
        subject: &str,
        handle: &str,
        id: &str,
        provider_sid: Option<(&str, &str)>,
    ) -> Result<(), StoreError> {
        let mut conn = self.store.conn();
        let user = self.user_key(subject);
        let mut pipe = redis::pipe();
        pipe.cmd("HSET").arg(&user).arg(handle).arg(id).ignore();
        // A session cannot outlive the absolute lifetime, so neither need its entry; without
        // one, entries live until pruned.
        if let Some(max) = self.max_lifetime {
            pipe.cmd("EXPIRE")
                .arg(&user)
                .arg(max.as_secs().max(1))
                .ignore();
        }
        let () = pipe.query_async(&mut conn).await?;
        if let Some((provider, sid)) = provider_sid {
            let key = self.sid_key(provider, sid);
            let mut pipe = redis::pipe();
            pipe.cmd("SADD").arg(&key).arg(id).ignore();
            let ttl = self
                .max_lifetime
                .unwrap_or(self.idle_ttl)
                .max(self.idle_ttl);
            pipe.cmd("EXPIRE")
                .arg(&key)
                .arg(ttl.as_secs().max(1))
                .ignore();
            let () = pipe.query_async(&mut conn).await?;
        }
        Ok(())
    }

    /// The user's live sessions, oldest first. Entries whose record is gone are pruned.
    pub async fn list(&self, subject: &str) -> Result<Vec<Listed>, StoreError> {
        let mut conn = self.store.conn();
        let user = self.user_key(subject);
        let entries: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(&user)
            .query_async(&mut conn)
            .await?;
        let now = now_unix();
        let mut listed = Vec::new();
        let mut stale = Vec::new();
        for (handle, id) in entries {
            let key = self.store.key(SESSION, &id);
            // One slot per record (its id is the hash tag): a pipeline per record also works
            // on a cluster.
            let (bytes, pttl): (Option<Vec<u8>>, i64) = redis::pipe()
                .cmd("GET")
                .arg(&key)
                .cmd("PTTL")
                .arg(&key)
                .query_async(&mut conn)
                .await?;
            let Some(bytes) = bytes else {
                stale.push(handle);
                continue;
            };
            let Ok(session) = record::decode_meta(&bytes) else {
                continue;
            };
            if session.subject != subject || self.past_lifetime(session.created_at, now) {
                stale.push(handle);
                continue;
            }
            // Every use renews the record's idle lifetime: what is left of it says when.
            let idle_left = u64::try_from(pttl).unwrap_or(0) / 1000;
            let unused_for = self.idle_ttl.as_secs().saturating_sub(idle_left);
            let last_seen_at = now
                .saturating_sub(unused_for)
                .max(session.created_at.unwrap_or(0))
                .min(now);
            listed.push(Listed {
                handle,
                created_at: session.created_at,
                last_seen_at,
                ip: session.ip,
                user_agent: session.user_agent,
                id,
            });
        }
        if !stale.is_empty() {
            let _: i64 = redis::cmd("HDEL")
                .arg(&user)
                .arg(&stale)
                .query_async(&mut conn)
                .await?;
        }
        listed.sort_by_key(|l| (l.created_at, l.last_seen_at));
        Ok(listed)
    }

    /// Ends the session whose record is `id`, at once and everywhere; its index entry goes
    /// with it. Returns the subject it belonged to, if it was still there.
    pub async fn end(&self, id: &str) -> Result<Option<String>, StoreError> {
        let mut conn = self.store.conn();
        let bytes: Option<Vec<u8>> = redis::cmd("GETDEL")
            .arg(self.store.key(SESSION, id))
            .query_async(&mut conn)
            .await?;
        let Some(meta) = bytes.and_then(|b| record::decode_meta(&b).ok()) else {
            return Ok(None);
        };
        let _: i64 = redis::cmd("HDEL")
            .arg(self.user_key(&meta.subject))
            .arg(&meta.handle)
            .query_async(&mut conn)
            .await?;
        Ok(Some(meta.subject))
    }

    /// Ends the session the cookie's key names (sign-out, a refresh token refused).
    pub async fn end_key(&self, session_key: &str) -> Result<(), StoreError> {
        if let Some(key) = SessionKey::parse(session_key) {
            self.end(key.id).await?;
        }
        Ok(())
    }

    /// Ends one of `subject`'s sessions by its handle; `false` when it has none by that handle.
    pub async fn end_handle(&self, subject: &str, handle: &str) -> Result<bool, StoreError> {
        let mut conn = self.store.conn();
        let id: Option<String> = redis::cmd("HGET")
            .arg(self.user_key(subject))
            .arg(handle)
            .query_async(&mut conn)
            .await?;
        match id {
            Some(id) => Ok(self.end(&id).await?.is_some_and(|owner| owner == subject)),
            None => Ok(false),
        }
    }

    /// Ends every session of `subject` but the one with handle `keep`; returns how many ended.
    pub async fn end_all(&self, subject: &str, keep: Option<&str>) -> Result<usize, StoreError> {
        let mut conn = self.store.conn();
        let entries: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(self.user_key(subject))
            .query_async(&mut conn)
            .await?;
        let mut ended = 0;
        for (handle, id) in entries {
            if Some(handle.as_str()) == keep {
                continue;
            }
            if self.end(&id).await?.is_some() {
                ended += 1;
            } else {
                let _: i64 = redis::cmd("HDEL")
                    .arg(self.user_key(subject))
                    .arg(&handle)
                    .query_async(&mut conn)
                    .await?;
            }
        }
        Ok(ended)
    }

    /// Ends every session signed in through the provider session `sid` (back-channel logout).
    pub async fn end_sid(&self, provider: &str, sid: &str) -> Result<usize, StoreError> {
        let mut conn = self.store.conn();
        let key = self.sid_key(provider, sid);
        let ids: Vec<String> = redis::cmd("SMEMBERS")
            .arg(&key)
            .query_async(&mut conn)
            .await?;
        let mut ended = 0;
        for id in ids {
            if self.end(&id).await?.is_some() {
                ended += 1;
            }
        }
        let _: i64 = redis::cmd("DEL").arg(&key).query_async(&mut conn).await?;
        Ok(ended)
    }
}

impl SessionIndex {
    /// The index the server uses, for the operator's commands (`gatehouse users block`,
    /// `gatehouse sessions revoke`): same Redis, same prefix, same lifetimes.
    pub fn from_settings(settings: &crate::config::Settings) -> Result<SessionIndex, String> {
        let store = RedisStore::connect(&settings.redis).map_err(|e| e.to_string())?;
        Ok(SessionIndex::new(
            store,
            settings.session.ttl,
            settings.session.max_lifetime,
        ))
    }
}

impl crate::directory::SessionEnder for SessionIndex {
    async fn end_all_for_subject(
        &self,
        subject: &str,
    ) -> Result<usize, crate::directory::SessionEndError> {
        self.end_all(subject, None)
            .await
            .map_err(|e| crate::directory::SessionEndError(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_separate_their_parts() {
        assert_ne!(digest(&["ab", "c"]), digest(&["a", "bc"]));
        assert_eq!(digest(&["x"]), digest(&["x"]));
        assert_eq!(digest(&["x"]).len(), 24);
    }
}
