//! Upstream supervision against a real, misbehaving Python SDK server
//! (`tests/fixtures/lifecycle_server.py`): restart after a crash, a crash loop marked down,
//! the maximum call duration with `notifications/cancelled` reaching the server, a client's
//! cancellation reaching it too, health checks restarting a server that stopped answering,
//! stderr reports, and no process left behind. Every wait is bounded; only pids the gateway
//! started (and their children) are looked at.
// Proves: LIFE-1, LIFE-2, LIFE-3, LIFE-5

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use warden_audit::{AuditLog, AuditOptions};
use warden_guard::{Pipeline, Principal};
use warden_proto::Message;
use warden_session::{
    EraPreference, Face, Gateway, GatewayOptions, Handler, LifecyclePolicy, Reply, Session,
    Transport, Unhealthy, UpstreamDef,
};
use warden_upstream::{StderrBudget, StdioSpec};

/// Bound of every single wait in these tests.
const WAIT: Duration = Duration::from_secs(30);

fn fixture() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/lifecycle_server.py")
        .display()
        .to_string()
}

/// A policy that restarts quickly and checks nothing unless asked.
fn quick() -> LifecyclePolicy {
    LifecyclePolicy {
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_millis(200),
        backoff_jitter: 0.0,
        max_restarts: 3,
        restart_window: Duration::from_secs(120),
        down_retry: None,
        health_interval: None,
        ..LifecyclePolicy::default()
    }
}

struct Fixture {
    gateway: Arc<Gateway>,
    audit: AuditLog,
    state: tempfile::TempDir,
    _logs: tempfile::TempDir,
}

struct Setup {
    policy: LifecyclePolicy,
    extra: Vec<&'static str>,
    era: EraPreference,
    request_timeout: Duration,
    max_call: Option<Duration>,
    stderr: Option<StderrBudget>,
    transparent: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            policy: quick(),
            extra: vec![],
            era: EraPreference::Legacy,
            request_timeout: WAIT,
            max_call: None,
            stderr: None,
            transparent: false,
        }
    }
}

impl Fixture {
    async fn start(setup: Setup) -> Fixture {
        let state = tempfile::tempdir().unwrap();
        let logs = tempfile::tempdir().unwrap();
        let audit = AuditLog::open(
            AuditOptions::new(
                logs.path().join("audit.jsonl"),
                logs.path().join("audit.key"),
            ),
            None,
        )
        .unwrap();
        let mut spec = StdioSpec::new("flaky", warden_test::deps::python().display().to_string());
        spec.args = vec![fixture(), state.path().display().to_string()];
        spec.args
            .extend(setup.extra.iter().map(|s| (*s).to_owned()));
        spec.shutdown_grace = Duration::from_millis(500);
        spec.max_call_duration = setup.max_call;
        spec.stderr_budget = setup.stderr;
        let def = UpstreamDef {
            name: "flaky".into(),
            transport: Transport::Stdio(spec),
            era: setup.era,
            request_timeout: setup.request_timeout,
            startup_timeout: WAIT,
            namespace: true,
            lifecycle: setup.policy,
        };
        let gateway = Gateway::start(
            vec![def],
            Pipeline::passthrough(),
            GatewayOptions {
                transparent: setup.transparent,
                audit: Some(audit.clone()),
                ..GatewayOptions::default()
            },
        )
        .await
        .unwrap();
        Fixture {
            gateway,
            audit,
            state,
            _logs: logs,
        }
    }

