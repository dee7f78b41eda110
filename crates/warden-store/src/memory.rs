//! [`MemoryStore`]: the in-process backend for ephemeral state.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::ops::Bound;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::limits::{opt_ttl_millis, ttl_millis};
use crate::{Limits, Namespace, Store, StoreError, StoreFuture, encode_counter, parse_counter};

/// Shards per namespace. Sixteen keeps lock contention low on typical core counts while a
/// `list` (which visits every shard) stays cheap.
const SHARDS: usize = 16;

/// Entries a new insert inspects for expiry in its shard. An insert inspects more entries than it
/// adds, so a shard of `n` entries is swept end to end within about `n / 7` inserts: dead entries
/// cannot pile up while the store is written, and no insert pays for more than this many checks.
const SWEEP_BATCH: usize = 8;

/// In-memory store for ephemeral state such as sessions and rate-limit buckets.
///
/// Each namespace is split into 16 ordered maps, each behind its own mutex, chosen by a
/// randomly seeded hash of the key. Expired entries are removed when read, by a bounded sweep step
/// on every insert, and by a full sweep of the namespace before an insert is refused with
/// [`StoreError::Full`] (so `Full` means the limit of *live* entries is reached). Nothing runs in
/// the background. Expiry follows [`tokio::time::Instant`], so `tokio::time::pause()` controls it.
///
/// Contents are lost when the process exits. `Debug` shows entry counts, never keys or values.
#[derive(Default)]
pub struct MemoryStore {
    limits: Limits,
    namespaces: RwLock<HashMap<Namespace, Arc<NamespaceState>>>,
    hasher: RandomState,
}

struct NamespaceState {
    name: Namespace,
    max_entries: usize,
    /// Entries in all shards, live or not yet reclaimed. Only changed while holding a shard lock.
    len: AtomicUsize,
    shards: Box<[Mutex<Shard>]>,
}

#[derive(Default)]
struct Shard {
    map: BTreeMap<String, Entry>,
    /// Where the next sweep step resumes; `None` starts from the first key.
    sweep_cursor: Option<String>,
}

#[derive(Clone)]
struct Entry {
    value: Bytes,
    expires_at: Option<Instant>,
}

impl Entry {
    fn is_live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| now < at)
    }
}

/// What an operation decided to do to the entry it inspected.
enum Write {
    Keep,
    Delete,
    Put {
        value: Bytes,
        expires_at: Option<Instant>,
    },
    Expire(Instant),
}

/// Result of one locked attempt at an update.
enum Attempt<R> {
    Done(R),
    /// The namespace was at its limit; sweep it and try once more.
    Full,
}

fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // A panic while holding the lock cannot leave a shard half-updated: every mutation is a single
    // map call, so the data behind a poisoned lock is still consistent.
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

fn expiry(now: Instant, ttl_ms: Option<u64>) -> Option<Instant> {
    ttl_ms.map(|ms| now + Duration::from_millis(ms))
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let namespaces = self
            .namespaces
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let mut counts: Vec<_> = namespaces
            .iter()
            .map(|(name, state)| (name.as_str(), state.len.load(Ordering::Relaxed)))
            .collect();
        counts.sort_unstable();
        f.debug_struct("MemoryStore")
            .field("limits", &self.limits)
            .field("entries", &counts)
            .finish_non_exhaustive()
    }
}

impl NamespaceState {
    fn new(name: Namespace, max_entries: usize) -> Self {
        Self {
            name,
            max_entries,
            len: AtomicUsize::new(0),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
        }
    }

    /// Claims room for one new entry, if the namespace is below its limit.
    fn reserve(&self) -> bool {
        self.len
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_entries).then_some(n + 1)
            })
            .is_ok()
    }

    fn release(&self, count: usize) {
        self.len.fetch_sub(count, Ordering::AcqRel);
    }

    /// Removes every expired entry in the namespace; returns how many.
    fn purge(&self, now: Instant) -> usize {
        let mut removed = 0;
        for shard in &self.shards {
            let mut shard = lock(shard);
            let before = shard.map.len();
            shard.map.retain(|_, entry| entry.is_live(now));
            let count = before - shard.map.len();
            self.release(count);
            removed += count;
        }
        removed
    }
}

impl Shard {
    /// Removes `key` if it is present but expired, so that callers only see live entries.
    fn drop_if_expired(&mut self, key: &str, now: Instant, namespace: &NamespaceState) {
        if self.map.get(key).is_some_and(|e| !e.is_live(now)) {
            self.map.remove(key);
            namespace.release(1);
        }
    }

