//! Hash maps keyed by names the gateway's configuration or its upstreams chose, hashed with
//! `foldhash` instead of SipHash.
//!
//! std's `HashMap` hashes with SipHash-1-3: about 250 instructions to look up a short key,
//! and the gateway looked up a dozen such keys per call (an upstream's modes, a tool's pinned
//! definition, its schema, the pending request an upstream answers). `foldhash` is several
//! times cheaper and still seeded at random per process, so the hashes of a given key differ
//! between processes; it is not as strong as SipHash against someone who can insert
//! arbitrarily many chosen keys. Use these maps where the keys inserted come from the
//! configuration, from an upstream's (bounded) lists, or from the gateway itself (its own
//! request ids, its session ids); keep std's `HashMap` where a client decides what is inserted.

/// A `HashMap` with [`foldhash`]'s randomly seeded fast hasher.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A `HashSet` with [`foldhash`]'s randomly seeded fast hasher.
pub type FastSet<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;
