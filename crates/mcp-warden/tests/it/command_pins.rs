//! Command pins (RUN-3) and OS keyring references, end to end: the real `mcp-warden run` and
//! `serve` binaries start a real command (a shell script in a temporary directory that records
//! each time it runs in a marker file, then execs the Python SDK fixture server). Changing the
//! script's bytes must stop the next start *before the script runs* (the marker proves it, at
//! the OS level), until `mcp-warden pins approve <upstream> --command`.
//!
//! Keyring: a secret stored in the kernel keyring (keyutils, through the `keyring` crate) reaches
//! the upstream's environment through `env = { X = "keyring:SERVICE/USER" }`, and appears in no
//! log line and no audit record; the audit key can live in the keyring too.
//!
//! Proves: RUN-3, SUP-2, RUN-4, MON-5.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
use warden_test::deps;
use warden_test::process::Guard;

use crate::support::{bin, toml_str};

/// Longest any gateway in these tests may take to start, serve and stop.
const BOUND: Duration = Duration::from_secs(60);

/// A test's directory: the script, its marker, the data directory, logs.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let s = Setup {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(s.out()).unwrap();
        s.write_script("");
        s
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The only directory the sandboxed script may write.
    fn out(&self) -> PathBuf {
        self.path("out")
    }

    fn marker(&self) -> PathBuf {
        self.out().join("marker")
    }

    fn script(&self) -> PathBuf {
        self.path("server.sh")
    }

    fn data(&self) -> PathBuf {
        self.path("data")
    }

    /// The server script: one marker line per run (with `$WARDEN_TEST_SECRET`, when set),
    /// then the real MCP server given as its arguments. `extra` changes its bytes.
    fn write_script(&self, extra: &str) {
        self.write_script_run_by("/bin/sh", extra);
    }

    /// The same script, run by the `#!` interpreter `interpreter`.
    fn write_script_run_by(&self, interpreter: &str, extra: &str) {
        let text = format!(
            "#!{interpreter}\n# {extra}\nprintf 'ran %s\\n' \"${{WARDEN_TEST_SECRET:-}}\" >> {}\nexec \"$@\"\n",
            shell_quote(&self.marker().display().to_string())
        );
        std::fs::write(self.script(), text).unwrap();
        std::fs::set_permissions(self.script(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// Starts `run` once and checks that it refused a changed command before the script ran
    /// (still `runs` runs); returns stderr.
    async fn assert_refused(&self, config: &Path, runs: usize) -> String {
        let (status, stderr) = self.run_once(config).await;
        assert!(!status.success(), "a changed command must not start");
        assert_eq!(self.runs(), runs, "the changed script ran:\n{stderr}");
        assert!(
            stderr.contains("its command changed since it was pinned"),
            "{stderr}"
        );
        stderr
    }

    /// How many times the script ran.
    fn runs(&self) -> usize {
        std::fs::read_to_string(self.marker())
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }

    /// The server command after the script: the Python SDK fixture over stdio.
    /// `[upstreams.marked]` running the script with the fixture server's arguments, followed
    /// by `extra` (more keys of the upstream, then other sections).
    fn upstream_toml(&self, extra: &str) -> String {
        let args: Vec<String> = self.server_args().iter().map(|a| toml_str(a)).collect();
        format!(
            "[upstreams.marked]\ncommand = {}\nargs = [{}]\n{extra}",
            toml_str(&self.script().display().to_string()),
            args.join(", ")
        )
    }

    fn server_args(&self) -> Vec<String> {
        vec![
            deps::python().display().to_string(),
            deps::fixture("python/server.py").display().to_string(),
            "stdio".into(),
        ]
    }

    /// A configuration: `extra`, and a sandbox that may write the marker directory.
    fn config(&self, extra: &str) -> PathBuf {
        let path = self.path("warden.toml");
        std::fs::write(
            &path,
            // `extra` first: its top-level keys must precede every table.
            format!(
                "{extra}\n[sandbox]\nwrite = [{}]\n",
                toml_str(&self.out().display().to_string())
            ),
        )
        .unwrap();
        path
    }

    /// `mcp-warden run --config C --data-dir D -- server.sh <server>`: a client that sends
    /// nothing (stdin closed), so the gateway starts the server, sees the client gone and
    /// stops. Returns the exit status and stderr.
    async fn run_once(&self, config: &Path) -> (std::process::ExitStatus, String) {
        let mut c = Command::new(bin());
        c.arg("run")
            .arg("--config")
            .arg(config)
            .arg("--data-dir")
            .arg(self.data())
            .arg("--")
            .arg(self.script())
            .args(self.server_args())
            .env("MCP_WARDEN_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut guard = Guard::spawn(c).unwrap();
        let mut stderr = guard.child().stderr.take().unwrap();
        let read = tokio::spawn(async move {
            let mut text = String::new();
            tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut text)
                .await
                .unwrap();
            text
        });
        let status = guard.wait(BOUND).await.unwrap();
        (status, read.await.unwrap())
    }

    /// `mcp-warden pins ARGS... --data-dir D`, returning stdout.
    async fn pins(&self, args: &[&str]) -> String {
        let out = Command::new(bin())
            .arg("pins")
            .args(args)
            .arg("--data-dir")
            .arg(self.data())
            .env("MCP_WARDEN_LOG", "warn")
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "pins {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// A running `serve` with stderr in a file, stopped with SIGTERM (so the audit log closes).
struct Served {
    guard: Guard,
    stderr: PathBuf,
    port: u16,
}

impl Served {
    async fn start(s: &Setup, config_extra: &str, name: &str) -> Served {
        let port = warden_test::free_port();
        let config = s.config(&format!("listen = \"127.0.0.1:{port}\"\n{config_extra}"));
        let stderr = s.path(&format!("{name}.stderr"));
        let mut c = crate::support::serve_command(&config, &s.data());
        c.env("MCP_WARDEN_LOG", "debug")
            .stderr(std::fs::File::create(&stderr).unwrap());
        let guard = Guard::spawn(c).unwrap();
        warden_test::wait_port(port, BOUND).await.unwrap();
        Served {
            guard,
            stderr,
            port,
        }
    }

    /// `tools/list` through the gateway: the names of the tools the client sees.
    async fn tool_names(&self) -> Vec<String> {
        let mut client =
            warden_test::http::HttpClient::new(format!("http://127.0.0.1:{}/mcp", self.port));
        client.initialize("2025-11-25").await.unwrap();
        let tools = client
            .request("tools/list", serde_json::json!({}))
            .await
            .unwrap();
        tools["result"]["tools"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// SIGTERM, then wait: the gateway shuts its upstreams down and closes the audit log.
    async fn stop(mut self) -> String {
        let status = self.guard.terminate(BOUND).await.unwrap();
        assert!(status.success(), "serve exited with {status}");
        std::fs::read_to_string(&self.stderr).unwrap()
    }
}

// Proves: RUN-3
#[tokio::test]
async fn run_refuses_a_changed_command_before_it_runs_until_approved() {
    let s = Setup::new();
    let config = s.config("");
    let (status, stderr) = s.run_once(&config).await;
    assert!(status.success(), "first start: {status}\n{stderr}");
    assert_eq!(s.runs(), 1, "the first start ran the script once\n{stderr}");
    let pins = s.pins(&["list", "--format", "json"]).await;
    let list: serde_json::Value = serde_json::from_str(&pins).unwrap();
    let command = list
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "command")
        .unwrap_or_else(|| panic!("no command pin: {pins}"));
    let pin_id = command["upstream"].as_str().unwrap().to_owned();
    let old_digest = command["pinned"]["executable"]["sha256"]
        .as_str()
        .unwrap()
        .to_owned();

    // Same bytes: starts again.
    let (status, _) = s.run_once(&config).await;
    assert!(status.success());
    assert_eq!(s.runs(), 2);

    // Changed bytes: refused, and the script never ran.
    s.write_script("changed");
    let stderr = s.assert_refused(&config, 2).await;
    assert!(
        stderr.contains(&format!("executable digest: {old_digest} -> sha256:")),
        "{stderr}"
    );
    assert!(stderr.contains("mcp-warden pins approve"), "{stderr}");
    // Still refused on the next start: nothing was approved.
    let (status, _) = s.run_once(&config).await;
    assert!(!status.success());
    assert_eq!(s.runs(), 2);

    // The diff names old and new; approval lets it start.
    let diff = s.pins(&["diff", &pin_id, "--command"]).await;
    assert!(diff.contains(&old_digest), "{diff}");
    let approved = s.pins(&["approve", &pin_id, "--command"]).await;
    assert!(approved.contains("approved the command"), "{approved}");
    let (status, stderr) = s.run_once(&config).await;
    assert!(status.success(), "approved start: {status}\n{stderr}");
    assert_eq!(s.runs(), 3);

    // The audit log has the first use and the refusal.
    let audit = std::fs::read_to_string(s.data().join("audit.jsonl")).unwrap();
    assert!(audit.contains("\"action\":\"command_pinned\""), "{audit}");
    assert!(audit.contains("\"action\":\"command_refused\""), "{audit}");
}

// Proves: RUN-3
#[tokio::test]
async fn a_changed_shebang_interpreter_refuses_the_start_before_the_script_runs() {
    let s = Setup::new();
    // The script is run by an interpreter of its own (itself a script run by /bin/sh).
    let interpreter = s.path("interp");
    let write_interpreter = |extra: &str| {
        std::fs::write(
            &interpreter,
            format!("#!/bin/sh\n# {extra}\nexec /bin/sh \"$@\"\n"),
        )
        .unwrap();
        std::fs::set_permissions(&interpreter, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    write_interpreter("");
    s.write_script_run_by(&interpreter.display().to_string(), "");
    let config = s.config("");
    let (status, stderr) = s.run_once(&config).await;
    assert!(status.success(), "first start: {status}\n{stderr}");
    assert_eq!(s.runs(), 1, "{stderr}");
    let pins = s.pins(&["list", "--format", "json"]).await;
    let real = std::fs::canonicalize(&interpreter).unwrap();
    assert!(
        pins.contains(&real.display().to_string()),
        "the interpreter is pinned: {pins}"
    );

    // The script is unchanged; its interpreter's bytes changed: refused, nothing ran.
    write_interpreter("changed");
    let stderr = s.assert_refused(&config, 1).await;
    assert!(stderr.contains("interpreter 1 digest"), "{stderr}");
}

// Proves: RUN-3
#[tokio::test]
async fn a_remembered_digest_does_not_hide_a_change_of_bytes() {
    let s = Setup::new();
    let config = s.config("");
    // Digests are remembered only for files that settled (unchanged for 2 s).
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let (status, stderr) = s.run_once(&config).await;
    assert!(status.success(), "first start: {status}\n{stderr}");
    let cache = std::fs::read_to_string(s.data().join("command-digests.json")).unwrap();
    let script = std::fs::canonicalize(s.script()).unwrap();
    assert!(
        cache.contains(&format!("\"{}\"", script.display())),
        "the settled script is remembered: {cache}"
    );
    let (status, _) = s.run_once(&config).await;
    assert!(status.success());
    assert_eq!(s.runs(), 2);

    // Same length, modification time put back: only the ctime tells.
    let before = std::fs::metadata(s.script()).unwrap();
    let text = std::fs::read_to_string(s.script()).unwrap();
    let changed = text.replacen("ran", "RAN", 1);
    assert_eq!(changed.len(), text.len());
    std::fs::write(s.script(), changed).unwrap();
    std::fs::File::options()
        .write(true)
        .open(s.script())
        .unwrap()
        .set_modified(before.modified().unwrap())
        .unwrap();
    let after = std::fs::metadata(s.script()).unwrap();
    assert_eq!(after.len(), before.len());
    assert_eq!(after.modified().unwrap(), before.modified().unwrap());
    s.assert_refused(&config, 2).await;
}

// Proves: RUN-3
#[tokio::test]
async fn report_mode_warns_and_starts_a_changed_command() {
    let s = Setup::new();
    let config = s.config("command_pinning = \"report\"");
    assert!(s.run_once(&config).await.0.success());
    s.write_script("changed");
    let (status, stderr) = s.run_once(&config).await;
    assert!(status.success(), "{stderr}");
    assert_eq!(s.runs(), 2);
    assert!(
        stderr.contains("command changed since it was pinned"),
        "{stderr}"
    );
    let audit = std::fs::read_to_string(s.data().join("audit.jsonl")).unwrap();
    assert!(audit.contains("\"action\":\"command_changed\""), "{audit}");
}

// Proves: RUN-3
#[tokio::test]
async fn serve_does_not_start_a_changed_upstream_until_approved() {
    let s = Setup::new();
    let upstream = s.upstream_toml("");
    let served = Served::start(&s, &upstream, "first").await;
    assert!(!served.tool_names().await.is_empty());
    served.stop().await;
    // (The gateway may start a second process of the same command for legacy clients.)
    let ran = s.runs();
    assert!(ran >= 1);

    s.write_script("changed");
    let served = Served::start(&s, &upstream, "changed").await;
    // Served without it: no tool of `marked`, and the script never ran.
    assert!(served.tool_names().await.is_empty());
    let log = served.stop().await;
    assert_eq!(s.runs(), ran, "the changed script ran\n{log}");
    assert!(
        log.contains("its command changed since it was pinned"),
        "{log}"
    );

    s.pins(&["approve", "marked", "--command"]).await;
    let served = Served::start(&s, &upstream, "approved").await;
    assert!(!served.tool_names().await.is_empty());
    served.stop().await;
    assert!(s.runs() > ran);
}

/// A keyring entry created by a test, deleted when dropped.
struct KeyringEntry {
    entry: keyring::Entry,
}

impl Drop for KeyringEntry {
    fn drop(&mut self) {
        let _ = self.entry.delete_credential();
    }
}

/// The keyutils entry `keyring-rs:USER@SERVICE` of the session keyring, through the crate.
fn session_entry(service: &str, user: &str) -> keyring::Entry {
    use linux_keyutils::{KeyRing, KeyRingIdentifier};
    let credential = keyring::keyutils::KeyutilsCredential {
        session: KeyRing::from_special_id(KeyRingIdentifier::Session, false).unwrap(),
        persistent: None,
        description: format!("keyring-rs:{user}@{service}"),
    };
    keyring::Entry::new_with_credential(Box::new(credential))
}

/// Stores `secret` under a fresh service name; `None` (said loudly) when the kernel refuses
/// keyutils here.
#[expect(
    clippy::print_stderr,
    reason = "a skipped test says so on the test's output"
)]
fn keyring_entry(user: &str, secret: &str) -> Option<(String, KeyringEntry)> {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let service = format!("mcp-warden-test-{}-{n}", std::process::id());
    // In the session keyring (inherited by the gateway this test starts), where `secrets set`
    // stores it.
    let entry = session_entry(&service, user);
    match entry.set_password(secret) {
        Ok(()) => Some((service, KeyringEntry { entry })),
        Err(e) => {
            eprintln!("\n*** SKIPPED: the kernel keyring (keyutils) is not usable here: {e} ***\n");
            None
        }
    }
}

// Proves: RUN-4
#[tokio::test]
async fn keyring_secret_reaches_the_upstream_env_and_no_log_or_audit_line() {
    let secret = "kr-secret-7f3a9c1e5b2d";
    let Some((service, _entry)) = keyring_entry("upstream-token", secret) else {
        return;
    };
    let s = Setup::new();
    let upstream = s.upstream_toml(&format!(
        "env = {{ WARDEN_TEST_SECRET = \"keyring:{service}/upstream-token\" }}\n[audit]\ncapture = \"full\"\n"
    ));
    let served = Served::start(&s, &upstream, "keyring").await;
    assert!(!served.tool_names().await.is_empty());
    let log = served.stop().await;
    // The upstream saw it (the script wrote its environment variable into the marker).
    let marker = std::fs::read_to_string(s.marker()).unwrap();
    assert!(!marker.is_empty());
    for line in marker.lines() {
        assert_eq!(line, format!("ran {secret}"));
    }
    // Nothing else did: not the gateway's debug log, not the audit log, not the pin store.
    assert!(!log.contains(secret), "secret in the log");
    for file in walk(&s.data()) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "secret in {}",
            file.display()
        );
    }
}

// Proves: RUN-4
#[tokio::test]
async fn a_missing_keyring_entry_stops_startup_naming_the_reference_only() {
    let Some((service, entry)) = keyring_entry("present", "x-value-1") else {
        return;
    };
    drop(entry);
    let s = Setup::new();
    let port = warden_test::free_port();
    let config = s.config(&format!(
        "listen = \"127.0.0.1:{port}\"\n[upstreams.a]\ncommand = \"/bin/cat\"\nenv = {{ T = \"keyring:{service}/present\" }}\n"
    ));
    let out = Command::new(bin())
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(s.data())
        .env("MCP_WARDEN_LOG", "warn")
        .stdin(Stdio::null())
        .output();
    let out = tokio::time::timeout(BOUND, out).await.unwrap().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("upstreams.a.env.T"), "{stderr}");
    assert!(
        stderr.contains(&format!("keyring:{service}/present: no such entry")),
        "{stderr}"
    );
}

// Proves: MON-5
#[tokio::test]
async fn the_audit_key_can_live_in_the_keyring() {
    let Some((service, _entry)) = keyring_entry("audit", "placeholder") else {
        return;
    };
    let s = Setup::new();
    let reference = format!("keyring:{service}/audit");
    // `secrets audit-key` replaces the placeholder only with --force.
    let out = Command::new(bin())
        .args(["secrets", "audit-key", &reference])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let out = Command::new(bin())
        .args(["secrets", "audit-key", &reference, "--force"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key_text = session_entry(&service, "audit").get_password().unwrap();
    let served = Served::start(&s, &format!("[audit]\nkey = \"{reference}\"\n"), "audit").await;
    let log = served.stop().await;
    // No key file was written; the log verifies with the keyring key.
    assert!(!s.data().join("audit.key").exists());
    let verify = Command::new(bin())
        .args(["audit", "verify", "--config"])
        .arg(s.path("warden.toml"))
        .arg("--data-dir")
        .arg(s.data())
        .output()
        .await
        .unwrap();
    assert!(
        verify.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    // The key's secret lines are nowhere in the log or the data directory.
    for line in key_text.lines().skip(1) {
        let secret = line.split(' ').nth(1).unwrap();
        assert!(!log.contains(secret));
        for file in walk(&s.data()) {
            assert!(
                !std::fs::read_to_string(&file)
                    .unwrap_or_default()
                    .contains(secret)
            );
        }
    }
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// `mcp-warden check --config F --format json`: the RUN-3 row as (status, reason).
async fn run3_of(config: &str) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(bin())
        .args(["check", "--format", "json", "--config"])
        .arg(&path)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env_remove("MCP_WARDEN_CONFIG")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let row = rows.iter().find(|r| r["id"] == "RUN-3").unwrap();
    (
        row["status"].as_str().unwrap().to_owned(),
        row["reason"].as_str().unwrap().to_owned(),
    )
}

// Proves: RUN-3, SUP-2
#[tokio::test]
async fn check_reports_unpinned_packages_and_command_pinning_modes() {
    let pinned = "[upstreams.everything]\ncommand = \"npx\"\nargs = [\"-y\", \"@modelcontextprotocol/server-everything@2026.8.31\"]\n";
    let (status, reason) = run3_of(pinned).await;
    assert_eq!(status, "enforced", "{reason}");

    let floating = format!(
        "{pinned}[upstreams.fetch]\ncommand = \"uvx\"\nargs = [\"mcp-server-fetch\"]\n[upstreams.latest]\ncommand = \"pnpm\"\nargs = [\"dlx\", \"some-server@latest\"]\n"
    );
    let (status, reason) = run3_of(&floating).await;
    assert_eq!(status, "partial", "{reason}");
    assert!(
        reason.contains("package without a pinned version"),
        "{reason}"
    );
    assert!(
        reason.contains("fetch") && reason.contains("latest"),
        "{reason}"
    );
    assert!(!reason.contains("everything"), "{reason}");

    let report = format!("command_pinning = \"report\"\n{pinned}");
    let (status, reason) = run3_of(&report).await;
    assert_eq!(status, "partial", "{reason}");
    assert!(reason.contains("only reported"), "{reason}");

    let off = format!("command_pinning = \"off\"\n{pinned}");
    let (status, reason) = run3_of(&off).await;
    assert_eq!(status, "off", "{reason}");
}
