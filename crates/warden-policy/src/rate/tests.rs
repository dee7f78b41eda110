use std::num::{NonZeroU32, NonZeroUsize};

use proptest::prelude::*;
use serde_json::json;
use warden_guard::{Permits, Principal, Target};
use warden_proto::Message;
use warden_store::{FileStore, Limits, MemoryStore};

use super::*;

fn spec(count: u32, period: Duration, burst: u32) -> RateSpec {
    RateSpec {
        count: NonZeroU32::new(count).unwrap(),
        period,
        burst: NonZeroU32::new(burst).unwrap(),
    }
}

#[test]
fn gcra_allows_a_burst_then_one_per_interval() {
    let s = spec(10, Duration::from_secs(1), 3);
    let mut tat = None;
    for _ in 0..3 {
        tat = Some(gcra(tat, 0, &s).unwrap());
    }
    let wait = gcra(tat, 0, &s).unwrap_err();
    assert_eq!(wait, Duration::from_millis(100));
    // After one interval, exactly one more.
    let at = 100_000_000;
    tat = Some(gcra(tat, at, &s).unwrap());
    assert!(gcra(tat, at, &s).is_err());
}

proptest! {
    // Over any window, no more than burst + window/interval requests pass.
    #[test]
    fn gcra_never_exceeds_its_rate(
        count in 1u32..50, burst in 1u32..20, gaps in proptest::collection::vec(0u64..50_000_000, 1..200),
    ) {
        let s = spec(count, Duration::from_secs(1), burst);
        let interval = 1_000_000_000 / u64::from(count);
        let mut tat = None;
        let mut now = 0u64;
        let mut allowed = 0u64;
        for g in gaps {
            now += g;
            match gcra(tat, now, &s) {
                Ok(t) => { tat = Some(t); allowed += 1; }
                Err(wait) => prop_assert!(wait > Duration::ZERO),
            }
        }
        prop_assert!(allowed <= u64::from(burst) + now / interval);
    }
}

fn call_message() -> Message {
    Message::from_value(
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo"}}),
    )
    .unwrap()
}

fn config() -> RateLimitConfig {
    RateLimitConfig {
        per_principal: Some(spec(2, Duration::from_secs(60), 2)),
        ..RateLimitConfig::default()
    }
}

