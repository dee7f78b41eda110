//! Errors of upstream connections.

use std::fmt;
use std::process::ExitStatus;

/// Which side of the gateway an error comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The upstream server (or the network path to it) failed or misbehaved.
    Upstream,
    /// The gateway itself: misconfiguration or a caller passing the wrong kind of message.
    Internal,
}

/// Why a connection is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The upstream process exited.
    Exited(ExitStatus),
    /// The upstream closed its stdout (the process may still be running).
    OutputClosed,
    /// Writing to the upstream's stdin failed.
    WriteFailed,
    /// [`Connection::shutdown`](crate::Connection::shutdown) was called.
    ShutDown,
    /// An HTTP response stream ended before the response arrived and could not be resumed.
    StreamEnded,
    /// The connection dropped the request without an outcome (it is being torn down).
    Abandoned,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Exited(status) => write!(f, "process exited ({status})"),
            CloseReason::OutputClosed => f.write_str("stdout closed"),
            CloseReason::WriteFailed => f.write_str("writing to stdin failed"),
            CloseReason::ShutDown => f.write_str("connection shut down"),
            CloseReason::StreamEnded => f.write_str("response stream ended before the response"),
            CloseReason::Abandoned => f.write_str("request abandoned by the connection"),
        }
    }
}

/// What can go wrong talking to an upstream MCP server.
///
/// Every variant except [`UpstreamError::Config`] and [`UpstreamError::WrongKind`] is on the
/// upstream side (see [`UpstreamError::side`]).
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The upstream process could not be started.
    #[error("upstream `{name}` failed to start")]
    Spawn {
        /// The upstream's configured name.
        name: String,
        /// Why spawning failed.
        #[source]
        source: std::io::Error,
    },
    /// The process exited or the connection is gone.
    #[error("upstream `{name}` is gone: {reason}")]
    Closed {
        /// The upstream's configured name.
        name: String,
        /// What happened (includes the exit status when the process exited).
        reason: CloseReason,
    },
    /// No response within the request's timeout (a cancellation was sent upstream).
    #[error("upstream did not answer in time")]
    Timeout,
    /// The upstream answered with an HTTP error status and no JSON-RPC error body.
    #[error("upstream `{name}` answered with http status {status}")]
    Http {
        /// The upstream's configured name.
        name: String,
        /// The status code.
        status: http::StatusCode,
    },
    /// The upstream answered 404 to a request carrying a session id: the session must be
    /// re-initialized (only an `initialize` request is accepted on this connection afterwards).
    #[error("upstream session expired")]
    SessionExpired,
    /// The upstream broke the transport's rules.
    #[error("upstream `{name}` violated the protocol: {reason}")]
    Protocol {
        /// The upstream's configured name.
        name: String,
        /// What it did.
        reason: &'static str,
    },
    /// Reading from or writing to the upstream failed.
    #[error("i/o with upstream `{name}` failed")]
    Io {
        /// The upstream's configured name.
        name: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The upstream's specification is unusable (bad URL, bad header).
    #[error("upstream `{name}` is misconfigured: {reason}")]
    Config {
        /// The upstream's configured name.
        name: String,
        /// What is wrong, quoting the offending value's name.
        reason: String,
    },
    /// The caller passed a message of the wrong kind (for example a notification to
    /// [`Connection::request`](crate::Connection::request)).
    #[error("expected a {expected}, got a {actual}")]
    WrongKind {
        /// What the method accepts.
        expected: &'static str,
        /// What it got.
        actual: &'static str,
    },
}

impl UpstreamError {
    /// Which side failed.
    pub fn side(&self) -> Side {
        match self {
            UpstreamError::Config { .. } | UpstreamError::WrongKind { .. } => Side::Internal,
            _ => Side::Upstream,
        }
    }

    pub(crate) fn closed(name: &str, reason: CloseReason) -> UpstreamError {
        UpstreamError::Closed {
            name: name.to_owned(),
            reason,
        }
    }

    pub(crate) fn protocol(name: &str, reason: &'static str) -> UpstreamError {
        UpstreamError::Protocol {
            name: name.to_owned(),
            reason,
        }
    }
}

/// A short, content-free name for a message kind (for [`UpstreamError::WrongKind`]).
pub(crate) fn kind_name(kind: &warden_proto::Kind) -> &'static str {
    match kind {
        warden_proto::Kind::Request => "request",
        warden_proto::Kind::Notification => "notification",
        warden_proto::Kind::Response => "response",
        warden_proto::Kind::Error => "error response",
    }
}

/// Checks that the caller passed the kind of message a method sends.
pub(crate) fn expect_kind(
    message: &warden_proto::Message,
    kind: &warden_proto::Kind,
    expected: &'static str,
) -> Result<(), UpstreamError> {
    if message.kind() == kind {
        Ok(())
    } else {
        Err(UpstreamError::WrongKind {
            expected,
            actual: kind_name(message.kind()),
        })
    }
}
