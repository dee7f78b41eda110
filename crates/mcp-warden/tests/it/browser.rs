//! A real browser (headless Chromium) as the MCP client of `serve`: a page served from one
//! loopback origin calls the gateway on another, as a web-based MCP client does. The browser,
//! not the test, enforces CORS: it sends the preflights, decides from the gateway's answers
//! whether the page's requests go out, and hides every response the gateway does not allow the
//! page to read.
//!
//! Chromium comes from the Debian package `chromium` (`.ci/run` installs it); `WARDEN_CHROMIUM`
//! names another binary. It is kept off the network: every host but 127.0.0.1 resolves to nothing, and
//! its background services are disabled, so its only traffic is to the two loopback servers.
//!
//! Proves: CAUTH-3 (cross-origin access for the configured origins only, Origin checked first)

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio::sync::mpsc;
use warden_test::deps;
use warden_test::process::Guard;

use crate::support::{serve_command, toml_str};

const BOUND: Duration = Duration::from_secs(60);

/// The browser binary: `WARDEN_CHROMIUM`, else `chromium` from the system.
fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("WARDEN_CHROMIUM") {
        return PathBuf::from(path);
    }
    for candidate in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    panic!(
        "a real browser is needed: install Chromium (Debian package `chromium`, which .ci/run \
         installs) or set WARDEN_CHROMIUM to its binary"
    );
}

/// The page a browser runs: the whole MCP exchange of a 2025-11-25 client over `fetch`, every
/// step's outcome reported back to its own server as JSON.
const PAGE_SCRIPT: &str = r#"
const results = {};
const base = {"content-type": "application/json", "accept": "application/json, text/event-stream"};
async function step(name, run) {
  try { results[name] = await run(); } catch (e) { results[name] = {error: String(e)}; }
}
async function post(body, extra) {
  const r = await fetch(GATEWAY, {method: "POST", headers: {...base, ...extra}, body: JSON.stringify(body)});
  const text = await r.text();
  return {status: r.status, session: r.headers.get("mcp-session-id"),
          challenge: r.headers.get("www-authenticate"), body: text};
}
(async () => {
  const auth = {"authorization": "Bearer " + KEY};
  const init = {jsonrpc: "2.0", id: 1, method: "initialize", params: {protocolVersion: "2025-11-25",
                capabilities: {}, clientInfo: {name: "browser-page", version: "1"}}};
  await step("unauthenticated", () => post(init, {}));
  await step("initialize", () => post(init, auth));
  const session = results.initialize && results.initialize.session;
  const inSession = {...auth, "mcp-session-id": session, "mcp-protocol-version": "2025-11-25"};
  await step("initialized", () => post({jsonrpc: "2.0", method: "notifications/initialized"}, inSession));
  await step("list", () => post({jsonrpc: "2.0", id: 2, method: "tools/list"}, inSession));
  await step("call", () => post({jsonrpc: "2.0", id: 3, method: "tools/call",
                                  params: {name: "py__echo", arguments: {text: "héllo from a page"}}}, inSession));
  await step("delete", async () => {
    const r = await fetch(GATEWAY, {method: "DELETE", headers: inSession});
    return {status: r.status};
  });
  await fetch("/report", {method: "POST", body: JSON.stringify(results)});
})();
"#;

/// A static server for the page on its own loopback origin: `GET /` is the page, `POST /report`
/// hands the page's results to the test.
async fn page_server(gateway: String, key: String) -> (u16, mpsc::Receiver<Value>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let page = format!(
        "<!doctype html><meta charset=utf-8><title>page</title><script>\nconst GATEWAY = {};\nconst KEY = {};\n{PAGE_SCRIPT}</script>",
        json!(gateway),
        json!(key)
    );
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (page, tx) = (page.clone(), tx.clone());
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut reader = BufReader::new(read);
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                    return;
                }
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).await.unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':')
                        && name.eq_ignore_ascii_case("content-length")
                    {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
                let response = if request_line.starts_with("GET / ") {
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                        page.len()
                    )
                } else if request_line.starts_with("POST /report ") {
                    let mut body = vec![0; length.min(1 << 20)];
                    if reader.read_exact(&mut body).await.is_ok()
                        && let Ok(value) = serde_json::from_slice(&body)
                    {
                        let _ = tx.send(value).await;
                    }
                    "HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n".to_owned()
                } else {
                    "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                        .to_owned()
                };
                let _ = write.write_all(response.as_bytes()).await;
                let _ = write.shutdown().await;
            });
        }
    });
    (port, rx)
}

