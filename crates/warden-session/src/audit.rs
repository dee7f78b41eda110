//! Audit records of what crosses the gateway: sessions, calls with their latency and outcome,
//! upstream messages, and (through [`DecisionAudit`], a pipeline observer) every guard decision.
//!
//! Each event costs the request path one record built from data already at hand and one
//! non-blocking queue push; the writer thread does the hashing and the I/O. The exception is the
//! flush policy: a call that was denied or held, or that named a sensitive tool, waits until
//! its record (and every record queued before it, including the guard's decision) is on disk
//! before the client receives the response.

use std::sync::Arc;

use serde_json::Value;
use tokio::time::Instant;
use warden_audit::{AuditLog, Content, Event, Status};
use warden_guard::{Call, Decided, Guard, Observer, Principal};
use warden_proto::Field;
use warden_proto::{ErrorCode, Id, Kind, Message};

use crate::gateway::{Gateway, error};
use crate::{Reply, ReplyStream, Session};

/// What the client is told when the audit log cannot take a call's record (fail-closed).
const UNAUDITED: &str = "the gateway cannot audit this call right now";

fn direction(d: warden_guard::Direction) -> warden_audit::Direction {
    match d {
        warden_guard::Direction::ToUpstream => warden_audit::Direction::ToUpstream,
        warden_guard::Direction::ToClient => warden_audit::Direction::ToClient,
    }
}

