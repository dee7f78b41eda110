//! Spans built from audit records: each traced `call` record becomes the gateway's server span,
//! and the guard decisions recorded under it become its events.
//!
//! Records arrive in chain order, and a request's decisions are queued before its call record
//! (the call record is written when the response leaves), so decisions wait here, keyed by
//! span, until their call arrives. The wait is bounded: a span whose call record never comes
//! (the record was lost to a full audit queue) is forgotten when newer ones need the room.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use warden_audit::{AuditRecord, Event, Status, TraceRef, Verdict};

use crate::context::{SpanId, TraceId};

/// Spans with decisions waiting for their call record, at most.
pub const DEFAULT_MAX_PENDING_SPANS: usize = 1024;
/// Events kept per span: a request crosses each guard once, so more means a loop somewhere.
pub const MAX_EVENTS_PER_SPAN: usize = 32;

/// An attribute value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttrValue {
    /// A string.
    Str(String),
    /// A list of strings.
    StrList(Vec<String>),
}

/// One attribute.
pub type Attribute = (&'static str, AttrValue);

/// Something that happened during a span (a guard decision).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanEvent {
    /// Event name (`warden.guard.deny`, ...).
    pub name: &'static str,
    /// When it happened, in nanoseconds since the Unix epoch.
    pub time_unix_nanos: u64,
    /// Its attributes.
    pub attributes: Vec<Attribute>,
}

/// How a span ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpanStatus {
    /// The request got a result.
    Unset,
    /// The request failed; a short constant description.
    Error(&'static str),
}

/// The gateway's server span for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// The trace.
    pub trace_id: TraceId,
    /// This span.
    pub span_id: SpanId,
    /// The client's span, when it sent one.
    pub parent: Option<SpanId>,
    /// `{mcp.method.name} {target}`, or the method alone.
    pub name: String,
    /// When the request reached the gateway (nanoseconds since the Unix epoch).
    pub start_unix_nanos: u64,
    /// When its response left (nanoseconds since the Unix epoch).
    pub end_unix_nanos: u64,
    /// Attributes, per the OpenTelemetry MCP conventions plus `warden.*`.
    pub attributes: Vec<Attribute>,
    /// Guard decisions made under this span.
    pub events: Vec<SpanEvent>,
    /// Outcome.
    pub status: SpanStatus,
}

/// Turns the audit record stream into spans.
#[derive(Debug)]
pub struct SpanAssembler {
    pending: HashMap<SpanId, Vec<SpanEvent>>,
    order: VecDeque<SpanId>,
    max_pending: usize,
}

impl Default for SpanAssembler {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_PENDING_SPANS)
    }
}

fn ids(trace: &TraceRef) -> Option<(TraceId, SpanId)> {
    Some((
        TraceId::from_hex(&trace.trace_id)?,
        SpanId::from_hex(&trace.span_id)?,
    ))
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| u64::try_from(d.as_nanos()).ok())
        .unwrap_or(0)
}

fn record_time(record: &AuditRecord) -> SystemTime {
    humantime::parse_rfc3339(&record.ts).unwrap_or_else(|_| SystemTime::now())
}

fn s(v: &str) -> AttrValue {
    AttrValue::Str(v.to_owned())
}

impl SpanAssembler {
    /// An assembler keeping decisions of at most `max_pending` spans (at least one).
    pub fn new(max_pending: usize) -> Self {
        Self {
            pending: HashMap::new(),
            order: VecDeque::new(),
            max_pending: max_pending.max(1),
        }
    }

    /// Spans with decisions waiting for their call record.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Takes one record: a finished span for a traced call record, `None` otherwise.
    pub fn push(&mut self, record: &AuditRecord) -> Option<Span> {
        match &record.event {
            Event::Decision {
                guard,
                verdict,
                controls,
                trace: Some(trace),
                ..
            } => {
                let (_, span_id) = ids(trace)?;
                self.decision(span_id, record, guard, *verdict, controls);
                None
            }
            Event::Call {
                session,
                principal,
                method,
                name,
                upstream,
                latency_us,
                status,
                code,
                trace: Some(trace),
                ..
            } => {
                let (trace_id, span_id) = ids(trace)?;
                let parent = trace.parent_span_id.as_deref().and_then(SpanId::from_hex);
                let end = record_time(record);
                let start = end
                    .checked_sub(Duration::from_micros(*latency_us))
                    .unwrap_or(end);
                let events = self.take(span_id);
                let call = CallView {
                    session: session.as_deref(),
                    principal,
                    method,
                    name: name.as_deref(),
                    upstream: upstream.as_deref(),
                    status: *status,
                    code: *code,
                };
                Some(Span {
                    trace_id,
                    span_id,
                    parent,
                    name: call.span_name(),
                    start_unix_nanos: unix_nanos(start),
                    end_unix_nanos: unix_nanos(end),
                    attributes: call.attributes(),
                    events,
                    status: call.span_status(),
                })
            }
            _ => None,
        }
    }

