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

// ---------------------------------------------------------------------------------------------
// Rate-limit refusals to a client that takes only SSE.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_call_to_an_sse_only_client_is_http_429_with_retry_after() {
    // Proves: API-2 (HTTP 429 with Retry-After on the SSE response path too)
    let fx = Fixture::new();
    let gateway =
        Serve::start(&fx.config("[rate_limit]\nper_tool = { rate = \"1/m\", burst = 1 }\n"))
            .await
            .unwrap();
    let mut c = HttpClient::new(&gateway.url);
    c.initialize(VERSION).await.unwrap();
    // The first call spends the tool's bucket; the second is refused.
    let first = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "fx__add", "arguments": {"a": 1, "b": 1}}});
    let r = c.post(&first).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text);
    let add = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "fx__add", "arguments": {"a": 1, "b": 2}}});
    // `HttpClient` always offers JSON too; this request offers only SSE.
    let r = reqwest::Client::new()
        .post(&gateway.url)
        .header("content-type", "application/json")
        .header("accept", "text/event-stream")
        .header("mcp-session-id", c.session.as_deref().unwrap())
        .header("mcp-protocol-version", VERSION)
        .body(serde_json::to_vec(&add).unwrap())
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let headers = r.headers().clone();
    assert_eq!(headers["content-type"], "text/event-stream");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After: {retry}");
    let text = r.text().await.unwrap();
    let messages = warden_test::http::sse_messages(&text);
    assert_eq!(messages.len(), 1, "{text}");
    let body = &messages[0];
    assert_eq!(body["id"], 2);
    assert_eq!(body["error"]["code"], RATE_LIMITED);
    assert!(body["error"]["data"]["retryAfterMs"].as_u64().unwrap() > 0);
    // The upstream saw the first call only.
    assert_eq!(fx.calls(), ["add {\"a\": 1, \"b\": 1}"]);
}

// ---------------------------------------------------------------------------------------------
// Server-to-client traffic: notifications, sampling and elicitation per principal.

/// `serve` with API keys for `principals` (name, role), created before it starts; returns the
/// gateway's guard, URL and the keys in order.
async fn serve_with_keys(
    dir: &std::path::Path,
    config: &str,
    principals: &[(&str, &str)],
) -> (warden_test::process::Guard, String, Vec<String>) {
    let mut keys = Vec::new();
    for (principal, role) in principals {
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::process::Command::new(crate::support::bin())
                .arg("keys")
                .arg("--data-dir")
                .arg(dir)
                .args([
                    "create",
                    "--principal",
                    principal,
                    "--role",
                    role,
                    "--format",
                    "json",
                ])
                .stdin(std::process::Stdio::null())
                .output(),
        )
        .await
        .unwrap()
        .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let created: Value = serde_json::from_slice(&out.stdout).unwrap();
        keys.push(created["key"].as_str().unwrap().to_owned());
    }
    let port = warden_test::free_port();
    let file = dir.join("warden.toml");
    std::fs::write(
        &file,
        format!("listen = \"127.0.0.1:{port}\"\n[auth]\napi_keys = true\n{config}"),
    )
    .unwrap();
    let guard =
        warden_test::process::Guard::spawn(crate::support::serve_command(&file, dir)).unwrap();
    warden_test::wait_port(port, Duration::from_secs(60))
        .await
        .unwrap();
    (guard, format!("http://127.0.0.1:{port}/mcp"), keys)
}

/// The official Python SDK client with an API key, answering sampling and elicitation and
/// recording every notification. It subscribes to a secret URI and a public one (as far as its
/// policy lets it), makes the upstream send `resources/updated` for the secret URI and then the
/// public one (same connection, in that order), waits for the public one, then
/// calls `ask_model` (sampling) and `ask_user` (elicitation). Prints a JSON summary.
const TRAFFIC_CLIENT: &str = r#"
import sys, json, anyio
import mcp_types as types
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

