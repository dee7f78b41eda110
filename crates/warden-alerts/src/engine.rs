//! The rules: a pure function of the audit record stream (no clock, no I/O).
//!
//! Time is the records' own `ts`, so a rule's window means the same thing in a replay of a log
//! as it did live, and tests need no clock. Every per-key table is bounded
//! ([`MAX_KEYS`]): keys named by a client (the principal a refused credential claims) cannot
//! grow memory without bound, and beyond the bound events are counted under the overflow key
//! `*`, so spraying many keys still fires.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, SystemTime};

use warden_audit::{AuditRecord, AuthOutcome, Direction, Event, Status, Verdict};
use warden_config::{AlertsConfig, SequenceRule, ThresholdRule};

use crate::alert::{Alert, MAX_DETAIL_CHARS, clean, field};

/// Distinct keys one rule tracks at once: bounds memory against key spraying.
pub const MAX_KEYS: usize = 4096;
/// The key events are counted under once a rule tracks [`MAX_KEYS`] keys.
pub const OVERFLOW_KEY: &str = "*";

/// Stable rule ids, as they appear in alerts and in `[alerts.<rule>]`.
pub mod rule {
    /// Refused authentications per principal (or remote address).
    pub const AUTH_FAILURES: &str = "auth_failures";
    /// Guard denials per principal.
    pub const DENIALS: &str = "denials";
    /// A pinned definition changed (decisions of the pinning guard), per upstream.
    pub const PIN_CHANGED: &str = "pin_changed";
    /// Poisoning or injection findings (content guard decisions), per upstream and guard.
    pub const POISONING: &str = "poisoning";
    /// Upstream exits, per upstream.
    pub const UPSTREAM_CRASH_LOOP: &str = "upstream_crash_loop";
    /// A sensitive call shortly after untrusted content, per session.
    pub const UNTRUSTED_THEN_SENSITIVE: &str = "untrusted_then_sensitive";

    /// The checklist controls a rule's alerts name (besides those of the guard whose
    /// decisions it counted); empty for an unknown rule.
    pub fn controls(rule: &str) -> &'static [&'static str] {
        match rule {
            AUTH_FAILURES => super::AUTH_CONTROLS,
            DENIALS => super::DENIAL_CONTROLS,
            PIN_CHANGED => super::PIN_CONTROLS,
            POISONING => super::POISONING_CONTROLS,
            UPSTREAM_CRASH_LOOP => super::CRASH_CONTROLS,
            UNTRUSTED_THEN_SENSITIVE => super::SEQUENCE_CONTROLS,
            _ => &[],
        }
    }
}

/// Guard whose decisions mean a pinned definition changed (`warden-pins`).
const PINNING_GUARD: &str = "pinning";
/// Guards whose decisions are poisoning or injection findings (`warden-content`).
const FINDING_GUARDS: &[&str] = &["poisoning", "injection_scan"];
/// The guard whose findings mark a result as untrusted.
const INJECTION_GUARD: &str = "injection_scan";
/// Upstream lifecycle actions that count as a death of the upstream: the process (or
/// connection) ended, or a restart could not even start it.
const CRASH_ACTIONS: &[&str] = &["exited", "start_failed"];
/// The supervisor gave up restarting the upstream (its own crash-loop limit): alert at once.
const MARKED_DOWN: &str = "marked_down";
/// Methods whose results bring content into a session.
const CONTENT_METHODS: &[&str] = &["tools/call", "resources/read", "prompts/get"];

const AUTH_CONTROLS: &[&str] = &["MON-1", "MON-3", "LOG-2", "LOG-3"];
const DENIAL_CONTROLS: &[&str] = &["MON-1", "MON-3", "LOG-3", "AI-2"];
const PIN_CONTROLS: &[&str] = &["MON-3"];
const POISONING_CONTROLS: &[&str] = &["MON-3"];
const CRASH_CONTROLS: &[&str] = &["MON-1", "MON-3"];
const SEQUENCE_CONTROLS: &[&str] = &["MON-1", "MON-3", "LOG-3", "PROMPT-1", "AI-2"];

