//! The writer: durability, rotation, sharing, recovery, full queues.

use warden_audit::verify::Problem;
use warden_audit::{AuditError, AuditLog, FlushPolicy, OnFull};

use crate::*;

#[tokio::test]
async fn durable_record_is_on_disk_when_the_call_returns() {
    let fx = Fixture::new();
    let log = AuditLog::open(fx.options(), None).unwrap();
    log.record_durable(call("delete_everything", Status::Denied))
        .await
        .unwrap();
    // Read the file before anything else happens: the record and the head are there.
    let lines = fx.lines();
    assert_eq!(lines.len(), 1);
    assert!(lines[0].contains("delete_everything"));
    assert!(fx.verify().unwrap().head_checked);
    log.close().await.unwrap();
}

#[tokio::test]
async fn default_policy_syncs_denials_and_sensitive_calls_only() {
    let fx = Fixture::new();
    let mut opts = fx.options();
    opts.sensitive_tools = vec!["fs__write_*".into()];
    let log = AuditLog::open(opts, None).unwrap();
    assert!(log.needs_sync(&call("x", Status::Denied), false));
    assert!(!log.needs_sync(&call("x", Status::Result), false));
    assert!(log.is_sensitive_tool("fs__write_file"));
    assert!(!log.is_sensitive_tool("fs__read_file"));
    log.close().await.unwrap();
    let mut opts = fx.options();
    opts.flush = FlushPolicy::Batched;
    let log = AuditLog::open(opts, None).unwrap();
    assert!(!log.needs_sync(&call("x", Status::Denied), true));
    log.close().await.unwrap();
}

#[tokio::test]
async fn rotation_by_size_keeps_one_chain_across_files() {
    let fx = Fixture::new();
    let mut opts = fx.options();
    opts.rotate_bytes = 2000;
    opts.checkpoint_every = 5;
    let log = AuditLog::open(opts, None).unwrap();
    for i in 0..40 {
        log.record_durable(call(&format!("t{i}"), Status::Result))
            .await
            .unwrap();
    }
    log.close().await.unwrap();
    let rotated = warden_audit::rotated_files(&fx.path);
    assert!(rotated.len() >= 3, "{rotated:?}");
    let report = fx.verify().unwrap();
    assert_eq!(report.files.len(), rotated.len() + 1);
    assert_eq!(report.first_seq, Some(0));
    // Every call is in the chain.
    let all = warden_audit::query::search(&fx.path, &Default::default()).unwrap();
    let calls = all.iter().filter(|f| f.record["event"] == "call").count();
    assert_eq!(calls, 40);
    fx.verify_public().unwrap();

    // Deleting a whole rotated file in the middle breaks the chain at the next file.
    std::fs::remove_file(&rotated[1]).unwrap();
    let b = broken(fx.verify());
    assert_eq!(b.file, rotated[2]);
    assert!(matches!(b.problem, Problem::Missing { .. }), "{b}");
}

#[tokio::test]
async fn deleting_the_oldest_rotated_file_is_detected() {
    let fx = Fixture::new();
    let mut opts = fx.options();
    opts.rotate_bytes = 1500;
    let log = AuditLog::open(opts, None).unwrap();
    for i in 0..20 {
        log.record_durable(call(&format!("t{i}"), Status::Result))
            .await
            .unwrap();
    }
    log.close().await.unwrap();
    let rotated = warden_audit::rotated_files(&fx.path);
    std::fs::remove_file(&rotated[0]).unwrap();
    assert!(matches!(
        broken(fx.verify()).problem,
        Problem::MissingStart(_)
    ));
}

#[tokio::test]
async fn reopening_continues_the_chain() {
    let fx = Fixture::new();
    write_calls(&fx, fx.options(), 3).await;
    write_calls(&fx, fx.options(), 3).await;
    let report = fx.verify().unwrap();
    // 3 calls + checkpoint, twice.
    assert_eq!(report.records, 8);
}

#[tokio::test]
async fn two_writers_share_one_chain() {
    let fx = Fixture::new();
    let a = AuditLog::open(fx.options(), None).unwrap();
    let b = AuditLog::open(fx.options(), None).unwrap();
    for i in 0..20 {
        let log = if i % 2 == 0 { &a } else { &b };
        log.record_durable(call(&format!("t{i}"), Status::Result))
            .await
            .unwrap();
    }
    a.close().await.unwrap();
    b.close().await.unwrap();
    let report = fx.verify().unwrap();
    assert_eq!(report.records, 22);
}

