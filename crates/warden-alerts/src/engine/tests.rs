use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use warden_audit::{AuditRecord, AuthOutcome, Direction, Event, Status, Verdict};
use warden_config::{AlertsConfig, Config};

use super::*;

fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn at(secs: f64, event: Event) -> AuditRecord {
    AuditRecord {
        ts: warden_audit::record::timestamp(t0() + Duration::from_secs_f64(secs)),
        event,
    }
}

fn config(toml: &str) -> AlertsConfig {
    Config::parse(&format!("[alerts]\n{toml}"), "warden.toml")
        .unwrap()
        .alerts
}

fn run(engine: &mut Engine, records: &[AuditRecord]) -> Vec<Alert> {
    let mut out = Vec::new();
    for r in records {
        engine.observe(r, &mut out);
    }
    out
}

fn auth_failure(principal: Option<&str>, remote: Option<&str>) -> Event {
    Event::Auth {
        principal: principal.map(str::to_owned),
        method: "http".into(),
        outcome: AuthOutcome::Failure,
        reason: Some("invalid: unknown api key".into()),
        remote: remote.map(str::to_owned),
    }
}

fn auth_success(principal: &str) -> Event {
    Event::Auth {
        principal: Some(principal.into()),
        method: "api_key".into(),
        outcome: AuthOutcome::Success,
        reason: None,
        remote: None,
    }
}

fn decision(principal: &str, guard: &str, verdict: Verdict, upstream: Option<&str>) -> Event {
    Event::Decision {
        session: None,
        principal: principal.into(),
        direction: if guard == "injection_scan" || guard == "poisoning" {
            Direction::ToClient
        } else {
            Direction::ToUpstream
        },
        method: Some("tools/call".into()),
        name: Some("fs__write".into()),
        upstream: upstream.map(str::to_owned),
        guard: guard.into(),
        verdict,
        reason: "policy forbids it".into(),
        controls: vec!["API-1".into(), "MON-3".into()],
        ticket: None,
        trace: None,
    }
}

fn call(session: &str, principal: &str, name: &str, upstream: &str, status: Status) -> Event {
    Event::Call {
        session: Some(session.into()),
        principal: principal.into(),
        direction: Direction::ToUpstream,
        method: "tools/call".into(),
        name: Some(name.into()),
        upstream: Some(upstream.into()),
        latency_us: 1200,
        status,
        code: None,
        arguments: None,
        result: None,
        trace: None,
    }
}

fn upstream(name: &str, action: &str) -> Event {
    Event::Upstream {
        upstream: name.into(),
        action: action.into(),
        pid: Some(42),
        exit_code: Some(1),
        detail: None,
    }
}

// Proves: MON-3, LOG-2 (bursts of refused authentications alert once)
#[test]
fn auth_failures_fire_at_the_threshold_within_the_window_and_once_per_cooldown() {
    let c = config("[alerts.auth_failures]\nthreshold = 3\nwindow = \"10s\"\ncooldown = \"1m\"\n");
    let mut e = Engine::new(&c, &[]);
    let f = || auth_failure(Some("mallory"), None);
    // Two failures, then a pause longer than the window: the third does not complete a burst.
    assert!(run(&mut e, &[at(0.0, f()), at(1.0, f()), at(20.0, f())]).is_empty());
    // Two more within 10 s of the one at 20 s: fires once.
    let fired = run(&mut e, &[at(25.0, f()), at(29.0, f())]);
    assert_eq!(fired.len(), 1, "{fired:?}");
    let a = &fired[0];
    assert_eq!(a.rule, "auth_failures");
    assert_eq!(a.severity, "high");
    assert_eq!(a.principal.as_deref(), Some("mallory"));
    assert_eq!(a.count, 3);
    assert_eq!(a.window_secs, 10);
    assert_eq!(
        a.first_ts,
        warden_audit::record::timestamp(t0() + Duration::from_secs(20))
    );
    assert_eq!(
        a.ts,
        warden_audit::record::timestamp(t0() + Duration::from_secs(29))
    );
    assert_eq!(a.controls, ["MON-1", "MON-3", "LOG-2", "LOG-3"]);
    assert_eq!(
        a.summary,
        "3 refused authentications in 10s from principal \"mallory\""
    );
    assert_eq!(a.detail.as_deref(), Some("invalid: unknown api key"));
    // The rest of the burst, inside the cooldown: silent, but counted.
    let burst: Vec<_> = (0..100)
        .map(|i| at(30.0 + f64::from(i) * 0.1, f()))
        .collect();
    assert!(run(&mut e, &burst).is_empty());
    // After the cooldown a new burst fires again and reports what was suppressed.
    let fired = run(&mut e, &[at(90.0, f()), at(91.0, f()), at(92.0, f())]);
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0].suppressed, 100);
}

