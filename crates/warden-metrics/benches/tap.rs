//! Cost of the metrics tap per audit record, as the writer thread pays it, and of a scrape.
#![allow(missing_docs)]
#![expect(clippy::unwrap_used, reason = "bench setup")]

use std::num::NonZeroUsize;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use warden_audit::{AuditRecord, AuditTap as _, Direction, Event, Status, Verdict};
use warden_metrics::{Live, Metrics, MetricsOptions};

fn record(i: usize) -> AuditRecord {
    let event = if i % 4 == 3 {
        Event::Decision {
            session: Some("session-1".into()),
            principal: "alice".into(),
            direction: Direction::ToUpstream,
            method: Some("tools/call".into()),
            name: Some("fs__write_file".into()),
            upstream: Some("fs".into()),
            guard: "policy".into(),
            verdict: Verdict::Deny,
            reason: "not allowed".into(),
            controls: vec!["API-1".into()],
            ticket: None,
            trace: None,
        }
    } else {
        Event::Call {
            session: Some("session-1".into()),
            principal: "alice".into(),
            direction: Direction::ToUpstream,
            method: "tools/call".into(),
            name: Some(format!("fs__tool{}", i % 20)),
            upstream: Some("fs".into()),
            latency_us: 150 + (i as u64 * 37) % 5000,
            status: Status::Result,
            code: None,
            arguments: None,
            result: None,
            trace: None,
        }
    };
    AuditRecord {
        ts: "2026-01-01T00:00:00.000000Z".into(),
        event,
    }
}

fn bench(c: &mut Criterion) {
    let metrics = Metrics::new(MetricsOptions::new(
        NonZeroUsize::new(100).unwrap(),
        "bench",
    ));
    let batch: Vec<AuditRecord> = (0..256).map(record).collect();
    let mut g = c.benchmark_group("tap");
    g.throughput(Throughput::Elements(batch.len() as u64));
    g.bench_function("batch_of_256_records", |b| {
        b.iter(|| metrics.records(&batch, true));
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("single_record", |b| {
        b.iter(|| metrics.records(&batch[..1], true));
    });
    g.finish();
    c.bench_function("render/20_tools", |b| {
        b.iter(|| metrics.render(&Live::default()));
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
