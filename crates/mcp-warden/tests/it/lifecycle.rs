//! Upstream supervision through the real binary: `[upstreams.<name>.lifecycle]` read from
//! `warden.toml` drives restarts under `serve` (audited), and `run` exits non-zero when its
//! upstream dies instead of restarting it. The server is the misbehaving Python SDK fixture of
//! warden-session (`tests/fixtures/lifecycle_server.py`), sandboxed as by default.
// Proves: LIFE-1

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use warden_test::deps;
use warden_test::http::HttpClient;
use warden_test::stdio::StdioClient;

use crate::support::{Serve, run_command, toml_str};

const WAIT: Duration = Duration::from_secs(30);

/// The `flaky` upstream's lifecycle table in these tests: quick restarts, no health checks.
const FAST_RESTARTS: &str = r#"[upstreams.flaky.lifecycle]
backoff_initial = "100ms"
backoff_max = "200ms"
max_restarts = 2
health_interval = "0s"
"#;

/// `run` around the lifecycle fixture, which records its starts in `state` (the default
/// sandbox lets it write there).
fn flaky_run(state: &Path) -> tokio::process::Command {
    let python = deps::python().display().to_string();
    let fixture = fixture().display().to_string();
    let state_arg = state.display().to_string();
    let config = state.join("warden.toml");
    std::fs::write(
        &config,
        format!("[sandbox]\nwrite = [{}]\n", toml_str(&state_arg)),
    )
    .unwrap();
    let config_arg = config.display().to_string();
    run_command(&["--config", &config_arg], &[&python, &fixture, &state_arg])
}

fn fixture() -> PathBuf {
    deps::repo().join("crates/warden-session/tests/fixtures/lifecycle_server.py")
}

fn text(r: &Value) -> String {
    r["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("a text result: {r}"))
        .to_owned()
}

/// `upstream` audit records of the log in `dir`, via `audit search --format json`.
async fn upstream_records(dir: &Path) -> Vec<Value> {
    crate::support::audit_records(dir)
        .await
        .into_iter()
        .filter(|r| r["event"] == "upstream")
        .collect()
}

#[tokio::test]
async fn serve_restarts_a_crashed_upstream_as_its_lifecycle_table_says() {
    let state = tempfile::tempdir().unwrap();
    let config = format!(
        r#"
[upstreams.flaky]
command = {python}
args = [{fixture}, {state}]
[upstreams.flaky.sandbox]
write = [{state}]
{FAST_RESTARTS}"#,
        python = toml_str(&deps::python().display().to_string()),
        fixture = toml_str(&fixture().display().to_string()),
        state = toml_str(&state.path().display().to_string()),
    );
    let serve = Serve::start(&config).await.unwrap();
    let mut client = HttpClient::new(serve.url.clone());
    client.initialize("2025-11-25").await.unwrap();
    let list = client.request("tools/list", json!({})).await.unwrap();
    assert!(list.to_string().contains("flaky__crash"), "{list}");
    let first = whoami(&mut client).await;
    assert!(first.get("result").is_some(), "{first}");
    // Pids inside the sandbox's PID namespace repeat: count the starts the fixture records.
    let starts = || starts_recorded(state.path());
    let before = starts();
    crash_flaky(&mut client).await;
    // The next call is served by a new process, in the same client session.
    let r = served_again(&mut client, serve.dir.path()).await;
    assert!(!text(&r).is_empty());
    assert!(starts() > before, "a new process answered");

    // Upstream events are queued for the audit writer, not awaited: poll until both are on
    // disk (bounded).
    let limit = tokio::time::Instant::now() + WAIT;
    let records = loop {
        let records = upstream_records(serve.dir.path()).await;
        let has = |a: &str| records.iter().any(|r| r["action"] == a);
        if has("exited") && has("restarted") {
            break records;
        }
        assert!(
            tokio::time::Instant::now() < limit,
            "no exited and restarted records: {records:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let exited = records.iter().find(|r| r["action"] == "exited").unwrap();
    assert_eq!(exited["exit_code"], json!(5), "{exited}");
}

#[tokio::test]
async fn run_exits_with_an_error_when_its_upstream_dies() {
    let state = tempfile::tempdir().unwrap();
    let mut client = StdioClient::start(flaky_run(state.path())).unwrap();
    client.initialize("2025-11-25").await.unwrap();
    let r = client
        .request("tools/call", json!({"name": "whoami", "arguments": {}}))
        .await
        .unwrap();
    assert!(r.get("result").is_some(), "{r}");
    let crashed = client
        .request(
            "tools/call",
            json!({"name": "crash", "arguments": {"code": 4}}),
        )
        .await
        .unwrap();
    assert!(crashed.get("error").is_some(), "{crashed}");
    let status = client.guard.wait(WAIT).await.unwrap();
    // The status of every runtime error of the binary.
    assert_eq!(
        status.code(),
        Some(2),
        "run exits non-zero for its host to see"
    );
    // Never restarted.
    let starts = std::fs::read_to_string(state.path().join("starts")).unwrap();
    assert_eq!(starts.lines().count(), 1, "{starts}");
}

/// The same when the host hands `run` a socket for stdin and stdout (Node's `child_process`
/// does: a socketpair per stdio slot, as Claude Desktop, VS Code and Cursor start servers), and
/// the host neither writes nor closes stdin after the crash: `run` still exits at once.
#[tokio::test]
async fn run_exits_when_its_upstream_dies_with_sockets_for_stdio() {
    let (to_run, run_stdin) = std::os::unix::net::UnixStream::pair().unwrap();
    exits_after_its_upstream_crashes(run_stdin.into(), to_run).await;
}

/// A terminal for stdin (`run` started by hand in a shell): tokio reads it on a blocking
/// thread, which a silent terminal never frees. When the upstream dies, `run` still exits at
/// once: the runtime does not wait for that read.
#[tokio::test]
async fn run_exits_when_its_upstream_dies_with_a_terminal_for_stdin() {
    let (terminal, run_stdin) = open_pty();
    // What is typed at the terminal reaches `run` as its input lines.
    exits_after_its_upstream_crashes(run_stdin, std::fs::File::from(terminal)).await;
}

/// Starts `run` in front of the flaky server with `stdin` (whose other end is `typed`) and a
/// socket for stdout, initializes it and crashes the upstream with a call. Stdin then stays open
/// and silent: `run` must exit at once, with code 2.
async fn exits_after_its_upstream_crashes(
    stdin: std::os::fd::OwnedFd,
    mut typed: impl std::io::Write + Send + 'static,
) {
    use std::io::{BufRead as _, BufReader};
    let state = tempfile::tempdir().unwrap();
    let (from_run, run_stdout) = std::os::unix::net::UnixStream::pair().unwrap();
    let mut command = flaky_run(state.path());
    command
        .stdin(std::process::Stdio::from(stdin))
        .stdout(std::process::Stdio::from(std::os::fd::OwnedFd::from(
            run_stdout,
        )))
        // A `run` that hangs (the failure looked for) is not left behind.
        .kill_on_drop(true);
    let mut child = command.spawn().unwrap();
    let exchange = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(from_run);
        let mut ask = |text: &str| {
            typed.write_all(format!("{text}\n").as_bytes()).unwrap();
            let mut line = String::new();
            lines.read_line(&mut line).unwrap();
            line
        };
        let init = ask(
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#,
        );
        assert!(init.contains("\"result\""), "{init}");
        let crashed = ask(
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"crash","arguments":{"code":4}}}"#,
        );
        assert!(crashed.contains("\"error\""), "{crashed}");
        typed
    });
    let typed = tokio::time::timeout(WAIT, exchange).await.unwrap().unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("run kept running after its upstream died")
        .unwrap();
    assert_eq!(status.code(), Some(2));
    drop(typed);
}

