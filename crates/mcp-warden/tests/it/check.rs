//! `mcp-warden check`: the posture follows what the configuration builds.

use std::collections::HashMap;
use std::process::Command;

use serde_json::Value;

use crate::support::{bin, fresh_data_dir};

fn check(config: Option<&str>, extra: &[&str]) -> HashMap<String, (String, String)> {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Command::new(bin());
    c.arg("check").arg("--format").arg("json").args(extra);
    c.env("MCP_WARDEN_DATA_DIR", fresh_data_dir());
    c.env_remove("MCP_WARDEN_CONFIG");
    if let Some(text) = config {
        let p = dir.path().join("warden.toml");
        std::fs::write(&p, text).unwrap();
        c.arg("--config").arg(p);
    }
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), 129, "one row per control of the checklist");
    rows.iter()
        .map(|r| {
            let status = r["status"].as_str().unwrap().to_owned();
            assert!(
                ["enforced", "partial", "off", "n/a"].contains(&status.as_str()),
                "{r}"
            );
            assert!(!r["reason"].as_str().unwrap().is_empty(), "{r}");
            (
                r["id"].as_str().unwrap().to_owned(),
                (status, r["reason"].as_str().unwrap().to_owned()),
            )
        })
        .collect()
}

fn status(rows: &HashMap<String, (String, String)>, id: &str) -> String {
    rows[id].0.clone()
}

#[test]
fn zero_config_run_enforces_the_default_protections() {
    let rows = check(None, &[]);
    for id in ["INT-1", "MGMT-1", "PROMPT-7", "MGMT-4", "UX-5", "MON-5"] {
        assert_eq!(status(&rows, id), "enforced", "{id}: {:?}", rows[id]);
    }
    // What servers send is redacted; what clients send (call arguments, answers to the
    // server's own requests) is scanned for credentials.
    assert_claim(
        &rows,
        "DATA-5",
        "enforced",
        &["guard `secrets_in_args`", "guard `redact`"],
    );
    assert_claim(
        &rows,
        "SAMP-2",
        "enforced",
        &["guard `secrets_in_answers`", "guard `redact`"],
    );
    let rows = check(
        Some("[content]\nsecrets_in_arguments = \"off\"\nsecrets_in_answers = \"off\"\n"),
        &["--mode", "run"],
    );
    assert_claim(
        &rows,
        "DATA-5",
        "partial",
        &[
            "the credentials in the arguments a client sends are not scanned (secrets_in_arguments = \"off\")",
        ],
    );
    assert_claim(
        &rows,
        "SAMP-2",
        "partial",
        &[
            "answers to sampling and elicitation requests reach the upstream unscanned (secrets_in_answers = \"off\")",
        ],
    );
    let rows = check(None, &[]);
    assert!(
        ["enforced", "partial"].contains(&status(&rows, "RUN-1").as_str()),
        "the sandbox is on by default: {:?}",
        rows["RUN-1"]
    );
    assert_eq!(status(&rows, "CAUTH-1"), "n/a", "stdio has no network face");
    assert_eq!(status(&rows, "LLM-1"), "n/a");
    assert_claim(
        &rows,
        "INT-2",
        "partial",
        &["`mcp-warden audit verify --public-key`"],
    );
    // The stdio request queue caps the client's requests; no rate limit is configured.
    assert_queue_claim(&rows, "64 requests in flight and 256 queued");
}

/// API-2 is partial, on the strength of `run`'s request queue as `caps` describes it.
fn assert_queue_claim(rows: &HashMap<String, (String, String)>, caps: &str) {
    assert_eq!(status(rows, "API-2"), "partial", "{:?}", rows["API-2"]);
    assert!(rows["API-2"].1.contains(caps), "{:?}", rows["API-2"]);
}

#[test]
fn run_reports_its_configured_request_queue() {
    let rows = check(
        Some("[limits]\nstdio_max_in_flight = 3\nstdio_max_queued = 0\n"),
        &["--mode", "run"],
    );
    assert_queue_claim(&rows, "3 requests in flight and 0 queued");
}

#[test]
fn turning_controls_off_is_reported_off() {
    let config = r#"
pinning = "off"
[content]
poisoning = "off"
injection = "off"
secrets = "off"
pii = "off"
secrets_in_arguments = "off"
secrets_in_answers = "off"
sanitize = "off"
[sandbox]
enabled = false
[audit]
enabled = false
"#;
    let rows = check(Some(config), &["--mode", "run"]);
    for id in [
        "INT-1", "MGMT-1", "PROMPT-7", "DATA-5", "UX-5", "RUN-1", "MON-5", "INT-2",
    ] {
        assert_eq!(status(&rows, id), "off", "{id}: {:?}", rows[id]);
    }
}

