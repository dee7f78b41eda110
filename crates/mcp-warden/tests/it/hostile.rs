//! Hostile input against the real binary, in both shapes (`run` over stdio, `serve` over
//! Streamable HTTP), with real upstream processes.
//!
//! From the client: truncated JSON, a 100 MB line and a 100 MB body, nesting beyond the limit
//! and a million levels deep, duplicate keys (also spelled with `\u` escapes), wrong types,
//! batches, responses to requests nobody made, invalid UTF-8, and at the HTTP level unknown
//! and ended sessions, foreign `Origin` and `Host`, oversized bodies and a slowloris head.
//! From the upstream: garbage on stdout, responses with unknown ids, death in the middle of a
//! call, and a server that ignores both stdin EOF and SIGTERM.
//!
//! After every hostile input the test checks that the gateway process is alive and that a
//! valid request still gets its valid answer. Where the client's message must be refused, the
//! upstream is `echo_server.py` behind `tee`, which appends every byte the upstream receives
//! to a log file, and the test asserts that no refused message ever reached it (each carries
//! the marker `HOSTILE`).
//!
//! The misbehaving upstreams are the fixtures of `warden-upstream`
//! (`crates/warden-upstream/tests/fixtures/`). In `serve`, where the gateway itself checks the
//! upstream's `initialize` result, their results are completed with a protocol version by a
//! `sed` filter on their stdout (see [`with_initialize_result`]); everything else they send
//! passes unchanged.
//!
//! No timing assertions: every wait is bounded by a generous timeout that only keeps a broken
//! gateway from hanging the test run.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use warden_test::deps;
use warden_test::http::HttpClient;
use warden_test::process::alive;
use warden_test::stdio::StdioClient;

use crate::support::{Serve, run_command, toml_str};

/// Bound on any single wait. Only a hang reaches it.
const BOUND: Duration = Duration::from_secs(30);

/// The marker every message the gateway must refuse carries.
const MARK: &str = "HOSTILE";

/// Protocol revision the tests' clients speak (initialize-based, so `run` forwards it).
const VERSION: &str = "2025-11-25";

/// 100 MB, sent in 1 MiB pieces.
const HUGE: usize = 100 * 1024 * 1024;
const PIECE: usize = 1024 * 1024;

// ------------------------------------------------------------------------------------------
// Upstreams

/// A fixture server of `warden-upstream` (the echo server and the misbehaving ones).
fn fixture(name: &str) -> String {
    let path = deps::repo()
        .join("crates/warden-upstream/tests/fixtures")
        .join(name);
    assert!(path.exists(), "fixture {} is missing", path.display());
    path.to_string_lossy().into_owned()
}

fn python() -> String {
    deps::python().to_string_lossy().into_owned()
}

/// `echo_server.py` with every byte it receives appended to `log` (by `tee`).
fn logged_echo(log: &Path) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        r#"tee -a "$0" | "$1" "$2""#.into(),
        log.to_string_lossy().into_owned(),
        python(),
        fixture("echo_server.py"),
    ]
}

/// A fixture whose responses get what `serve` requires of an `initialize` result
/// (`protocolVersion`, `capabilities`, `serverInfo`) added by a line-buffered `sed`. Only the
/// fixtures' own well-formed responses (written by `json.dumps`, with `": "`) match; their
/// garbage lines pass untouched.
fn with_initialize_result(script: &str, args: &[&str]) -> Vec<String> {
    let fields = r#""protocolVersion": "2025-11-25", "capabilities": {}, "serverInfo": {"name": "fixture", "version": "0"}"#;
    let sed = format!(
        r#"s/"result": {{}}/"result": {{{fields}}}/;t
s/"result": {{"/"result": {{{fields}, "/"#
    );
    // The sed program travels in the environment: no quoting through TOML, sh and sed.
    let mut command = vec![
        "env".into(),
        format!("SED={sed}"),
        "sh".into(),
        "-c".into(),
        r#"script="$1"; shift; "$0" "$script" "$@" | sed -u "$SED""#.into(),
        python(),
        fixture(script),
    ];
    command.extend(args.iter().map(|a| (*a).to_owned()));
    command
}

/// `serve` configuration `toml` with argument validation off (see [`UNSANDBOXED`]).
fn bare(toml: &str) -> String {
    format!("[arguments]\nvalidate_schema = false\n{toml}")
}

/// TOML for one `[upstreams.<name>]` table running `command`.
fn upstream_toml(name: &str, command: &[String]) -> String {
    let args: Vec<String> = command[1..].iter().map(|a| toml_str(a)).collect();
    format!(
        "[upstreams.{name}]\ncommand = {}\nargs = [{}]\nera = \"legacy\"\n\
         [upstreams.{name}.sandbox]\nenabled = false\n",
        toml_str(&command[0]),
        args.join(", ")
    )
}

/// These tests are about hostile *protocol* traffic; their fixtures append what they receive
/// to the test's files (`tee`) and report their own pids, which a sandbox forbids and
/// renumbers. The sandbox's containment has its own tests (`sandbox.rs`). The fixtures are not
/// MCP servers (they list no tools), so argument validation, which refuses calls to tools an
/// upstream never listed, is off too; it has its own tests (`request_guards.rs`).
const UNSANDBOXED: &str = "[sandbox]\nenabled = false\n[arguments]\nvalidate_schema = false\n";

/// A configuration file for `run` with the sandbox off (see [`UNSANDBOXED`]; `serve`
/// upstreams get `[upstreams.<name>.sandbox]` in [`upstream_toml`]).
fn unsandboxed_config() -> &'static Path {
    static CONFIG: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    CONFIG.get_or_init(|| {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("hostile-unsandboxed.toml");
        std::fs::write(&path, UNSANDBOXED).unwrap();
        path
    })
}

/// What the logging upstream has received so far (invalid UTF-8 shown as U+FFFD).
fn upstream_log(log: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(log).unwrap_or_default()).into_owned()
}

