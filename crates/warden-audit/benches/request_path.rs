//! What the request path pays to audit one `tools/call`: building the call's record (the
//! arguments' and result's minimised form, the timestamp) and queueing it, while the writer
//! drains the queue concurrently.
#![allow(missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use warden_audit::{AuditLog, AuditOptions, Content, Direction, Event, OnFull, Status};

fn request() -> bytes::Bytes {
    let args = serde_json::json!({"path": "/tmp/some/file.txt", "content": "x".repeat(512)});
    let msg = serde_json::json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "echo", "arguments": args}});
    bytes::Bytes::from(serde_json::to_vec(&msg).expect("plain data"))
}

fn call(arguments: Content, result: Content) -> Event {
    Event::Call {
        session: Some("0123456789abcdef0123456789abcdef".into()),
        principal: "local".into(),
        direction: Direction::ToUpstream,
        method: "tools/call".into(),
        name: Some("echo".into()),
        upstream: Some("everything".into()),
        latency_us: 812,
        status: Status::Result,
        code: None,
        arguments: Some(arguments),
        result: Some(result),
        trace: None,
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = AuditOptions::new(dir.path().join("a.jsonl"), dir.path().join("k"));
    opts.on_full = OnFull::FailOpen;
    opts.queue = 1 << 16;
    let log = rt
        .block_on(async { AuditLog::open(opts, None) })
        .expect("open");
    let req = request();
    let resp = req.clone();
    let mut group = c.benchmark_group("audit");
    group.throughput(Throughput::Elements(1));
    group.bench_function("request_path_call", |b| {
        let _guard = rt.enter();
        b.iter(|| {
            let (a, r) = contents(&log, &req, &resp);
            log.record(call(a, r)).is_ok()
        })
    });
    group.finish();
    assert_eq!(
        log.dropped(),
        0,
        "the writer kept up: no record was dropped"
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);

fn contents(log: &AuditLog, req: &bytes::Bytes, resp: &bytes::Bytes) -> (Content, Content) {
    (
        log.content_deferred(req.clone(), warden_audit::Part::Arguments),
        log.content_deferred(resp.clone(), warden_audit::Part::Message),
    )
}
