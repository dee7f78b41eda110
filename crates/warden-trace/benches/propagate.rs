//! Request-path cost of tracing: the gateway span and `params._meta` rewrite of one
//! `tools/call`, against the untraced path (which does nothing at all).
#![allow(missing_docs)]

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use warden_proto::Limits;
use warden_trace::{Propagator, Sampler};

fn request(with_parent: bool) -> warden_proto::Message {
    let args = serde_json::json!({"path": "/tmp/some/file.txt", "content": "x".repeat(512)});
    let mut params = serde_json::json!({"name": "echo", "arguments": args});
    if with_parent {
        params["_meta"] = serde_json::json!({
            "progressToken": 1,
            "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "tracestate": "vendor=abc"
        });
    }
    let msg =
        serde_json::json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params});
    let bytes = Bytes::from(serde_json::to_vec(&msg).expect("plain data"));
    warden_proto::decode_lazy(bytes, &Limits::default()).expect("valid request")
}

fn bench(c: &mut Criterion) {
    let propagator = Propagator::new(Sampler::ratio(1.0));
    let mut group = c.benchmark_group("trace");
    // The reference: decoding the same request once, as the gateway does for every request.
    let bytes = request(true).bytes().clone();
    group.bench_function("decode_lazy_reference", |b| {
        b.iter(|| {
            warden_proto::decode_lazy(std::hint::black_box(bytes.clone()), &Limits::default())
        })
    });
    group.bench_function("ids", |b| {
        b.iter(|| {
            (
                warden_trace::TraceId::random(),
                warden_trace::SpanId::random(),
            )
        })
    });
    let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    group.bench_function("parse_traceparent", |b| {
        b.iter(|| warden_trace::TraceParent::parse(std::hint::black_box(header)))
    });
    for (label, with_parent) in [("client_parent", true), ("new_trace", false)] {
        let message = request(with_parent);
        group.bench_function(format!("start_{label}"), |b| {
            b.iter(|| propagator.start(std::hint::black_box(message.clone())))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
