//! Request guards end to end: the real `mcp-warden serve` in front of a real Python SDK server
//! (`fixtures/python/guards_server.py`) that logs every call it receives. Each deny path is
//! checked twice: the client gets the refusal, and the server's call log shows it never saw
//! the call. Principals are anonymous (no `[auth]`), so the role table grants `anonymous`.
//!
//! Proves: API-1, API-2, TOOL-3, ISO-3, DATA-4, RES-1.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use warden_test::deps;
use warden_test::http::HttpClient;

use crate::support::{Serve, toml_str};

const VERSION: &str = "2025-11-25";

struct Fixture {
    dir: tempfile::TempDir,
    calls: PathBuf,
    root: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let calls = dir.path().join("calls.log");
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("notes.txt"), "notes").unwrap();
        std::fs::write(&calls, "").unwrap();
        Fixture { dir, calls, root }
    }

    /// `[upstreams.fx]` (its sandbox may write the call log) plus `extra` configuration.
    fn config(&self, extra: &str) -> String {
        format!(
            "[upstreams.fx]\ncommand = {}\nargs = [{}, \"stdio\", \"--calls-file\", {}]\n\n[upstreams.fx.sandbox]\nwrite = [{}]\n\n{extra}",
            toml_str(&deps::python().display().to_string()),
            toml_str(
                &deps::fixture("python/guards_server.py")
                    .display()
                    .to_string()
            ),
            toml_str(&self.calls.display().to_string()),
            toml_str(&self.dir.path().display().to_string()),
        )
    }

    /// The calls the upstream saw, one `<tool> <arguments>` per line.
    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(&self.calls)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn path(&self, rel: &str) -> String {
        self.root.join(rel).display().to_string()
    }

    fn outside(&self) -> String {
        self.dir.path().join("outside.txt").display().to_string()
    }
}

async fn client(gateway: &Serve) -> HttpClient {
    let mut c = HttpClient::new(&gateway.url);
    c.initialize(VERSION).await.unwrap();
    c
}

async fn call(c: &mut HttpClient, tool: &str, arguments: Value) -> Value {
    c.request(
        "tools/call",
        json!({"name": format!("fx__{tool}"), "arguments": arguments}),
    )
    .await
    .unwrap()
}

