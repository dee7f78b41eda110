use bytes::Bytes;
use serde_json::json;
use warden_proto::{Limits, decode};

use super::*;

fn msg(text: &str) -> Message {
    decode(Bytes::copy_from_slice(text.as_bytes()), &Limits::default()).unwrap()
}

fn register(pending: &mut Pending, ids: &IdAllocator, text: &str) -> (Prepared, Receivers) {
    let original = msg(text);
    let prepared = prepare(&original, ids.next()).unwrap();
    let (entry, receivers) = entry(&original, &prepared);
    pending
        .register(prepared.upstream_id.clone(), entry)
        .unwrap();
    (prepared, receivers)
}

#[test]
fn allocates_unique_increasing_numeric_ids() {
    let ids = IdAllocator::default();
    assert_eq!(ids.next(), Id::from(1));
    assert_eq!(ids.next(), Id::from(2));
    assert_eq!(ids.next().to_json(), "3");
}

#[test]
fn rewrites_only_the_id_bytes_without_a_progress_token() {
    let original = msg(
        r#"{"jsonrpc":"2.0", "id":"caller-7","method":"tools/call","params":{"name":"x","n":1.50}}"#,
    );
    let prepared = prepare(&original, Id::from(42)).unwrap();
    assert_eq!(
        prepared.message.bytes().as_ref(),
        br#"{"jsonrpc":"2.0", "id":42,"method":"tools/call","params":{"name":"x","n":1.50}}"#
    );
    assert_eq!(prepared.caller_token, None);
}

#[test]
fn rewrites_the_progress_token_to_the_upstream_id() {
    let original = msg(
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","_meta":{"progressToken":"tok","other":true}}}"#,
    );
    let prepared = prepare(&original, Id::from(9)).unwrap();
    let v = prepared.message.value();
    assert_eq!(v["id"], json!(9));
    assert_eq!(v["params"]["_meta"]["progressToken"], json!(9));
    assert_eq!(v["params"]["_meta"]["other"], json!(true));
    assert_eq!(prepared.caller_token, Some(json!("tok")));
}

#[test]
fn leaves_a_malformed_progress_token_alone() {
    let original =
        msg(r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{"progressToken":{}}}}"#);
    let prepared = prepare(&original, Id::from(9)).unwrap();
    assert_eq!(prepared.caller_token, None);
    assert_eq!(
        prepared.message.value()["params"]["_meta"]["progressToken"],
        json!({})
    );
}

#[test]
fn routes_a_response_to_its_request_and_forgets_it() {
    let ids = IdAllocator::default();
    let mut pending = Pending::default();
    let (a, _ra) = register(
        &mut pending,
        &ids,
        r#"{"jsonrpc":"2.0","id":1,"method":"a"}"#,
    );
    let (_b, _rb) = register(
        &mut pending,
        &ids,
        r#"{"jsonrpc":"2.0","id":1,"method":"b"}"#,
    );
    assert_eq!(pending.len(), 2, "two callers may reuse the same id");
    let reply = msg(&format!(
        r#"{{"jsonrpc":"2.0","id":{},"result":{{}}}}"#,
        a.upstream_id
    ));
    match pending.route(reply.clone(), None) {
        Route::Respond { message, .. } => assert_eq!(message.id(), Some(&a.upstream_id)),
        other => panic!("unexpected route {other:?}"),
    }
    assert!(!pending.contains(&a.upstream_id));
    assert!(matches!(
        pending.route(reply, None),
        Route::UnknownResponse(_)
    ));
}