/// A new pseudo-terminal: the side a user types into, and the side a program reads as its
/// standard input.
#[expect(unsafe_code, reason = "openpty(3) has no safe wrapper in std")]
fn open_pty() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd as _;
    let (mut terminal, mut program) = (-1, -1);
    // SAFETY: openpty(3) stores two new descriptors in the two ints; the name, termios and
    // window size arguments may be null.
    let rc = unsafe {
        libc::openpty(
            &mut terminal,
            &mut program,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors are new and owned by nothing else from here on.
    unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(terminal),
            std::os::fd::OwnedFd::from_raw_fd(program),
        )
    }
}

/// A restart is a new start: the command pin (RUN-3) is checked again, so a script replaced
/// while the gateway runs is refused before it runs, and the refusal is audited.
#[tokio::test]
async fn a_restart_rechecks_the_command_pin_and_refuses_a_changed_script() {
    let state = tempfile::tempdir().unwrap();
    let script = state.path().join("server.py");
    std::fs::copy(fixture(), &script).unwrap();
    let config = format!(
        r#"
[upstreams.flaky]
command = {python}
args = [{script}, {state}]
[upstreams.flaky.sandbox]
write = [{state}]
{FAST_RESTARTS}"#,
        python = toml_str(&deps::python().display().to_string()),
        script = toml_str(&script.display().to_string()),
        state = toml_str(&state.path().display().to_string()),
    );
    let serve = Serve::start(&config).await.unwrap();
    let mut client = HttpClient::new(serve.url.clone());
    client.initialize("2025-11-25").await.unwrap();
    let first = whoami(&mut client).await;
    assert!(first.get("result").is_some(), "{first}");
    let starts = || starts_recorded(state.path());
    let before = starts();
    // Replaced while it runs: the same path, other bytes.
    let mut text_now = std::fs::read_to_string(&script).unwrap();
    text_now.push_str("\n# replaced while the gateway runs\n");
    std::fs::write(&script, text_now).unwrap();
    crash_flaky(&mut client).await;
    // Wait for the supervisor to try (and be refused) every restart it may make.
    let limit = tokio::time::Instant::now() + WAIT;
    loop {
        let records = upstream_records(serve.dir.path()).await;
        let refused = records
            .iter()
            .filter(|r| r["action"] == "command_refused")
            .count();
        if refused >= 1
            && records
                .iter()
                .any(|r| r["action"] == "marked_down" || r["action"] == "start_failed")
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < limit,
            "no refused restart: {records:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = whoami(&mut client).await;
    assert!(
        after.get("error").is_some(),
        "no process may serve: {after}"
    );
    assert_eq!(starts(), before, "the changed script never ran");
}

// Proves: RUN-3 (a restart runs the file its own re-check passed, not the first start's)
#[tokio::test]
async fn a_restart_runs_the_executable_its_own_recheck_passed() {
    use std::os::unix::fs::PermissionsExt as _;
    let state = tempfile::tempdir().unwrap();
    // The upstream's executable is a wrapper script: its bytes are what the pin and the
    // sandbox's identity check are about.
    let wrapper = state.path().join("run.sh");
    let write_wrapper = |version: &str| {
        let text = format!(
            "#!/bin/sh\n# {version}\nexec {} {} {}\n",
            deps::python().display(),
            fixture().display(),
            state.path().display()
        );
        std::fs::write(&wrapper, text).unwrap();
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    write_wrapper("v1");
    // `report`: a changed command is recorded and started, so the restart below passes its
    // re-check with the new file; the sandbox must then run that file, not refuse it as
    // "changed since the first start's check".
    let config = format!(
        r#"
[upstreams.flaky]
command = {wrapper}
command_pinning = "report"
[upstreams.flaky.sandbox]
write = [{state}]
read = [{reads}]
{FAST_RESTARTS}"#,
        wrapper = toml_str(&wrapper.display().to_string()),
        state = toml_str(&state.path().display().to_string()),
        reads = python_and_fixture_paths().join(", "),
    );
    let serve = Serve::start(&config).await.unwrap();
    let mut client = HttpClient::new(serve.url.clone());
    client.initialize("2025-11-25").await.unwrap();
    let first = whoami(&mut client).await;
    assert!(first.get("result").is_some(), "{first}");
    let before = starts_recorded(state.path());

    std::thread::sleep(Duration::from_millis(20));
    write_wrapper("v2");
    crash_flaky(&mut client).await;
    served_again(&mut client, serve.dir.path()).await;
    assert!(
        starts_recorded(state.path()) > before,
        "a new process answered"
    );
    let records = upstream_records(serve.dir.path()).await;
    assert!(
        records.iter().any(|r| r["action"] == "command_changed"),
        "the change was reported: {records:?}"
    );
}

/// What a wrapper script that starts the Python fixture needs granted: the sandbox grants a
/// command's own install prefix, not what a script it runs starts in turn.
fn python_and_fixture_paths() -> Vec<String> {
    let python = deps::python();
    let real = std::fs::canonicalize(&python).unwrap();
    let prefix = |p: &Path| p.parent().and_then(Path::parent).unwrap().to_owned();
    [
        prefix(&python),
        prefix(&real),
        fixture().parent().unwrap().to_owned(),
    ]
    .iter()
    .map(|p| toml_str(&p.display().to_string()))
    .collect()
}

/// Makes the fixture upstream `flaky` exit with status 5 mid-call; the call fails with the
/// gateway's "upstream closed" error.
async fn crash_flaky(client: &mut HttpClient) {
    let crashed = client
        .request(
            "tools/call",
            json!({"name": "flaky__crash", "arguments": {"code": 5}}),
        )
        .await
        .unwrap();
    assert_eq!(crashed["error"]["code"], json!(-31001), "{crashed}");
}

/// One call to `flaky__whoami` (the fixture's pid and start count, or an error).
async fn whoami(client: &mut HttpClient) -> Value {
    client
        .request(
            "tools/call",
            json!({"name": "flaky__whoami", "arguments": {}}),
        )
        .await
        .unwrap()
}

/// Calls `flaky__whoami` until a (restarted) process answers it, within [`WAIT`]; the answer.
async fn served_again(client: &mut HttpClient, data_dir: &Path) -> Value {
    let limit = tokio::time::Instant::now() + WAIT;
    loop {
        let r = whoami(client).await;
        if r.get("result").is_some() {
            return r;
        }
        if tokio::time::Instant::now() >= limit {
            let records = upstream_records(data_dir).await;
            panic!("never served again: {r}\n{records:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How many times the flaky fixture started: it appends a line to `starts` in its state
/// directory at each start (pids inside the sandbox's PID namespace repeat).
fn starts_recorded(state: &std::path::Path) -> usize {
    std::fs::read_to_string(state.join("starts"))
        .unwrap()
        .lines()
        .count()
}
