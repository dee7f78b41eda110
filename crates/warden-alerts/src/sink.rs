//! Where alerts go: the log (a `warn` line, and optionally a JSON Lines file) and a webhook.
//!
//! Sinks run on the alert thread, never on the audit writer's: a slow or dead webhook delays
//! later alerts (each attempt bounded by its timeout, retries bounded), and once the queue in
//! front of the sinks is full, new alerts are dropped and counted ([`crate::Alerts`]).

use std::fmt;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ring::hmac;
use url::Url;
use warden_config::WebhookConfig;

use crate::alert::Alert;
use crate::error::AlertsError;

/// Header carrying `sha256=<hex>`: HMAC-SHA-256 of the request body under the webhook secret.
pub const SIGNATURE_HEADER: &str = "x-warden-signature";
/// Header carrying the alert's id (also in the body), for receivers that deduplicate retries.
pub const ALERT_ID_HEADER: &str = "x-warden-alert-id";
/// Wait before the first retry; doubles with each retry.
const BACKOFF_BASE: Duration = Duration::from_millis(250);
/// Longest wait between two attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Time to open a connection to the receiver (within the attempt's timeout).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The webhook signing secret, resolved from its reference. `Debug` shows nothing.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// A secret holding `bytes`.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// `sha256=<hex>` of `body` under `secret`: what [`SIGNATURE_HEADER`] carries.
pub fn signature(secret: &Secret, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, &secret.0);
    format!("sha256={}", hex(hmac::sign(&key, body).as_ref()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The log sink: one `warn` line per alert, and a line in `file` when configured.
#[derive(Debug)]
pub struct LogSink {
    file: Option<(PathBuf, File)>,
}

impl LogSink {
    /// A log sink, appending to `file` (created 0600) when given.
    pub fn open(file: Option<&Path>) -> Result<Self, AlertsError> {
        let file = match file {
            None => None,
            Some(path) => {
                use std::os::unix::fs::OpenOptionsExt as _;
                let f = std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|source| AlertsError::LogFile {
                        path: path.to_path_buf(),
                        source,
                    })?;
                Some((path.to_path_buf(), f))
            }
        };
        Ok(Self { file })
    }

    fn deliver(&mut self, alert: &Alert) {
        tracing::warn!(
            alert = %alert.id,
            rule = alert.rule,
            severity = alert.severity,
            principal = alert.principal.as_deref(),
            session = alert.session.as_deref(),
            upstream = alert.upstream.as_deref(),
            remote = alert.remote.as_deref(),
            tool = alert.tool.as_deref(),
            count = alert.count,
            window_secs = alert.window_secs,
            summary = %alert.summary,
            "security alert"
        );
        if let Some((path, file)) = &mut self.file {
            let mut line = serde_json::to_vec(alert).unwrap_or_default();
            line.push(b'\n');
            if let Err(e) = file.write_all(&line) {
                tracing::error!(path = %path.display(), error = %e, "alert log file write failed");
            }
        }
    }
}

/// The webhook sink: POSTs each alert as JSON, signed when a secret is configured.
pub struct WebhookSink {
    client: warden_http::Client,
    url: Url,
    uri: http::Uri,
    timeout: Duration,
    secret: Option<Secret>,
    retries: u32,
}

impl fmt::Debug for WebhookSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a token in its path (many chat webhooks do): show the host only.
        f.debug_struct("WebhookSink")
            .field("host", &self.url.host_str())
            .field("signed", &self.secret.is_some())
            .field("retries", &self.retries)
            .finish()
    }
}

/// Why one delivery attempt failed (for the log; never the URL's path or the body).
enum Failure {
    Status(u16),
    Transport(warden_http::Error),
}

impl WebhookSink {
    /// A sink for `config`, signing with `secret` when given.
    pub fn new(config: &WebhookConfig, secret: Option<Secret>) -> Result<Self, AlertsError> {
        // The shared client follows no redirect: a signed alert goes where it was configured
        // to go, nowhere else.
        let tls = warden_http::TlsOptions::trusting(config.ca_file.as_deref())
            .map_err(AlertsError::CaFile)?;
        let client = warden_http::Client::with_tls(CONNECT_TIMEOUT.min(config.timeout), tls);
        let uri = warden_http::uri(&config.url).map_err(AlertsError::Client)?;
        Ok(Self {
            client,
            url: config.url.clone(),
            uri,
            timeout: config.timeout,
            secret,
            retries: config.retries,
        })
    }