#[test]
fn serve_posture_follows_the_http_face() {
    let config = r#"
listen = "127.0.0.1:0"
[upstreams.docs]
url = "http://docs.example.com/mcp"
"#;
    let rows = check(Some(config), &[]);
    assert_eq!(status(&rows, "CAUTH-1"), "partial", "{:?}", rows["CAUTH-1"]);
    assert_eq!(
        status(&rows, "TLS-2"),
        "partial",
        "a plain-HTTP upstream: {:?}",
        rows["TLS-2"]
    );
    assert_eq!(status(&rows, "MGMT-5"), "enforced");
    assert_eq!(status(&rows, "DATA-3"), "enforced");
    assert_eq!(status(&rows, "RUN-1"), "n/a", "no stdio upstream");
}

/// Cross-origin reads: none by default; this machine's pages without authentication are a
/// partial claim; with authentication, the listed origins are named.
#[test]
fn serve_reports_which_pages_may_read_cross_origin() {
    let base =
        "listen = \"127.0.0.1:0\"\n[upstreams.docs]\nurl = \"http://docs.example.com/mcp\"\n";
    let rows = check(Some(base), &[]);
    assert_claim(
        &rows,
        "CAUTH-3",
        "enforced",
        &["no page may read answers cross-origin"],
    );
    let local = format!("cors_origins = [\"http://localhost:5173\"]\n{base}");
    assert_claim(
        &check(Some(&local), &[]),
        "CAUTH-3",
        "partial",
        &["http://localhost:5173", "without authentication"],
    );
    let authenticated = format!("{local}[auth]\napi_keys = true\n");
    assert_claim(
        &check(Some(&authenticated), &[]),
        "CAUTH-3",
        "enforced",
        &["pages of http://localhost:5173 may read answers cross-origin"],
    );
}

/// An upstream whose own `[content]` turns a scan of the client's side off is named.
#[test]
fn serve_names_the_upstreams_whose_answers_go_unscanned() {
    let config = r#"
listen = "127.0.0.1:0"
[upstreams.docs]
url = "http://docs.example.com/mcp"
[upstreams.mail]
url = "http://mail.example.com/mcp"
[upstreams.mail.content]
secrets_in_answers = "off"
"#;
    let rows = check(Some(config), &[]);
    assert_claim(
        &rows,
        "SAMP-2",
        "partial",
        &["answers to sampling and elicitation requests to `mail` reach the upstream unscanned"],
    );
    assert!(!rows["SAMP-2"].1.contains("`docs`"), "{:?}", rows["SAMP-2"]);
    assert_eq!(status(&rows, "DATA-5"), "enforced", "{:?}", rows["DATA-5"]);
}

/// Asserts that `id` has `status` and a reason holding every one of `parts`.
fn assert_claim(rows: &HashMap<String, (String, String)>, id: &str, status: &str, parts: &[&str]) {
    assert_eq!(rows[id].0, status, "{id}: {:?}", rows[id]);
    for part in parts {
        assert!(
            rows[id].1.contains(part),
            "{id} should say {part:?}: {:?}",
            rows[id]
        );
    }
}

#[test]
fn serve_reports_each_upstreams_supervision() {
    let defaults = r#"
listen = "127.0.0.1:0"
[upstreams.files]
command = "/bin/cat"
[upstreams.docs]
url = "http://docs.example.com/mcp"
"#;
    let rows = check(Some(defaults), &[]);
    assert_claim(
        &rows,
        "LIFE-1",
        "enforced",
        &[
            "every upstream: restarted with backoff from 1s to 1m (jitter 20 %), marked down after 5 restarts within 5m, tried again after 10m",
        ],
    );
    assert_claim(
        &rows,
        "LIFE-3",
        "enforced",
        &[
            "every upstream: `ping` (or `server/discover`) every 30s, answered within 10s; after 3 failures in a row the upstream is restarted",
        ],
    );
    assert!(
        rows["LIFE-5"].1.starts_with(
            "per-request timeout 5m; every upstream: a `tools/call` ends after 1h in all"
        ),
        "{:?}",
        rows["LIFE-5"]
    );

    let mixed = r#"
listen = "127.0.0.1:0"
[upstreams.files]
command = "/bin/cat"
[upstreams.flaky]
command = "/bin/cat"
[upstreams.flaky.lifecycle]
restart = "never"
health_interval = "0s"
max_call_duration = "10m"
[upstreams.flaky.sandbox]
enabled = false
"#;
    let rows = check(Some(mixed), &[]);
    assert_claim(
        &rows,
        "LIFE-1",
        "partial",
        &[
            "`files`: restarted with backoff",
            "not restarted (restart = \"never\", marked down when it dies): `flaky`",
        ],
    );
    assert_claim(
        &rows,
        "LIFE-3",
        "partial",
        &[
            "`files`: `ping`",
            "none (health_interval = \"0s\"): `flaky`",
        ],
    );
    assert_claim(
        &rows,
        "LIFE-5",
        "partial",
        &[
            "`files`: a `tools/call` ends after 1h",
            "`flaky`: a `tools/call` ends after 10m",
            "`flaky`: sandbox disabled",
        ],
    );

    let unsupervised = r#"
listen = "127.0.0.1:0"
[upstreams.flaky]
command = "/bin/cat"
[upstreams.flaky.lifecycle]
restart = "never"
health_interval = "0s"
"#;
    let rows = check(Some(unsupervised), &[]);
    assert_claim(&rows, "LIFE-1", "partial", &["restarts none"]);
    assert_claim(
        &rows,
        "LIFE-3",
        "off",
        &["health checks are off for every upstream"],
    );

    let remote = r#"
listen = "127.0.0.1:0"
[upstreams.docs]
url = "http://docs.example.com/mcp"
"#;
    let rows = check(Some(remote), &[]);
    assert_claim(&rows, "LIFE-5", "enforced", &["remote upstreams only"]);
}

