//! The exporter against a real OTLP/HTTP receiver on 127.0.0.1: records in, decoded spans out.
#![allow(missing_docs, unreachable_pub)]
#![expect(clippy::unwrap_used, reason = "tests")]

use std::time::Duration;

use hyper::StatusCode;
use serde_json::Value;
use warden_audit::{AuditRecord, AuditTap, Direction, Event, Status, TraceRef, Verdict};
use warden_test::otlp::{OtlpReceiver, attribute};
use warden_trace::otlp::Resource;
use warden_trace::{ExportOptions, TraceExporter};

const WAIT: Duration = Duration::from_secs(20);
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

fn options(endpoint: &str, queue: usize) -> ExportOptions {
    ExportOptions {
        endpoint: endpoint.parse().unwrap(),
        headers: vec![("x-tenant".into(), "team-a".into())],
        resource: Resource {
            service_name: "gateway-under-test".into(),
            service_version: "9.9.9".into(),
        },
        timeout: Duration::from_secs(5),
        interval: Duration::from_millis(50),
        queue,
        max_batch: 512,
        tls: warden_http::TlsOptions::default(),
    }
}

fn trace(span: &str) -> Option<Box<TraceRef>> {
    Some(Box::new(TraceRef {
        trace_id: TRACE.into(),
        span_id: span.into(),
        parent_span_id: Some(PARENT.into()),
    }))
}

fn call(span: &str, status: Status, code: Option<i64>) -> AuditRecord {
    AuditRecord::now(Event::Call {
        session: Some("s-1".into()),
        principal: "alice".into(),
        direction: Direction::ToUpstream,
        method: "tools/call".into(),
        name: Some("echo".into()),
        upstream: Some("fx".into()),
        latency_us: 1500,
        status,
        code,
        arguments: None,
        result: None,
        trace: trace(span),
    })
}

fn deny(span: &str) -> AuditRecord {
    AuditRecord::now(Event::Decision {
        session: None,
        principal: "alice".into(),
        direction: Direction::ToUpstream,
        method: Some("tools/call".into()),
        name: Some("echo".into()),
        upstream: Some("fx".into()),
        guard: "policy".into(),
        verdict: Verdict::Deny,
        reason: "secret detail".into(),
        controls: vec!["AUTHZ-1".into()],
        ticket: None,
        trace: trace(span),
    })
}

