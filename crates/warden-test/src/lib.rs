//! Test harness for mcp-warden (not published).
//!
//! Locates the pinned third-party test dependencies installed by `scripts/test-deps.sh`
//! (Node 22, the official reference servers, the conformance suite, a Python venv with the
//! `mcp` SDK), starts real processes on loopback with guards that stop them by pid, and offers
//! minimal stdio and Streamable HTTP MCP clients with timeouts on every wait.
//!
//! Nothing here is used by the gateway itself.
#![deny(unsafe_code)]
#![expect(
    clippy::unwrap_used,
    reason = "test harness: a broken fixture should fail loudly"
)]

pub mod deps;
pub mod http;
pub mod oauth;
pub mod otlp;
pub mod process;
pub mod stdio;
pub mod tls;

/// A free TCP port on 127.0.0.1 (bound, read, released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Waits until something accepts TCP connections on `127.0.0.1:port`.
pub async fn wait_port(port: u16, timeout: std::time::Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("nothing listens on 127.0.0.1:{port} after {timeout:?}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
