use proptest::prelude::*;
use serde_json::{Value, json};
use warden_proto::{Limits, Message};

use super::*;

const CLIENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn decode(text: &str) -> Message {
    warden_proto::decode(Bytes::from(text.to_owned()), &Limits::default()).unwrap()
}

fn all() -> Propagator {
    Propagator::new(Sampler::ratio(1.0))
}

fn forwarded_meta(m: &Message) -> Value {
    let v: Value = serde_json::from_slice(m.bytes()).unwrap();
    v["params"]["_meta"].clone()
}

#[test]
fn child_of_a_valid_client_context_keeps_trace_and_tracestate() {
    let text = format!(
        r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"echo","arguments":{{"n":12345678901234567890123,"s":"x"}},"_meta":{{"progressToken":3,"traceparent":"{CLIENT}","tracestate":"vendor=abc"}}}}}}"#
    );
    let (out, ctx) = all().start(decode(&text));
    assert_eq!(ctx.trace_id.to_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(ctx.parent.unwrap().to_hex(), "00f067aa0ba902b7");
    assert_ne!(ctx.span_id.to_hex(), "00f067aa0ba902b7");
    assert!(ctx.sampled);
    let expected = format!(
        r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"echo","arguments":{{"n":12345678901234567890123,"s":"x"}},"_meta":{{"progressToken":3,"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01","tracestate":"vendor=abc"}}}}}}"#,
        ctx.span_id.to_hex()
    );
    // Byte for byte: the big integer, key order and everything else untouched.
    assert_eq!(std::str::from_utf8(out.bytes()).unwrap(), expected);
    assert_eq!(out.method(), Some("tools/call"));
    assert_eq!(out.id(), decode(&text).id());
}

#[test]
fn request_without_params_gets_params_meta() {
    let (out, ctx) = all().start(decode(r#"{"jsonrpc":"2.0","id":"a","method":"ping"}"#));
    assert!(ctx.parent.is_none());
    assert_eq!(
        std::str::from_utf8(out.bytes()).unwrap(),
        format!(
            r#"{{"jsonrpc":"2.0","id":"a","method":"ping","params":{{"_meta":{{"traceparent":"{}"}}}}}}"#,
            ctx.traceparent()
        )
    );
}

#[test]
fn invalid_client_context_starts_a_new_trace_and_drops_its_tracestate() {
    for bad in [
        json!("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
        json!("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
        json!("garbage"),
        json!(42),
        json!({"nested": CLIENT}),
    ] {
        let msg = json!({"jsonrpc":"2.0","id":1,"method":"tools/call",
            "params":{"name":"t","_meta":{"traceparent": bad, "tracestate":"v=1"}}});
        let (out, ctx) = all().start(Message::from_value(msg).unwrap());
        assert!(ctx.parent.is_none(), "{bad}");
        assert_ne!(ctx.trace_id.to_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let meta = forwarded_meta(&out);
        assert_eq!(meta["traceparent"], ctx.traceparent().to_string(), "{bad}");
        assert!(meta.get("tracestate").is_none(), "{bad}: {meta}");
    }
}

#[test]
fn oversized_or_non_string_tracestate_is_dropped() {
    for state in [json!("a".repeat(MAX_TRACESTATE_BYTES + 1)), json!(["v=1"])] {
        let msg = json!({"jsonrpc":"2.0","id":1,"method":"m",
            "params":{"_meta":{"traceparent": CLIENT, "tracestate": state}}});
        let (out, ctx) = all().start(Message::from_value(msg).unwrap());
        assert!(ctx.parent.is_some());
        assert!(forwarded_meta(&out).get("tracestate").is_none());
    }
}

#[test]
fn unsampled_client_context_is_propagated_unsampled() {
    let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    let msg =
        json!({"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{"traceparent": unsampled}}});
    let (out, ctx) = all().start(Message::from_value(msg).unwrap());
    assert!(!ctx.sampled);
    let header = forwarded_meta(&out)["traceparent"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(header.ends_with("-00"), "{header}");
    assert!(header.contains(&ctx.span_id.to_hex()));
}

#[test]
fn params_or_meta_that_are_not_objects_are_forwarded_unchanged() {
    for text in [
        r#"{"jsonrpc":"2.0","id":1,"method":"m","params":[1,2]}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":"x"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":null}}"#,
    ] {
        let (out, ctx) = all().start(decode(text));
        assert_eq!(out.bytes().as_ref(), text.as_bytes());
        assert!(ctx.parent.is_none());
    }
}

#[tokio::test]
async fn current_is_the_span_of_the_enclosing_scope_only() {
    assert!(current().is_none());
    let (_, ctx) = all().start(decode(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#));
    let seen = in_span(ctx, async {
        tokio::task::yield_now().await;
        current()
    })
    .await;
    assert_eq!(seen, Some(ctx));
    assert!(current().is_none());
}

proptest! {
    /// Whatever `params` holds, the forwarded request is the same request with only
    /// `params._meta.traceparent`/`tracestate` changed, and never a panic.
    #[test]
    fn rewrite_changes_only_the_trace_keys(
        args in proptest::collection::btree_map("[a-z_]{1,6}", any::<i64>(), 0..5),
        meta in proptest::collection::btree_map("[a-zA-Z_/.]{1,12}", "[ -~]{0,20}", 0..4),
        header in prop_oneof![Just(CLIENT.to_owned()), "[ -~]{0,60}"],
    ) {
        let mut meta_value: serde_json::Map<String, Value> =
            meta.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
        meta_value.insert("traceparent".into(), Value::String(header));
        let msg = json!({"jsonrpc":"2.0","id":5,"method":"tools/call",
            "params":{"name":"t","arguments": args, "_meta": meta_value}});
        let (out, ctx) = all().start(Message::from_value(msg.clone()).unwrap());
        let got: Value = serde_json::from_slice(out.bytes()).unwrap();
        let mut want = msg;
        want["params"]["_meta"]["traceparent"] = Value::String(ctx.traceparent().to_string());
        if ctx.parent.is_none()
            && let Some(m) = want["params"]["_meta"].as_object_mut()
        {
            m.remove("tracestate");
        }
        prop_assert_eq!(got, want);
    }

    #[test]
    fn start_never_panics_on_any_request_bytes(
        params in "\\PC{0,60}",
    ) {
        let text = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"m","params":{params}}}"#);
        if let Ok(m) = warden_proto::decode(Bytes::from(text), &Limits::default()) {
            let _ = all().start(m);
        }
    }
}