/// The time of a record: its `ts`, or now when it cannot be read (records the writer made
/// always can).
fn time_of(record: &AuditRecord) -> SystemTime {
    humantime::parse_rfc3339(&record.ts).unwrap_or_else(|_| SystemTime::now())
}

fn since(later: SystemTime, earlier: SystemTime) -> Duration {
    later.duration_since(earlier).unwrap_or(Duration::ZERO)
}

fn controls(own: &[&str], guard: &[String]) -> Vec<String> {
    let mut out: Vec<String> = own.iter().map(|c| (*c).to_owned()).collect();
    for c in guard {
        if !out.contains(c) {
            out.push(field(c));
        }
    }
    out
}

/// What a counter reports when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fired {
    count: u64,
    first: SystemTime,
    suppressed: u64,
}

#[derive(Debug, Default)]
struct KeyState {
    /// Times of the latest events, oldest first; at most `threshold` of them.
    events: VecDeque<SystemTime>,
    /// No alert for this key before this time.
    quiet_until: Option<SystemTime>,
    /// Events during the cooldown.
    suppressed: u64,
    /// Latest event.
    last: Option<SystemTime>,
}

/// Whether `state` can be forgotten at `now`: nothing in its window, no cooldown running.
fn stale(rule: &ThresholdRule, state: &KeyState, now: SystemTime) -> bool {
    let idle = state
        .last
        .is_none_or(|l| since(now, l) > rule.window.max(rule.cooldown));
    idle && state.quiet_until.is_none_or(|q| q <= now)
}

/// `threshold` events of one key within `window` fire once, then the key is quiet for
/// `cooldown`.
#[derive(Debug)]
struct Counter {
    rule: ThresholdRule,
    keys: HashMap<String, KeyState>,
}

impl Counter {
    fn new(rule: ThresholdRule) -> Self {
        Self {
            rule,
            keys: HashMap::new(),
        }
    }

    /// The key to count under: `key`, or [`OVERFLOW_KEY`] when the table is full of live keys.
    fn slot(&mut self, key: &str, now: SystemTime) -> String {
        if self.keys.contains_key(key) || self.keys.len() < MAX_KEYS {
            return key.to_owned();
        }
        let rule = &self.rule;
        self.keys.retain(|_, s| !stale(rule, s, now));
        if self.keys.len() < MAX_KEYS {
            return key.to_owned();
        }
        if !self.keys.contains_key(OVERFLOW_KEY)
            && let Some(oldest) = self
                .keys
                .iter()
                .min_by_key(|(_, s)| s.last)
                .map(|(k, _)| k.clone())
        {
            // Full of live keys and no overflow slot yet: make room for it.
            self.keys.remove(&oldest);
        }
        OVERFLOW_KEY.to_owned()
    }

    /// Counts one event of `key` at `now`; returns the key counted under and what fired.
    fn hit(&mut self, key: &str, now: SystemTime) -> (String, Option<Fired>) {
        self.count(key, now, false)
    }

    /// Counts one event that fires on its own (outside a cooldown), whatever the threshold.
    fn force(&mut self, key: &str, now: SystemTime) -> (String, Option<Fired>) {
        self.count(key, now, true)
    }

    fn count(&mut self, key: &str, now: SystemTime, force: bool) -> (String, Option<Fired>) {
        if !self.rule.enabled {
            return (key.to_owned(), None);
        }
        let key = self.slot(key, now);
        let threshold = self.rule.threshold.get() as usize;
        let window = self.rule.window;
        let cooldown = self.rule.cooldown;
        let state = self.keys.entry(key.clone()).or_default();
        state.last = Some(state.last.map_or(now, |l| l.max(now)));
        if state.quiet_until.is_some_and(|q| now < q) {
            state.suppressed += 1;
            return (key, None);
        }
        state.events.push_back(now);
        while state.events.len() > threshold {
            state.events.pop_front();
        }
        while state
            .events
            .front()
            .is_some_and(|&first| since(now, first) > window)
        {
            state.events.pop_front();
        }
        if state.events.len() < threshold && !force {
            return (key, None);
        }
        let first = state.events.front().copied().unwrap_or(now);
        let fired = Fired {
            count: state.events.len() as u64,
            first,
            suppressed: std::mem::take(&mut state.suppressed),
        };
        state.events.clear();
        state.quiet_until = Some(now + cooldown);
        (key, Some(fired))
    }
}

