//! Routing costs: namespacing of names, era bridging of results, and a whole `tools/call`
//! round trip through `Gateway::handle` to a stdio echo upstream (transparent, as `run`, and
//! namespaced, as `serve`).
//!
//! The echo upstream is this bench binary itself, re-executed with `WARDEN_BENCH_ECHO=1`: a
//! minimal line-oriented MCP server (initialize, ping, tools/list, tools/call), so the bench
//! needs nothing outside the workspace.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::io::{BufRead, Write};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group};
use serde_json::{Value, json};
use warden_guard::{Pipeline, Principal};
use warden_proto::{Limits, Message, decode};
use warden_session::bridge::complete_modern_result;
use warden_session::naming::{self, NameMap};
use warden_session::{
    EraPreference, Face, Gateway, GatewayOptions, Handler, Reply, Session, Transport, UpstreamDef,
};
use warden_upstream::StdioSpec;

const ECHO_ENV: &str = "WARDEN_BENCH_ECHO";

fn tool_names(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| match i % 4 {
            0 => format!("read_file_{i}"),
            1 => format!("search-{i}"),
            2 => format!("files.list.{i}"),
            _ => format!("tool_{i}_{}", "x".repeat(40)),
        })
        .collect()
}

fn naming_benches(c: &mut Criterion) {
    let names = tool_names(100);
    c.bench_function("naming/expose_100", |b| {
        b.iter(|| {
            for n in &names {
                black_box(naming::expose(black_box("github"), n));
            }
        })
    });
    let exposed: Vec<String> = names
        .iter()
        .map(|n| naming::expose("github", n).0)
        .collect();
    c.bench_function("naming/split_100", |b| {
        b.iter(|| {
            for e in &exposed {
                black_box(naming::split(black_box(e)));
            }
        })
    });
    c.bench_function("naming/namemap_build_100", |b| {
        b.iter(|| NameMap::build("github", names.iter().map(String::as_str)))
    });
    let (map, _) = NameMap::build("github", names.iter().map(String::as_str));
    c.bench_function("naming/namemap_original", |b| {
        b.iter(|| black_box(map.original(black_box(&exposed[57]))))
    });
}

fn bridge_benches(c: &mut Criterion) {
    let tools: Vec<Value> = tool_names(100)
        .into_iter()
        .map(|n| json!({"name": n, "description": "does a thing", "inputSchema": {"type": "object"}}))
        .collect();
    let list = json!({ "tools": tools });
    c.bench_function("bridge/complete_modern_result/tools_list_100", |b| {
        b.iter_batched(
            || list.clone(),
            |mut r| {
                complete_modern_result("tools/list", &mut r);
                r
            },
            BatchSize::SmallInput,
        )
    });
    let call = json!({"content": [{"type": "text", "text": "Echo: hello"}], "isError": false});
    c.bench_function("bridge/complete_modern_result/tools_call", |b| {
        b.iter_batched(
            || call.clone(),
            |mut r| {
                complete_modern_result("tools/call", &mut r);
                r
            },
            BatchSize::SmallInput,
        )
    });
}

fn msg(text: &str) -> Message {
    decode(Bytes::copy_from_slice(text.as_bytes()), &Limits::default()).unwrap()
}

/// One client request through `handle`, draining the reply to its response.
async fn round_trip(g: &Gateway, s: &Arc<Session>, p: &Principal, m: Message) -> Message {
    match g.handle(Some(s), p, m).await {
        Reply::Stream(mut stream) => {
            let mut last = None;
            while let Some(m) = stream.next().await {
                last = Some(m);
            }
            last.expect("a response")
        }
        Reply::Accepted => panic!("a request must be answered"),
    }
}

fn echo_def(namespace: bool) -> UpstreamDef {
    let exe = std::env::current_exe().unwrap();
    let mut spec = StdioSpec::new("echo", exe.to_string_lossy());
    spec.env.push((ECHO_ENV.into(), "1".into()));
    UpstreamDef {
        name: "echo".into(),
        transport: Transport::Stdio(spec),
        era: EraPreference::Legacy,
        request_timeout: Duration::from_secs(10),
        startup_timeout: Duration::from_secs(10),
        namespace,
        lifecycle: Default::default(),
    }
}

fn gateway_bench(c: &mut Criterion, label: &str, transparent: bool, face: Face, tool: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let principal = Principal::local();
    let (gateway, session) = rt.block_on(async {
        let options = GatewayOptions {
            transparent,
            ..GatewayOptions::default()
        };
        let g = Gateway::start(vec![echo_def(!transparent)], Pipeline::passthrough(), options)
            .await
            .expect("echo upstream starts");
        let s = g.open_session(principal.clone(), face).await.unwrap();
        let init = msg(
            r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}"#,
        );
        let r = round_trip(&g, &s, &principal, init).await;
        assert!(r.is_response(), "initialize failed: {:?}", r.value());
        let note = msg(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        let _ = g.handle(Some(&s), &principal, note).await;
        (g, s)
    });
    let text = format!(
        r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"{tool}","arguments":{{"message":"hello world, this is a 64 byte payload for the benchmark!!"}}}}}}"#
    );
    let call = msg(&text);
    let check = rt.block_on(round_trip(&gateway, &session, &principal, call.clone()));
    assert!(
        check.is_response() && check.value().to_string().contains("Echo: hello"),
        "tools/call failed: {}",
        check.value()
    );
    c.bench_function(label, |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = tokio::time::Instant::now();
                for _ in 0..iters {
                    black_box(round_trip(&gateway, &session, &principal, call.clone()).await);
                }
                start.elapsed()
            })
        })
    });
    rt.block_on(async {
        gateway.end_session(&session).await;
        gateway.shutdown().await;
    });
}

fn gateway_benches(c: &mut Criterion) {
    gateway_bench(
        c,
        "gateway/transparent_tools_call_stdio_echo",
        true,
        Face::Stdio,
        "echo",
    );
    gateway_bench(
        c,
        "gateway/namespaced_tools_call_stdio_echo",
        false,
        Face::Http,
        "echo__echo",
    );
}

/// The echo upstream: one JSON-RPC message per line in, one per line out.
fn echo_server() {
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { return };
        let Ok(m) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let (Some(id), Some(method)) = (m.get("id"), m.get("method").and_then(Value::as_str))
        else {
            continue; // notifications and responses
        };
        let reply = match method {
            "initialize" => json!({"jsonrpc": "2.0", "id": id, "result": {
                "protocolVersion": m["params"]["protocolVersion"].as_str().unwrap_or("2025-06-18"),
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "bench-echo", "version": "1"}}}),
            "ping" => json!({"jsonrpc": "2.0", "id": id, "result": {}}),
            "tools/list" => json!({"jsonrpc": "2.0", "id": id, "result": {"tools": [
                {"name": "echo", "inputSchema": {"type": "object"}}]}}),
            "tools/call" => {
                let text = m["params"]["arguments"]["message"].as_str().unwrap_or("");
                json!({"jsonrpc": "2.0", "id": id, "result": {
                    "content": [{"type": "text", "text": format!("Echo: {text}")}], "isError": false}})
            }
            _ => {
                json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "method not found"}})
            }
        };
        let mut bytes = serde_json::to_vec(&reply).unwrap();
        bytes.push(b'\n');
        if out.write_all(&bytes).and_then(|()| out.flush()).is_err() {
            return;
        }
    }
}

criterion_group!(benches, naming_benches, bridge_benches, gateway_benches);

fn main() {
    if std::env::var_os(ECHO_ENV).is_some() {
        echo_server();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
