//! Hot-path costs of [`MemoryStore`]: the operations a request performs (session lookup, rate-limit
//! increment, session update by compare-and-swap).

use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use criterion::{Criterion, criterion_main};
use warden_store::{MemoryStore, Namespace, Store};

/// Entries present while measuring, so lookups walk a realistically sized map.
const PREFILL: usize = 10_000;

/// A session-sized value.
const VALUE: &[u8] = &[b'x'; 256];

/// Completes a `MemoryStore` future, which never waits, without a runtime's overhead.
fn ready<T>(future: impl Future<Output = T>) -> T {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(value) => value,
        Poll::Pending => panic!("memory store futures complete on their first poll"),
    }
}

fn prefilled() -> (MemoryStore, Vec<String>) {
    let store = MemoryStore::default();
    let keys: Vec<String> = (0..PREFILL).map(|i| format!("session-{i:08}")).collect();
    for key in &keys {
        ready(store.put(
            Namespace::SESSION,
            key,
            Bytes::from_static(VALUE),
            Some(std::time::Duration::from_secs(3600)),
        ))
        .expect("prefill stays under the entry limit");
    }
    (store, keys)
}

fn memory(c: &mut Criterion) {
    let (store, keys) = prefilled();
    let mut group = c.benchmark_group("memory");
    let mut i = 0;
    let mut next_key = || {
        i = (i + 7919) % PREFILL;
        &keys[i]
    };

    group.bench_function("get_hit", |b| {
        b.iter(|| ready(store.get(Namespace::SESSION, black_box(next_key()))));
    });
    group.bench_function("get_miss", |b| {
        b.iter(|| ready(store.get(Namespace::SESSION, black_box("session-absent"))));
    });
    group.bench_function("put_overwrite", |b| {
        b.iter(|| {
            ready(store.put(
                Namespace::SESSION,
                black_box(next_key()),
                Bytes::from_static(VALUE),
                None,
            ))
        });
    });
    group.bench_function("put_overwrite_ttl", |b| {
        b.iter(|| {
            ready(store.put(
                Namespace::SESSION,
                black_box(next_key()),
                Bytes::from_static(VALUE),
                Some(std::time::Duration::from_secs(60)),
            ))
        });
    });
    group.bench_function("cas_success", |b| {
        let value = Bytes::from_static(VALUE);
        ready(store.put(Namespace::SESSION, "cas", value.clone(), None)).expect("room for one key");
        b.iter(|| {
            ready(store.compare_and_swap(
                Namespace::SESSION,
                "cas",
                Some(VALUE),
                Some(value.clone()),
                None,
            ))
        });
    });
    group.bench_function("cas_mismatch", |b| {
        b.iter(|| {
            ready(store.compare_and_swap(
                Namespace::SESSION,
                "cas",
                Some(b"stale"),
                Some(Bytes::from_static(VALUE)),
                None,
            ))
        });
    });
    group.bench_function("incr_window", |b| {
        b.iter(|| {
            ready(store.incr(
                Namespace::RATE_LIMIT,
                black_box("principal"),
                1,
                Some(std::time::Duration::from_secs(60)),
            ))
        });
    });
    group.finish();
}

// In a private module: the generated `pub fn benches` is then not public API needing docs.
mod group {
    criterion::criterion_group!(benches, super::memory);
}
criterion_main!(group::benches);