async fn check(g: &RateLimitGuard, p: &Principal, permits: &Permits) -> Verdict {
    let m = call_message();
    let target = Target {
        upstream: "up".into(),
        name: Some("echo".into()),
        tool: None,
    };
    let mut call = Call::new(&m, Direction::ToUpstream, p);
    call.upstream = Some("up");
    call.target = Some(&target);
    call.permits = Some(permits);
    g.check(&call).await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn per_principal_bucket_refuses_with_a_retry_hint() {
    // Proves: API-2
    let g = RateLimitGuard::new(config(), Arc::new(MemoryBuckets::default()));
    let alice = Principal::new("alice", warden_guard::AuthMethod::ApiKey);
    let bob = Principal::new("bob", warden_guard::AuthMethod::ApiKey);
    let permits = Permits::default();
    assert!(matches!(
        check(&g, &alice, &permits).await,
        Verdict::Continue
    ));
    assert!(matches!(
        check(&g, &alice, &permits).await,
        Verdict::Continue
    ));
    let Verdict::Deny(d) = check(&g, &alice, &permits).await else {
        panic!("third call within the minute must be refused");
    };
    assert_eq!(d.code, ErrorCode::RateLimited);
    assert_eq!(d.retry_after, Some(Duration::from_secs(30)));
    let body = d.to_jsonrpc(&json!(1));
    assert_eq!(body["error"]["data"]["retryAfterMs"], 30_000);
    // Another principal has its own bucket.
    assert!(matches!(check(&g, &bob, &permits).await, Verdict::Continue));
    // Time refills the bucket.
    tokio::time::advance(Duration::from_secs(30)).await;
    assert!(matches!(
        check(&g, &alice, &permits).await,
        Verdict::Continue
    ));
}

#[tokio::test]
async fn store_buckets_share_state_between_guards() {
    let store: DynStore = Arc::new(MemoryStore::default());
    let a = RateLimitGuard::new(config(), Arc::new(StoreBuckets::new(store.clone())));
    let b = RateLimitGuard::new(config(), Arc::new(StoreBuckets::new(store)));
    let p = Principal::new("alice", warden_guard::AuthMethod::ApiKey);
    let permits = Permits::default();
    assert!(matches!(check(&a, &p, &permits).await, Verdict::Continue));
    assert!(matches!(check(&b, &p, &permits).await, Verdict::Continue));
    assert!(matches!(check(&a, &p, &permits).await, Verdict::Deny(_)));
    assert!(matches!(check(&b, &p, &permits).await, Verdict::Deny(_)));
}

#[tokio::test]
async fn concurrency_slots_are_held_by_the_permits_and_released_with_them() {
    let cfg = RateLimitConfig {
        max_concurrent_per_principal: NonZeroUsize::new(1),
        ..RateLimitConfig::default()
    };
    let g = RateLimitGuard::new(cfg, Arc::new(MemoryBuckets::default()));
    let p = Principal::new("alice", warden_guard::AuthMethod::ApiKey);
    let first = Permits::default();
    assert!(matches!(check(&g, &p, &first).await, Verdict::Continue));
    assert!(!first.is_empty());
    let second = Permits::default();
    let Verdict::Deny(d) = check(&g, &p, &second).await else {
        panic!("a second concurrent call must be refused");
    };
    assert_eq!(d.code, ErrorCode::RateLimited);
    assert!(d.message.contains("concurrent"));
    drop(first);
    assert!(matches!(check(&g, &p, &second).await, Verdict::Continue));
}

#[tokio::test]
async fn a_capped_call_without_a_permit_holder_fails_closed() {
    let cfg = RateLimitConfig {
        max_concurrent_per_upstream: NonZeroUsize::new(1),
        ..RateLimitConfig::default()
    };
    let g = RateLimitGuard::new(cfg, Arc::new(MemoryBuckets::default()));
    let m = call_message();
    let p = Principal::anonymous();
    assert!(
        g.check(&Call::new(&m, Direction::ToUpstream, &p))
            .await
            .is_err()
    );
}

/// The bucket kinds a guard can run on: the plain table and the store path `build` uses.
fn local_buckets() -> Vec<(&'static str, Arc<dyn Buckets>)> {
    vec![
        ("memory table", Arc::new(MemoryBuckets::default())),
        (
            "memory store",
            Arc::new(StoreBuckets::local(Arc::new(MemoryStore::default()))),
        ),
    ]
}

#[tokio::test(start_paused = true)]
async fn store_backed_buckets_refuse_and_refill_like_the_table() {
    // Proves: API-2 (through the store interface the default build uses)
    for (kind, buckets) in local_buckets() {
        let g = RateLimitGuard::new(config(), buckets);
        let alice = Principal::new("alice", warden_guard::AuthMethod::ApiKey);
        let permits = Permits::default();
        for _ in 0..2 {
            assert!(
                matches!(check(&g, &alice, &permits).await, Verdict::Continue),
                "{kind}"
            );
        }
        let Verdict::Deny(d) = check(&g, &alice, &permits).await else {
            panic!("{kind}: third call within the minute must be refused");
        };
        assert_eq!(d.retry_after, Some(Duration::from_secs(30)), "{kind}");
        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(
            matches!(check(&g, &alice, &permits).await, Verdict::Deny(_)),
            "{kind}"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(
            matches!(check(&g, &alice, &permits).await, Verdict::Continue),
            "{kind}"
        );
    }
}

#[tokio::test]
async fn file_store_buckets_survive_a_restart_and_are_shared() {
    let dir = tempfile::tempdir().unwrap();
    let p = Principal::new("alice", warden_guard::AuthMethod::ApiKey);
    let permits = Permits::default();
    {
        let store: DynStore = Arc::new(
            FileStore::open(dir.path(), Limits::default())
                .await
                .unwrap(),
        );
        let a = RateLimitGuard::new(config(), Arc::new(StoreBuckets::new(store.clone())));
        let b = RateLimitGuard::new(config(), Arc::new(StoreBuckets::new(store)));
        assert!(matches!(check(&a, &p, &permits).await, Verdict::Continue));
        assert!(matches!(check(&b, &p, &permits).await, Verdict::Continue));
        let Verdict::Deny(d) = check(&a, &p, &permits).await else {
            panic!("the shared bucket is empty");
        };
        assert_eq!(d.code, ErrorCode::RateLimited);
        assert!(d.retry_after.is_some_and(|r| r > Duration::from_secs(25)));
    }
    // A new process (a reopened store) still sees the empty bucket.
    let store: DynStore = Arc::new(
        FileStore::open(dir.path(), Limits::default())
            .await
            .unwrap(),
    );
    let g = RateLimitGuard::new(config(), Arc::new(StoreBuckets::new(store)));
    assert!(matches!(check(&g, &p, &permits).await, Verdict::Deny(_)));
    let bob = Principal::new("bob", warden_guard::AuthMethod::ApiKey);
    assert!(matches!(check(&g, &bob, &permits).await, Verdict::Continue));
}

#[tokio::test]
async fn long_subjects_get_their_own_digest_keyed_buckets() {
    // A subject longer than the store's key limit must neither fail the guard (which would
    // refuse the principal for its name) nor share a bucket with a similar subject.
    let store: DynStore = Arc::new(MemoryStore::default());
    let g = RateLimitGuard::new(config(), Arc::new(StoreBuckets::local(store.clone())));
    let long = "x".repeat(4 * warden_store::MAX_KEY_BYTES);
    let a = Principal::new(format!("{long}a"), warden_guard::AuthMethod::Bearer);
    let b = Principal::new(format!("{long}b"), warden_guard::AuthMethod::Bearer);
    let permits = Permits::default();
    for _ in 0..2 {
        assert!(matches!(check(&g, &a, &permits).await, Verdict::Continue));
    }
    assert!(matches!(check(&g, &a, &permits).await, Verdict::Deny(_)));
    assert!(matches!(check(&g, &b, &permits).await, Verdict::Continue));
    let keys = store.list(Namespace::RATE_LIMIT, "", 10).await.unwrap();
    assert_eq!(keys.len(), 2);
    assert!(
        keys.iter().all(|k| k.len() == 65 && k.starts_with('#')),
        "{keys:?}"
    );
}

#[tokio::test]
async fn a_malformed_bucket_fails_closed() {
    let store: DynStore = Arc::new(MemoryStore::default());
    let g = RateLimitGuard::new(config(), Arc::new(StoreBuckets::local(store.clone())));
    let p = Principal::new("alice", warden_guard::AuthMethod::ApiKey);
    let key = format!("p:{:?}:{}", p.method, p.subject);
    for bad in [&b"soon"[..], b"", b"-5", b"123456789012345678901234"] {
        store
            .put(
                Namespace::RATE_LIMIT,
                &key,
                Bytes::copy_from_slice(bad),
                None,
            )
            .await
            .unwrap();
        let m = call_message();
        let mut call = Call::new(&m, Direction::ToUpstream, &p);
        call.upstream = Some("up");
        let err = g.check(&call).await.unwrap_err();
        assert!(matches!(err, GuardError::Unavailable { .. }), "{bad:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    // The store path decides exactly as the plain table for any arrival pattern.
    #[test]
    fn store_buckets_decide_as_the_table(
        count in 1u32..20, burst in 1u32..10, gaps in proptest::collection::vec(0u64..400, 1..60),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let s = spec(count, Duration::from_secs(1), burst);
            let table = MemoryBuckets::default();
            let store = StoreBuckets::local(Arc::new(MemoryStore::default()));
            for gap in gaps {
                tokio::time::advance(Duration::from_millis(gap)).await;
                let a = table.take("k", &s).await.unwrap();
                let b = store.take("k", &s).await.unwrap();
                prop_assert_eq!(a, b);
            }
            Ok(())
        })?;
    }
}

#[tokio::test(start_paused = true)]
async fn only_requests_toward_the_upstream_wait_for_the_buckets() {
    let g = RateLimitGuard::new(config(), Arc::new(MemoryBuckets::default()));
    let alice = Principal::new("alice", warden_guard::AuthMethod::ApiKey);
    let permits = Permits::default();
    let m = call_message();
    let mut call = Call::new(&m, Direction::ToUpstream, &alice);
    call.permits = Some(&permits);
    // A request is counted: never decided at once, and the third is refused.
    for _ in 0..2 {
        assert!(g.check_now(&call).is_none());
        assert!(matches!(g.check(&call).await, Ok(Verdict::Continue)));
    }
    assert!(g.check_now(&call).is_none());
    assert!(matches!(g.check(&call).await, Ok(Verdict::Deny(_))));
    // Responses and notifications are not counted: they pass at once, also now.
    let back = Call::new(&m, Direction::ToClient, &alice);
    assert!(matches!(g.check_now(&back), Some(Ok(Verdict::Continue))));
    assert!(matches!(g.check(&back).await, Ok(Verdict::Continue)));
    let n =
        Message::from_value(json!({"jsonrpc": "2.0", "method": "notifications/progress"})).unwrap();
    let note = Call::new(&n, Direction::ToUpstream, &alice);
    assert!(matches!(g.check_now(&note), Some(Ok(Verdict::Continue))));
    assert!(matches!(g.check(&note).await, Ok(Verdict::Continue)));
}
