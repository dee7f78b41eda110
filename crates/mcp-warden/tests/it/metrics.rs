//! Prometheus metrics end to end: the real `mcp-warden serve` with `[metrics]`, in front of a
//! real Python SDK server (`fixtures/python/guards_server.py`, which logs every call it
//! receives), with API-key authentication and a policy. A known workload runs through the
//! MCP face; `/metrics` is scraped over HTTP on its own port and every counter is checked
//! against the workload and against the audit log the metrics are derived from.
//!
//! Proves: MON-4 (Prometheus metrics), MON-1 (counters of denials and auth failures).

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::Command;
use warden_test::deps;
use warden_test::http::HttpClient;

use crate::support::{bin, toml_str};

const VERSION: &str = "2025-11-25";
/// Bound on startup and on the metrics catching up with the workload.
const BOUND: Duration = Duration::from_secs(60);
const ALLOWED: usize = 5;
const DENIED: usize = 3;

/// The samples of a scrape body: `name{labels}` -> value (the series exactly as rendered).
fn samples(body: &str) -> BTreeMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (series, value) = l
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("not a sample: {l:?}"));
            let value = if value == "+Inf" {
                f64::INFINITY
            } else {
                value.parse().unwrap()
            };
            (series.to_owned(), value)
        })
        .collect()
}

