use std::collections::BTreeMap;

use proptest::prelude::*;
use warden_audit::{AuditRecord, AuthOutcome, Direction, Event, Status, Verdict};

use super::*;
use crate::OTHER;
use crate::exposition::{valid_label_name, valid_name};

fn metrics(cap: usize) -> Metrics {
    Metrics::new(MetricsOptions::new(
        NonZeroUsize::new(cap).unwrap(),
        "1.2.3",
    ))
}

fn rec(event: Event) -> AuditRecord {
    AuditRecord {
        ts: "2026-01-01T00:00:00.000000Z".into(),
        event,
    }
}

fn call(method: &str, name: Option<&str>, upstream: Option<&str>, us: u64, s: Status) -> Event {
    Event::Call {
        session: Some("s1".into()),
        principal: "anonymous".into(),
        direction: Direction::ToUpstream,
        method: method.into(),
        name: name.map(Into::into),
        upstream: upstream.map(Into::into),
        latency_us: us,
        status: s,
        code: None,
        arguments: None,
        result: None,
        trace: None,
    }
}

fn decision(guard: &str, v: Verdict) -> Event {
    Event::Decision {
        session: None,
        principal: "anonymous".into(),
        direction: Direction::ToUpstream,
        method: Some("tools/call".into()),
        name: Some("fx__write".into()),
        upstream: Some("fx".into()),
        guard: guard.into(),
        verdict: v,
        reason: "not allowed".into(),
        controls: vec![],
        ticket: None,
        trace: None,
    }
}

fn upstream(name: &str, action: &str) -> Event {
    Event::Upstream {
        upstream: name.into(),
        action: action.into(),
        pid: Some(1),
        exit_code: None,
        detail: None,
    }
}

/// One sample line, parsed strictly.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A strict reader of the text format 0.0.4 (the subset a registry may emit): every line is a
/// `# HELP`, a `# TYPE` or a sample; every sample belongs to the family last typed (histogram
/// samples by their suffix); label values are escaped correctly; families are not repeated.
/// Returns the samples, or the first offending line.
fn parse(text: &str) -> Result<Vec<Sample>, String> {
    let mut samples = Vec::new();
    let mut typed: BTreeMap<String, String> = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    let mut helped = None;
    if !text.ends_with('\n') {
        return Err("body does not end with a newline".into());
    }
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, _) = rest.split_once(' ').ok_or(line)?;
            if !valid_name(name) {
                return Err(line.into());
            }
            helped = Some(name.to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').ok_or(line)?;
            if !["counter", "gauge", "histogram"].contains(&kind)
                || helped.as_deref() != Some(name)
                || typed.insert(name.into(), kind.into()).is_some()
            {
                return Err(line.into());
            }
            current = Some((name.into(), kind.into()));
        } else if line.starts_with('#') || line.is_empty() {
            return Err(line.into());
        } else {
            let (family, kind) = current.clone().ok_or(line)?;
            let s = parse_sample(line).ok_or(line)?;
            let belongs = match kind.as_str() {
                "histogram" => ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|suffix| s.name == format!("{family}{suffix}")),
                _ => s.name == family,
            };
            if !belongs || (s.name.ends_with("_bucket") && !s.labels.contains_key("le")) {
                return Err(line.into());
            }
            samples.push(s);
        }
    }
    Ok(samples)
}

fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    if !valid_name(name) {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(r) = rest.strip_prefix('{') {
        rest = r;
        loop {
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            let eq = rest.find('=')?;
            let key = &rest[..eq];
            if !valid_label_name(key) {
                return None;
            }
            rest = rest[eq + 1..].strip_prefix('"')?;
            let mut value = String::new();
            let mut chars = rest.char_indices();
            let end = loop {
                let (i, c) = chars.next()?;
                match c {
                    '"' => break i,
                    '\\' => match chars.next()?.1 {
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        'n' => value.push('\n'),
                        _ => return None,
                    },
                    '\n' => return None,
                    c => value.push(c),
                }
            };
            if labels.insert(key.to_owned(), value).is_some() {
                return None;
            }
            rest = &rest[end + 1..];
            if let Some(r) = rest.strip_prefix(',') {
                rest = r;
            } else if !rest.starts_with('}') {
                return None;
            }
        }
    }
    let value = rest.strip_prefix(' ')?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let found: Vec<f64> = samples
        .iter()
        .filter(|s| s.name == name && s.labels == want)
        .map(|s| s.value)
        .collect();
    assert!(found.len() <= 1, "duplicate series {name} {labels:?}");
    found.first().copied()
}

