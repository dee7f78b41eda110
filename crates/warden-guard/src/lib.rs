//! The guard pipeline: the closed set of stages every message crosses between the client and the
//! upstream server, in both directions.
//!
//! Position on the request path: after the downstream transport has framed and decoded a message
//! and the session has attached a principal, before the upstream transport forwards it (and the
//! reverse for results and server-initiated traffic). Guards never see a transport: stdio and
//! HTTP share one pipeline.
//!
//! Stages are the variants of [`Stage`]; their order is written once, in [`pipeline`]. A stage
//! without a guard is a pass-through. A guard returns a [`Verdict`]; a denial is an outcome, not an
//! error. `Err(GuardError)` means "could not decide" and the stage's [`FailMode`] applies.
//!
//! This crate performs no I/O.
#![forbid(unsafe_code)]

pub mod pipeline;

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::Value;
use warden_proto::Field;
use warden_proto::{ErrorCode, Message, error::error_response};

pub use pipeline::{Decided, Observer, Outcome, Pipeline, REQUEST_STAGES, RESPONSE_STAGES, Stage};

/// Key of the retry hint in the `data` of a rate-limit error (milliseconds).
pub const RETRY_AFTER_MS: &str = "retryAfterMs";

/// Who is making a request.
///
/// Two principals are the same caller when subject and method are equal; sessions are bound to
/// that pair (see [`Principal::same_caller`]), while roles and scopes may change between tokens
/// of the same caller (a refreshed token with fewer scopes is still the session's owner).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    /// Stable subject identifier (`anonymous` until authentication is configured). For bearer
    /// tokens: `<issuer>#<sub>`, or `client:<issuer>#<client_id>` / `username:<issuer>#<name>`
    /// for tokens without `sub`; for API keys: the key's principal name.
    pub subject: Arc<str>,
    /// How the subject was established.
    pub method: AuthMethod,
    /// Roles or groups (token claims or key metadata), sorted and deduplicated.
    pub roles: Arc<[Arc<str>]>,
    /// OAuth scopes granted to this request, sorted and deduplicated.
    pub scopes: Arc<[Arc<str>]>,
}

/// How a principal was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// No authentication (loopback default).
    Anonymous,
    /// The local user who started `mcp-warden run`.
    LocalProcess,
    /// An OAuth 2.1 bearer token (JWT or introspected opaque token).
    Bearer,
    /// An API key issued by `mcp-warden keys create`.
    ApiKey,
}

impl Principal {
    /// A principal with no roles and no scopes.
    pub fn new(subject: impl Into<Arc<str>>, method: AuthMethod) -> Self {
        Self {
            subject: subject.into(),
            method,
            roles: Arc::from([]),
            scopes: Arc::from([]),
        }
    }

    /// The unauthenticated principal.
    pub fn anonymous() -> Self {
        Self::new("anonymous", AuthMethod::Anonymous)
    }

    /// The local user of a stdio session.
    pub fn local() -> Self {
        Self::new("local", AuthMethod::LocalProcess)
    }

    /// Replaces the roles (sorted, deduplicated).
    pub fn with_roles<I, S>(mut self, roles: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<Arc<str>>,
    {
        self.roles = sorted_set(roles);
        self
    }

    /// Replaces the scopes (sorted, deduplicated).
    pub fn with_scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<Arc<str>>,
    {
        self.scopes = sorted_set(scopes);
        self
    }

    /// True when `other` is the same caller (subject and method), whatever its roles and scopes.
    pub fn same_caller(&self, other: &Principal) -> bool {
        self.subject == other.subject && self.method == other.method
    }

    /// True when the principal holds `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.binary_search_by(|s| (**s).cmp(scope)).is_ok()
    }

    /// True when the principal holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.binary_search_by(|s| (**s).cmp(role)).is_ok()
    }
}

fn sorted_set<I, S>(items: I) -> Arc<[Arc<str>]>
where
    I: IntoIterator<Item = S>,
    S: Into<Arc<str>>,
{
    let mut v: Vec<Arc<str>> = items.into_iter().map(Into::into).collect();
    v.sort();
    v.dedup();
    v.into()
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.subject)
    }
}

/// Which way a message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the client toward an upstream server (requests, notifications, responses to
    /// server-initiated requests).
    ToUpstream,
    /// From an upstream server toward the client (results, notifications, server requests).
    ToClient,
}

/// What a guard sees of one message.
#[derive(Debug)]
pub struct Call<'a> {
    /// The message as decoded (original bytes and parsed value).
    pub message: &'a Message,
    /// Which way it travels.
    pub direction: Direction,
    /// The principal of the session.
    pub principal: &'a Principal,
    /// The client session the message belongs to (its id), when there is one: `None` for
    /// stateless requests and for what belongs to no caller (server instructions).
    pub session: Option<&'a str>,
    /// The upstream the message is routed to or came from, when known.
    pub upstream: Option<&'a str>,
    /// For a response: the method of the request it answers.
    pub request_method: Option<&'a str>,
    /// For a request: what it acts on, as the session resolved it before the guards run
    /// (`None` when the request names nothing the gateway can resolve).
    pub target: Option<&'a Target>,
    /// For a request: where guards leave what they hold until the exchange ends (concurrency
    /// slots). `None` when no exchange follows the message (notifications, responses).
    pub permits: Option<&'a Permits>,
}

impl<'a> Call<'a> {
    /// A call with no upstream, request method, target or permit holder.
    pub fn new(message: &'a Message, direction: Direction, principal: &'a Principal) -> Self {
        Self {
            message,
            direction,
            principal,
            session: None,
            upstream: None,
            request_method: None,
            target: None,
            permits: None,
        }
    }

