//! The tamper-evident audit log of mcp-warden.
//!
//! Position on the request path: beside it, never in it. The session layer builds typed
//! [`AuditRecord`]s (sessions, authentication attempts, calls with their latency and outcome,
//! guard decisions, upstream lifecycle, configuration) and hands them to an [`AuditLog`]
//! handle; a writer thread behind a bounded queue chains, writes and syncs them. Records that
//! describe a refusal (and, by policy, sensitive calls) are on disk before the client learns
//! the outcome.
//!
//! The file is JSON Lines. Each line carries the SHA-256 chain hash of its record and an
//! HMAC-SHA-256 tag of that hash under a key kept in the data directory ([`chain`]); signed
//! Ed25519 checkpoints let a verifier without the secret key check a range ([`verify`]).
//! Rotation by size or age keeps one chain across files.
//!
//! This crate must never write a record through `tracing`, put a key or a record's content
//! into an error or a log line, or block the caller on the disk beyond the configured bound.
//! It does not decide what is secret: full capture requires a [`Redactor`].
#![forbid(unsafe_code)]

pub mod chain;
mod compact;
mod error;
mod file;
pub mod keys;
pub mod query;
pub mod record;
pub mod verify;
mod writer;

pub use error::AuditError;
pub use file::rotated_files;
pub use keys::{AuditKeys, KeyError, PublicKey};
pub use record::{
    AuditRecord, AuthOutcome, Content, Direction, Event, Part, Status, TraceRef, Verdict,
};
pub use writer::{
    AuditLog, AuditOptions, AuditTap, Capture, DEFAULT_LINGER, FlushPolicy, OnFull, Redactor,
    glob_match,
};

/// File name of the key file inside the data directory.
pub const KEY_FILE_NAME: &str = "audit.key";
