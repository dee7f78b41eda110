//! Request-id multiplexing: two HTTP clients through `serve` to one stdio upstream.

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::Semaphore;
use warden_test::http::HttpClient;

use super::{python_stdio, stdio_upstream};
use crate::support::Serve;

/// Calls per client.
const CALLS: i64 = 200;
/// Calls in flight per client (below the default `max_streams_per_session` of 16).
const IN_FLIGHT: usize = 8;

/// One call of client `who` with JSON-RPC id `i`, checked against what that client sent.
///
/// Both clients use the same ids (1..=CALLS) and, for `progress`, the same progress tokens, so
/// any mix-up between them is visible: every 5th call is `progress` (steps differ per client:
/// a notification for the other client's call with the same token would show the wrong
/// `total`), the rest `echo` a text naming the client and the call.
async fn call(c: &HttpClient, who: usize, i: i64) -> anyhow::Result<()> {
    if i % 5 == 0 {
        let steps = 2 + who as i64;
        let token = format!("tok-{i}");
        let r = c
            .post(
                &json!({"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {
                "name": "py__progress", "arguments": {"steps": steps},
                "_meta": {"progressToken": token}}}),
            )
            .await?;
        anyhow::ensure!(r.status == 200, "HTTP {}: {}", r.status, r.text);
        let (last, notes) = r
            .messages
            .split_last()
            .ok_or_else(|| anyhow::anyhow!("empty answer"))?;
        anyhow::ensure!(last["id"] == i, "client {who} call {i}: response {last}");
        let want = format!("completed {steps} steps");
        anyhow::ensure!(
            last["result"]["content"][0]["text"] == want.as_str(),
            "client {who} call {i}: {last}"
        );
        let progress: Vec<(Value, Value, Value)> = notes
            .iter()
            .map(|n| {
                (
                    n["method"].clone(),
                    n["params"]["progressToken"].clone(),
                    n["params"]["total"].clone(),
                )
            })
            .collect();
        let expected: Vec<(Value, Value, Value)> = (0..steps)
            .map(|_| (json!("notifications/progress"), json!(token), json!(steps)))
            .collect();
        anyhow::ensure!(
            progress == expected,
            "client {who} call {i}: notifications {notes:?}"
        );
    } else {
        let text = format!("client {who} call {i}");
        let r = c
            .post(
                &json!({"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {
                "name": "py__echo", "arguments": {"text": text}}}),
            )
            .await?;
        anyhow::ensure!(r.status == 200, "HTTP {}: {}", r.status, r.text);
        anyhow::ensure!(
            r.messages.len() == 1,
            "client {who} call {i}: {:?}",
            r.messages
        );
        let m = &r.messages[0];
        anyhow::ensure!(m["id"] == i, "client {who} call {i}: response {m}");
        anyhow::ensure!(
            m["result"]["content"][0]["text"] == text.as_str(),
            "client {who} call {i}: {m}"
        );
    }
    Ok(())
}

async fn drive(who: usize, c: HttpClient) -> anyhow::Result<usize> {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut set = tokio::task::JoinSet::new();
    for i in 1..=CALLS {
        let permit = slots.clone().acquire_owned().await?;
        let c = c.clone();
        set.spawn(async move {
            let _permit = permit;
            call(&c, who, i).await
        });
    }
    let mut done = 0;
    while let Some(r) = set.join_next().await {
        r??;
        done += 1;
    }
    Ok(done)
}

/// 2 × 200 concurrent calls with identical request ids and progress tokens on both sessions:
/// each client sees only the responses and notifications of its own requests.
// Proves: DATA-3 (one client never reads another's traffic through a shared upstream).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_http_clients_through_serve_only_see_their_own_responses() {
    let gateway = Serve::start(&stdio_upstream("py", &python_stdio(&[]), ""))
        .await
        .unwrap();
    let mut clients = vec![];
    for _ in 0..2 {
        let mut c = HttpClient::new(&gateway.url);
        c.initialize("2025-11-25").await.unwrap();
        clients.push(c);
    }
    let handles: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(who, c)| tokio::spawn(drive(who, c)))
        .collect();
    for (who, h) in handles.into_iter().enumerate() {
        let done = tokio::time::timeout(std::time::Duration::from_secs(120), h)
            .await
            .unwrap_or_else(|_| panic!("client {who} did not finish"))
            .unwrap()
            .unwrap_or_else(|e| panic!("client {who}: {e:#}"));
        assert_eq!(done, CALLS as usize);
    }
}
