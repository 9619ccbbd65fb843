//! Sessions in Redis, at `<prefix>session:{<id>}` (the id is a hash tag, so the session's
//! refresh lease, `<prefix>lock:{<id>}`, shares its cluster slot).
//!
//! Two ways in. actix-session's [`SessionStore`] serves every page and endpoint but `/auth`:
//! this store translates between its map of JSON strings and the flat stored record
//! ([`super::record`]), sealing and opening the tokens with the key the cookie carries. `/auth`
//! reads the record directly ([`RedisSessionStore::touch`]): one `GETEX`, no map.
//!
//! actix-session's own Redis store opens its own untunable connection and hangs for minutes
//! when Redis is down; this one uses each worker's own bounded connection ([`RedisStore`]), so a failure is a
//! quick error that the error middleware turns into 503.

use std::collections::HashMap;
use std::time::Duration as StdDuration;

use actix_session::storage::{LoadError, SaveError, SessionKey, SessionStore, UpdateError};
use actix_web::cookie::time::Duration;

use super::index::SessionIndex;
use super::record::{self, Meta, RecordError, Session};
use super::{RedisStore, StoreError};
use crate::identity::now_unix;

const KIND: &str = "session";
pub const IDENTITY: &str = "identity";
pub const TOKENS: &str = "tokens";
pub const META: &str = "meta";
/// Entry the store adds to every loaded session: the cookie's session key (`<id>.<key>`), so
/// the domain can address the record (refresh, revocation); never written back.
pub const KEY_ENTRY: &str = "_key";
/// Entry the store adds to a format-1 session: its next page visit rewrites it as format 2
/// under a new key (see `migrations/README.md`); never written back.
pub const UPGRADE_ENTRY: &str = "_upgrade";

type SessionState = HashMap<String, String>;

/// Writes the refreshed record only while the refresh lease (KEYS[2]) is still ours (ARGV[1]),
/// and gives the lease back in the same step: 1 written, 2 the session is gone, 0 the lease was
/// no longer ours (nothing written).
const WRITE_UNDER_LEASE: &str = "if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end \
     redis.call('DEL', KEYS[2]) \
     if redis.call('SET', KEYS[1], ARGV[2], 'XX', 'EX', ARGV[3]) then return 1 end return 2";

/// What a write under the refresh lease did.
#[derive(Debug, PartialEq, Eq)]
pub enum LeasedWrite {
    Written,
    /// Signed out or expired meanwhile.
    Gone,
    /// The lease expired before the write: another holder may be refreshing now.
    LeaseLost,
}

#[derive(Clone)]
pub struct RedisSessionStore {
    store: RedisStore,
    /// Idle lifetime: every read extends the key by this much (`GETEX`, still one round trip).
    idle_ttl: StdDuration,
    index: SessionIndex,
}

impl RedisSessionStore {
    pub fn new(store: RedisStore, idle_ttl: StdDuration, index: SessionIndex) -> Self {
        RedisSessionStore {
            store,
            idle_ttl,
            index,
        }
    }

    pub fn index(&self) -> &SessionIndex {
        &self.index
    }

    fn key(&self, id: &str) -> String {
        self.store.key(KIND, id)
    }

    fn idle_secs(&self) -> u64 {
        self.idle_ttl.as_secs().max(1)
    }

    /// `/auth`'s one round trip: the stored record, its idle lifetime renewed.
    pub async fn touch(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut conn = self.store.conn();
        Ok(redis::cmd("GETEX")
            .arg(self.key(id))
            .arg("EX")
            .arg(self.idle_secs())
            .query_async(&mut conn)
            .await?)
    }

    /// The whole session as stored now (no lifetime change), tokens opened with `key`.
    pub async fn read(
        &self,
        id: &str,
        key: Option<&[u8; record::KEY_LEN]>,
    ) -> Result<Option<Session>, StoreError> {
        let mut conn = self.store.conn();
        let bytes: Option<Vec<u8>> = redis::cmd("GET")
            .arg(self.key(id))
            .query_async(&mut conn)
            .await?;
        match bytes {
            Some(bytes) => Ok(Some(record::decode(&bytes, id, key)?)),
            None => Ok(None),
        }
    }

