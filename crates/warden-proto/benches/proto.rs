//! Decoding and id rewriting costs on a typical `tools/call`.
#![allow(missing_docs, clippy::unwrap_used)]

use bytes::Bytes;
use criterion::{Criterion, black_box, criterion_group, criterion_main};
use warden_proto::{Field, Id, Limits, decode, decode_lazy, framing::LineDecoder};

const RESULT: &[u8] = br#"{"jsonrpc":"2.0","id":42,"result":{"content":[{"type":"text","text":"hello world, this is a 64 byte payload for the benchmark!!"}],"isError":false}}"#;
const CALL: &[u8] = br#"{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hello world, this is a 64 byte payload for the benchmark!!"},"_meta":{"progressToken":7}}}"#;

fn bench(c: &mut Criterion) {
    let limits = Limits::default();
    c.bench_function("decode/tools_call", |b| {
        b.iter(|| decode(Bytes::from_static(black_box(CALL)), &limits).unwrap())
    });
    c.bench_function("decode_lazy/tools_call", |b| {
        b.iter(|| decode_lazy(Bytes::from_static(black_box(CALL)), &limits).unwrap())
    });
    c.bench_function("decode/tools_call_result", |b| {
        b.iter(|| decode(Bytes::from_static(black_box(RESULT)), &limits).unwrap())
    });
    c.bench_function("decode_lazy/tools_call_result", |b| {
        b.iter(|| decode_lazy(Bytes::from_static(black_box(RESULT)), &limits).unwrap())
    });
    let msg = decode(Bytes::from_static(CALL), &limits).unwrap();
    let id = Id::from(1_000_001);
    c.bench_function("rewrite_id/tools_call", |b| {
        b.iter(|| msg.with_id(black_box(&id)))
    });
    // The lookups a call's guards make: `params`, then `name`, `arguments` and `_meta` in it.
    const KEYS: [&str; 4] = ["name", "arguments", "_meta", "absent"];
    let params = msg.params().unwrap().as_object().unwrap();
    c.bench_function("lookup/hashed_map_get", |b| {
        b.iter(|| {
            KEYS.iter()
                .filter(|k| params.get(black_box(**k)).is_some())
                .count()
        })
    });
    c.bench_function("lookup/field", |b| {
        b.iter(|| {
            KEYS.iter()
                .filter(|k| params.field(black_box(**k)).is_some())
                .count()
        })
    });
    let mut many = Vec::new();
    for _ in 0..100 {
        many.extend_from_slice(CALL);
        many.push(b'\n');
    }
    c.bench_function("framing/100_lines", |b| {
        b.iter(|| {
            let mut dec = LineDecoder::new(4 << 20);
            let mut buf = bytes::BytesMut::from(&many[..]);
            let mut n = 0;
            while dec.decode(&mut buf).is_some() {
                n += 1;
            }
            n
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
