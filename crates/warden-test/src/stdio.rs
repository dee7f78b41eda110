//! A minimal line-based MCP client over a child's stdin/stdout, with timeouts.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{ChildStdin, ChildStdout};

use crate::process::Guard;

/// Longest wait for one message in tests.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// A stdio MCP peer.
#[derive(Debug)]
pub struct StdioClient {
    /// The process.
    pub guard: Guard,
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
    next_id: i64,
}

impl StdioClient {
    /// Starts `cmd` (with piped stdio).
    pub fn start(cmd: tokio::process::Command) -> anyhow::Result<Self> {
        let mut guard = Guard::spawn(cmd)?;
        let stdin = guard.child().stdin.take();
        let stdout = guard
            .child()
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        Ok(Self {
            guard,
            stdin,
            lines: BufReader::new(stdout).lines(),
            next_id: 1,
        })
    }

    /// Writes raw bytes (a line is not added).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("stdin closed"))?;
        stdin.write_all(bytes).await?;
        stdin.flush().await?;
        Ok(())
    }

    /// Writes one message as a line.
    pub async fn send(&mut self, msg: &Value) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(msg)?;
        line.push(b'\n');
        self.send_raw(&line).await
    }

    /// Reads the next message.
    pub async fn recv(&mut self) -> anyhow::Result<Value> {
        let line = tokio::time::timeout(TIMEOUT, self.lines.next_line())
            .await
            .map_err(|_| anyhow::anyhow!("no message within {TIMEOUT:?}"))??
            .ok_or_else(|| anyhow::anyhow!("stdout closed"))?;
        Ok(serde_json::from_str(&line)?)
    }

    /// Sends a request and returns its response, collecting the messages before it.
    pub async fn request_with(
        &mut self,
        method: &str,
        params: Value,
    ) -> anyhow::Result<(Value, Vec<Value>)> {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await?;
        let mut before = vec![];
        loop {
            let m = self.recv().await?;
            if m.get("id") == Some(&json!(id)) && m.get("method").is_none() {
                return Ok((m, before));
            }
            before.push(m);
        }
    }

    /// Sends a request and returns its response.
    pub async fn request(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        Ok(self.request_with(method, params).await?.0)
    }

    /// Sends a notification.
    pub async fn notify(&mut self, method: &str, params: Value) -> anyhow::Result<()> {
        self.send(&json!({"jsonrpc": "2.0", "method": method, "params": params}))
            .await
    }

    /// Legacy handshake: `initialize` then `notifications/initialized`; returns the result.
    pub async fn initialize(&mut self, version: &str) -> anyhow::Result<Value> {
        let r = self
            .request(
                "initialize",
                json!({"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "warden-test", "version": "0"}}),
            )
            .await?;
        self.notify("notifications/initialized", json!({})).await?;
        r.get("result")
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("initialize failed: {r}"))
    }

    /// Closes stdin (the client goes away).
    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }
}
