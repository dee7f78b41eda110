//! OpenTelemetry tracing through the real binary: `mcp-warden run` in front of a real stdio
//! upstream that records every byte it receives, a real OTLP/HTTP receiver on 127.0.0.1, and a
//! client that sends W3C trace context in `params._meta`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper::StatusCode;
use serde_json::{Value, json};
use warden_test::deps;
use warden_test::otlp::{OtlpReceiver, attribute};
use warden_test::stdio::StdioClient;

use crate::support::{run_command, toml_str};

const VERSION: &str = "2025-11-25";
/// Bound on spans reaching the receiver (export interval is 100 ms in these tests).
const WAIT: Duration = Duration::from_secs(30);
/// Bound on a gateway's exit after its client leaves.
const EXIT_BOUND: Duration = Duration::from_secs(30);

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";
const DENIED_SPAN: &str = "1234567890abcdef";
const REDACTED_SPAN: &str = "abcdefabcdefabcd";

/// A scratch directory the sandboxed upstream may write its record into.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn record(&self) -> PathBuf {
        self.dir.path().join("received.jsonl")
    }

    /// `warden.toml` letting the upstream write its record, plus `extra`.
    fn config(&self, extra: &str) -> PathBuf {
        let path = self.dir.path().join("warden.toml");
        std::fs::write(
            &path,
            format!(
                "[sandbox]\nwrite = [{}]\n{extra}\n",
                toml_str(&self.dir.path().display().to_string())
            ),
        )
        .unwrap();
        path
    }

    /// `mcp-warden run --config C -- python meta_recorder.py RECORD`, initialised.
    async fn start(&self, config: &Path) -> StdioClient {
        let python = deps::python().display().to_string();
        let script = deps::fixture("python/meta_recorder.py")
            .display()
            .to_string();
        let record = self.record().display().to_string();
        let mut cmd = run_command(
            &["--config", config.to_str().unwrap()],
            &[&python, &script, &record],
        );
        cmd.env("WARDEN_TEST_OTLP_TENANT", "team-a");
        let mut c = StdioClient::start(cmd).unwrap();
        c.initialize(VERSION).await.unwrap();
        c
    }

    /// Every line the upstream received, as it received it.
    fn received(&self) -> Vec<String> {
        std::fs::read_to_string(self.record())
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The `tools/call` requests the upstream received, parsed.
    fn received_calls(&self) -> Vec<Value> {
        self.received()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["method"] == "tools/call")
            .collect()
    }
}

/// Sends `line` (one JSON-RPC request, no newline) and returns the response to `id`.
async fn call_raw(c: &mut StdioClient, line: &str, id: i64) -> Value {
    c.send_raw(format!("{line}\n").as_bytes()).await.unwrap();
    loop {
        let m = c.recv().await.unwrap();
        if m["id"] == json!(id) && m.get("method").is_none() {
            return m;
        }
    }
}

fn echo_call(id: i64, message: Value, meta: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"message": message}, "_meta": meta}})
    .to_string()
}

/// (version, trace id, parent id, flags) of a `traceparent`.
fn fields(traceparent: &Value) -> (String, String, String, String) {
    let parts: Vec<String> = traceparent
        .as_str()
        .unwrap()
        .split('-')
        .map(str::to_owned)
        .collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    (
        parts[0].clone(),
        parts[1].clone(),
        parts[2].clone(),
        parts[3].clone(),
    )
}

fn span_with_parent<'a>(spans: &'a [Value], parent: &str) -> &'a Value {
    spans
        .iter()
        .find(|s| s["parentSpanId"] == parent)
        .unwrap_or_else(|| panic!("no span with parent {parent} in {spans:#?}"))
}