/// Why a session's recent content is untrusted.
#[derive(Debug, Clone)]
struct Taint {
    at: SystemTime,
    /// The tool (or resource, or prompt) whose result it was.
    source: Option<String>,
    upstream: Option<String>,
    why: &'static str,
}

/// The per-session sequence rule.
#[derive(Debug)]
struct Sequence {
    rule: SequenceRule,
    sensitive: Vec<String>,
    /// Latest untrusted content per session key.
    taint: HashMap<String, Taint>,
    /// Injection findings waiting for the call record they belong to, per (principal,
    /// upstream): guard decisions carry no session, the call record that follows does.
    pending: HashMap<(String, String), SystemTime>,
    /// Session keys in cooldown.
    quiet: HashMap<String, SystemTime>,
}

/// Drops entries of `map` older than `keep` at `now` when it is at `MAX_KEYS`, then the
/// oldest one if it is still full.
fn bound<K: Clone + Eq + std::hash::Hash, V>(
    map: &mut HashMap<K, V>,
    now: SystemTime,
    keep: Duration,
    at: impl Fn(&V) -> SystemTime,
) {
    if map.len() < MAX_KEYS {
        return;
    }
    map.retain(|_, v| since(now, at(v)) <= keep);
    if map.len() >= MAX_KEYS
        && let Some(oldest) = map
            .iter()
            .min_by_key(|(_, v)| at(v))
            .map(|(k, _)| k.clone())
    {
        map.remove(&oldest);
    }
}

impl Sequence {
    fn matches(patterns: &[String], name: &str) -> bool {
        patterns.iter().any(|p| warden_audit::glob_match(p, name))
    }

    /// An injection finding on content travelling to the client.
    fn finding(&mut self, principal: &str, upstream: Option<&str>, now: SystemTime) {
        bound(&mut self.pending, now, self.rule.window, |t| *t);
        self.pending.insert(
            (
                principal.to_owned(),
                upstream.unwrap_or_default().to_owned(),
            ),
            now,
        );
    }

    fn session_ended(&mut self, session: &str) {
        self.taint.remove(&format!("session:{session}"));
        self.quiet.remove(&format!("session:{session}"));
    }

    /// A client request's record. Returns the taint that makes it alert-worthy, if any.
    #[expect(clippy::too_many_arguments, reason = "the fields of one call record")]
    fn call(
        &mut self,
        key: &str,
        principal: &str,
        method: &str,
        name: Option<&str>,
        upstream: Option<&str>,
        status: Status,
        now: SystemTime,
    ) -> Option<Taint> {
        let mut fired = None;
        // The sensitive call is judged against what came before it, not against its own
        // result: a tool both untrusted and sensitive does not fire on itself.
        if method == "tools/call"
            && let Some(tool) = name
            && Self::matches(&self.sensitive, tool)
            && let Some(t) = self.taint.get(key)
            && since(now, t.at) <= self.rule.window
            && self.quiet.get(key).is_none_or(|&q| now >= q)
        {
            fired = Some(t.clone());
            if self.quiet.len() >= MAX_KEYS {
                // Values are ends of cooldowns: drop the ended ones, then the soonest to end.
                self.quiet.retain(|_, until| *until > now);
                if self.quiet.len() >= MAX_KEYS
                    && let Some(k) = self
                        .quiet
                        .iter()
                        .min_by_key(|(_, until)| **until)
                        .map(|(k, _)| k.clone())
                {
                    self.quiet.remove(&k);
                }
            }
            self.quiet.insert(key.to_owned(), now + self.rule.cooldown);
            // One alert per taint: the next one needs new untrusted content.
            self.taint.remove(key);
        }
        let pending_key = (
            principal.to_owned(),
            upstream.unwrap_or_default().to_owned(),
        );
        let injected = self
            .pending
            .remove(&pending_key)
            .is_some_and(|at| since(now, at) <= self.rule.window);
        let untrusted_source = status == Status::Result
            && CONTENT_METHODS.contains(&method)
            && (upstream.is_some_and(|u| Self::matches(&self.rule.untrusted_upstreams, u))
                || (method == "tools/call"
                    && name.is_some_and(|n| Self::matches(&self.rule.untrusted_tools, n))));
        if injected || untrusted_source {
            bound(&mut self.taint, now, self.rule.window, |t| t.at);
            self.taint.insert(
                key.to_owned(),
                Taint {
                    at: now,
                    source: name.map(field),
                    upstream: upstream.map(field),
                    why: if injected {
                        "an injection finding"
                    } else if upstream
                        .is_some_and(|u| Self::matches(&self.rule.untrusted_upstreams, u))
                    {
                        "an untrusted upstream"
                    } else {
                        "an untrusted tool"
                    },
                },
            );
        }
        fired
    }
}