    /// Inspects up to [`SWEEP_BATCH`] entries after the cursor and removes the expired ones.
    fn sweep_step(&mut self, now: Instant, namespace: &NamespaceState) {
        let start = match &self.sweep_cursor {
            Some(cursor) => Bound::Excluded(cursor.as_str()),
            None => Bound::Unbounded,
        };
        let mut expired = Vec::new();
        let mut last = None;
        let mut seen = 0;
        for (key, entry) in self
            .map
            .range::<str, _>((start, Bound::Unbounded))
            .take(SWEEP_BATCH)
        {
            seen += 1;
            last = Some(key);
            if !entry.is_live(now) {
                expired.push(key.clone());
            }
        }
        // Wrap around once the end of the shard is reached.
        self.sweep_cursor = if seen < SWEEP_BATCH {
            None
        } else {
            last.cloned()
        };
        for key in &expired {
            self.map.remove(key);
        }
        namespace.release(expired.len());
    }
}

impl MemoryStore {
    /// Creates an empty store with the given limits.
    #[must_use]
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            namespaces: RwLock::default(),
            hasher: RandomState::new(),
        }
    }

    /// Removes every expired entry now and returns how many were removed.
    ///
    /// Never needed for correctness (expired entries are invisible, and reclaimed as the store is
    /// written); a caller may run it on a timer to return memory sooner after a burst.
    pub fn purge_expired(&self) -> usize {
        let now = Instant::now();
        let namespaces: Vec<_> = self
            .namespaces
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        namespaces.iter().map(|ns| ns.purge(now)).sum()
    }

    /// Entries held for `namespace`, including expired ones not yet reclaimed.
    #[cfg(test)]
    fn raw_len(&self, namespace: Namespace) -> usize {
        self.existing(namespace)
            .map_or(0, |ns| ns.len.load(Ordering::Acquire))
    }

    fn existing(&self, namespace: Namespace) -> Option<Arc<NamespaceState>> {
        self.namespaces
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&namespace)
            .cloned()
    }

    fn namespace(&self, namespace: Namespace) -> Arc<NamespaceState> {
        if let Some(state) = self.existing(namespace) {
            return state;
        }
        let mut namespaces = self
            .namespaces
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        Arc::clone(namespaces.entry(namespace).or_insert_with(|| {
            Arc::new(NamespaceState::new(
                namespace,
                self.limits.max_entries(namespace),
            ))
        }))
    }

    fn shard_index(&self, key: &str) -> usize {
        // Truncating the hash is fine: only its low bits pick the shard.
        #[expect(
            clippy::cast_possible_truncation,
            reason = "only the low bits pick a shard"
        )]
        let hash = self.hasher.hash_one(key) as usize;
        hash % SHARDS
    }

    /// Reads the live entry for `key` without creating the namespace.
    fn read(&self, namespace: Namespace, key: &str) -> Option<Entry> {
        let state = self.existing(namespace)?;
        let now = Instant::now();
        let mut shard = lock(&state.shards[self.shard_index(key)]);
        shard.drop_if_expired(key, now, &state);
        shard.map.get(key).cloned()
    }

    /// Atomically inspects the live entry for `key` and applies what `decide` returns.
    ///
    /// `decide` may run twice: when the first attempt finds the namespace full, every shard is
    /// swept (without holding this shard's lock, so shards are never locked two at a time) and the
    /// update is retried against the then-current entry.
    fn update<R>(
        &self,
        namespace: Namespace,
        key: &str,
        mut decide: impl FnMut(Option<&Entry>, Instant) -> Result<(Write, R), StoreError>,
    ) -> Result<R, StoreError> {
        let state = self.namespace(namespace);
        let shard = &state.shards[self.shard_index(key)];
        if let Attempt::Done(out) = Self::attempt(&state, shard, key, &mut decide)? {
            return Ok(out);
        }
        state.purge(Instant::now());
        match Self::attempt(&state, shard, key, &mut decide)? {
            Attempt::Done(out) => Ok(out),
            Attempt::Full => Err(StoreError::Full {
                namespace: state.name,
                max: state.max_entries,
            }),
        }
    }

    fn attempt<R>(
        state: &NamespaceState,
        shard: &Mutex<Shard>,
        key: &str,
        decide: &mut impl FnMut(Option<&Entry>, Instant) -> Result<(Write, R), StoreError>,
    ) -> Result<Attempt<R>, StoreError> {
        let now = Instant::now();
        let mut shard = lock(shard);
        shard.drop_if_expired(key, now, state);
        let (write, out) = decide(shard.map.get(key), now)?;
        match write {
            Write::Keep => {}
            Write::Delete => {
                if shard.map.remove(key).is_some() {
                    state.release(1);
                }
            }
            Write::Expire(at) => {
                if let Some(entry) = shard.map.get_mut(key) {
                    entry.expires_at = Some(at);
                }
            }
            Write::Put { value, expires_at } => {
                let entry = Entry { value, expires_at };
                if let Some(existing) = shard.map.get_mut(key) {
                    *existing = entry;
                } else {
                    if !state.reserve() {
                        return Ok(Attempt::Full);
                    }
                    shard.map.insert(key.to_owned(), entry);
                    shard.sweep_step(now, state);
                }
            }
        }
        Ok(Attempt::Done(out))
    }
}

