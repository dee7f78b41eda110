//! Typed audit records: what the gateway reports, before it is chained and written.
//!
//! Every record carries a timestamp (`ts`, RFC 3339 UTC, microseconds) and one [`Event`],
//! serialised flat with its kind under `event`. Arguments and results appear as a [`Content`]:
//! size and keyed digest by default (data minimisation, DATA-1); the redacted value as well
//! only under full capture.

use serde::Serialize;
use serde_json::Value;

/// One audit record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRecord {
    /// When the event happened (RFC 3339, UTC).
    pub ts: String,
    /// What happened.
    #[serde(flatten)]
    pub event: Event,
}

impl AuditRecord {
    /// A record of `event` stamped with the current wall-clock time.
    pub fn now(event: Event) -> Self {
        Self {
            ts: timestamp(std::time::SystemTime::now()),
            event,
        }
    }
}

/// RFC 3339 UTC with microseconds.
pub fn timestamp(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

/// Which way a message travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Client toward upstream.
    ToUpstream,
    /// Upstream toward client.
    ToClient,
}

/// How a call ended for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// A result.
    Result,
    /// A JSON-RPC error (from the upstream or the gateway).
    Error,
    /// Refused by a guard.
    Denied,
    /// Held for a human decision.
    Held,
    /// The exchange ended without a response (client gone, cancelled).
    Abandoned,
}

/// A guard's decision, as audited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Refused.
    Deny,
    /// Held for approval.
    Hold,
    /// Rewritten (for example redacted).
    Rewrite,
    /// The guard could not decide and its fail-open mode let the message through.
    Skip,
    /// The guard let the message through unchanged but found something (a report or warn
    /// mode: an injection reported, a pinned definition that changed under `warn`).
    Report,
}

/// Result of an authentication attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthOutcome {
    /// Accepted.
    Success,
    /// Refused.
    Failure,
}

/// An argument or result, minimised.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Content {
    /// Size of its compact JSON encoding, in bytes.
    pub bytes: u64,
    /// HMAC-SHA-256 of that encoding under the log's content key (hex): equal values give
    /// equal digests within one log, but nobody without the key can test a guess.
    pub hmac: String,
    /// The value itself, with secrets redacted (full capture only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// Bytes still to be measured and digested by the writer (see
    /// [`crate::AuditLog::content_deferred`]); never serialised.
    #[serde(skip)]
    pub(crate) deferred: Option<Deferred>,
}

impl Content {
    /// A measured and digested content: `bytes` long, with `hmac` (hex), and the redacted
    /// value under full capture.
    pub fn new(bytes: u64, hmac: String, value: Option<Value>) -> Self {
        Self {
            bytes,
            hmac,
            value,
            deferred: None,
        }
    }
}

/// Which part of a JSON-RPC message a deferred [`Content`] stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The whole message, as it travelled.
    Message,
    /// Its `params`, re-encoded compactly.
    Params,
    /// Its `params.arguments` (or `params` when it has none), re-encoded compactly.
    Arguments,
}

/// A message's bytes (a cheap reference-counted handle) and the part of it to digest.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Deferred {
    pub(crate) bytes: bytes::Bytes,
    pub(crate) part: Part,
}

impl Event {
    /// Every content of this event that the writer still has to digest.
    pub(crate) fn contents_mut(&mut self) -> impl Iterator<Item = &mut Content> {
        let (a, b) = match self {
            Event::Call {
                arguments, result, ..
            } => (arguments.as_mut(), result.as_mut()),
            Event::Message { params, .. } => (params.as_mut(), None),
            Event::Config { digest, .. } => (digest.as_mut(), None),
            _ => (None, None),
        };
        a.into_iter().chain(b)
    }
}

