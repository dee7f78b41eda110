//! Sessions, principals, protocol eras and routing between one client face and its upstreams.
//!
//! Position on the request path: the downstream transport (stdio for `run`, Streamable HTTP for
//! `serve`) hands every decoded client message to [`Handler::handle`] together with the
//! [`Session`] it belongs to (or none, for a stateless 2026-07-28 request). The session layer
//! runs the guard pipeline, picks the upstream, bridges protocol eras, multiplexes request ids
//! and returns the messages the client must receive for that exchange.
//!
//! This crate never frames bytes and never listens on a socket.
#![forbid(unsafe_code)]

pub mod audit;
pub mod bridge;
mod dispatch;
pub mod gateway;
mod guarded;
pub mod mrtr;
pub mod naming;
pub mod params;
pub mod session;
pub mod supervise;

use futures::future::BoxFuture;
use tokio::sync::mpsc;
use warden_guard::{Permits, Principal};
use warden_proto::Message;

pub use gateway::{
    EraPreference, Gateway, GatewayError, GatewayOptions, MAX_SERVER_REQUESTS, Prelaunch,
    PrelaunchResult, Transport, UpstreamDef,
};
pub use params::ParamHeader;
pub use session::{Session, SessionError, SessionId, SessionRecord, UNSOLICITED_QUEUE};
pub use supervise::{Policy as LifecyclePolicy, Unhealthy};

/// What the client receives for one message it sent.
#[derive(Debug)]
pub enum Reply {
    /// Nothing to send back (the message was a notification or a response; HTTP answers 202).
    Accepted,
    /// Messages for the client about this request: zero or more notifications or
    /// server-initiated requests, then exactly one response carrying the client's own id.
    Stream(ReplyStream),
}

/// The messages of one exchange, in the order the client must see them.
pub struct ReplyStream {
    inner: ReplyInner,
    /// The audit record of the call this stream answers, finished with its response.
    audit: Option<audit::PendingCall>,
    /// What the request guards hold (concurrency slots) until the exchange ends.
    held: Option<Box<Permits>>,
    /// What the gateway does when the response passes (or the stream is dropped before it).
    after: Option<Box<AfterResponse>>,
}

/// What an exchange does when it ends: `then` runs once, with `Some(true)` for a result,
/// `Some(false)` for an error, `None` when the exchange ended without a response (abandoned,
/// cancelled, its stream dropped); `order` (a lock ordering this exchange against others of
/// its kind) is released after it.
pub(crate) struct AfterResponse {
    #[expect(dead_code, reason = "held for its drop: the lock is released with it")]
    pub(crate) order: Option<tokio::sync::OwnedMutexGuard<()>>,
    pub(crate) then: Option<Box<dyn FnOnce(Option<bool>) + Send>>,
}

impl AfterResponse {
    fn finish(mut self, outcome: Option<bool>) {
        if let Some(then) = self.then.take() {
            then(outcome);
        }
    }
}

impl Drop for AfterResponse {
    fn drop(&mut self) {
        if let Some(then) = self.then.take() {
            then(None);
        }
    }
}

impl Reply {
    /// Keeps `held` (what the request guards took) until the reply's exchange ends.
    pub(crate) fn holding(self, held: Permits) -> Reply {
        match self {
            Reply::Stream(mut s) if !held.is_empty() => {
                s.held = Some(Box::new(held));
                Reply::Stream(s)
            }
            other => other,
        }
    }

    /// Runs `after` when the reply's exchange ends (a reply without a stream: at once, as an
    /// exchange without a response).
    pub(crate) fn after(self, after: AfterResponse) -> Reply {
        match self {
            Reply::Stream(mut s) => {
                s.after = Some(Box::new(after));
                Reply::Stream(s)
            }
            other => other,
        }
    }
}

enum ReplyInner {
    /// Fed by another task.
    Channel(mpsc::Receiver<Message>),
    /// One message, already known (a `Message` is one pointer).
    Single(Option<Message>),
    /// An upstream exchange, driven by whoever polls the stream (no task of its own).
    Pump(Box<dispatch::Pump>),
}

impl std::fmt::Debug for ReplyStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.inner {
            ReplyInner::Channel(_) => "channel",
            ReplyInner::Single(_) => "single",
            ReplyInner::Pump(_) => "exchange",
        };
        f.debug_struct("ReplyStream").field("kind", &kind).finish()
    }
}

impl ReplyStream {
    /// Wraps a receiver; the sender side must end with the response.
    pub fn new(rx: mpsc::Receiver<Message>) -> Self {
        Self::of(ReplyInner::Channel(rx))
    }

    /// A stream holding only `response`.
    pub fn single(response: Message) -> Self {
        Self::of(ReplyInner::Single(Some(response)))
    }

    pub(crate) fn pump(pump: dispatch::Pump) -> Self {
        Self::of(ReplyInner::Pump(Box::new(pump)))
    }

    fn of(inner: ReplyInner) -> Self {
        Self {
            inner,
            audit: None,
            held: None,
            after: None,
        }
    }

