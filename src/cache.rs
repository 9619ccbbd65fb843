//! A small in-memory cache with hard bounds on entries and bytes, for results that are costly
//! to make and safe to reuse for a while (signed assertions, verified bearer tokens).
//!
//! Two generations instead of an LRU list: lookups fill the young one; when it is full it
//! becomes the old one and the previous old one is dropped whole. A hit in the old generation
//! moves the entry to the young one, so what is in use survives and what is not ages out in at
//! most two turns. That bounds memory without a per-entry timer or a scan on the hot path, and
//! costs one lock and one hash lookup per call. Keys are SHA-256 digests, so the cache never
//! holds the secret material (tokens, session ids) it is keyed by.

use std::collections::HashMap;
use std::sync::Mutex;

pub type Digest = [u8; 32];

/// SHA-256 of the parts, each length-prefixed so that no two lists of parts collide.
pub fn digest<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> Digest {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in parts {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

struct Generation<V> {
    entries: HashMap<Digest, (V, usize)>,
    bytes: usize,
}

impl<V> Default for Generation<V> {
    fn default() -> Self {
        Generation {
            entries: HashMap::new(),
            bytes: 0,
        }
    }
}

impl<V> Generation<V> {
    fn remove(&mut self, key: &Digest) -> Option<(V, usize)> {
        let removed = self.entries.remove(key);
        if let Some((_, weight)) = &removed {
            self.bytes -= weight;
        }
        removed
    }
}

struct Generations<V> {
    young: Generation<V>,
    old: Generation<V>,
}

/// At most `max_entries` entries and about `max_bytes` bytes (as weighed by the caller) in all.
pub struct BoundedCache<V> {
    inner: Mutex<Generations<V>>,
    /// Per generation: half of each bound.
    entries_per_generation: usize,
    bytes_per_generation: usize,
}

impl<V: Clone> BoundedCache<V> {
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        BoundedCache {
            inner: Mutex::new(Generations {
                young: Generation::default(),
                old: Generation::default(),
            }),
            entries_per_generation: (max_entries / 2).max(1),
            bytes_per_generation: (max_bytes / 2).max(1),
        }
    }

    /// The value under `key` while `usable` says it still is; an unusable one is dropped.
    pub fn get(&self, key: &Digest, usable: impl Fn(&V) -> bool) -> Option<V> {
        // A poisoned lock (a panic elsewhere while holding it) only costs cache misses.
        let mut gens = self.inner.lock().ok()?;
        if let Some((value, _)) = gens.young.entries.get(key) {
            if usable(value) {
                return Some(value.clone());
            }
            gens.young.remove(key);
            return None;
        }
        let (value, weight) = gens.old.remove(key)?;
        if !usable(&value) {
            return None;
        }
        self.put(&mut gens, *key, value.clone(), weight);
        Some(value)
    }

    /// Keeps `value` under `key`; `weight` is about the bytes it holds. A value heavier than a
    /// generation may hold is not kept at all.
    pub fn insert(&self, key: Digest, value: V, weight: usize) {
        if weight > self.bytes_per_generation {
            return;
        }
        if let Ok(mut gens) = self.inner.lock() {
            gens.old.remove(&key);
            gens.young.remove(&key);
            self.put(&mut gens, key, value, weight);
        }
    }

    fn put(&self, gens: &mut Generations<V>, key: Digest, value: V, weight: usize) {
        if gens.young.entries.len() >= self.entries_per_generation
            || gens.young.bytes + weight > self.bytes_per_generation
        {
            gens.old = std::mem::take(&mut gens.young);
        }
        gens.young.bytes += weight;
        gens.young.entries.insert(key, (value, weight));
    }

    /// Entries held now (both generations), for tests.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .map(|g| g.young.entries.len() + g.old.entries.len())
            .unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u32) -> Digest {
        digest([n.to_be_bytes().as_slice()])
    }

    #[test]
    fn digests_separate_their_parts() {
        assert_ne!(
            digest([b"ab".as_slice(), b"c"]),
            digest([b"a".as_slice(), b"bc"])
        );
        assert_eq!(digest([b"ab".as_slice()]), digest([b"ab".as_slice()]));
    }

    #[test]
    fn entries_are_bounded_and_the_used_ones_survive() {
        let cache = BoundedCache::new(10, 1 << 20);
        cache.insert(key(0), 0, 1);
        for n in 1..100 {
            cache.insert(key(n), n, 1);
            // Entry 0 is in use all along: every turn moves it to the young generation.
            assert_eq!(cache.get(&key(0), |_| true), Some(0), "round {n}");
            assert!(cache.len() <= 10, "{} entries", cache.len());
        }
        assert_eq!(cache.get(&key(1), |_| true), None, "unused entries age out");
        assert_eq!(cache.get(&key(99), |_| true), Some(99));
    }

    #[test]
    fn bytes_are_bounded() {
        let cache = BoundedCache::new(1000, 100);
        for n in 0..50 {
            cache.insert(key(n), n, 10);
        }
        // Two generations of at most 50 bytes: at most 10 entries of 10 bytes.
        assert!(cache.len() <= 10, "{} entries", cache.len());
        cache.insert(key(500), 500, 51);
        assert_eq!(cache.get(&key(500), |_| true), None, "too heavy to keep");
    }

    #[test]
    fn unusable_entries_are_dropped() {
        let cache = BoundedCache::new(10, 100);
        cache.insert(key(1), 1, 1);
        assert_eq!(cache.get(&key(1), |v| *v > 1), None);
        assert_eq!(cache.get(&key(1), |_| true), None, "gone, not kept");
        assert!(cache.is_empty());
    }
}
