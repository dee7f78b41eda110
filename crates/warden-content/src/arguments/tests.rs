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

/// Arguments have no binary payload to skip: members named like MCP's binary fields (chosen
/// by the tool's schema, filled by the model) are scanned and redacted like any other.
#[test]
fn members_named_like_binary_payloads_are_scanned_in_arguments() {
    let m = call_with(json!({
        "blob": AWS,
        "file": {"uri": "file:///x", "blob": AWS},
        "image": {"type": "image", "data": AWS}
    }));
    let Verdict::Report(report) = run(
        &guard(Modes::default().secrets_in_arguments),
        &m,
        Direction::ToUpstream,
    ) else {
        panic!("must report")
    };
    assert_eq!(
        report.detail.matches("aws-access-token").count(),
        3,
        "{}",
        report.detail
    );
    let Verdict::Rewrite(out) = run(&guard(Mode::Redact), &m, Direction::ToUpstream) else {
        panic!("must redact")
    };
    let text = out.value()["params"]["arguments"].to_string();
    assert!(!text.contains(AWS), "{text}");
}

/// Besides a call's arguments: a prompt's arguments, what a completion is asked for, and a
/// resource's URI carry what the model or the user filled in.
#[test]
fn prompt_arguments_completions_and_uris_are_scanned_too() {
    let g = guard(Mode::Block);
    for request in [
        json!({"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"p","arguments":{"k":AWS}}}),
        json!({"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"p"},"argument":{"name":"k","value":AWS}}}),
        json!({"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"p"},"argument":{"name":"k","value":"x"},"context":{"arguments":{"token":AWS}}}}),
        json!({"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":format!("https://x.example/doc?key={AWS}")}}),
    ] {
        assert!(
            matches!(
                run(&g, &msg(request.clone()), Direction::ToUpstream),
                Verdict::Deny(_)
            ),
            "{request}"
        );
    }
    let clean = json!({"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"p","arguments":{"k":"v"}}});
    assert!(matches!(
        run(&g, &msg(clean), Direction::ToUpstream),
        Verdict::Continue
    ));
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
    // Requests that carry nothing the model or the user filled in.
    let other = msg(json!({"jsonrpc":"2.0","id":2,"method":"tools/list",
        "params":{"cursor":AWS}}));
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

fn answers(mode: Mode) -> AnswerSecretsGuard {
    AnswerSecretsGuard::new(ContentModes {
        default: Modes {
            secrets_in_answers: mode,
            ..Modes::default()
        },
        ..ContentModes::default()
    })
}

/// A client's answer to the server's `method` request, toward the upstream.
fn answer_check(g: &AnswerSecretsGuard, m: &Message, method: Option<&str>) -> Verdict {
    let p = Principal::anonymous();
    let call = Call {
        upstream: Some("up"),
        request_method: method,
        ..Call::new(m, Direction::ToUpstream, &p)
    };
    g.check_now(&call).unwrap().unwrap()
}

fn sampled(text: &str) -> Message {
    msg(
        json!({"jsonrpc":"2.0","id":"warden-1","result":{"role":"assistant","model":"m",
        "content":{"type":"text","text":text},"_meta":{"k":"v"}}}),
    )
}

#[test]
fn a_credential_in_a_sampling_answer_is_redacted_by_default() {
    let m = sampled(&format!("use {AWS} please"));
    let g = answers(Modes::default().secrets_in_answers);
    let Verdict::Rewrite(out) = answer_check(&g, &m, Some("sampling/createMessage")) else {
        panic!("must redact")
    };
    let v = out.value();
    assert_eq!(
        v["result"]["content"]["text"],
        "use [REDACTED:aws-access-token] please"
    );
    assert_eq!(v["id"], "warden-1", "the id is kept");
    assert_eq!(v["result"]["_meta"]["k"], "v", "the rest is kept");
    assert_eq!(v["result"]["model"], "m");
}

#[test]
fn each_mode_on_an_elicitation_answer() {
    let m = msg(
        json!({"jsonrpc":"2.0","id":4,"result":{"action":"accept","content":{"token":AWS,"n":1}}}),
    );
    let method = Some("elicitation/create");
    let Verdict::Report(r) = answer_check(&answers(Mode::Report), &m, method) else {
        panic!("must report")
    };
    assert_eq!(r.detail, "aws-access-token at result/content/token");
    assert_eq!(r.controls, AnswerSecretsGuard::CONTROLS);
    let Verdict::Deny(d) = answer_check(&answers(Mode::Block), &m, method) else {
        panic!("must refuse")
    };
    assert_eq!(d.guard, AnswerSecretsGuard::NAME);
    assert!(!d.message.contains(AWS) && !d.detail.contains(AWS), "{d:?}");
    assert!(matches!(
        answer_check(&answers(Mode::Off), &m, method),
        Verdict::Continue
    ));
}

#[test]
fn answers_are_told_apart_from_calls_errors_and_results() {
    let g = answers(Mode::Block);
    // What is not an answer to a server's request: a client's error answer, a response with
    // no request on record, a request, a result toward the client.
    let error = msg(json!({"jsonrpc":"2.0","id":5,"error":{"code":-1,"message":AWS}}));
    assert!(matches!(
        answer_check(&g, &error, Some("sampling/createMessage")),
        Verdict::Continue
    ));
    assert!(matches!(
        answer_check(&g, &sampled(AWS), None),
        Verdict::Continue
    ));
    let call = call_with(json!({"body": AWS}));
    assert!(matches!(
        answer_check(&g, &call, Some("tools/call")),
        Verdict::Continue
    ));
    let p = Principal::anonymous();
    let m = sampled(AWS);
    let back = Call {
        request_method: Some("sampling/createMessage"),
        ..Call::new(&m, Direction::ToClient, &p)
    };
    assert!(matches!(
        g.check_now(&back).unwrap().unwrap(),
        Verdict::Continue
    ));
    // And the arguments guard leaves answers alone.
    assert!(matches!(
        answer_check_args(&guard(Mode::Block), &m),
        Verdict::Continue
    ));
}

fn answer_check_args(g: &ArgumentSecretsGuard, m: &Message) -> Verdict {
    let p = Principal::anonymous();
    let call = Call {
        request_method: Some("sampling/createMessage"),
        ..Call::new(m, Direction::ToUpstream, &p)
    };
    g.check_now(&call).unwrap().unwrap()
}

#[test]
fn answers_in_a_retrys_input_responses_are_scanned_too() {
    let m = msg(
        json!({"jsonrpc":"2.0","id":9,"method":"tools/call","params":{
        "name":"ask","arguments":{},"requestState":"s",
        "inputResponses":{"upstream-request":{"role":"assistant","model":"m",
            "content":{"type":"text","text":format!("here: {AWS}")}}}}}),
    );
    let Verdict::Rewrite(out) = answer_check(&answers(Mode::Redact), &m, None) else {
        panic!("must redact")
    };
    let v = out.value();
    assert_eq!(
        v["params"]["inputResponses"]["upstream-request"]["content"]["text"],
        "here: [REDACTED:aws-access-token]"
    );
    assert_eq!(v["params"]["requestState"], "s", "the rest is kept");
    let Verdict::Deny(d) = answer_check(&answers(Mode::Block), &m, None) else {
        panic!("must refuse")
    };
    assert_eq!(d.guard, AnswerSecretsGuard::NAME);
    // A request with no answers is not this guard's.
    let plain = call_with(json!({"body": AWS}));
    assert!(matches!(
        answer_check(&answers(Mode::Block), &plain, None),
        Verdict::Continue
    ));
}