    /// The tool a `tools/call` toward the upstream names as the client wrote it
    /// (`params.name`); `None` for every other message, and for a call without a name.
    pub fn called_tool(&self) -> Option<&'a str> {
        if self.direction != Direction::ToUpstream || self.message.method() != Some("tools/call") {
            return None;
        }
        self.message.params()?.field("name")?.as_str()
    }
}

/// What a request acts on, resolved by the session layer before the request guards run.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The upstream the request is routed to.
    pub upstream: Arc<str>,
    /// The tool or prompt name at the upstream (before namespacing), for `tools/call` and
    /// `prompts/get`.
    pub name: Option<Arc<str>>,
    /// For `tools/call`: the tool object from the upstream's last `tools/list` (with its
    /// `inputSchema` and `annotations`); `None` when the upstream never listed the tool.
    pub tool: Option<Arc<Value>>,
}

/// Resources guards hold for the lifetime of one exchange, such as a concurrency slot; they
/// are released when the holder is dropped, which the session does when the exchange ends.
#[derive(Default)]
pub struct Permits {
    held: std::sync::Mutex<Vec<Box<dyn std::any::Any + Send>>>,
}

impl Permits {
    /// Keeps `permit` until this holder is dropped.
    pub fn hold(&self, permit: impl std::any::Any + Send) {
        // A poisoned lock only means another guard panicked mid-push; the vector is intact.
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.push(Box::new(permit));
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.held.lock().map(|h| h.is_empty()).unwrap_or(false)
    }
}

impl fmt::Debug for Permits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.held.lock().map(|h| h.len()).unwrap_or(0);
        f.debug_struct("Permits").field("held", &n).finish()
    }
}

/// A guard's decision.
#[derive(Debug)]
pub enum Verdict {
    /// Let the message through unchanged.
    Continue,
    /// Replace the message (later stages see the replacement).
    Rewrite(Message),
    /// Refuse the message.
    Deny(Denial),
    /// Hold the message until a human decides.
    Hold(ApprovalTicket),
    /// Let the message through unchanged, but record what was found (a guard in a report or
    /// warn mode): the pipeline treats it as [`Verdict::Continue`] and tells its observer.
    Report(Report),
}

/// A finding a guard lets through: audited, never shown to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// What was found, for the audit record only: rule ids and locations, never the matched
    /// text (guards must not put content or secrets here).
    pub detail: String,
    /// Checklist controls the finding concerns.
    pub controls: &'static [&'static str],
}

impl Verdict {
    /// `Rewrite` to the message `value`; a value that is not a valid JSON-RPC message (which a
    /// guard editing a decoded message cannot produce) means `guard` could not decide.
    pub fn rewrite(guard: &'static str, value: Value) -> Result<Verdict, GuardError> {
        Message::from_value(value)
            .map(Verdict::Rewrite)
            .map_err(|e| GuardError::Unavailable {
                guard,
                source: Box::new(e),
            })
    }
}

/// A refusal, with a stable client-facing message and an audit-only detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The guard that refused.
    pub guard: &'static str,
    /// The JSON-RPC code the client receives.
    pub code: ErrorCode,
    /// Stable text for the client (no internals, no secrets).
    pub message: String,
    /// Detail for the audit record only.
    pub detail: String,
    /// Checklist controls this refusal enforces.
    pub controls: &'static [&'static str],
    /// When the client may retry (rate limits): sent as `error.data.retryAfterMs`, and as
    /// `Retry-After` with HTTP 429 on the HTTP face.
    pub retry_after: Option<std::time::Duration>,
}

impl Denial {
    /// The JSON-RPC error response for a refused request: the one place denial codes are
    /// chosen.
    pub fn to_jsonrpc(&self, id: &Value) -> Value {
        let mut data = serde_json::json!({ "guard": self.guard });
        if let Some(retry) = self.retry_after {
            // Whole milliseconds, rounded up: retrying earlier would be refused again.
            let ms = u64::try_from(retry.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX);
            data[RETRY_AFTER_MS] = ms.into();
        }
        error_response(id, self.code, &self.message, Some(data))
    }
}

/// A pending human approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalTicket {
    /// Identifier the approver refers to.
    pub id: String,
}

/// A guard could not decide.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// The guard's dependency (a store, a key server) failed.
    #[error("guard `{guard}` could not decide")]
    Unavailable {
        /// The guard.
        guard: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// What the pipeline does when a guard cannot decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailMode {
    /// Refuse the message (the default: a guard that cannot decide must not become a bypass).
    #[default]
    Closed,
    /// Let the message through and record that the guard was skipped.
    Open,
}

/// One guard in one stage.
pub trait Guard: Send + Sync {
    /// Short stable name used in audit records and `check`.
    fn name(&self) -> &'static str;
    /// Checklist control IDs this guard enforces.
    fn controls(&self) -> &'static [&'static str];
    /// What happens when [`Guard::check`] returns an error.
    fn fail_mode(&self) -> FailMode {
        FailMode::Closed
    }
    /// Decides on one message.
    fn check<'a>(&'a self, call: &'a Call<'a>) -> BoxFuture<'a, Result<Verdict, GuardError>>;
    /// Decides on one message without waiting, when the guard can: `Some` must be exactly what
    /// [`Guard::check`] would return for this call, `None` means only `check` can decide. The
    /// pipeline asks this first, so a guard whose decision needs no I/O, or that has nothing to
    /// do for this message, costs no boxed future (several guards see every message).
    fn check_now(&self, call: &Call<'_>) -> Option<Result<Verdict, GuardError>> {
        let _ = call;
        None
    }
}