fn scrape(m: &Metrics) -> Vec<Sample> {
    let text = m.render(&Live::default());
    parse(&text).unwrap_or_else(|line| panic!("invalid exposition at {line:?}:\n{text}"))
}

#[test]
fn counts_calls_decisions_auth_sessions_and_upstreams() {
    let m = metrics(100);
    m.records(
        &[
            rec(Event::SessionStart {
                session: "s1".into(),
                principal: "anonymous".into(),
                auth: "none".into(),
                face: "http".into(),
            }),
            rec(call(
                "tools/call",
                Some("fx__add"),
                Some("fx"),
                300,
                Status::Result,
            )),
            rec(call(
                "tools/call",
                Some("fx__add"),
                Some("fx"),
                2_000,
                Status::Result,
            )),
            rec(decision("policy", Verdict::Deny)),
            rec(call(
                "tools/call",
                Some("fx__write"),
                Some("fx"),
                40,
                Status::Denied,
            )),
            rec(call("tools/list", None, None, 50, Status::Result)),
            rec(Event::Auth {
                principal: None,
                method: "api_key".into(),
                outcome: AuthOutcome::Failure,
                reason: Some("unknown key".into()),
                remote: None,
            }),
            rec(upstream("fx", "started")),
            rec(upstream("fx", "exited")),
            rec(upstream("fx", "restarted")),
            rec(Event::Dropped { count: 7 }),
        ],
        true,
    );
    m.records(
        &[rec(Event::SessionEnd {
            session: "s1".into(),
            principal: "anonymous".into(),
            reason: "deleted".into(),
            duration_ms: 5,
        })],
        false,
    );
    let s = scrape(&m);
    let req = |method, upstream, status| {
        value(
            &s,
            "warden_requests_total",
            &[
                ("direction", "to_upstream"),
                ("method", method),
                ("upstream", upstream),
                ("status", status),
            ],
        )
    };
    assert_eq!(req("tools/call", "fx", "result"), Some(2.0));
    assert_eq!(req("tools/call", "fx", "denied"), Some(1.0));
    assert_eq!(req("tools/list", "", "result"), Some(1.0));
    assert_eq!(req("tools/list", "fx", "result"), None);
    let tool = |t, st| {
        value(
            &s,
            "warden_tool_calls_total",
            &[("upstream", "fx"), ("tool", t), ("status", st)],
        )
    };
    assert_eq!(tool("fx__add", "result"), Some(2.0));
    assert_eq!(tool("fx__write", "denied"), Some(1.0));
    assert_eq!(
        value(
            &s,
            "warden_guard_decisions_total",
            &[
                ("guard", "policy"),
                ("verdict", "deny"),
                ("direction", "to_upstream")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &s,
            "warden_auth_attempts_total",
            &[("method", "api_key"), ("outcome", "failure")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "warden_sessions_started_total", &[("face", "http")]),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "warden_sessions_ended_total", &[("reason", "deleted")]),
        Some(1.0)
    );
    assert_eq!(value(&s, "warden_sessions_active", &[]), Some(0.0));
    for action in ["started", "exited", "restarted"] {
        assert_eq!(
            value(
                &s,
                "warden_upstream_events_total",
                &[("upstream", "fx"), ("action", action)]
            ),
            Some(1.0),
            "{action}"
        );
    }
    assert_eq!(
        value(&s, "warden_upstream_restarts_total", &[("upstream", "fx")]),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "warden_audit_dropped_records_logged_total", &[]),
        Some(7.0)
    );
    assert_eq!(
        value(&s, "warden_audit_records_total", &[("event", "call")]),
        Some(4.0)
    );
    // The session_end batch was not written.
    assert_eq!(
        value(&s, "warden_audit_unwritten_records_total", &[]),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "warden_build_info", &[("version", "1.2.3")]),
        Some(1.0)
    );
}

