//! Helpers shared by the integration tests.

use std::future::Future;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use url::Url;
use warden_proto::Message;
use warden_upstream::{Connection, ResponseStream, StdioSpec};

/// Upper bound for any single test.
pub(crate) const TEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Request timeout for calls that are expected to be answered.
pub(crate) const CALL: Duration = Duration::from_secs(10);

/// Runs a test body under [`TEST_TIMEOUT`].
pub(crate) async fn bounded<F: Future>(body: F) -> F::Output {
    tokio::time::timeout(TEST_TIMEOUT, body)
        .await
        .expect("test exceeded its time bound")
}

pub(crate) fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A spec running a Python fixture unbuffered.
pub(crate) fn python(name: &str, script: &str) -> StdioSpec {
    let mut spec = StdioSpec::new(name, "python3");
    spec.args = vec!["-u".into(), fixture(script)];
    // Generous: a loaded test machine may take seconds to start Python and see EOF.
    spec.shutdown_grace = Duration::from_secs(10);
    spec
}

pub(crate) fn message(value: Value) -> Message {
    Message::from_value(value).expect("test messages are valid")
}

pub(crate) fn request(id: Value, method: &str, params: Value) -> Message {
    message(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
}

/// Reads a stream to its end: the related messages, then the response.
pub(crate) async fn drain(mut stream: ResponseStream) -> (Vec<Message>, Message) {
    let mut notes = Vec::new();
    loop {
        match stream.next().await {
            Some(Ok(m)) if m.is_response() => {
                assert!(
                    stream.next().await.is_none(),
                    "nothing follows the response"
                );
                return (notes, m);
            }
            Some(Ok(m)) => notes.push(m),
            Some(Err(e)) => panic!("stream failed: {e:?}"),
            None => panic!("stream ended without a response"),
        }
    }
}

/// Sends a request and returns its response.
pub(crate) async fn call(conn: &Connection, method: &str, params: Value) -> Message {
    let stream = conn
        .request(&request(json!(1), method, params), CALL)
        .await
        .expect("request sent");
    drain(stream).await.1
}

/// Polls `condition` every 20 ms until it holds (bounded by the test's timeout).
pub(crate) async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let limit = tokio::time::Instant::now() + Duration::from_secs(15);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < limit,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `(state, pgrp)` of a process from `/proc/<pid>/stat`; `None` once it is gone.
fn proc_stat(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, pgrp))
}

/// True when the process no longer runs (gone, or a zombie waiting for a reaper).
pub(crate) fn is_dead(pid: u32) -> bool {
    proc_stat(pid).is_none_or(|(state, _)| matches!(state, 'Z' | 'X'))
}

/// Live (non-zombie) processes in process group `pgid`.
pub(crate) fn group_members(pgid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .expect("/proc is readable")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(
            |pid| matches!(proc_stat(*pid), Some((s, g)) if g == pgid && !matches!(s, 'Z' | 'X')),
        )
        .collect()
}

/// A captured log, for asserting what does (and does not) reach `tracing`.
#[derive(Clone, Default)]
pub(crate) struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuffer {
    pub(crate) fn contents(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("not poisoned")).into_owned()
    }
}

/// Captures this thread's logs at `level` and above while the guard lives (tests using it
/// run on a current-thread runtime, so the connection's tasks log on this thread too).
pub(crate) fn capture_logs(
    level: tracing::Level,
) -> (LogBuffer, tracing::subscriber::DefaultGuard) {
    let buffer = LogBuffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    (buffer, tracing::subscriber::set_default(subscriber))
}

/// The Python HTTP fixture server, killed when dropped.
pub(crate) struct HttpFixture {
    _child: Child,
    pub(crate) base: Url,
}

impl HttpFixture {
    pub(crate) async fn start(args: &[&str]) -> HttpFixture {
        let mut child = Command::new("python3")
            .arg("-u")
            .arg(fixture("http_server.py"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 runs");
        let stdout = child.stdout.take().expect("piped");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .await
            .expect("fixture prints its port");
        let port: u16 = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected fixture output {line:?}"));
        HttpFixture {
            _child: child,
            base: Url::parse(&format!("http://127.0.0.1:{port}/")).expect("valid url"),
        }
    }

    pub(crate) fn mcp_url(&self) -> Url {
        self.base.join("mcp").expect("valid url")
    }

    /// What the server has seen so far.
    pub(crate) async fn state(&self) -> Value {
        let body = reqwest::get(self.base.join("state").expect("valid url"))
            .await
            .expect("state reachable")
            .bytes()
            .await
            .expect("state readable");
        serde_json::from_slice(&body).expect("state is json")
    }
}
