//! The behavior every [`Store`] backend must have, run against each backend by `conformance!`.

use std::time::Duration;

use bytes::Bytes;
use tokio::task::JoinSet;

use super::Backend;
use crate::{Limits, MAX_KEY_BYTES, MAX_TTL, Namespace, Store, StoreError};

const NS: Namespace = Namespace::SESSION;
const OTHER: Namespace = Namespace::PIN;

fn b(value: &'static str) -> Bytes {
    Bytes::from_static(value.as_bytes())
}

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

async fn get(store: &dyn Store, key: &str) -> Option<Bytes> {
    store.get(NS, key).await.unwrap()
}

/// Generates one test per suite function and backend.
macro_rules! conformance {
    (paused: [$($paused:ident),* $(,)?], threaded: [$($threaded:ident),* $(,)?] $(,)?) => {
        mod memory {
            $(
                #[tokio::test(start_paused = true)]
                async fn $paused() {
                    super::$paused(super::Backend::Memory).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $threaded() {
                    super::$threaded(super::Backend::Memory).await;
                }
            )*
        }
        mod file {
            $(
                #[tokio::test(start_paused = true)]
                async fn $paused() {
                    super::$paused(super::Backend::File).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $threaded() {
                    super::$threaded(super::Backend::File).await;
                }
            )*
        }
    };
}

conformance! {
    paused: [
        get_put_delete_round_trip,
        namespaces_are_isolated,
        put_if_absent_only_writes_absent_keys,
        compare_and_swap_follows_expected,
        ttl_hides_expired_entries_from_every_operation,
        put_replaces_expiry,
        touch_extends_existing_keys_only,
        incr_counts_and_sets_expiry_only_once,
        incr_rejects_non_counters_and_overflow,
        list_filters_by_prefix_sorts_and_limits,
        rejects_bad_keys_values_and_ttls,
        errors_never_contain_keys_or_values,
        full_namespace_rejects_only_new_keys,
        full_namespace_reclaims_expired_entries,
    ],
    threaded: [
        concurrent_cas_increments_are_exact,
        concurrent_put_if_absent_has_one_winner,
        concurrent_incr_is_exact,
    ],
}

async fn get_put_delete_round_trip(backend: Backend) {
    let h = backend.open(Limits::default()).await;
    let store = &*h.store;
    assert_eq!(get(store, "k").await, None);
    store.put(NS, "k", b("v1"), None).await.unwrap();
    assert_eq!(get(store, "k").await, Some(b("v1")));
    store.put(NS, "k", b("v2"), None).await.unwrap();
    assert_eq!(get(store, "k").await, Some(b("v2")));
    store.put(NS, "empty", Bytes::new(), None).await.unwrap();
    assert_eq!(get(store, "empty").await, Some(Bytes::new()));
    assert!(store.delete(NS, "k").await.unwrap());
    assert!(!store.delete(NS, "k").await.unwrap());
    assert_eq!(get(store, "k").await, None);
    assert!(!store.delete(OTHER, "never-written").await.unwrap());
}

async fn namespaces_are_isolated(backend: Backend) {
    let h = backend.open(Limits::default()).await;
    let store = &*h.store;
    store.put(NS, "k", b("session"), None).await.unwrap();
    store.put(OTHER, "k", b("pin"), None).await.unwrap();
    assert_eq!(store.get(NS, "k").await.unwrap(), Some(b("session")));
    assert_eq!(store.get(OTHER, "k").await.unwrap(), Some(b("pin")));
    assert!(store.delete(NS, "k").await.unwrap());
    assert_eq!(store.get(OTHER, "k").await.unwrap(), Some(b("pin")));
    assert_eq!(store.list(OTHER, "", 10).await.unwrap(), vec!["k"]);
    assert!(store.list(NS, "", 10).await.unwrap().is_empty());
}

async fn put_if_absent_only_writes_absent_keys(backend: Backend) {
    let h = backend.open(Limits::default()).await;
    let store = &*h.store;
    assert!(
        store
            .put_if_absent(NS, "k", b("first"), None)
            .await
            .unwrap()
    );
    assert!(
        !store
            .put_if_absent(NS, "k", b("second"), None)
            .await
            .unwrap()
    );
    assert_eq!(get(store, "k").await, Some(b("first")));
    // An expired entry counts as absent.
    assert!(
        store
            .put_if_absent(NS, "t", b("old"), Some(ms(10)))
            .await
            .unwrap()
    );
    h.advance(ms(10)).await;
    assert!(store.put_if_absent(NS, "t", b("new"), None).await.unwrap());
    assert_eq!(get(store, "t").await, Some(b("new")));
}

async fn compare_and_swap_follows_expected(backend: Backend) {
    let h = backend.open(Limits::default()).await;
    let store = &*h.store;
    // Absent -> absent is a successful no-op.
    assert!(
        store
            .compare_and_swap(NS, "k", None, None, None)
            .await
            .unwrap()
    );
    assert_eq!(get(store, "k").await, None);
    // Create only if absent.
    assert!(
        store
            .compare_and_swap(NS, "k", None, Some(b("a")), None)
            .await
            .unwrap()
    );
    assert!(
        !store
            .compare_and_swap(NS, "k", None, Some(b("x")), None)
            .await
            .unwrap()
    );
    // Replace only on a match.
    assert!(
        !store
            .compare_and_swap(NS, "k", Some(b"b"), Some(b("x")), None)
            .await
            .unwrap()
    );
    assert_eq!(get(store, "k").await, Some(b("a")));
    assert!(
        store
            .compare_and_swap(NS, "k", Some(b"a"), Some(b("b")), None)
            .await
            .unwrap()
    );
    assert_eq!(get(store, "k").await, Some(b("b")));
    // Expecting absence of a present key fails, even with `new: None`.
    assert!(
        !store
            .compare_and_swap(NS, "k", None, None, None)
            .await
            .unwrap()
    );
    // Delete on a match.
    assert!(
        !store
            .compare_and_swap(NS, "k", Some(b"a"), None, None)
            .await
            .unwrap()
    );
    assert!(
        store
            .compare_and_swap(NS, "k", Some(b"b"), None, None)
            .await
            .unwrap()
    );
    assert_eq!(get(store, "k").await, None);
    // An empty value is not absence.
    store.put(NS, "e", Bytes::new(), None).await.unwrap();
    assert!(
        !store
            .compare_and_swap(NS, "e", None, Some(b("x")), None)
            .await
            .unwrap()
    );
    assert!(
        store
            .compare_and_swap(NS, "e", Some(b""), Some(b("x")), None)
            .await
            .unwrap()
    );
    // A swap sets the expiry it is given.
    assert!(
        store
            .compare_and_swap(NS, "e", Some(b"x"), Some(b("y")), Some(ms(5)))
            .await
            .unwrap()
    );
    h.advance(ms(5)).await;
    assert_eq!(get(store, "e").await, None);
    assert!(
        store
            .compare_and_swap(NS, "e", None, Some(b("z")), None)
            .await
            .unwrap()
    );
}

async fn ttl_hides_expired_entries_from_every_operation(backend: Backend) {
    let h = backend.open(Limits::default()).await;
    let store = &*h.store;
    store
        .put(NS, "a", b("1"), Some(Duration::from_secs(10)))
        .await
        .unwrap();
    store
        .put(NS, "b", b("2"), Some(Duration::from_secs(10)))
        .await
        .unwrap();
    store
        .put(NS, "c", b("3"), Some(Duration::from_secs(10)))
        .await
        .unwrap();
    store.put(NS, "keep", b("4"), None).await.unwrap();
    h.advance(Duration::from_secs(10) - ms(1)).await;
    assert_eq!(get(store, "a").await, Some(b("1")));
    assert_eq!(
        store.list(NS, "", 10).await.unwrap(),
        vec!["a", "b", "c", "keep"]
    );
    h.advance(ms(1)).await;
    assert_eq!(get(store, "a").await, None);
    assert_eq!(store.list(NS, "", 10).await.unwrap(), vec!["keep"]);
    assert!(!store.delete(NS, "b").await.unwrap());
    assert!(!store.touch(NS, "c", Duration::from_secs(10)).await.unwrap());
    assert!(
        !store
            .compare_and_swap(NS, "c", Some(b"3"), None, None)
            .await
            .unwrap()
    );
    assert!(
        store
            .compare_and_swap(NS, "c", None, Some(b("new")), None)
            .await
            .unwrap()
    );
    assert_eq!(store.incr(NS, "b", 1, None).await.unwrap(), 1);
    assert_eq!(get(store, "keep").await, Some(b("4")));
}

async fn put_replaces_expiry(backend: Backend) {
    let h = backend.open(Limits::default()).await;
    let store = &*h.store;
    store.put(NS, "k", b("1"), Some(ms(10))).await.unwrap();
    store.put(NS, "k", b("2"), None).await.unwrap();
    h.advance(ms(20)).await;
    assert_eq!(get(store, "k").await, Some(b("2")));
    store.put(NS, "k", b("3"), Some(ms(10))).await.unwrap();
    h.advance(ms(10)).await;
    assert_eq!(get(store, "k").await, None);
    // Sub-millisecond TTLs round up rather than expire at once.
    store
        .put(NS, "k", b("4"), Some(Duration::from_micros(1)))
        .await
        .unwrap();
    assert_eq!(get(store, "k").await, Some(b("4")));
    h.advance(ms(1)).await;
    assert_eq!(get(store, "k").await, None);
}

async fn touch_extends_existing_keys_only(backend: Backend) {
    let h = backend.open(Limits::default()).await;
    let store = &*h.store;
    assert!(!store.touch(NS, "missing", ms(10)).await.unwrap());
    assert_eq!(get(store, "missing").await, None);
    store.put(NS, "k", b("v"), Some(ms(10))).await.unwrap();
    h.advance(ms(8)).await;
    assert!(store.touch(NS, "k", ms(10)).await.unwrap());
    h.advance(ms(8)).await;
    assert_eq!(get(store, "k").await, Some(b("v")));
    h.advance(ms(2)).await;
    assert_eq!(get(store, "k").await, None);
    // Touch gives an expiry to a key that had none.
    store.put(NS, "p", b("v"), None).await.unwrap();
    assert!(store.touch(NS, "p", ms(5)).await.unwrap());
    h.advance(ms(5)).await;
    assert_eq!(get(store, "p").await, None);
}

async fn incr_counts_and_sets_expiry_only_once(backend: Backend) {
    let h = backend.open(Limits::default()).await;
    let store = &*h.store;
    let window = Some(ms(100));
    assert_eq!(store.incr(NS, "c", 1, window).await.unwrap(), 1);
    h.advance(ms(60)).await;
    // The window does not slide on later increments.
    assert_eq!(store.incr(NS, "c", 5, window).await.unwrap(), 6);
    assert_eq!(store.incr(NS, "c", -10, window).await.unwrap(), -4);
    assert_eq!(get(store, "c").await, Some(b("-4")));
    h.advance(ms(40)).await;
    assert_eq!(get(store, "c").await, None);
    assert_eq!(store.incr(NS, "c", 2, window).await.unwrap(), 2);
    // A counter written without expiry gets one from the next incr with a ttl.
    store.put(NS, "d", b("7"), None).await.unwrap();
    assert_eq!(store.incr(NS, "d", 1, None).await.unwrap(), 8);
    h.advance(ms(1000)).await;
    assert_eq!(store.incr(NS, "d", 1, Some(ms(10))).await.unwrap(), 9);
    h.advance(ms(10)).await;
    assert_eq!(get(store, "d").await, None);
}

async fn incr_rejects_non_counters_and_overflow(backend: Backend) {
    let h = backend.open(Limits::default()).await;
    let store = &*h.store;
    for bad in ["", "x", "1.5", " 1", "+1", "99999999999999999999"] {
        store.put(NS, "bad", Bytes::from(bad), None).await.unwrap();
        let err = store.incr(NS, "bad", 1, None).await.unwrap_err();
        assert!(
            matches!(err, StoreError::NotACounter { .. }),
            "{bad:?}: {err:?}"
        );
        assert_eq!(get(store, "bad").await, Some(Bytes::from(bad)));
    }
    assert_eq!(
        store.incr(NS, "max", i64::MAX, None).await.unwrap(),
        i64::MAX
    );
    let err = store.incr(NS, "max", 1, None).await.unwrap_err();
    assert!(matches!(err, StoreError::Overflow { .. }), "{err:?}");
    assert_eq!(
        get(store, "max").await,
        Some(Bytes::from(i64::MAX.to_string()))
    );
    assert_eq!(
        store.incr(NS, "min", i64::MIN, None).await.unwrap(),
        i64::MIN
    );
    let err = store.incr(NS, "min", -1, None).await.unwrap_err();
    assert!(matches!(err, StoreError::Overflow { .. }), "{err:?}");
}

async fn list_filters_by_prefix_sorts_and_limits(backend: Backend) {
    let h = backend.open(Limits::default()).await;
    let store = &*h.store;
    for key in ["tool/b", "tool/a", "tool/c", "toolbox", "other", "tool/é"] {
        store.put(NS, key, b("v"), None).await.unwrap();
    }
    assert_eq!(
        store.list(NS, "tool/", 10).await.unwrap(),
        vec!["tool/a", "tool/b", "tool/c", "tool/é"]
    );
    assert_eq!(
        store.list(NS, "tool/", 2).await.unwrap(),
        vec!["tool/a", "tool/b"]
    );
    assert_eq!(
        store.list(NS, "", 100).await.unwrap(),
        vec!["other", "tool/a", "tool/b", "tool/c", "tool/é", "toolbox"]
    );
    assert!(store.list(NS, "tool/", 0).await.unwrap().is_empty());
    assert!(store.list(NS, "zzz", 10).await.unwrap().is_empty());
    // Enough keys to span every shard of the memory store.
    for i in 0..200 {
        store
            .put(OTHER, &format!("k{i:03}"), b("v"), None)
            .await
            .unwrap();
    }
    let expected: Vec<String> = (0..25).map(|i| format!("k{i:03}")).collect();
    assert_eq!(store.list(OTHER, "k", 25).await.unwrap(), expected);
}

async fn rejects_bad_keys_values_and_ttls(backend: Backend) {
    let h = backend
        .open(Limits::default().with_max_value_bytes(8))
        .await;
    let store = &*h.store;
    let long = "k".repeat(MAX_KEY_BYTES + 1);
    let ok = "k".repeat(MAX_KEY_BYTES);
    for key in ["", long.as_str()] {
        let invalid = |r: Result<_, StoreError>| matches!(r, Err(StoreError::InvalidKey { .. }));
        assert!(invalid(store.get(NS, key).await.map(|_| ())));
        assert!(invalid(store.put(NS, key, b("v"), None).await));
        assert!(invalid(
            store.put_if_absent(NS, key, b("v"), None).await.map(|_| ())
        ));
        assert!(invalid(
            store
                .compare_and_swap(NS, key, None, None, None)
                .await
                .map(|_| ())
        ));
        assert!(invalid(store.delete(NS, key).await.map(|_| ())));
        assert!(invalid(store.touch(NS, key, ms(1)).await.map(|_| ())));
        assert!(invalid(store.incr(NS, key, 1, None).await.map(|_| ())));
    }
    store.put(NS, &ok, b("12345678"), None).await.unwrap();
    let err = store.put(NS, "k", b("123456789"), None).await.unwrap_err();
    assert!(
        matches!(err, StoreError::ValueTooLarge { len: 9, max: 8, .. }),
        "{err:?}"
    );
    let err = store
        .compare_and_swap(NS, "k", None, Some(b("123456789")), None)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::ValueTooLarge { .. }), "{err:?}");
    for ttl in [Duration::ZERO, MAX_TTL + ms(1)] {
        let err = store.put(NS, "k", b("v"), Some(ttl)).await.unwrap_err();
        assert!(matches!(err, StoreError::InvalidTtl { .. }), "{err:?}");
        let err = store.touch(NS, &ok, ttl).await.unwrap_err();
        assert!(matches!(err, StoreError::InvalidTtl { .. }), "{err:?}");
    }
    store.put(NS, "k", b("v"), Some(MAX_TTL)).await.unwrap();
    assert_eq!(get(store, "k").await, Some(b("v")));
}