fn text(r: &Value) -> &str {
    r["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("not a tool result: {r}"))
}

fn refusal(r: &Value) -> (i64, &str) {
    let e = &r["error"];
    (
        e["code"]
            .as_i64()
            .unwrap_or_else(|| panic!("not an error: {r}")),
        e["message"].as_str().unwrap(),
    )
}

const DENIED: i64 = -31003;
const INVALID_PARAMS: i64 = -32602;
const RATE_LIMITED: i64 = -31004;

/// A host name that resolves, through `/etc/hosts` or DNS, to a non-public address: the
/// machine's own name (not in the gateway's list of internal names, so the refusal comes from
/// resolving it).
async fn local_name() -> String {
    let name = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let name = name.trim().to_owned();
    assert!(!name.is_empty(), "this test needs /etc/hostname");
    let addrs: Vec<_> = tokio::net::lookup_host((name.as_str(), 80))
        .await
        .unwrap_or_else(|e| panic!("{name} does not resolve: {e}"))
        .collect();
    assert!(
        addrs.iter().all(|a| a.ip().is_loopback()
            || matches!(a.ip(), std::net::IpAddr::V4(v4) if v4.is_private())),
        "{name} resolves to {addrs:?}; this test needs it to resolve to a loopback or private address"
    );
    name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_deny_path_is_refused_before_the_upstream() {
    let fx = Fixture::new();
    let gateway = Serve::start(&fx.config(&format!(
        "[policy.roles.anonymous]\ntools = [\"fx/read_file\", \"fx/fetch\", \"fx/add\"]\n\n[arguments]\npath_roots = [{}]\n",
        toml_str(&fx.root.display().to_string())
    )))
    .await
    .unwrap();
    let mut c = client(&gateway).await;

    // Lists are cut to what the principal may call.
    let list = c.request("tools/list", json!({})).await.unwrap();
    let mut names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{list}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["fx__add", "fx__fetch", "fx__read_file"]);

    // Tool not allowed (listed by the upstream, not granted).
    let r = call(
        &mut c,
        "write_file",
        json!({"path": fx.path("x"), "content": "y"}),
    )
    .await;
    assert_eq!(
        refusal(&r),
        (DENIED, "tool \"fx__write_file\" is not allowed")
    );
    assert_eq!(r["error"]["data"]["guard"], "policy");

    // Arguments failing the tool's inputSchema: the message names the field.
    let r = call(&mut c, "add", json!({"a": "two", "b": 3})).await;
    let (code, message) = refusal(&r);
    assert_eq!(code, INVALID_PARAMS);
    assert!(message.contains("argument `a`"), "{message}");
    let r = call(&mut c, "add", json!({"a": 2})).await;
    assert!(
        refusal(&r).1.contains("\"b\" is a required property"),
        "{r}"
    );

    // Path traversal, and absolute paths outside the roots.
    let r = call(
        &mut c,
        "read_file",
        json!({"path": format!("{}/../outside.txt", fx.root.display())}),
    )
    .await;
    assert_eq!(
        refusal(&r),
        (
            DENIED,
            "argument `path` contains a parent-directory (..) component"
        )
    );
    let r = call(&mut c, "read_file", json!({"path": fx.outside()})).await;
    assert_eq!(
        refusal(&r),
        (DENIED, "argument `path` is outside the allowed directories")
    );
    // A symlink inside the root that leaves it.
    std::os::unix::fs::symlink(fx.dir.path(), fx.root.join("escape")).unwrap();
    let r = call(
        &mut c,
        "read_file",
        json!({"path": fx.path("escape/outside.txt")}),
    )
    .await;
    assert_eq!(
        refusal(&r),
        (DENIED, "argument `path` is outside the allowed directories")
    );

    // SSRF: metadata, loopback literal, loopback by name, and a name resolving to loopback.
    let r = call(
        &mut c,
        "fetch",
        json!({"url": "http://169.254.169.254/latest/meta-data/iam"}),
    )
    .await;
    assert_eq!(
        refusal(&r),
        (DENIED, "argument `url` names a cloud metadata address")
    );
    let r = call(
        &mut c,
        "fetch",
        json!({"url": format!("http://127.0.0.1:{}/mcp", gateway.port)}),
    )
    .await;
    assert_eq!(
        refusal(&r),
        (DENIED, "argument `url` names a loopback address")
    );
    let r = call(
        &mut c,
        "fetch",
        json!({"url": "http://localhost:8080/admin"}),
    )
    .await;
    assert_eq!(
        refusal(&r),
        (DENIED, "argument `url` names an internal host")
    );
    let name = local_name().await;
    let r = call(
        &mut c,
        "fetch",
        json!({"url": format!("http://{name}:8080/")}),
    )
    .await;
    let (code, message) = refusal(&r);
    assert_eq!(code, DENIED);
    assert!(message.ends_with("address (by DNS)"), "{message}");

    // What is allowed goes through.
    let r = call(&mut c, "add", json!({"a": 2, "b": 3})).await;
    assert_eq!(text(&r), "5");
    let r = call(&mut c, "read_file", json!({"path": fx.path("notes.txt")})).await;
    assert_eq!(text(&r), format!("read {}", fx.path("notes.txt")));

    // The upstream saw exactly the allowed calls, none of the refused ones.
    let notes = serde_json::to_string(&fx.path("notes.txt")).unwrap();
    assert_eq!(
        fx.calls(),
        [
            "add {\"a\": 2, \"b\": 3}".to_owned(),
            format!("read_file {{\"path\": {notes}}}"),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_call_is_http_429_with_retry_after() {
    let fx = Fixture::new();
    let gateway =
        Serve::start(&fx.config("[rate_limit]\nper_tool = { rate = \"2/m\", burst = 2 }\n"))
            .await
            .unwrap();
    let c = client(&gateway).await;
    let add = |id: i64| json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "fx__add", "arguments": {"a": id, "b": 1}}});
    // The gateway learns the tool's definition by listing it itself.
    for id in [1, 2] {
        let r = c.post(&add(id)).await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let r = c.post(&add(3)).await.unwrap();
    assert_eq!(r.status, 429, "{}", r.text);
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry), "Retry-After: {retry}");
    let body = r.last();
    assert_eq!(body["error"]["code"], RATE_LIMITED);
    assert!(body["error"]["data"]["retryAfterMs"].as_u64().unwrap() > 0);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("call rate limit for this tool exceeded")
    );
    // Another tool has its own bucket.
    let r = c
        .post(&json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "fx__read_file", "arguments": {"path": "notes.txt"}}}))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text);
    let calls = fx.calls();
    assert_eq!(
        calls.iter().filter(|c| c.starts_with("add ")).count(),
        2,
        "{calls:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_over_the_concurrency_cap_is_refused_until_a_slot_frees() {
    let fx = Fixture::new();
    let gateway = Serve::start(&fx.config("[rate_limit]\nmax_concurrent_per_principal = 1\n"))
        .await
        .unwrap();
    let c = client(&gateway).await;
    let slow = {
        let c = c.clone();
        tokio::spawn(async move {
            c.post(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "fx__slow", "arguments": {"ms": 3000}}}))
                .await
                .unwrap()
        })
    };
    // Wait until the upstream is inside the slow call.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !fx.calls().iter().any(|l| l.starts_with("slow ")) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slow call never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let add = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "fx__add", "arguments": {"a": 1, "b": 1}}});
    let r = c.post(&add).await.unwrap();
    assert_eq!(r.status, 429, "{}", r.text);
    assert_eq!(r.last()["error"]["code"], RATE_LIMITED);
    assert!(
        r.last()["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("too many concurrent requests")
    );
    assert!(!fx.calls().iter().any(|l| l.starts_with("add ")));
    // The slot is released with the slow call's response.
    let done = slow.await.unwrap();
    assert_eq!(text(&done.last()), "slept");
    let r = c.post(&add).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(text(&r.last()), "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_policy_file_stops_startup_with_its_name() {
    let fx = Fixture::new();
    let policy = fx.dir.path().join("bad.cedar");
    std::fs::write(&policy, "permit(principal, action,").unwrap();
    let config = fx.dir.path().join("warden.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\n{}\n[policy]\nfiles = [\"bad.cedar\"]\n",
            fx.config("")
        ),
    )
    .unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(crate::support::bin())
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(fx.dir.path())
            .env("MCP_WARDEN_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .output(),
    )
    .await
    .expect("serve did not exit")
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("invalid Cedar in `bad.cedar`"), "{stderr}");
    assert!(fx.calls().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_mode_filters_lists_and_refuses_before_the_upstream() {
    // `run` is transparent: names are the upstream's own, the principal is `local`, and the
    // upstream is named after its program (`python`).
    let fx = Fixture::new();
    let config = fx.dir.path().join("warden.toml");
    std::fs::write(
        &config,
        format!(
            "[sandbox]\nwrite = [{}]\n\n[policy.roles.local]\ntools = [\"*/add\", \"*/fetch\"]\n",
            toml_str(&fx.dir.path().display().to_string())
        ),
    )
    .unwrap();
    let python = deps::python().display().to_string();
    let server = deps::fixture("python/guards_server.py")
        .display()
        .to_string();
    let calls = fx.calls.display().to_string();
    let config = config.display().to_string();
    let mut c = warden_test::stdio::StdioClient::start(crate::support::run_command(
        &["--config", &config],
        &[&python, &server, "stdio", "--calls-file", &calls],
    ))
    .unwrap();
    c.initialize(VERSION).await.unwrap();
    let list = c.request("tools/list", json!({})).await.unwrap();
    let mut names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{list}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["add", "fetch"]);
    let r = c
        .request(
            "tools/call",
            json!({"name": "write_file", "arguments": {"path": "x", "content": "y"}}),
        )
        .await
        .unwrap();
    assert_eq!(refusal(&r), (DENIED, "tool \"write_file\" is not allowed"));
    let r = c
        .request("tools/call", json!({"name": "add", "arguments": {"a": 1}}))
        .await
        .unwrap();
    assert_eq!(refusal(&r).0, INVALID_PARAMS);
    let r = c
        .request(
            "tools/call",
            json!({"name": "fetch", "arguments": {"url": "http://[::1]:9/"}}),
        )
        .await
        .unwrap();
    assert_eq!(
        refusal(&r),
        (DENIED, "argument `url` names a loopback address")
    );
    let r = c
        .request(
            "tools/call",
            json!({"name": "add", "arguments": {"a": 1, "b": 2}}),
        )
        .await
        .unwrap();
    assert_eq!(text(&r), "3");
    assert_eq!(fx.calls(), ["add {\"a\": 1, \"b\": 2}"]);
}
