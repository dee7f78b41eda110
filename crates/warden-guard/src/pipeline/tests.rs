use super::*;
use crate::GuardError;
use crate::Principal;
use futures::FutureExt;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Fixed {
    name: &'static str,
    verdict: fn() -> Result<Verdict, GuardError>,
    fail: FailMode,
    calls: AtomicUsize,
}

impl Guard for Fixed {
    fn name(&self) -> &'static str {
        self.name
    }
    fn controls(&self) -> &'static [&'static str] {
        &["TEST-1"]
    }
    fn fail_mode(&self) -> FailMode {
        self.fail
    }
    fn check<'a>(&'a self, _call: &'a Call<'a>) -> BoxFuture<'a, Result<Verdict, GuardError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let v = (self.verdict)();
        async move { v }.boxed()
    }
}

use futures::future::BoxFuture;

fn guard(
    name: &'static str,
    verdict: fn() -> Result<Verdict, GuardError>,
    fail: FailMode,
) -> Arc<Fixed> {
    Arc::new(Fixed {
        name,
        verdict,
        fail,
        calls: AtomicUsize::new(0),
    })
}

fn msg() -> Message {
    warden_proto::decode(
        bytes::Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#,
        ),
        &warden_proto::Limits::default(),
    )
    .unwrap()
}

fn deny() -> Result<Verdict, GuardError> {
    Ok(Verdict::Deny(Denial {
        guard: "policy",
        code: ErrorCode::Denied,
        message: "denied".into(),
        detail: "rule 3".into(),
        controls: &[],
        retry_after: None,
    }))
}

fn broken() -> Result<Verdict, GuardError> {
    Err(GuardError::Unavailable {
        guard: "authn",
        source: "store down".into(),
    })
}

async fn run(p: &Pipeline) -> Outcome {
    let m = msg();
    let principal = Principal::anonymous();
    p.run(&Call {
        message: &m,
        direction: Direction::ToUpstream,
        principal: &principal,
        session: None,
        upstream: Some("u"),
        request_method: None,
        target: None,
        permits: None,
    })
    .await
}

#[tokio::test]
async fn passthrough_forwards() {
    let p = Pipeline::passthrough();
    assert!(p.is_passthrough(Direction::ToUpstream));
    assert!(matches!(run(&p).await, Outcome::Forward));
}

#[tokio::test]
async fn denial_stops_later_stages() {
    let later = guard("approval", || Ok(Verdict::Continue), FailMode::Closed);
    let p = Pipeline::passthrough()
        .with(Stage::Approval, later.clone())
        .with(Stage::Policy, guard("policy", deny, FailMode::Closed));
    assert!(matches!(run(&p).await, Outcome::Deny(d) if d.detail == "rule 3"));
    assert_eq!(
        later.calls.load(Ordering::SeqCst),
        0,
        "approval runs after policy"
    );
}

#[tokio::test]
async fn undecided_guard_fails_closed_by_default() {
    let p = Pipeline::passthrough().with(Stage::Authn, guard("authn", broken, FailMode::Closed));
    match run(&p).await {
        Outcome::Deny(d) => {
            assert_eq!(d.guard, "authn");
            assert!(
                !d.message.contains("store down"),
                "internals stay out of the client message"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn undecided_guard_fails_open_when_configured() {
    let p = Pipeline::passthrough().with(Stage::Authn, guard("authn", broken, FailMode::Open));
    assert!(matches!(run(&p).await, Outcome::Forward));
}

#[tokio::test]
async fn response_guards_do_not_run_on_requests() {
    let g = guard("redact", deny, FailMode::Closed);
    let p = Pipeline::passthrough().with(Stage::Redact, g.clone());
    assert!(p.is_passthrough(Direction::ToUpstream));
    assert!(!p.is_passthrough(Direction::ToClient));
    assert!(matches!(run(&p).await, Outcome::Forward));
    assert_eq!(g.calls.load(Ordering::SeqCst), 0);
}

#[test]
fn denial_maps_to_a_stable_jsonrpc_error() {
    let Ok(Verdict::Deny(d)) = deny() else {
        unreachable!()
    };
    let v = d.to_jsonrpc(&serde_json::json!(5));
    assert_eq!(v["id"], 5);
    assert_eq!(v["error"]["code"], ErrorCode::Denied.code());
    assert_eq!(v["error"]["message"], "denied");
    assert!(
        !v.to_string().contains("rule 3"),
        "audit detail never reaches the client"
    );
}

/// Records what an observer is told, as `guard:kind`.
#[derive(Default)]
struct Seen(std::sync::Mutex<Vec<String>>);

impl Observer for Seen {
    fn decided(&self, call: &Call<'_>, guard: &dyn Guard, decided: Decided<'_>) {
        let kind = match decided {
            Decided::Deny(d) => format!("deny({})", d.detail),
            Decided::Hold(t) => format!("hold({})", t.id),
            Decided::Rewrite => "rewrite".into(),
            Decided::Skip(_) => "skip".into(),
            Decided::Report(r) => format!("report({})", r.detail),
        };
        let session = call.session.unwrap_or("-");
        self.0
            .lock()
            .unwrap()
            .push(format!("{}:{kind}@{session}", guard.name()));
    }
}

#[tokio::test]
async fn observer_sees_every_decision_but_continue() {
    // Proves: MON-2 (every guard decision reaches the audit layer, including fail-open skips
    // and fail-closed errors, which the outcome alone does not show)
    let seen = Arc::new(Seen::default());
    let p = Pipeline::passthrough()
        .with(Stage::Authn, guard("authn", broken, FailMode::Open))
        .with(
            Stage::RateLimit,
            guard("rate", || Ok(Verdict::Continue), FailMode::Closed),
        )
        .with(Stage::Policy, guard("policy", deny, FailMode::Closed))
        .observed(seen.clone());
    assert!(matches!(run(&p).await, Outcome::Deny(_)));
    assert_eq!(
        *seen.0.lock().unwrap(),
        ["authn:skip@-", "policy:deny(rule 3)@-"]
    );

    let seen = Arc::new(Seen::default());
    let p = Pipeline::passthrough()
        .with(Stage::Authn, guard("authn", broken, FailMode::Closed))
        .observed(seen.clone());
    assert!(matches!(run(&p).await, Outcome::Deny(_)));
    let got = seen.0.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert!(got[0].starts_with("authn:deny("), "{got:?}");
}

fn report() -> Result<Verdict, GuardError> {
    Ok(Verdict::Report(Report {
        detail: "rule 7 at text[0..4]".into(),
        controls: &["TEST-2"],
    }))
}

#[tokio::test]
async fn a_report_lets_the_message_through_and_reaches_the_observer_with_the_session() {
    // Proves: MON-2 (a finding in a report mode is a decision the audit layer sees, with the
    // session it belongs to), and a report changes nothing for the message or later stages
    let seen = Arc::new(Seen::default());
    let later = guard("later", || Ok(Verdict::Continue), FailMode::Closed);
    let p = Pipeline::passthrough()
        .with(Stage::Policy, guard("scan", report, FailMode::Closed))
        .with(Stage::Schema, later.clone())
        .observed(seen.clone());
    let m = msg();
    let principal = Principal::anonymous();
    let outcome = p
        .run(&Call {
            session: Some("s-1"),
            ..Call::new(&m, Direction::ToUpstream, &principal)
        })
        .await;
    assert!(matches!(outcome, Outcome::Forward), "{outcome:?}");
    assert_eq!(
        later.calls.load(Ordering::SeqCst),
        1,
        "later stages still run"
    );
    assert_eq!(
        *seen.0.lock().unwrap(),
        ["scan:report(rule 7 at text[0..4])@s-1"]
    );
}

/// A guard that decides at once (`now`) when it can, and counts the calls to its `check`.
struct Immediate {
    now: Option<fn() -> Result<Verdict, GuardError>>,
    later: fn() -> Result<Verdict, GuardError>,
    checks: AtomicUsize,
}

impl Guard for Immediate {
    fn name(&self) -> &'static str {
        "immediate"
    }
    fn controls(&self) -> &'static [&'static str] {
        &["TEST-1"]
    }
    fn check<'a>(&'a self, _call: &'a Call<'a>) -> BoxFuture<'a, Result<Verdict, GuardError>> {
        self.checks.fetch_add(1, Ordering::SeqCst);
        let v = (self.later)();
        async move { v }.boxed()
    }
    fn check_now(&self, _call: &Call<'_>) -> Option<Result<Verdict, GuardError>> {
        self.now.map(|f| f())
    }
}

