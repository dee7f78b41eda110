//! Tool-definition pinning end to end: the real `mcp-warden run` and `serve` binaries in front of
//! a real Python SDK server (`fixtures/python/pinning_server.py`) whose `fetch` description
//! comes from a file (changed between runs) or from its `rug_pull` tool (changed mid-session,
//! announced with `notifications/tools/list_changed`). Every refused call is also checked against
//! the server's own record of the calls it handled (its `calls` tool): the upstream never saw it.
//!
//! Proves: INT-1, MGMT-1, MGMT-2, MGMT-10, MGMT-11.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::Command;
use warden_test::http::HttpClient;
use warden_test::process::Guard;
use warden_test::stdio::StdioClient;

use crate::support::{bin, sorted_tool_names, toml_str};

const BENIGN: &str = "Fetch a URL.";
/// A changed description that is harmless in itself: pinning holds any change (a poisoned one
/// would also be withheld by the detection guards, which would hide what pinning does).
const CHANGED: &str = "Fetch a URL and return its body as text.";
const VERSION: &str = "2025-11-25";
const INSTRUCTIONS: &str = "Use fetch for web pages.";
const NEW_INSTRUCTIONS: &str = "Use fetch for web pages, and echo to test the connection.";

/// One test's files: data dir, the fixture's description of `fetch` and its instructions.
struct Files {
    _dir: tempfile::TempDir,
    data: PathBuf,
    description: PathBuf,
    instructions: PathBuf,
}

impl Files {
    fn new() -> Files {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let description = dir.path().join("description.txt");
        let instructions = dir.path().join("instructions.txt");
        std::fs::write(&description, BENIGN).unwrap();
        std::fs::write(&instructions, INSTRUCTIONS).unwrap();
        Files {
            _dir: dir,
            data,
            description,
            instructions,
        }
    }

    fn server(&self) -> Vec<String> {
        let mut server = crate::support::pinning_server(&self.description);
        server.push("--instructions-file".into());
        server.push(self.instructions.display().to_string());
        server
    }

    fn describe_fetch(&self, text: &str) {
        std::fs::write(&self.description, text).unwrap();
    }

