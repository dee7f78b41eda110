//! Size limits, and the argument checks every backend runs before touching state.

use std::collections::HashMap;
use std::time::Duration;

use crate::{Namespace, StoreError};

/// Default live entries per namespace. Bounds memory: at the default value limit a full namespace
/// could in theory hold 100 GiB, but real sessions and pins are a few KiB, so ~100k of them is a few
/// hundred MiB at worst, and far above what one gateway serves.
pub const DEFAULT_MAX_ENTRIES: usize = 100_000;

/// Default largest value. Sessions, pins and approvals are small JSON documents; 1 MiB leaves room
/// for a large tool definition without letting one entry dominate memory.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 1 << 20;

/// Hard cap on a value, whatever [`Limits`] says. It bounds a [`crate::FileStore`] record, which
/// bounds how much trailing data can be a torn write rather than corruption.
pub const MAX_VALUE_BYTES: usize = 4 << 20;

/// Longest key. Keys are ids and hashes, not data; Redis keys this long are already a smell.
pub const MAX_KEY_BYTES: usize = 1024;

/// Longest TTL (10 years). Bounds expiry arithmetic; state that should outlive this should have
/// no TTL at all.
pub const MAX_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);

/// Per-store limits on entries and value sizes.
#[derive(Clone, Debug)]
pub struct Limits {
    max_entries: usize,
    max_value_bytes: usize,
    per_namespace: HashMap<Namespace, usize>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_entries: DEFAULT_MAX_ENTRIES,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            per_namespace: HashMap::new(),
        }
    }
}

impl Limits {
    /// Sets the entry limit for every namespace without its own.
    #[must_use]
    pub fn with_max_entries(mut self, max: usize) -> Self {
        self.max_entries = max;
        self
    }

    /// Sets the entry limit for one namespace.
    #[must_use]
    pub fn with_namespace_max_entries(mut self, namespace: Namespace, max: usize) -> Self {
        self.per_namespace.insert(namespace, max);
        self
    }

    /// Sets the largest value, clamped to [`MAX_VALUE_BYTES`].
    #[must_use]
    pub fn with_max_value_bytes(mut self, max: usize) -> Self {
        self.max_value_bytes = max.min(MAX_VALUE_BYTES);
        self
    }

    /// The most live entries `namespace` may hold.
    #[must_use]
    pub fn max_entries(&self, namespace: Namespace) -> usize {
        self.per_namespace
            .get(&namespace)
            .copied()
            .unwrap_or(self.max_entries)
    }

    /// The largest value any namespace accepts.
    #[must_use]
    pub fn max_value_bytes(&self) -> usize {
        self.max_value_bytes
    }

    /// Rejects a key of the wrong length.
    pub(crate) fn check_key(namespace: Namespace, key: &str) -> Result<(), StoreError> {
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(StoreError::InvalidKey {
                namespace,
                len: key.len(),
                max: MAX_KEY_BYTES,
            });
        }
        Ok(())
    }

    /// Rejects a bad key or an oversized value.
    pub(crate) fn check_write(
        &self,
        namespace: Namespace,
        key: &str,
        value: &[u8],
    ) -> Result<(), StoreError> {
        Self::check_key(namespace, key)?;
        if value.len() > self.max_value_bytes {
            return Err(StoreError::ValueTooLarge {
                namespace,
                len: value.len(),
                max: self.max_value_bytes,
            });
        }
        Ok(())
    }
}

/// Validates a TTL and rounds it up to whole milliseconds, the unit Redis and the file store keep.
pub(crate) fn ttl_millis(ttl: Duration) -> Result<u64, StoreError> {
    if ttl.is_zero() || ttl > MAX_TTL {
        return Err(StoreError::InvalidTtl { ttl, max: MAX_TTL });
    }
    let millis = ttl.as_nanos().div_ceil(1_000_000);
    // MAX_TTL is about 3.2e11 ms, far inside u64.
    Ok(u64::try_from(millis).unwrap_or(u64::MAX))
}

/// [`ttl_millis`] for an optional TTL.
pub(crate) fn opt_ttl_millis(ttl: Option<Duration>) -> Result<Option<u64>, StoreError> {
    ttl.map(ttl_millis).transpose()
}
