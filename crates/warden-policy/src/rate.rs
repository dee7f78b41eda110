//! Rate limits: token buckets (GCRA) per principal, per principal and tool, and global; caps on
//! concurrent in-flight calls per principal and per upstream.
//!
//! Buckets live behind [`Buckets`]. The gateway keeps them in a [`warden_store::Store`]
//! ([`StoreBuckets`]: one read and one compare-and-swap per take, which maps to a Redis script),
//! by default a process-local [`warden_store::MemoryStore`] with a monotonic clock; a shared
//! store (the Redis backend) plugs in through [`crate::build`]'s `store` with wall-clock time, so
//! replicas share limits. A bucket is one number, its theoretical arrival time (GCRA).
//! [`MemoryBuckets`] is a plain in-process table without the store interface, for embedders
//! (and the benchmark's reference).
//!
//! Concurrency slots are process-local semaphores; a slot is a permit the guard leaves in the
//! call's [`warden_guard::Permits`], released when the exchange's response reaches the client.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use warden_config::{RateLimitConfig, RateSpec};
use warden_guard::{Call, Denial, Direction, Guard, GuardError, Verdict};
use warden_proto::ErrorCode;
use warden_store::{DynStore, Namespace, StoreError};

/// Keys held per memory shard before idle buckets are purged: bounds memory whatever the
/// number of principals and tools.
const MAX_KEYS_PER_SHARD: usize = 16 * 1024;
/// Memory shards: spreads lock contention over cores.
const SHARDS: usize = 16;
/// Retries of a compare-and-swap that lost a race before giving up (fail closed).
const CAS_RETRIES: usize = 8;
/// Longest bucket key stored as written; longer keys (long subjects or tool names) are stored
/// as a SHA-256 digest, so no principal can exceed the store's key limit (and be refused for
/// it) and a key still names exactly one bucket.
const MAX_PLAIN_KEY_BYTES: usize = 200;
/// How long a bucket's store entry outlives the moment the bucket is full again. A principal
/// active within this time finds the value this gateway last wrote, so its take is one
/// compare-and-swap without a read (a network round trip saved with a shared store). Also
/// bounds the memory of idle principals.
const RETAIN: Duration = Duration::from_secs(10);
/// Retry hint of a concurrency refusal: the slot frees when some call finishes, which the
/// gateway cannot predict.
const CONCURRENCY_RETRY: Duration = Duration::from_secs(1);
/// Methods that are forwarded to an upstream as one call and so hold a concurrency slot.
const CALLS: &[&str] = &[
    "tools/call",
    "resources/read",
    "prompts/get",
    "completion/complete",
];

/// The outcome of taking one token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// A token was available.
    Allowed,
    /// The bucket is empty until `retry_after` has passed.
    Limited {
        /// Time until one token is available.
        retry_after: Duration,
    },
}

/// Why a bucket could not be consulted.
#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    /// The store failed.
    #[error("rate-limit store failed")]
    Store(#[source] StoreError),
    /// The store holds something that is not a bucket.
    #[error("rate-limit bucket `{0}` holds a malformed value")]
    Malformed(String),
    /// Concurrent updates kept winning the compare-and-swap.
    #[error("rate-limit bucket `{0}` is contended")]
    Contended(String),
    /// Every memory slot holds a live bucket.
    #[error("rate-limit table is full")]
    Full,
}

/// GCRA on nanosecond timestamps: `tat` is the bucket's theoretical arrival time. Returns the
/// new `tat`, or how long until a token is available.
pub fn gcra(tat: Option<u64>, now: u64, spec: &RateSpec) -> Result<u64, Duration> {
    let period = u64::try_from(spec.period.as_nanos()).unwrap_or(u64::MAX);
    let interval = (period / u64::from(spec.count.get())).max(1);
    let tolerance = interval.saturating_mul(u64::from(spec.burst.get()) - 1);
    let tat = tat.unwrap_or(now).max(now);
    let allow_at = tat.saturating_sub(tolerance);
    if now < allow_at {
        return Err(Duration::from_nanos(allow_at - now));
    }
    Ok(tat.saturating_add(interval))
}

/// Where buckets live.
pub trait Buckets: Send + Sync {
    /// Takes one token from bucket `key` with rate `spec`.
    fn take<'a>(
        &'a self,
        key: &'a str,
        spec: &'a RateSpec,
    ) -> BoxFuture<'a, Result<Taken, BucketError>>;
}

/// Buckets in a plain table in this process's memory, without the store interface.
///
/// [`crate::build`] uses [`StoreBuckets`] over a [`warden_store::MemoryStore`] instead, so that
/// every backend (and later Redis) goes through one code path; this table remains for
/// embedders that never share limits, and as the benchmark's reference for that path's cost.
pub struct MemoryBuckets {
    base: tokio::time::Instant,
    shards: Vec<Mutex<HashMap<String, u64>>>,
}