/// Every rule, fed one record at a time.
#[derive(Debug)]
pub struct Engine {
    auth_failures: Counter,
    denials: Counter,
    pin_changed: Counter,
    poisoning: Counter,
    crash_loop: Counter,
    sequence: Sequence,
    id_prefix: u64,
    fired: u64,
}

impl Engine {
    /// The rules of `config`; `audit_sensitive` is `[audit] sensitive_tools`, the default
    /// sensitive patterns of the sequence rule.
    pub fn new(config: &AlertsConfig, audit_sensitive: &[String]) -> Self {
        let seq = config.untrusted_then_sensitive.clone();
        let sensitive = seq
            .sensitive_tools
            .clone()
            .unwrap_or_else(|| audit_sensitive.to_vec());
        Self {
            auth_failures: Counter::new(config.auth_failures.clone()),
            denials: Counter::new(config.denials.clone()),
            pin_changed: Counter::new(config.pin_changed.clone()),
            poisoning: Counter::new(config.poisoning.clone()),
            crash_loop: Counter::new(config.upstream_crash_loop.clone()),
            sequence: Sequence {
                rule: seq,
                sensitive,
                taint: HashMap::new(),
                pending: HashMap::new(),
                quiet: HashMap::new(),
            },
            id_prefix: rand::random(),
            fired: 0,
        }
    }

    fn alert(&mut self, rule: &'static str, severity: &'static str, now: SystemTime) -> Alert {
        self.fired += 1;
        let ts = warden_audit::record::timestamp(now);
        Alert {
            id: format!("{:016x}-{}", self.id_prefix, self.fired),
            rule,
            severity,
            ts: ts.clone(),
            first_ts: ts,
            summary: String::new(),
            principal: None,
            session: None,
            upstream: None,
            remote: None,
            tool: None,
            count: 1,
            window_secs: 0,
            suppressed: 0,
            controls: Vec::new(),
            detail: None,
        }
    }

    fn counted(
        &mut self,
        rule: &'static str,
        counter: fn(&Self) -> &ThresholdRule,
        fired: Fired,
        now: SystemTime,
    ) -> Alert {
        let r = counter(self);
        let (severity, window) = (r.severity.as_str(), r.window);
        let mut a = self.alert(rule, severity, now);
        a.first_ts = warden_audit::record::timestamp(fired.first);
        a.count = fired.count;
        a.window_secs = window.as_secs();
        a.suppressed = fired.suppressed;
        a
    }