// Proves: MON-2 (calls are traceable end to end; spans carry no argument content)
#[tokio::test]
async fn gateway_span_joins_the_client_trace_and_parents_the_upstream_work() {
    let receiver = OtlpReceiver::start(StatusCode::OK).await;
    let fx = Fixture::new();
    let config = fx.config(&format!(
        "[tracing]\nendpoint = {}\nexport_interval = \"100ms\"\n\
         headers = {{ x-tenant = \"env:WARDEN_TEST_OTLP_TENANT\" }}\n",
        toml_str(&receiver.endpoint)
    ));
    let mut c = fx.start(&config).await;

    // 1. A call with a valid, sampled client context.
    let client = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let ok = call_raw(
        &mut c,
        &echo_call(
            2,
            json!("argument text"),
            json!({"progressToken": "p1", "traceparent": client, "tracestate": "vendor=abc"}),
        ),
        2,
    )
    .await;
    assert_eq!(ok["result"]["content"][0]["text"], "argument text", "{ok}");

    // 2. A call the argument guard refuses (a number where the schema says string).
    let denied_ctx = format!("00-{CLIENT_TRACE}-{DENIED_SPAN}-01");
    let denied = call_raw(
        &mut c,
        &echo_call(3, json!(42), json!({"traceparent": denied_ctx})),
        3,
    )
    .await;
    let guard = denied["error"]["data"]["guard"]
        .as_str()
        .unwrap()
        .to_owned();
    let denied_code = denied["error"]["code"].as_i64().unwrap();

    // 3. A call whose context is malformed (uppercase hex): a new trace, no error.
    let upper = format!("00-{}-{CLIENT_SPAN}-01", CLIENT_TRACE.to_uppercase());
    let fresh = call_raw(
        &mut c,
        &echo_call(
            4,
            json!("again"),
            json!({"traceparent": upper, "tracestate": "vendor=abc"}),
        ),
        4,
    )
    .await;
    assert_eq!(fresh["result"]["content"][0]["text"], "again", "{fresh}");

    // 4. A result the secret guard rewrites on its way back: a response-side decision, made
    // while the response crosses the gateway, under the same span.
    let token = format!("ghp_{}", "a1B2c3D4e5F6".repeat(3));
    let redacted = call_raw(
        &mut c,
        &echo_call(
            5,
            json!(format!("token {token}")),
            json!({"traceparent": format!("00-{CLIENT_TRACE}-{REDACTED_SPAN}-01")}),
        ),
        5,
    )
    .await;
    let text = redacted["result"]["content"][0]["text"].as_str().unwrap();
    assert!(!text.contains(&token), "{redacted}");

    // What the upstream saw.
    let calls = fx.received_calls();
    assert_eq!(
        calls.len(),
        3,
        "the denied call reached the upstream: {calls:#?}"
    );
    let seen = &calls[0]["params"]["_meta"];
    let (version, trace, gateway_span, flags) = fields(&seen["traceparent"]);
    assert_eq!(
        (version.as_str(), trace.as_str(), flags.as_str()),
        ("00", CLIENT_TRACE, "01")
    );
    assert_ne!(gateway_span, CLIENT_SPAN);
    assert_eq!(seen["tracestate"], "vendor=abc");
    // Other `_meta` keys survive (the gateway maps progress tokens to its own).
    assert!(seen.get("progressToken").is_some(), "{seen}");
    assert_eq!(
        calls[0]["params"]["arguments"],
        json!({"message": "argument text"})
    );
    let fresh_seen = &calls[1]["params"]["_meta"];
    let (_, fresh_trace, fresh_span, _) = fields(&fresh_seen["traceparent"]);
    assert_ne!(fresh_trace, CLIENT_TRACE);
    assert!(fresh_seen.get("tracestate").is_none(), "{fresh_seen}");
    assert!(
        !fx.received().iter().any(|l| l.contains(DENIED_SPAN)),
        "the denied call's context reached the upstream"
    );

    // What the collector received.
    let spans = receiver.wait_spans(5, WAIT).await;
    let requests = receiver.requests();
    assert!(requests.iter().all(|r| r.path == "/v1/traces"));
    assert!(
        requests
            .iter()
            .all(|r| r.headers.contains(&("x-tenant".into(), "team-a".into()))),
        "the env: header was not sent"
    );
    let span = span_with_parent(&spans, CLIENT_SPAN);
    assert_eq!(span["traceId"], CLIENT_TRACE);
    assert_eq!(span["spanId"], gateway_span.as_str());
    assert_eq!(span["kind"], 2);
    assert_eq!(span["name"], "tools/call echo");
    assert_eq!(span["status"], json!({}));
    let a = |k: &str| attribute(span, k);
    assert_eq!(a("mcp.method.name"), Some(json!("tools/call")));
    assert_eq!(a("gen_ai.tool.name"), Some(json!("echo")));
    assert_eq!(a("warden.principal"), Some(json!("local")));
    assert_eq!(a("warden.outcome"), Some(json!("result")));
    assert!(a("warden.upstream").is_some_and(|u| u.as_str().is_some_and(|u| !u.is_empty())));
    assert!(a("mcp.session.id").is_some());
    assert_eq!(a("error.type"), None);
    let start: u64 = span["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
    let end: u64 = span["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
    assert!(start > 0 && end >= start);

    let refused = span_with_parent(&spans, DENIED_SPAN);
    assert_eq!(refused["traceId"], CLIENT_TRACE);
    assert_eq!(refused["status"]["code"], 2);
    assert_eq!(attribute(refused, "warden.outcome"), Some(json!("denied")));
    assert_eq!(
        attribute(refused, "error.type"),
        Some(json!(denied_code.to_string()))
    );
    let event = &refused["events"][0];
    assert_eq!(event["name"], "warden.guard.deny");
    assert_eq!(attribute(event, "warden.guard"), Some(json!(guard)));

    let new_trace = spans
        .iter()
        .find(|s| s["spanId"] == fresh_span.as_str())
        .unwrap_or_else(|| panic!("no span for the malformed-context call in {spans:#?}"));
    assert_eq!(new_trace["traceId"], fresh_trace.as_str());
    assert!(new_trace.get("parentSpanId").is_none(), "{new_trace}");

    let rewritten = span_with_parent(&spans, REDACTED_SPAN);
    assert_eq!(
        attribute(rewritten, "warden.outcome"),
        Some(json!("result"))
    );
    let events = rewritten["events"].as_array().unwrap();
    assert!(
        events.iter().any(|e| e["name"] == "warden.guard.rewrite"),
        "{rewritten:#}"
    );

    // No argument or result content left the gateway in a span.
    let exported = serde_json::to_string(&spans).unwrap();
    assert!(!exported.contains("argument text"), "{exported}");
    assert!(!exported.contains("a1B2c3D4e5F6"), "{exported}");

    c.close_stdin();
    c.guard.wait(EXIT_BOUND).await.expect("run did not exit");
}

#[tokio::test]
async fn unsampled_requests_carry_the_decision_upstream_and_export_nothing() {
    let receiver = OtlpReceiver::start(StatusCode::OK).await;
    let fx = Fixture::new();
    let config = fx.config(&format!(
        "[tracing]\nendpoint = {}\nexport_interval = \"100ms\"\nsample_ratio = 0.0\n",
        toml_str(&receiver.endpoint)
    ));
    let mut c = fx.start(&config).await;
    // No client context: ratio 0 records nothing, but the upstream still gets a context.
    let r = call_raw(&mut c, &echo_call(2, json!("a"), json!({})), 2).await;
    assert!(r.get("result").is_some(), "{r}");
    // A sampled client context decides for its own trace whatever the ratio: the barrier.
    let client = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let r = call_raw(
        &mut c,
        &echo_call(3, json!("b"), json!({"traceparent": client})),
        3,
    )
    .await;
    assert!(r.get("result").is_some(), "{r}");

    let calls = fx.received_calls();
    let (_, _, unsampled_span, flags) = fields(&calls[0]["params"]["_meta"]["traceparent"]);
    assert_eq!(flags, "00");
    let spans = receiver.wait_spans(1, WAIT).await;
    span_with_parent(&spans, CLIENT_SPAN);
    // Records (and so spans) are in order: the unsampled call would have come first.
    assert!(
        !spans.iter().any(|s| s["spanId"] == unsampled_span.as_str()),
        "{spans:#?}"
    );
    c.close_stdin();
    c.guard.wait(EXIT_BOUND).await.expect("run did not exit");
}

#[tokio::test]
async fn without_tracing_the_upstream_receives_the_request_byte_identical() {
    let fx = Fixture::new();
    let config = fx.config("");
    let mut c = fx.start(&config).await;
    // Odd spacing, a number spelling serde would change, a client traceparent and key order
    // that a re-encoding would not keep.
    let line = format!(
        r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"_meta":{{"z":1.50,"traceparent":"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"}},"name":"echo","arguments":{{ "message" : "hi" }}}}}}"#
    );
    let r = call_raw(&mut c, &line, 2).await;
    assert_eq!(r["result"]["content"][0]["text"], "hi", "{r}");
    let received = fx.received();
    let forwarded = received
        .iter()
        .find(|l| l.contains("tools/call"))
        .unwrap_or_else(|| panic!("no tools/call in {received:#?}"));
    // The gateway numbers upstream requests itself (`Message::with_id`, which replaces the
    // id's bytes only); every other byte is the client's.
    let id = serde_json::from_str::<Value>(forwarded).unwrap()["id"].clone();
    assert_eq!(line.matches(r#""id":2,"#).count(), 1);
    assert_eq!(
        forwarded,
        &line.replace(r#""id":2,"#, &format!(r#""id":{id},"#))
    );
    c.close_stdin();
    c.guard.wait(EXIT_BOUND).await.expect("run did not exit");
}