/// Opens `url` in headless Chromium, kept off every network but loopback.
fn open_in_browser(url: &str, profile: &Path) -> Guard {
    let mut command = Command::new(chromium());
    command
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-domain-reliability",
            "--disable-client-side-phishing-detection",
            "--no-pings",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Guard::spawn(command).unwrap()
}

/// A page on its own loopback origin, ready to be opened.
struct Page {
    port: u16,
    reports: mpsc::Receiver<Value>,
}

impl Page {
    async fn serve(gateway: &str, key: &str) -> Page {
        let (port, reports) = page_server(gateway.to_owned(), key.to_owned()).await;
        Page { port, reports }
    }

    /// Opens the page in a fresh browser profile and returns what it reported.
    async fn visit(&mut self) -> Value {
        let profile = tempfile::tempdir().unwrap();
        let _browser = open_in_browser(&format!("http://127.0.0.1:{}/", self.port), profile.path());
        tokio::time::timeout(BOUND, self.reports.recv())
            .await
            .expect("the page reported in time")
            .expect("the page server is running")
    }
}

#[tokio::test]
async fn a_page_of_a_cors_origin_uses_the_gateway_and_any_other_page_is_blocked_by_the_browser() {
    let dir = tempfile::tempdir().unwrap();
    let key = crate::support::create_api_key(dir.path(), "page").await;
    let port = warden_test::free_port();
    let gateway = format!("http://127.0.0.1:{port}/mcp");

    // Both pages run from loopback origins, which the default `allowed_origins` admits; only
    // the first is a CORS origin. Its port is known once its server is bound.
    let mut allowed = Page::serve(&gateway, &key).await;
    let mut other = Page::serve(&gateway, &key).await;
    let server = deps::fixture("python/server.py");
    std::fs::write(
        dir.path().join("warden.toml"),
        format!(
            "listen = \"127.0.0.1:{port}\"\ncors_origins = [\"http://127.0.0.1:{}\"]\n\
             [auth]\napi_keys = true\n\
             [upstreams.py]\ncommand = {}\nargs = [{}, \"stdio\"]\n[upstreams.py.sandbox]\nenabled = false\n",
            allowed.port,
            toml_str(&deps::python().to_string_lossy()),
            toml_str(&server.to_string_lossy()),
        ),
    )
    .unwrap();
    let mut serve =
        Guard::spawn(serve_command(&dir.path().join("warden.toml"), dir.path())).unwrap();
    warden_test::wait_port(port, BOUND).await.unwrap();

    let report = allowed.visit().await;
    // Without credentials: a 401 the page can read, with the challenge it needs.
    assert_eq!(report["unauthenticated"]["status"], 401, "{report:#}");
    assert!(
        report["unauthenticated"]["challenge"]
            .as_str()
            .is_some_and(|c| c.starts_with("Bearer")),
        "{report:#}"
    );
    assert_eq!(report["initialize"]["status"], 200, "{report:#}");
    assert!(
        report["initialize"]["session"]
            .as_str()
            .is_some_and(|s| s.len() >= 32),
        "the page reads the session id: {report:#}"
    );
    assert_eq!(report["initialized"]["status"], 202, "{report:#}");
    assert_eq!(report["list"]["status"], 200, "{report:#}");
    assert!(
        report["list"]["body"]
            .as_str()
            .is_some_and(|b| b.contains("py__echo")),
        "{report:#}"
    );
    assert_eq!(report["call"]["status"], 200, "{report:#}");
    assert!(
        report["call"]["body"]
            .as_str()
            .is_some_and(|b| b.contains("héllo from a page")),
        "{report:#}"
    );
    assert_eq!(report["delete"]["status"], 204, "{report:#}");

    // The other page's requests never get past the browser: its preflights are refused, so
    // every step fails as a network error, before any request with a body is sent.
    let report = other.visit().await;

    for step in [
        "unauthenticated",
        "initialize",
        "initialized",
        "list",
        "call",
        "delete",
    ] {
        assert!(
            report[step]["error"]
                .as_str()
                .is_some_and(|e| e.contains("TypeError")),
            "{step}: {report:#}"
        );
    }
    // Not one of them reached the gateway (the browser did not just hide the answers): once
    // the gateway stopped (its audit log written out), the only refused authentication and the
    // only session on record are the first page's.
    serve.terminate(BOUND).await.unwrap();
    let records = crate::support::audit_records(dir.path()).await;
    let count = |event: &str, outcome: Option<&str>| {
        records
            .iter()
            .filter(|r| r["event"] == event && outcome.is_none_or(|o| r["outcome"] == o))
            .count()
    };
    assert_eq!(count("auth", Some("failure")), 1, "{records:#?}");
    assert_eq!(count("session_start", None), 1, "{records:#?}");
    assert_eq!(count("auth", Some("success")), 5, "{records:#?}");
}
