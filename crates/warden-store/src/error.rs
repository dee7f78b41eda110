//! The error type shared by all backends.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::Namespace;

/// Why a store operation failed.
///
/// Messages name the namespace, sizes and file paths, never a key or a value: session ids and API
/// key hashes are keys, and values may hold secrets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Writing a new key would exceed the namespace's entry limit ([`crate::Limits`]).
    #[error("namespace `{namespace}` is full: it holds the maximum of {max} entries")]
    Full {
        /// The namespace at its limit.
        namespace: Namespace,
        /// The limit.
        max: usize,
    },

    /// A key is empty or longer than [`crate::MAX_KEY_BYTES`].
    #[error("key in namespace `{namespace}` is {len} bytes; keys must be 1 to {max} bytes")]
    InvalidKey {
        /// The namespace of the key.
        namespace: Namespace,
        /// The key's length in bytes.
        len: usize,
        /// The longest allowed key.
        max: usize,
    },

    /// A value is longer than [`crate::Limits::max_value_bytes`].
    #[error("value for namespace `{namespace}` is {len} bytes, over the limit of {max}")]
    ValueTooLarge {
        /// The namespace written to.
        namespace: Namespace,
        /// The value's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },

    /// A TTL is zero or longer than [`crate::MAX_TTL`].
    #[error("ttl of `{ttl:?}` is out of range; it must be between 1ms and {max:?}")]
    InvalidTtl {
        /// The TTL given.
        ttl: Duration,
        /// The longest allowed TTL.
        max: Duration,
    },

    /// [`crate::Store::incr`] found a value that is not a decimal `i64`.
    #[error("value in namespace `{namespace}` is not a decimal 64-bit counter")]
    NotACounter {
        /// The namespace of the counter.
        namespace: Namespace,
    },

    /// [`crate::Store::incr`] would leave the `i64` range.
    #[error("counter in namespace `{namespace}` would overflow")]
    Overflow {
        /// The namespace of the counter.
        namespace: Namespace,
    },

    /// Reading or writing the store's files failed.
    #[error("store i/o failed on `{path}`")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// The store file holds data that is neither a valid record nor a torn final write.
    ///
    /// The store refuses to open rather than drop committed state. Restore the file from a backup,
    /// or move it aside to start empty.
    #[error("store file `{path}` is corrupt at byte {offset}: {reason}")]
    Corrupt {
        /// The store file.
        path: PathBuf,
        /// Where the unreadable data starts.
        offset: u64,
        /// What is wrong there.
        reason: &'static str,
    },

    /// Another process has the store directory open.
    #[error("store directory `{path}` is in use by another process")]
    Locked {
        /// The store directory.
        path: PathBuf,
    },

    /// An earlier `fsync` failed, so what is on disk is unknown; writes are refused until the
    /// store is reopened (which re-reads the file).
    #[error("store at `{path}` refuses writes after a failed sync; reopen it")]
    Poisoned {
        /// The store file.
        path: PathBuf,
    },

    /// The blocking task that performs file I/O panicked or was cancelled.
    #[error("store worker task failed")]
    Worker(#[source] tokio::task::JoinError),
}
