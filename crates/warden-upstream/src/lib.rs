//! Connections to upstream MCP servers: the server side of the gateway.
//!
//! A [`Connection`] is one stdio child process ([`Connection::spawn_stdio`]) or one Streamable
//! HTTP endpoint ([`Connection::http`]). It sits at the far end of the request path, below the
//! session layer, and knows only what the transport needs: framing, request-id multiplexing,
//! cancellation, SSE resumption, sessions ids and process lifecycle. Era detection,
//! `initialize` and routing belong to the session layer above.
//!
//! Invariants a reviewer can check:
//! - Nothing the upstream sends is forwarded unless it decodes as one strict JSON-RPC
//!   message under the configured [`Limits`](warden_proto::Limits); the rest is logged (name
//!   and size only) and counted ([`Stats`]).
//! - Every channel is bounded and every wait has a timeout; a dead upstream fails every
//!   request in flight at once.
//! - A stdio child runs in its own process group, dies with the gateway (Linux parent-death
//!   signal) and its whole group is SIGKILLed when the last handle is dropped. Spawning (and
//!   the sandbox, when [`StdioSpec::sandbox`] is set) is `warden-sandbox`'s; this crate has
//!   no `unsafe` code.
//! - HTTP redirects are never followed; proxies are not taken from the environment.
//!
//! This crate never decides policy and never logs message bodies above `trace`.
#![forbid(unsafe_code)]

pub mod error;
pub mod headers;
mod http;
mod pending;
mod stats;
mod stdio;
mod stream;
mod sys;

use std::process::ExitStatus;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::mpsc;
use warden_proto::error::error_response;
use warden_proto::{ErrorCode, Id, Message};

pub use error::{CloseReason, Side, UpstreamError};
pub use http::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_REQUEST_TIMEOUT, HttpSpec};
pub use stats::Stats;
pub use stdio::{
    DEFAULT_SHUTDOWN_GRACE, DEFAULT_STDERR_BUDGET, DEFAULT_STDERR_CAP, DEFAULT_STDERR_WINDOW,
    StderrBudget, StderrReport, StdioSpec,
};
pub use stream::{
    CANCEL_REASON_DROPPED, CANCEL_REASON_MAX_DURATION, CANCEL_REASON_TIMEOUT, ResponseStream,
};
/// What the sandbox launcher checks a program against before it runs it.
pub use warden_sandbox::ProgramIdentity;

/// A message from the upstream that belongs to no request it can be tied to (a notification or
/// request outside any request's context, or with several requests in flight on a
/// connection that carries no context, as stdio).
#[derive(Debug)]
pub struct Unsolicited {
    /// The message.
    pub message: Message,
    /// The upstream-side ids of the requests in flight on the connection when it arrived:
    /// the message may be about any of them, and about nothing else. Empty when none was.
    pub in_flight: Vec<Id>,
}

/// Bounds the messages an upstream can queue for a consumer that is slow (or has not taken
/// the receiver yet); further unsolicited messages are dropped and counted.
pub const UNSOLICITED_CHANNEL_CAPACITY: usize = 256;

/// One connection to an upstream. Cheap to clone; the process (stdio) or the standalone
/// stream (HTTP) lives until the last clone is dropped or [`Connection::shutdown`] runs.
#[derive(Clone)]
pub struct Connection {
    inner: Arc<Inner>,
}

enum Inner {
    Stdio(stdio::Handle),
    Http(http::Handle),
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Connection");
        match &*self.inner {
            Inner::Stdio(h) => d.field("transport", &"stdio").field("pid", &h.core.pid()),
            Inner::Http(_) => d.field("transport", &"http"),
        };
        d.field("alive", &self.is_alive()).finish()
    }
}

impl Connection {
    /// Starts a stdio upstream in its own process group.
    pub async fn spawn_stdio(spec: StdioSpec) -> Result<Connection, UpstreamError> {
        let handle = stdio::spawn(spec).await?;
        Ok(Connection {
            inner: Arc::new(Inner::Stdio(handle)),
        })
    }

    /// A Streamable HTTP upstream. Validates the spec; no network I/O until the first request.
    pub fn http(spec: HttpSpec) -> Result<Connection, UpstreamError> {
        let handle = http::connect(spec)?;
        Ok(Connection {
            inner: Arc::new(Inner::Http(handle)),
        })
    }

