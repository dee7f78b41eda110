use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tempfile::TempDir;

use super::format::{self, HEADER_LEN, MAX_RECORD_LEN};
use super::{Clock, FileStore, LOG_FILE, Options, TMP_FILE};
use crate::tests::open_file;
use crate::{Limits, Namespace, Store, StoreError};

const NAMESPACES: [Namespace; 2] = [Namespace::PIN, Namespace::APPROVAL];

type State = BTreeMap<(Namespace, String), Bytes>;

fn clock() -> Arc<AtomicU64> {
    Arc::new(AtomicU64::new(1_700_000_000_000))
}

async fn open(dir: &Path, clock: &Arc<AtomicU64>) -> FileStore {
    open_file(dir, &Limits::default(), clock).await
}

async fn try_open(dir: &Path, clock: &Arc<AtomicU64>) -> Result<FileStore, StoreError> {
    let options = Options {
        clock: Clock::Manual(Arc::clone(clock)),
        ..Options::default()
    };
    FileStore::open_with(dir, Limits::default(), options).await
}

/// Everything live in the store.
async fn dump(store: &FileStore) -> State {
    let mut state = State::new();
    for ns in NAMESPACES {
        for key in store.list(ns, "", usize::MAX).await.unwrap() {
            let value = store.get(ns, &key).await.unwrap().unwrap();
            state.insert((ns, key), value);
        }
    }
    state
}

/// A store directory holding exactly `log` as its log.
fn dir_with_log(log: &[u8]) -> (TempDir, std::path::PathBuf) {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("store");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join(LOG_FILE), log).unwrap();
    (tmp, dir)
}

/// Runs a mix of every record kind, returning the state and log length after each write.
async fn write_history(store: &FileStore) -> Vec<(u64, State)> {
    let mut history = vec![(store.log_len(), State::new())];
    let ttl = Some(Duration::from_secs(3600));
    for i in 0..30u32 {
        let ns = NAMESPACES[(i % 2) as usize];
        let key = format!("tool/{}", i % 7);
        match i % 6 {
            0 | 1 => {
                let value = Bytes::from(format!("v{i}{}", "x".repeat((i % 4) as usize)));
                store.put(ns, &key, value, ttl).await.unwrap();
            }
            2 => {
                store.delete(ns, &key).await.unwrap();
            }
            3 => {
                store
                    .incr(ns, &format!("n{}", i % 3), 1, ttl)
                    .await
                    .unwrap();
            }
            4 => {
                store
                    .put(ns, &key, Bytes::from(vec![0xA5; 3]), None)
                    .await
                    .unwrap();
                history.push((store.log_len(), dump(store).await));
                store
                    .touch(ns, &key, Duration::from_secs(60))
                    .await
                    .unwrap();
            }
            _ => {
                let current = store.get(ns, &key).await.unwrap();
                store
                    .compare_and_swap(
                        ns,
                        &key,
                        current.as_deref(),
                        Some(Bytes::from("swapped")),
                        ttl,
                    )
                    .await
                    .unwrap();
            }
        }
        history.push((store.log_len(), dump(store).await));
    }
    history
}

#[tokio::test]
async fn state_and_expiry_survive_reopen() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("nested").join("store");
    let clock = clock();
    let store = open(&dir, &clock).await;
    let ns = Namespace::PIN;
    store
        .put(ns, "kept", Bytes::from("v1"), None)
        .await
        .unwrap();
    store
        .put(ns, "deleted", Bytes::from("v"), None)
        .await
        .unwrap();
    store.delete(ns, "deleted").await.unwrap();
    store
        .put(
            ns,
            "expiring",
            Bytes::from("v"),
            Some(Duration::from_secs(10)),
        )
        .await
        .unwrap();
    store.incr(ns, "count", 41, None).await.unwrap();
    store.incr(ns, "count", 1, None).await.unwrap();
    let before = dump(&store).await;
    drop(store);

    let store = open(&dir, &clock).await;
    assert_eq!(dump(&store).await, before);
    assert_eq!(
        store.get(ns, "count").await.unwrap(),
        Some(Bytes::from("42"))
    );
    // Expiry is wall-clock time: it keeps running while the store is closed.
    drop(store);
    clock.fetch_add(10_000, Ordering::SeqCst);
    let store = open(&dir, &clock).await;
    assert_eq!(store.get(ns, "expiring").await.unwrap(), None);
    assert_eq!(
        store.get(ns, "kept").await.unwrap(),
        Some(Bytes::from("v1"))
    );
}