impl Default for MemoryBuckets {
    fn default() -> Self {
        Self {
            base: tokio::time::Instant::now(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }
}

impl std::fmt::Debug for MemoryBuckets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBuckets").finish_non_exhaustive()
    }
}

impl MemoryBuckets {
    fn take_now(&self, key: &str, spec: &RateSpec) -> Result<Taken, BucketError> {
        let now = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let shard = &self.shards[shard_of(key)];
        let mut map = shard.lock().unwrap_or_else(|e| e.into_inner());
        let tat = map.get(key).copied();
        match gcra(tat, now, spec) {
            Err(retry_after) => Ok(Taken::Limited { retry_after }),
            Ok(new) => {
                if tat.is_none() && map.len() >= MAX_KEYS_PER_SHARD {
                    // A bucket whose tat has passed is full again: the same as absent.
                    map.retain(|_, t| *t > now);
                    if map.len() >= MAX_KEYS_PER_SHARD {
                        return Err(BucketError::Full);
                    }
                }
                map.insert(key.to_owned(), new);
                Ok(Taken::Allowed)
            }
        }
    }
}

fn shard_of(key: &str) -> usize {
    // FNV-1a: cheap, and an adversary choosing keys can only load one shard, which the
    // per-shard bound already covers.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    usize::try_from(h % SHARDS as u64).unwrap_or(0)
}

impl Buckets for MemoryBuckets {
    fn take<'a>(
        &'a self,
        key: &'a str,
        spec: &'a RateSpec,
    ) -> BoxFuture<'a, Result<Taken, BucketError>> {
        let result = self.take_now(key, spec);
        async move { result }.boxed()
    }
}

/// The time a [`StoreBuckets`] measures GCRA in.
#[derive(Debug, Clone, Copy)]
enum Clock {
    /// Wall-clock nanoseconds since the Unix epoch: comparable between replicas sharing a
    /// store (which need synchronised clocks, as Redis-based limiters do).
    Wall,
    /// Nanoseconds since `base` on the monotonic [`tokio::time::Instant`]: immune to wall-clock
    /// steps, and paused with tokio's test clock. Only meaningful within one process.
    Monotonic(tokio::time::Instant),
}

impl Clock {
    fn now_ns(self) -> u64 {
        match self {
            Clock::Wall => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
                .unwrap_or(0),
            Clock::Monotonic(base) => u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX),
        }
    }
}

/// Buckets in a [`warden_store::Store`] ([`Namespace::RATE_LIMIT`]).
///
/// One entry per bucket holds its theoretical arrival time in decimal nanoseconds; it expires
/// 10 s after the bucket is full again, so idle principals cost nothing. A take is a
/// compare-and-swap against the value this gateway last saw (one operation for an active
/// principal); a refusal, a lost swap or no such value means a read and a compare-and-swap,
/// retried up to 8 times when the race is lost, then the take fails (the guard fails closed).
pub struct StoreBuckets {
    store: DynStore,
    clock: Clock,
    hints: Hints,
}

/// Per bucket, the theoretical arrival time this gateway last wrote or read: the `expected`
/// value of the next compare-and-swap. A hint is only an optimisation: a wrong one costs the
/// read it would have saved, never a wrong decision (a refusal is always confirmed by a read).
struct Hints {
    shards: Vec<Mutex<HashMap<String, u64>>>,
}

impl Hints {
    fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn get(&self, key: &str) -> Option<u64> {
        let map = self.shards[shard_of(key)]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        map.get(key).copied()
    }

    fn set(&self, key: &str, tat: u64, now: u64) {
        let mut map = self.shards[shard_of(key)]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = map.get_mut(key) {
            *slot = tat;
            return;
        }
        if map.len() >= MAX_KEYS_PER_SHARD {
            // Entries past their retention are gone from the store too.
            let retain = u64::try_from(RETAIN.as_nanos()).unwrap_or(u64::MAX);
            map.retain(|_, t| t.saturating_add(retain) > now);
            if map.len() >= MAX_KEYS_PER_SHARD {
                return;
            }
        }
        map.insert(key.to_owned(), tat);
    }
}

impl StoreBuckets {
    /// Buckets in `store` shared by every gateway using it, on wall-clock time.
    pub fn new(store: DynStore) -> Self {
        Self {
            store,
            clock: Clock::Wall,
            hints: Hints::new(),
        }
    }