    /// Sends a request; the returned stream yields related messages, then the response.
    ///
    /// The connection sends the request under its own id (so many callers can share it);
    /// the response in the stream carries that *upstream-side* id
    /// ([`ResponseStream::upstream_id`]) and the caller restores its own with
    /// [`Message::with_id`]. If nothing answers within `timeout` the stream yields
    /// [`UpstreamError::Timeout`] and the request is cancelled upstream.
    pub async fn request(
        &self,
        message: &Message,
        timeout: Duration,
    ) -> Result<ResponseStream, UpstreamError> {
        self.request_with_headers(message, timeout, Vec::new())
            .await
    }

    /// [`Connection::request`] with extra HTTP headers for this one request (the
    /// `Mcp-Param-*` mirrors of a 2026-07-28 `tools/call`); ignored on stdio.
    pub async fn request_with_headers(
        &self,
        message: &Message,
        timeout: Duration,
        headers: Vec<(::http::HeaderName, ::http::HeaderValue)>,
    ) -> Result<ResponseStream, UpstreamError> {
        match &*self.inner {
            Inner::Stdio(h) => h.core.request(message, timeout).await,
            Inner::Http(h) => h.core.request(message, timeout, headers).await,
        }
    }

    /// Sends a notification.
    ///
    /// To cancel a request, drop its [`ResponseStream`] instead of sending
    /// `notifications/cancelled`: the upstream knows the request under another id.
    pub async fn notify(&self, message: &Message) -> Result<(), UpstreamError> {
        match &*self.inner {
            Inner::Stdio(h) => h.core.notify(message).await,
            Inner::Http(h) => h.core.notify(message).await,
        }
    }

    /// Answers a server-initiated request (the message's id is the one the upstream used).
    pub async fn respond(&self, message: &Message) -> Result<(), UpstreamError> {
        match &*self.inner {
            Inner::Stdio(h) => h.core.respond(message).await,
            Inner::Http(h) => h.core.respond(message).await,
        }
    }

    /// Messages the upstream sent that belong to no request the caller made: notifications
    /// and server-to-client requests. stdio: everything not attributed to a request in
    /// flight. HTTP: the standalone GET stream of a legacy session, opened by this call (or
    /// as soon as a session exists) and resumed when the server closes it; a 405 means there
    /// is none. Returns `Some` once. Messages that arrive before the receiver is taken are
    /// kept up to [`UNSOLICITED_CHANNEL_CAPACITY`].
    pub fn take_unsolicited(&self) -> Option<mpsc::Receiver<Unsolicited>> {
        match &*self.inner {
            Inner::Stdio(h) => h.core.take_unsolicited(),
            Inner::Http(h) => h.core.take_unsolicited(),
        }
    }

    /// HTTP only: the protocol revision to send in `MCP-Protocol-Version` from now on (set by
    /// the session layer after `initialize`). A message whose `params._meta` declares
    /// `io.modelcontextprotocol/protocolVersion` is sent with that value instead. No-op on
    /// stdio.
    pub fn set_protocol_version(&self, version: &str) {
        if let Inner::Http(h) = &*self.inner {
            h.core.set_protocol_version(version);
        }
    }

    /// HTTP only: the legacy session id the upstream assigned in its answer to
    /// `initialize` (header `Mcp-Session-Id`).
    pub fn session_id(&self) -> Option<String> {
        match &*self.inner {
            Inner::Stdio(_) => None,
            Inner::Http(h) => h.core.session_id(),
        }
    }

    /// stdio: what the child wrote to stderr, one [`StderrReport`] per window that saw output
    /// (see [`StdioSpec::stderr_budget`]). Returns `Some` once; `None` for HTTP. Reports are
    /// dropped while nobody reads them.
    pub fn take_stderr_reports(&self) -> Option<mpsc::Receiver<StderrReport>> {
        match &*self.inner {
            Inner::Stdio(h) => h.core.take_stderr_reports(),
            Inner::Http(_) => None,
        }
    }

