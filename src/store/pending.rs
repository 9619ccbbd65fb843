//! Pending sign-ins: one key per state, written once, redeemed once (`GETDEL`), and admitted
//! under two limits (per client, and for everyone together) so that a flood of `/signin` can
//! neither fill Redis nor lock others out.
//!
//! Keys:
//! - `<prefix>signin:<state>`: the record, a lone key (no hash tag), expiring with the sign-in.
//! - `<prefix>signin-pending:{signin}`: a sorted set of the pending states scored by their
//!   expiry (ms): its size is the number of pending sign-ins, exactly, once expired members are
//!   pruned (which every admission does).
//! - `<prefix>signin-rate:{signin}:<client>`: sign-ins the client started in its current
//!   one-minute window.
//!
//! The two limit keys share the `{signin}` hash tag, so one script checks and counts both, also
//! in a Redis Cluster. On a single server the same script also writes the record: `/signin`
//! costs one round trip. In a cluster the record lives in its own slot and is written right
//! after the script admitted it.
//!
//! Keeping pending sign-ins out of the session map is what makes many tabs, replays and several
//! instances safe: Redis decides atomically which single callback gets a state.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{RedisStore, StoreError};
use crate::config::SigninSettings;

const KIND: &str = "signin";
const PENDING_SET: &str = "signin-pending";
const CLIENT_WINDOW: &str = "signin-rate";
/// The hash tag of the limit keys (see the module documentation).
const LIMITS_TAG: &str = "{signin}";

/// The largest record written, in bytes of JSON. A `return_to` of the longest accepted length
/// (2 KiB) fits; one that JSON escaping would swell past this is replaced by `/`. With its key,
/// its member of the pending set, its client's window and Redis's own bookkeeping, a pending
/// sign-in then takes under 4 KB of memory (docs/operations.md states the bound this gives with
/// SIGNIN__MAX_PENDING; tests/api/signin_limits.rs measures it).
pub const MAX_RECORD_BYTES: usize = 2500;

/// Checks both limits, then counts the sign-in. Returns `{0}` (admitted), `{1, ms}` (this client's
/// window is full for ms more), `{2, ms}` (too many pending; the oldest expires in ms),
/// `{3}` (the state exists already).
/// KEYS: the client's window, the pending set[, the record (one server only)].
/// ARGV: per-client limit (0 = none), max pending, state, TTL (ms), record.
const ADMIT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
if limit > 0 then
  local used = tonumber(redis.call('GET', KEYS[1]) or '0')
  if used >= limit then
    return {1, redis.call('PTTL', KEYS[1])}
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', string.format('%.0f', now))
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[2]) then
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  return {2, tonumber(oldest[2]) - now}
end
local ttl = tonumber(ARGV[4])
if #KEYS > 2 then
  if not redis.call('SET', KEYS[3], ARGV[5], 'NX', 'PX', ttl) then
    return {3, 0}
  end
end
redis.call('ZADD', KEYS[2], string.format('%.0f', now + ttl), ARGV[3])
redis.call('PEXPIRE', KEYS[2], ttl + 60000)
if limit > 0 then
  if redis.call('INCR', KEYS[1]) == 1 then
    redis.call('PEXPIRE', KEYS[1], 60000)
  end
end
return {0, 0}
";

/// Redeems a state and forgets it in the pending set, in one round trip (one server only).
const TAKE: &str = r"
local v = redis.call('GETDEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return v
";

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
    /// The name of the provider it was started with; the callback finishes it there and
    /// nowhere else. `None` in records of releases before several providers: the default one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
}

impl std::fmt::Debug for PendingSignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingSignIn")
            .field("return_to", &self.return_to)
            .field("created_at", &self.created_at)
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

impl PendingSignIn {
    /// The stored form, at most [`MAX_RECORD_BYTES`]: a `return_to` that does not fit becomes
    /// `/` (only a hostile one can: accepted ones are at most 2 KiB before escaping).
    fn encode(&self) -> Result<String, StoreError> {
        let value = serde_json::to_string(self)?;
        if value.len() <= MAX_RECORD_BYTES {
            return Ok(value);
        }
        tracing::info!(
            bytes = value.len(),
            "return_to too long to keep; this sign-in will land on /"
        );
        let mut smaller = self.clone();
        smaller.return_to = crate::return_to::FALLBACK.to_owned();
        Ok(serde_json::to_string(&smaller)?)
    }
}

/// Whether a sign-in may start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    /// This client started its limit of sign-ins this minute; its window ends in this long.
    ClientLimited(Duration),
    /// SIGNIN__MAX_PENDING sign-ins are pending; the oldest expires in this long.
    Full(Duration),
    /// A freshly drawn state exists already (the RNG is broken).
    Exists,
}

#[derive(Clone)]
pub struct PendingSignIns {
    store: RedisStore,
    ttl: Duration,
    limits: SigninSettings,
}

impl PendingSignIns {
    pub fn new(store: RedisStore, ttl: Duration, limits: SigninSettings) -> Self {
        PendingSignIns { store, ttl, limits }
    }

    fn record_key(&self, state: &str) -> String {
        self.store.lone_key(KIND, state)
    }

