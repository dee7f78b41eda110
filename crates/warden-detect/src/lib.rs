//! Detection engines shared by the gateway's content guards, `mcp-warden inspect`,
//! `mcp-warden redact` and the scanner: tool poisoning, indirect prompt injection, Unicode
//! tricks, secrets and PII.
//!
//! Position on the request path: none of its own. Guards in `warden-guard` call into it on list
//! results, tool results and server-initiated content; the CLI calls it on files.
//!
//! This crate performs no I/O, never allocates in proportion to anything but its input, and
//! matches in linear time (automata only, no backtracking), with a bound on work per input byte.
#![forbid(unsafe_code)]

pub mod finding;

pub use finding::{Finding, Location, Severity, Verdict};
