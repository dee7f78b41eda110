//! Errors of the downstream transports.

use std::net::SocketAddr;
use std::path::PathBuf;

use warden_session::SessionError;

/// Why a downstream transport could not start or had to stop.
///
/// Problems with single messages or requests are answered on the wire (a JSON-RPC error or an
/// HTTP status) and never surface here.
#[derive(Debug, thiserror::Error)]
pub enum DownstreamError {
    /// The HTTP listener could not be bound.
    #[error("failed to listen on `{addr}`")]
    Bind {
        /// The requested address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP options are inconsistent.
    #[error("invalid http options: {reason}")]
    Options {
        /// What is wrong.
        reason: String,
    },
    /// A TLS certificate or key file could not be read.
    #[error("failed to read tls file `{}`", path.display())]
    TlsFile {
        /// The file.
        path: PathBuf,
        /// The OS or PEM error.
        #[source]
        source: std::io::Error,
    },
    /// A TLS file holds no usable certificate or key.
    #[error("no {what} found in `{}`", path.display())]
    TlsMissing {
        /// `certificate` or `private key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// rustls refused the certificate and key.
    #[error("invalid tls configuration")]
    Tls {
        /// rustls's reason.
        #[source]
        source: rustls::Error,
    },
    /// The stdio session could not be opened.
    #[error("failed to open the stdio session")]
    Session {
        /// The session layer's reason.
        #[source]
        source: SessionError,
    },
    /// Reading from the client (stdin) failed.
    #[error("failed to read from the client")]
    Read {
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Writing to the client (stdout) failed.
    #[error("failed to write to the client")]
    Write {
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}