    fn pending_set(&self) -> String {
        self.store.lone_key(PENDING_SET, LIMITS_TAG)
    }

    fn client_window(&self, client: &str) -> String {
        self.store
            .lone_key(CLIENT_WINDOW, &format!("{LIMITS_TAG}:{client}"))
    }

    /// Stores a new pending sign-in for `state` when both limits allow it; `client` names who
    /// starts it (`None`: unknown, so only the global limit applies). Nothing already pending
    /// is touched, whatever the answer.
    pub async fn put(
        &self,
        state: &str,
        pending: &PendingSignIn,
        client: Option<&str>,
    ) -> Result<Admission, StoreError> {
        let value = pending.encode()?;
        let per_client = if client.is_some() {
            self.limits.per_client_per_minute
        } else {
            0
        };
        let ttl_ms = self.ttl.as_millis().max(1) as u64;
        let cluster = self.store.is_cluster();
        let mut script = redis::cmd("EVAL");
        script
            .arg(ADMIT)
            .arg(if cluster { 2 } else { 3 })
            // Without a client the key is never read; it still names the limits' slot.
            .arg(self.client_window(client.unwrap_or("-")))
            .arg(self.pending_set());
        if !cluster {
            script.arg(self.record_key(state));
        }
        script
            .arg(per_client)
            .arg(self.limits.max_pending)
            .arg(state)
            .arg(ttl_ms)
            .arg(if cluster { "" } else { value.as_str() });
        let mut conn = self.store.conn();
        let (verdict, wait_ms): (i64, i64) = script.query_async(&mut conn).await?;
        let wait = Duration::from_millis(wait_ms.max(0) as u64);
        let admission = match verdict {
            0 => Admission::Admitted,
            1 => Admission::ClientLimited(wait),
            2 => Admission::Full(wait),
            _ => Admission::Exists,
        };
        if cluster && admission == Admission::Admitted {
            // The record is in another slot: written now. Should this fail, the set holds a
            // member without a record until it expires, which errs on the side of refusing.
            let set: Option<String> = redis::cmd("SET")
                .arg(self.record_key(state))
                .arg(value)
                .arg("NX")
                .arg("PX")
                .arg(ttl_ms)
                .query_async(&mut conn)
                .await?;
            if set.is_none() {
                return Ok(Admission::Exists);
            }
        }
        Ok(admission)
    }

    /// Reads a pending sign-in without redeeming it (the callback asks which provider it
    /// belongs to before spending it, while some provider is not ready).
    pub async fn peek(&self, state: &str) -> Result<Option<PendingSignIn>, StoreError> {
        let mut conn = self.store.conn();
        let value: Option<String> = redis::cmd("GET")
            .arg(self.record_key(state))
            .query_async(&mut conn)
            .await?;
        match value {
            Some(v) => Ok(Some(serde_json::from_str(&v)?)),
            None => Ok(None),
        }
    }

    /// Redeems a state: returns it at most once, whoever asks, on any instance.
    pub async fn take(&self, state: &str) -> Result<Option<PendingSignIn>, StoreError> {
        let mut conn = self.store.conn();
        let value: Option<String> = if self.store.is_cluster() {
            let value: Option<String> = redis::cmd("GETDEL")
                .arg(self.record_key(state))
                .query_async(&mut conn)
                .await?;
            if value.is_some() {
                // Frees its place at once; if this fails, the member expires with the TTL.
                let forgotten: Result<i64, _> = redis::cmd("ZREM")
                    .arg(self.pending_set())
                    .arg(state)
                    .query_async(&mut conn)
                    .await;
                if let Err(e) = forgotten {
                    tracing::warn!(error = %e, "a finished sign-in stays counted until it expires");
                }
            }
            value
        } else {
            redis::cmd("EVAL")
                .arg(TAKE)
                .arg(2)
                .arg(self.record_key(state))
                .arg(self.pending_set())
                .arg(state)
                .query_async(&mut conn)
                .await?
        };
        match value {
            Some(v) => Ok(Some(serde_json::from_str(&v)?)),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(return_to: &str) -> PendingSignIn {
        PendingSignIn {
            browser_id: crate::random::token(),
            pkce_verifier: crate::random::token(),
            nonce: Some(crate::random::token()),
            return_to: return_to.to_owned(),
            created_at: u64::MAX,
            provider: Some("p".repeat(crate::config::MAX_NAME_LEN)),
        }
    }

    #[test]
    fn the_longest_accepted_return_to_fits_and_anything_larger_falls_back() {
        let longest = format!("/{}", "a".repeat(2047));
        let kept = record(&longest).encode().expect("encodes");
        assert!(kept.len() <= MAX_RECORD_BYTES, "{}", kept.len());
        assert!(kept.contains(&longest));

        // Quotes double under JSON escaping.
        let swollen = format!("/{}", "\"".repeat(2047));
        let stored = record(&swollen).encode().expect("encodes");
        assert!(stored.len() <= MAX_RECORD_BYTES, "{}", stored.len());
        let back: PendingSignIn = serde_json::from_str(&stored).expect("decodes");
        assert_eq!(back.return_to, "/");
    }
}
