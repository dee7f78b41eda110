use warden_audit::Direction;

use super::*;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN: &str = "1111111111111111";
const PARENT: &str = "00f067aa0ba902b7";

fn trace_ref(span: &str, parent: Option<&str>) -> Box<TraceRef> {
    Box::new(TraceRef {
        trace_id: TRACE.into(),
        span_id: span.into(),
        parent_span_id: parent.map(Into::into),
    })
}

fn call(status: Status, code: Option<i64>, trace: Option<Box<TraceRef>>) -> AuditRecord {
    AuditRecord {
        ts: "2026-11-21T08:38:35.000812Z".into(),
        event: Event::Call {
            session: Some("sess-1".into()),
            principal: "alice".into(),
            direction: Direction::ToUpstream,
            method: "tools/call".into(),
            name: Some("echo".into()),
            upstream: Some("everything".into()),
            latency_us: 812,
            status,
            code,
            arguments: None,
            result: None,
            trace,
        },
    }
}

fn decision(verdict: Verdict, span: &str) -> AuditRecord {
    AuditRecord {
        ts: "2026-11-21T08:38:35.000500Z".into(),
        event: Event::Decision {
            session: None,
            principal: "alice".into(),
            direction: Direction::ToUpstream,
            method: Some("tools/call".into()),
            name: Some("echo".into()),
            upstream: Some("everything".into()),
            guard: "schema".into(),
            verdict,
            reason: "arguments.message: 42 is not of type string".into(),
            controls: vec!["API-1".into()],
            ticket: None,
            trace: Some(trace_ref(span, None)),
        },
    }
}

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a AttrValue> {
    span.attributes
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

#[test]
fn traced_call_becomes_a_server_span_with_its_timing() {
    let mut a = SpanAssembler::default();
    let span = a
        .push(&call(
            Status::Result,
            None,
            Some(trace_ref(SPAN, Some(PARENT))),
        ))
        .unwrap();
    assert_eq!(span.trace_id.to_hex(), TRACE);
    assert_eq!(span.span_id.to_hex(), SPAN);
    assert_eq!(span.parent.unwrap().to_hex(), PARENT);
    assert_eq!(span.name, "tools/call echo");
    assert_eq!(span.end_unix_nanos - span.start_unix_nanos, 812_000);
    assert_eq!(span.end_unix_nanos % 1_000_000_000, 812_000);
    assert_eq!(span.status, SpanStatus::Unset);
    assert_eq!(attr(&span, "mcp.method.name"), Some(&s("tools/call")));
    assert_eq!(attr(&span, "gen_ai.tool.name"), Some(&s("echo")));
    assert_eq!(attr(&span, "mcp.session.id"), Some(&s("sess-1")));
    assert_eq!(attr(&span, "warden.upstream"), Some(&s("everything")));
    assert_eq!(attr(&span, "warden.principal"), Some(&s("alice")));
    assert_eq!(attr(&span, "warden.outcome"), Some(&s("result")));
    assert_eq!(attr(&span, "error.type"), None);
}

#[test]
fn untraced_records_make_no_span() {
    let mut a = SpanAssembler::default();
    assert!(a.push(&call(Status::Result, None, None)).is_none());
    let bad = Box::new(TraceRef {
        trace_id: "00000000000000000000000000000000".into(),
        span_id: SPAN.into(),
        parent_span_id: None,
    });
    assert!(a.push(&call(Status::Result, None, Some(bad))).is_none());
}

#[test]
fn denial_becomes_an_error_span_with_the_guard_decision_as_event() {
    let mut a = SpanAssembler::default();
    assert!(a.push(&decision(Verdict::Deny, SPAN)).is_none());
    // Another request's decision is not attached to this span.
    assert!(
        a.push(&decision(Verdict::Deny, "2222222222222222"))
            .is_none()
    );
    let span = a
        .push(&call(
            Status::Denied,
            Some(-32602),
            Some(trace_ref(SPAN, None)),
        ))
        .unwrap();
    assert_eq!(span.status, SpanStatus::Error("denied by a guard"));
    assert_eq!(attr(&span, "error.type"), Some(&s("-32602")));
    assert_eq!(attr(&span, "rpc.response.status_code"), Some(&s("-32602")));
    assert_eq!(attr(&span, "warden.outcome"), Some(&s("denied")));
    assert_eq!(span.events.len(), 1);
    let e = &span.events[0];
    assert_eq!(e.name, "warden.guard.deny");
    assert_eq!(
        e.attributes,
        vec![
            ("warden.guard", s("schema")),
            ("warden.controls", AttrValue::StrList(vec!["API-1".into()])),
        ]
    );
    // The guard's reason (which may quote arguments) is not in the span.
    assert!(!format!("{span:?}").contains("not of type"));
    assert_eq!(a.pending(), 1);
}

#[test]
fn pending_decisions_are_bounded() {
    let mut a = SpanAssembler::new(2);
    for span in ["1000000000000000", "2000000000000000", "3000000000000000"] {
        a.push(&decision(Verdict::Skip, span));
    }
    assert_eq!(a.pending(), 2);
    // The oldest was forgotten: its call gets a span without events.
    let first = a
        .push(&call(
            Status::Result,
            None,
            Some(trace_ref("1000000000000000", None)),
        ))
        .unwrap();
    assert!(first.events.is_empty());
    let third = a
        .push(&call(
            Status::Result,
            None,
            Some(trace_ref("3000000000000000", None)),
        ))
        .unwrap();
    assert_eq!(third.events.len(), 1);
    assert_eq!(a.pending(), 1);
    for _ in 0..(MAX_EVENTS_PER_SPAN + 5) {
        a.push(&decision(Verdict::Rewrite, SPAN));
    }
    let many = a
        .push(&call(Status::Result, None, Some(trace_ref(SPAN, None))))
        .unwrap();
    assert_eq!(many.events.len(), MAX_EVENTS_PER_SPAN);
}

#[test]
fn every_status_maps_to_an_outcome_and_a_span_status() {
    let cases = [
        (Status::Result, "result", SpanStatus::Unset),
        (Status::Error, "error", SpanStatus::Error("error response")),
        (Status::Held, "held", SpanStatus::Error("held for approval")),
        (
            Status::Abandoned,
            "abandoned",
            SpanStatus::Error("abandoned before a response"),
        ),
    ];
    for (status, outcome, span_status) in cases {
        let span = SpanAssembler::default()
            .push(&call(status, None, Some(trace_ref(SPAN, None))))
            .unwrap();
        assert_eq!(attr(&span, "warden.outcome"), Some(&s(outcome)));
        assert_eq!(span.status, span_status);
    }
}

#[test]
fn resource_reads_name_the_uri_as_attribute_not_span_name() {
    let mut record = call(Status::Result, None, Some(trace_ref(SPAN, None)));
    if let Event::Call { method, name, .. } = &mut record.event {
        *method = "resources/read".into();
        *name = Some("file:///etc/hosts".into());
    }
    let span = SpanAssembler::default().push(&record).unwrap();
    assert_eq!(span.name, "resources/read");
    assert_eq!(
        attr(&span, "mcp.resource.uri"),
        Some(&s("file:///etc/hosts"))
    );
    assert_eq!(attr(&span, "gen_ai.tool.name"), None);
}