    fn decision(
        &mut self,
        span_id: SpanId,
        record: &AuditRecord,
        guard: &str,
        verdict: Verdict,
        controls: &[String],
    ) {
        let name = match verdict {
            Verdict::Deny => "warden.guard.deny",
            Verdict::Hold => "warden.guard.hold",
            Verdict::Rewrite => "warden.guard.rewrite",
            Verdict::Skip => "warden.guard.skip",
            Verdict::Report => "warden.guard.report",
        };
        // The guard's reason stays in the audit log: it may quote what the client sent.
        let event = SpanEvent {
            name,
            time_unix_nanos: unix_nanos(record_time(record)),
            attributes: vec![
                ("warden.guard", s(guard)),
                ("warden.controls", AttrValue::StrList(controls.to_vec())),
            ],
        };
        if !self.pending.contains_key(&span_id) {
            while self.pending.len() >= self.max_pending {
                match self.order.pop_front() {
                    Some(old) => {
                        self.pending.remove(&old);
                    }
                    None => break,
                }
            }
            self.order.push_back(span_id);
        }
        let events = self.pending.entry(span_id).or_default();
        if events.len() < MAX_EVENTS_PER_SPAN {
            events.push(event);
        }
    }

    fn take(&mut self, span_id: SpanId) -> Vec<SpanEvent> {
        match self.pending.remove(&span_id) {
            Some(events) => {
                self.order.retain(|s| *s != span_id);
                events
            }
            None => Vec::new(),
        }
    }
}

/// The fields of a call record a span is made of.
struct CallView<'a> {
    session: Option<&'a str>,
    principal: &'a str,
    method: &'a str,
    name: Option<&'a str>,
    upstream: Option<&'a str>,
    status: Status,
    code: Option<i64>,
}

impl CallView<'_> {
    /// `{mcp.method.name} {target}` with the tool or prompt name as target; resource URIs
    /// are left out of the name (high cardinality), as the conventions ask.
    fn span_name(&self) -> String {
        match (self.method, self.name) {
            ("tools/call" | "prompts/get", Some(name)) => format!("{} {name}", self.method),
            _ => self.method.to_owned(),
        }
    }

    fn attributes(&self) -> Vec<Attribute> {
        let mut a = vec![("mcp.method.name", s(self.method))];
        match (self.method, self.name) {
            ("tools/call", Some(name)) => {
                a.push(("gen_ai.tool.name", s(name)));
                a.push(("gen_ai.operation.name", s("execute_tool")));
            }
            ("prompts/get", Some(name)) => a.push(("gen_ai.prompt.name", s(name))),
            (m, Some(uri)) if m.starts_with("resources/") => a.push(("mcp.resource.uri", s(uri))),
            _ => {}
        }
        if let Some(session) = self.session {
            a.push(("mcp.session.id", s(session)));
        }
        if let Some(upstream) = self.upstream {
            a.push(("warden.upstream", s(upstream)));
        }
        a.push(("warden.principal", s(self.principal)));
        a.push(("warden.outcome", s(outcome(self.status))));
        if let Some(code) = self.code {
            let code = code.to_string();
            a.push(("rpc.response.status_code", s(&code)));
            a.push(("error.type", AttrValue::Str(code)));
        } else if self.status == Status::Abandoned {
            a.push(("error.type", s("abandoned")));
        }
        a
    }

    fn span_status(&self) -> SpanStatus {
        match self.status {
            Status::Result => SpanStatus::Unset,
            Status::Error => SpanStatus::Error("error response"),
            Status::Denied => SpanStatus::Error("denied by a guard"),
            Status::Held => SpanStatus::Error("held for approval"),
            Status::Abandoned => SpanStatus::Error("abandoned before a response"),
        }
    }
}

fn outcome(status: Status) -> &'static str {
    match status {
        Status::Result => "result",
        Status::Error => "error",
        Status::Denied => "denied",
        Status::Held => "held",
        Status::Abandoned => "abandoned",
    }
}

#[cfg(test)]
mod tests;
