//! Cost of the guard pipeline on a typical `tools/call`: the pass-through pipeline every
//! message crosses today, and pipelines of N trivial guards (each returns `Continue`) to show
//! the fixed cost per installed stage: dynamic dispatch and one boxed future per guard, or,
//! for guards that decide at once (`Guard::check_now`, as most of the gateway's do), no future.
#![allow(missing_docs, clippy::unwrap_used)]

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use futures::future::BoxFuture;
use warden_guard::{
    Call, Direction, Guard, GuardError, Outcome, Pipeline, Principal, REQUEST_STAGES,
    RESPONSE_STAGES, Verdict,
};
use warden_proto::{Limits, Message, decode};

const CALL: &[u8] = br#"{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hello world, this is a 64 byte payload for the benchmark!!"}}}"#;
const RESULT: &[u8] = br#"{"jsonrpc":"2.0","id":42,"result":{"content":[{"type":"text","text":"Echo: hello world, this is a 64 byte payload for the benchmark!!"}],"isError":false}}"#;

/// A guard that lets everything through.
struct Nop;

impl Guard for Nop {
    fn name(&self) -> &'static str {
        "nop"
    }
    fn controls(&self) -> &'static [&'static str] {
        &[]
    }
    fn check<'a>(&'a self, _call: &'a Call<'a>) -> BoxFuture<'a, Result<Verdict, GuardError>> {
        Box::pin(std::future::ready(Ok(Verdict::Continue)))
    }
}

/// A guard that lets everything through, deciding at once.
struct NopNow;

impl Guard for NopNow {
    fn name(&self) -> &'static str {
        "nop-now"
    }
    fn controls(&self) -> &'static [&'static str] {
        &[]
    }
    fn check<'a>(&'a self, _call: &'a Call<'a>) -> BoxFuture<'a, Result<Verdict, GuardError>> {
        Box::pin(std::future::ready(Ok(Verdict::Continue)))
    }
    fn check_now(&self, _call: &Call<'_>) -> Option<Result<Verdict, GuardError>> {
        Some(Ok(Verdict::Continue))
    }
}

/// Polls a future that never waits (every guard here is ready at once).
fn ready<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("a trivial guard never waits"),
    }
}

/// `n` trivial guards spread over the stages of `direction`, in order.
fn pipeline_of(n: usize, direction: Direction) -> Pipeline {
    pipeline_with(n, direction, || Arc::new(Nop))
}

fn pipeline_with(n: usize, direction: Direction, guard: fn() -> Arc<dyn Guard>) -> Pipeline {
    let stages = match direction {
        Direction::ToUpstream => REQUEST_STAGES,
        Direction::ToClient => RESPONSE_STAGES,
    };
    (0..n).fold(Pipeline::passthrough(), |p, i| {
        p.with(stages[i % stages.len()], guard())
    })
}

fn run(p: &Pipeline, call: &Call<'_>) -> Outcome {
    // What the gateway does: skip building the call when nothing is installed.
    if p.is_passthrough(call.direction) {
        return Outcome::Forward;
    }
    ready(p.run(call))
}

fn bench(c: &mut Criterion) {
    let limits = Limits::default();
    let request: Message = decode(Bytes::from_static(CALL), &limits).unwrap();
    let response: Message = decode(Bytes::from_static(RESULT), &limits).unwrap();
    let principal = Principal::local();
    let to_upstream = Call {
        message: &request,
        direction: Direction::ToUpstream,
        principal: &principal,
        session: None,
        upstream: Some("echo"),
        request_method: None,
        target: None,
        permits: None,
    };
    let to_client = Call {
        message: &response,
        direction: Direction::ToClient,
        principal: &principal,
        session: None,
        upstream: Some("echo"),
        request_method: Some("tools/call"),
        target: None,
        permits: None,
    };

    let passthrough = Pipeline::passthrough();
    c.bench_function("pipeline/passthrough", |b| {
        b.iter(|| run(black_box(&passthrough), black_box(&to_upstream)))
    });
    // The full `run` of an empty pipeline, without the is_passthrough shortcut.
    c.bench_function("pipeline/passthrough_run", |b| {
        b.iter(|| ready(black_box(&passthrough).run(black_box(&to_upstream))))
    });

    let mut group = c.benchmark_group("pipeline/request_guards");
    for n in [1, 2, 4, 6, 12] {
        let p = pipeline_of(n, Direction::ToUpstream);
        group.bench_with_input(BenchmarkId::from_parameter(n), &p, |b, p| {
            b.iter(|| run(black_box(p), black_box(&to_upstream)))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("pipeline/request_guards_at_once");
    for n in [1, 6, 12] {
        let p = pipeline_with(n, Direction::ToUpstream, || Arc::new(NopNow));
        group.bench_with_input(BenchmarkId::from_parameter(n), &p, |b, p| {
            b.iter(|| run(black_box(p), black_box(&to_upstream)))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("pipeline/response_guards");
    for n in [1, 5] {
        let p = pipeline_of(n, Direction::ToClient);
        group.bench_with_input(BenchmarkId::from_parameter(n), &p, |b, p| {
            b.iter(|| run(black_box(p), black_box(&to_client)))
        });
    }
    group.finish();

    // Guards of the other direction are installed but skipped.
    let p = pipeline_of(5, Direction::ToClient);
    c.bench_function("pipeline/request_with_5_response_guards", |b| {
        b.iter(|| ready(black_box(&p).run(black_box(&to_upstream))))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
