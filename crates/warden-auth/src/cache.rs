//! Validated bearer tokens, by SHA-256 of the token, until they expire.
//!
//! A signature check costs tens of microseconds; a lookup costs one SHA-256 of the token. Entries
//! live until the token's `exp` (plus leeway) for JWTs, and `min(exp, cache_ttl)` for
//! introspected tokens, and the cache is bounded: when full, expired entries go first, then
//! everything (a cold cache is slower, never wrong). Tokens themselves are not kept.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use ring::digest;
use warden_guard::Principal;

/// Most tokens cached at once: bounds memory (~200 bytes per entry).
pub(crate) const MAX_CACHED_TOKENS: usize = 16_384;

/// SHA-256 of a token.
pub(crate) type Digest = [u8; 32];

pub(crate) fn digest(token: &str) -> Digest {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, token.as_bytes()).as_ref());
    out
}

#[derive(Debug)]
struct Entry {
    principal: Principal,
    /// Last Unix second the token is accepted.
    until: u64,
    /// First Unix second the token is accepted.
    from: Option<u64>,
}

#[derive(Debug)]
pub(crate) struct TokenCache {
    max: usize,
    entries: RwLock<HashMap<Digest, Entry>>,
}

impl TokenCache {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max,
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// The principal of a cached token still valid at `now`.
    pub(crate) fn get(&self, digest: &Digest, now: u64) -> Option<Principal> {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        let entry = entries.get(digest)?;
        let valid = now <= entry.until && entry.from.is_none_or(|from| now >= from);
        valid.then(|| entry.principal.clone())
    }

    pub(crate) fn insert(
        &self,
        digest: Digest,
        principal: Principal,
        until: u64,
        from: Option<u64>,
        now: u64,
    ) {
        if until < now {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= self.max && !entries.contains_key(&digest) {
            entries.retain(|_, entry| entry.until >= now);
            if entries.len() >= self.max {
                entries.clear();
            }
        }
        entries.insert(
            digest,
            Entry {
                principal,
                until,
                from,
            },
        );
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_valid_only_in_their_window() {
        let cache = TokenCache::new(4);
        let d = digest("t");
        cache.insert(d, Principal::anonymous(), 100, Some(50), 10);
        assert!(cache.get(&d, 49).is_none());
        assert!(cache.get(&d, 50).is_some());
        assert!(cache.get(&d, 100).is_some());
        assert!(cache.get(&d, 101).is_none());
        assert!(cache.get(&digest("other"), 60).is_none());
    }

    #[test]
    fn stays_bounded() {
        let cache = TokenCache::new(3);
        for i in 0..10 {
            cache.insert(digest(&i.to_string()), Principal::anonymous(), 100, None, 0);
            assert!(cache.len() <= 3);
        }
        // An expired entry is evicted before live ones.
        let cache = TokenCache::new(2);
        cache.insert(digest("old"), Principal::anonymous(), 5, None, 0);
        cache.insert(digest("live"), Principal::anonymous(), 100, None, 0);
        cache.insert(digest("new"), Principal::anonymous(), 100, None, 10);
        assert!(cache.get(&digest("live"), 10).is_some());
        assert!(cache.get(&digest("new"), 10).is_some());
    }
}