#[test]
fn run_claims_neither_restarts_nor_health_checks() {
    let rows = check(None, &["--mode", "run"]);
    assert_claim(
        &rows,
        "LIFE-1",
        "partial",
        &[
            "does not restart it",
            "so that its host restarts the server",
        ],
    );
    assert_claim(
        &rows,
        "LIFE-3",
        "off",
        &["run sends no health checks", "request timeout (5m)"],
    );
    assert!(
        rows["LIFE-5"]
            .1
            .contains("a `tools/call` ends after 1h in all"),
        "{:?}",
        rows["LIFE-5"]
    );

    let rows = check(
        Some("[sandbox]\nmemory = \"unlimited\"\n"),
        &["--mode", "run"],
    );
    assert_claim(
        &rows,
        "LIFE-5",
        "partial",
        &["the upstream: memory unlimited"],
    );
    let rows = check(Some("[sandbox]\nenabled = false\n"), &["--mode", "run"]);
    assert_claim(
        &rows,
        "LIFE-5",
        "partial",
        &["the upstream: sandbox disabled"],
    );
}

#[test]
fn alerts_metrics_traces_and_request_guards_are_claimed_when_configured() {
    let rows = check(None, &["--mode", "run"]);
    for id in ["MON-1", "MON-3", "MON-4", "LOG-3", "AI-2", "AI-3", "AUTH-1"] {
        assert_eq!(status(&rows, id), "off", "{id}: {:?}", rows[id]);
    }

    let config = r#"
[metrics]
listen = "127.0.0.1:9464"
[tracing]
endpoint = "http://127.0.0.1:4318"
[alerts]
[alerts.denials]
enabled = false
[rate_limit]
per_tool = "10/m"
[policy.roles.reader]
tools = ["files/*"]
"#;
    let rows = check(Some(config), &["--mode", "run"]);
    assert_claim(
        &rows,
        "MON-1",
        "enforced",
        &[
            "`auth_failures` (10 in 1m)",
            "`untrusted_then_sensitive` (within 2m)",
            "alerts to the log",
        ],
    );
    assert!(
        !rows["MON-1"].1.contains("`denials`"),
        "a rule turned off is not claimed: {:?}",
        rows["MON-1"]
    );
    assert_claim(
        &rows,
        "MON-3",
        "enforced",
        &["`pin_changed` (1 in 10m)", "`poisoning` (1 in 10m)"],
    );
    assert_claim(&rows, "AI-2", "enforced", &["`untrusted_then_sensitive`"]);
    assert_claim(
        &rows,
        "MON-4",
        "enforced",
        &[
            "Prometheus metrics on 127.0.0.1:9464",
            "OpenTelemetry spans to http://127.0.0.1:4318/",
        ],
    );
    assert_claim(&rows, "AI-3", "enforced", &["guard `rate_limit`"]);
    assert_claim(&rows, "AUTH-1", "enforced", &["guard `policy`"]);

    // Rules with nowhere to send their alerts, metrics without traces: partial.
    let config = "[alerts.log]\nenabled = false\n[metrics]\nlisten = \"127.0.0.1:9464\"\n";
    let rows = check(Some(&format!("[alerts]\n{config}")), &["--mode", "run"]);
    assert_claim(&rows, "MON-1", "partial", &["alerts to no sink"]);
    assert_claim(&rows, "MON-4", "partial", &["Prometheus metrics"]);
}
