//! Cost of auditing one call: encoding a typed record and chaining it (hash + MAC + line), and
//! digesting arguments.
#![allow(missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use warden_audit::chain::{self, GENESIS};
use warden_audit::{AuditKeys, AuditRecord, Direction, Event, Status};

fn call_record() -> AuditRecord {
    AuditRecord {
        ts: "2026-11-21T08:38:35.123456Z".into(),
        event: Event::Call {
            session: Some("0123456789abcdef0123456789abcdef".into()),
            principal: "local".into(),
            direction: Direction::ToUpstream,
            method: "tools/call".into(),
            name: Some("echo".into()),
            upstream: Some("everything".into()),
            latency_us: 812,
            status: Status::Result,
            code: None,
            arguments: None,
            result: None,
            trace: None,
        },
    }
}

fn bench(c: &mut Criterion) {
    let keys = AuditKeys::from_secrets(&[1; 32], &[2; 32]).expect("valid seed");
    let record = call_record();
    let mut group = c.benchmark_group("audit");
    group.throughput(Throughput::Elements(1));
    group.bench_function("record_encode_chain", |b| {
        let mut prev = GENESIS;
        let mut seq = 0u64;
        let mut out = Vec::with_capacity(1024);
        b.iter(|| {
            out.clear();
            let rec = serde_json::to_vec(&record).expect("plain data");
            let hash = chain::record_hash(seq, &prev, &rec);
            let mac = keys.mac(&hash);
            chain::encode_line(seq, &rec, &prev, &hash, &mac, &mut out);
            prev = hash;
            seq += 1;
            std::hint::black_box(&out);
        })
    });
    group.bench_function("verify_line", |b| {
        let rec = serde_json::to_vec(&record).expect("plain data");
        let hash = chain::record_hash(0, &GENESIS, &rec);
        let mac = keys.mac(&hash);
        let mut line = vec![];
        chain::encode_line(0, &rec, &GENESIS, &hash, &mac, &mut line);
        line.pop();
        b.iter(|| {
            let mut v =
                warden_audit::verify::Verifier::new(warden_audit::verify::Trust::Keys(&keys), true);
            std::hint::black_box(v.line(&line).is_ok())
        })
    });
    // What the request path pays: stamping the record and pushing it onto the writer's queue
    // (the writer drains it concurrently on the runtime and the blocking pool).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts =
        warden_audit::AuditOptions::new(dir.path().join("a.jsonl"), dir.path().join("k"));
    opts.on_full = warden_audit::OnFull::FailOpen;
    opts.queue = 1 << 16;
    let log = rt
        .block_on(async { warden_audit::AuditLog::open(opts, None) })
        .expect("open");
    group.bench_function("record_enqueue", |b| {
        let _guard = rt.enter();
        b.iter(|| log.record(call_record().event).is_ok())
    });
    let args = serde_json::json!({"path": "/tmp/some/file.txt", "content": "x".repeat(512)});
    group.bench_function("argument_digest_600b", |b| b.iter(|| log.content(&args)));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
