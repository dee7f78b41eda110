//! JSON-RPC batches of a 2025-03-26 client through `serve`, in front of a real Python SDK
//! server (the upstream never sees a batch: each element is guarded and forwarded alone).

use serde_json::{Value, json};
use warden_test::deps;
use warden_test::http::HttpClient;

use crate::support::{Serve, toml_str};

#[tokio::test]
async fn serve_answers_a_batch_element_by_element() {
    let server = deps::fixture("python/server.py");
    let serve = Serve::start(&format!(
        "[upstreams.py]\ncommand = {}\nargs = [{}, \"stdio\"]\n[upstreams.py.sandbox]\nenabled = false\n",
        toml_str(&deps::python().to_string_lossy()),
        toml_str(&server.to_string_lossy()),
    ))
    .await
    .unwrap();
    let mut client = HttpClient::new(&serve.url);
    let init = client.initialize("2025-03-26").await.unwrap();
    assert_eq!(init["protocolVersion"], "2025-03-26", "{init}");

    let key = "AKIAZ3MSJV7WQ4TLBN2K";
    let batch = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
         "params": {"name": "py__add", "arguments": {"a": 2, "b": 3}}},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
         "params": {"name": "py__echo", "arguments": {"text": format!("key={key}")}}},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
         "params": {"name": "py__missing", "arguments": {}}},
        {"jsonrpc": "2.0", "method": "notifications/roots/list_changed"},
        {"jsonrpc": "2.0", "id": 4, "method": "ping"},
    ]);
    let response = client
        .post_raw(serde_json::to_vec(&batch).unwrap(), &[])
        .await
        .unwrap();
    assert_eq!(response.status, 200, "{}", response.text);
    let by_id = |id: i64| -> Value {
        response
            .messages
            .iter()
            .find(|m| m["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no answer {id}: {}", response.text))
    };
    assert_eq!(by_id(1)["result"]["content"][0]["text"], "5");
    let echoed = by_id(2)["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        !echoed.contains(key) && echoed.contains("[REDACTED:aws-access-token]"),
        "{echoed}"
    );
    assert!(by_id(3).get("error").is_some(), "{}", by_id(3));
    assert_eq!(by_id(4)["result"], json!({}));

    // The session goes on as before.
    let after = client.request("tools/list", json!({})).await.unwrap();
    assert!(after["result"]["tools"].is_array(), "{after}");
}