    /// Overwrites the session, only while `lease` (the refresh lease's key and token) is
    /// ours, and releases that lease in the same atomic step.
    pub async fn write_under_lease(
        &self,
        id: &str,
        key: Option<&[u8; record::KEY_LEN]>,
        session: &Session,
        lease: &super::locks::Lease,
    ) -> Result<LeasedWrite, StoreError> {
        let body = record::encode(session, id, key)?;
        let mut conn = self.store.conn();
        let done: i64 = redis::cmd("EVAL")
            .arg(WRITE_UNDER_LEASE)
            .arg(2)
            .arg(self.key(id))
            .arg(lease.key())
            .arg(lease.token())
            .arg(body)
            .arg(self.idle_secs())
            .query_async(&mut conn)
            .await?;
        Ok(match done {
            1 => LeasedWrite::Written,
            2 => LeasedWrite::Gone,
            _ => LeasedWrite::LeaseLost,
        })
    }

    /// Writes a new record under a fresh key and lists it; returns the cookie's session key.
    async fn insert(&self, mut session: Session, ttl: u64) -> Result<String, StoreError> {
        if session.meta.handle.is_empty() {
            session.meta.handle = crate::random::token();
        }
        if session.meta.created_at.is_none() {
            session.meta.created_at = Some(now_unix());
        }
        let mut conn = self.store.conn();
        // A collision of 256 random bits will not happen; NX still makes sure a write never
        // lands on someone else's session.
        for _ in 0..3 {
            let minted = record::SessionKey::mint();
            let Some(parts) = record::SessionKey::parse(&minted) else {
                continue;
            };
            let body = record::encode(&session, parts.id, parts.key.as_ref())?;
            let set: Option<String> = redis::cmd("SET")
                .arg(self.key(parts.id))
                .arg(body)
                .arg("NX")
                .arg("EX")
                .arg(ttl)
                .query_async(&mut conn)
                .await?;
            if set.is_some() {
                let sid = match (&session.meta.provider, &session.meta.sid) {
                    (Some(p), Some(s)) => Some((p.as_str(), s.as_str())),
                    (None, Some(s)) => Some(("default", s.as_str())),
                    _ => None,
                };
                self.index
                    .add(
                        &session.identity.subject,
                        &session.meta.handle,
                        parts.id,
                        sid,
                    )
                    .await?;
                return Ok(minted);
            }
        }
        Err(StoreError::Record(RecordError::Encode))
    }
}

impl From<RecordError> for StoreError {
    fn from(e: RecordError) -> Self {
        StoreError::Record(e)
    }
}

/// The session as actix-session's map of JSON strings.
fn to_state(
    session: &Session,
    session_key: &str,
    upgrade: bool,
) -> Result<SessionState, RecordError> {
    let json = |v: Result<String, serde_json::Error>| v.map_err(|_| RecordError::Encode);
    let mut state = HashMap::with_capacity(5);
    state.insert(
        IDENTITY.to_owned(),
        json(serde_json::to_string(&session.identity))?,
    );
    state.insert(
        TOKENS.to_owned(),
        json(serde_json::to_string(&session.tokens))?,
    );
    state.insert(META.to_owned(), json(serde_json::to_string(&session.meta))?);
    state.insert(
        KEY_ENTRY.to_owned(),
        json(serde_json::to_string(session_key))?,
    );
    if upgrade {
        state.insert(UPGRADE_ENTRY.to_owned(), "true".to_owned());
    }
    Ok(state)
}

/// The map back as a session. Only signed-in sessions are ever written.
fn from_state(state: &SessionState) -> Result<Session, RecordError> {
    let field = |name: &str| state.get(name).ok_or(RecordError::Encode);
    let parse_err = RecordError::corrupt;
    Ok(Session {
        identity: serde_json::from_str(field(IDENTITY)?).map_err(parse_err)?,
        tokens: serde_json::from_str(field(TOKENS)?).map_err(parse_err)?,
        meta: match state.get(META) {
            Some(meta) => serde_json::from_str(meta).map_err(parse_err)?,
            None => Meta::default(),
        },
    })
}

