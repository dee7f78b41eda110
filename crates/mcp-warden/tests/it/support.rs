//! Starting the gateway binary in its two shapes.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
use warden_test::process::Guard;

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mcp-warden"))
}

/// Quotes a string for TOML.
pub fn toml_str(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// `mcp-warden run [extra...] -- <command...>` with piped stdio (stderr inherited).
/// The command line of the pinning fixture (`fixtures/python/pinning_server.py`, stdio) with its
/// `fetch` description read from `description`.
pub fn pinning_server(description: &std::path::Path) -> Vec<String> {
    vec![
        warden_test::deps::python().display().to_string(),
        warden_test::deps::fixture("python/pinning_server.py")
            .display()
            .to_string(),
        "stdio".into(),
        "--description-file".into(),
        description.display().to_string(),
    ]
}

pub fn run_command(extra: &[&str], command: &[&str]) -> Command {
    let mut c = warden_test::process::piped(bin());
    c.arg("run").args(extra).arg("--").args(command);
    c.env("MCP_WARDEN_LOG", "warn");
    // A fresh data directory per gateway: pins (on by default) never leak between tests or
    // into the user's own data directory.
    c.env("MCP_WARDEN_DATA_DIR", fresh_data_dir());
    c
}

/// A new, empty directory under the test target's scratch space.
pub fn fresh_data_dir() -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("run-data")
        .join(format!("{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A running `mcp-warden serve`.
#[derive(Debug)]
pub struct Serve {
    pub guard: Guard,
    pub port: u16,
    pub url: String,
    pub dir: tempfile::TempDir,
}

impl Serve {
    /// Starts `serve` with `upstreams` (TOML text of `[upstreams.*]` tables and any other
    /// keys); `listen` is set to a free loopback port.
    pub async fn start(upstreams: &str) -> anyhow::Result<Serve> {
        let dir = tempfile::tempdir()?;
        let port = warden_test::free_port();
        let config = dir.path().join("warden.toml");
        std::fs::write(
            &config,
            format!("listen = \"127.0.0.1:{port}\"\n{upstreams}\n"),
        )?;
        let guard = Guard::spawn(serve_command(&config, dir.path()))?;
        warden_test::wait_port(port, Duration::from_secs(60)).await?;
        Ok(Serve {
            guard,
            port,
            url: format!("http://127.0.0.1:{port}/mcp"),
            dir,
        })
    }
}

/// Every record of the audit log in the data directory `dir`, read the way an operator would:
/// `mcp-warden audit search --format json` (bounded in time; the command must succeed).
pub async fn audit_records(dir: &std::path::Path) -> Vec<serde_json::Value> {
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        tokio::process::Command::new(bin())
            .args(["audit", "search", "--data-dir"])
            .arg(dir)
            .args(["--format", "json"])
            .env("MCP_WARDEN_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .output(),
    )
    .await
    .expect("audit search finished in time")
    .expect("audit search started");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON record per line"))
        .collect()
}

/// The tool names of a `tools/list` response, sorted.
pub fn sorted_tool_names(list: &serde_json::Value) -> Vec<String> {
    let mut n: Vec<String> = list["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools: {list}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    n.sort();
    n
}

/// `mcp-warden serve --config CONFIG --data-dir DATA` with warn-level logs, no standard input
/// or output and the test's standard error; callers add variables or redirect stderr.
pub fn serve_command(config: &std::path::Path, data_dir: &std::path::Path) -> Command {
    let mut c = Command::new(bin());
    c.arg("serve")
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data_dir)
        .env("MCP_WARDEN_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    c
}

/// `mcp-warden keys --data-dir DIR create --principal PRINCIPAL`: the new API key (bounded in
/// time; the command must succeed).
pub async fn create_api_key(dir: &std::path::Path, principal: &str) -> String {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(bin())
            .arg("keys")
            .arg("--data-dir")
            .arg(dir)
            .args(["create", "--principal", principal, "--format", "json"])
            .env("MCP_WARDEN_LOG", "warn")
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .expect("keys create finished in time")
    .expect("keys create started");
    assert!(
        out.status.success(),
        "keys create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    created["key"].as_str().unwrap().to_owned()
}