impl Store for MemoryStore {
    fn get<'a>(&'a self, namespace: Namespace, key: &'a str) -> StoreFuture<'a, Option<Bytes>> {
        Box::pin(async move {
            Limits::check_key(namespace, key)?;
            Ok(self.read(namespace, key).map(|entry| entry.value))
        })
    }

    fn put<'a>(
        &'a self,
        namespace: Namespace,
        key: &'a str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.limits.check_write(namespace, key, &value)?;
            let ttl = opt_ttl_millis(ttl)?;
            self.update(namespace, key, |_, now| {
                let write = Write::Put {
                    value: value.clone(),
                    expires_at: expiry(now, ttl),
                };
                Ok((write, ()))
            })
        })
    }

    fn put_if_absent<'a>(
        &'a self,
        namespace: Namespace,
        key: &'a str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            self.limits.check_write(namespace, key, &value)?;
            let ttl = opt_ttl_millis(ttl)?;
            self.update(namespace, key, |current, now| {
                Ok(match current {
                    Some(_) => (Write::Keep, false),
                    None => {
                        let write = Write::Put {
                            value: value.clone(),
                            expires_at: expiry(now, ttl),
                        };
                        (write, true)
                    }
                })
            })
        })
    }

    fn compare_and_swap<'a>(
        &'a self,
        namespace: Namespace,
        key: &'a str,
        expected: Option<&'a [u8]>,
        new: Option<Bytes>,
        ttl: Option<Duration>,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            match &new {
                Some(value) => self.limits.check_write(namespace, key, value)?,
                None => Limits::check_key(namespace, key)?,
            }
            let ttl = opt_ttl_millis(ttl)?;
            self.update(namespace, key, |current, now| {
                if current.map(|entry| &entry.value[..]) != expected {
                    return Ok((Write::Keep, false));
                }
                let write = match &new {
                    Some(value) => Write::Put {
                        value: value.clone(),
                        expires_at: expiry(now, ttl),
                    },
                    None => Write::Delete,
                };
                Ok((write, true))
            })
        })
    }

    fn delete<'a>(&'a self, namespace: Namespace, key: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            Limits::check_key(namespace, key)?;
            if self.existing(namespace).is_none() {
                return Ok(false);
            }
            self.update(namespace, key, |current, _| {
                Ok((Write::Delete, current.is_some()))
            })
        })
    }

    fn list<'a>(
        &'a self,
        namespace: Namespace,
        prefix: &'a str,
        limit: usize,
    ) -> StoreFuture<'a, Vec<String>> {
        Box::pin(async move {
            let Some(state) = self.existing(namespace) else {
                return Ok(Vec::new());
            };
            if limit == 0 {
                return Ok(Vec::new());
            }
            let now = Instant::now();
            let mut keys = Vec::new();
            for shard in &state.shards {
                let shard = lock(shard);
                keys.extend(
                    shard
                        .map
                        .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
                        .take_while(|(key, _)| key.starts_with(prefix))
                        .filter(|(_, entry)| entry.is_live(now))
                        .take(limit)
                        .map(|(key, _)| key.clone()),
                );
            }
            keys.sort_unstable();
            keys.truncate(limit);
            Ok(keys)
        })
    }

    fn touch<'a>(
        &'a self,
        namespace: Namespace,
        key: &'a str,
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            Limits::check_key(namespace, key)?;
            let ttl = ttl_millis(ttl)?;
            if self.existing(namespace).is_none() {
                return Ok(false);
            }
            self.update(namespace, key, |current, now| {
                Ok(match current {
                    Some(_) => (Write::Expire(now + Duration::from_millis(ttl)), true),
                    None => (Write::Keep, false),
                })
            })
        })
    }

    fn incr<'a>(
        &'a self,
        namespace: Namespace,
        key: &'a str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> StoreFuture<'a, i64> {
        Box::pin(async move {
            Limits::check_key(namespace, key)?;
            let ttl = opt_ttl_millis(ttl)?;
            self.update(namespace, key, |current, now| {
                let value = match current {
                    Some(entry) => {
                        parse_counter(&entry.value).ok_or(StoreError::NotACounter { namespace })?
                    }
                    None => 0,
                };
                let value = value
                    .checked_add(delta)
                    .ok_or(StoreError::Overflow { namespace })?;
                let expires_at = current
                    .and_then(|entry| entry.expires_at)
                    .or_else(|| expiry(now, ttl));
                let write = Write::Put {
                    value: encode_counter(value),
                    expires_at,
                };
                Ok((write, value))
            })
        })
    }
}

#[cfg(test)]
mod tests;