    /// Buckets in a store only this process uses (such as a [`warden_store::MemoryStore`]), on
    /// the monotonic clock: a wall-clock step can neither refill nor freeze them.
    pub fn local(store: DynStore) -> Self {
        Self {
            store,
            clock: Clock::Monotonic(tokio::time::Instant::now()),
            hints: Hints::new(),
        }
    }
}

impl std::fmt::Debug for StoreBuckets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreBuckets")
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

/// The store key of bucket `key`: itself, or `#` and its SHA-256 in hex when long. Bucket keys
/// start with `g`, `p:` or `t:`, so a digest key cannot equal a plain one.
fn store_key(key: &str) -> std::borrow::Cow<'_, str> {
    use sha2::Digest as _;
    use std::fmt::Write as _;
    if key.len() <= MAX_PLAIN_KEY_BYTES {
        return std::borrow::Cow::Borrowed(key);
    }
    let digest = sha2::Sha256::digest(key.as_bytes());
    let mut out = String::with_capacity(1 + 64);
    out.push('#');
    for b in digest {
        let _ = write!(out, "{b:02x}");
    }
    std::borrow::Cow::Owned(out)
}

/// Parses a stored theoretical arrival time.
fn parse_tat(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 20 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

impl StoreBuckets {
    /// Writes `new` over `expected` (the entry lives until the bucket is full again, plus
    /// [`RETAIN`]). Returns whether the swap happened.
    async fn swap(
        &self,
        stored: &str,
        expected: Option<&[u8]>,
        new: u64,
        now: u64,
    ) -> Result<bool, BucketError> {
        let ttl = Duration::from_nanos(new.saturating_sub(now))
            .saturating_add(RETAIN)
            .min(warden_store::MAX_TTL);
        self.store
            .compare_and_swap(
                Namespace::RATE_LIMIT,
                stored,
                expected,
                Some(Bytes::from(new.to_string())),
                Some(ttl),
            )
            .await
            .map_err(BucketError::Store)
    }
}

impl Buckets for StoreBuckets {
    fn take<'a>(
        &'a self,
        key: &'a str,
        spec: &'a RateSpec,
    ) -> BoxFuture<'a, Result<Taken, BucketError>> {
        async move {
            let stored = store_key(key);
            // Usually one operation: swap against the value this gateway last saw. A refusal
            // or a lost swap (another replica moved the bucket, or it expired) falls through
            // to reading what the store holds.
            if let Some(hint) = self.hints.get(&stored) {
                let now = self.clock.now_ns();
                if let Ok(new) = gcra(Some(hint), now, spec) {
                    let expected = hint.to_string();
                    if self
                        .swap(&stored, Some(expected.as_bytes()), new, now)
                        .await?
                    {
                        self.hints.set(&stored, new, now);
                        return Ok(Taken::Allowed);
                    }
                }
            }
            for _ in 0..CAS_RETRIES {
                let current = self
                    .store
                    .get(Namespace::RATE_LIMIT, &stored)
                    .await
                    .map_err(BucketError::Store)?;
                let tat = match &current {
                    None => None,
                    Some(b) => {
                        Some(parse_tat(b).ok_or_else(|| BucketError::Malformed(key.to_owned()))?)
                    }
                };
                let now = self.clock.now_ns();
                if let Some(tat) = tat {
                    self.hints.set(&stored, tat, now);
                }
                let new = match gcra(tat, now, spec) {
                    Err(retry_after) => return Ok(Taken::Limited { retry_after }),
                    Ok(new) => new,
                };
                if self.swap(&stored, current.as_deref(), new, now).await? {
                    self.hints.set(&stored, new, now);
                    return Ok(Taken::Allowed);
                }
            }
            Err(BucketError::Contended(key.to_owned()))
        }
        .boxed()
    }
}

