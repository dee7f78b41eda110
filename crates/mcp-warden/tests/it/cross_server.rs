//! Cross-server checks end to end: the real `mcp-warden serve` in front of two real Python
//! SDK servers (`fixtures/python/pinning_server.py`) that list the same tool names. The
//! aggregated `tools/list` is still served (findings are reported, not blocking) and the
//! audit log gets a `cross_server` decision with verdict `report` naming the other upstream.
//!
//! Proves: MULTI-2 (name collisions across upstreams reported)

use std::time::Duration;

use tokio::time::Instant;

use serde_json::json;
use warden_test::deps;
use warden_test::http::HttpClient;

use crate::support::{Serve, pinning_server, toml_str};

fn upstream(name: &str) -> String {
    let server = pinning_server(&deps::fixture("python/benign-description.txt"));
    let args: Vec<String> = server[1..].iter().map(|a| toml_str(a)).collect();
    format!(
        "[upstreams.{name}]\ncommand = {}\nargs = [{}]\n[upstreams.{name}.sandbox]\nenabled = false\n",
        toml_str(&server[0]),
        args.join(", ")
    )
}

#[tokio::test]
async fn colliding_tool_names_across_upstreams_are_reported_in_the_audit_log() {
    let serve = Serve::start(&format!("{}{}", upstream("alpha"), upstream("beta")))
        .await
        .unwrap();
    let mut client = HttpClient::new(serve.url.clone());
    client.initialize("2025-11-25").await.unwrap();
    let list = client.request("tools/list", json!({})).await.unwrap();
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    // Reported, not blocking: both upstreams' tools are listed (namespaced).
    assert!(names.contains(&"alpha__echo"), "{names:?}");
    assert!(names.contains(&"beta__echo"), "{names:?}");
    let audit = serve.dir.path().join("audit.jsonl");
    let deadline = Instant::now() + Duration::from_secs(20);
    let record = loop {
        let text = std::fs::read_to_string(&audit).unwrap_or_default();
        let found = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|r| r.to_string().contains("\"guard\":\"cross_server\""));
        if let Some(r) = found {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "no cross_server decision in the audit log:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let text = record.to_string();
    assert!(text.contains("\"verdict\":\"report\""), "{text}");
    assert!(text.contains("poison.name-collision"), "{text}");
    assert!(text.contains("tool `echo`"), "{text}");
    assert!(text.contains("MULTI-2"), "{text}");
    // The later upstream names the earlier one.
    assert!(
        text.contains("of server `alpha`") || text.contains("of server `beta`"),
        "{text}"
    );
}
