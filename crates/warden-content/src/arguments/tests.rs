use bytes::Bytes;
use serde_json::{Value, json};
use warden_guard::{Call, Direction, Guard, Principal, Verdict};
use warden_proto::{Limits, Message, decode};

use super::*;
use crate::mode::Modes;

const AWS: &str = "AKIAZ3MSJV7WQ4TLBN2K";

fn msg(v: Value) -> Message {
    decode(Bytes::from(v.to_string()), &Limits::default()).unwrap()
}

fn call_with(arguments: Value) -> Message {
    msg(json!({"jsonrpc":"2.0","id":1,"method":"tools/call",
        "params":{"name":"send","arguments":arguments}}))
}

fn guard(mode: Mode) -> ArgumentSecretsGuard {
    ArgumentSecretsGuard::new(ContentModes {
        default: Modes {
            secrets_in_arguments: mode,
            ..Modes::default()
        },
        ..ContentModes::default()
    })
}

fn run(g: &ArgumentSecretsGuard, m: &Message, direction: Direction) -> Verdict {
    let p = Principal::anonymous();
    let call = Call {
        upstream: Some("up"),
        ..Call::new(m, direction, &p)
    };
    g.check_now(&call).unwrap().unwrap()
}

#[test]
fn a_credential_in_arguments_is_reported_by_default() {
    let m = call_with(json!({"to": "x@example.com", "body": format!("key={AWS}"), "n": 3}));
    let Verdict::Report(report) = run(
        &guard(Modes::default().secrets_in_arguments),
        &m,
        Direction::ToUpstream,
    ) else {
        panic!("must report")
    };
    assert_eq!(report.detail, "aws-access-token at arguments/body");
    assert!(!report.detail.contains(AWS));
    assert_eq!(report.controls, ArgumentSecretsGuard::CONTROLS);
}

#[test]
fn redact_replaces_the_credential_and_keeps_the_call() {
    let m = call_with(json!({"body": format!("key={AWS}"), "nested": [{"k": AWS}]}));
    let Verdict::Rewrite(out) = run(&guard(Mode::Redact), &m, Direction::ToUpstream) else {
        panic!("must redact")
    };
    let v = out.value();
    assert_eq!(v["params"]["name"], "send");
    assert_eq!(v["id"], 1);
    let text = v["params"]["arguments"].to_string();
    assert!(!text.contains(AWS), "{text}");
    assert_eq!(
        text.matches("[REDACTED:aws-access-token]").count(),
        2,
        "{text}"
    );
}

#[test]
fn block_refuses_and_off_or_clean_forwards() {
    let m = call_with(json!({"body": AWS}));
    let Verdict::Deny(d) = run(&guard(Mode::Block), &m, Direction::ToUpstream) else {
        panic!("must refuse")
    };
    assert_eq!(d.guard, ArgumentSecretsGuard::NAME);
    assert!(!d.message.contains(AWS) && !d.detail.contains(AWS), "{d:?}");
    assert!(matches!(
        run(&guard(Mode::Off), &m, Direction::ToUpstream),
        Verdict::Continue
    ));
    let clean = call_with(json!({"body": "hello", "to": "x@example.com"}));
    assert!(
        matches!(
            run(&guard(Mode::Block), &clean, Direction::ToUpstream),
            Verdict::Continue
        ),
        "personal data is not this guard's"
    );
}

#[test]
fn only_calls_toward_the_upstream_are_looked_at() {
    let g = guard(Mode::Block);
    let other = msg(json!({"jsonrpc":"2.0","id":2,"method":"prompts/get",
        "params":{"name":"p","arguments":{"k":AWS}}}));
    assert!(matches!(
        run(&g, &other, Direction::ToUpstream),
        Verdict::Continue
    ));
    let back = call_with(json!({"body": AWS}));
    assert!(matches!(
        run(&g, &back, Direction::ToClient),
        Verdict::Continue
    ));
    let none = msg(json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"n"}}));
    assert!(matches!(
        run(&g, &none, Direction::ToUpstream),
        Verdict::Continue
    ));
}
