//! stdio upstreams: real child processes.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use serde_json::{Value, json};
use warden_proto::{Id, Kind, Limits, Message};
use warden_upstream::{CloseReason, Connection, StdioSpec, UpstreamError};

use crate::support::{
    CALL, bounded, call, capture_logs, drain, eventually, group_members, is_dead, message, python,
    request,
};

async fn echo() -> Connection {
    Connection::spawn_stdio(python("echo", "echo_server.py"))
        .await
        .expect("echo server starts")
}

/// The notifications/cancelled the echo server has received.
async fn cancelled_log(conn: &Connection) -> Vec<Value> {
    let reply = call(conn, "cancelled_log", json!({})).await;
    reply.result().expect("a result")["cancelled"]
        .as_array()
        .expect("a list")
        .clone()
}

#[tokio::test]
async fn echoes_a_request_under_a_rewritten_id() {
    bounded(async {
        let conn = echo().await;
        let original = request(json!("caller-1"), "tools/list", json!({"cursor": "c"}));
        let stream = conn.request(&original, CALL).await.unwrap();
        let upstream_id = stream.upstream_id().clone();
        assert_ne!(upstream_id, Id::String("caller-1".into()));
        let (notes, response) = drain(stream).await;
        assert!(notes.is_empty());
        assert_eq!(response.kind(), &Kind::Response);
        // The stream carries the upstream id; the server saw that id, not the caller's.
        assert_eq!(response.id(), Some(&upstream_id));
        assert_eq!(
            response.result().unwrap()["id_seen"],
            upstream_id.to_value()
        );
        assert_eq!(response.result().unwrap()["params"], json!({"cursor": "c"}));
        let restored = response.with_id(original.id().unwrap());
        assert_eq!(restored.value()["id"], json!("caller-1"));
        assert_eq!(conn.in_flight(), 0);
        conn.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn multiplexes_concurrent_callers_with_colliding_ids() {
    bounded(async {
        let conn = echo().await;
        let mut tasks = Vec::new();
        for i in 0..40u64 {
            let conn = conn.clone();
            tasks.push(tokio::spawn(async move {
                // Every caller uses id 1; answers arrive out of order.
                let ms = (40 - i) * 5;
                let m = request(json!(1), "slow", json!({"ms": ms, "tag": i}));
                let (_, response) = drain(conn.request(&m, CALL).await.unwrap()).await;
                assert_eq!(response.result().unwrap()["tag"], json!(i));
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(conn.in_flight(), 0);
        conn.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_progress_to_its_request_and_restores_the_token() {
    bounded(async {
        let conn = echo().await;
        // Two callers with the same token: each must get its own progress.
        let params = |tag: u64| json!({"ms": 200, "tag": tag, "_meta": {"progressToken": "tok"}});
        let a = conn
            .request(&request(json!(1), "slow", params(1)), CALL)
            .await
            .unwrap();
        let b = conn
            .request(&request(json!(1), "slow", params(2)), CALL)
            .await
            .unwrap();
        for (stream, tag) in [(a, 1), (b, 2)] {
            let (notes, response) = drain(stream).await;
            assert_eq!(notes.len(), 1, "exactly this request's progress");
            assert_eq!(notes[0].method(), Some("notifications/progress"));
            assert_eq!(notes[0].params().unwrap()["progressToken"], json!("tok"));
            assert_eq!(response.result().unwrap()["tag"], json!(tag));
        }
        conn.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_message_during_the_only_call_goes_on_its_stream_ahead_of_the_response() {
    bounded(async {
        let conn = echo().await;
        let mut unsolicited = conn.take_unsolicited().expect("first take");
        assert!(conn.take_unsolicited().is_none(), "taken once");
        let stream = conn
            .request(
                &request(json!(1), "notify_me", json!({"data": "during"})),
                CALL,
            )
            .await
            .unwrap();
        let (notes, _) = drain(stream).await;
        assert_eq!(
            notes.len(),
            1,
            "the log line written during the call precedes its response"
        );
        assert_eq!(notes[0].method(), Some("notifications/message"));
        assert_eq!(notes[0].params().unwrap()["data"], json!("during"));
        assert!(
            unsolicited.try_recv().is_err(),
            "and is not also unsolicited"
        );
        conn.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn unattributed_messages_go_to_the_unsolicited_channel() {
    bounded(async {
        let conn = echo().await;
        // Two calls in flight: a message written meanwhile cannot be attributed.
        let slow = conn
            .request(&request(json!(1), "slow", json!({"ms": 500})), CALL)
            .await
            .unwrap();
        // Sent before the receiver is taken: kept.
        call(&conn, "notify_me", json!({"data": "early"})).await;
        let mut unsolicited = conn.take_unsolicited().expect("first take");
        let unsolicited = unsolicited.recv().await.unwrap();
        // Both requests were in flight when it came: it may be about either.
        assert_eq!(unsolicited.in_flight.len(), 2, "{unsolicited:?}");
        let note = unsolicited.message;
        assert_eq!(note.method(), Some("notifications/message"));
        assert_eq!(note.params().unwrap()["data"], json!("early"));
        drain(slow).await;
        conn.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn answers_a_server_initiated_request() {
    bounded(async {
        let conn = echo().await;
        let mut stream = conn
            .request(&request(json!(7), "sample", json!({})), CALL)
            .await
            .unwrap();
        // The only call in flight: the server's request arrives on its stream.
        let server_request = stream.next().await.unwrap().unwrap();
        assert_eq!(server_request.kind(), &Kind::Request);
        assert_eq!(server_request.method(), Some("sampling/createMessage"));
        let answer = message(json!({
            "jsonrpc": "2.0",
            "id": server_request.id().unwrap().to_value(),
            "result": {"role": "assistant", "content": {"type": "text", "text": "hi"}}
        }));
        conn.respond(&answer).await.unwrap();
        let (_, response) = drain(stream).await;
        assert_eq!(
            response.result().unwrap()["answered"]["content"]["text"],
            json!("hi")
        );
        conn.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_pretty_printed_request_is_sent_as_one_line() {
    bounded(async {
        let conn = echo().await;
        let pretty = b"{\n  \"jsonrpc\": \"2.0\",\r\n  \"id\": 3,\n  \"method\": \"tools/list\"\n}";
        let m =
            warden_proto::decode(bytes::Bytes::from_static(pretty), &Limits::default()).unwrap();
        let (_, response) = drain(conn.request(&m, CALL).await.unwrap()).await;
        assert_eq!(response.result().unwrap()["method"], json!("tools/list"));
        conn.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn timeout_yields_an_error_and_cancels_upstream() {
    bounded(async {
        let conn = echo().await;
        let mut stream = conn
            .request(
                &request(json!(1), "slow", json!({"ms": 3000})),
                Duration::from_millis(200),
            )
            .await
            .unwrap();
        let upstream_id = stream.upstream_id().to_value();
        assert!(matches!(
            stream.next().await,
            Some(Err(UpstreamError::Timeout))
        ));
        assert!(stream.next().await.is_none());
        assert_eq!(conn.in_flight(), 0);
        let log = cancelled_log(&conn).await;
        assert_eq!(
            log,
            vec![json!({"requestId": upstream_id, "reason": "timeout"})]
        );
        conn.shutdown().await;
    })
    .await;
}

/// A call whose upstream never answers but keeps sending progress, faster than the caller reads
/// it, still times out: the deadline is not starved by a queue that is never empty.
#[tokio::test]
async fn a_call_flooded_with_progress_still_times_out() {
    bounded(async {
        let conn = echo().await;
        let params = json!({"ms": 20_000, "_meta": {"progressToken": "p1"}});
        let mut stream = conn
            .request(
                &request(json!(1), "chatter", params),
                Duration::from_millis(300),
            )
            .await
            .unwrap();
        let mut notes = 0;
        let reading = async {
            loop {
                match stream.next().await {
                    Some(Ok(note)) => {
                        assert!(!note.is_response(), "{note:?}");
                        notes += 1;
                        // A slow reader: the queue of notes stays full.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    other => break other,
                }
            }
        };
        // Well before the upstream stops sending (20 s): the timeout is 300 ms.
        let outcome = tokio::time::timeout(Duration::from_secs(10), reading)
            .await
            .expect("the call outlived its timeout while progress kept coming");
        assert!(
            matches!(outcome, Some(Err(UpstreamError::Timeout))),
            "{outcome:?} after {notes} notes"
        );
        assert!(notes > 0);
        conn.shutdown().await;
    })
    .await;
}

/// A request whose stream nobody reads (a call parked until its client retries) while its
/// upstream floods it with progress costs the shared stdout reader one wait, not one per note:
/// another request on the connection is still answered promptly.
#[tokio::test]
async fn an_unread_stream_flooded_with_progress_does_not_stall_the_connection() {
    bounded(async {
        let conn = echo().await;
        let params = json!({"ms": 3000, "_meta": {"progressToken": "p1"}});
        let _unread = conn
            .request(&request(json!(1), "chatter", params), CALL)
            .await
            .unwrap();
        // Let the flood fill the unread queue (64 notes) and more.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut other = conn
            .request(&request(json!(2), "other", json!({})), CALL)
            .await
            .unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(5), other.next())
            .await
            .expect("the other request waited behind the unread stream's notes");
        assert!(
            matches!(answer, Some(Ok(ref m)) if m.is_response()),
            "{answer:?}"
        );
        conn.shutdown().await;
    })
    .await;
}

/// A response that arrived in time is not lost to a reader that comes late: the notes queued
/// ahead of it, then the response, not a timeout.
#[tokio::test]
async fn a_response_in_time_survives_a_late_reader() {
    bounded(async {
        let conn = echo().await;
        let params = json!({"ms": 20, "_meta": {"progressToken": "p1"}});
        let mut stream = conn
            .request(
                &request(json!(1), "slow", params),
                Duration::from_millis(300),
            )
            .await
            .unwrap();
        // Both the progress and the response are in long before the reader looks.
        tokio::time::sleep(Duration::from_millis(600)).await;
        let note = stream.next().await;
        assert!(
            matches!(note, Some(Ok(ref m)) if !m.is_response()),
            "{note:?}"
        );
        let answer = stream.next().await;
        assert!(
            matches!(answer, Some(Ok(ref m)) if m.is_response()),
            "{answer:?}"
        );
        conn.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn dropping_a_stream_cancels_the_request_upstream() {
    bounded(async {
        let conn = echo().await;
        let stream = conn
            .request(&request(json!(1), "slow", json!({"ms": 3000})), CALL)
            .await
            .unwrap();
        let upstream_id = stream.upstream_id().to_value();
        drop(stream);
        assert_eq!(conn.in_flight(), 0);
        let log = cancelled_log(&conn).await;
        assert_eq!(
            log,
            vec![json!({"requestId": upstream_id, "reason": "request cancelled"})]
        );
        conn.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn initialize_is_never_cancelled() {
    bounded(async {
        let conn = echo().await;
        let stream = conn
            .request(
                &request(json!(0), "initialize", json!({"delay_ms": 300})),
                CALL,
            )
            .await
            .unwrap();
        drop(stream);
        let mut timed_out = conn
            .request(
                &request(json!(0), "initialize", json!({"delay_ms": 3000})),
                Duration::from_millis(100),
            )
            .await
            .unwrap();
        assert!(matches!(
            timed_out.next().await,
            Some(Err(UpstreamError::Timeout))
        ));
        assert!(cancelled_log(&conn).await.is_empty());
        conn.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn garbage_on_stdout_is_dropped_counted_and_not_logged() {
    let (logs, _guard) = capture_logs(tracing::Level::DEBUG);
    bounded(async {
        let mut spec = python("garbage", "garbage_server.py");
        spec.limits = Limits {
            max_message_bytes: 4096,
            ..Limits::default()
        };
        let conn = Connection::spawn_stdio(spec).await.unwrap();
        let mut unsolicited = conn.take_unsolicited().unwrap();
        for i in 0..3 {
            let (notes, response) = drain(
                conn.request(&request(json!(i), "tools/list", json!({})), CALL)
                    .await
                    .unwrap(),
            )
            .await;
            assert!(notes.is_empty());
            // Not the duplicate-key or the over-long response (which carry an unused id).
            assert_eq!(response.result().unwrap(), &json!({"ok": true}));
        }
        assert_eq!(conn.stats().invalid, 3 * 7);
        assert_eq!(conn.stats().received, 3);
        assert!(conn.is_alive(), "garbage does not end the connection");
        assert!(
            unsolicited.try_recv().is_err(),
            "nothing invalid was forwarded"
        );
        conn.shutdown().await;
    })
    .await;
    let logs = logs.contents();
    assert!(
        logs.contains("dropped an invalid line from upstream stdout"),
        "{logs}"
    );
    assert!(
        logs.contains("dropped an over-long line from upstream stdout"),
        "{logs}"
    );
    assert!(logs.contains("upstream=garbage"), "{logs}");
    assert!(
        !logs.contains("SECRET-CANARY"),
        "line content must not be logged: {logs}"
    );
}

#[tokio::test]
async fn responses_with_unknown_ids_are_dropped() {
    bounded(async {
        let conn = Connection::spawn_stdio(python("stray", "unknown_ids_server.py"))
            .await
            .unwrap();
        let mut unsolicited = conn.take_unsolicited().unwrap();
        for _ in 0..2 {
            let reply = call(&conn, "tools/list", json!({})).await;
            assert_eq!(reply.result().unwrap(), &json!({"real": true}));
        }
        assert_eq!(conn.stats().unknown_responses, 2 * 3);
        assert!(unsolicited.try_recv().is_err());
        assert!(conn.is_alive());
        conn.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn death_mid_call_fails_pending_requests_with_the_exit_status() {
    bounded(async {
        let conn = Connection::spawn_stdio(python("dying", "dying_server.py"))
            .await
            .unwrap();
        call(&conn, "first", json!({})).await;
        // Another request in flight when the process dies.
        let mut bystander = conn
            .request(&request(json!(2), "bystander", json!({})), CALL)
            .await
            .unwrap();
        let mut fatal = conn
            .request(&request(json!(3), "die", json!({})), CALL)
            .await
            .unwrap();
        for stream in [&mut fatal, &mut bystander] {
            match stream.next().await {
                Some(Err(UpstreamError::Closed {
                    reason: CloseReason::Exited(status),
                    ..
                })) => assert_eq!(status.code(), Some(3)),
                other => panic!("expected closed with exit status, got {other:?}"),
            }
            assert!(stream.next().await.is_none());
        }
        assert!(!conn.is_alive());
        assert_eq!(conn.exit_status().and_then(|s| s.code()), Some(3));
        // Later calls fail fast.
        let later = conn.request(&request(json!(4), "x", json!({})), CALL).await;
        assert!(
            matches!(later, Err(UpstreamError::Closed { .. })),
            "{later:?}"
        );
        let note = message(json!({"jsonrpc": "2.0", "method": "notifications/x"}));
        assert!(matches!(
            conn.notify(&note).await,
            Err(UpstreamError::Closed { .. })
        ));
        conn.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn shutdown_of_a_cooperative_server_closes_stdin_and_reaps_it() {
    bounded(async {
        let conn = echo().await;
        let pid = conn.pid().unwrap();
        conn.shutdown().await;
        // It exited by itself on stdin EOF: status 0, no signal.
        assert_eq!(conn.exit_status().unwrap().code(), Some(0));
        assert!(!conn.is_alive());
        assert!(is_dead(pid));
        conn.shutdown().await; // idempotent
    })
    .await;
}

#[tokio::test]
async fn shutdown_writes_what_was_queued_before_closing_stdin() {
    let (logs, _guard) = capture_logs(tracing::Level::DEBUG);
    bounded(async {
        let conn = echo().await;
        let note = message(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        conn.notify(&note).await.unwrap();
        conn.shutdown().await;
        assert_eq!(conn.exit_status().unwrap().code(), Some(0));
        // The stderr reader runs on its own: wait for it to log the last line.
        eventually("the server reports what it received", || {
            logs.contents()
                .contains("notifications seen: notifications/initialized")
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn shutdown_escalates_to_sigkill_and_empties_the_process_group() {
    bounded(async {
        let mut spec = python("stubborn", "stubborn_server.py");
        spec.shutdown_grace = Duration::from_millis(300);
        let conn = Connection::spawn_stdio(spec).await.unwrap();
        let pids = call(&conn, "pids", json!({})).await;
        let pids = pids.result().unwrap();
        let pid = conn.pid().unwrap();
        assert_eq!(pids["pid"], json!(pid));
        assert_eq!(
            pids["pgid"],
            json!(pid),
            "the child leads its own process group"
        );
        let grandchild = u32::try_from(pids["grandchild"].as_u64().unwrap()).unwrap();
        assert!(!is_dead(grandchild));
        assert_ne!(
            group_members(pid),
            Vec::<u32>::new(),
            "the group is populated before shutdown"
        );

        conn.shutdown().await;
        // It ignored stdin EOF and SIGTERM: only SIGKILL can have ended it.
        let status = conn.exit_status().expect("reaped by shutdown");
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
        eventually("grandchild dies", || is_dead(grandchild)).await;
        eventually("process group empties", || group_members(pid).is_empty()).await;
    })
    .await;
}

#[tokio::test]
async fn dropping_the_last_handle_kills_the_whole_group() {
    bounded(async {
        let conn = Connection::spawn_stdio(python("stubborn", "stubborn_server.py"))
            .await
            .unwrap();
        let pids = call(&conn, "pids", json!({})).await;
        let grandchild =
            u32::try_from(pids.result().unwrap()["grandchild"].as_u64().unwrap()).unwrap();
        let pid = conn.pid().unwrap();
        let clone = conn.clone();
        drop(conn);
        assert!(!is_dead(pid), "a clone still holds the connection");
        drop(clone);
        eventually("child dies", || is_dead(pid)).await;
        eventually("grandchild dies", || is_dead(grandchild)).await;
        eventually("process group empties", || group_members(pid).is_empty()).await;
    })
    .await;
}

#[tokio::test]
async fn environment_and_working_directory_are_applied() {
    bounded(async {
        let dir = std::env::temp_dir();
        let mut spec = python("env", "echo_server.py");
        spec.program = "/usr/bin/env".into();
        spec.args = [
            "python3".to_owned(),
            "-u".to_owned(),
            crate::support::fixture("echo_server.py"),
        ]
        .into();
        spec.env_clear = true;
        spec.env = vec![
            ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
            ("WARDEN_TEST".into(), "yes".into()),
        ];
        spec.cwd = Some(dir.clone());
        let conn = Connection::spawn_stdio(spec).await.unwrap();
        let reply = call(&conn, "env", json!({"keys": ["WARDEN_TEST", "HOME"]})).await;
        let result = reply.result().unwrap();
        assert_eq!(result["env"]["WARDEN_TEST"], json!("yes"));
        assert_eq!(
            result["env"]["HOME"],
            Value::Null,
            "the environment was cleared"
        );
        assert_eq!(
            std::fs::canonicalize(result["cwd"].as_str().unwrap()).unwrap(),
            std::fs::canonicalize(dir).unwrap()
        );
        conn.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn stderr_goes_to_tracing_capped_per_line() {
    let (logs, _guard) = capture_logs(tracing::Level::DEBUG);
    bounded(async {
        let mut spec = python("noisy", "echo_server.py");
        spec.stderr_cap = 64;
        let conn = Connection::spawn_stdio(spec).await.unwrap();
        let long = format!("START{}END", "y".repeat(1000));
        call(
            &conn,
            "stderr",
            json!({"lines": ["hello from stderr", long]}),
        )
        .await;
        eventually("stderr is logged", || logs.contents().contains("START")).await;
        conn.shutdown().await;
    })
    .await;
    let logs = logs.contents();
    let line = logs
        .lines()
        .find(|l| l.contains("hello from stderr"))
        .unwrap_or_else(|| panic!("stderr line logged: {logs}"));
    assert!(line.contains("upstream=noisy"), "{line}");
    let long = logs
        .lines()
        .find(|l| l.contains("START"))
        .unwrap_or_else(|| panic!("long stderr line logged: {logs}"));
    assert!(long.contains("truncated=true"), "{long}");
    assert!(!long.contains("END"), "cut at the cap: {long}");
    assert!(long.matches('y').count() <= 64, "{long}");
}

#[tokio::test]
async fn spawn_failure_is_reported() {
    bounded(async {
        let spec = StdioSpec::new("missing", "/nonexistent/mcp-server");
        match Connection::spawn_stdio(spec).await {
            Err(UpstreamError::Spawn { name, .. }) => assert_eq!(name, "missing"),
            other => panic!("expected a spawn error, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn wrong_message_kinds_are_refused() {
    bounded(async {
        let conn = echo().await;
        let note = message(json!({"jsonrpc": "2.0", "method": "notifications/x"}));
        assert!(matches!(
            conn.request(&note, CALL).await,
            Err(UpstreamError::WrongKind { .. })
        ));
        let req: Message = request(json!(1), "x", json!({}));
        assert!(matches!(
            conn.notify(&req).await,
            Err(UpstreamError::WrongKind { .. })
        ));
        assert!(matches!(
            conn.respond(&req).await,
            Err(UpstreamError::WrongKind { .. })
        ));
        assert!(conn.fork_http().is_none());
        assert!(conn.session_id().is_none());
        conn.shutdown().await;
    })
    .await;
}

/// Runs inside a separate test process started by
/// `the_child_dies_when_the_gateway_is_killed`: starts an upstream, reports its pid, waits.
#[tokio::test]
#[ignore = "helper process for the_child_dies_when_the_gateway_is_killed"]
async fn parent_death_helper() {
    if std::env::var_os("WARDEN_PARENT_DEATH_HELPER").is_none() {
        return;
    }
    // It ignores stdin EOF and SIGTERM: only the parent-death SIGKILL can end it.
    let mut spec = python("orphan", "stubborn_server.py");
    spec.args.push("--no-grandchild".into());
    let conn = Connection::spawn_stdio(spec).await.unwrap();
    println!("PID {}", conn.pid().unwrap());
    std::future::pending::<()>().await;
}

// Proves: LIFE-2 (the upstream dies with the gateway, even when the gateway is SIGKILLed).
#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_child_dies_when_the_gateway_is_killed() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    bounded(async {
        let mut helper = tokio::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "stdio::parent_death_helper",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("WARDEN_PARENT_DEATH_HELPER", "1")
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(helper.stdout.take().unwrap()).lines();
        let pid: u32 = loop {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("helper reports a pid");
            // libtest may print its "test ... " prefix on the same line.
            if let Some((_, pid)) = line.split_once("PID ") {
                break pid.trim().parse().unwrap();
            }
        };
        assert!(!is_dead(pid));
        // SIGKILL: no destructor, no drop guard runs in the helper.
        helper.start_kill().unwrap();
        helper.wait().await.unwrap();
        eventually("the orphaned upstream dies", || is_dead(pid)).await;
    })
    .await;
}

// H1: a response the gateway refuses fails its request at once (not after the call's
// timeout), with the rule it broke; the valid response that follows is dropped as unknown.
#[tokio::test]
async fn a_refused_response_fails_its_request_at_once() {
    bounded(async {
        let mut spec = python("refusing", "refusing_server.py");
        spec.limits = Limits {
            max_message_bytes: 4096,
            ..Limits::default()
        };
        let conn = Connection::spawn_stdio(spec).await.unwrap();
        let cases = [
            ("dup", "duplicate object keys"),
            ("deep", "nested deeper than the depth limit"),
            ("utf8", "not valid JSON or not UTF-8"),
            ("long", "larger than the message size limit"),
            // The id is past the kept head: the only request in flight is the one.
            ("long-id-last", "larger than the message size limit"),
        ];
        for (n, (mode, reason)) in cases.into_iter().enumerate() {
            let started = tokio::time::Instant::now();
            // A timeout far beyond the test's bound: only the refusal can end the call.
            let mut stream = conn
                .request(
                    &request(json!(n), "tools/call", json!({"mode": mode})),
                    Duration::from_secs(3600),
                )
                .await
                .unwrap();
            let error = match stream.next().await {
                Some(Err(e)) => e,
                other => panic!("{mode}: expected a refusal, got {other:?}"),
            };
            assert!(stream.next().await.is_none(), "{mode}");
            let expected = format!("refused its response: {reason}");
            assert_eq!(
                warden_upstream::refused_response_reason(&error),
                Some(expected.as_str()),
                "{mode}: {error}"
            );
            assert!(error.to_string().ends_with(reason), "{mode}: {error}");
            assert!(started.elapsed() < Duration::from_secs(10), "{mode}");
            assert_eq!(conn.in_flight(), 0, "{mode}");
        }
        // Let the late valid responses arrive: each is an unknown response now.
        let until = tokio::time::Instant::now() + Duration::from_secs(10);
        while conn.stats().unknown_responses < 5 && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(conn.stats().unknown_responses, 5);
        assert!(conn.is_alive());
        conn.shutdown().await;
    })
    .await;
}

// A refused *request* from the server that reuses a pending request's id (the server's own id
// space) must not fail that request.
#[tokio::test]
async fn a_refused_server_request_fails_nothing() {
    bounded(async {
        let conn = Connection::spawn_stdio(python("refusing", "refusing_server.py"))
            .await
            .unwrap();
        let (notes, response) = drain(
            conn.request(
                &request(json!(1), "tools/call", json!({"mode": "server-request"})),
                CALL,
            )
            .await
            .unwrap(),
        )
        .await;
        assert!(notes.is_empty());
        assert_eq!(response.result().unwrap(), &json!({"late": true}));
        assert_eq!(conn.stats().invalid, 1);
        conn.shutdown().await;
    })
    .await;
}

/// A server that stops reading its stdin while it floods requests nobody takes: each is
/// refused, the refusals cannot be written, and only a bounded number of them wait for room
/// (before, each started a task of its own that lived up to 30 s).
#[tokio::test]
async fn refusals_to_a_server_that_does_not_read_are_bounded() {
    bounded(async {
        let mut spec = python("flood", "flooding_server.py");
        spec.args.push("3000".into());
        // It never reads stdin, so it does not see it close: SIGTERM soon.
        spec.shutdown_grace = Duration::from_millis(200);
        let conn = Connection::spawn_stdio(spec).await.unwrap();
        // The unsolicited receiver is never taken: past its 256 slots every request is refused.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while conn.stats().dropped < 2700 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(conn.stats().dropped >= 2700, "{:?}", conn.stats());
        let tasks = tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks();
        assert!(tasks < 200, "{tasks} tasks alive");
        conn.shutdown().await;
    })
    .await;
}
