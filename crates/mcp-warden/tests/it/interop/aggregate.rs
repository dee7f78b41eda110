//! `serve` over two upstreams at once: server-everything and the Python SDK server.

use std::time::Duration;

use serde_json::{Value, json};
use warden_test::http::HttpClient;

use super::{
    Allow, Args, Protocol, Report, Scratch, Target, everything_stdio, python_stdio, stdio_upstream,
    transcript,
};
use crate::support::Serve;

fn names(list: &Value, key: &str) -> Vec<String> {
    list["result"][key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in {list}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

fn text(response: &Value) -> String {
    response["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text result: {response}"))
        .to_owned()
}

/// Keeps only what belongs to one upstream of an aggregating gateway: its tools and prompts
/// (client.py already strips the prefix and puts the other upstream's names under
/// `notPrefixed`), their calls, completions, and the reads of the URIs the upstream lists
/// directly. The resource lists are the union of both upstreams, and the server section is
/// the gateway's aggregate (capabilities merged, instructions of both).
fn own_part(t: &Value, direct: &Value) -> Value {
    let mut out = json!({});
    for k in ["tools", "prompts", "toolCalls", "promptGets", "completions"] {
        if let Some(v) = t.get(k) {
            out[k] = v.clone();
        }
    }
    let mut reads = json!({});
    if let Some(direct_reads) = direct["resourceReads"].as_object() {
        for uri in direct_reads.keys() {
            reads[uri] = t["resourceReads"][uri].clone();
        }
    }
    out["resourceReads"] = reads;
    out["templateReads"] = t["templateReads"].clone();
    out
}

/// Both namespaced sets in one `tools/list`, each call routed to its own upstream, and every
/// tool, prompt, completion and resource read of each upstream the same as directly.
// Proves: MULTI-1 (`serve` aggregates servers with namespacing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_aggregates_everything_and_python() {
    let gateway = Serve::start(&format!(
        "{}{}",
        stdio_upstream("everything", &everything_stdio(), ""),
        stdio_upstream("py", &python_stdio(&[]), "")
    ))
    .await
    .unwrap();

    // Raw: one list with both sets; same-named tools (`echo`) reach different servers.
    let mut c = HttpClient::new(&gateway.url);
    c.initialize("2025-11-25").await.unwrap();
    let tools = names(&c.request("tools/list", json!({})).await.unwrap(), "tools");
    for want in [
        "everything__echo",
        "everything__get-sum",
        "py__echo",
        "py__add",
    ] {
        assert!(
            tools.iter().any(|t| t == want),
            "{want} missing from {tools:?}"
        );
    }
    assert!(
        tools
            .iter()
            .all(|t| t.starts_with("everything__") || t.starts_with("py__")),
        "a tool without its upstream's prefix: {tools:?}"
    );
    let prompts = names(
        &c.request("prompts/list", json!({})).await.unwrap(),
        "prompts",
    );
    assert!(
        prompts.iter().any(|p| p == "everything__simple-prompt"),
        "{prompts:?}"
    );
    assert!(prompts.iter().any(|p| p == "py__greet"), "{prompts:?}");
    let e = c
        .request(
            "tools/call",
            json!({"name": "everything__echo", "arguments": {"message": "to everything"}}),
        )
        .await
        .unwrap();
    assert_eq!(text(&e), "Echo: to everything", "{e}");
    let p = c
        .request(
            "tools/call",
            json!({"name": "py__echo", "arguments": {"text": "to python"}}),
        )
        .await
        .unwrap();
    assert_eq!(text(&p), "to python", "{p}");

    // Every item of each upstream, with the official client, against the direct transcripts.
    let (everything, py) = (
        Target::Stdio(everything_stdio()),
        Target::Stdio(python_stdio(&[])),
    );
    let (direct_everything, direct_py) = tokio::join!(
        transcript(&everything, Args::Everything, Protocol::Legacy, None),
        transcript(&py, Args::Python, Protocol::Legacy, None)
    );
    let (direct_everything, direct_py) = (direct_everything.unwrap(), direct_py.unwrap());
    // One after the other: the upstreams are stdio children shared by every session.
    let through_everything = transcript(
        &Target::Http(gateway.url.clone()),
        Args::Everything,
        Protocol::Legacy,
        Some("everything__"),
    )
    .await
    .unwrap();
    let through_py = transcript(
        &Target::Http(gateway.url.clone()),
        Args::Python,
        Protocol::Legacy,
        Some("py__"),
    )
    .await
    .unwrap();

    // Each run lists the other upstream's tools and prompts too (unprefixed for it).
    let not_prefixed = |t: &Value, kind: &str| -> Vec<String> {
        t["notPrefixed"][kind]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default()
    };
    let py_tools: Vec<String> = direct_py["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| format!("py__{}", t["name"].as_str().unwrap()))
        .collect();
    assert_eq!(not_prefixed(&through_everything, "tools"), py_tools);
    let everything_tools: Vec<String> = through_everything["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| format!("everything__{}", t["name"].as_str().unwrap()))
        .collect();
    assert_eq!(not_prefixed(&through_py, "tools"), everything_tools);

    let mut report = Report::default();
    report.same(
        "server-everything's part of an aggregating serve",
        &own_part(&direct_everything, &direct_everything),
        &own_part(&through_everything, &direct_everything),
        Allow::default(),
    );
    report.same(
        "server.py's part of an aggregating serve",
        &own_part(&direct_py, &direct_py),
        &own_part(&through_py, &direct_py),
        Allow::default(),
    );
    report.finish();
}

/// Two `namespace = false` upstreams that both list `echo`: the name is withheld from the list
/// and a call to it is refused without reaching either upstream (never "first wins");
/// names only one of them lists still route. Each upstream's stdin is copied to a file to
/// show what it received.
// Proves: MGMT-3 (cross-server name collisions detected, deterministic conflict rule).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_withholds_a_name_two_plain_upstreams_share() {
    let scratch = Scratch::new();
    let tee = |log: &std::path::Path, server: Vec<String>| -> Vec<String> {
        let mut c = vec![
            "/bin/sh".to_owned(),
            "-c".to_owned(),
            r#"tee -a "$0" | exec "$@""#.to_owned(),
            log.display().to_string(),
        ];
        c.extend(server);
        c
    };
    // Unprefixed names; no sandbox, because `tee` records what each upstream receives in the
    // test's scratch directory, which the sandbox rightly keeps the upstream from writing.
    const UNSANDBOXED_PLAIN: &str = "namespace = false\nsandbox = { enabled = false }";
    let everything_log = scratch.path("everything-stdin.jsonl");
    let py_log = scratch.path("py-stdin.jsonl");
    let gateway = Serve::start(&format!(
        "{}{}",
        stdio_upstream(
            "everything",
            &tee(&everything_log, everything_stdio()),
            UNSANDBOXED_PLAIN
        ),
        stdio_upstream("py", &tee(&py_log, python_stdio(&[])), UNSANDBOXED_PLAIN)
    ))
    .await
    .unwrap();
    let mut c = HttpClient::new(&gateway.url);
    c.initialize("2025-11-25").await.unwrap();
    let tools = names(&c.request("tools/list", json!({})).await.unwrap(), "tools");
    assert!(
        !tools.iter().any(|t| t == "echo"),
        "a name both upstreams list must be withheld: {tools:?}"
    );
    for unique in ["get-sum", "add", "structured", "get-tiny-image"] {
        assert_eq!(
            tools.iter().filter(|t| *t == unique).count(),
            1,
            "{unique} in {tools:?}"
        );
    }

    // Refused: dispatch.rs `route_name` finds the name listed by two plain upstreams.
    let refused = c
        .request(
            "tools/call",
            json!({"name": "echo", "arguments": {"message": "m", "text": "t"}}),
        )
        .await
        .unwrap();
    assert_eq!(refused["error"]["code"], -32602, "{refused}");
    assert_eq!(
        refused["error"]["message"], "unknown tool: \"echo\"",
        "{refused}"
    );

    // Names listed once route to their own upstream.
    let sum = c
        .request(
            "tools/call",
            json!({"name": "get-sum", "arguments": {"a": 1, "b": 2}}),
        )
        .await
        .unwrap();
    assert!(text(&sum).contains('3'), "{sum}");
    let add = c
        .request(
            "tools/call",
            json!({"name": "add", "arguments": {"a": 2, "b": 40}}),
        )
        .await
        .unwrap();
    assert_eq!(text(&add), "42", "{add}");

    // What each upstream received: `add` reached python only, `echo` reached nobody.
    let calls = |log: &std::path::Path| -> Vec<String> {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|m| m["method"] == "tools/call")
            .map(|m| m["params"]["name"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    // The logs are written by `tee` processes behind the servers' pipes: an answered call's
    // line can still be in flight, so wait (bounded) until both have caught up.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while (calls(&py_log).is_empty() || calls(&everything_log).is_empty())
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(calls(&py_log), ["add"]);
    assert_eq!(calls(&everything_log), ["get-sum"]);
}