#[test]
fn auth_failures_are_keyed_by_principal_then_remote() {
    let c = config("[alerts.auth_failures]\nthreshold = 2\n");
    let mut e = Engine::new(&c, &[]);
    // Different principals do not add up.
    let fired = run(
        &mut e,
        &[
            at(0.0, auth_failure(Some("a"), None)),
            at(0.1, auth_failure(Some("b"), None)),
            at(0.2, auth_failure(None, Some("10.0.0.1:5555"))),
        ],
    );
    assert!(fired.is_empty(), "{fired:?}");
    // A new connection from the same host (another source port) adds up; the alert names
    // the host.
    let fired = run(
        &mut e,
        &[at(0.3, auth_failure(None, Some("10.0.0.1:6666")))],
    );
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].remote.as_deref(), Some("10.0.0.1"));
    assert_eq!(fired[0].principal, None);
    // Failures with neither principal nor remote (what the HTTP face records today) are
    // counted together.
    let fired = run(
        &mut e,
        &[
            at(0.4, auth_failure(None, None)),
            at(0.5, auth_failure(None, None)),
        ],
    );
    assert_eq!(fired.len(), 1);
    assert!(
        fired[0].summary.ends_with("from unidentified clients"),
        "{}",
        fired[0].summary
    );
}

#[test]
fn spraying_principals_beyond_the_key_bound_still_fires_under_the_overflow_key() {
    let c = config("[alerts.auth_failures]\nthreshold = 3\nwindow = \"1h\"\n");
    let mut e = Engine::new(&c, &[]);
    let mut fired = Vec::new();
    for i in 0..(MAX_KEYS + 3) {
        let p = format!("p{i}");
        e.observe(
            &at(i as f64 * 0.001, auth_failure(Some(&p), None)),
            &mut fired,
        );
    }
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(
        fired[0].summary,
        "3 refused authentications in 1h from unidentified clients"
    );
    assert!(e.auth_failures.keys.len() <= MAX_KEYS);
}

// Proves: MON-1 (repeated denials)
#[test]
fn denials_fire_per_principal_with_the_guard_controls() {
    let c = config("[alerts.denials]\nthreshold = 3\nwindow = \"1m\"\n");
    let mut e = Engine::new(&c, &[]);
    let d = |p: &str| decision(p, "policy", Verdict::Deny, Some("fs"));
    let fired = run(
        &mut e,
        &[
            at(0.0, d("alice")),
            at(1.0, d("bob")),
            at(2.0, d("alice")),
            // Not denials: a rewrite and a hold.
            at(
                3.0,
                decision("alice", "redact", Verdict::Rewrite, Some("fs")),
            ),
            at(
                3.5,
                decision("alice", "approval", Verdict::Hold, Some("fs")),
            ),
        ],
    );
    assert!(fired.is_empty(), "{fired:?}");
    let fired = run(&mut e, &[at(4.0, d("alice"))]);
    assert_eq!(fired.len(), 1);
    let a = &fired[0];
    assert_eq!(a.rule, "denials");
    assert_eq!(a.severity, "medium");
    assert_eq!(a.principal.as_deref(), Some("alice"));
    assert_eq!(a.tool.as_deref(), Some("fs__write"));
    assert_eq!(a.controls, ["MON-1", "MON-3", "LOG-3", "AI-2", "API-1"]);
    assert!(
        a.summary
            .contains("3 denied requests in 1m for principal \"alice\""),
        "{}",
        a.summary
    );
}

