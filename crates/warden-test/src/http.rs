//! A minimal Streamable HTTP MCP client for tests (JSON and SSE responses, sessions).

use std::time::Duration;

use serde_json::{Value, json};

/// One HTTP response, decoded.
#[derive(Debug)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: reqwest::header::HeaderMap,
    /// JSON-RPC messages in the body (one for JSON, every event for SSE).
    pub messages: Vec<Value>,
    /// Raw body text.
    pub text: String,
}

impl Response {
    /// The last message (the response, for a request).
    pub fn last(&self) -> Value {
        self.messages.last().cloned().unwrap_or(Value::Null)
    }
}

/// A client bound to one endpoint, optionally holding a legacy session.
#[derive(Debug, Clone)]
pub struct HttpClient {
    /// The endpoint URL.
    pub url: String,
    /// Legacy session id.
    pub session: Option<String>,
    /// Negotiated protocol version.
    pub version: Option<String>,
    http: reqwest::Client,
    next_id: i64,
}

impl HttpClient {
    /// A client for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            session: None,
            version: None,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                // The gateway closes a kept-alive connection that sends no request head within
                // `header_read_timeout` (1 s in some tests): a pooled connection idle for about
                // that long can be closed while a request is being written on it. Reuse only
                // connections idle for less than half of that.
                .pool_idle_timeout(Duration::from_millis(500))
                .build()
                .unwrap(),
            next_id: 1,
        }
    }

    /// POSTs `body` with extra headers.
    pub async fn post_raw(
        &self,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Response> {
        let mut req = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body);
        if let Some(s) = &self.session {
            req = req.header("mcp-session-id", s);
        }
        if let Some(v) = &self.version {
            req = req.header("mcp-protocol-version", v);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let is_sse = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let text = resp.text().await?;
        let messages = if is_sse {
            sse_messages(&text)
        } else {
            serde_json::from_str::<Value>(&text)
                .map(|v| vec![v])
                .unwrap_or_default()
        };
        Ok(Response {
            status,
            headers,
            messages,
            text,
        })
    }

    /// POSTs one JSON-RPC message.
    pub async fn post(&self, msg: &Value) -> anyhow::Result<Response> {
        self.post_raw(serde_json::to_vec(msg)?, &[]).await
    }

    /// Sends a request and returns the response message.
    pub async fn request(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let r = self
            .post(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await?;
        Ok(r.last())
    }

    /// Legacy handshake; stores the session id and version.
    pub async fn initialize(&mut self, version: &str) -> anyhow::Result<Value> {
        let r = self
            .post(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "warden-test", "version": "0"}}}))
            .await?;
        anyhow::ensure!(r.status == 200, "initialize: HTTP {}: {}", r.status, r.text);
        self.session = r
            .headers
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let result = r
            .last()
            .get("result")
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("initialize failed: {}", r.text))?;
        self.version = result["protocolVersion"].as_str().map(str::to_owned);
        let n = self
            .post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await?;
        anyhow::ensure!(
            n.status == 202,
            "initialized notification: HTTP {}",
            n.status
        );
        Ok(result)
    }

    /// Ends the session with DELETE; returns the status.
    pub async fn delete(&self) -> anyhow::Result<u16> {
        let mut req = self.http.delete(&self.url);
        if let Some(s) = &self.session {
            req = req.header("mcp-session-id", s);
        }
        Ok(req.send().await?.status().as_u16())
    }
}

/// JSON-RPC messages in an SSE body.
pub fn sse_messages(text: &str) -> Vec<Value> {
    let mut out = vec![];
    for event in text.split("\n\n") {
        let data: Vec<&str> = event
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect();
        if data.is_empty() {
            continue;
        }
        if let Ok(v) = serde_json::from_str::<Value>(&data.join("\n")) {
            out.push(v);
        }
    }
    out
}
