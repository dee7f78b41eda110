use std::time::Duration;

use bytes::Bytes;

use super::{MemoryStore, SHARDS, SWEEP_BATCH};
use crate::{Limits, Namespace, Store};

const NS: Namespace = Namespace::SESSION;
const TTL: Duration = Duration::from_secs(30);

async fn fill(store: &MemoryStore, prefix: &str, count: usize, ttl: Option<Duration>) {
    for i in 0..count {
        let key = format!("{prefix}{i}");
        store
            .put(NS, &key, Bytes::from_static(b"v"), ttl)
            .await
            .unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn reading_an_expired_entry_reclaims_it() {
    let store = MemoryStore::default();
    fill(&store, "s", 2, Some(TTL)).await;
    tokio::time::advance(TTL).await;
    assert_eq!(store.raw_len(NS), 2);
    assert_eq!(store.get(NS, "s0").await.unwrap(), None);
    assert_eq!(store.raw_len(NS), 1);
}

#[tokio::test(start_paused = true)]
async fn inserts_sweep_expired_entries_without_reads() {
    let store = MemoryStore::default();
    fill(&store, "old", 1000, Some(TTL)).await;
    tokio::time::advance(TTL).await;
    // Each insert inspects SWEEP_BATCH entries of its shard, so after enough inserts every shard
    // has been swept end to end and only the new entries remain.
    let inserts = 1000 / (SWEEP_BATCH - 1) * 2 + SHARDS * 8;
    fill(&store, "new", inserts, None).await;
    assert_eq!(store.raw_len(NS), inserts);
    assert_eq!(store.list(NS, "", usize::MAX).await.unwrap().len(), inserts);
}

#[tokio::test(start_paused = true)]
async fn purge_expired_reclaims_everything_expired() {
    let store = MemoryStore::new(Limits::default());
    fill(&store, "a", 50, Some(TTL)).await;
    fill(&store, "b", 5, None).await;
    store
        .put(Namespace::RATE_LIMIT, "x", Bytes::new(), Some(TTL))
        .await
        .unwrap();
    assert_eq!(store.purge_expired(), 0);
    tokio::time::advance(TTL).await;
    assert_eq!(store.purge_expired(), 51);
    assert_eq!(store.raw_len(NS), 5);
    assert_eq!(store.raw_len(Namespace::RATE_LIMIT), 0);
}

#[tokio::test]
async fn reads_do_not_create_namespaces() {
    let store = MemoryStore::default();
    assert_eq!(store.get(NS, "k").await.unwrap(), None);
    assert!(!store.delete(NS, "k").await.unwrap());
    assert!(!store.touch(NS, "k", TTL).await.unwrap());
    assert!(store.list(NS, "", 10).await.unwrap().is_empty());
    assert!(store.namespaces.read().unwrap().is_empty());
}

#[tokio::test]
async fn debug_output_shows_counts_not_keys_or_values() {
    let store = MemoryStore::default();
    store
        .put(NS, "KEYSECRET", Bytes::from_static(b"VALUESECRET"), None)
        .await
        .unwrap();
    let shown = format!("{store:?}");
    assert!(shown.contains("(\"session\", 1)"), "{shown}");
    assert!(!shown.contains("SECRET"), "{shown}");
}
