//! Cost of the rules on the audit writer thread: records per second through [`Engine::observe`]
//! for traffic that fires nothing (the common case) and for a burst of refused credentials
//! (every record hits a counter, one alert, the rest suppressed).
#![allow(missing_docs)]
#![expect(clippy::unwrap_used, reason = "bench setup")]

use std::hint::black_box;
use std::time::{Duration, UNIX_EPOCH};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use warden_alerts::Engine;
use warden_audit::{AuditRecord, AuthOutcome, Direction, Event, Status};

const RECORDS: usize = 10_000;

fn record(i: usize, event: Event) -> AuditRecord {
    let at = UNIX_EPOCH + Duration::from_secs(1_800_000_000) + Duration::from_millis(i as u64);
    AuditRecord {
        ts: warden_audit::record::timestamp(at),
        event,
    }
}

fn call(i: usize) -> Event {
    let tools = ["fs__read_file", "web__fetch", "git__log", "fs__write_file"];
    Event::Call {
        session: Some(format!("s{}", i % 64)),
        principal: format!("p{}", i % 16),
        direction: Direction::ToUpstream,
        method: "tools/call".into(),
        name: Some(tools[i % tools.len()].into()),
        upstream: Some("fs".into()),
        latency_us: 900,
        status: Status::Result,
        code: None,
        arguments: None,
        result: None,
        trace: None,
    }
}

fn bench(c: &mut Criterion) {
    let config = warden_config::Config::parse("[alerts]\n", "warden.toml")
        .unwrap()
        .alerts;
    let sensitive = vec!["shell__*".to_owned()];
    let normal: Vec<_> = (0..RECORDS).map(|i| record(i, call(i))).collect();
    let failures: Vec<_> = (0..RECORDS)
        .map(|i| {
            record(
                i,
                Event::Auth {
                    principal: None,
                    method: "http".into(),
                    outcome: AuthOutcome::Failure,
                    reason: Some("invalid: unknown api key".into()),
                    remote: None,
                },
            )
        })
        .collect();
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(RECORDS as u64));
    g.bench_function("observe/normal_calls", |b| {
        b.iter(|| {
            let mut e = Engine::new(&config, &sensitive);
            let mut out = Vec::new();
            for r in &normal {
                e.observe(black_box(r), &mut out);
            }
            assert!(out.is_empty());
        });
    });
    g.bench_function("observe/auth_failure_burst", |b| {
        b.iter(|| {
            let mut e = Engine::new(&config, &sensitive);
            let mut out = Vec::new();
            for r in &failures {
                e.observe(black_box(r), &mut out);
            }
            assert_eq!(out.len(), 1);
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