/// `LocalProcess` -> `local_process`: how an enum variant reads in a record.
fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// The tool or prompt name, or resource URI, a request names.
fn target_name(message: &Message) -> Option<String> {
    let params = message.params()?;
    params
        .field("name")
        .or_else(|| params.field("uri"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Records every non-"continue" guard decision. Installed with
/// [`warden_guard::Pipeline::observed`].
#[derive(Debug, Clone)]
pub struct DecisionAudit {
    log: AuditLog,
}

impl DecisionAudit {
    /// An observer writing to `log`.
    pub fn new(log: AuditLog) -> Self {
        Self { log }
    }
}

impl Observer for DecisionAudit {
    fn decided(&self, call: &Call<'_>, guard: &dyn Guard, decided: Decided<'_>) {
        let (verdict, reason, controls, ticket) = match decided {
            Decided::Deny(d) => (
                warden_audit::Verdict::Deny,
                d.detail.clone(),
                d.controls,
                None,
            ),
            Decided::Hold(t) => (
                warden_audit::Verdict::Hold,
                "held for approval".to_owned(),
                guard.controls(),
                Some(t.id.clone()),
            ),
            Decided::Rewrite => (
                warden_audit::Verdict::Rewrite,
                "rewritten".to_owned(),
                guard.controls(),
                None,
            ),
            Decided::Skip(e) => (
                warden_audit::Verdict::Skip,
                e.to_string(),
                guard.controls(),
                None,
            ),
            Decided::Report(r) => (
                warden_audit::Verdict::Report,
                r.detail.clone(),
                r.controls,
                None,
            ),
        };
        let event = Event::Decision {
            session: call.session.map(str::to_owned),
            principal: call.principal.subject.to_string(),
            direction: direction(call.direction),
            method: call
                .message
                .method()
                .or(call.request_method)
                .map(str::to_owned),
            name: match call.direction {
                warden_guard::Direction::ToUpstream => target_name(call.message),
                warden_guard::Direction::ToClient => None,
            },
            upstream: call.upstream.map(str::to_owned),
            guard: guard.name().to_owned(),
            verdict,
            reason,
            controls: controls.iter().map(|c| (*c).to_owned()).collect(),
            ticket,
            // The span of the request being handled (set by `audited_request` when traced).
            trace: warden_trace::current().map(|c| c.audit_ref()),
        };
        // Queued, not awaited: the call's own record, written after this one, is what the
        // flush policy waits for, and the queue is FIFO.
        if let Err(e) = self.log.record(event) {
            tracing::error!(error = %e, "guard decision could not be audited");
        }
    }
}

/// The record of one client request, finished when its response leaves the gateway (or, as
/// abandoned, when the exchange is dropped without one).
#[derive(Debug)]
pub(crate) struct PendingCall(Option<Box<CallData>>);

#[derive(Debug)]
struct CallData {
    log: AuditLog,
    started: Instant,
    session: Option<String>,
    principal: String,
    method: String,
    name: Option<String>,
    upstream: Option<String>,
    arguments: Option<Content>,
    sensitive: bool,
    /// The gateway's trace span, when tracing records this call.
    span: Option<warden_trace::SpanContext>,
}

impl Drop for PendingCall {
    fn drop(&mut self) {
        if let Some(d) = self.0.take() {
            // The client went away before the response: nobody waits, so nothing to sync.
            let log = d.log.clone();
            if let Err(e) = log.record(d.event(Status::Abandoned, None, None)) {
                tracing::error!(error = %e, "abandoned call could not be audited");
            }
        }
    }
}

impl CallData {
    fn event(self, status: Status, code: Option<i64>, result: Option<Content>) -> Event {
        Event::Call {
            session: self.session,
            principal: self.principal,
            direction: warden_audit::Direction::ToUpstream,
            method: self.method,
            name: self.name,
            upstream: self.upstream,
            latency_us: u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX),
            status,
            code,
            arguments: self.arguments,
            result,
            trace: self.span.map(|s| s.audit_ref()),
        }
    }
}

impl PendingCall {
    /// The call's trace span, when tracing records it: response guards run under it too.
    pub(crate) fn span(&self) -> Option<warden_trace::SpanContext> {
        self.0.as_ref().and_then(|d| d.span)
    }

    /// Completes the record with the response (or its absence) and, when the flush policy asks
    /// for it, waits until it is on disk. Under fail-closed, a response whose record cannot be
    /// written is replaced by an error: the client never acts on an unaudited result.
    pub(crate) async fn finish(mut self, last: Option<Message>) -> Option<Message> {
        let Some(data) = self.0.take() else {
            return last;
        };
        let (status, code, result) = match &last {
            None => (Status::Abandoned, None, None),
            Some(m) if *m.kind() == Kind::Error => {
                let err = m.error();
                let code = err.and_then(|e| e.field("code")).and_then(Value::as_i64);
                let held = err
                    .and_then(|e| e.field("message"))
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.starts_with("call held for approval"));
                // A denial names its guard in `data.guard` (`Denial::to_jsonrpc`), whatever
                // JSON-RPC code the guard chose; a hold is the gateway's own -31003.
                let by_guard = err
                    .and_then(|e| e.field("data"))
                    .and_then(|d| d.field("guard"))
                    .is_some_and(Value::is_string);
                let status = match code {
                    Some(c) if c == ErrorCode::Denied.code() && held => Status::Held,
                    _ if by_guard => Status::Denied,
                    Some(c) if c == ErrorCode::Denied.code() => Status::Denied,
                    _ => Status::Error,
                };
                (status, code, None)
            }
            Some(m) => (
                Status::Result,
                None,
                Some(
                    data.log
                        .content_deferred(m.bytes().clone(), warden_audit::Part::Message),
                ),
            ),
        };
        let log = data.log.clone();
        let sensitive = data.sensitive;
        let event = data.event(status, code, result);
        // Queued at once unless the flush policy wants it on disk first; only that wait is a
        // future (boxed: with the event in it, it would triple the size of every reply's).
        let written = if log.needs_sync(&event, sensitive) {
            Box::pin(log.record_durable(event)).await
        } else {
            log.record(event)
        };
        match written {
            Ok(()) => last,
            Err(e) => {
                tracing::error!(error = %e, "call could not be audited; response withheld");
                let id = last
                    .as_ref()
                    .and_then(Message::id)
                    .map(Id::to_value)
                    .unwrap_or(Value::Null);
                last.map(|_| error(&id, ErrorCode::InternalError, UNAUDITED))
            }
        }
    }
}

impl Gateway {
    /// [`Gateway::handle_request`] with its audit record: refused at once when the audit log
    /// is full and fails closed; otherwise the reply carries the pending record, finished
    /// when the response is taken.
    pub(crate) async fn audited_request(
        &self,
        session: Option<&Arc<Session>>,
        routes: Arc<crate::gateway::Routes>,
        principal: &Principal,
        message: Message,
    ) -> Reply {
        let Some(log) = self.opts.audit.clone() else {
            return self
                .handle_request(session, routes, principal, message)
                .await;
        };
        let started = Instant::now();
        if !log.has_room() {
            let id = message.id().map(Id::to_value).unwrap_or(Value::Null);
            tracing::error!("audit queue full; call refused (fail-closed)");
            return Reply::Stream(ReplyStream::single(error(
                &id,
                ErrorCode::InternalError,
                UNAUDITED,
            )));
        }
        // Tracing: the gateway's span, and the request rewritten to carry it upstream. Only
        // recorded (sampled) spans reach the audit record and the decisions made under them.
        let (message, span) = match &self.opts.trace {
            Some(propagator) => {
                let (message, span) = propagator.start(message);
                (message, Some(span).filter(|s| s.sampled))
            }
            None => (message, None),
        };
        let method = message.method().unwrap_or("").to_owned();
        let name = target_name(&message);
        // The digest is computed by the writer thread from the message's shared bytes.
        let arguments = message.params().map(|_| {
            let part = if method == "tools/call" {
                warden_audit::Part::Arguments
            } else {
                warden_audit::Part::Params
            };
            log.content_deferred(message.bytes().clone(), part)
        });
        let sensitive =
            method == "tools/call" && name.as_deref().is_some_and(|n| log.is_sensitive_tool(n));
        let pending = PendingCall(Some(Box::new(CallData {
            log,
            started,
            session: session.map(|s| s.id().as_str().to_owned()),
            principal: principal.subject.to_string(),
            upstream: self.upstream_of(&method, name.as_deref()),
            method,
            name,
            arguments,
            sensitive,
            span,
        })));
        let handled = self.handle_request(session, routes, principal, message);
        let reply = match span {
            Some(span) => warden_trace::in_span(span, handled).await,
            None => handled.await,
        };
        match reply {
            Reply::Stream(s) => Reply::Stream(s.audited(pending)),
            // A request always gets a stream; nothing to finish otherwise.
            other => other,
        }
    }

    /// The upstream a request is routed to, when it can be told without I/O.
    fn upstream_of(&self, method: &str, name: Option<&str>) -> Option<String> {
        if self.opts.transparent {
            return self.upstreams.first().map(|u| u.name.clone());
        }
        let kind = match method {
            "tools/call" => crate::dispatch::Item::Tool,
            "prompts/get" => crate::dispatch::Item::Prompt,
            _ => return None,
        };
        self.route_name(name?, kind).map(|(u, _)| u.name.clone())
    }

    /// Records a message an upstream sent toward the client (notification or server request).
    pub(crate) fn audit_message(&self, message: &Message, session: &Session, upstream: &str) {
        let Some(log) = &self.opts.audit else { return };
        let event = Event::Message {
            session: Some(session.id().as_str().to_owned()),
            direction: warden_audit::Direction::ToClient,
            method: message.method().unwrap_or("").to_owned(),
            upstream: Some(upstream.to_owned()),
            kind: if message.is_request() {
                "request"
            } else {
                "notification"
            }
            .to_owned(),
            params: Some(
                log.content_deferred(message.bytes().clone(), warden_audit::Part::Message),
            ),
        };
        if let Err(e) = log.record(event) {
            tracing::error!(error = %e, "upstream message could not be audited");
        }
    }

    /// Records a session's start.
    pub(crate) fn audit_session_start(&self, session: &Session) {
        let Some(log) = &self.opts.audit else { return };
        let p = session.principal();
        let event = Event::SessionStart {
            session: session.id().as_str().to_owned(),
            principal: p.subject.to_string(),
            auth: snake_case(&format!("{:?}", p.method)),
            face: match session.face() {
                crate::Face::Stdio => "stdio",
                crate::Face::Http => "http",
            }
            .to_owned(),
        };
        if let Err(e) = log.record(event) {
            tracing::error!(error = %e, "session start could not be audited");
        }
    }

    /// Records a session's end.
    pub(crate) fn audit_session_end(&self, session: &Session, reason: &str) {
        let Some(log) = &self.opts.audit else { return };
        let event = Event::SessionEnd {
            session: session.id().as_str().to_owned(),
            principal: session.principal().subject.to_string(),
            reason: reason.to_owned(),
            duration_ms: crate::session::now_ms().saturating_sub(session.created_ms()),
        };
        if let Err(e) = log.record(event) {
            tracing::error!(error = %e, "session end could not be audited");
        }
    }

    /// Records every upstream that is running (call once after [`Gateway::start`]).
    pub fn audit_upstreams_started(&self) {
        let Some(log) = &self.opts.audit else { return };
        for u in &self.upstreams {
            let event = Event::Upstream {
                upstream: u.name.clone(),
                action: "started".into(),
                pid: u.conn().pid(),
                exit_code: None,
                detail: None,
            };
            if let Err(e) = log.record(event) {
                tracing::error!(error = %e, "upstream start could not be audited");
            }
        }
    }
}

impl ReplyStream {
    /// Attaches the pending record of the call this stream answers.
    pub(crate) fn audited(mut self, pending: PendingCall) -> Self {
        self.audit = Some(pending);
        self
    }
}