async def main():
    url, key = sys.argv[1], sys.argv[2]
    seen, asked, public = [], {"sampling": 0, "elicitation": 0}, anyio.Event()

    async def on_message(message):
        root = getattr(message, "root", message)
        method = getattr(root, "method", None)
        if isinstance(message, Exception) or method is None:
            return
        params = getattr(root, "params", None)
        uri = str(getattr(params, "uri", "")) if params is not None else ""
        seen.append([method, uri])
        if uri == "docs://public/readme":
            public.set()

    async def on_sampling(context, params):
        asked["sampling"] += 1
        return types.CreateMessageResult(role="assistant", model="test",
            content=types.TextContent(type="text", text="hi from the model"))

    async def on_elicitation(context, params):
        asked["elicitation"] += 1
        return types.ElicitResult(action="accept", content={"name": "ann"})

    http = create_mcp_http_client(headers={"Authorization": "Bearer " + key})
    async with http:
        async with Client(streamable_http_client(url, http_client=http), mode="legacy",
                          message_handler=on_message, sampling_callback=on_sampling,
                          elicitation_callback=on_elicitation) as client:
            out = {"subscribed": []}
            for uri in ["docs://secret/plan", "docs://public/readme"]:
                # Updates no request can claim go to the sessions subscribed to the URI; the
                # policy refuses a subscription to a URI the principal may not read.
                try:
                    await client.subscribe_resource(uri)
                    out["subscribed"].append(uri)
                except Exception:
                    pass
            for uri in ["docs://secret/plan", "docs://public/readme"]:
                await client.call_tool("st__touch", {"uri": uri})
            with anyio.fail_after(30):
                await public.wait()
            out["ask_model"] = (await client.call_tool("st__ask_model", {"prompt": "hi"})).content[0].text
            out["ask_user"] = (await client.call_tool("st__ask_user", {"message": "name?"})).content[0].text
            out["seen"], out["asked"] = seen, asked
            print(json.dumps(out, sort_keys=True))

anyio.run(main)
"#;

async fn traffic_client(url: &str, key: &str) -> Value {
    let out = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::process::Command::new(deps::python())
            .arg("-c")
            .arg(TRAFFIC_CLIENT)
            .arg(url)
            .arg(key)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the python client did not finish")
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

// Proves: AUTH-1, DATA-3 (server-initiated traffic runs the policy per principal: a resource
// update reaches only principals that may read the URI; sampling and elicitation reach only
// principals granted them, and the upstream gets the refusal instead of an answer)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_traffic_reaches_only_principals_the_policy_allows() {
    let fx = Fixture::new();
    let upstream = format!(
        "[upstreams.st]\ncommand = {}\nargs = [{}, \"stdio\", \"--calls-file\", {}]\n\
         [upstreams.st.sandbox]\nwrite = [{}]\n\n\
         [policy.roles.reader]\ntools = [\"st/*\"]\nresources = [\"docs://public/*\"]\nsampling = true\n\n\
         [policy.roles.keeper]\ntools = [\"st/*\"]\nresources = [\"docs://*\"]\nelicitation = true\n",
        toml_str(&deps::python().display().to_string()),
        toml_str(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/it/request_guards/server_traffic.py")
                .display()
                .to_string()
        ),
        toml_str(&fx.calls.display().to_string()),
        toml_str(&fx.dir.path().display().to_string()),
    );
    let data = tempfile::tempdir().unwrap();
    let (_gateway, url, keys) = serve_with_keys(
        data.path(),
        &upstream,
        &[("reader-1", "reader"), ("keeper-1", "keeper")],
    )
    .await;

    let reader = traffic_client(&url, &keys[0]).await;
    let updated = |uri: &str| json!(["notifications/resources/updated", uri]);
    let seen = reader["seen"].as_array().unwrap();
    assert!(seen.contains(&updated("docs://public/readme")), "{reader}");
    // The policy refused the subscription to the secret URI, and the update sent before the
    // public one on the same connection was never delivered.
    assert_eq!(
        reader["subscribed"],
        json!(["docs://public/readme"]),
        "{reader}"
    );
    assert!(!seen.contains(&updated("docs://secret/plan")), "{reader}");
    assert_eq!(reader["ask_model"], "sampled: hi from the model");
    assert_eq!(reader["asked"]["sampling"], 1);
    // Elicitation is not granted: the client was never asked; the upstream got the refusal.
    assert_eq!(reader["asked"]["elicitation"], 0, "{reader}");
    assert!(
        reader["ask_user"]
            .as_str()
            .unwrap()
            .starts_with("refused: request \"elicitation/create\" is not allowed"),
        "{reader}"
    );

    let keeper = traffic_client(&url, &keys[1]).await;
    let seen = keeper["seen"].as_array().unwrap();
    assert_eq!(
        keeper["subscribed"],
        json!(["docs://secret/plan", "docs://public/readme"]),
        "{keeper}"
    );
    assert!(seen.contains(&updated("docs://secret/plan")), "{keeper}");
    assert!(seen.contains(&updated("docs://public/readme")), "{keeper}");
    assert_eq!(keeper["ask_user"], "elicited: {\"name\": \"ann\"}");
    assert_eq!(keeper["asked"]["sampling"], 0, "{keeper}");
    assert!(
        keeper["ask_model"]
            .as_str()
            .unwrap()
            .starts_with("refused: request \"sampling/createMessage\" is not allowed"),
        "{keeper}"
    );
    // Every tool call reached the upstream (these were allowed; what was refused was the
    // upstream's traffic toward the client).
    assert_eq!(
        fx.calls()
            .iter()
            .filter(|c| c.starts_with("touch "))
            .count(),
        4
    );
}
