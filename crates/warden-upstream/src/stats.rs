//! Per-connection message counters (every message from an upstream is counted).

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a connection's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Valid JSON-RPC messages received from the upstream.
    pub received: u64,
    /// Lines, bodies or events from the upstream that were not valid JSON-RPC (garbage,
    /// over-long, duplicate keys, too deep, batches) and were dropped.
    pub invalid: u64,
    /// Responses whose id matched no request in flight (dropped).
    pub unknown_responses: u64,
    /// Valid messages dropped because their consumer was gone or too slow.
    pub dropped: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    received: AtomicU64,
    invalid: AtomicU64,
    unknown_responses: AtomicU64,
    dropped: AtomicU64,
}

impl Counters {
    pub(crate) fn received(&self) {
        self.received.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn invalid(&self) {
        self.invalid.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn unknown_response(&self) {
        self.unknown_responses.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Stats {
        Stats {
            received: self.received.load(Ordering::Relaxed),
            invalid: self.invalid.load(Ordering::Relaxed),
            unknown_responses: self.unknown_responses.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}
