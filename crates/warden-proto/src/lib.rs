//! JSON-RPC 2.0 and MCP message view, framing and limits.
//!
//! This crate sits at both ends of the request path: every byte a client or an upstream server
//! sends is framed ([`framing`], [`sse`]) and decoded ([`decode`]) here before anything else
//! looks at it. Decoding is strict on purpose: duplicate object keys, invalid UTF-8, nesting
//! deeper than the configured limit and oversized messages are rejected, because a parser
//! differential between the gateway and a server is a policy bypass.
//!
//! A decoded [`Message`] keeps the original bytes next to the parsed value, so a message that
//! no guard rewrites is forwarded byte for byte (unknown fields, vendor `_meta` keys and
//! extension payloads survive unchanged).
//!
//! This crate performs no I/O and spawns nothing.
#![forbid(unsafe_code)]

pub mod error;
pub mod fast_map;
pub mod framing;
pub mod jsonrpc;
pub mod lookup;
pub mod mcp;
pub mod sse;
mod strict;

pub use error::{DecodeError, ErrorCode};
pub use jsonrpc::{Id, Kind, Message};
pub use lookup::Field;
pub use strict::{
    DEFAULT_MAX_DEPTH, DEFAULT_MAX_MESSAGE_BYTES, Limits, decode, decode_lazy, parse_value,
    split_batch,
};