    /// The first `decision` record of `guard` about `name` in the audit log, waited for (the
    /// writer batches its records).
    async fn audit_decision(&self, guard: &str, name: &str) -> Value {
        let log = self.data.join("audit.jsonl");
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let found = text
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .map(|line| line["rec"].clone())
                .find(|r| r["event"] == "decision" && r["guard"] == guard && r["name"] == name);
            if let Some(record) = found {
                return record;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no `{guard}` decision about `{name}` in {}:\n{text}",
                log.display()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// `mcp-warden run --data-dir DATA -- <server>`, initialized.
    async fn run(&self) -> StdioClient {
        self.run_with_init().await.0
    }

    /// Like [`Files::run`], also returning the `initialize` result.
    async fn run_with_init(&self) -> (StdioClient, Value) {
        let mut client = self.start();
        let init = client.initialize(VERSION).await.unwrap();
        (client, init)
    }

    /// `mcp-warden run --data-dir DATA -- <server>`, nothing sent yet.
    fn start(&self) -> StdioClient {
        self.start_with(&[])
    }

    /// [`Files::start`] with more options of `run`.
    fn start_with(&self, options: &[&str]) -> StdioClient {
        let mut c = warden_test::process::piped(bin());
        c.arg("run")
            .arg("--data-dir")
            .arg(&self.data)
            .args(options)
            .arg("--")
            .args(self.server())
            .env("MCP_WARDEN_LOG", "warn");
        StdioClient::start(c).unwrap()
    }

    /// `mcp-warden pins ARGS... --data-dir DATA`: (exit success, stdout).
    async fn pins(&self, args: &[&str]) -> (bool, String) {
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            Command::new(bin())
                .arg("pins")
                .args(args)
                .arg("--data-dir")
                .arg(&self.data)
                .env("MCP_WARDEN_LOG", "warn")
                .stdin(Stdio::null())
                .output(),
        )
        .await
        .expect("pins command timed out")
        .unwrap();
        (out.status.success(), String::from_utf8(out.stdout).unwrap())
    }

    async fn pins_json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["--format", "json"]);
        let (ok, out) = self.pins(&all).await;
        assert!(ok, "pins {args:?} failed: {out}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }
}

fn text(result: &Value) -> &str {
    result["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("not a tool result: {result}"))
}

fn assert_held(response: &Value, name: &str) {
    assert_eq!(response["error"]["code"], -31003, "{response}");
    assert_eq!(response["error"]["data"]["guard"], "pinning", "{response}");
    let message = response["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(name) && message.contains("pins approve"),
        "{message}"
    );
}

/// The urls the upstream's `fetch` handled (in this upstream process).
fn seen(calls_result: &Value) -> Vec<String> {
    text(calls_result).lines().map(str::to_owned).collect()
}

async fn stdio_seen(client: &mut StdioClient) -> Vec<String> {
    seen(
        &client
            .request("tools/call", json!({"name": "calls", "arguments": {}}))
            .await
            .unwrap(),
    )
}

async fn http_seen(client: &mut HttpClient) -> Vec<String> {
    seen(
        &client
            .request("tools/call", json!({"name": "fx__calls", "arguments": {}}))
            .await
            .unwrap(),
    )
}

async fn call_fetch(client: &mut StdioClient, name: &str, url: &str) -> Value {
    client
        .request(
            "tools/call",
            json!({"name": name, "arguments": {"url": url}}),
        )
        .await
        .unwrap()
}

/// The pin identity `run` uses for this server (the only upstream in `pins list`).
async fn run_pin_id(files: &Files) -> String {
    let list = files.pins_json(&["list"]).await;
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["upstream"].as_str().unwrap())
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] == w[1]) && !ids.is_empty(),
        "{list}"
    );
    assert!(ids[0].starts_with("python"), "{list}");
    ids[0].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_holds_a_definition_changed_between_runs_until_approved() {
    let files = Files::new();

    // First run: everything pinned on first sight, and usable.
    let mut first = files.run().await;
    let list = first.request("tools/list", json!({})).await.unwrap();
    assert_eq!(
        sorted_tool_names(&list),
        ["calls", "echo", "fetch", "rug_pull"]
    );
    assert_eq!(
        text(&call_fetch(&mut first, "fetch", "https://a.example").await),
        "fetched https://a.example"
    );
    drop(first);
    let id = run_pin_id(&files).await;
    let pinned = files.pins_json(&["list"]).await;
    assert!(
        pinned
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["status"] == "pinned"),
        "{pinned}"
    );

    // Second run, the server now describes fetch differently: held.
    files.describe_fetch(CHANGED);
    let mut second = files.run().await;
    let list = second.request("tools/list", json!({})).await.unwrap();
    assert_eq!(sorted_tool_names(&list), ["calls", "echo", "rug_pull"]);
    assert_held(
        &call_fetch(&mut second, "fetch", "https://b.example").await,
        "fetch",
    );
    assert!(
        stdio_seen(&mut second).await.is_empty(),
        "the upstream saw a refused call"
    );
    // The hold is in the audit log, as a decision of the pinning guard.
    let held = files.audit_decision("pinning", "fetch").await;
    assert_eq!(held["verdict"], "deny", "{held}");
    assert_eq!(held["direction"], "to_upstream", "{held}");

    // What changed, for a reviewer.
    let diff = files.pins_json(&["diff"]).await;
    let entries = diff.as_array().unwrap();
    assert_eq!(entries.len(), 1, "{diff}");
    assert_eq!(entries[0]["tool"], "fetch");
    assert_eq!(entries[0]["status"], "changed");
    assert_eq!(entries[0]["pending"]["description"], CHANGED);
    let unified = entries[0]["diff"].as_str().unwrap();
    assert!(
        unified.contains(&format!("-  \"description\": \"{BENIGN}\",")),
        "{unified}"
    );
    assert!(
        unified.contains(&format!("+  \"description\": \"{CHANGED}\",")),
        "{unified}"
    );
    let (ok, text_diff) = files.pins(&["diff", &id, "fetch"]).await;
    assert!(
        ok && text_diff.contains("--- pinned") && text_diff.contains("its body as text"),
        "{text_diff}"
    );
    let listed = files.pins_json(&["list", "--upstream", &id]).await;
    let fetch = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["tool"] == "fetch")
        .unwrap();
    assert_eq!(fetch["status"], "changed", "{listed}");

    // An approval for a definition that is not the pending one changes nothing.
    let (ok, _) = files
        .pins(&["approve", &id, "fetch", "--hash", "sha256:00"])
        .await;
    assert!(!ok);
    assert_held(
        &call_fetch(&mut second, "fetch", "https://b.example").await,
        "fetch",
    );

    // Approved while this gateway runs: the tool is back without a restart.
    let hash = entries[0]["pending_hash"].as_str().unwrap();
    let approved = files
        .pins_json(&["approve", &id, "fetch", "--hash", hash])
        .await;
    assert_eq!(approved[0]["hash"], hash, "{approved}");
    assert_eq!(
        text(&call_fetch(&mut second, "fetch", "https://c.example").await),
        "fetched https://c.example"
    );
    let list = second.request("tools/list", json!({})).await.unwrap();
    assert_eq!(
        sorted_tool_names(&list),
        ["calls", "echo", "fetch", "rug_pull"]
    );
    assert_eq!(stdio_seen(&mut second).await, ["https://c.example"]);
    drop(second);

    // Revoked: on a pinned server the tool is then new, so held again.
    let revoked = files.pins_json(&["revoke", &id, "fetch"]).await;
    assert_eq!(revoked["revoked"], 1, "{revoked}");
    let mut third = files.run().await;
    let list = third.request("tools/list", json!({})).await.unwrap();
    assert_eq!(sorted_tool_names(&list), ["calls", "echo", "rug_pull"]);
    assert_held(
        &call_fetch(&mut third, "fetch", "https://d.example").await,
        "fetch",
    );
    assert!(
        stdio_seen(&mut third).await.is_empty(),
        "the upstream saw a refused call"
    );
    drop(third);
    let diff = files.pins_json(&["diff"]).await;
    assert_eq!(diff[0]["status"], "added", "{diff}");

    // Revoking the whole upstream resets it: the next list is a first sight.
    files.pins_json(&["revoke", &id, "--all"]).await;
    let mut fourth = files.run().await;
    let list = fourth.request("tools/list", json!({})).await.unwrap();
    assert_eq!(
        sorted_tool_names(&list),
        ["calls", "echo", "fetch", "rug_pull"]
    );
    assert_eq!(
        text(&call_fetch(&mut fourth, "fetch", "https://e.example").await),
        "fetched https://e.example"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_holds_a_rug_pull_announced_mid_session() {
    let files = Files::new();
    let mut client = files.run().await;
    let list = client.request("tools/list", json!({})).await.unwrap();
    assert_eq!(
        sorted_tool_names(&list),
        ["calls", "echo", "fetch", "rug_pull"]
    );

    let (r, before) = client
        .request_with(
            "tools/call",
            json!({"name": "rug_pull", "arguments": {"description": CHANGED}}),
        )
        .await
        .unwrap();
    assert_eq!(text(&r), "changed");
    // The notification is forwarded (before the result, or right after it).
    if !before
        .iter()
        .any(|m| m["method"] == "notifications/tools/list_changed")
    {
        let m = client.recv().await.unwrap();
        assert_eq!(m["method"], "notifications/tools/list_changed", "{m}");
    }
    let list = client.request("tools/list", json!({})).await.unwrap();
    assert_eq!(sorted_tool_names(&list), ["calls", "echo", "rug_pull"]);
    assert_held(
        &call_fetch(&mut client, "fetch", "https://evil.example").await,
        "fetch",
    );
    assert!(
        stdio_seen(&mut client).await.is_empty(),
        "the upstream saw a refused call"
    );
    // Other tools are unaffected.
    let echo = client
        .request(
            "tools/call",
            json!({"name": "echo", "arguments": {"text": "hi"}}),
        )
        .await
        .unwrap();
    assert_eq!(text(&echo), "hi");
}

/// `mcp-warden serve --config F --data-dir D`, listening on a fresh loopback port.
struct Serve {
    _guard: Guard,
    url: String,
}

async fn serve(files: &Files, config_dir: &Path, extra: &str) -> Serve {
    let port = warden_test::free_port();
    let server = files.server();
    let args: Vec<String> = server[1..].iter().map(|a| toml_str(a)).collect();
    let config = config_dir.join("warden.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\n[upstreams.fx]\ncommand = {}\nargs = [{}]\n{extra}\n",
            toml_str(&server[0]),
            args.join(", ")
        ),
    )
    .unwrap();
    let guard = Guard::spawn(crate::support::serve_command(&config, &files.data)).unwrap();
    warden_test::wait_port(port, Duration::from_secs(60))
        .await
        .unwrap();
    Serve {
        _guard: guard,
        url: format!("http://127.0.0.1:{port}/mcp"),
    }
}