fn ttl_secs(ttl: &Duration) -> u64 {
    ttl.whole_seconds().max(1) as u64
}

impl SessionStore for RedisSessionStore {
    async fn load(&self, session_key: &SessionKey) -> Result<Option<SessionState>, LoadError> {
        // A key of neither format was not made by us: a signed-out visitor.
        let Some(parts) = record::SessionKey::parse(session_key.as_ref()) else {
            return Ok(None);
        };
        let Some(bytes) = self
            .touch(parts.id)
            .await
            .map_err(|e| LoadError::Other(e.into()))?
        else {
            return Ok(None);
        };
        // The error's text names the problem's kind and place, never the record's content.
        let session = record::decode(&bytes, parts.id, parts.key.as_ref())
            .map_err(|e| LoadError::Deserialization(anyhow::anyhow!(e)))?;
        if self
            .index
            .past_lifetime(session.meta.created_at, now_unix())
        {
            self.index
                .end(parts.id)
                .await
                .map_err(|e| LoadError::Other(e.into()))?;
            return Ok(None);
        }
        to_state(&session, session_key.as_ref(), parts.key.is_none())
            .map(Some)
            .map_err(|e| LoadError::Deserialization(anyhow::anyhow!(e)))
    }

    async fn save(&self, state: SessionState, ttl: &Duration) -> Result<SessionKey, SaveError> {
        let session = from_state(&state).map_err(|e| SaveError::Serialization(e.into()))?;
        let key = self
            .insert(session, ttl_secs(ttl))
            .await
            .map_err(|e| SaveError::Other(e.into()))?;
        SessionKey::try_from(key).map_err(|e| SaveError::Other(e.into()))
    }

    async fn update(
        &self,
        session_key: SessionKey,
        state: SessionState,
        ttl: &Duration,
    ) -> Result<SessionKey, UpdateError> {
        let session = from_state(&state).map_err(|e| UpdateError::Serialization(e.into()))?;
        let Some(parts) = record::SessionKey::parse(session_key.as_ref()) else {
            return Err(UpdateError::Other(anyhow::anyhow!(
                "not a session key of ours"
            )));
        };
        let mut conn = self.store.conn();
        if parts.key.is_none() {
            // Format 1: rewritten under a new key that seals its tokens; the old record goes.
            let old = self.key(parts.id);
            let exists: bool = redis::cmd("EXISTS")
                .arg(&old)
                .query_async(&mut conn)
                .await
                .map_err(|e| UpdateError::Other(e.into()))?;
            if !exists {
                // Signed out elsewhere meanwhile: stays signed out.
                return Ok(session_key);
            }
            let new_key = self
                .insert(session, ttl_secs(ttl))
                .await
                .map_err(|e| UpdateError::Other(e.into()))?;
            let _: i64 = redis::cmd("DEL")
                .arg(old)
                .query_async(&mut conn)
                .await
                .map_err(|e| UpdateError::Other(e.into()))?;
            tracing::info!("a session of the previous format was upgraded");
            return SessionKey::try_from(new_key).map_err(|e| UpdateError::Other(e.into()));
        }
        let body = record::encode(&session, parts.id, parts.key.as_ref())
            .map_err(|e| UpdateError::Serialization(e.into()))?;
        // XX: a session deleted meanwhile (signed out elsewhere) stays deleted instead of
        // being resurrected by a late write.
        let _: Option<String> = redis::cmd("SET")
            .arg(self.key(parts.id))
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
        let Some(parts) = record::SessionKey::parse(session_key.as_ref()) else {
            return Ok(());
        };
        let mut conn = self.store.conn();
        let _: i64 = redis::cmd("EXPIRE")
            .arg(self.key(parts.id))
            .arg(ttl_secs(ttl))
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn delete(&self, session_key: &SessionKey) -> anyhow::Result<()> {
        self.index.end_key(session_key.as_ref()).await?;
        Ok(())
    }
}