// Proves: MON-3 (rug pulls)
#[test]
fn a_pin_change_fires_once_per_upstream_and_cooldown() {
    let c = config("");
    let mut e = Engine::new(&c, &[]);
    let fired = run(
        &mut e,
        &[
            at(
                0.0,
                decision("alice", "pinning", Verdict::Rewrite, Some("github")),
            ),
            // Every later list repeats the hold, and calls to the held tool are refused.
            at(
                5.0,
                decision("alice", "pinning", Verdict::Rewrite, Some("github")),
            ),
            at(
                6.0,
                decision("bob", "pinning", Verdict::Deny, Some("github")),
            ),
            // A skip (the guard could not decide) is not a change.
            at(7.0, decision("bob", "pinning", Verdict::Skip, Some("fs"))),
        ],
    );
    let pins: Vec<_> = fired.iter().filter(|a| a.rule == "pin_changed").collect();
    assert_eq!(pins.len(), 1, "{fired:?}");
    assert_eq!(pins[0].upstream.as_deref(), Some("github"));
    assert_eq!(pins[0].controls, ["MON-3", "API-1"]);
    // Another upstream is another key.
    let fired = run(
        &mut e,
        &[at(
            8.0,
            decision("bob", "pinning", Verdict::Deny, Some("fs")),
        )],
    );
    assert!(
        fired
            .iter()
            .any(|a| a.rule == "pin_changed" && a.upstream.as_deref() == Some("fs"))
    );
}

// Proves: MON-3 (a change or a finding is alerted on even when its guard only reports it)
#[test]
fn report_mode_pin_changes_and_findings_fire_like_enforced_ones() {
    let c = config("");
    let mut e = Engine::new(&c, &[]);
    let fired = run(
        &mut e,
        &[
            at(
                0.0,
                decision("alice", "pinning", Verdict::Report, Some("github")),
            ),
            at(
                1.0,
                decision("alice", "injection_scan", Verdict::Report, Some("docs")),
            ),
            // A report of a guard that finds no poisoning is not a finding.
            at(
                2.0,
                decision("alice", "redact", Verdict::Report, Some("docs")),
            ),
        ],
    );
    let rules: Vec<(&str, Option<&str>)> = fired
        .iter()
        .map(|a| (a.rule, a.upstream.as_deref()))
        .collect();
    assert_eq!(
        rules,
        [("pin_changed", Some("github")), ("poisoning", Some("docs"))],
        "{fired:?}"
    );
    assert!(
        fired[0]
            .summary
            .ends_with("reported it (report mode: not withheld)"),
        "{}",
        fired[0].summary
    );
}

// Proves: MON-3 (poisoning findings)
#[test]
fn poisoning_and_injection_findings_fire_per_guard_and_upstream() {
    let c = config("");
    let mut e = Engine::new(&c, &[]);
    let fired = run(
        &mut e,
        &[
            at(
                0.0,
                decision("alice", "poisoning", Verdict::Rewrite, Some("evil")),
            ),
            at(
                1.0,
                decision("alice", "poisoning", Verdict::Deny, Some("evil")),
            ),
            at(
                2.0,
                decision("alice", "injection_scan", Verdict::Deny, Some("evil")),
            ),
            // Content guards that are not findings.
            at(
                3.0,
                decision("alice", "redact", Verdict::Rewrite, Some("evil")),
            ),
            at(
                4.0,
                decision("alice", "sanitize", Verdict::Rewrite, Some("evil")),
            ),
        ],
    );
    let found: Vec<_> = fired.iter().filter(|a| a.rule == "poisoning").collect();
    assert_eq!(found.len(), 2, "{fired:?}");
    assert!(
        found[0]
            .summary
            .starts_with("poisoning finding on upstream \"evil\"")
    );
    assert!(
        found[1]
            .summary
            .starts_with("prompt injection finding on upstream \"evil\"")
    );
}