#[tokio::test]
async fn second_open_of_a_directory_is_locked() {
    let tmp = TempDir::new().unwrap();
    let clock = clock();
    let store = open(tmp.path(), &clock).await;
    let err = try_open(tmp.path(), &clock).await.unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    assert!(err.to_string().ends_with("is in use by another process"));
    drop(store);
    open(tmp.path(), &clock).await;
}

/// Simulates a crash at every possible point: the log cut at any byte must reopen to exactly the
/// state after the last write whose record is complete, and stay writable.
#[tokio::test]
async fn truncation_at_every_offset_recovers_the_committed_prefix() {
    let tmp = TempDir::new().unwrap();
    let clock = clock();
    let store = open(tmp.path(), &clock).await;
    let history = write_history(&store).await;
    drop(store);
    let log = std::fs::read(tmp.path().join(LOG_FILE)).unwrap();
    assert_eq!(log.len() as u64, history.last().unwrap().0);

    for cut in HEADER_LEN..=log.len() {
        let (_tmp, dir) = dir_with_log(&log[..cut]);
        let store = open(&dir, &clock).await;
        let (committed_len, expected) = history
            .iter()
            .rev()
            .find(|(len, _)| *len <= cut as u64)
            .unwrap();
        assert_eq!(&dump(&store).await, expected, "cut at {cut}");
        // The torn tail is cut off, so new records follow valid ones.
        assert_eq!(store.log_len(), *committed_len, "cut at {cut}");
        let on_disk = std::fs::metadata(dir.join(LOG_FILE)).unwrap().len();
        assert_eq!(on_disk, *committed_len, "cut at {cut}");
        if cut % 17 == 0 || cut == log.len() - 1 {
            store
                .put(Namespace::PIN, "after", Bytes::from("crash"), None)
                .await
                .unwrap();
            let mut expected = expected.clone();
            expected.insert((Namespace::PIN, "after".into()), Bytes::from("crash"));
            drop(store);
            assert_eq!(
                dump(&open(&dir, &clock).await).await,
                expected,
                "cut at {cut}"
            );
        }
    }
}

#[tokio::test]
async fn torn_tails_of_any_shape_are_discarded() {
    let tmp = TempDir::new().unwrap();
    let clock = clock();
    let store = open(tmp.path(), &clock).await;
    let history = write_history(&store).await;
    drop(store);
    let log = std::fs::read(tmp.path().join(LOG_FILE)).unwrap();
    let (_, expected) = history.last().unwrap();

    // What the tail of a crashed write can look like: zero-filled blocks (power loss), marker
    // bytes, a record from an older log (stale blocks), and pseudo-random bytes.
    let mut stale = Vec::new();
    format::encode_put(&mut stale, 1234, "pin", "tool/0", b"stale", None);
    let mut noise = Vec::new();
    let mut x: u32 = 0x9E37_79B9;
    for _ in 0..5000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        noise.push(x.to_le_bytes()[0]);
    }
    let tails: Vec<Vec<u8>> = vec![vec![0; 4096], vec![0xA5; 300], stale, noise];
    for tail in tails {
        let mut damaged = log.clone();
        damaged.extend_from_slice(&tail);
        let (_tmp, dir) = dir_with_log(&damaged);
        let store = open(&dir, &clock).await;
        assert_eq!(&dump(&store).await, expected);
        assert_eq!(store.log_len(), log.len() as u64);
        drop(store);
        assert_eq!(std::fs::read(dir.join(LOG_FILE)).unwrap(), log);
    }
}

#[tokio::test]
async fn damage_before_valid_records_is_reported_not_dropped() {
    let tmp = TempDir::new().unwrap();
    let clock = clock();
    let store = open(tmp.path(), &clock).await;
    write_history(&store).await;
    drop(store);
    let log = std::fs::read(tmp.path().join(LOG_FILE)).unwrap();

    // A flipped bit in the first record (its payload, then its length), with valid records after.
    for offset in [HEADER_LEN + 20, HEADER_LEN + 2] {
        let mut damaged = log.clone();
        damaged[offset] ^= 0x10;
        let (_tmp, dir) = dir_with_log(&damaged);
        let err = try_open(&dir, &clock).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Corrupt { offset, .. } if offset == HEADER_LEN as u64),
            "{err:?}"
        );
        // A failed open leaves the file alone for recovery.
        assert_eq!(std::fs::read(dir.join(LOG_FILE)).unwrap(), damaged);
    }

    // More unreadable bytes than any torn write could leave.
    let mut damaged = log.clone();
    damaged.resize(log.len() + MAX_RECORD_LEN + 1, 0);
    let (_tmp, dir) = dir_with_log(&damaged);
    let err = try_open(&dir, &clock).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Corrupt { offset, .. } if offset == log.len() as u64),
        "{err:?}"
    );

    // A missing or foreign header.
    for header in [&b""[..], &b"WDSTORE"[..], &b"SQLite format 3\0"[..]] {
        let (_tmp, dir) = dir_with_log(header);
        let err = try_open(&dir, &clock).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Corrupt { offset: 0, .. }),
            "{err:?}"
        );
    }
}

