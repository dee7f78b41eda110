//! The one storage interface for mcp-warden gateway state.
//!
//! Sessions, rate-limit buckets, tool-definition pins, human approvals and API keys are all read and
//! written through [`Store`], an object-safe async trait over namespaced string keys and opaque byte
//! values. Callers hold a [`DynStore`] and never name a backend, so a Redis backend can be added
//! without touching them: every method documents the Redis primitive that implements it.
//!
//! Where it sits: below `warden-session`, `warden-guard` and the `pins`/`approvals` commands; above
//! memory and the data directory. Two backends ship here:
//!
//! - [`MemoryStore`]: sharded in-process maps, for ephemeral state (sessions, rate-limit buckets).
//!   Expiry follows [`tokio::time::Instant`], so tests can pause time.
//! - [`FileStore`]: a checksummed append-only log under the data directory, for state that must
//!   survive a restart (pins, approvals, API keys). A write returns only after it is on disk, and a
//!   crash at any point never loses or corrupts a write that returned.
//!
//! What this crate must never do:
//! - put a key or a value into an error message or a log line (session ids and API keys are keys,
//!   and values may be secrets);
//! - report a [`FileStore`] write as done before it is durable, or silently drop committed records
//!   it cannot read (that is [`StoreError::Corrupt`]; only a torn final record is discarded);
//! - grow without bound: entries per namespace, key length and value length are capped ([`Limits`]);
//! - interpret values, except the decimal counters written by [`Store::incr`].
//!
//! ```
//! use std::time::Duration;
//! use bytes::Bytes;
//! use warden_store::{DynStore, MemoryStore, Namespace};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let store: DynStore = std::sync::Arc::new(MemoryStore::default());
//! store.put(Namespace::SESSION, "s-1", Bytes::from_static(b"{}"), Some(Duration::from_secs(60))).await?;
//! assert_eq!(store.get(Namespace::SESSION, "s-1").await?, Some(Bytes::from_static(b"{}")));
//! assert_eq!(store.incr(Namespace::RATE_LIMIT, "alice", 1, Some(Duration::from_secs(1))).await?, 1);
//! # Ok::<(), warden_store::StoreError>(())
//! # }).unwrap();
//! ```
#![forbid(unsafe_code)]

mod error;
mod file;
mod limits;
mod memory;
mod namespace;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

pub use error::StoreError;
pub use file::FileStore;
pub use limits::{
    DEFAULT_MAX_ENTRIES, DEFAULT_MAX_VALUE_BYTES, Limits, MAX_KEY_BYTES, MAX_TTL, MAX_VALUE_BYTES,
};
pub use memory::MemoryStore;
pub use namespace::Namespace;

/// The future every [`Store`] method returns: boxed so that `dyn Store` is object-safe.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A shared handle to whichever backend the gateway was configured with.
pub type DynStore = Arc<dyn Store>;

/// Namespaced key-value storage with expiry, compare-and-swap and counters.
///
/// Semantics shared by every backend (the conformance tests in this crate check them):
///
/// - Keys are 1 to [`MAX_KEY_BYTES`] bytes of UTF-8; values are opaque bytes of at most
///   [`Limits::max_value_bytes`]. The same key in two namespaces names two entries.
/// - A TTL is rounded up to whole milliseconds and must lie in 1 ms ..= [`MAX_TTL`]. An entry whose
///   expiry has passed is absent to every operation, whether or not its memory has been reclaimed.
///   A write that takes a `ttl` replaces the entry's expiry: `None` means it never expires.
/// - Every single-key operation is atomic and linearizable. [`Store::list`] is not a snapshot:
///   entries written concurrently may or may not appear.
/// - Writing a key that does not yet exist fails with [`StoreError::Full`] when its namespace
///   already holds [`Limits::max_entries`] live entries. Overwrites and deletes never fail for that.
/// - A write whose future is dropped before completion may or may not have happened, as with a
///   network store.
pub trait Store: Send + Sync {
    /// Returns the value of `key`, or `None` if it is absent or expired.
    ///
    /// Redis: `GET`.
    fn get<'a>(&'a self, namespace: Namespace, key: &'a str) -> StoreFuture<'a, Option<Bytes>>;