fn immediate(
    now: Option<fn() -> Result<Verdict, GuardError>>,
    later: fn() -> Result<Verdict, GuardError>,
) -> Arc<Immediate> {
    Arc::new(Immediate {
        now,
        later,
        checks: AtomicUsize::new(0),
    })
}

#[tokio::test]
async fn a_verdict_given_at_once_is_used_without_check() {
    // Denial at once: `check` (which would let it through) is never asked.
    let g = immediate(Some(deny), || Ok(Verdict::Continue));
    let p = Pipeline::passthrough().with(Stage::Policy, g.clone());
    assert!(matches!(run(&p).await, Outcome::Deny(d) if d.detail == "rule 3"));
    assert_eq!(g.checks.load(Ordering::SeqCst), 0);

    // Continue at once: later stages still run.
    let first = immediate(Some(|| Ok(Verdict::Continue)), deny);
    let later = guard("approval", deny, FailMode::Closed);
    let p = Pipeline::passthrough()
        .with(Stage::Policy, first.clone())
        .with(Stage::Approval, later.clone());
    assert!(matches!(run(&p).await, Outcome::Deny(_)));
    assert_eq!(first.checks.load(Ordering::SeqCst), 0);
    assert_eq!(later.calls.load(Ordering::SeqCst), 1);

    // An error at once fails closed like an error from `check`.
    let g = immediate(Some(broken), || Ok(Verdict::Continue));
    let p = Pipeline::passthrough().with(Stage::Authn, g.clone());
    assert!(matches!(run(&p).await, Outcome::Deny(d) if d.guard == "immediate"));
    assert_eq!(g.checks.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn no_verdict_at_once_asks_check() {
    let g = immediate(None, deny);
    let p = Pipeline::passthrough().with(Stage::Policy, g.clone());
    assert!(matches!(run(&p).await, Outcome::Deny(d) if d.detail == "rule 3"));
    assert_eq!(g.checks.load(Ordering::SeqCst), 1);
}

#[test]
fn called_tool_is_the_name_of_a_tools_call_toward_the_upstream_only() {
    let principal = Principal::anonymous();
    let parse = |text: &'static str| {
        warden_proto::decode(
            bytes::Bytes::from_static(text.as_bytes()),
            &warden_proto::Limits::default(),
        )
        .unwrap()
    };
    let call = msg();
    assert_eq!(
        Call::new(&call, Direction::ToUpstream, &principal).called_tool(),
        Some("x")
    );
    assert_eq!(
        Call::new(&call, Direction::ToClient, &principal).called_tool(),
        None
    );
    let unnamed = parse(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#);
    assert_eq!(
        Call::new(&unnamed, Direction::ToUpstream, &principal).called_tool(),
        None
    );
    let prompt = parse(r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"x"}}"#);
    assert_eq!(
        Call::new(&prompt, Direction::ToUpstream, &principal).called_tool(),
        None
    );
}