/// What the logging upstream has received, once it includes `needle` (the last valid request
/// of a test: `tee` may write the log after the upstream already answered). Everything sent
/// before that request is in the log by then.
async fn upstream_log_through(log: &Path, needle: &str) -> String {
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        let seen = upstream_log(log);
        if seen.contains(needle) {
            return seen;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the upstream never logged {needle}: {seen}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ------------------------------------------------------------------------------------------
// Hostile messages

/// A request (a notification without `id`) whose `params` are `{"a":[[[...]]]}`, nested
/// `levels` deep in total (the message itself is level 1).
fn nested(id: Option<&str>, method: &str, levels: usize) -> Vec<u8> {
    let inner = levels - 2;
    let id = id.map(|id| format!(r#""id":"{id}","#)).unwrap_or_default();
    let mut out =
        format!(r#"{{"jsonrpc":"2.0",{id}"method":"{method}","params":{{"a":"#).into_bytes();
    out.extend(std::iter::repeat_n(b'[', inner));
    out.extend(std::iter::repeat_n(b']', inner));
    out.extend_from_slice(b"}}");
    out
}

/// One message the gateway must refuse: what it is, its bytes, the JSON-RPC error code the
/// client must get, and the id that error must carry.
struct Bad {
    what: &'static str,
    bytes: Vec<u8>,
    code: i64,
    id: Value,
}

fn bad(what: &'static str, bytes: impl Into<Vec<u8>>, code: i64, id: Value) -> Bad {
    Bad {
        what,
        bytes: bytes.into(),
        code,
        id,
    }
}

/// Every malformed message of the tests, with the error the gateway answers it with.
fn bad_messages() -> Vec<Bad> {
    const PARSE: i64 = -32700;
    const INVALID: i64 = -32600;
    vec![
        bad(
            "truncated JSON",
            format!(r#"{{"jsonrpc":"2.0","id":"h1","method":"{MARK}-trunc"#),
            PARSE,
            Value::Null,
        ),
        bad(
            "nesting one level beyond the limit",
            nested(Some("h2"), &format!("{MARK}-deep"), 65),
            INVALID,
            // Refused for its depth, answered with its id (read from its start).
            json!("h2"),
        ),
        bad(
            "a million levels of nesting",
            nested(Some("h3"), &format!("{MARK}-deeper"), 1_000_000),
            INVALID,
            json!("h3"),
        ),
        bad(
            "duplicate key",
            format!(r#"{{"jsonrpc":"2.0","id":"h4","method":"{MARK}-dup","method":"ping"}}"#),
            PARSE,
            Value::Null,
        ),
        bad(
            "duplicate key spelled with an escape",
            format!(
                r#"{{"jsonrpc":"2.0","id":"h5","method":"tools/call","params":{{"name":"{MARK}-a","\u006eame":"b"}}}}"#
            ),
            PARSE,
            Value::Null,
        ),
        bad(
            "duplicate method spelled with an escape",
            format!(r#"{{"jsonrpc":"2.0","id":"h6","method":"{MARK}-m","\u006dethod":"ping"}}"#),
            PARSE,
            Value::Null,
        ),
        bad(
            "id as an object",
            format!(r#"{{"jsonrpc":"2.0","id":{{"a":1}},"method":"{MARK}-id"}}"#),
            INVALID,
            Value::Null,
        ),
        bad(
            "method as a number",
            format!(r#"{{"jsonrpc":"2.0","id":"h8","method":5,"params":{{"m":"{MARK}"}}}}"#),
            INVALID,
            json!("h8"),
        ),
        bad(
            "params as a string",
            format!(r#"{{"jsonrpc":"2.0","id":"h9","method":"{MARK}-p","params":"s"}}"#),
            INVALID,
            json!("h9"),
        ),
        bad(
            "a batch",
            format!(
                r#"[{{"jsonrpc":"2.0","id":"h10","method":"{MARK}-b1"}},{{"jsonrpc":"2.0","method":"{MARK}-b2"}}]"#
            ),
            INVALID,
            Value::Null,
        ),
        bad(
            "invalid UTF-8",
            [
                format!(r#"{{"jsonrpc":"2.0","id":"h11","method":"{MARK}-"#).as_bytes(),
                b"\xff\xfe\xc0\xaf",
                b"\"}",
            ]
            .concat(),
            PARSE,
            Value::Null,
        ),
        bad(
            "jsonrpc 1.0",
            format!(r#"{{"jsonrpc":"1.0","id":"h12","method":"{MARK}-v1"}}"#),
            INVALID,
            json!("h12"),
        ),
    ]
}

/// A response to a request the gateway never sent.
fn stray_response() -> Value {
    json!({"jsonrpc": "2.0", "id": format!("{MARK}-nobody-asked"), "result": {"x": MARK}})
}

/// The first 100 MB line or body bytes: a request whose `pad` string never ends in time.
fn huge_prefix() -> Vec<u8> {
    format!(r#"{{"jsonrpc":"2.0","id":"big","method":"{MARK}-big","params":{{"pad":""#).into_bytes()
}

// ------------------------------------------------------------------------------------------
// `run` helpers

/// `mcp-warden run [extra...] -- command...`, quiet unless something is badly wrong.
fn start_run(extra: &[&str], command: &[String]) -> StdioClient {
    start_run_with(unsandboxed_config(), extra, command)
}

/// [`start_run`] with its own configuration file (which must include [`UNSANDBOXED`]).
/// `text` as a `warden.toml` in a directory of its own (kept while the `TempDir` lives).
fn config_file(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("warden.toml");
    std::fs::write(&config, text).unwrap();
    (dir, config)
}

fn start_run_with(config: &Path, extra: &[&str], command: &[String]) -> StdioClient {
    let command: Vec<&str> = command.iter().map(String::as_str).collect();
    let mut extra = extra.to_vec();
    extra.extend(["--config", config.to_str().unwrap()]);
    let mut c = run_command(&extra, &command);
    c.env("MCP_WARDEN_LOG", "error");
    StdioClient::start(c).unwrap()
}

/// A valid request through `run` and the echo upstream gets its valid answer, with nothing
/// else before it, and the gateway is alive.
async fn assert_run_serves(c: &mut StdioClient, n: u64) {
    let (response, before) = c.request_with("echo", json!({"n": n})).await.unwrap();
    assert!(before.is_empty(), "unexpected messages: {before:?}");
    assert_eq!(response["result"]["params"]["n"], n, "{response}");
    assert!(alive(c.guard.pid()), "the gateway died");
}

/// Closes the client's stdin and waits for `run` to exit; returns its exit code.
async fn close_and_wait(c: &mut StdioClient) -> Option<i32> {
    c.close_stdin();
    let status = c.guard.wait(BOUND).await.expect("run did not exit");
    status.code()
}

/// Reads what `run` still writes until its stdout closes; every message is unexpected.
async fn assert_no_more_output(c: &mut StdioClient) {
    c.close_stdin();
    if let Ok(extra) = c.recv().await {
        panic!("unexpected message after the last response: {extra}");
    }
}

/// Waits until `pid` no longer exists (zombies count as gone), at most `BOUND`.
async fn wait_gone(pid: u32) -> bool {
    let deadline = tokio::time::Instant::now() + BOUND;
    while alive(pid) {
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

/// Kills processes the test started indirectly (upstreams and their children) if they are
/// still there when the test ends, so a failing test leaves no stubborn process behind.
struct KillOnDrop(Vec<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if pid > 1 && alive(pid) {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
// `run`: hostile client input

// Proves: API-1 (malformed, mistyped, duplicate-keyed and batched messages are refused before
// routing; the upstream never sees them).
#[tokio::test]
async fn run_refuses_malformed_client_messages_and_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("upstream.log");
    let mut c = start_run(&["--era", "legacy"], &logged_echo(&log));
    c.initialize(VERSION).await.unwrap();
    assert_run_serves(&mut c, 0).await;
    // Nesting at the limit (64) passes: the refusal below is about the one level more. (A
    // notification: the echo of a request would nest one level deeper, see
    // `run_answers_at_once_when_the_upstream_response_is_refused`.)
    let mut line = nested(None, "notifications/deep-ok", 64);
    line.push(b'\n');
    c.send_raw(&line).await.unwrap();

    for (n, case) in (1..).zip(bad_messages()) {
        let mut line = case.bytes.clone();
        line.push(b'\n');
        c.send_raw(&line).await.unwrap();
        let answer = c.recv().await.unwrap();
        assert_eq!(
            answer["error"]["code"], case.code,
            "{}: {answer}",
            case.what
        );
        assert_eq!(answer["id"], case.id, "{}: {answer}", case.what);
        assert_run_serves(&mut c, n).await;
    }

    // A response nobody asked for is dropped without a word: the next message the client
    // reads is the answer to its own next request.
    c.send(&stray_response()).await.unwrap();
    assert_run_serves(&mut c, 100).await;

    assert_eq!(close_and_wait(&mut c).await, Some(0));
    let seen = upstream_log(&log);
    assert!(
        seen.contains(r#""n":100"#),
        "the upstream log misses valid traffic: {seen}"
    );
    assert!(
        seen.contains("notifications/deep-ok"),
        "the depth limit itself was refused"
    );
    assert!(
        !seen.contains(MARK),
        "a refused message reached the upstream: {seen}"
    );
}

// Proves: RUN-5 (message size caps: a 100 MB line is discarded while it streams, never held).
#[tokio::test]
async fn run_discards_a_100_mb_line_and_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("upstream.log");
    let mut c = start_run(&["--era", "legacy"], &logged_echo(&log));
    c.initialize(VERSION).await.unwrap();

    let piece = vec![b'x'; PIECE];
    tokio::time::timeout(BOUND * 4, async {
        c.send_raw(&huge_prefix()).await.unwrap();
        for _ in 0..HUGE / PIECE {
            c.send_raw(&piece).await.unwrap();
        }
        c.send_raw(b"\"}}\n").await.unwrap();
    })
    .await
    .expect("the gateway stopped reading a long line");
    let answer = c.recv().await.unwrap();
    assert_eq!(answer["error"]["code"], -32600, "{answer}");
    // The request's id, read from the line's start: the client's call fails at once.
    assert_eq!(answer["id"], "big", "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("exceeds the limit"), "{answer}");
    assert_run_serves(&mut c, 1).await;

    assert_eq!(close_and_wait(&mut c).await, Some(0));
    let seen = upstream_log(&log);
    assert!(!seen.contains(MARK), "the long line reached the upstream");
    assert!(
        seen.len() < 64 * 1024,
        "the upstream received {} bytes",
        seen.len()
    );
}

// ------------------------------------------------------------------------------------------
// `run`: hostile upstreams

#[tokio::test]
async fn run_answers_with_an_error_when_the_upstream_dies_mid_call() {
    let mut c = start_run(
        &["--era", "legacy"],
        &[python(), fixture("dying_server.py")],
    );
    c.initialize(VERSION).await.unwrap();
    // The fixture exits in the middle of this call without answering it.
    let answer = tokio::time::timeout(BOUND, c.request("tools/call", json!({"name": "x"})))
        .await
        .expect("no answer after the upstream died")
        .unwrap();
    assert_eq!(answer["error"]["code"], -31001, "{answer}");

    // Then the gateway exits non-zero (docs/lifecycle.md: `run` never restarts its upstream,
    // its host does), without writing anything else and without waiting for the client.
    let status = c.guard.wait(BOUND).await.expect("run did not exit");
    assert_eq!(
        status.code(),
        Some(2),
        "run exits non-zero for its host to see"
    );
    assert!(
        c.recv().await.is_err(),
        "nothing after the answer: stdout is closed"
    );
}

/// More calls than `run` handles at once (64), each waiting on the client's answer to the
/// upstream's sampling request, all sent before the client answers any: the calls beyond the
/// limit wait in the gateway's queue, the reader goes on reading, and the client's answers
/// release every call. (A reader that stopped at the limit left them all waiting for the
/// request timeout, 300 s by default.)
#[tokio::test]
async fn run_reads_the_clients_answers_while_more_calls_than_its_limit_wait_on_them() {
    const CALLS: u64 = 80;
    let mut c = start_run(&["--era", "legacy"], &[python(), fixture("echo_server.py")]);
    c.initialize(VERSION).await.unwrap();
    let (asked, answered, errors) = sample_calls(&mut c, CALLS).await;
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(asked, CALLS);
    assert_eq!(answered, (1..=CALLS).collect::<Vec<_>>());
    assert_run_serves(&mut c, 1).await;
    assert_eq!(close_and_wait(&mut c).await, Some(0));
}

/// `[limits] stdio_max_in_flight` and `stdio_max_queued` bound `run`'s requests: with 2 in
/// flight (each waiting on the client's sampling answer) and 1 queued, a fourth request is
/// refused at once with `-31004` naming the limits, and the others all finish once answered.
#[tokio::test]
async fn run_takes_its_request_queue_bounds_from_the_config() {
    let (_dir, config) = config_file("[limits]\nstdio_max_in_flight = 2\nstdio_max_queued = 1\n");
    let mut c = start_run_with(
        &config,
        &["--era", "legacy"],
        &[python(), fixture("echo_server.py")],
    );
    c.initialize(VERSION).await.unwrap();
    let (asked, answered, errors) = sample_calls(&mut c, 4).await;
    // The fourth arrived with two running and one queued; it was refused before any answer.
    let [refused] = errors.as_slice() else {
        panic!("expected one refusal: {errors:?}");
    };
    assert_eq!(refused["id"], 4, "{refused}");
    assert_eq!(refused["error"]["code"], -31004, "{refused}");
    assert_eq!(
        refused["error"]["data"]["guard"], "stdio_queue",
        "{refused}"
    );
    assert_eq!(refused["error"]["data"]["maxInFlight"], 2, "{refused}");
    assert_eq!(refused["error"]["data"]["maxQueued"], 1, "{refused}");
    assert_eq!(answered, [1, 2, 3]);
    assert_eq!(asked, 3);
    assert_run_serves(&mut c, 1).await;
    assert_eq!(close_and_wait(&mut c).await, Some(0));
}

/// Sends `calls` `sample` requests (ids 1 to `calls`) before answering anything, then answers
/// each sampling request the upstream makes until every call has its response. Returns how
/// many sampling requests were answered, the ids answered with a result (sorted) and the
/// error responses.
async fn sample_calls(c: &mut StdioClient, calls: u64) -> (u64, Vec<u64>, Vec<Value>) {
    for n in 1..=calls {
        c.send(&json!({"jsonrpc": "2.0", "id": n, "method": "sample", "params": {}}))
            .await
            .unwrap();
    }
    let (mut asked, mut answered, mut errors) = (0, Vec::new(), Vec::new());
    while ((answered.len() + errors.len()) as u64) < calls {
        let message = tokio::time::timeout(BOUND, c.recv())
            .await
            .expect("the calls hang: the client's answers were not read")
            .unwrap();
        if message["method"] == "sampling/createMessage" {
            asked += 1;
            c.send(&json!({"jsonrpc": "2.0", "id": message["id"], "result": {
                "role": "assistant", "model": "m",
                "content": {"type": "text", "text": format!("answer {asked}")}}}))
                .await
                .unwrap();
        } else if message.get("error").is_some() {
            errors.push(message);
        } else {
            assert!(
                message["result"]["answered"]["content"]["text"].is_string(),
                "{message}"
            );
            answered.push(message["id"].as_u64().unwrap());
        }
    }
    answered.sort_unstable();
    (asked, answered, errors)
}

/// H1 (docs/fuzzing.md): a response the gateway refuses (here nested one level deeper than the
/// limit, as the echo of a request at the limit is) fails its request at once with a clear
/// error, instead of leaving the client to wait `request_timeout` (300 s by default).
#[tokio::test]
async fn run_answers_at_once_when_the_upstream_response_is_refused() {
    let mut c = start_run(&["--era", "legacy"], &[python(), fixture("echo_server.py")]);
    c.initialize(VERSION).await.unwrap();
    let mut line = nested(Some("deep"), "echo", 64);
    line.push(b'\n');
    c.send_raw(&line).await.unwrap();
    let answer = c.recv().await.expect("no answer within the bound");
    assert_eq!(answer["id"], "deep", "{answer}");
    assert_eq!(answer["error"]["code"], -31001, "{answer}");
    let text = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(
        text.contains("nested deeper than the depth limit"),
        "{answer}"
    );
    // The connection and the upstream still serve.
    let (answer, before) = c.request_with("echo", json!({"n": 1})).await.unwrap();
    assert!(before.is_empty(), "{before:?}");
    assert_eq!(answer["result"]["params"]["n"], 1, "{answer}");
    assert_eq!(close_and_wait(&mut c).await, Some(0));
}

#[tokio::test]
async fn run_never_forwards_upstream_garbage() {
    // The fixture writes, before each real response: text, a duplicate-key response with the
    // real id, a 10000-byte response with the real id (over the 4096-byte limit set here), a
    // batch, a JSON-RPC 1.0 object, invalid UTF-8 and a too-deep notification.
    let (_dir, config) = config_file(&format!(
        "{UNSANDBOXED}[limits]\nmax_message_bytes = 4096\n"
    ));
    let mut c = start_run_with(
        &config,
        &["--era", "legacy"],
        &[python(), fixture("garbage_server.py"), "10000".into()],
    );
    let init = c.initialize(VERSION).await.unwrap();
    assert_eq!(init, json!({"ok": true}));
    for n in 0..3 {
        let (answer, before) = c.request_with("tools/call", json!({"n": n})).await.unwrap();
        assert!(before.is_empty(), "garbage reached the client: {before:?}");
        assert_eq!(answer["result"], json!({"ok": true}), "{answer}");
        assert!(!answer.to_string().contains("SECRET-CANARY"));
        assert!(alive(c.guard.pid()));
    }
    assert_no_more_output(&mut c).await;
    assert_eq!(c.guard.wait(BOUND).await.unwrap().code(), Some(0));
}

#[tokio::test]
async fn run_drops_upstream_responses_with_unknown_ids() {
    // Before each real response the fixture answers ids nobody used (999999, "nope") and
    // sends an id-less error.
    let mut c = start_run(
        &["--era", "legacy"],
        &[python(), fixture("unknown_ids_server.py")],
    );
    assert_eq!(c.initialize(VERSION).await.unwrap(), json!({"real": true}));
    for n in 0..3 {
        let (answer, before) = c.request_with("tools/call", json!({"n": n})).await.unwrap();
        assert!(
            before.is_empty(),
            "a stray response reached the client: {before:?}"
        );
        assert_eq!(answer["result"], json!({"real": true}), "{answer}");
    }
    assert!(alive(c.guard.pid()));
    assert_no_more_output(&mut c).await;
    assert_eq!(c.guard.wait(BOUND).await.unwrap().code(), Some(0));
}

// ------------------------------------------------------------------------------------------
// `run`: shutdown when the client goes away

// Proves: LIFE-2 (the client closing stdin ends the upstream, and `run` exits 0).
#[tokio::test]
async fn run_stops_the_upstream_when_the_client_closes_stdin() {
    let mut c = start_run(&["--era", "legacy"], &[python(), fixture("echo_server.py")]);
    c.initialize(VERSION).await.unwrap();
    let pid = c.request("pgid", json!({})).await.unwrap()["result"]["pid"]
        .as_u64()
        .unwrap() as u32;
    let _reap = KillOnDrop(vec![pid]);
    assert!(alive(pid));
    assert_eq!(close_and_wait(&mut c).await, Some(0));
    assert!(wait_gone(pid).await, "upstream {pid} outlived the gateway");
}

// Proves: LIFE-2 (an upstream that ignores stdin EOF and SIGTERM, and its child, are killed).
#[tokio::test]
async fn run_kills_an_upstream_that_ignores_eof_and_sigterm() {
    let mut c = start_run(
        &["--era", "legacy"],
        &[python(), fixture("stubborn_server.py")],
    );
    let pids = c.initialize(VERSION).await.unwrap();
    let pid = pids["pid"].as_u64().unwrap() as u32;
    let grandchild = pids["grandchild"].as_u64().unwrap() as u32;
    let _reap = KillOnDrop(vec![pid, grandchild]);
    assert!(alive(pid) && alive(grandchild));
    // stdin closed, then a grace period, SIGTERM (ignored), a grace period, SIGKILL.
    assert_eq!(close_and_wait(&mut c).await, Some(0));
    assert!(wait_gone(pid).await, "stubborn upstream {pid} survived");
    assert!(
        wait_gone(grandchild).await,
        "the upstream's child {grandchild} survived"
    );
}

// ------------------------------------------------------------------------------------------
// `serve` helpers

/// An initialized client of `serve`.
async fn serve_client(serve: &Serve) -> HttpClient {
    let mut client = HttpClient::new(serve.url.clone());
    client.initialize(VERSION).await.unwrap();
    client
}

/// A valid `tools/call` through `serve` reaches the echo upstream and comes back, and the
/// gateway is alive.
async fn assert_serve_serves(serve: &Serve, client: &mut HttpClient, n: u64) {
    let answer = client
        .request(
            "tools/call",
            json!({"name": "echo__probe", "arguments": {"n": n}}),
        )
        .await
        .unwrap();
    assert_eq!(answer["result"]["params"]["arguments"]["n"], n, "{answer}");
    assert_eq!(answer["result"]["params"]["name"], "probe", "{answer}");
    assert!(alive(serve.guard.pid()), "the gateway died");
}

/// Sends raw bytes as one HTTP/1.1 exchange (`Connection: close`); returns the status and the
/// whole response.
async fn raw_http(port: u16, request: String) -> (u16, String) {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = vec![];
    tokio::time::timeout(BOUND, tcp.read_to_end(&mut response))
        .await
        .expect("no complete response")
        .unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    (status_of(&text), text)
}

fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"))
}

/// POSTs a 100 MB body in 1 MiB pieces (chunked, or with a declared `Content-Length`) while
/// reading the response; returns the status. Holds one piece in memory, never the body.
async fn post_huge(port: u16, chunked: bool) -> u16 {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (mut rd, mut wr) = tcp.into_split();
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_owned()
    } else {
        format!("Content-Length: {}", huge_prefix().len() + HUGE)
    };
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\n{framing}\r\n\r\n"
    );
    let reader = tokio::spawn(async move {
        let mut response = vec![];
        let mut buf = [0u8; 4096];
        // Until the end of the head; the server may reset the connection right after it.
        while !response.windows(4).any(|w| w == b"\r\n\r\n") {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => response.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&response).into_owned()
    });
    let writer = async {
        let piece = vec![b'x'; PIECE];
        let frame = |data: &[u8]| -> Vec<u8> {
            if chunked {
                [format!("{:x}\r\n", data.len()).as_bytes(), data, b"\r\n"].concat()
            } else {
                data.to_vec()
            }
        };
        wr.write_all(head.as_bytes()).await?;
        wr.write_all(&frame(&huge_prefix())).await?;
        for _ in 0..HUGE / PIECE {
            wr.write_all(&frame(&piece)).await?;
        }
        if chunked {
            wr.write_all(b"0\r\n\r\n").await?;
        }
        std::io::Result::Ok(())
    };
    // The gateway stops reading at its limit, so the writer usually fails: that is fine.
    let _ = tokio::time::timeout(BOUND * 4, writer).await;
    let response = tokio::time::timeout(BOUND, reader)
        .await
        .expect("no response to a 100 MB body")
        .unwrap();
    status_of(&response)
}

// ------------------------------------------------------------------------------------------
// `serve`: hostile client input

// Proves: API-1 (malformed, mistyped, duplicate-keyed and batched bodies are refused before
// routing; the upstream never sees them).
#[tokio::test]
async fn serve_refuses_malformed_bodies_and_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("upstream.log");
    let serve = Serve::start(&bare(&upstream_toml("echo", &logged_echo(&log))))
        .await
        .unwrap();
    let mut client = serve_client(&serve).await;
    assert_serve_serves(&serve, &mut client, 0).await;

    for (n, case) in (1..).zip(bad_messages()) {
        let r = client.post_raw(case.bytes.clone(), &[]).await.unwrap();
        assert_eq!(r.status, 400, "{}: {}", case.what, r.text);
        let answer = r.last();
        assert_eq!(
            answer["error"]["code"], case.code,
            "{}: {answer}",
            case.what
        );
        assert_eq!(answer["id"], case.id, "{}: {answer}", case.what);
        assert_serve_serves(&serve, &mut client, n).await;
    }

    // A response nobody asked for is accepted and dropped.
    let r = client.post(&stray_response()).await.unwrap();
    assert_eq!(r.status, 202, "{}", r.text);
    assert_serve_serves(&serve, &mut client, 100).await;

    let seen = upstream_log_through(&log, r#""n":100"#).await;
    assert!(
        !seen.contains(MARK),
        "a refused message reached the upstream: {seen}"
    );
}

// Proves: RUN-5 (message size caps: a 100 MB body gets 413 whether its length is declared or
// not, and is never held).
#[tokio::test]
async fn serve_refuses_100_mb_bodies_with_413_and_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("upstream.log");
    let serve = Serve::start(&bare(&upstream_toml("echo", &logged_echo(&log))))
        .await
        .unwrap();
    let mut client = serve_client(&serve).await;

    assert_eq!(post_huge(serve.port, false).await, 413, "declared length");
    assert_serve_serves(&serve, &mut client, 1).await;
    assert_eq!(post_huge(serve.port, true).await, 413, "chunked");
    assert_serve_serves(&serve, &mut client, 2).await;

    let seen = upstream_log_through(&log, r#""n":2"#).await;
    assert!(
        !seen.contains(MARK),
        "an oversized body reached the upstream"
    );
}

// Proves: CAUTH-3 (Host and Origin checked on every request; refused ones never reach the
// upstream), DATA-3 (an unknown or ended session id opens nothing).
#[tokio::test]
async fn serve_refuses_bad_sessions_origins_hosts_and_slow_heads() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("upstream.log");
    let toml = format!(
        "[http]\nheader_read_timeout = \"1s\"\n{}",
        upstream_toml("echo", &logged_echo(&log))
    );
    let serve = Serve::start(&bare(&toml)).await.unwrap();
    let port = serve.port;
    let mut client = serve_client(&serve).await;
    let call = |what: &str| {
        serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": format!("echo__{MARK}-{what}"), "arguments": {}}}))
        .unwrap()
    };

    // Unknown session id.
    let mut stranger = client.clone();
    stranger.session = Some("0123456789abcdef0123456789abcdef".into());
    let r = stranger
        .post_raw(call("unknown-session"), &[])
        .await
        .unwrap();
    assert_eq!(r.status, 404, "{}", r.text);

    // DELETE, then the ended session is unknown.
    let mut leaving = serve_client(&serve).await;
    let status = leaving.delete().await.unwrap();
    assert!((200..300).contains(&status), "DELETE: {status}");
    let r = leaving
        .post_raw(call("deleted-session"), &[])
        .await
        .unwrap();
    assert_eq!(r.status, 404, "{}", r.text);
    assert_eq!(leaving.delete().await.unwrap(), 404);
    leaving.session = None;
    assert_serve_serves(&serve, &mut client, 1).await;

    // A foreign Origin.
    let r = client
        .post_raw(call("origin"), &[("origin", "http://evil.example")])
        .await
        .unwrap();
    assert_eq!(r.status, 403, "{}", r.text);

    // A foreign Host (DNS rebinding), sent raw so nothing rewrites it.
    let body = String::from_utf8(call("host")).unwrap();
    let session = client.session.clone().unwrap();
    let (status, text) = raw_http(
        port,
        format!(
            "POST /mcp HTTP/1.1\r\nHost: evil.example:{port}\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nMcp-Session-Id: {session}\r\n\
             Mcp-Protocol-Version: {VERSION}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    assert_eq!(status, 403, "{text}");
    assert_serve_serves(&serve, &mut client, 2).await;

    // GET without a session, and with an unknown one.
    let get = |session: &str| {
        format!(
            "GET /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\
             Mcp-Protocol-Version: {VERSION}\r\n{session}Connection: close\r\n\r\n"
        )
    };
    let (status, text) = raw_http(port, get("")).await;
    assert!(matches!(status, 400 | 404), "GET without a session: {text}");
    let (status, text) = raw_http(
        port,
        get("Mcp-Session-Id: 0123456789abcdef0123456789abcdef\r\n"),
    )
    .await;
    assert_eq!(status, 404, "GET with an unknown session: {text}");

    // Slowloris: half a request head, then nothing. The gateway closes the connection (the
    // bound only keeps a broken gateway from hanging the test).
    let mut slow = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    slow.write_all(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty")
        .await
        .unwrap();
    let mut sink = vec![];
    tokio::time::timeout(BOUND, slow.read_to_end(&mut sink))
        .await
        .expect("a stalled request head kept its connection open")
        .ok();
    assert_serve_serves(&serve, &mut client, 3).await;

    let seen = upstream_log_through(&log, r#""n":3"#).await;
    assert!(
        !seen.contains(MARK),
        "a refused request reached the upstream: {seen}"
    );
}

// ------------------------------------------------------------------------------------------
// `serve`: hostile upstreams

/// H1 through `serve`: the echo of a call nested at the limit is one level too deep; the client
/// gets an error at once, and the gateway goes on serving.
#[tokio::test]
async fn serve_answers_at_once_when_the_upstream_response_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("upstream.log");
    let serve = Serve::start(&bare(&upstream_toml("echo", &logged_echo(&log))))
        .await
        .unwrap();
    let mut client = serve_client(&serve).await;
    // message (1) > params (2) > arguments (3) > "a" and 60 arrays below it (4..=64).
    let mut deep = json!([]);
    for _ in 0..60 {
        deep = json!([deep]);
    }
    let answer = tokio::time::timeout(
        BOUND,
        client.request(
            "tools/call",
            json!({"name": "echo__deep", "arguments": {"a": deep}}),
        ),
    )
    .await
    .expect("no answer within the bound")
    .unwrap();
    assert_eq!(answer["error"]["code"], -31001, "{answer}");
    let text = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(
        text.contains("nested deeper than the depth limit"),
        "{answer}"
    );
    assert_serve_serves(&serve, &mut client, 1).await;
}

#[tokio::test]
async fn serve_survives_garbage_stray_responses_and_a_dying_upstream() {
    let toml = format!(
        "[limits]\nmax_message_bytes = 4096\n{}{}{}",
        upstream_toml(
            "garbage",
            &with_initialize_result("garbage_server.py", &["10000"])
        ),
        upstream_toml(
            "stray",
            &with_initialize_result("unknown_ids_server.py", &[])
        ),
        upstream_toml("dying", &with_initialize_result("dying_server.py", &[])),
    );
    let serve = Serve::start(&bare(&toml)).await.unwrap();
    let mut client = serve_client(&serve).await;
    let mut call = async |name: &str| {
        let answer = tokio::time::timeout(
            BOUND,
            client.request("tools/call", json!({"name": name, "arguments": {}})),
        )
        .await
        .unwrap_or_else(|_| panic!("{name}: no answer"))
        .unwrap();
        assert!(!answer.to_string().contains("SECRET-CANARY"), "{answer}");
        answer
    };

    for _ in 0..2 {
        // Only the real response of each upstream comes through, never the garbage before it
        // or the responses to ids nobody used.
        let answer = call("garbage__x").await;
        assert_eq!(answer["result"]["ok"], true, "{answer}");
        let answer = call("stray__x").await;
        assert_eq!(answer["result"]["real"], true, "{answer}");
    }

    // The dying upstream exits in the middle of this call: an error, not a hang.
    let answer = call("dying__x").await;
    assert_eq!(answer["error"]["code"], -31001, "{answer}");
    let answer = call("dying__x").await;
    assert_eq!(answer["error"]["code"], -31001, "{answer}");

    // The others still work, and so does the gateway.
    let answer = call("garbage__x").await;
    assert_eq!(answer["result"]["ok"], true, "{answer}");
    let answer = call("stray__x").await;
    assert_eq!(answer["result"]["real"], true, "{answer}");
    assert!(alive(serve.guard.pid()));
}