    async fn attempt(&self, alert: &Alert, body: &[u8]) -> Result<(), Failure> {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        if let Ok(id) = http::HeaderValue::from_str(&alert.id) {
            headers.insert(http::HeaderName::from_static(ALERT_ID_HEADER), id);
        }
        if let Some(secret) = &self.secret
            && let Ok(sig) = http::HeaderValue::from_str(&signature(secret, body))
        {
            headers.insert(http::HeaderName::from_static(SIGNATURE_HEADER), sig);
        }
        let request = warden_http::request(
            http::Method::POST,
            self.uri.clone(),
            headers,
            bytes::Bytes::copy_from_slice(body),
        );
        // The whole attempt, answer included, within the timeout; the answer's body is not
        // read (only its status counts).
        match tokio::time::timeout(self.timeout, self.client.send(request)).await {
            Ok(Ok(r)) if r.status().is_success() => Ok(()),
            Ok(Ok(r)) => Err(Failure::Status(r.status().as_u16())),
            Ok(Err(e)) => Err(Failure::Transport(e)),
            Err(_) => Err(Failure::Transport(warden_http::Error::Timeout)),
        }
    }

    /// Delivers `alert`, retrying network errors, 5xx and 429 with backoff. True on success.
    async fn deliver(&self, alert: &Alert) -> bool {
        let body = serde_json::to_vec(alert).unwrap_or_default();
        let mut backoff = BACKOFF_BASE;
        for attempt in 0..=self.retries {
            let failure = match self.attempt(alert, &body).await {
                Ok(()) => return true,
                Err(f) => f,
            };
            let retryable = match &failure {
                Failure::Status(s) => *s >= 500 || *s == 429,
                Failure::Transport(_) => true,
            };
            let host = self.url.host_str().unwrap_or_default();
            match &failure {
                Failure::Status(status) => tracing::warn!(
                    alert = %alert.id, host, status, attempt, "alert webhook refused the alert"
                ),
                Failure::Transport(e) => tracing::warn!(
                    alert = %alert.id, host, error = %warden_http::error_chain(e), attempt,
                    "alert webhook unreachable"
                ),
            }
            if !retryable || attempt == self.retries {
                break;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
        tracing::error!(
            alert = %alert.id,
            rule = alert.rule,
            host = self.url.host_str().unwrap_or_default(),
            "alert webhook delivery failed"
        );
        false
    }
}

/// Every configured sink.
#[derive(Debug, Default)]
pub struct Sinks {
    /// The log sink.
    pub log: Option<LogSink>,
    /// The webhook sink.
    pub webhook: Option<WebhookSink>,
}

impl Sinks {
    /// Hands `alert` to every sink, the log first (it cannot be slow).
    pub(crate) async fn deliver(&mut self, alert: &Alert) -> bool {
        if let Some(log) = &mut self.log {
            log.deliver(alert);
        }
        match &self.webhook {
            Some(w) => w.deliver(alert).await,
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        let s = signature(
            &Secret::new(b"Jefe".to_vec()),
            b"what do ya want for nothing?",
        );
        assert_eq!(
            s,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    fn webhook(port: u16, ca_file: Option<std::path::PathBuf>) -> WebhookConfig {
        WebhookConfig {
            url: url::Url::parse(&format!("https://127.0.0.1:{port}/hook")).unwrap(),
            secret: None,
            timeout: Duration::from_secs(5),
            retries: 0,
            ca_file,
        }
    }

    #[tokio::test]
    async fn a_webhook_behind_an_internal_ca_is_reached_only_with_ca_file() {
        let ca = warden_test::tls::internal_ca("127.0.0.1");
        let (port, count, _server) =
            warden_test::tls::counting_https_server(&ca.issue("127.0.0.1")).await;
        let alert = Alert {
            id: "a1".into(),
            rule: "auth_failures",
            severity: "high",
            ts: "2026-11-22T00:00:00Z".into(),
            first_ts: "2026-11-22T00:00:00Z".into(),
            summary: "test".into(),
            principal: None,
            session: None,
            upstream: None,
            remote: None,
            tool: None,
            count: 3,
            window_secs: 60,
            suppressed: 0,
            controls: Vec::new(),
            detail: None,
        };
        let plain = WebhookSink::new(&webhook(port, None), None).unwrap();
        assert!(
            !plain.deliver(&alert).await,
            "the Mozilla roots do not trust a test CA"
        );
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 0);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ca.pem");
        std::fs::write(&file, &ca.ca_pem).unwrap();
        let trusting = WebhookSink::new(&webhook(port, Some(file)), None).unwrap();
        assert!(trusting.deliver(&alert).await);
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn an_unusable_ca_file_is_refused_naming_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("junk.pem");
        std::fs::write(&file, "junk\n").unwrap();
        let error = WebhookSink::new(&webhook(1, Some(file)), None).unwrap_err();
        assert!(
            error.to_string().starts_with("alerts.webhook.ca_file: "),
            "{error}"
        );
    }

    #[test]
    fn secret_debug_shows_nothing() {
        assert_eq!(
            format!("{:?}", Secret::new(b"hunter2".to_vec())),
            "Secret(***)"
        );
    }
}
