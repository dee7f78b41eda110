//! The registry: counters and histograms folded from audit records, and their exposition.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use warden_audit::{AuditRecord, AuditTap, AuthOutcome, Direction, Event, Status, Verdict};

use crate::exposition::{Exposition, Kind, Micros};
use crate::labels::LabelCap;

/// Upper bounds of the latency histogram buckets, in microseconds (100 µs to 60 s): a
/// gateway hop is tens of microseconds, a tool call anything up to the request timeout.
pub const LATENCY_BUCKETS_US: [u64; 18] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000, 30_000_000, 60_000_000,
];

/// Series per metric family, as a multiple of `max_label_values`: families have up to three
/// free-form labels, and their product must stay bounded too.
const SERIES_PER_LABEL_VALUE: usize = 10;

/// Settings of a [`Metrics`] registry.
#[derive(Debug, Clone)]
pub struct MetricsOptions {
    /// Distinct values kept per free-form label; the rest are counted under
    /// [`crate::OTHER`].
    pub max_label_values: NonZeroUsize,
    /// The gateway's version, for `warden_build_info`.
    pub version: String,
}

impl MetricsOptions {
    /// Options for gateway `version` with at most `max_label_values` per label.
    pub fn new(max_label_values: NonZeroUsize, version: impl Into<String>) -> Self {
        Self {
            max_label_values,
            version: version.into(),
        }
    }
}

/// Values read at scrape time rather than from records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Live {
    /// Records waiting in the audit queue ([`warden_audit::AuditLog::queue_depth`]).
    pub audit_queue_depth: Option<u64>,
    /// Capacity of the audit queue, in records.
    pub audit_queue_capacity: Option<u64>,
    /// Records dropped so far because the queue was full (fail-open) or a write failed
    /// ([`warden_audit::AuditLog::dropped`]).
    pub audit_dropped: Option<u64>,
}

/// The gateway's metrics. Feed it records as an [`AuditTap`]; read it with
/// [`Metrics::render`].
#[derive(Debug)]
pub struct Metrics {
    state: Mutex<State>,
    version: String,
    started: SystemTime,
}

type Label = Arc<str>;

/// One latency histogram: per-bucket counts (not cumulative), their sum and count.
#[derive(Debug, Clone, Default)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS_US.len()],
    sum_us: u64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, us: u64) {
        if let Some(i) = LATENCY_BUCKETS_US.iter().position(|&b| us <= b) {
            self.buckets[i] += 1;
        }
        self.sum_us = self.sum_us.saturating_add(us);
        self.count += 1;
    }
}

/// Every free-form label, each bounded on its own.
#[derive(Debug, Clone)]
struct Caps {
    method: LabelCap,
    upstream: LabelCap,
    tool: LabelCap,
    guard: LabelCap,
    auth_method: LabelCap,
    action: LabelCap,
    face: LabelCap,
    reason: LabelCap,
    kind: LabelCap,
}

#[derive(Debug, Clone)]
struct State {
    caps: Caps,
    max_series: usize,
    /// New label combinations counted under `other` because their family was full, per
    /// family.
    series_folded: BTreeMap<&'static str, u64>,
    requests: BTreeMap<(&'static str, Label, Label, &'static str), u64>,
    tool_calls: BTreeMap<(Label, Label, &'static str), u64>,
    latency: BTreeMap<(Label, Label), Histogram>,
    decisions: BTreeMap<(Label, &'static str, &'static str), u64>,
    auth: BTreeMap<(Label, &'static str), u64>,
    sessions_started: BTreeMap<Label, u64>,
    sessions_ended: BTreeMap<Label, u64>,
    sessions_active: u64,
    upstream_events: BTreeMap<(Label, Label), u64>,
    upstream_restarts: BTreeMap<Label, u64>,
    messages: BTreeMap<(&'static str, Label, Label), u64>,
    config: BTreeMap<Label, u64>,
    records: BTreeMap<&'static str, u64>,
    unwritten: u64,
    dropped_in_log: u64,
}

/// Adds one to `key` in `map`; when `key` is new and the family already holds `max` series,
/// adds it to `fallback()` (the same labels with every free-form one set to `other`) instead.
fn bump<K: Ord>(
    map: &mut BTreeMap<K, u64>,
    key: K,
    fallback: impl FnOnce() -> K,
    max: usize,
    folded: &mut BTreeMap<&'static str, u64>,
    family: &'static str,
) {
    if let Some(n) = map.get_mut(&key) {
        *n += 1;
        return;
    }
    let key = if map.len() < max {
        key
    } else {
        *folded.entry(family).or_default() += 1;
        fallback()
    };
    *map.entry(key).or_default() += 1;
}

fn direction(d: Direction) -> &'static str {
    match d {
        Direction::ToUpstream => "to_upstream",
        Direction::ToClient => "to_client",
    }
}

fn status(s: Status) -> &'static str {
    match s {
        Status::Result => "result",
        Status::Error => "error",
        Status::Denied => "denied",
        Status::Held => "held",
        Status::Abandoned => "abandoned",
    }
}

fn verdict(v: Verdict) -> &'static str {
    match v {
        Verdict::Deny => "deny",
        Verdict::Hold => "hold",
        Verdict::Rewrite => "rewrite",
        Verdict::Skip => "skip",
        Verdict::Report => "report",
    }
}

