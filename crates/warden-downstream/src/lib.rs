//! Client-facing transports of the gateway: stdio for `mcp-warden run` and the Streamable HTTP
//! server for `mcp-warden serve`.
//!
//! Position on the request path: first and last. Bytes from a client are framed here (newline
//! framing on stdio, one POST body on HTTP), decoded strictly with [`warden_proto::decode`] and
//! handed to a [`warden_session::Handler`] together with the session and principal they belong
//! to; every message of the reply goes back out on the same transport. Nothing else in the
//! gateway sees a socket or a pipe toward the client.
//!
//! What this crate must never do: write anything but protocol messages to stdout in `run` mode,
//! log a message body above `trace`, trust a header the body contradicts, reveal whether a
//! session id exists to a principal that does not own it, or buffer without bound (every queue
//! is a bounded channel, every replay buffer has a size limit).
#![forbid(unsafe_code)]

mod error;
pub mod http;
pub mod stdio;

pub use error::DownstreamError;
pub use http::{BoundServer, HttpOptions, TlsFiles, bind_http, serve_http};
pub use stdio::{StdioOptions, serve_stdio_with};