#[test]
fn an_upstream_crash_loop_fires_but_a_single_exit_does_not() {
    let c = config("[alerts.upstream_crash_loop]\nthreshold = 3\nwindow = \"1m\"\n");
    let mut e = Engine::new(&c, &[]);
    let fired = run(
        &mut e,
        &[
            at(0.0, upstream("fs", "started")),
            at(1.0, upstream("fs", "exited")),
            at(1.1, upstream("fs", "restarted")),
            at(2.0, upstream("fs", "health_failed")),
            at(2.5, upstream("fs", "handshake_failed")),
            at(2.6, upstream("fs", "marked_up")),
            at(3.0, upstream("web", "exited")),
            at(70.0, upstream("fs", "exited")),
            at(71.0, upstream("fs", "start_failed")),
        ],
    );
    assert!(fired.is_empty(), "{fired:?}");
    let fired = run(&mut e, &[at(72.0, upstream("fs", "exited"))]);
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].rule, "upstream_crash_loop");
    assert_eq!(fired[0].upstream.as_deref(), Some("fs"));
    assert_eq!(
        fired[0].summary,
        "upstream \"fs\" died 3 times in 1m (last: exited, exit code 1)"
    );
    // The supervisor giving up is an alert at once, unless the loop was just reported.
    assert!(run(&mut e, &[at(73.0, upstream("fs", "marked_down"))]).is_empty());
    let fired = run(&mut e, &[at(74.0, upstream("web", "marked_down"))]);
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(
        fired[0].summary,
        "upstream \"web\" was marked down by its supervisor (restart limit reached)"
    );
}

fn sequence_config() -> AlertsConfig {
    config(
        "[alerts.untrusted_then_sensitive]\nwindow = \"30s\"\ncooldown = \"5m\"\n\
         sensitive_tools = [\"fs__write*\", \"mail__send\"]\nuntrusted_upstreams = [\"browser\"]\n",
    )
}

// Proves: MON-1 (unusual tool sequences: read untrusted, then act)
#[test]
fn a_sensitive_call_soon_after_an_untrusted_result_fires_for_that_session() {
    let mut e = Engine::new(&sequence_config(), &[]);
    let fired = run(
        &mut e,
        &[
            at(
                0.0,
                call("s1", "alice", "web__fetch", "web", Status::Result),
            ),
            // Another session's sensitive call is not this session's problem.
            at(
                1.0,
                call("s2", "alice", "fs__write_file", "fs", Status::Result),
            ),
            // A harmless call in between changes nothing.
            at(2.0, call("s1", "alice", "fs__list", "fs", Status::Result)),
        ],
    );
    assert!(fired.is_empty(), "{fired:?}");
    let fired = run(
        &mut e,
        &[at(
            12.0,
            call("s1", "alice", "fs__write_file", "fs", Status::Result),
        )],
    );
    assert_eq!(fired.len(), 1, "{fired:?}");
    let a = &fired[0];
    assert_eq!(a.rule, "untrusted_then_sensitive");
    assert_eq!(a.session.as_deref(), Some("s1"));
    assert_eq!(a.principal.as_deref(), Some("alice"));
    assert_eq!(a.tool.as_deref(), Some("fs__write_file"));
    assert_eq!(
        a.summary,
        "session \"s1\" called sensitive tool \"fs__write_file\" 12s after reading content with \
         an untrusted tool (\"web__fetch\" on upstream \"web\")"
    );
    assert_eq!(a.first_ts, warden_audit::record::timestamp(t0()));
    // The taint is consumed: a second sensitive call needs new untrusted content (and the
    // session is in cooldown anyway).
    let fired = run(
        &mut e,
        &[at(
            13.0,
            call("s1", "alice", "mail__send", "mail", Status::Result),
        )],
    );
    assert!(fired.is_empty(), "{fired:?}");
}

