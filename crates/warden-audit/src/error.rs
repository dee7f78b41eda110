//! Errors of the audit log. Messages name files, never keys or record contents.

use std::path::PathBuf;

use crate::keys::KeyError;

/// Errors opening or writing the audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The key file could not be loaded or created.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// The log file could not be opened, locked, read or written.
    #[error("cannot write audit log {path}")]
    Io {
        /// The log file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The last complete record of an existing log cannot be read, so the chain cannot be
    /// continued.
    #[error(
        "audit log {path}: the last record is unreadable; run `mcp-warden audit verify` on it and move it aside"
    )]
    BrokenTail {
        /// The log file.
        path: PathBuf,
    },
    /// The log holds fewer records than were written: its head file (or this writer) has seen
    /// a later record than the last one left. Records were removed; the chain is not
    /// continued over the gap.
    #[error(
        "audit log {path}: records up to sequence {written} were written but the log ends at {found}; run `mcp-warden audit verify` on it and move it aside"
    )]
    Truncated {
        /// The log file.
        path: PathBuf,
        /// The last sequence number known to have been written.
        written: u64,
        /// The last sequence number the log holds (`None`: none).
        found: String,
    },
    /// The queue stayed full for longer than allowed (fail-closed).
    #[error("audit queue is full")]
    QueueFull,
    /// The record was not confirmed on disk in time, or the write failed.
    #[error("audit record could not be made durable")]
    NotDurable,
    /// The writer has stopped.
    #[error("audit log is closed")]
    Closed,
    /// The writer thread could not be started.
    #[error("cannot start the audit writer thread")]
    Thread(#[source] std::io::Error),
    /// Full capture was requested without a redactor.
    #[error("full capture of arguments and results needs a redactor")]
    NoRedactor,
}