#[test]
fn latency_histogram_is_cumulative_with_exact_sum() {
    let m = metrics(100);
    for us in [50, 100, 101, 2_000, 70_000_000] {
        m.observe(
            &rec(call(
                "tools/call",
                Some("t"),
                Some("fx"),
                us,
                Status::Result,
            )),
            true,
        );
    }
    let s = scrape(&m);
    let bucket = |le| {
        value(
            &s,
            "warden_request_duration_seconds_bucket",
            &[("method", "tools/call"), ("upstream", "fx"), ("le", le)],
        )
    };
    assert_eq!(bucket("0.0001"), Some(2.0));
    assert_eq!(bucket("0.00025"), Some(3.0));
    assert_eq!(bucket("0.0025"), Some(4.0));
    assert_eq!(bucket("60"), Some(4.0));
    assert_eq!(bucket("+Inf"), Some(5.0));
    let text = m.render(&Live::default());
    assert!(
        text.contains(
            "warden_request_duration_seconds_sum{method=\"tools/call\",upstream=\"fx\"} 70.002251\n"
        ),
        "{text}"
    );
    assert_eq!(
        value(
            &s,
            "warden_request_duration_seconds_count",
            &[("method", "tools/call"), ("upstream", "fx")]
        ),
        Some(5.0)
    );
}

#[test]
fn live_values_appear_only_when_given() {
    let m = metrics(10);
    let without = scrape(&m);
    assert_eq!(value(&without, "warden_audit_queue_depth", &[]), None);
    let text = m.render(&Live {
        audit_queue_depth: Some(3),
        audit_queue_capacity: Some(4096),
        audit_dropped: Some(9),
    });
    let s = parse(&text).unwrap();
    assert_eq!(value(&s, "warden_audit_queue_depth", &[]), Some(3.0));
    assert_eq!(value(&s, "warden_audit_queue_capacity", &[]), Some(4096.0));
    assert_eq!(
        value(&s, "warden_audit_dropped_records_total", &[]),
        Some(9.0)
    );
}

#[test]
fn tool_names_beyond_the_cap_fold_into_other() {
    let m = metrics(3);
    for i in 0..10 {
        let tool = format!("fx__tool{i}");
        m.observe(
            &rec(call(
                "tools/call",
                Some(&tool),
                Some("fx"),
                10,
                Status::Result,
            )),
            true,
        );
    }
    let s = scrape(&m);
    let tools: Vec<&str> = s
        .iter()
        .filter(|x| x.name == "warden_tool_calls_total")
        .map(|x| x.labels["tool"].as_str())
        .collect();
    assert_eq!(tools, ["fx__tool0", "fx__tool1", "fx__tool2", OTHER]);
    assert_eq!(
        value(
            &s,
            "warden_tool_calls_total",
            &[("upstream", "fx"), ("tool", OTHER), ("status", "result")]
        ),
        Some(7.0)
    );
    assert_eq!(
        value(
            &s,
            "warden_metrics_label_values_folded_total",
            &[("label", "tool")]
        ),
        Some(7.0)
    );
}

#[test]
fn a_full_family_folds_new_series_into_other() {
    // Label cap 2, so at most 20 series per family; 3 methods x 3 upstreams x 5 statuses
    // would be 45 series.
    let m = metrics(2);
    let statuses = [
        Status::Result,
        Status::Error,
        Status::Denied,
        Status::Held,
        Status::Abandoned,
    ];
    let mut observed = 0;
    for s in statuses {
        for method in ["a", "b", "c"] {
            for upstream in ["u", "v", "w"] {
                m.observe(&rec(call(method, None, Some(upstream), 1, s)), true);
                observed += 1;
            }
        }
    }
    let samples = scrape(&m);
    let requests: Vec<&Sample> = samples
        .iter()
        .filter(|x| x.name == "warden_requests_total")
        .collect();
    // At most the family's bound, plus one all-`other` series per status (the only labels
    // left when everything free-form is folded).
    assert!(requests.len() <= 20 + statuses.len(), "{requests:?}");
    let total: f64 = requests.iter().map(|x| x.value).sum();
    assert_eq!(
        total,
        f64::from(observed),
        "every observation is still counted"
    );
    let folded = value(
        &samples,
        "warden_metrics_series_folded_total",
        &[("metric", "warden_requests_total")],
    )
    .unwrap();
    assert!(folded > 0.0);
    // Folded observations all sit in all-`other` series.
    let in_other: f64 = requests
        .iter()
        .filter(|x| x.labels["method"] == OTHER && x.labels["upstream"] == OTHER)
        .map(|x| x.value)
        .sum();
    assert!(in_other >= folded, "{in_other} < {folded}");
}

