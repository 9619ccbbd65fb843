//! Short leases in Redis: one holder at a time across all instances. A lease lives at
//! `<prefix>lock:{<name>}` (a hash tag: a session's lease shares the session's cluster slot);
//! release is one EVAL on that one key, which a cluster routes like any single-key command.

use std::time::Duration;

use super::{RedisStore, StoreError};

const KIND: &str = "lock";

/// Deletes the lock only if we still hold it (a lease that expired may be someone else's now).
const RELEASE: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

#[derive(Clone)]
pub struct Locks {
    store: RedisStore,
}

/// Proof of holding a lock; give it back with [`Locks::release`].
pub struct Lease {
    key: String,
    token: String,
}

impl Lease {
    /// The lock's Redis key, for scripts that must check the lease atomically.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// What proves the lease is ours: compare with the lock's value.
    pub fn token(&self) -> &str {
        &self.token
    }
}

impl Locks {
    pub fn new(store: RedisStore) -> Self {
        Locks { store }
    }

    /// Takes `name` for `lease` unless someone holds it.
    pub async fn try_acquire(
        &self,
        name: &str,
        lease: Duration,
    ) -> Result<Option<Lease>, StoreError> {
        let key = self.store.key(KIND, name);
        let token = crate::random::token();
        let mut conn = self.store.conn();
        let set: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(lease.as_millis().max(1) as u64)
            .query_async(&mut conn)
            .await?;
        Ok(set.map(|_| Lease { key, token }))
    }

    pub async fn release(&self, lease: Lease) -> Result<(), StoreError> {
        let mut conn = self.store.conn();
        let _: i64 = redis::cmd("EVAL")
            .arg(RELEASE)
            .arg(1)
            .arg(&lease.key)
            .arg(&lease.token)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }
}
