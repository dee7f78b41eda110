//! `notifications/tools/list_changed` from an upstream reaches the clients of `serve`.
//!
//! Neither server-everything nor server.py changes its tool list at runtime (server-everything
//! only registers its client-dependent tools once, right after `initialized`), so the upstream
//! is `fixtures/python/list_changed_server.py` (Python SDK): its `add_tool(name)` registers a
//! tool and sends `notifications/tools/list_changed`.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use warden_test::deps;
use warden_test::http::HttpClient;

use super::stdio_upstream;
use crate::support::Serve;

/// Longest wait for one notification.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(20);

/// A session's standalone SSE stream (`GET /mcp`), read on a task; messages arrive on `rx`.
struct GetStream {
    rx: mpsc::Receiver<Value>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for GetStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GetStream {
    /// Opens it over a plain TCP connection (the harness client reads whole bodies only).
    async fn open(port: u16, c: &HttpClient) -> anyhow::Result<GetStream> {
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).await?;
        let session = c.session.clone().unwrap_or_default();
        let version = c.version.clone().unwrap_or_default();
        let head = format!(
            "GET /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\
             Mcp-Session-Id: {session}\r\nMcp-Protocol-Version: {version}\r\n\r\n"
        );
        tcp.write_all(head.as_bytes()).await?;
        let mut reader = BufReader::new(tcp);
        let mut status = String::new();
        let mut chunked = false;
        tokio::time::timeout(NOTIFY_TIMEOUT, async {
            reader.read_line(&mut status).await?;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).await?;
                let l = line.to_ascii_lowercase();
                if l.starts_with("transfer-encoding:") && l.contains("chunked") {
                    chunked = true;
                }
                if line == "\r\n" || line.is_empty() {
                    return anyhow::Ok(());
                }
            }
        })
        .await??;
        anyhow::ensure!(
            status.starts_with("HTTP/1.1 200"),
            "GET stream: {}",
            status.trim()
        );
        let (tx, rx) = mpsc::channel(64);
        let task = tokio::spawn(async move {
            let mut pending = String::new();
            loop {
                let data = if chunked {
                    let mut size = String::new();
                    if reader.read_line(&mut size).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
                        return;
                    };
                    let mut buf = vec![0; n + 2];
                    if n == 0 || reader.read_exact(&mut buf).await.is_err() {
                        return;
                    }
                    buf.truncate(n);
                    buf
                } else {
                    let mut buf = vec![0; 8192];
                    match reader.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            buf.truncate(n);
                            buf
                        }
                    }
                };
                pending.push_str(&String::from_utf8_lossy(&data));
                pending = pending.replace("\r\n", "\n");
                while let Some(end) = pending.find("\n\n") {
                    let event: String = pending.drain(..end + 2).collect();
                    for m in warden_test::http::sse_messages(&event) {
                        if tx.send(m).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Ok(GetStream { rx, task })
    }

    /// The next message with this method (others are skipped), within [`NOTIFY_TIMEOUT`].
    async fn next_with(&mut self, method: &str) -> anyhow::Result<Value> {
        tokio::time::timeout(NOTIFY_TIMEOUT, async {
            while let Some(m) = self.rx.recv().await {
                if m["method"] == method {
                    return Ok(m);
                }
            }
            anyhow::bail!("GET stream ended before {method}")
        })
        .await
        .map_err(|_| anyhow::anyhow!("no {method} within {NOTIFY_TIMEOUT:?}"))?
    }
}

fn tool_names(list: &Value) -> Vec<String> {
    list["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools: {list}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

/// The upstream adds a tool during a call of session A: both sessions (A, which called, and
/// B, which did nothing) get `notifications/tools/list_changed`, and the next `tools/list`
/// shows the new tool, which can be called.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_list_changed_reaches_every_session_of_serve() {
    let server = vec![
        deps::python().display().to_string(),
        deps::fixture("python/list_changed_server.py")
            .display()
            .to_string(),
        "stdio".to_owned(),
    ];
    // This test is about forwarding list_changed; with pinning's default (`block`) a tool added
    // after the first list is held until approved (see tests/it/pinning.rs), so only report.
    let gateway = Serve::start(&stdio_upstream("lc", &server, "pinning = \"report\""))
        .await
        .unwrap();
    let mut a = HttpClient::new(&gateway.url);
    let init = a.initialize("2025-11-25").await.unwrap();
    assert_eq!(init["capabilities"]["tools"]["listChanged"], true, "{init}");
    let mut b = HttpClient::new(&gateway.url);
    b.initialize("2025-11-25").await.unwrap();
    let mut before = tool_names(&b.request("tools/list", json!({})).await.unwrap());
    before.sort();
    assert_eq!(before, ["lc__add_tool"]);

    let mut a_stream = GetStream::open(gateway.port, &a).await.unwrap();
    let mut b_stream = GetStream::open(gateway.port, &b).await.unwrap();
    let r = a
        .post(
            &json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
            "name": "lc__add_tool", "arguments": {"name": "fresh_tool"}}}),
        )
        .await
        .unwrap();
    assert_eq!(
        r.last()["result"]["content"][0]["text"],
        "added fresh_tool",
        "{}",
        r.text
    );

    // A may get it on the stream of its call or on its GET stream.
    let on_post = r
        .messages
        .iter()
        .any(|m| m["method"] == "notifications/tools/list_changed");
    if !on_post {
        a_stream
            .next_with("notifications/tools/list_changed")
            .await
            .unwrap();
    }
    b_stream
        .next_with("notifications/tools/list_changed")
        .await
        .unwrap();

    let mut after = tool_names(&b.request("tools/list", json!({})).await.unwrap());
    after.sort();
    assert_eq!(after, ["lc__add_tool", "lc__fresh_tool"]);
    let called = b
        .request(
            "tools/call",
            json!({"name": "lc__fresh_tool", "arguments": {}}),
        )
        .await
        .unwrap();
    assert_eq!(
        called["result"]["content"][0]["text"], "I am fresh_tool.",
        "{called}"
    );
}
