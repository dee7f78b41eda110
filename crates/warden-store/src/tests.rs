//! Tests every backend must pass: a conformance suite and a model-based property test.

mod conformance;
mod model;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tempfile::TempDir;

use crate::file::{Clock, Options};
use crate::{DynStore, FileStore, Limits, MemoryStore};

/// Wall-clock start of the manual clock file stores use in tests (an arbitrary 2023 date).
const FILE_CLOCK_START_MS: u64 = 1_700_000_000_000;

/// Which backend a test runs against.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Backend {
    Memory,
    File,
}

/// A store under test, plus what it takes to move its clock and reopen it.
pub(crate) struct Harness {
    pub(crate) store: DynStore,
    limits: Limits,
    /// File stores read this manual clock; memory stores follow (paused) tokio time.
    file_clock: Option<Arc<AtomicU64>>,
    dir: Option<TempDir>,
}

impl Backend {
    pub(crate) async fn open(self, limits: Limits) -> Harness {
        match self {
            Self::Memory => Harness {
                store: Arc::new(MemoryStore::new(limits.clone())),
                limits,
                file_clock: None,
                dir: None,
            },
            Self::File => {
                let dir = TempDir::new().unwrap();
                let clock = Arc::new(AtomicU64::new(FILE_CLOCK_START_MS));
                let store = open_file(&dir.path().join("store"), &limits, &clock).await;
                Harness {
                    store: Arc::new(store),
                    limits,
                    file_clock: Some(clock),
                    dir: Some(dir),
                }
            }
        }
    }
}

pub(crate) async fn open_file(
    dir: &std::path::Path,
    limits: &Limits,
    clock: &Arc<AtomicU64>,
) -> FileStore {
    let options = Options {
        clock: Clock::Manual(Arc::clone(clock)),
        ..Options::default()
    };
    FileStore::open_with(dir, limits.clone(), options)
        .await
        .unwrap()
}

impl Harness {
    /// Moves the store's clock forward. Memory stores need a paused tokio clock.
    pub(crate) async fn advance(&self, by: Duration) {
        match &self.file_clock {
            Some(clock) => {
                let ms = u64::try_from(by.as_millis()).unwrap();
                clock.fetch_add(ms, Ordering::SeqCst);
            }
            None => tokio::time::advance(by).await,
        }
    }

    /// Closes and reopens a file store (a memory store has nothing to reopen).
    pub(crate) async fn reopen(&mut self) {
        let (Some(dir), Some(clock)) = (&self.dir, &self.file_clock) else {
            return;
        };
        let path: PathBuf = dir.path().join("store");
        // Drop the old store first: it holds the directory lock.
        self.store = Arc::new(MemoryStore::default());
        self.store = Arc::new(open_file(&path, &self.limits, clock).await);
    }
}
