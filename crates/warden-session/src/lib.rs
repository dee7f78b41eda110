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

pub mod bridge;
mod dispatch;
pub mod gateway;
pub mod mrtr;
pub mod naming;
pub mod params;
pub mod session;

use futures::future::BoxFuture;
use tokio::sync::mpsc;
use warden_guard::Principal;
use warden_proto::Message;

pub use gateway::{EraPreference, Gateway, GatewayError, GatewayOptions, Transport, UpstreamDef};
pub use params::ParamHeader;
pub use session::{Session, SessionError, SessionId};

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
#[derive(Debug)]
pub struct ReplyStream {
    rx: mpsc::Receiver<Message>,
}

impl ReplyStream {
    /// Wraps a receiver; the sender side must end with the response.
    pub fn new(rx: mpsc::Receiver<Message>) -> Self {
        Self { rx }
    }

    /// A stream holding only `response`.
    pub fn single(response: Message) -> Self {
        let (tx, rx) = mpsc::channel(1);
        // Capacity 1 and a fresh channel: this send cannot fail.
        let _ = tx.try_send(response);
        Self { rx }
    }

    /// The next message; `None` after the response (or if the exchange was abandoned).
    pub async fn next(&mut self) -> Option<Message> {
        self.rx.recv().await
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
    ) -> Result<std::sync::Arc<Session>, SessionError>;

    /// Looks up a live legacy HTTP session by id. Unknown, expired and ended sessions are
    /// `None` (the HTTP face answers 404).
    fn find_session(&self, id: &str) -> Option<std::sync::Arc<Session>>;

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