#[test]
fn the_sequence_rule_respects_its_window_and_what_counts_as_untrusted() {
    let mut e = Engine::new(&sequence_config(), &[]);
    let fired = run(
        &mut e,
        &[
            // Too long ago.
            at(
                0.0,
                call("s1", "alice", "web__fetch", "web", Status::Result),
            ),
            at(
                31.0,
                call("s1", "alice", "fs__write_file", "fs", Status::Result),
            ),
            // A fetch that failed brought no content.
            at(
                40.0,
                call("s1", "alice", "web__fetch", "web", Status::Error),
            ),
            at(
                41.0,
                call("s1", "alice", "fs__write_file", "fs", Status::Result),
            ),
            // A session that ended forgets its taint.
            at(
                50.0,
                call("s3", "alice", "web__fetch", "web", Status::Result),
            ),
            at(
                51.0,
                Event::SessionEnd {
                    session: "s3".into(),
                    principal: "alice".into(),
                    reason: "closed".into(),
                    duration_ms: 1,
                },
            ),
            at(
                52.0,
                call("s3", "alice", "fs__write_file", "fs", Status::Result),
            ),
        ],
    );
    assert!(fired.is_empty(), "{fired:?}");
    // Any result of an untrusted upstream taints.
    let fired = run(
        &mut e,
        &[
            at(
                60.0,
                call("s4", "bob", "browser__snapshot", "browser", Status::Result),
            ),
            at(
                61.0,
                call("s4", "bob", "mail__send", "mail", Status::Denied),
            ),
        ],
    );
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert!(
        fired[0].summary.contains("an untrusted upstream"),
        "{}",
        fired[0].summary
    );
    assert_eq!(
        fired[0].detail.as_deref(),
        Some("status of the sensitive call: denied")
    );
}

#[test]
fn an_injection_finding_taints_the_next_call_record_of_that_principal_and_upstream() {
    let mut e = Engine::new(&sequence_config(), &[]);
    let fired = run(
        &mut e,
        &[
            // The content guard's decision comes first (it has no session) ...
            at(
                0.0,
                decision("carol", "injection_scan", Verdict::Rewrite, Some("docs")),
            ),
            // ... then the record of the call whose result it was.
            at(
                0.1,
                call("s9", "carol", "docs__read", "docs", Status::Result),
            ),
            at(
                5.0,
                call("s9", "carol", "fs__write_file", "fs", Status::Result),
            ),
        ],
    );
    let seq: Vec<_> = fired
        .iter()
        .filter(|a| a.rule == "untrusted_then_sensitive")
        .collect();
    assert_eq!(seq.len(), 1, "{fired:?}");
    assert!(
        seq[0]
            .summary
            .contains("an injection finding (\"docs__read\""),
        "{}",
        seq[0].summary
    );
}

#[test]
fn sensitive_tools_default_to_the_audit_list() {
    let c = config("");
    let mut e = Engine::new(&c, &["shell__*".to_owned()]);
    let fired = run(
        &mut e,
        &[
            at(0.0, call("s1", "a", "fetch", "web", Status::Result)),
            at(1.0, call("s1", "a", "shell__exec", "shell", Status::Result)),
        ],
    );
    assert_eq!(fired.len(), 1, "{fired:?}");
    // With no sensitive tools at all the rule never fires.
    let mut e = Engine::new(&c, &[]);
    let fired = run(
        &mut e,
        &[
            at(0.0, call("s1", "a", "fetch", "web", Status::Result)),
            at(1.0, call("s1", "a", "shell__exec", "shell", Status::Result)),
        ],
    );
    assert!(fired.is_empty());
}