async fn http_client(gateway: &Serve) -> HttpClient {
    let mut c = HttpClient::new(&gateway.url);
    c.initialize(VERSION).await.unwrap();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_holds_a_changed_definition_and_releases_it_on_approval_without_restart() {
    let files = Files::new();
    let config_dir = tempfile::tempdir().unwrap();
    {
        let gateway = serve(&files, config_dir.path(), "").await;
        let mut c = http_client(&gateway).await;
        let list = c.request("tools/list", json!({})).await.unwrap();
        assert_eq!(
            sorted_tool_names(&list),
            ["fx__calls", "fx__echo", "fx__fetch", "fx__rug_pull"]
        );
        let r = c
            .request(
                "tools/call",
                json!({"name": "fx__fetch", "arguments": {"url": "https://a.example"}}),
            )
            .await
            .unwrap();
        assert_eq!(text(&r), "fetched https://a.example");
    }
    let pinned = files.pins_json(&["list", "--upstream", "fx"]).await;
    // Four tools and the instructions (and the command pin of `fx`).
    let definitions = pinned
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] != "command")
        .count();
    assert_eq!(definitions, 5, "{pinned}");

    files.describe_fetch(CHANGED);
    std::fs::write(&files.instructions, NEW_INSTRUCTIONS).unwrap();
    let gateway = serve(&files, config_dir.path(), "").await;
    let mut c = HttpClient::new(&gateway.url);
    let init = c.initialize(VERSION).await.unwrap();
    assert!(
        init.get("instructions").is_none(),
        "changed instructions reached the client: {init}"
    );
    let list = c.request("tools/list", json!({})).await.unwrap();
    assert_eq!(
        sorted_tool_names(&list),
        ["fx__calls", "fx__echo", "fx__rug_pull"]
    );
    let r = c
        .request(
            "tools/call",
            json!({"name": "fx__fetch", "arguments": {"url": "https://b.example"}}),
        )
        .await
        .unwrap();
    assert_held(&r, "fx__fetch");
    assert!(
        http_seen(&mut c).await.is_empty(),
        "the upstream saw a refused call"
    );

    let diff = files.pins_json(&["diff", "fx"]).await;
    assert_eq!(diff[0]["tool"], "fetch", "{diff}");
    assert!(
        diff[0]["diff"]
            .as_str()
            .unwrap()
            .contains("its body as text"),
        "{diff}"
    );
    files.pins_json(&["approve", "fx", "--all"]).await;

    let list = c.request("tools/list", json!({})).await.unwrap();
    assert_eq!(
        sorted_tool_names(&list),
        ["fx__calls", "fx__echo", "fx__fetch", "fx__rug_pull"]
    );
    let r = c
        .request(
            "tools/call",
            json!({"name": "fx__fetch", "arguments": {"url": "https://c.example"}}),
        )
        .await
        .unwrap();
    assert_eq!(text(&r), "fetched https://c.example");
    assert_eq!(http_seen(&mut c).await, ["https://c.example"]);
    // `--all` approved the instructions too: a new session gets them.
    let init = HttpClient::new(&gateway.url)
        .initialize(VERSION)
        .await
        .unwrap();
    assert_eq!(
        init["instructions"],
        format!("[fx] {NEW_INSTRUCTIONS}"),
        "{init}"
    );
}