    async fn session(&self) -> Arc<Session> {
        let s = self
            .gateway
            .open_session(Principal::anonymous(), Face::Http)
            .await
            .unwrap();
        let r = self
            .call(
                &s,
                json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}),
            )
            .await;
        assert!(r.get("result").is_some(), "{r}");
        // Fill the routing catalog.
        let tools = self.list_tools(&s).await;
        assert!(tools.contains(&"flaky__whoami".to_owned()), "{tools:?}");
        s
    }

    async fn call(&self, session: &Arc<Session>, msg: Value) -> Value {
        let (notes, response) = self.call_with_notes(session, msg).await;
        drop(notes);
        response
    }

    /// The response, and the messages that came before it.
    async fn call_with_notes(&self, session: &Arc<Session>, msg: Value) -> (Vec<Value>, Value) {
        let m = Message::from_value(msg).unwrap();
        let reply = tokio::time::timeout(
            WAIT,
            self.gateway
                .handle(Some(session), &Principal::anonymous(), m),
        )
        .await
        .unwrap();
        let Reply::Stream(mut stream) = reply else {
            panic!("a request must get a reply stream")
        };
        let mut notes = vec![];
        loop {
            let m = tokio::time::timeout(WAIT, stream.next())
                .await
                .unwrap()
                .expect("a response");
            if m.is_response() {
                return (notes, m.into_value());
            }
            notes.push(m.into_value());
        }
    }

    async fn tool(&self, session: &Arc<Session>, id: u64, name: &str, args: Value) -> Value {
        self.call(
            session,
            json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":format!("flaky__{name}"),"arguments":args}}),
        )
        .await
    }

    async fn whoami(&self, session: &Arc<Session>, id: u64) -> Value {
        self.tool(session, id, "whoami", json!({})).await
    }

    async fn list_tools(&self, session: &Arc<Session>) -> Vec<String> {
        let r = self
            .call(
                session,
                json!({"jsonrpc":"2.0","id":99,"method":"tools/list","params":{}}),
            )
            .await;
        r["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Pids the fixture recorded, one per start.
    fn starts(&self) -> Vec<u32> {
        read_lines(&self.state.path().join("starts"))
            .iter()
            .map(|l| l.parse().unwrap())
            .collect()
    }

    fn cancellations(&self) -> usize {
        read_lines(&self.state.path().join("cancelled")).len()
    }

    /// The `upstream` audit records so far, as written to the log (each line's `rec`).
    async fn upstream_records(&self) -> Vec<Value> {
        self.audit.flush().await.unwrap();
        std::fs::read_to_string(self.audit.path())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["rec"].take())
            .filter(|r| r["event"] == "upstream")
            .collect()
    }

    async fn actions(&self) -> Vec<String> {
        self.upstream_records()
            .await
            .iter()
            .map(|r| r["action"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Waits until the audit log holds `count` records of `action`.
    async fn await_action(&self, action: &str, count: usize) {
        let limit = tokio::time::Instant::now() + WAIT;
        loop {
            let actions = self.actions().await;
            if actions.iter().filter(|a| *a == action).count() >= count {
                return;
            }
            assert!(
                tokio::time::Instant::now() < limit,
                "never got {count} `{action}` records; got {actions:?}; log: {}",
                std::fs::read_to_string(self.audit.path()).unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(self) {
        self.gateway.shutdown().await;
        self.audit.close().await.unwrap();
    }
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn text(result: &Value) -> &str {
    result["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("a text result: {result}"))
}

/// Polls `condition` every 50 ms until it holds, for at most [`WAIT`].
async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let limit = tokio::time::Instant::now() + WAIT;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < limit,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// True when the process no longer runs (gone, or a zombie waiting for its reaper).
fn is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 2..].chars().next())
            .is_some_and(|state| matches!(state, 'Z' | 'X')),
        Err(_) => true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_crashes_on_a_call_is_restarted_and_the_next_call_succeeds() {
    crash_and_restart(EraPreference::Legacy).await;
}

/// The SDK server is dual-era: detected as modern, it gets a second process for legacy
/// clients, and that is the one that crashes here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_second_process_of_a_dual_era_server_restarts_the_upstream() {
    crash_and_restart(EraPreference::Auto).await;
}

async fn crash_and_restart(era: EraPreference) {
    let f = Fixture::start(Setup {
        era,
        ..Setup::default()
    })
    .await;
    let s = f.session().await;
    let first: u32 = text(&f.whoami(&s, 1).await).parse().unwrap();
    // A child of the first server: it must die with its parent's restart.
    let child: u32 = text(&f.tool(&s, 2, "spawn_child", json!({})).await)
        .parse()
        .unwrap();
    assert!(!is_dead(child));

    let crashed = f.tool(&s, 3, "crash", json!({"code": 7})).await;
    // The call in flight fails with a clear error, not a hang.
    assert_eq!(crashed["error"]["code"], json!(-31001), "{crashed}");
    assert!(
        crashed["error"]["message"]
            .as_str()
            .unwrap()
            .contains("upstream `flaky` is unavailable"),
        "{crashed}"
    );

    f.await_action("restarted", 1).await;
    let second: u32 = text(&f.whoami(&s, 4).await).parse().unwrap();
    assert_ne!(first, second, "a new process answers");
    assert!(f.starts().ends_with(&[second]), "{:?}", f.starts());
    assert!(f.gateway.upstream_pids().contains(&second));
    assert!(!f.gateway.upstream_pids().contains(&first));
    // Proves: LIFE-2 — the old process and its child are gone.
    assert!(is_dead(first), "the crashed server was reaped");
    eventually("the crashed server's child is killed", || async {
        is_dead(child)
    })
    .await;

    let records = f.upstream_records().await;
    let exited = records
        .iter()
        .find(|r| r["action"] == "exited" && r["pid"] == json!(first))
        .expect("an exited record of the crashed process");
    assert_eq!(exited["pid"], json!(first));
    assert_eq!(exited["exit_code"], json!(7));
    assert!(
        records.iter().any(|r| r["action"] == "restarted"),
        "{records:?}"
    );
    assert!(f.gateway.upstreams_down().is_empty());
    let all = f.starts();
    f.stop().await;
    for pid in all {
        assert!(is_dead(pid), "pid {pid} outlived the gateway");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_crashes_at_every_start_is_marked_down_after_the_limit() {
    let f = Fixture::start(Setup {
        extra: vec!["--crash-at-start"],
        ..Setup::default()
    })
    .await;
    f.await_action("marked_down", 1).await;
    // One start by the gateway, then exactly `max_restarts` (3) restarts.
    assert_eq!(f.starts().len(), 4, "starts: {:?}", f.starts());
    assert_eq!(f.gateway.upstreams_down(), vec!["flaky".to_owned()]);
    let actions = f.actions().await;
    assert_eq!(
        actions.iter().filter(|a| *a == "exited").count(),
        4,
        "{actions:?}"
    );
    assert_eq!(
        actions.iter().filter(|a| *a == "handshake_failed").count(),
        3,
        "{actions:?}"
    );
    assert!(!actions.iter().any(|a| a == "restarted"), "{actions:?}");
    let down = f
        .upstream_records()
        .await
        .into_iter()
        .find(|r| r["action"] == "marked_down")
        .unwrap();
    assert!(
        down["detail"]
            .as_str()
            .unwrap()
            .contains("3 restarts within"),
        "{down}"
    );
    let exit = f
        .upstream_records()
        .await
        .into_iter()
        .find(|r| r["action"] == "exited")
        .unwrap();
    assert_eq!(exit["exit_code"], json!(3));

    // A client is told plainly, and the list leaves the upstream out.
    let s = f
        .gateway
        .open_session(Principal::anonymous(), Face::Http)
        .await
        .unwrap();
    let init = f
        .call(
            &s,
            json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}),
        )
        .await;
    assert!(init.get("result").is_some(), "{init}");
    assert!(f.list_tools(&s).await.is_empty());
    // The catalog was never filled (the upstream never answered), so route by the
    // namespaced name the way the gateway routes methods it does not know.
    let call = f
        .call(
            &s,
            json!({"jsonrpc":"2.0","id":5,"method":"x/unknown","params":{"name":"flaky__whoami"}}),
        )
        .await;
    assert_eq!(call["error"]["code"], json!(-31001), "{call}");
    // No process is left: every start was reaped.
    for pid in f.starts() {
        assert!(is_dead(pid), "pid {pid} still runs");
    }
    // And no further restarts happen once down (no down_retry here).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(f.starts().len(), 4);
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_call_duration_ends_a_call_that_keeps_reporting_progress_and_cancels_it_upstream() {
    let f = Fixture::start(Setup {
        // Progress every 50 ms keeps pushing the 1 s request timeout back; only the 3 s
        // maximum ends the call.
        request_timeout: Duration::from_secs(1),
        max_call: Some(Duration::from_secs(3)),
        ..Setup::default()
    })
    .await;
    let s = f.session().await;
    let (notes, response) = f
        .call_with_notes(
            &s,
            json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"flaky__hang","arguments":{"interval":0.05},"_meta":{"progressToken":"p7"}}}),
        )
        .await;
    assert_eq!(response["error"]["code"], json!(-31002), "{response}");
    assert_eq!(response["id"], json!(7));
    let progress = notes
        .iter()
        .filter(|n| n["method"] == "notifications/progress")
        .count();
    // More progress than fits in one request timeout: the call outlived it because of
    // progress, and ended at the maximum call duration.
    assert!(progress > 20, "only {progress} progress notifications");
    assert!(notes.iter().all(|n| n["params"]["progressToken"] == "p7"));
    eventually("the server saw notifications/cancelled", || async {
        f.cancellations() == 1
    })
    .await;
    // The server is still usable.
    let pid: u32 = text(&f.whoami(&s, 8).await).parse().unwrap();
    assert_eq!(f.starts(), vec![pid]);
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cancellation_reaches_the_server() {
    let f = Fixture::start(Setup::default()).await;
    let s = f.session().await;
    let m = Message::from_value(json!({"jsonrpc":"2.0","id":"c1","method":"tools/call","params":{"name":"flaky__hang","arguments":{"interval":0.05},"_meta":{"progressToken":"pc"}}})).unwrap();
    let reply = f.gateway.handle(Some(&s), &Principal::anonymous(), m).await;
    let Reply::Stream(mut stream) = reply else {
        panic!("a reply stream")
    };
    // The call is running upstream once its first progress arrives.
    let first = tokio::time::timeout(WAIT, stream.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.method(), Some("notifications/progress"));
    let cancel = Message::from_value(json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"c1","reason":"user"}})).unwrap();
    let accepted = f
        .gateway
        .handle(Some(&s), &Principal::anonymous(), cancel)
        .await;
    assert!(matches!(accepted, Reply::Accepted));
    // The exchange ends without a response, and the server's handler was cancelled.
    let rest = tokio::time::timeout(WAIT, async {
        while let Some(m) = stream.next().await {
            assert!(!m.is_response(), "a cancelled call gets no response: {m:?}");
        }
    })
    .await;
    assert!(rest.is_ok());
    eventually("the server saw notifications/cancelled", || async {
        f.cancellations() == 1
    })
    .await;
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stops_answering_ping_is_restarted() {
    let f = Fixture::start(Setup {
        policy: LifecyclePolicy {
            health_interval: Some(Duration::from_millis(300)),
            health_timeout: Duration::from_millis(500),
            health_failures: 2,
            on_unhealthy: Unhealthy::Restart,
            ..quick()
        },
        ..Setup::default()
    })
    .await;
    let s = f.session().await;
    let first: u32 = text(&f.whoami(&s, 1).await).parse().unwrap();
    // Blocks the server's event loop: the pings time out, and the restart (well before the
    // call's own 30 s timeout) ends the call in flight as "unavailable".
    let stalled = f.tool(&s, 2, "stall", json!({})).await;
    assert_eq!(stalled["error"]["code"], json!(-31001), "{stalled}");
    f.await_action("restarted", 1).await;
    let actions = f.actions().await;
    assert!(
        actions.iter().filter(|a| *a == "health_failed").count() >= 2,
        "{actions:?}"
    );
    let second: u32 = text(&f.whoami(&s, 3).await).parse().unwrap();
    assert_ne!(first, second);
    assert!(is_dead(first), "the stalled server was killed");
    f.stop().await;
    assert!(is_dead(second));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_mark_down_and_mark_up_follow_the_checks() {
    let f = Fixture::start(Setup {
        policy: LifecyclePolicy {
            health_interval: Some(Duration::from_millis(200)),
            health_timeout: Duration::from_millis(400),
            health_failures: 1,
            on_unhealthy: Unhealthy::MarkDown,
            ..quick()
        },
        ..Setup::default()
    })
    .await;
    let s = f.session().await;
    let pid: u32 = text(&f.whoami(&s, 1).await).parse().unwrap();
    // Stop the server (SIGSTOP): it cannot answer; the gateway marks it down, not restarts it.
    signal(pid, "STOP");
    f.await_action("marked_down", 1).await;
    let refused = f.whoami(&s, 2).await;
    assert_eq!(refused["error"]["code"], json!(-31001), "{refused}");
    assert!(f.list_tools(&s).await.is_empty());
    // Resume it: the next check answers and the upstream is marked up again.
    signal(pid, "CONT");
    f.await_action("marked_up", 1).await;
    let again: u32 = text(&f.whoami(&s, 3).await).parse().unwrap();
    assert_eq!(again, pid, "the same process, never restarted");
    assert!(!f.actions().await.iter().any(|a| a == "restarted"));
    // Sessions were told the tool list changed, twice (down, then up).
    let mut unsolicited = s.take_unsolicited().expect("nobody took them");
    let mut changed = 0;
    while let Ok(m) = unsolicited.try_recv() {
        if m.method() == Some("notifications/tools/list_changed") {
            changed += 1;
        }
    }
    assert_eq!(changed, 2);
    f.stop().await;
}

/// Sends a signal to a process this test's gateway started.
fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stderr_over_budget_is_counted_and_audited_as_a_digest() {
    let f = Fixture::start(Setup {
        stderr: Some(StderrBudget {
            bytes: 1000,
            window: Duration::from_millis(300),
        }),
        ..Setup::default()
    })
    .await;
    let s = f.session().await;
    // 50 lines of 100 bytes (101 with the newline): 9 fit the 1000-byte budget.
    let ok = f
        .tool(&s, 1, "noisy", json!({"lines": 50, "size": 100}))
        .await;
    assert_eq!(text(&ok), "ok");
    f.await_action("stderr", 1).await;
    let records = f.upstream_records().await;
    let details: Vec<&str> = records
        .iter()
        .filter(|r| r["action"] == "stderr")
        .map(|r| r["detail"].as_str().unwrap())
        .collect();
    // "{bytes} bytes in {lines} lines over {ms} ms; {over} bytes over budget not logged;
    // logged {n} bytes, hmac-sha256 {hex}"
    let numbers = |d: &str| -> Vec<u64> {
        d.split(|c: char| !c.is_ascii_alphanumeric())
            .filter_map(|w| w.parse().ok())
            .collect()
    };
    let noisy = details
        .iter()
        .find(|d| numbers(d)[3] > 0)
        .unwrap_or_else(|| panic!("a window over budget: {details:?}"));
    let n = numbers(noisy);
    assert!(n[0] >= 50 * 101, "{noisy}");
    assert!(n[4] <= 1000, "logged within the budget: {noisy}");
    assert_eq!(n[0], n[3] + n[4], "read = over budget + logged: {noisy}");
    let hex = noisy.rsplit(' ').next().unwrap();
    assert_eq!(hex.len(), 64, "{noisy}");
    // The text itself never reaches the audit log.
    let raw = std::fs::read_to_string(f.audit.path()).unwrap();
    assert!(
        !raw.contains("e1-xxxx"),
        "stderr text leaked into the audit log"
    );
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_mode_does_not_restart_and_reports_the_upstream_lost() {
    let f = Fixture::start(Setup {
        transparent: true,
        ..Setup::default()
    })
    .await;
    let s = f
        .gateway
        .open_session(Principal::anonymous(), Face::Stdio)
        .await
        .unwrap();
    let init = f
        .call(
            &s,
            json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}),
        )
        .await;
    assert!(init.get("result").is_some(), "{init}");
    let crashed = f
        .call(
            &s,
            json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"crash","arguments":{"code":9}}}),
        )
        .await;
    assert!(crashed.get("error").is_some(), "{crashed}");
    let lost = tokio::time::timeout(WAIT, f.gateway.upstream_lost())
        .await
        .unwrap();
    assert_eq!(lost, "flaky");
    // Never restarted: one start only, and the exit is audited.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(f.starts().len(), 1);
    let actions = f.actions().await;
    assert!(actions.contains(&"exited".to_owned()), "{actions:?}");
    assert!(!actions.contains(&"restarted".to_owned()), "{actions:?}");
    f.stop().await;
}