    /// Resolves once this connection is gone: stdio, the child exited, closed its stdout,
    /// stopped reading its stdin, or [`Connection::shutdown`] ran; HTTP, `shutdown` ran (an
    /// unresponsive HTTP upstream is only found by asking it something). Returns the exit
    /// status when a stdio child was reaped.
    pub async fn closed(&self) -> Option<ExitStatus> {
        match &*self.inner {
            Inner::Stdio(h) => h.core.closed().await,
            Inner::Http(h) => {
                h.core.closed().await;
                None
            }
        }
    }

    /// A fresh HTTP connection to the same upstream with no session and no protocol version
    /// (for per-client upstream sessions); it shares the connection pool. `None` for stdio.
    pub fn fork_http(&self) -> Option<Connection> {
        match &*self.inner {
            Inner::Stdio(_) => None,
            Inner::Http(h) => Some(Connection {
                inner: Arc::new(Inner::Http(h.fork())),
            }),
        }
    }

    /// Graceful shutdown; every request in flight fails with [`UpstreamError::Closed`].
    ///
    /// stdio: close stdin, wait `shutdown_grace`, SIGTERM the process group, wait again,
    /// SIGKILL, reap; descendants left in the group are killed once the child is reaped.
    /// HTTP: DELETE the session if there is one (a 405 is fine) and stop the GET stream.
    /// Safe to call more than once and concurrently.
    pub async fn shutdown(&self) {
        match &*self.inner {
            Inner::Stdio(h) => h.core.shutdown().await,
            Inner::Http(h) => h.core.shutdown().await,
        }
    }

    /// Identifies this connection among the gateway's (clones share it; a fork does not): the
    /// ids of [`Unsolicited::in_flight`] are meaningful on one connection only.
    pub fn id(&self) -> usize {
        Arc::as_ptr(&self.inner).cast::<()>() as usize
    }

    /// Resolves once the connection is shut down (stdio: or dies), so that a task reading its
    /// messages ends with it even while it holds a handle to it.
    pub async fn ended(&self) {
        match &*self.inner {
            Inner::Stdio(h) => h.core.ended().await,
            Inner::Http(h) => h.core.ended().await,
        }
    }

    /// False once the process exited, stdout closed, the connection was shut down or (HTTP)
    /// the session expired.
    pub fn is_alive(&self) -> bool {
        match &*self.inner {
            Inner::Stdio(h) => h.core.is_alive(),
            Inner::Http(h) => h.core.is_alive(),
        }
    }

    /// stdio: the pid of the child (also its process group id).
    pub fn pid(&self) -> Option<u32> {
        match &*self.inner {
            Inner::Stdio(h) => Some(h.core.pid()),
            Inner::Http(_) => None,
        }
    }

    /// stdio: how the child exited, once it has been reaped.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        match &*self.inner {
            Inner::Stdio(h) => h.core.exit_status(),
            Inner::Http(_) => None,
        }
    }

    /// Message counters of this connection.
    pub fn stats(&self) -> Stats {
        match &*self.inner {
            Inner::Stdio(h) => h.core.stats(),
            Inner::Http(h) => h.core.stats(),
        }
    }

    /// Requests in flight (sent, not yet answered, failed or cancelled).
    pub fn in_flight(&self) -> usize {
        match &*self.inner {
            Inner::Stdio(h) => h.core.in_flight(),
            Inner::Http(h) => h.core.in_flight(),
        }
    }
}

/// When a request failed because the gateway refused the upstream's response to it (too
/// large, too deep, duplicate keys, invalid JSON or UTF-8), the rule it broke, worded for the
/// client (for example "refused its response: nested deeper than the depth limit").
pub fn refused_response_reason(error: &UpstreamError) -> Option<&'static str> {
    match error {
        UpstreamError::Protocol { reason, .. } if reason.starts_with(pending::REFUSED_PREFIX) => {
            Some(reason)
        }
        _ => None,
    }
}

/// Locks a mutex that is never held across an `.await`; a panic while holding it cannot
/// leave the maps inconsistent, so poisoning is ignored.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The answer to a server-to-client request the gateway had to drop (nobody reads the
/// unsolicited channel, or it is full): the server must not wait for ever.
pub(crate) fn dropped_request_error(id: &Id) -> Message {
    let value = error_response(
        &id.to_value(),
        ErrorCode::InternalError,
        "request dropped by the gateway",
        None,
    );
    Message::from_value(value).expect("an error response is a valid message")
}
