use std::num::{NonZeroU32, NonZeroUsize};

use proptest::prelude::*;
use serde_json::json;
use warden_guard::{Permits, Principal, Target};
use warden_proto::Message;
use warden_store::MemoryStore;

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
