//! What the supervisor builds on: a connection tells when it dies (with the exit status), and
//! reports its stderr per window, within a byte budget.

use std::time::Duration;

use serde_json::json;
use warden_upstream::{Connection, StderrBudget};

use crate::support::{bounded, call, python};

#[tokio::test]
async fn closed_resolves_once_the_child_exits_with_its_status() {
    bounded(async {
        let conn = Connection::spawn_stdio(python("exiting", "echo_server.py"))
            .await
            .unwrap();
        let closed = tokio::spawn({
            let conn = conn.clone();
            async move { conn.closed().await }
        });
        // Still running: `closed` has not resolved.
        call(&conn, "ping", json!({})).await;
        assert!(!closed.is_finished());
        let _ = conn
            .request(
                &crate::support::request(json!(2), "exit", json!({"code": 6})),
                crate::support::CALL,
            )
            .await
            .unwrap();
        let status = closed.await.unwrap().expect("the child was reaped");
        assert_eq!(status.code(), Some(6));
        assert!(!conn.is_alive());
    })
    .await;
}

#[tokio::test]
async fn closed_resolves_on_shutdown_too() {
    bounded(async {
        let conn = Connection::spawn_stdio(python("stopped", "echo_server.py"))
            .await
            .unwrap();
        conn.shutdown().await;
        // A server that exits when its stdin closes: reaped with status 0.
        let status = conn.closed().await;
        assert!(status.is_some());
    })
    .await;
}

#[tokio::test]
async fn stderr_reports_count_what_the_budget_left_out() {
    bounded(async {
        let mut spec = python("noisy", "echo_server.py");
        spec.stderr_budget = Some(StderrBudget {
            bytes: 25,
            window: Duration::from_millis(200),
        });
        let conn = Connection::spawn_stdio(spec).await.unwrap();
        let mut reports = conn.take_stderr_reports().expect("taken once");
        assert!(conn.take_stderr_reports().is_none());
        // The server's start-up line is a window of its own, once the window has passed.
        let ready = reports.recv().await.expect("a report of the start-up line");
        assert_eq!(&ready.logged[..], b"echo server ready\n");
        assert_eq!((ready.bytes, ready.lines, ready.over_budget), (18, 1, 0));
        // Three 10-byte lines (11 with the newline): two fit 25 bytes, the third does not.
        call(
            &conn,
            "stderr",
            json!({"lines": ["aaaaaaaaaa", "bbbbbbbbbb", "SECRET-ccc"]}),
        )
        .await;
        let report = reports.recv().await.expect("a report when the window ends");
        assert_eq!(report.bytes, 33);
        assert_eq!(report.lines, 3);
        assert_eq!(report.over_budget, 11);
        assert_eq!(&report.logged[..], b"aaaaaaaaaa\nbbbbbbbbbb\n");
        conn.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn without_a_budget_every_line_is_logged_and_still_reported() {
    bounded(async {
        let mut spec = python("unbudgeted", "echo_server.py");
        spec.stderr_budget = None;
        let conn = Connection::spawn_stdio(spec).await.unwrap();
        let mut reports = conn.take_stderr_reports().unwrap();
        call(&conn, "stderr", json!({"lines": ["x".repeat(100)]})).await;
        // The window ends at shutdown (stderr closes) at the latest.
        conn.shutdown().await;
        let report = reports.recv().await.expect("a report");
        assert!(report.bytes >= 101, "{report:?}");
        assert_eq!(report.over_budget, 0);
    })
    .await;
}