/// Lists every tool of the fixture, then calls `rug_pull`, which changes `fetch`'s description.
async fn list_then_rug_pull(c: &mut HttpClient) {
    let list = c.request("tools/list", json!({})).await.unwrap();
    assert_eq!(
        sorted_tool_names(&list),
        ["fx__calls", "fx__echo", "fx__fetch", "fx__rug_pull"]
    );
    let r = c
        .request(
            "tools/call",
            json!({"name": "fx__rug_pull", "arguments": {"description": CHANGED}}),
        )
        .await
        .unwrap();
    assert_eq!(text(&r), "changed");
}

/// A call to `fetch` is refused as held, and never reaches the upstream.
async fn assert_fetch_held(c: &mut HttpClient) {
    let r = c
        .request(
            "tools/call",
            json!({"name": "fx__fetch", "arguments": {"url": "https://evil.example"}}),
        )
        .await
        .unwrap();
    assert_held(&r, "fx__fetch");
    assert!(
        http_seen(c).await.is_empty(),
        "the upstream saw a refused call"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_holds_a_rug_pull_mid_session_and_report_mode_only_records() {
    let files = Files::new();
    let config_dir = tempfile::tempdir().unwrap();
    let gateway = serve(&files, config_dir.path(), "").await;
    let mut c = http_client(&gateway).await;
    list_then_rug_pull(&mut c).await;
    let list = c.request("tools/list", json!({})).await.unwrap();
    assert_eq!(
        sorted_tool_names(&list),
        ["fx__calls", "fx__echo", "fx__rug_pull"]
    );
    assert_fetch_held(&mut c).await;
    drop(gateway);

    // The same change under `pinning = "report"`: recorded for review, nothing held.
    let gateway = serve(&files, config_dir.path(), "pinning = \"report\"").await;
    let mut c = http_client(&gateway).await;
    let r = c
        .request(
            "tools/call",
            json!({"name": "fx__rug_pull", "arguments": {"description": CHANGED}}),
        )
        .await
        .unwrap();
    assert_eq!(text(&r), "changed");
    let list = c.request("tools/list", json!({})).await.unwrap();
    assert_eq!(
        sorted_tool_names(&list),
        ["fx__calls", "fx__echo", "fx__fetch", "fx__rug_pull"]
    );
    let r = c
        .request(
            "tools/call",
            json!({"name": "fx__fetch", "arguments": {"url": "https://r.example"}}),
        )
        .await
        .unwrap();
    assert_eq!(text(&r), "fetched https://r.example");
    let diff = files.pins_json(&["diff", "fx", "fetch"]).await;
    assert_eq!(diff[0]["status"], "changed", "{diff}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_withholds_changed_server_instructions_until_approved() {
    let files = Files::new();
    let (first, init) = files.run_with_init().await;
    assert_eq!(init["instructions"], INSTRUCTIONS, "{init}");
    drop(first);
    let id = run_pin_id(&files).await;

    std::fs::write(&files.instructions, NEW_INSTRUCTIONS).unwrap();
    let (mut second, init) = files.run_with_init().await;
    assert!(
        init.get("instructions").is_none(),
        "changed instructions reached the client: {init}"
    );
    // Tools are not affected by held instructions.
    let list = second.request("tools/list", json!({})).await.unwrap();
    assert_eq!(
        sorted_tool_names(&list),
        ["calls", "echo", "fetch", "rug_pull"]
    );
    drop(second);

    let diff = files.pins_json(&["diff", &id]).await;
    let entry = &diff.as_array().unwrap()[0];
    assert_eq!(entry["kind"], "instructions", "{diff}");
    assert_eq!(entry["pending"], NEW_INSTRUCTIONS, "{diff}");
    files.pins_json(&["approve", &id, "--instructions"]).await;
    let (_third, init) = files.run_with_init().await;
    assert_eq!(init["instructions"], NEW_INSTRUCTIONS, "{init}");
}

/// A 2026-07-28 client of a 2025 server (`--era legacy`: the fixture's SDK also speaks
/// 2026-07-28) is bridged: the gateway answers its `server/discover` from the description it
/// learnt in its own handshake. Those instructions go through the same pins as a legacy
/// client's `initialize` result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_withholds_changed_instructions_from_a_bridged_modern_client() {
    let files = Files::new();
    let (first, _) = files.run_with_init().await;
    drop(first);
    let meta = json!({"_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "pinning-test", "version": "1"},
    }});
    let discover = |files: &Files| {
        let mut client = files.start_with(&["--era", "legacy"]);
        let meta = meta.clone();
        async move {
            // Not the first request: the gateway learns the era with a handshake of its own,
            // then answers `server/discover` itself.
            let list = client.request("tools/list", meta.clone()).await.unwrap();
            assert!(list["result"]["tools"].is_array(), "{list}");
            let discovered = client.request("server/discover", meta).await.unwrap();
            assert!(
                discovered["result"]["supportedVersions"].is_array(),
                "{discovered}"
            );
            discovered["result"].clone()
        }
    };
    let pinned = discover(&files).await;
    assert_eq!(pinned["instructions"], INSTRUCTIONS, "{pinned}");

    std::fs::write(&files.instructions, NEW_INSTRUCTIONS).unwrap();
    let changed = discover(&files).await;
    assert!(
        changed.get("instructions").is_none(),
        "changed instructions reached a modern client: {changed}"
    );
    let id = run_pin_id(&files).await;
    let diff = files.pins_json(&["diff", &id]).await;
    assert_eq!(diff[0]["pending"], NEW_INSTRUCTIONS, "{diff}");
}

/// The other bridge: a 2025 client of a 2026-07-28 server (`--era modern`) gets an `initialize`
/// result the gateway builds from the server's `server/discover`; its instructions are pinned
/// too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_withholds_changed_instructions_from_a_bridged_legacy_client() {
    let files = Files::new();
    let initialize = |files: &Files| {
        let mut client = files.start_with(&["--era", "modern"]);
        async move {
            let init = client.initialize(VERSION).await.unwrap();
            assert_eq!(init["protocolVersion"], VERSION, "{init}");
            init
        }
    };
    let first = initialize(&files).await;
    assert_eq!(first["instructions"], INSTRUCTIONS, "{first}");

    std::fs::write(&files.instructions, NEW_INSTRUCTIONS).unwrap();
    let changed = initialize(&files).await;
    assert!(
        changed.get("instructions").is_none(),
        "changed instructions reached a legacy client: {changed}"
    );
}

/// A definition that changed is held at the first call after the gateway saw it, even when the
/// gateway saw it in a list of its own: the re-list it makes to resolve a call to a name it did
/// not know goes through the response guards, as a client's list does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_holds_a_rug_pull_its_own_relist_saw() {
    let files = Files::new();
    let config_dir = tempfile::tempdir().unwrap();
    let gateway = serve(&files, config_dir.path(), "").await;
    let mut c = http_client(&gateway).await;
    list_then_rug_pull(&mut c).await;
    // The gateway re-lists at most once a second; a call to a name it does not know makes it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = c
        .request(
            "tools/call",
            json!({"name": "fx__nothing", "arguments": {}}),
        )
        .await
        .unwrap();
    assert!(r["error"].is_object(), "{r}");
    // No client list since the change: the hold comes from the gateway's own re-list.
    assert_fetch_held(&mut c).await;
}