#[tokio::test]
async fn torn_tail_is_removed_and_recorded_on_reopen() {
    let fx = Fixture::new();
    write_calls(&fx, fx.options(), 3).await;
    let mut text = std::fs::read_to_string(&fx.path).unwrap();
    let torn = "{\"seq\":4,\"rec\":{\"ts\":";
    text.push_str(torn);
    std::fs::write(&fx.path, &text).unwrap();
    assert_eq!(broken(fx.verify()).problem, Problem::Torn);
    write_calls(&fx, fx.options(), 1).await;
    fx.verify().unwrap();
    let recovered = warden_audit::query::search(
        &fx.path,
        &warden_audit::query::Filter {
            event: Some("recovered".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0].record["discarded_bytes"], torn.len());
}

#[tokio::test]
async fn refuses_to_continue_a_log_whose_last_record_is_forged() {
    let fx = Fixture::new();
    write_calls(&fx, fx.options(), 2).await;
    let mut lines = fx.lines();
    let last = lines.len() - 1;
    lines[last] = lines[last].replacen("\"mac\":\"", "\"mac\":\"0", 1);
    let n = lines[last].len();
    lines[last].replace_range(n - 3..n - 2, "");
    fx.write_lines(&lines);
    let err = AuditLog::open(fx.options(), None).unwrap_err();
    assert!(matches!(err, AuditError::BrokenTail { .. }), "{err}");
}

#[tokio::test(flavor = "current_thread")]
async fn full_queue_fails_closed_or_counts_drops() {
    // The writer task cannot run while this test holds the thread, so the queue fills.
    let fx = Fixture::new();
    let mut opts = fx.options();
    opts.queue = 2;
    let log = AuditLog::open(opts, None).unwrap();
    log.record(call("a", Status::Result)).unwrap();
    log.record(call("b", Status::Result)).unwrap();
    assert_eq!(log.queue_depth(), 2);
    assert!(matches!(
        log.record(call("c", Status::Result)),
        Err(AuditError::QueueFull)
    ));
    log.close().await.unwrap();

    let mut opts = fx.options();
    opts.queue = 2;
    opts.on_full = OnFull::FailOpen;
    let log = AuditLog::open(opts, None).unwrap();
    for t in ["d", "e", "f", "g"] {
        log.record(call(t, Status::Result)).unwrap();
    }
    assert_eq!(log.dropped(), 2);
    log.close().await.unwrap();
    let dropped = warden_audit::query::search(
        &fx.path,
        &warden_audit::query::Filter {
            event: Some("dropped".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(dropped.len(), 1);
    assert_eq!(dropped[0].record["count"], 2);
    fx.verify().unwrap();
}

#[tokio::test]
async fn search_filters_by_fields_and_time() {
    let fx = Fixture::new();
    let log = AuditLog::open(fx.options(), None).unwrap();
    log.record(call("read_file", Status::Result)).unwrap();
    log.record(call("write_file", Status::Denied)).unwrap();
    log.record(Event::SessionStart {
        session: "s2".into(),
        principal: "bob".into(),
        auth: "anonymous".into(),
        face: "http".into(),
    })
    .unwrap();
    log.close().await.unwrap();
    let find = |f: warden_audit::query::Filter| {
        warden_audit::query::search(&fx.path, &f)
            .unwrap()
            .into_iter()
            .map(|r| r.seq)
            .collect::<Vec<_>>()
    };
    use warden_audit::query::Filter;
    assert_eq!(
        find(Filter {
            verdict: Some("denied".into()),
            ..Default::default()
        }),
        [1]
    );
    assert_eq!(
        find(Filter {
            tool: Some("*_file".into()),
            ..Default::default()
        }),
        [0, 1]
    );
    assert_eq!(
        find(Filter {
            principal: Some("bob".into()),
            ..Default::default()
        }),
        [2]
    );
    let future = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
    assert!(
        find(Filter {
            since: Some(future),
            ..Default::default()
        })
        .is_empty()
    );
    assert_eq!(
        find(Filter {
            until: Some(future),
            session: Some("s1".into()),
            ..Default::default()
        }),
        [0, 1]
    );
}

#[tokio::test]
async fn full_capture_requires_a_redactor_and_digests_are_keyed() {
    let fx = Fixture::new();
    let mut opts = fx.options();
    opts.capture = warden_audit::Capture::Full;
    assert!(matches!(
        AuditLog::open(opts.clone(), None),
        Err(AuditError::NoRedactor)
    ));
    struct Mask;
    impl warden_audit::Redactor for Mask {
        fn redact(&self, value: &mut serde_json::Value) {
            if let Some(o) = value.as_object_mut() {
                o.insert("token".into(), "[REDACTED]".into());
            }
        }
    }
    let log = AuditLog::open(opts, Some(std::sync::Arc::new(Mask))).unwrap();
    let v = serde_json::json!({"token": "sk-live-123", "path": "/etc"});
    let c = log.content(&v);
    assert_eq!(c.bytes, serde_json::to_vec(&v).unwrap().len() as u64);
    assert_eq!(c.value.unwrap()["token"], "[REDACTED]");
    assert_eq!(log.content(&v).hmac, log.content(&v).hmac);
    // A different key gives a different digest: nobody without the key can test a guess.
    let other = Fixture::new();
    let log2 = AuditLog::open(other.options(), None).unwrap();
    assert_ne!(log2.content(&v).hmac, log.content(&v).hmac);
    assert!(log2.content(&v).value.is_none());
    log.close().await.unwrap();
    log2.close().await.unwrap();
}

#[tokio::test]
async fn deferred_contents_are_digested_by_the_writer_like_eager_ones() {
    let fx = Fixture::new();
    let log = AuditLog::open(fx.options(), None).unwrap();
    let args = serde_json::json!({"path": "/etc/passwd", "n": 3});
    let msg = bytes::Bytes::from(
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read","arguments":{"path":"/etc/passwd", "n":3}}}"#,
    );
    let params: serde_json::Value =
        serde_json::from_slice::<serde_json::Value>(&msg).unwrap()["params"].clone();
    let expect_args = log.content(&args);
    let expect_params = log.content(&params);
    let expect_msg = log.content_bytes(&msg);
    // The deferred form carries nothing measured yet: the request path did no digest.
    let d = log.content_deferred(msg.clone(), warden_audit::Part::Arguments);
    assert!(d.hmac.is_empty() && d.bytes == 0);
    let mut ev = call("read", Status::Result);
    if let Event::Call {
        arguments, result, ..
    } = &mut ev
    {
        *arguments = Some(d);
        *result = Some(log.content_deferred(msg.clone(), warden_audit::Part::Message));
    }
    log.record(ev).unwrap();
    log.record(Event::Message {
        session: None,
        direction: warden_audit::Direction::ToClient,
        method: "tools/call".into(),
        upstream: None,
        kind: "request".into(),
        params: Some(log.content_deferred(msg.clone(), warden_audit::Part::Params)),
    })
    .unwrap();
    log.flush().await.unwrap();
    let lines = fx.lines();
    let rec = |i: usize| -> serde_json::Value { serde_json::from_str(&lines[i]).unwrap() };
    let (call_rec, msg_rec) = (rec(0), rec(1));
    let find = |v: &serde_json::Value, k: &str| -> serde_json::Value {
        v.get(k)
            .or_else(|| v.get("rec").and_then(|r| r.get(k)))
            .cloned()
            .unwrap_or_else(|| panic!("no {k} in {v}"))
    };
    let check = |got: serde_json::Value, want: &warden_audit::Content| {
        assert_eq!(got["hmac"], want.hmac.as_str());
        assert_eq!(got["bytes"], want.bytes);
    };
    check(find(&call_rec, "arguments"), &expect_args);
    check(find(&call_rec, "result"), &expect_msg);
    check(find(&msg_rec, "params"), &expect_params);
    assert_ne!(expect_args.hmac, expect_params.hmac);
    assert!(fx.verify().unwrap().head_checked);
    log.close().await.unwrap();
}

/// Collects what a tap is shown.
#[derive(Debug, Default)]
struct Collect(std::sync::Mutex<Vec<(String, bool)>>);

impl warden_audit::AuditTap for Collect {
    fn records(&self, records: &[warden_audit::AuditRecord], written: bool) {
        let mut seen = self.0.lock().unwrap();
        for r in records {
            let v = serde_json::to_value(r).unwrap();
            let what = v["event"].as_str().unwrap_or("?").to_owned();
            seen.push((what, written));
        }
    }
}

#[tokio::test]
async fn taps_see_every_written_record_once_in_order() {
    let f = Fixture::new();
    let tap = std::sync::Arc::new(Collect::default());
    let mut opts = f.options();
    opts.taps.push(tap.clone());
    let log = AuditLog::open(opts, None).unwrap();
    log.record(call("read_file", Status::Result)).unwrap();
    log.record_durable(call("delete_file", Status::Denied))
        .await
        .unwrap();
    log.record(Event::GatewayStop { pid: 7 }).unwrap();
    log.close().await.unwrap();
    let seen = tap.0.lock().unwrap().clone();
    let events: Vec<&str> = seen
        .iter()
        .map(|(e, _)| e.as_str())
        .filter(|e| *e != "checkpoint")
        .collect();
    assert_eq!(events, ["call", "call", "gateway_stop"]);
    assert!(seen.iter().all(|(_, written)| *written));
    // The file holds exactly what the tap was shown.
    let on_disk: Vec<String> = f
        .lines()
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["rec"]["event"].as_str().unwrap().to_owned()
        })
        .filter(|e| e != "checkpoint")
        .collect();
    let shown: Vec<String> = events.iter().map(|e| (*e).to_owned()).collect();
    assert_eq!(on_disk, shown);
}

/// Records nobody waits for, pushed while the writer lingers after a batch (a push then does
/// not signal it), still reach the file without a flush or a close: the writer wakes when its
/// linger ends.
#[tokio::test]
async fn lingering_records_are_written_without_a_flush() {
    let fx = Fixture::new();
    let mut opts = fx.options();
    opts.linger = std::time::Duration::from_millis(50);
    let log = AuditLog::open(opts, None).unwrap();
    // A durable record: written at once, and it starts a linger.
    log.record_durable(call("delete_everything", Status::Denied))
        .await
        .unwrap();
    // Pushed during the linger, so no push wakes the writer.
    for i in 0..3 {
        log.record(call(&format!("read_{i}"), Status::Result))
            .unwrap();
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let lines = fx.lines();
        if lines.iter().filter(|l| l.contains("read_")).count() == 3 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "lingering records never written: {lines:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(fx.verify().unwrap().head_checked);
    log.close().await.unwrap();
}