#[tokio::test]
async fn leftover_temporary_log_from_a_crashed_compaction_is_ignored() {
    let tmp = TempDir::new().unwrap();
    let clock = clock();
    let store = open(tmp.path(), &clock).await;
    let history = write_history(&store).await;
    drop(store);
    std::fs::write(
        tmp.path().join(TMP_FILE),
        b"WDSTORE1 half-written compaction",
    )
    .unwrap();
    let store = open(tmp.path(), &clock).await;
    assert_eq!(&dump(&store).await, &history.last().unwrap().1);
    assert!(!tmp.path().join(TMP_FILE).exists());
}

#[tokio::test]
async fn compaction_bounds_the_log_and_keeps_live_state() {
    let tmp = TempDir::new().unwrap();
    let clock = clock();
    let options = Options {
        clock: Clock::Manual(Arc::clone(&clock)),
        compact_min_bytes: 4096,
    };
    let store = FileStore::open_with(tmp.path(), Limits::default(), options.clone())
        .await
        .unwrap();
    let ns = Namespace::PIN;
    store
        .put(
            ns,
            "short-lived",
            Bytes::from("x"),
            Some(Duration::from_secs(1)),
        )
        .await
        .unwrap();
    clock.fetch_add(1000, Ordering::SeqCst);
    let mut max_len = 0;
    for round in 0..500 {
        for key in 0..10 {
            let value = Bytes::from(format!("{round:0>100}"));
            store
                .put(ns, &format!("k{key}"), value, None)
                .await
                .unwrap();
            max_len = max_len.max(store.log_len());
        }
    }
    // Without compaction the log would be ~650 KB; live data is ~1.3 KB.
    assert!(max_len < 8192, "log grew to {max_len} bytes");
    let expected = dump(&store).await;
    assert_eq!(expected.len(), 10);
    drop(store);
    let log = std::fs::read(tmp.path().join(LOG_FILE)).unwrap();
    assert!(
        !log.windows(b"short-lived".len())
            .any(|w| w == b"short-lived"),
        "compaction keeps expired entries"
    );
    let store = FileStore::open_with(tmp.path(), Limits::default(), options)
        .await
        .unwrap();
    assert_eq!(dump(&store).await, expected);
}

#[tokio::test]
async fn records_only_validate_in_the_log_that_wrote_them() {
    let clock = clock();
    let (tmp_a, tmp_b) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let a = open(tmp_a.path(), &clock).await;
    let b = open(tmp_b.path(), &clock).await;
    a.put(Namespace::PIN, "from-a", Bytes::from("a"), None)
        .await
        .unwrap();
    b.put(Namespace::PIN, "from-b", Bytes::from("b"), None)
        .await
        .unwrap();
    drop((a, b));
    let log_a = std::fs::read(tmp_a.path().join(LOG_FILE)).unwrap();
    let mut log_b = std::fs::read(tmp_b.path().join(LOG_FILE)).unwrap();
    log_b.extend_from_slice(&log_a[HEADER_LEN..]);
    let (_tmp, dir) = dir_with_log(&log_b);
    let store = open(&dir, &clock).await;
    let keys = store.list(Namespace::PIN, "", 10).await.unwrap();
    assert_eq!(keys, vec!["from-b"]);
}

#[cfg(unix)]
#[tokio::test]
async fn store_files_are_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("store");
    let store = open(&dir, &clock()).await;
    store
        .put(Namespace::API_KEY, "k", Bytes::from("hash"), None)
        .await
        .unwrap();
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join(LOG_FILE)), 0o600);
    assert_eq!(mode(store.log_path()), 0o600);
}

#[tokio::test]
async fn debug_output_shows_counts_not_keys_or_values() {
    let tmp = TempDir::new().unwrap();
    let store = open(tmp.path(), &clock()).await;
    store
        .put(
            Namespace::API_KEY,
            "KEYSECRET",
            Bytes::from("VALUESECRET"),
            None,
        )
        .await
        .unwrap();
    let shown = format!("{store:?}");
    assert!(shown.contains("(\"api_key\", 1)"), "{shown}");
    assert!(!shown.contains("SECRET"), "{shown}");
}