    /// Sets `key` to `value`, replacing any value and expiry; it expires after `ttl` if given.
    ///
    /// Redis: `SET key value [PX ttl]`.
    fn put<'a>(
        &'a self,
        namespace: Namespace,
        key: &'a str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> StoreFuture<'a, ()>;

    /// Sets `key` to `value` only if it is absent (or expired). Returns whether it was set.
    ///
    /// Redis: `SET key value NX [PX ttl]`.
    fn put_if_absent<'a>(
        &'a self,
        namespace: Namespace,
        key: &'a str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> StoreFuture<'a, bool>;

    /// Atomically replaces the value of `key` with `new` if its current value equals `expected`.
    ///
    /// `expected: None` means "absent"; `new: None` means "delete". On success the entry's expiry
    /// becomes `ttl` (ignored when deleting). Returns whether the swap happened; on `false` nothing
    /// changed. This is the building block for read-modify-write: `get`, compute, `compare_and_swap`,
    /// retry on `false`.
    ///
    /// Redis: a Lua script (`EVALSHA`) that compares `GET` with `expected`, then `SET [PX]` or `DEL`;
    /// or `WATCH`/`GET`/`MULTI`/`SET`/`EXEC`.
    fn compare_and_swap<'a>(
        &'a self,
        namespace: Namespace,
        key: &'a str,
        expected: Option<&'a [u8]>,
        new: Option<Bytes>,
        ttl: Option<Duration>,
    ) -> StoreFuture<'a, bool>;

    /// Removes `key`. Returns whether a live entry was removed.
    ///
    /// Redis: `DEL` (a reply of 1 means it existed).
    fn delete<'a>(&'a self, namespace: Namespace, key: &'a str) -> StoreFuture<'a, bool>;

    /// Returns up to `limit` live keys of `namespace` that start with `prefix`, in ascending byte
    /// order. Exactly `limit` keys in the reply means there may be more.
    ///
    /// Redis: `SCAN 0 MATCH <ns>:<escaped prefix>* COUNT n` until the cursor returns to 0, then
    /// sort and truncate client-side (cost grows with the namespace, like this backend's).
    fn list<'a>(
        &'a self,
        namespace: Namespace,
        prefix: &'a str,
        limit: usize,
    ) -> StoreFuture<'a, Vec<String>>;

    /// Sets the expiry of an existing `key` to `ttl` from now. Returns whether the key existed.
    ///
    /// Redis: `PEXPIRE key ttl` (a reply of 1 means it existed).
    fn touch<'a>(
        &'a self,
        namespace: Namespace,
        key: &'a str,
        ttl: Duration,
    ) -> StoreFuture<'a, bool>;

    /// Atomically adds `delta` to the counter at `key` and returns the new value.
    ///
    /// An absent key counts as 0. Counters are stored as ASCII decimal `i64` (so [`Store::get`]
    /// returns e.g. `b"42"`); any other value fails with [`StoreError::NotACounter`], and a result
    /// outside `i64` fails with [`StoreError::Overflow`], leaving the value unchanged. If `ttl` is
    /// given and the entry has no expiry after the add (it was just created, or was written without
    /// one), its expiry is set to `ttl` from now; an existing expiry is kept, which makes fixed
    /// rate-limit windows.
    ///
    /// Redis: `INCRBY key delta` then `PEXPIRE key ttl NX`, in one `MULTI`/`EXEC` or Lua script.
    fn incr<'a>(
        &'a self,
        namespace: Namespace,
        key: &'a str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> StoreFuture<'a, i64>;
}

/// Parses a counter written by [`Store::incr`]: optional `-`, then ASCII digits, as Redis does.
fn parse_counter(value: &[u8]) -> Option<i64> {
    if value.first() == Some(&b'+') {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// Encodes a counter the way Redis stores the result of `INCRBY`.
fn encode_counter(value: i64) -> Bytes {
    Bytes::from(value.to_string())
}

#[cfg(test)]
mod tests;