fn outcome(o: AuthOutcome) -> &'static str {
    match o {
        AuthOutcome::Success => "success",
        AuthOutcome::Failure => "failure",
    }
}

/// The `event` field of a record, as serialised.
fn event_kind(e: &Event) -> &'static str {
    match e {
        Event::GatewayStart { .. } => "gateway_start",
        Event::GatewayStop { .. } => "gateway_stop",
        Event::SessionStart { .. } => "session_start",
        Event::SessionEnd { .. } => "session_end",
        Event::Auth { .. } => "auth",
        Event::Call { .. } => "call",
        Event::Message { .. } => "message",
        Event::Decision { .. } => "decision",
        Event::Upstream { .. } => "upstream",
        Event::Config { .. } => "config",
        Event::Dropped { .. } => "dropped",
        Event::Recovered { .. } => "recovered",
        Event::Checkpoint { .. } => "checkpoint",
        Event::Continued { .. } => "continued",
    }
}

impl State {
    fn new(max_label_values: usize) -> Self {
        let cap = || LabelCap::new(max_label_values);
        Self {
            caps: Caps {
                method: cap(),
                upstream: cap(),
                tool: cap(),
                guard: cap(),
                auth_method: cap(),
                action: cap(),
                face: cap(),
                reason: cap(),
                kind: cap(),
            },
            max_series: max_label_values.saturating_mul(SERIES_PER_LABEL_VALUE),
            series_folded: BTreeMap::new(),
            requests: BTreeMap::new(),
            tool_calls: BTreeMap::new(),
            latency: BTreeMap::new(),
            decisions: BTreeMap::new(),
            auth: BTreeMap::new(),
            sessions_started: BTreeMap::new(),
            sessions_ended: BTreeMap::new(),
            sessions_active: 0,
            upstream_events: BTreeMap::new(),
            upstream_restarts: BTreeMap::new(),
            messages: BTreeMap::new(),
            config: BTreeMap::new(),
            records: BTreeMap::new(),
            unwritten: 0,
            dropped_in_log: 0,
        }
    }

