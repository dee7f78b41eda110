//! Why the alert engine could not start.

use std::path::PathBuf;

/// Why [`crate::Alerts::start`] failed.
#[derive(Debug, thiserror::Error)]
pub enum AlertsError {
    /// The alert log file could not be opened.
    #[error("cannot open the alert log file `{}`", path.display())]
    LogFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The webhook URL is not a request target the client can use.
    #[error("the alert webhook url cannot be used")]
    Client(#[source] warden_http::Error),
    /// `ca_file` could not be used as a set of trust anchors.
    #[error("alerts.webhook.ca_file: {0}")]
    CaFile(String),
    /// The alert thread or its runtime could not be started.
    #[error("cannot start the alert thread")]
    Thread(#[source] std::io::Error),
}