#[tokio::test]
async fn spans_reach_a_real_receiver_as_otlp_json() {
    let receiver = OtlpReceiver::start(StatusCode::OK).await;
    let exporter = TraceExporter::start(options(&receiver.endpoint, 64)).unwrap();
    exporter.records(
        &[
            call("1111111111111111", Status::Result, None),
            deny("2222222222222222"),
            call("2222222222222222", Status::Denied, Some(-31003)),
        ],
        true,
    );
    let spans = receiver.wait_spans(2, WAIT).await;
    assert_eq!(spans.len(), 2, "{spans:?}");
    let req = &receiver.requests()[0];
    assert_eq!(req.path, "/v1/traces");
    assert_eq!(req.content_type.as_deref(), Some("application/json"));
    assert!(req.headers.contains(&("x-tenant".into(), "team-a".into())));
    let resource = &req.body["resourceSpans"][0]["resource"];
    assert_eq!(
        attribute(resource, "service.name"),
        Some(Value::from("gateway-under-test"))
    );

    let ok = spans
        .iter()
        .find(|s| s["spanId"] == "1111111111111111")
        .unwrap();
    assert_eq!(ok["traceId"], TRACE);
    assert_eq!(ok["parentSpanId"], PARENT);
    assert_eq!(ok["kind"], 2);
    assert_eq!(ok["name"], "tools/call echo");
    let start: u64 = ok["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
    let end: u64 = ok["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
    assert_eq!(end - start, 1_500_000);
    assert_eq!(ok["status"], serde_json::json!({}));
    assert_eq!(attribute(ok, "gen_ai.tool.name"), Some(Value::from("echo")));

    let denied = spans
        .iter()
        .find(|s| s["spanId"] == "2222222222222222")
        .unwrap();
    assert_eq!(denied["status"]["code"], 2);
    assert_eq!(attribute(denied, "error.type"), Some(Value::from("-31003")));
    assert_eq!(denied["events"][0]["name"], "warden.guard.deny");
    assert_eq!(
        attribute(&denied["events"][0], "warden.guard"),
        Some(Value::from("policy"))
    );
    assert!(
        !serde_json::to_string(&spans)
            .unwrap()
            .contains("secret detail")
    );
    // Counted only once the collector answered.
    let deadline = tokio::time::Instant::now() + WAIT;
    while exporter.stats().exported < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(exporter.stats().exported, 2);
}

#[tokio::test]
async fn refused_batches_are_counted_as_failed() {
    let receiver = OtlpReceiver::start(StatusCode::SERVICE_UNAVAILABLE).await;
    let exporter = TraceExporter::start(options(&receiver.endpoint, 64)).unwrap();
    exporter.records(&[call("1111111111111111", Status::Result, None)], true);
    let deadline = tokio::time::Instant::now() + WAIT;
    while exporter.stats().failed == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(exporter.stats().failed, 1);
    assert_eq!(exporter.stats().exported, 0);
    assert_eq!(receiver.requests().len(), 1);
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_without_blocking_the_tap() {
    // A collector that accepts connections and never answers: the batcher's first export
    // hangs until its timeout, so the queue (2) fills behind it.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let mut opts = options(&format!("http://127.0.0.1:{port}"), 2);
    opts.timeout = Duration::from_secs(2);
    opts.max_batch = 1;
    let exporter = TraceExporter::start(opts).unwrap();
    let records: Vec<AuditRecord> = (1..=50u64)
        .map(|i| call(&format!("{i:016x}"), Status::Result, None))
        .collect();
    // Returns although the collector never answers: the tap only queues.
    exporter.records(&records, true);
    let stats = exporter.stats();
    // 50 spans: at most one taken by the batcher, two in the queue, the rest dropped.
    assert!((47..=48).contains(&stats.dropped), "{stats:?}");
    assert_eq!(stats.exported, 0);
    tokio::task::spawn_blocking(move || drop(exporter))
        .await
        .unwrap();
    drop(silent);
}

#[tokio::test]
async fn dropping_the_exporter_flushes_what_is_queued() {
    let receiver = OtlpReceiver::start(StatusCode::OK).await;
    let mut opts = options(&receiver.endpoint, 64);
    // Far longer than the test: only the flush on drop can send the batch in time.
    opts.interval = Duration::from_secs(3600);
    let exporter = TraceExporter::start(opts).unwrap();
    exporter.records(&[call("1111111111111111", Status::Result, None)], true);
    tokio::task::spawn_blocking(move || drop(exporter))
        .await
        .unwrap();
    assert_eq!(receiver.spans().len(), 1);
}

#[tokio::test]
async fn a_collector_behind_an_internal_ca_gets_spans_only_when_trusted() {
    let ca = warden_test::tls::internal_ca("127.0.0.1");
    let (port, count, _server) =
        warden_test::tls::counting_https_server(&ca.issue("127.0.0.1")).await;
    let endpoint = format!("https://127.0.0.1:{port}");
    let answered = || count.load(std::sync::atomic::Ordering::SeqCst);

    // The Mozilla roots alone: the handshake fails, nothing is answered.
    let plain = TraceExporter::start(options(&endpoint, 64)).unwrap();
    plain.records(&[call("3333333333333333", Status::Result, None)], true);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(answered(), 0);
    drop(plain);

    // With the authority's certificate as an extra root: the batch is posted.
    let mut trusting = options(&endpoint, 64);
    trusting.tls = warden_http::TlsOptions {
        extra_roots: vec![ca.ca_der.clone().into()],
        identity: None,
    };
    let exporter = TraceExporter::start(trusting).unwrap();
    exporter.records(&[call("4444444444444444", Status::Result, None)], true);
    let deadline = tokio::time::Instant::now() + WAIT;
    while answered() == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(answered(), 1);
}