/// A span of an OpenTelemetry trace (W3C ids, lowercase hex): ties a record to the trace
/// exported for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TraceRef {
    /// Trace id (32 hex digits).
    pub trace_id: String,
    /// Span id (16 hex digits).
    pub span_id: String,
    /// The parent span (the client's), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_span_id: Option<String>,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[expect(
    clippy::large_enum_variant,
    reason = "`Call` is the most frequent record: boxing it would cost an allocation per call"
)]
pub enum Event {
    /// The gateway started writing this log.
    GatewayStart {
        /// `run` or `serve`.
        mode: String,
        /// The gateway's version.
        version: String,
        /// Process id.
        pid: u32,
    },
    /// The gateway stopped cleanly.
    GatewayStop {
        /// Process id.
        pid: u32,
    },
    /// A client session opened.
    SessionStart {
        /// Session id.
        session: String,
        /// Principal subject.
        principal: String,
        /// How the principal was established.
        auth: String,
        /// `stdio` or `http`.
        face: String,
    },
    /// A client session ended.
    SessionEnd {
        /// Session id.
        session: String,
        /// Principal subject.
        principal: String,
        /// `closed`, `deleted`, `expired` or `shutdown`.
        reason: String,
        /// Lifetime in milliseconds.
        duration_ms: u64,
    },
    /// An authentication attempt.
    Auth {
        /// The principal the credential named, when it could be read.
        #[serde(skip_serializing_if = "Option::is_none")]
        principal: Option<String>,
        /// `bearer`, `api_key`, ...
        method: String,
        /// Accepted or refused.
        outcome: AuthOutcome,
        /// Why it was refused (never the credential).
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// Remote address, when known.
        #[serde(skip_serializing_if = "Option::is_none")]
        remote: Option<String>,
    },
    /// One request crossing the gateway and its response.
    Call {
        /// Session id (none for a stateless request).
        #[serde(skip_serializing_if = "Option::is_none")]
        session: Option<String>,
        /// Principal subject.
        principal: String,
        /// Which way the request travelled.
        direction: Direction,
        /// JSON-RPC method.
        method: String,
        /// Tool or prompt name, or resource URI.
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// Upstream that served it.
        #[serde(skip_serializing_if = "Option::is_none")]
        upstream: Option<String>,
        /// Time from the request reaching the gateway to the response leaving it.
        latency_us: u64,
        /// How it ended.
        status: Status,
        /// JSON-RPC error code, for errors and denials.
        #[serde(skip_serializing_if = "Option::is_none")]
        code: Option<i64>,
        /// The request's `params.arguments` (or `params`).
        #[serde(skip_serializing_if = "Option::is_none")]
        arguments: Option<Content>,
        /// The response's `result`.
        #[serde(skip_serializing_if = "Option::is_none")]
        result: Option<Content>,
        /// The gateway's trace span for this call, when tracing recorded it.
        #[serde(skip_serializing_if = "Option::is_none")]
        trace: Option<Box<TraceRef>>,
    },
    /// A notification (either way) or a server-initiated request.
    Message {
        /// Session id.
        #[serde(skip_serializing_if = "Option::is_none")]
        session: Option<String>,
        /// Which way it travelled.
        direction: Direction,
        /// JSON-RPC method.
        method: String,
        /// Upstream it came from or went to.
        #[serde(skip_serializing_if = "Option::is_none")]
        upstream: Option<String>,
        /// `notification` or `request`.
        kind: String,
        /// Its params.
        #[serde(skip_serializing_if = "Option::is_none")]
        params: Option<Content>,
    },
    /// A guard decided something other than "continue".
    Decision {
        /// Session id.
        #[serde(skip_serializing_if = "Option::is_none")]
        session: Option<String>,
        /// Principal subject.
        principal: String,
        /// Which way the message travelled.
        direction: Direction,
        /// Method of the message (or of the request a response answers).
        #[serde(skip_serializing_if = "Option::is_none")]
        method: Option<String>,
        /// Tool or prompt name, or resource URI.
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// Upstream, when known.
        #[serde(skip_serializing_if = "Option::is_none")]
        upstream: Option<String>,
        /// The guard.
        guard: String,
        /// What it decided.
        verdict: Verdict,
        /// The audit-only detail (already free of secrets: guards never put them there).
        reason: String,
        /// Checklist controls enforced.
        controls: Vec<String>,
        /// Approval ticket, for a hold.
        #[serde(skip_serializing_if = "Option::is_none")]
        ticket: Option<String>,
        /// The trace span of the request being handled, when tracing recorded it.
        #[serde(skip_serializing_if = "Option::is_none")]
        trace: Option<Box<TraceRef>>,
    },
    /// Upstream lifecycle: `started`, `exited`, `restarted`, `health_failed`, `handshake_failed`.
    Upstream {
        /// The upstream.
        upstream: String,
        /// What happened.
        action: String,
        /// Child pid, for stdio upstreams.
        #[serde(skip_serializing_if = "Option::is_none")]
        pid: Option<u32>,
        /// Exit code, for `exited`.
        #[serde(skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        /// Detail (an error message; never a credential).
        #[serde(skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// The configuration in force changed (`loaded` at start, `reloaded` later).
    Config {
        /// What happened.
        action: String,
        /// The configuration file, when there is one.
        #[serde(skip_serializing_if = "Option::is_none")]
        source: Option<String>,
        /// Size and keyed digest of the file's bytes.
        #[serde(skip_serializing_if = "Option::is_none")]
        digest: Option<Content>,
    },
    /// Records that were lost because the queue was full (fail-open).
    Dropped {
        /// How many.
        count: u64,
    },
    /// Bytes of an incomplete last line (a torn write) removed when the log was reopened.
    Recovered {
        /// How many bytes were removed.
        discarded_bytes: u64,
        /// SHA-256 of those bytes (hex), so what was removed can still be named.
        discarded_sha256: String,
    },
    /// A signed checkpoint over the record before it.
    Checkpoint {
        /// Sequence number of the record covered.
        covers_seq: u64,
        /// That record's chain hash (hex).
        covers_hash: String,
        /// Fingerprint of the signing key.
        key: String,
        /// Ed25519 signature (hex).
        sig: String,
    },
    /// The first record of a file that continues a rotated one.
    Continued {
        /// File name of the previous file.
        previous_file: String,
    },
}

impl Event {
    /// True for records that describe a refusal or a hold: they are made durable before the
    /// client learns the outcome.
    pub fn is_denial(&self) -> bool {
        match self {
            Event::Decision { verdict, .. } => matches!(verdict, Verdict::Deny | Verdict::Hold),
            Event::Call { status, .. } => matches!(status, Status::Denied | Status::Held),
            Event::Auth { outcome, .. } => *outcome == AuthOutcome::Failure,
            _ => false,
        }
    }
}