#[test]
fn disabled_rules_never_fire() {
    let c = config(
        "[alerts.auth_failures]\nenabled = false\nthreshold = 1\n\
         [alerts.untrusted_then_sensitive]\nenabled = false\nsensitive_tools = [\"*\"]\n",
    );
    let mut e = Engine::new(&c, &[]);
    let fired = run(
        &mut e,
        &[
            at(0.0, auth_failure(Some("x"), None)),
            at(1.0, call("s", "a", "fetch", "web", Status::Result)),
            at(2.0, call("s", "a", "anything", "web", Status::Result)),
        ],
    );
    assert!(fired.is_empty(), "{fired:?}");
}

#[test]
fn hostile_fields_are_truncated_and_stripped_in_alerts() {
    let c = config("[alerts.auth_failures]\nthreshold = 1\n");
    let mut e = Engine::new(&c, &[]);
    let hostile = format!("evil\n\u{1b}[2J{}", "x".repeat(10_000));
    let fired = run(&mut e, &[at(0.0, auth_failure(Some(&hostile), None))]);
    let a = &fired[0];
    let p = a.principal.as_deref().unwrap();
    assert!(p.chars().count() <= crate::alert::MAX_FIELD_CHARS + 1);
    assert!(!p.contains('\n') && !p.contains('\u{1b}'));
    assert!(
        !a.summary.contains('\n') && a.summary.len() < 400,
        "{}",
        a.summary
    );
}

/// Traffic of a healthy gateway: successful authentications and calls, session churn,
/// rewrites by the redaction guard, upstream starts, configuration records, single failures.
fn normal_event() -> impl Strategy<Value = Event> {
    let names = prop::sample::select(vec![
        "fs__read_file",
        "fs__list",
        "fs__write_file",
        "web__fetch",
        "mail__send",
        "git__log",
    ]);
    let principals = prop::sample::select(vec!["alice", "bob", "ci-bot"]);
    let sessions = prop::sample::select(vec!["s1", "s2", "s3"]);
    let upstreams = prop::sample::select(vec!["fs", "web", "mail", "git"]);
    prop_oneof![
        principals.clone().prop_map(auth_success),
        (
            sessions.clone(),
            principals.clone(),
            names.clone(),
            upstreams.clone()
        )
            .prop_map(|(s, p, n, u)| call(s, p, n, u, Status::Result)),
        (principals.clone(), upstreams.clone()).prop_map(|(p, u)| decision(
            p,
            "redact",
            Verdict::Rewrite,
            Some(u)
        )),
        (sessions, principals).prop_map(|(s, p)| Event::SessionStart {
            session: s.into(),
            principal: p.into(),
            auth: "api_key".into(),
            face: "http".into(),
        }),
        upstreams.prop_map(|u| upstream(u, "started")),
        Just(Event::Config {
            action: "loaded".into(),
            source: None,
            digest: None,
        }),
    ]
}

/// Every default rule, with `shell__*` sensitive: the normal traffic above reads untrusted
/// content (`web__fetch`) but never calls a sensitive tool, which is what the sequence rule
/// is about (its firing is tested above).
fn default_engine() -> Engine {
    let c = config("");
    Engine::new(&c, &["shell__*".to_owned()])
}