async fn scrape(http: &reqwest::Client, url: &str) -> (BTreeMap<String, f64>, String) {
    let r = http.get(url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let body = r.text().await.unwrap();
    (samples(&body), body)
}

/// Scrapes until `done` holds (the writer counts records just after writing them), bounded.
async fn scrape_until(
    http: &reqwest::Client,
    url: &str,
    done: impl Fn(&BTreeMap<String, f64>) -> bool,
) -> (BTreeMap<String, f64>, String) {
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        let (s, body) = scrape(http, url).await;
        if done(&s) {
            return (s, body);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "metrics never caught up:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Asserts that every series of counter `family` equals the number of audit records of
/// `event` with those label values, and that there are no other series: labels are named
/// after the record fields they come from (an absent field is the empty label value).
fn assert_family_counts_records(
    s: &BTreeMap<String, f64>,
    body: &str,
    records: &[Value],
    event: &str,
    family: &str,
    labels: &[&str],
) {
    let mut from_log: BTreeMap<String, f64> = BTreeMap::new();
    for r in records.iter().filter(|r| r["event"] == event) {
        let values: Vec<String> = labels
            .iter()
            .map(|l| format!("{l}=\"{}\"", r[*l].as_str().unwrap_or("")))
            .collect();
        *from_log
            .entry(format!("{family}{{{}}}", values.join(",")))
            .or_default() += 1.0;
    }
    let prefix = format!("{family}{{");
    let from_metrics: BTreeMap<String, f64> = s
        .iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    assert_eq!(from_metrics, from_log, "{family}: {body}");
}

fn get(s: &BTreeMap<String, f64>, series: &str) -> f64 {
    s.get(series).copied().unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_match_the_workload_and_the_audit_log() {
    let dir = tempfile::tempdir().unwrap();
    let calls = dir.path().join("calls.log");
    std::fs::write(&calls, "").unwrap();
    let key = crate::support::create_api_key(dir.path(), "ci-bot").await;
    let port = warden_test::free_port();
    let metrics_port = warden_test::free_port();
    let config = dir.path().join("warden.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\n\
             [auth]\napi_keys = true\n\n\
             [metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n\n\
             [policy.roles.authenticated]\ntools = [\"fx/add\"]\n\n\
             [upstreams.fx]\ncommand = {}\nargs = [{}, \"stdio\", \"--calls-file\", {}]\n\n\
             [upstreams.fx.sandbox]\nwrite = [{}]\n",
            toml_str(&deps::python().display().to_string()),
            toml_str(
                &deps::fixture("python/guards_server.py")
                    .display()
                    .to_string()
            ),
            toml_str(&calls.display().to_string()),
            toml_str(&dir.path().display().to_string()),
        ),
    )
    .unwrap();
    let cmd = crate::support::serve_command(&config, dir.path());
    let _guard = warden_test::process::Guard::spawn(cmd).unwrap();
    warden_test::wait_port(port, BOUND).await.unwrap();
    warden_test::wait_port(metrics_port, BOUND).await.unwrap();
    let metrics_url = format!("http://127.0.0.1:{metrics_port}/metrics");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    // The metrics port serves only /metrics, and the MCP face does not serve metrics.
    let r = http
        .get(format!("http://127.0.0.1:{metrics_port}/mcp"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), 200);
    assert!(!r.text().await.unwrap().contains("warden_requests_total"));

    // The workload: one refused credential, one session, ALLOWED calls the policy grants
    // and DENIED calls it refuses.
    let auth = format!("Bearer {key}");
    let mut client = HttpClient::new(format!("http://127.0.0.1:{port}/mcp"));
    let init = serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": VERSION, "capabilities": {},
        "clientInfo": {"name": "metrics-test", "version": "0"}}}))
    .unwrap();
    let wrong = "mwk_0000000000000000_wrongwrongwrongwrongwrongwrong";
    let refused = client
        .post_raw(
            init.clone(),
            &[("authorization", &format!("Bearer {wrong}"))],
        )
        .await
        .unwrap();
    assert_eq!(refused.status, 401, "{}", refused.text);
    let ok = client
        .post_raw(init, &[("authorization", &auth)])
        .await
        .unwrap();
    assert_eq!(ok.status, 200, "{}", ok.text);
    client.session = ok
        .headers
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    client.version = Some(VERSION.to_owned());
    let n = client
        .post_raw(
            serde_json::to_vec(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
                .unwrap(),
            &[("authorization", &auth)],
        )
        .await
        .unwrap();
    assert_eq!(n.status, 202);
    let call = |id: usize, tool: &str, arguments: Value| {
        serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": tool, "arguments": arguments}}))
        .unwrap()
    };
    for i in 0..ALLOWED {
        let r = client
            .post_raw(
                call(10 + i, "fx__add", json!({"a": i, "b": 1})),
                &[("authorization", &auth)],
            )
            .await
            .unwrap();
        assert_eq!(
            r.last()["result"]["content"][0]["text"],
            (i + 1).to_string(),
            "{}",
            r.text
        );
    }
    for i in 0..DENIED {
        let r = client
            .post_raw(
                call(
                    100 + i,
                    "fx__write_file",
                    json!({"path": "/tmp/x", "content": "y"}),
                ),
                &[("authorization", &auth)],
            )
            .await
            .unwrap();
        assert_eq!(r.last()["error"]["code"], -31003, "{}", r.text);
    }

    let tool = |t: &str, status: &str| {
        format!("warden_tool_calls_total{{upstream=\"fx\",tool=\"{t}\",status=\"{status}\"}}")
    };
    let (s, body) = scrape_until(&http, &metrics_url, |s| {
        get(s, &tool("fx__add", "result")) >= ALLOWED as f64
            && get(s, &tool("fx__write_file", "denied")) >= DENIED as f64
    })
    .await;
    assert_eq!(
        get(&s, &tool("fx__add", "result")),
        ALLOWED as f64,
        "{body}"
    );
    assert_eq!(
        get(&s, &tool("fx__write_file", "denied")),
        DENIED as f64,
        "{body}"
    );
    assert_eq!(
        get(
            &s,
            "warden_guard_decisions_total{guard=\"policy\",verdict=\"deny\",direction=\"to_upstream\"}"
        ),
        DENIED as f64,
        "{body}"
    );
    let failures: f64 = s
        .iter()
        .filter(|(k, _)| {
            k.starts_with("warden_auth_attempts_total{") && k.ends_with("outcome=\"failure\"}")
        })
        .map(|(_, v)| v)
        .sum();
    assert_eq!(failures, 1.0, "{body}");
    assert_eq!(
        get(&s, "warden_sessions_started_total{face=\"http\"}"),
        1.0,
        "{body}"
    );
    assert_eq!(get(&s, "warden_sessions_active"), 1.0, "{body}");
    assert!(
        get(
            &s,
            "warden_upstream_events_total{upstream=\"fx\",action=\"started\"}"
        ) >= 1.0,
        "{body}"
    );
    assert!(s.contains_key("warden_audit_queue_depth"), "{body}");
    assert_eq!(get(&s, "warden_audit_dropped_records_total"), 0.0);
    assert_eq!(get(&s, "warden_audit_unwritten_records_total"), 0.0);
    // Latency: every call is in the histogram, cumulative buckets end at the count.
    let count = get(
        &s,
        "warden_request_duration_seconds_count{method=\"tools/call\",upstream=\"fx\"}",
    );
    assert_eq!(
        get(
            &s,
            "warden_request_duration_seconds_bucket{method=\"tools/call\",upstream=\"fx\",le=\"+Inf\"}"
        ),
        count
    );
    assert!(count >= ALLOWED as f64, "{body}");
    // Nothing secret in the exposition.
    assert!(!body.contains(&key) && !body.contains(wrong) && !body.contains("mwk_"));

    // Every request counter equals the number of call records in the audit log.
    let records = crate::support::audit_records(dir.path()).await;
    assert_family_counts_records(
        &s,
        &body,
        &records,
        "call",
        "warden_requests_total",
        &["direction", "method", "upstream", "status"],
    );
    // Likewise every upstream lifecycle counter, and the restarts among them.
    assert_family_counts_records(
        &s,
        &body,
        &records,
        "upstream",
        "warden_upstream_events_total",
        &["upstream", "action"],
    );
    assert_eq!(
        get(&s, "warden_upstream_restarts_total{upstream=\"fx\"}"),
        get(
            &s,
            "warden_upstream_events_total{upstream=\"fx\",action=\"restarted\"}"
        ),
        "{body}"
    );
    // Likewise every authentication counter, by method and outcome.
    assert_family_counts_records(
        &s,
        &body,
        &records,
        "auth",
        "warden_auth_attempts_total",
        &["method", "outcome"],
    );
    assert!(
        get(
            &s,
            "warden_auth_attempts_total{method=\"api_key\",outcome=\"success\"}"
        ) >= 1.0,
        "{body}"
    );

    // The upstream saw exactly the allowed calls.
    let seen = std::fs::read_to_string(&calls).unwrap();
    assert_eq!(seen.lines().count(), ALLOWED, "{seen}");
    assert!(seen.lines().all(|l| l.starts_with("add ")), "{seen}");

    // Ending the session moves the gauge back.
    let status = http
        .delete(&client.url)
        .header("mcp-session-id", client.session.clone().unwrap())
        .header("authorization", &auth)
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success(), "{status}");
    let ended = |s: &BTreeMap<String, f64>| -> f64 {
        s.iter()
            .filter(|(k, _)| k.starts_with("warden_sessions_ended_total{"))
            .map(|(_, v)| v)
            .sum()
    };
    let (s, body) = scrape_until(&http, &metrics_url, |s| ended(s) >= 1.0).await;
    assert_eq!(ended(&s), 1.0, "{body}");
    assert_eq!(get(&s, "warden_sessions_active"), 0.0, "{body}");
    let records = crate::support::audit_records(dir.path()).await;
    let end = records
        .iter()
        .find(|r| r["event"] == "session_end")
        .unwrap_or_else(|| panic!("no session_end record"));
    let series = format!(
        "warden_sessions_ended_total{{reason=\"{}\"}}",
        end["reason"].as_str().unwrap()
    );
    assert_eq!(get(&s, &series), 1.0, "{body}");
}