    fn observe(&mut self, record: &AuditRecord, written: bool) {
        *self.records.entry(event_kind(&record.event)).or_default() += 1;
        if !written {
            self.unwritten += 1;
        }
        let max = self.max_series;
        let folded = &mut self.series_folded;
        let caps = &mut self.caps;
        match &record.event {
            Event::Call {
                direction: d,
                method,
                name,
                upstream,
                latency_us,
                status: s,
                ..
            } => {
                let m = caps.method.admit(method);
                let u = caps.upstream.admit(upstream.as_deref().unwrap_or(""));
                let other = caps.method.other();
                bump(
                    &mut self.requests,
                    (direction(*d), m.clone(), u.clone(), status(*s)),
                    || (direction(*d), other.clone(), other.clone(), status(*s)),
                    max,
                    folded,
                    "warden_requests_total",
                );
                if method == "tools/call" {
                    let t = caps.tool.admit(name.as_deref().unwrap_or(""));
                    bump(
                        &mut self.tool_calls,
                        (u.clone(), t, status(*s)),
                        || (other.clone(), other.clone(), status(*s)),
                        max,
                        folded,
                        "warden_tool_calls_total",
                    );
                }
                let key = (m, u);
                if let Some(h) = self.latency.get_mut(&key) {
                    h.observe(*latency_us);
                } else {
                    let key = if self.latency.len() < max {
                        key
                    } else {
                        *folded.entry("warden_request_duration_seconds").or_default() += 1;
                        (other.clone(), other)
                    };
                    self.latency.entry(key).or_default().observe(*latency_us);
                }
            }
            Event::Decision {
                direction: d,
                guard,
                verdict: v,
                ..
            } => {
                let g = caps.guard.admit(guard);
                let other = caps.guard.other();
                bump(
                    &mut self.decisions,
                    (g, verdict(*v), direction(*d)),
                    || (other, verdict(*v), direction(*d)),
                    max,
                    folded,
                    "warden_guard_decisions_total",
                );
            }
            Event::Auth {
                method, outcome: o, ..
            } => {
                let m = caps.auth_method.admit(method);
                let other = caps.auth_method.other();
                bump(
                    &mut self.auth,
                    (m, outcome(*o)),
                    || (other, outcome(*o)),
                    max,
                    folded,
                    "warden_auth_attempts_total",
                );
            }
            Event::SessionStart { face, .. } => {
                let f = caps.face.admit(face);
                let other = caps.face.other();
                bump(
                    &mut self.sessions_started,
                    f,
                    || other,
                    max,
                    folded,
                    "warden_sessions_started_total",
                );
                self.sessions_active += 1;
            }
            Event::SessionEnd { reason, .. } => {
                let r = caps.reason.admit(reason);
                let other = caps.reason.other();
                bump(
                    &mut self.sessions_ended,
                    r,
                    || other,
                    max,
                    folded,
                    "warden_sessions_ended_total",
                );
                // Every session the log saw start is in this count, so this never goes below
                // zero; saturating all the same, for a log that began mid-session.
                self.sessions_active = self.sessions_active.saturating_sub(1);
            }
            Event::Upstream {
                upstream, action, ..
            } => {
                let u = caps.upstream.admit(upstream);
                let a = caps.action.admit(action);
                let other = caps.upstream.other();
                if action == "restarted" {
                    let other = other.clone();
                    bump(
                        &mut self.upstream_restarts,
                        u.clone(),
                        || other,
                        max,
                        folded,
                        "warden_upstream_restarts_total",
                    );
                }
                bump(
                    &mut self.upstream_events,
                    (u, a),
                    || (other.clone(), other.clone()),
                    max,
                    folded,
                    "warden_upstream_events_total",
                );
            }
            Event::Message {
                direction: d,
                method,
                kind,
                ..
            } => {
                let m = caps.method.admit(method);
                let k = caps.kind.admit(kind);
                let other = caps.method.other();
                bump(
                    &mut self.messages,
                    (direction(*d), m, k),
                    || (direction(*d), other.clone(), other.clone()),
                    max,
                    folded,
                    "warden_messages_total",
                );
            }
            Event::Config { action, .. } => {
                let a = caps.action.admit(action);
                let other = caps.action.other();
                bump(
                    &mut self.config,
                    a,
                    || other,
                    max,
                    folded,
                    "warden_config_events_total",
                );
            }
            Event::Dropped { count } => {
                self.dropped_in_log = self.dropped_in_log.saturating_add(*count);
            }
            Event::GatewayStart { .. }
            | Event::GatewayStop { .. }
            | Event::Recovered { .. }
            | Event::Checkpoint { .. }
            | Event::Continued { .. } => {}
        }
    }
}

impl Metrics {
    /// An empty registry.
    pub fn new(options: MetricsOptions) -> Self {
        Self {
            state: Mutex::new(State::new(options.max_label_values.get())),
            version: options.version,
            started: SystemTime::now(),
        }
    }