    /// Evaluates one record; appends what fired to `out`.
    pub fn observe(&mut self, record: &AuditRecord, out: &mut Vec<Alert>) {
        let now = time_of(record);
        match &record.event {
            Event::Auth {
                principal,
                outcome: AuthOutcome::Failure,
                reason,
                remote,
                ..
            } => {
                // A remote is keyed by its host: every new connection has a new source port.
                let remote = remote.as_deref().map(remote_host);
                let key = match (principal, &remote) {
                    (Some(p), _) => format!("principal:{p}"),
                    (None, Some(r)) => format!("remote:{r}"),
                    (None, None) => OVERFLOW_KEY.to_owned(),
                };
                let (key, fired) = self.auth_failures.hit(&key, now);
                let Some(fired) = fired else { return };
                let mut a =
                    self.counted(rule::AUTH_FAILURES, |e| &e.auth_failures.rule, fired, now);
                let window = humantime::format_duration(Duration::from_secs(a.window_secs));
                let who = if key == OVERFLOW_KEY {
                    "unidentified clients".to_owned()
                } else if let Some(p) = principal {
                    a.principal = Some(field(p));
                    format!("principal {:?}", field(p))
                } else if let Some(r) = &remote {
                    a.remote = Some(field(r));
                    format!("remote {:?}", field(r))
                } else {
                    "unidentified clients".to_owned()
                };
                a.summary = format!("{} refused authentications in {window} from {who}", a.count);
                a.controls = controls(AUTH_CONTROLS, &[]);
                a.detail = reason.as_deref().map(|r| clean(r, MAX_DETAIL_CHARS));
                out.push(a);
            }
            Event::Decision {
                session,
                principal,
                direction,
                name,
                upstream,
                guard,
                verdict,
                reason,
                controls: guard_controls,
                ..
            } => {
                let upstream_key = upstream.as_deref().unwrap_or(OVERFLOW_KEY);
                if *verdict == Verdict::Deny {
                    let (_, fired) = self.denials.hit(&format!("principal:{principal}"), now);
                    if let Some(fired) = fired {
                        let mut a = self.counted(rule::DENIALS, |e| &e.denials.rule, fired, now);
                        let window = humantime::format_duration(Duration::from_secs(a.window_secs));
                        a.principal = Some(field(principal));
                        a.summary = format!(
                            "{} denied requests in {window} for principal {:?} (last by guard {:?})",
                            a.count,
                            field(principal),
                            field(guard)
                        );
                        a.session = session.as_deref().map(field);
                        a.upstream = upstream.as_deref().map(field);
                        a.tool = name.as_deref().map(field);
                        a.controls = controls(DENIAL_CONTROLS, guard_controls);
                        a.detail = Some(clean(reason, MAX_DETAIL_CHARS));
                        out.push(a);
                    }
                }
                // `report`: a guard in a report mode let the message through having found
                // something; the finding is the same, only the enforcement differs.
                let finding = matches!(
                    verdict,
                    Verdict::Deny | Verdict::Hold | Verdict::Rewrite | Verdict::Report
                );
                if finding && guard == PINNING_GUARD {
                    let (_, fired) = self.pin_changed.hit(upstream_key, now);
                    if let Some(fired) = fired {
                        let mut a =
                            self.counted(rule::PIN_CHANGED, |e| &e.pin_changed.rule, fired, now);
                        a.upstream = upstream.as_deref().map(field);
                        a.tool = name.as_deref().map(field);
                        a.principal = Some(field(principal));
                        a.summary = format!(
                            "a pinned definition of upstream {:?} changed: the pinning guard {}",
                            field(upstream_key),
                            match verdict {
                                Verdict::Deny => "refused a call to a held tool",
                                Verdict::Report => "reported it (report mode: not withheld)",
                                _ => "withheld the changed definition",
                            }
                        );
                        a.controls = controls(PIN_CONTROLS, guard_controls);
                        a.detail = Some(clean(reason, MAX_DETAIL_CHARS));
                        out.push(a);
                    }
                }
                if finding && FINDING_GUARDS.contains(&guard.as_str()) {
                    let (_, fired) = self.poisoning.hit(&format!("{guard}:{upstream_key}"), now);
                    if let Some(fired) = fired {
                        let mut a =
                            self.counted(rule::POISONING, |e| &e.poisoning.rule, fired, now);
                        a.upstream = upstream.as_deref().map(field);
                        a.tool = name.as_deref().map(field);
                        a.principal = Some(field(principal));
                        a.summary = format!(
                            "{} finding on upstream {:?} ({} in {})",
                            if guard == INJECTION_GUARD {
                                "prompt injection"
                            } else {
                                "poisoning"
                            },
                            field(upstream_key),
                            a.count,
                            humantime::format_duration(Duration::from_secs(a.window_secs))
                        );
                        a.controls = controls(POISONING_CONTROLS, guard_controls);
                        a.detail = Some(clean(reason, MAX_DETAIL_CHARS));
                        out.push(a);
                    }
                }
                if finding
                    && guard == INJECTION_GUARD
                    && *direction == Direction::ToClient
                    && self.sequence.rule.enabled
                {
                    self.sequence.finding(principal, upstream.as_deref(), now);
                }
            }
            Event::Upstream {
                upstream,
                action,
                exit_code,
                detail,
                ..
            } if CRASH_ACTIONS.contains(&action.as_str()) || action == MARKED_DOWN => {
                let down = action == MARKED_DOWN;
                let (_, fired) = if down {
                    self.crash_loop.force(upstream, now)
                } else {
                    self.crash_loop.hit(upstream, now)
                };
                let Some(fired) = fired else { return };
                let mut a = self.counted(
                    rule::UPSTREAM_CRASH_LOOP,
                    |e| &e.crash_loop.rule,
                    fired,
                    now,
                );
                a.upstream = Some(field(upstream));
                a.summary = if down {
                    format!(
                        "upstream {:?} was marked down by its supervisor (restart limit reached)",
                        field(upstream)
                    )
                } else {
                    format!(
                        "upstream {:?} died {} times in {} (last: {}{})",
                        field(upstream),
                        a.count,
                        humantime::format_duration(Duration::from_secs(a.window_secs)),
                        action,
                        exit_code
                            .map(|c| format!(", exit code {c}"))
                            .unwrap_or_default()
                    )
                };
                a.controls = controls(CRASH_CONTROLS, &[]);
                a.detail = detail.as_deref().map(|d| clean(d, MAX_DETAIL_CHARS));
                out.push(a);
            }
            Event::Call {
                session,
                principal,
                direction: Direction::ToUpstream,
                method,
                name,
                upstream,
                status,
                ..
            } if self.sequence.rule.enabled => {
                let key = match session {
                    Some(s) => format!("session:{s}"),
                    None => format!("principal:{principal}"),
                };
                let Some(taint) = self.sequence.call(
                    &key,
                    principal,
                    method,
                    name.as_deref(),
                    upstream.as_deref(),
                    *status,
                    now,
                ) else {
                    return;
                };
                let seq = &self.sequence.rule;
                let (severity, window) = (seq.severity.as_str(), seq.window);
                let mut a = self.alert(rule::UNTRUSTED_THEN_SENSITIVE, severity, now);
                a.first_ts = warden_audit::record::timestamp(taint.at);
                a.window_secs = window.as_secs();
                a.principal = Some(field(principal));
                a.session = session.as_deref().map(field);
                a.upstream = upstream.as_deref().map(field);
                a.tool = name.as_deref().map(field);
                let tool = name.as_deref().map(field).unwrap_or_default();
                let who = match session {
                    Some(s) => format!("session {:?}", field(s)),
                    None => format!("principal {:?}", field(principal)),
                };
                let mut from = taint.why.to_owned();
                match (&taint.source, &taint.upstream) {
                    (Some(s), Some(u)) => from.push_str(&format!(" ({s:?} on upstream {u:?})")),
                    (Some(s), None) => from.push_str(&format!(" ({s:?})")),
                    (None, Some(u)) => from.push_str(&format!(" (upstream {u:?})")),
                    (None, None) => {}
                }
                let after =
                    humantime::format_duration(Duration::from_secs(since(now, taint.at).as_secs()));
                a.summary = format!(
                    "{who} called sensitive tool {tool:?} {after} after reading content with {from}"
                );
                a.detail = Some(format!(
                    "status of the sensitive call: {}",
                    match status {
                        Status::Result => "result",
                        Status::Error => "error",
                        Status::Denied => "denied",
                        Status::Held => "held",
                        Status::Abandoned => "abandoned",
                    }
                ));
                a.controls = controls(SEQUENCE_CONTROLS, &[]);
                out.push(a);
            }
            Event::SessionEnd { session, .. } => self.sequence.session_ended(session),
            _ => {}
        }
    }
}

/// The host of a recorded remote address (`ip:port`, `[v6]:port`); the text as it is when it
/// is not a socket address.
fn remote_host(remote: &str) -> String {
    remote
        .parse::<std::net::SocketAddr>()
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|_| remote.to_owned())
}

#[cfg(test)]
mod tests;