#[test]
fn unknown_and_id_less_responses_are_reported_not_routed() {
    let mut pending = Pending::default();
    let unknown = msg(r#"{"jsonrpc":"2.0","id":"nope","result":{}}"#);
    assert!(matches!(
        pending.route(unknown, None),
        Route::UnknownResponse(_)
    ));
    let id_less = msg(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}"#);
    assert!(matches!(
        pending.route(id_less, None),
        Route::UnknownResponse(_)
    ));
}

#[test]
fn routes_progress_by_token_and_restores_the_callers_token() {
    let ids = IdAllocator::default();
    let mut pending = Pending::default();
    let req = r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"_meta":{"progressToken":"same"}}}"#;
    let (_a, _ra) = register(&mut pending, &ids, req);
    let (b, _rb) = register(&mut pending, &ids, req);
    let progress = msg(&format!(
        r#"{{"jsonrpc":"2.0","method":"notifications/progress","params":{{"progressToken":{},"progress":1}}}}"#,
        b.upstream_id
    ));
    match pending.route(progress, None) {
        Route::Note {
            notes,
            message,
            then_end,
        } => {
            assert!(then_end.is_none());
            assert_eq!(message.value()["params"]["progressToken"], json!("same"));
            assert_eq!(message.value()["params"]["progress"], json!(1));
            // It went to b's stream, not a's.
            assert!(notes.same_channel(&notes_of(&pending, &b.upstream_id)));
        }
        other => panic!("unexpected route {other:?}"),
    }
}

fn notes_of(pending: &Pending, id: &Id) -> NoteSender {
    pending.entries[id].notes.clone()
}

/// Progress that names no request in flight with a token (sent for a request that had none, or
/// late, after its request was answered) is dropped: it is never handed to the request that
/// happens to be in flight, which may be another caller's.
#[test]
fn progress_naming_no_request_in_flight_is_stale() {
    let ids = IdAllocator::default();
    let mut pending = Pending::default();
    let (a, _ra) = register(
        &mut pending,
        &ids,
        r#"{"jsonrpc":"2.0","id":5,"method":"m"}"#,
    );
    let progress_for = |id: &Id| {
        msg(&format!(
            r#"{{"jsonrpc":"2.0","method":"notifications/progress","params":{{"progressToken":{id},"progress":1}}}}"#
        ))
    };
    assert!(matches!(
        pending.route(progress_for(&a.upstream_id), None),
        Route::Stale
    ));
    // A call with a token, answered; another caller's call is then the only one in flight.
    let (b, _rb) = register(
        &mut pending,
        &ids,
        r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"_meta":{"progressToken":"mine"}}}"#,
    );
    pending.remove(&a.upstream_id);
    pending.remove(&b.upstream_id);
    let (_c, _rc) = register(
        &mut pending,
        &ids,
        r#"{"jsonrpc":"2.0","id":7,"method":"tools/call"}"#,
    );
    for sole in [false, true] {
        assert!(
            matches!(
                pending.route_with(progress_for(&b.upstream_id), None, sole),
                Route::Stale
            ),
            "sole: {sole}"
        );
    }
    let made_up = msg(
        r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"x","progress":1}}"#,
    );
    assert!(matches!(
        pending.route_with(made_up, None, true),
        Route::Stale
    ));
    for tokenless in [
        r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/progress"}"#,
    ] {
        assert!(
            matches!(pending.route_with(msg(tokenless), None, true), Route::Stale),
            "{tokenless}"
        );
    }
}

#[test]
fn notifications_and_requests_in_an_http_stream_belong_to_that_request() {
    let ids = IdAllocator::default();
    let mut pending = Pending::default();
    let (a, _ra) = register(
        &mut pending,
        &ids,
        r#"{"jsonrpc":"2.0","id":5,"method":"m"}"#,
    );
    let log = msg(r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"data":1}}"#);
    assert!(matches!(
        pending.route(log.clone(), Some(&a.upstream_id)),
        Route::Note { .. }
    ));
    assert!(matches!(
        pending.route(log.clone(), None),
        Route::Unsolicited(_)
    ));
    let sampling = msg(r#"{"jsonrpc":"2.0","id":1,"method":"sampling/createMessage"}"#);
    assert!(matches!(
        pending.route(sampling, Some(&a.upstream_id)),
        Route::Note { .. }
    ));
    pending.remove(&a.upstream_id);
    assert!(matches!(
        pending.route(log, Some(&a.upstream_id)),
        Route::Stale
    ));
}