#[tokio::test]
async fn metrics_without_the_audit_log_are_refused_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("warden.toml");
    std::fs::write(
        &config,
        "[audit]\nenabled = false\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["serve", "--config", config.to_str().unwrap()])
        .arg("--data-dir")
        .arg(dir.path())
        .env("MCP_WARDEN_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("metrics.listen: metrics are derived from the audit record stream"),
        "{stderr}"
    );
}

/// `run --metrics`: the stdio gateway serves the same metrics for its one session.
#[tokio::test]
async fn run_serves_metrics_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let metrics_port = warden_test::free_port();
    let listen = format!("127.0.0.1:{metrics_port}");
    let server = crate::interop::everything_stdio();
    let server: Vec<&str> = server.iter().map(String::as_str).collect();
    let mut c = warden_test::stdio::StdioClient::start(crate::support::run_command(
        &[
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--metrics",
            &listen,
        ],
        &server,
    ))
    .unwrap();
    c.initialize(VERSION).await.unwrap();
    for i in 0..ALLOWED {
        let r = c
            .request(
                "tools/call",
                json!({"name": "echo", "arguments": {"message": format!("m{i}")}}),
            )
            .await
            .unwrap();
        assert!(r.get("result").is_some(), "{r}");
    }
    // A number where the schema says string: refused by the argument guard.
    let r = c
        .request(
            "tools/call",
            json!({"name": "echo", "arguments": {"message": 42}}),
        )
        .await
        .unwrap();
    let guard = r["error"]["data"]["guard"].as_str().unwrap().to_owned();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let url = format!("http://{listen}/metrics");
    // The calls of the tool `echo` (whatever the upstream is named), by series.
    let echo = |s: &BTreeMap<String, f64>| -> BTreeMap<String, f64> {
        s.iter()
            .filter(|(k, _)| {
                k.starts_with("warden_tool_calls_total{") && k.contains(",tool=\"echo\",")
            })
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    };
    let (s, body) = scrape_until(&http, &url, |s| {
        echo(s).values().sum::<f64>() >= (ALLOWED + 1) as f64
    })
    .await;
    let echo = echo(&s);
    assert_eq!(echo.values().sum::<f64>(), (ALLOWED + 1) as f64, "{body}");
    assert!(
        echo.iter()
            .any(|(k, v)| k.ends_with("status=\"result\"}") && *v == ALLOWED as f64),
        "{body}"
    );
    assert!(
        echo.iter()
            .any(|(k, v)| k.ends_with("status=\"denied\"}") && *v == 1.0),
        "{body}"
    );
    assert_eq!(
        get(
            &s,
            &format!(
                "warden_guard_decisions_total{{guard=\"{guard}\",verdict=\"deny\",direction=\"to_upstream\"}}"
            )
        ),
        1.0,
        "{body}"
    );
    assert_eq!(
        get(&s, "warden_sessions_started_total{face=\"stdio\"}"),
        1.0,
        "{body}"
    );
    c.close_stdin();
    c.guard
        .wait(Duration::from_secs(30))
        .await
        .expect("run did not exit");
}

/// `run --metrics` on a non-loopback address without a token is refused before anything
/// starts, like `[metrics] listen` is.
#[tokio::test]
async fn run_refuses_non_loopback_metrics_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let out = crate::support::run_command(
        &[
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--metrics",
            "0.0.0.0:0",
        ],
        &["true"],
    )
    .stdin(Stdio::null())
    .stderr(Stdio::piped())
    .output()
    .await
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refusing to serve metrics on non-loopback address 0.0.0.0:0"),
        "{stderr}"
    );
}