/// Concurrency slots per key.
#[derive(Debug)]
struct Slots {
    limit: usize,
    map: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Slots {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn try_acquire(&self, key: &str) -> Option<OwnedSemaphorePermit> {
        let semaphore = {
            let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
            if map.len() >= MAX_KEYS_PER_SHARD && !map.contains_key(key) {
                // Idle keys (every slot free, no one else holding the semaphore) go.
                let limit = self.limit;
                map.retain(|_, s| s.available_permits() < limit || Arc::strong_count(s) > 1);
            }
            map.entry(key.to_owned())
                .or_insert_with(|| Arc::new(Semaphore::new(self.limit)))
                .clone()
        };
        semaphore.try_acquire_owned().ok()
    }
}

/// The `rate_limit` guard.
pub struct RateLimitGuard {
    config: RateLimitConfig,
    buckets: Arc<dyn Buckets>,
    per_principal: Option<Slots>,
    per_upstream: Option<Slots>,
}

impl std::fmt::Debug for RateLimitGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitGuard")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl RateLimitGuard {
    /// Stable name in audit records and `check`.
    pub const NAME: &'static str = "rate_limit";
    /// Controls enforced.
    pub const CONTROLS: &'static [&'static str] = &["API-2", "RES-2", "AI-3"];

    /// A guard with `config`'s limits over `buckets`.
    pub fn new(config: RateLimitConfig, buckets: Arc<dyn Buckets>) -> Self {
        Self {
            per_principal: config
                .max_concurrent_per_principal
                .map(|n| Slots::new(n.get())),
            per_upstream: config
                .max_concurrent_per_upstream
                .map(|n| Slots::new(n.get())),
            config,
            buckets,
        }
    }

    /// True when the configuration limits anything.
    pub fn is_active(config: &RateLimitConfig) -> bool {
        config.per_principal.is_some()
            || config.per_tool.is_some()
            || config.global.is_some()
            || config.max_concurrent_per_principal.is_some()
            || config.max_concurrent_per_upstream.is_some()
    }

    fn limited(what: &str, retry_after: Duration, detail: String) -> Verdict {
        let ms = retry_after.as_millis().max(1);
        Verdict::Deny(Denial {
            guard: Self::NAME,
            code: ErrorCode::RateLimited,
            message: format!("{what}; retry after {ms} ms"),
            detail,
            controls: Self::CONTROLS,
            retry_after: Some(retry_after),
        })
    }

    async fn decide(&self, call: &Call<'_>) -> Result<Verdict, GuardError> {
        let message = call.message;
        if call.direction != Direction::ToUpstream || !message.is_request() {
            return Ok(Verdict::Continue);
        }
        let method = message.method().unwrap_or("");
        let p = call.principal;
        let who = format!("{:?}:{}", p.method, p.subject);
        let tool = match (method, call.target) {
            ("tools/call", Some(t)) => t.name.as_deref().map(|n| format!("{}/{n}", t.upstream)),
            _ => None,
        };
        let buckets = [
            (
                self.config.global.as_ref(),
                "g".to_owned(),
                "the gateway's request rate is exceeded",
            ),
            (
                self.config.per_principal.as_ref(),
                format!("p:{who}"),
                "request rate limit exceeded",
            ),
            (
                self.config.per_tool.as_ref().filter(|_| tool.is_some()),
                format!("t:{who}\u{1f}{}", tool.as_deref().unwrap_or("")),
                "call rate limit for this tool exceeded",
            ),
        ];
        for (spec, key, what) in buckets {
            let Some(spec) = spec else { continue };
            match self.buckets.take(&key, spec).await {
                Ok(Taken::Allowed) => {}
                Ok(Taken::Limited { retry_after }) => {
                    return Ok(Self::limited(
                        what,
                        retry_after,
                        format!("bucket {key} empty"),
                    ));
                }
                Err(e) => {
                    return Err(GuardError::Unavailable {
                        guard: Self::NAME,
                        source: Box::new(e),
                    });
                }
            }
        }
        if !CALLS.contains(&method) || (self.per_principal.is_none() && self.per_upstream.is_none())
        {
            return Ok(Verdict::Continue);
        }
        let Some(permits) = call.permits else {
            return Err(GuardError::Unavailable {
                guard: Self::NAME,
                source: "no permit holder for a call under a concurrency cap".into(),
            });
        };
        if let Some(slots) = &self.per_principal {
            match slots.try_acquire(&who) {
                Some(permit) => permits.hold(permit),
                None => {
                    return Ok(Self::limited(
                        "too many concurrent requests",
                        CONCURRENCY_RETRY,
                        format!("principal {who} has {} calls in flight", slots.limit),
                    ));
                }
            }
        }
        if let (Some(slots), Some(upstream)) = (&self.per_upstream, call.upstream) {
            match slots.try_acquire(upstream) {
                Some(permit) => permits.hold(permit),
                None => {
                    return Ok(Self::limited(
                        "the upstream is busy",
                        CONCURRENCY_RETRY,
                        format!("upstream {upstream} has {} calls in flight", slots.limit),
                    ));
                }
            }
        }
        Ok(Verdict::Continue)
    }
}

impl Guard for RateLimitGuard {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn controls(&self) -> &'static [&'static str] {
        Self::CONTROLS
    }

    fn check<'a>(&'a self, call: &'a Call<'a>) -> BoxFuture<'a, Result<Verdict, GuardError>> {
        self.decide(call).boxed()
    }

    fn check_now(&self, call: &Call<'_>) -> Option<Result<Verdict, GuardError>> {
        // `decide`'s first test: only requests toward the upstream are counted.
        let concerned = call.direction == Direction::ToUpstream && call.message.is_request();
        (!concerned).then_some(Ok(Verdict::Continue))
    }
}

#[cfg(test)]
mod tests;