async fn errors_never_contain_keys_or_values(backend: Backend) {
    let limits = Limits::default()
        .with_max_value_bytes(64)
        .with_namespace_max_entries(NS, 1);
    let h = backend.open(limits).await;
    let store = &*h.store;
    let key = "sk-live-KEYSECRET";
    let value = "VALUESECRET";
    let mut errors = Vec::new();
    store.put(NS, key, Bytes::from(value), None).await.unwrap();
    errors.push(store.incr(NS, key, 1, None).await.unwrap_err());
    errors.push(
        store
            .put(NS, "sk-other-KEYSECRET", b("v"), None)
            .await
            .unwrap_err(),
    );
    let big = Bytes::from(value.repeat(10));
    errors.push(store.put(NS, key, big, None).await.unwrap_err());
    errors.push(
        store
            .put(NS, key, Bytes::from(value), Some(Duration::ZERO))
            .await
            .unwrap_err(),
    );
    for err in errors {
        let shown = format!("{err} / {err:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
    }
}

async fn full_namespace_rejects_only_new_keys(backend: Backend) {
    let limits = Limits::default().with_namespace_max_entries(NS, 3);
    let h = backend.open(limits).await;
    let store = &*h.store;
    for key in ["a", "b", "c"] {
        store.put(NS, key, b("v"), None).await.unwrap();
    }
    let err = store.put(NS, "d", b("v"), None).await.unwrap_err();
    assert!(matches!(err, StoreError::Full { max: 3, .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "namespace `session` is full: it holds the maximum of 3 entries"
    );
    assert!(matches!(
        store.put_if_absent(NS, "d", b("v"), None).await,
        Err(StoreError::Full { .. })
    ));
    assert!(matches!(
        store.incr(NS, "d", 1, None).await,
        Err(StoreError::Full { .. })
    ));
    assert!(matches!(
        store
            .compare_and_swap(NS, "d", None, Some(b("v")), None)
            .await,
        Err(StoreError::Full { .. })
    ));
    // Existing keys can still change, other namespaces are unaffected, and deleting makes room.
    store.put(NS, "a", b("changed"), None).await.unwrap();
    assert!(
        store
            .compare_and_swap(NS, "b", Some(b"v"), Some(b("w")), None)
            .await
            .unwrap()
    );
    store.put(OTHER, "d", b("v"), None).await.unwrap();
    assert!(store.delete(NS, "c").await.unwrap());
    store.put(NS, "d", b("v"), None).await.unwrap();
    assert_eq!(store.list(NS, "", 10).await.unwrap(), vec!["a", "b", "d"]);
}

async fn full_namespace_reclaims_expired_entries(backend: Backend) {
    let limits = Limits::default().with_namespace_max_entries(NS, 3);
    let h = backend.open(limits).await;
    let store = &*h.store;
    store.put(NS, "a", b("v"), None).await.unwrap();
    store.put(NS, "b", b("v"), Some(ms(10))).await.unwrap();
    store.put(NS, "c", b("v"), Some(ms(10))).await.unwrap();
    assert!(matches!(
        store.put(NS, "d", b("v"), None).await,
        Err(StoreError::Full { .. })
    ));
    h.advance(ms(10)).await;
    // Nothing read the expired entries; the insert itself must reclaim them.
    store.put(NS, "d", b("v"), None).await.unwrap();
    store.put(NS, "e", b("v"), None).await.unwrap();
    assert!(matches!(
        store.put(NS, "f", b("v"), None).await,
        Err(StoreError::Full { .. })
    ));
    assert_eq!(store.list(NS, "", 10).await.unwrap(), vec!["a", "d", "e"]);
}

const TASKS: usize = 8;

async fn concurrent_cas_increments_are_exact(backend: Backend) {
    const ROUNDS: usize = 40;
    let h = backend.open(Limits::default()).await;
    h.store.put(NS, "n", b("0"), None).await.unwrap();
    let mut tasks = JoinSet::new();
    for _ in 0..TASKS {
        let store = h.store.clone();
        tasks.spawn(async move {
            let mut retries = 0;
            for _ in 0..ROUNDS {
                loop {
                    let current = store.get(NS, "n").await.unwrap().unwrap();
                    let n: u64 = std::str::from_utf8(&current).unwrap().parse().unwrap();
                    let next = Bytes::from((n + 1).to_string());
                    if store
                        .compare_and_swap(NS, "n", Some(&current), Some(next), None)
                        .await
                        .unwrap()
                    {
                        break;
                    }
                    retries += 1;
                    tokio::task::yield_now().await;
                }
            }
            retries
        });
    }
    let retries: usize = tasks.join_all().await.into_iter().sum();
    let expected = (TASKS * ROUNDS).to_string();
    assert_eq!(
        h.store.get(NS, "n").await.unwrap(),
        Some(Bytes::from(expected)),
        "{retries} retries"
    );
}

async fn concurrent_put_if_absent_has_one_winner(backend: Backend) {
    let h = backend.open(Limits::default()).await;
    for round in 0..10 {
        let key = format!("approval-{round}");
        let mut tasks = JoinSet::new();
        for task in 0..TASKS {
            let store = h.store.clone();
            let key = key.clone();
            tasks.spawn(async move {
                let won = store
                    .put_if_absent(NS, &key, Bytes::from(task.to_string()), None)
                    .await
                    .unwrap();
                won.then_some(task)
            });
        }
        let winners: Vec<usize> = tasks.join_all().await.into_iter().flatten().collect();
        assert_eq!(winners.len(), 1, "{winners:?}");
        let stored = h.store.get(NS, &key).await.unwrap();
        assert_eq!(stored, Some(Bytes::from(winners[0].to_string())));
    }
}

async fn concurrent_incr_is_exact(backend: Backend) {
    const ROUNDS: i64 = 50;
    let h = backend.open(Limits::default()).await;
    let mut tasks = JoinSet::new();
    for _ in 0..TASKS {
        let store = h.store.clone();
        tasks.spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..ROUNDS {
                seen.push(
                    store
                        .incr(NS, "hits", 1, Some(Duration::from_secs(60)))
                        .await
                        .unwrap(),
                );
            }
            seen
        });
    }
    let mut seen: Vec<i64> = tasks.join_all().await.into_iter().flatten().collect();
    seen.sort_unstable();
    // Every increment returned a distinct value: none was lost or applied twice.
    let total = i64::try_from(TASKS).unwrap() * ROUNDS;
    assert_eq!(seen, (1..=total).collect::<Vec<_>>());
    assert_eq!(h.store.incr(NS, "hits", 0, None).await.unwrap(), total);
}