    /// The next message; `None` after the response (or if the exchange was abandoned).
    ///
    /// Dropping the stream before the response abandons the exchange (the upstream call is
    /// cancelled).
    pub async fn next(&mut self) -> Option<Message> {
        let next = match &mut self.inner {
            ReplyInner::Channel(rx) => rx.recv().await,
            ReplyInner::Single(m) => m.take(),
            // Response guards run here: under the call's trace span, when it has one.
            ReplyInner::Pump(p) => match self.audit.as_ref().and_then(audit::PendingCall::span) {
                Some(span) => warden_trace::in_span(span, p.next()).await,
                None => p.next().await,
            },
        };
        match &next {
            Some(m) if !m.is_response() => next,
            // The response (or the end): the exchange is over.
            _ => {
                self.held = None;
                let next = match self.audit.take() {
                    Some(audit) => audit.finish(next).await,
                    None => next,
                };
                if let Some(after) = self.after.take() {
                    after.finish(next.as_ref().map(|m| m.result().is_some()));
                }
                next
            }
        }
    }
}

/// How a client reaches the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Face {
    /// One client on stdin/stdout (`run`).
    Stdio,
    /// Streamable HTTP (`serve`).
    Http,
}

/// The interface the downstream transports call. Implemented by the gateway.
pub trait Handler: Send + Sync + 'static {
    /// Opens a session for `principal` (a stdio connection, or a legacy HTTP session before its
    /// `initialize` is handled). Fails when the session table is full.
    fn open_session(
        &self,
        principal: Principal,
        face: Face,
    ) -> BoxFuture<'_, Result<std::sync::Arc<Session>, SessionError>>;

    /// Looks up `principal`'s live legacy HTTP session by id, in the session store (so a
    /// session created by another replica is found). Unknown, expired and ended sessions, and
    /// sessions of another caller or of another face, are `Ok(None)` (the HTTP face answers
    /// 404). Only the owner's lookup refreshes a session: a caller presenting someone else's
    /// id neither keeps it alive nor makes this replica adopt it. `Err` means the store could
    /// not answer (503).
    fn find_session<'a>(
        &'a self,
        id: &'a str,
        principal: &'a Principal,
    ) -> BoxFuture<'a, Result<Option<std::sync::Arc<Session>>, SessionError>>;

    /// Ends a session and releases its upstream state.
    fn end_session<'a>(&'a self, session: &'a Session) -> BoxFuture<'a, ()>;

    /// Handles one decoded client message. `session` is `None` for a stateless request.
    fn handle<'a>(
        &'a self,
        session: Option<&'a std::sync::Arc<Session>>,
        principal: &'a Principal,
        message: Message,
    ) -> BoxFuture<'a, Reply>;

    /// The `x-mcp-header` annotations of the tool the client knows as `tool` (2026-07-28,
    /// SEP-2243): the Streamable HTTP face checks a `tools/call`'s `Mcp-Param-{Name}` headers
    /// against its arguments with them. `None` when the tool is unknown, has no annotations, or
    /// has invalid ones; the face then checks no `Mcp-Param-*` header, which is safe because
    /// only the body is ever acted on or forwarded, never those headers.
    fn param_headers(&self, tool: &str) -> Option<std::sync::Arc<[ParamHeader]>> {
        let _ = tool;
        None
    }
}

#[cfg(test)]
mod future_sizes {
    //! Every request's future is copied at its largest branch's size (into its task, into a
    //! box, on each state change), so rare branches are boxed where they are awaited
    //! (docs/performance.md). These bounds keep a new large branch from undoing that unseen:
    //! the request futures were 15.5 KB (`handle`) and 10 KB (`ReplyStream::next`) before.

    use std::future::Future;
    use std::sync::Arc;

    use warden_guard::Principal;
    use warden_proto::Message;

    use crate::gateway::{Gateway, Routes};
    use crate::{ReplyStream, Session};

    /// Size of the future `f` returns, without calling it.
    fn request_future<'a, Fut: Future>(
        _: impl FnOnce(
            &'a Gateway,
            Option<&'a Arc<Session>>,
            Arc<Routes>,
            &'a Principal,
            Message,
        ) -> Fut,
    ) -> usize {
        std::mem::size_of::<Fut>()
    }

    fn next_future<'a, Fut: Future>(_: impl FnOnce(&'a mut ReplyStream) -> Fut) -> usize {
        std::mem::size_of::<Fut>()
    }

    #[test]
    fn request_futures_stay_small() {
        let audited = request_future(Gateway::audited_request);
        let handled = request_future(Gateway::handle_request);
        let next = next_future(ReplyStream::next);
        eprintln!(
            "audited_request {audited} B, handle_request {handled} B, ReplyStream::next {next} B"
        );
        assert!(
            audited <= 6 * 1024,
            "audited_request future: {audited} bytes"
        );
        assert!(
            handled <= 5 * 1024,
            "handle_request future: {handled} bytes"
        );
        assert!(next <= 3 * 1024, "ReplyStream::next future: {next} bytes");
    }
}