#[test]
fn hostile_label_values_stay_valid_exposition() {
    let m = metrics(100);
    for method in [
        "a\"b",
        "back\\slash",
        "new\nline",
        "{x=\"1\"} 99\nwarden_fake 1",
        "é ∑ 🙂",
        "",
    ] {
        m.observe(
            &rec(call(method, Some(method), Some(method), 1, Status::Error)),
            true,
        );
    }
    let s = scrape(&m);
    assert!(s.iter().all(|x| x.name != "warden_fake"));
    assert_eq!(
        value(
            &s,
            "warden_requests_total",
            &[
                ("direction", "to_upstream"),
                ("method", "a\"b"),
                ("upstream", "a\"b"),
                ("status", "error")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &s,
            "warden_requests_total",
            &[
                ("direction", "to_upstream"),
                ("method", "é ∑ 🙂"),
                ("upstream", "é ∑ 🙂"),
                ("status", "error")
            ]
        ),
        Some(1.0)
    );
}

fn any_event() -> impl Strategy<Value = Event> {
    let text = ".{0,20}";
    let status = prop_oneof![
        Just(Status::Result),
        Just(Status::Error),
        Just(Status::Denied),
        Just(Status::Held),
        Just(Status::Abandoned),
    ];
    let verdict = prop_oneof![
        Just(Verdict::Deny),
        Just(Verdict::Hold),
        Just(Verdict::Rewrite),
        Just(Verdict::Skip),
    ];
    prop_oneof![
        (
            text,
            proptest::option::of(text),
            proptest::option::of(text),
            any::<u64>(),
            status
        )
            .prop_map(|(m, n, u, us, s)| call(&m, n.as_deref(), u.as_deref(), us, s)),
        (text, verdict).prop_map(|(g, v)| decision(&g, v)),
        (text, text).prop_map(|(u, a)| upstream(&u, &a)),
        (text, any::<bool>()).prop_map(|(m, ok)| Event::Auth {
            principal: None,
            method: m,
            outcome: if ok {
                AuthOutcome::Success
            } else {
                AuthOutcome::Failure
            },
            reason: None,
            remote: None,
        }),
        text.prop_map(|f| Event::SessionStart {
            session: "s".into(),
            principal: "p".into(),
            auth: "none".into(),
            face: f,
        }),
        text.prop_map(|r| Event::SessionEnd {
            session: "s".into(),
            principal: "p".into(),
            reason: r,
            duration_ms: 1,
        }),
        (text, text).prop_map(|(m, k)| Event::Message {
            session: None,
            direction: Direction::ToClient,
            method: m,
            upstream: None,
            kind: k,
            params: None,
        }),
        any::<u64>().prop_map(|count| Event::Dropped { count }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Whatever records arrive: the body parses as valid exposition, every record is counted
    /// once by event, request counters add up to the calls seen, and no label has more than
    /// `cap` distinct values besides `other`.
    #[test]
    fn any_record_stream_renders_valid_bounded_exposition(
        cap in 1usize..6,
        events in proptest::collection::vec(any_event(), 0..80),
    ) {
        let m = metrics(cap);
        let records: Vec<AuditRecord> = events.into_iter().map(rec).collect();
        for chunk in records.chunks(7) {
            m.records(chunk, true);
        }
        let text = m.render(&Live::default());
        let samples = parse(&text).map_err(|l| TestCaseError::fail(format!("{l:?} in\n{text}")))?;
        let calls = records.iter().filter(|r| matches!(r.event, Event::Call { .. })).count();
        let requests: f64 = samples.iter().filter(|s| s.name == "warden_requests_total").map(|s| s.value).sum();
        prop_assert_eq!(requests, calls as f64);
        let counted: f64 = samples.iter().filter(|s| s.name == "warden_audit_records_total").map(|s| s.value).sum();
        prop_assert_eq!(counted, records.len() as f64);
        for label in ["method", "upstream", "tool", "guard", "face", "reason", "kind", "action"] {
            let mut values: std::collections::BTreeSet<(&str, &str)> = std::collections::BTreeSet::new();
            for s in &samples {
                if s.name.starts_with("warden_metrics_") {
                    continue;
                }
                if let Some(v) = s.labels.get(label)
                    && v != OTHER
                {
                    values.insert((s.name.as_str(), v.as_str()));
                }
            }
            let mut per_family: BTreeMap<&str, usize> = BTreeMap::new();
            for (family, _) in &values {
                *per_family.entry(family).or_default() += 1;
            }
            for (family, n) in per_family {
                prop_assert!(n <= cap, "{} has {} values of {}", family, n, label);
            }
        }
    }
}