    /// Counts one record, as the audit writer would hand it over (`written`: whether its
    /// batch reached the file).
    pub fn observe(&self, record: &AuditRecord, written: bool) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .observe(record, written);
    }

    /// The scrape body, in the Prometheus text format ([`crate::CONTENT_TYPE`]), with `live`
    /// values read by the caller just before.
    pub fn render(&self, live: &Live) -> String {
        // Copy under the lock, format outside it: the audit writer never waits for a scrape
        // longer than a copy of a bounded registry.
        let s = self
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut e = Exposition::default();

        e.family(
            "warden_requests_total",
            "Requests that crossed the gateway and how they ended, by direction, JSON-RPC method, upstream and status.",
            Kind::Counter,
        );
        for ((d, m, u, st), n) in &s.requests {
            e.sample(
                "warden_requests_total",
                &[
                    ("direction", d),
                    ("method", m),
                    ("upstream", u),
                    ("status", st),
                ],
                *n,
            );
        }

        e.family(
            "warden_tool_calls_total",
            "tools/call requests by upstream, tool (as the client names it) and status.",
            Kind::Counter,
        );
        for ((u, t, st), n) in &s.tool_calls {
            e.sample(
                "warden_tool_calls_total",
                &[("upstream", u), ("tool", t), ("status", st)],
                *n,
            );
        }

        e.family(
            "warden_request_duration_seconds",
            "Time from a request reaching the gateway to its response leaving it, by method and upstream.",
            Kind::Histogram,
        );
        for ((m, u), h) in &s.latency {
            let mut cumulative = 0;
            for (bound, n) in LATENCY_BUCKETS_US.iter().zip(h.buckets) {
                cumulative += n;
                let mut le = String::new();
                crate::exposition::write_micros(*bound, &mut le);
                e.sample(
                    "warden_request_duration_seconds_bucket",
                    &[("method", m), ("upstream", u), ("le", &le)],
                    cumulative,
                );
            }
            e.sample(
                "warden_request_duration_seconds_bucket",
                &[("method", m), ("upstream", u), ("le", "+Inf")],
                h.count,
            );
            e.sample(
                "warden_request_duration_seconds_sum",
                &[("method", m), ("upstream", u)],
                Micros(h.sum_us),
            );
            e.sample(
                "warden_request_duration_seconds_count",
                &[("method", m), ("upstream", u)],
                h.count,
            );
        }

        e.family(
            "warden_guard_decisions_total",
            "Guard decisions other than continue, by guard, verdict (deny, hold, rewrite, skip) and direction.",
            Kind::Counter,
        );
        for ((g, v, d), n) in &s.decisions {
            e.sample(
                "warden_guard_decisions_total",
                &[("guard", g), ("verdict", v), ("direction", d)],
                *n,
            );
        }

        e.family(
            "warden_auth_attempts_total",
            "Authentication attempts on the HTTP face, by method and outcome.",
            Kind::Counter,
        );
        for ((m, o), n) in &s.auth {
            e.sample(
                "warden_auth_attempts_total",
                &[("method", m), ("outcome", o)],
                *n,
            );
        }

        e.family(
            "warden_sessions_started_total",
            "Client sessions opened, by face (stdio or http).",
            Kind::Counter,
        );
        for (f, n) in &s.sessions_started {
            e.sample("warden_sessions_started_total", &[("face", f)], *n);
        }
        e.family(
            "warden_sessions_ended_total",
            "Client sessions ended, by reason (closed, deleted, expired, shutdown).",
            Kind::Counter,
        );
        for (r, n) in &s.sessions_ended {
            e.sample("warden_sessions_ended_total", &[("reason", r)], *n);
        }
        e.family(
            "warden_sessions_active",
            "Client sessions open now (started minus ended).",
            Kind::Gauge,
        );
        e.sample("warden_sessions_active", &[], s.sessions_active);

        e.family(
            "warden_upstream_events_total",
            "Upstream lifecycle events, by upstream and action (started, exited, restarted, health_failed, handshake_failed, ...).",
            Kind::Counter,
        );
        for ((u, a), n) in &s.upstream_events {
            e.sample(
                "warden_upstream_events_total",
                &[("upstream", u), ("action", a)],
                *n,
            );
        }
        e.family(
            "warden_upstream_restarts_total",
            "Upstream restarts by the supervisor, by upstream.",
            Kind::Counter,
        );
        for (u, n) in &s.upstream_restarts {
            e.sample("warden_upstream_restarts_total", &[("upstream", u)], *n);
        }

        e.family(
            "warden_messages_total",
            "Notifications and server-initiated requests, by direction, method and kind.",
            Kind::Counter,
        );
        for ((d, m, k), n) in &s.messages {
            e.sample(
                "warden_messages_total",
                &[("direction", d), ("method", m), ("kind", k)],
                *n,
            );
        }

        e.family(
            "warden_config_events_total",
            "Configuration loads and reloads, by action.",
            Kind::Counter,
        );
        for (a, n) in &s.config {
            e.sample("warden_config_events_total", &[("action", a)], *n);
        }

        e.family(
            "warden_audit_records_total",
            "Audit records handed to the metrics after each write, by event.",
            Kind::Counter,
        );
        for (k, n) in &s.records {
            e.sample("warden_audit_records_total", &[("event", k)], *n);
        }
        e.family(
            "warden_audit_unwritten_records_total",
            "Audit records whose write to the log failed.",
            Kind::Counter,
        );
        e.sample("warden_audit_unwritten_records_total", &[], s.unwritten);
        e.family(
            "warden_audit_dropped_records_logged_total",
            "Dropped audit records, as the log itself states them in dropped records.",
            Kind::Counter,
        );
        e.sample(
            "warden_audit_dropped_records_logged_total",
            &[],
            s.dropped_in_log,
        );
        if let Some(n) = live.audit_dropped {
            e.family(
                "warden_audit_dropped_records_total",
                "Audit records lost so far: queue full under fail_open, or a failed write (read at scrape time).",
                Kind::Counter,
            );
            e.sample("warden_audit_dropped_records_total", &[], n);
        }
        if let Some(n) = live.audit_queue_depth {
            e.family(
                "warden_audit_queue_depth",
                "Audit records waiting to be written (read at scrape time).",
                Kind::Gauge,
            );
            e.sample("warden_audit_queue_depth", &[], n);
        }
        if let Some(n) = live.audit_queue_capacity {
            e.family(
                "warden_audit_queue_capacity",
                "Capacity of the audit queue, in records.",
                Kind::Gauge,
            );
            e.sample("warden_audit_queue_capacity", &[], n);
        }

        e.family(
            "warden_metrics_label_values_folded_total",
            "Label values counted as \"other\" because the label reached max_label_values or the value was unfit (too long, control characters).",
            Kind::Counter,
        );
        for (name, cap) in [
            ("method", &s.caps.method),
            ("upstream", &s.caps.upstream),
            ("tool", &s.caps.tool),
            ("guard", &s.caps.guard),
            ("auth_method", &s.caps.auth_method),
            ("action", &s.caps.action),
            ("face", &s.caps.face),
            ("reason", &s.caps.reason),
            ("kind", &s.caps.kind),
        ] {
            e.sample(
                "warden_metrics_label_values_folded_total",
                &[("label", name)],
                cap.folded(),
            );
        }
        e.family(
            "warden_metrics_series_folded_total",
            "Observations counted under an all-\"other\" series because their metric held its maximum number of series.",
            Kind::Counter,
        );
        for (family, n) in &s.series_folded {
            e.sample(
                "warden_metrics_series_folded_total",
                &[("metric", family)],
                *n,
            );
        }

        e.family(
            "warden_build_info",
            "The gateway's version (always 1).",
            Kind::Gauge,
        );
        e.sample("warden_build_info", &[("version", &self.version)], 1u64);
        e.family(
            "warden_start_time_seconds",
            "When the metrics registry (and so the gateway) started, in seconds since the Unix epoch.",
            Kind::Gauge,
        );
        let started = self
            .started
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        e.sample("warden_start_time_seconds", &[], started);
        e.finish()
    }
}

impl AuditTap for Metrics {
    fn records(&self, records: &[AuditRecord], written: bool) {
        // One lock per batch: the writer hands over up to a few hundred records at once.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        for r in records {
            state.observe(r, written);
        }
    }
}

#[cfg(test)]
mod tests;