#[test]
fn routes_subscription_notifications_and_listen_teardown() {
    let ids = IdAllocator::default();
    let mut pending = Pending::default();
    let (listen, _r) = register(
        &mut pending,
        &ids,
        r#"{"jsonrpc":"2.0","id":"sub-1","method":"subscriptions/listen","params":{}}"#,
    );
    let up = listen.upstream_id.to_json();
    let changed = msg(&format!(
        r#"{{"jsonrpc":"2.0","method":"notifications/tools/list_changed","params":{{"_meta":{{"io.modelcontextprotocol/subscriptionId":{up}}}}}}}"#
    ));
    match pending.route(changed, None) {
        Route::Note { message, .. } => assert_eq!(
            message.value()["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
            json!("sub-1")
        ),
        other => panic!("unexpected route {other:?}"),
    }
    let teardown = msg(&format!(
        r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":{up}}}}}"#
    ));
    match pending.route(teardown, None) {
        Route::Note {
            message, then_end, ..
        } => {
            assert!(then_end.is_some());
            assert_eq!(message.value()["params"]["requestId"], json!("sub-1"));
        }
        other => panic!("unexpected route {other:?}"),
    }
    assert!(!pending.contains(&listen.upstream_id));
}

#[test]
fn a_server_cancelling_its_own_request_is_not_matched_against_ours() {
    let ids = IdAllocator::default();
    let mut pending = Pending::default();
    let (a, _r) = register(
        &mut pending,
        &ids,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
    );
    let cancel = msg(&format!(
        r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":{}}}}}"#,
        a.upstream_id
    ));
    assert!(matches!(pending.route(cancel, None), Route::Unsolicited(_)));
    assert!(pending.contains(&a.upstream_id));
}

#[test]
fn a_closed_map_refuses_new_requests_and_keeps_the_exit_reason() {
    let ids = IdAllocator::default();
    let mut pending = Pending::default();
    let (_a, _r) = register(
        &mut pending,
        &ids,
        r#"{"jsonrpc":"2.0","id":1,"method":"a"}"#,
    );
    let drained = pending.close(CloseReason::OutputClosed);
    assert_eq!(drained.len(), 1);
    assert_eq!(pending.len(), 0);
    let original = msg(r#"{"jsonrpc":"2.0","id":1,"method":"a"}"#);
    let prepared = prepare(&original, ids.next()).unwrap();
    let (e, _) = entry(&original, &prepared);
    assert_eq!(
        pending.register(prepared.upstream_id, e),
        Err(CloseReason::OutputClosed)
    );
    let status = <std::process::ExitStatus as std::os::unix::process::ExitStatusExt>::from_raw(0);
    pending.close_with_exit(CloseReason::Exited(status));
    assert_eq!(pending.closed(), Some(CloseReason::Exited(status)));
    pending.close(CloseReason::ShutDown);
    assert_eq!(pending.closed(), Some(CloseReason::Exited(status)));
}

#[test]
fn cancellation_names_the_upstream_id() {
    let m = cancellation(&Id::from(17), "timeout");
    assert_eq!(m.kind(), &Kind::Notification);
    assert_eq!(
        m.value(),
        &json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":17,"reason":"timeout"}})
    );
}

#[test]
fn a_sole_request_takes_uncorrelated_messages_unless_it_is_the_handshake() {
    let ids = IdAllocator::default();
    let log = msg(r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"data":1}}"#);

    let mut pending = Pending::default();
    let (_call, _rc) = register(
        &mut pending,
        &ids,
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/call"}"#,
    );
    assert!(matches!(
        pending.route_with(log.clone(), None, true),
        Route::Note { .. }
    ));

    // The standalone stream opens as soon as `initialize` names a session: what it carries
    // while the handshake is still in flight is not the handshake's.
    let mut pending = Pending::default();
    let (_init, _ri) = register(
        &mut pending,
        &ids,
        r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{}}"#,
    );
    assert!(matches!(
        pending.route_with(log, None, true),
        Route::Unsolicited(_)
    ));
}