/// What identifies a fired alert across two runs (ids differ by design).
type Fingerprint = (&'static str, Option<String>, Option<String>, u64, String);

proptest! {
    // Proves: MON-1 (defaults stay quiet on normal traffic)
    #[test]
    fn normal_traffic_never_fires_under_the_defaults(
        events in prop::collection::vec((0u32..600_000, normal_event()), 0..400),
    ) {
        let mut events = events;
        events.sort_by_key(|(t, _)| *t);
        let mut e = default_engine();
        let records: Vec<_> = events
            .into_iter()
            .map(|(ms, ev)| at(f64::from(ms) / 1000.0, ev))
            .collect();
        let fired = run(&mut e, &records);
        prop_assert!(fired.is_empty(), "{:?}", fired);
    }

    // Interleaving successful traffic into a stream changes nothing that fires: the rules
    // count only what they are about.
    #[test]
    fn interleaved_successful_traffic_never_changes_what_fires(
        attack in prop::collection::vec((0u32..120_000, 0u8..6), 1..80),
        noise in prop::collection::vec((0u32..120_000, normal_event()), 0..200),
    ) {
        let c = config(
            "[alerts.auth_failures]\nthreshold = 3\nwindow = \"10s\"\ncooldown = \"20s\"\n\
             [alerts.denials]\nthreshold = 2\nwindow = \"5s\"\ncooldown = \"0s\"\n\
             [alerts.upstream_crash_loop]\nthreshold = 2\n",
        );
        let attack_event = |k: u8| match k {
            0 => auth_failure(Some("mallory"), None),
            1 => auth_failure(None, Some("203.0.113.9:4000")),
            2 => decision("mallory", "policy", Verdict::Deny, Some("fs")),
            3 => decision("mallory", "pinning", Verdict::Rewrite, Some("fs")),
            4 => upstream("fs", "exited"),
            _ => decision("mallory", "poisoning", Verdict::Deny, Some("evil")),
        };
        let mut only: Vec<(u32, u8, Event)> =
            attack.iter().map(|(t, k)| (*t, 0, attack_event(*k))).collect();
        only.sort_by_key(|(t, _, _)| *t);
        let mut mixed: Vec<(u32, u8, Event)> = only.clone();
        mixed.extend(noise.into_iter().map(|(t, ev)| (t, 1, ev)));
        // Stable: at equal times the attack keeps its order.
        mixed.sort_by_key(|(t, _, _)| *t);
        let strip = |v: Vec<Alert>| -> Vec<Fingerprint> {
            v.into_iter()
                .map(|a| (a.rule, a.principal, a.upstream, a.count, a.ts))
                .collect()
        };
        let records = |v: &[(u32, u8, Event)]| -> Vec<AuditRecord> {
            v.iter()
                .map(|(ms, _, ev)| at(f64::from(*ms) / 1000.0, ev.clone()))
                .collect()
        };
        let alone = run(&mut Engine::new(&c, &[]), &records(&only));
        let together = run(&mut Engine::new(&c, &[]), &records(&mixed));
        prop_assert_eq!(strip(alone), strip(together));
    }
}

#[test]
fn sequence_state_stays_bounded_under_session_churn() {
    let mut e = Engine::new(&sequence_config(), &[]);
    let mut fired = Vec::new();
    let n = MAX_KEYS + 500;
    for i in 0..n {
        let s = format!("s{i}");
        e.observe(
            &at(
                i as f64 * 0.001,
                call(&s, "a", "web__fetch", "web", Status::Result),
            ),
            &mut fired,
        );
        e.observe(
            &at(
                i as f64 * 0.001,
                call(&s, "a", "fs__write_file", "fs", Status::Result),
            ),
            &mut fired,
        );
        // Half of them are tainted again after their alert, so the taint table fills up.
        e.observe(
            &at(
                i as f64 * 0.001,
                call(&s, "a", "web__fetch", "web", Status::Result),
            ),
            &mut fired,
        );
    }
    assert_eq!(fired.len(), n, "every session alerts once");
    assert!(e.sequence.taint.len() <= MAX_KEYS);
    assert!(e.sequence.quiet.len() <= MAX_KEYS);
    // The newest session is still tracked.
    let last = format!("s{}", n - 1);
    assert!(e.sequence.taint.contains_key(&format!("session:{last}")));
}
