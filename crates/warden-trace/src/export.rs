//! The audit tap that exports spans: records in, spans out over OTLP/HTTP, off the request path.
//!
//! The tap runs on the audit writer thread and only assembles spans and pushes them onto a
//! bounded queue (a full queue drops the span and counts it). A thread of its own drains the
//! queue in batches (up to `max_batch` spans, or whatever arrived within `interval` of the
//! first) and posts each batch once, with a timeout; a failed batch is counted and dropped,
//! never retried against a collector that is down. Nothing here can slow a request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use tokio::sync::mpsc;
use url::Url;
use warden_audit::{AuditRecord, AuditTap};

use crate::otlp::{self, Resource};
use crate::span::{Span, SpanAssembler};

/// Path OTLP/HTTP receivers serve traces on, below the configured endpoint.
pub const TRACES_PATH: &str = "v1/traces";

/// How the exporter reaches the collector.
#[derive(Clone)]
pub struct ExportOptions {
    /// The collector's OTLP/HTTP base URL; spans are posted to `{endpoint}/v1/traces`.
    pub endpoint: Url,
    /// Extra request headers (credentials, tenant ids), already resolved.
    pub headers: Vec<(String, String)>,
    /// `service.name` and `service.version` of every span.
    pub resource: Resource,
    /// Bound on one export request, connect included.
    pub timeout: Duration,
    /// Longest a span waits for its batch to fill before the batch is sent.
    pub interval: Duration,
    /// Spans queued for export, at most; more are dropped and counted.
    pub queue: usize,
    /// Spans per export request, at most.
    pub max_batch: usize,
    /// Trust anchors besides the Mozilla roots (the collector behind an internal authority).
    pub tls: warden_http::TlsOptions,
}

impl std::fmt::Debug for ExportOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header values are credentials: names only.
        f.debug_struct("ExportOptions")
            .field("endpoint", &self.endpoint.as_str())
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("resource", &self.resource)
            .field("timeout", &self.timeout)
            .field("interval", &self.interval)
            .field("queue", &self.queue)
            .field("max_batch", &self.max_batch)
            .field("tls", &self.tls)
            .finish()
    }
}

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A configured header name is not a valid HTTP header name.
    #[error("tracing header `{name}` is not a valid header name")]
    HeaderName {
        /// The name.
        name: String,
    },
    /// A configured header value cannot be sent (the value is not shown).
    #[error("tracing header `{name}` has a value that cannot be sent in HTTP")]
    HeaderValue {
        /// The header's name.
        name: String,
    },
    /// The endpoint cannot take the `v1/traces` path.
    #[error("tracing endpoint `{endpoint}` cannot be a base URL")]
    Endpoint {
        /// The endpoint.
        endpoint: String,
    },
    /// The traces URL is not a request target the client can use.
    #[error("the trace export url cannot be used")]
    Client(#[source] warden_http::Error),
    /// The export thread could not be started.
    #[error("cannot start the trace export thread")]
    Thread(#[source] std::io::Error),
}

/// What the exporter did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportStats {
    /// Spans the collector accepted.
    pub exported: u64,
    /// Spans dropped because the queue was full.
    pub dropped: u64,
    /// Spans in batches the collector refused or that could not be delivered.
    pub failed: u64,
}

#[derive(Debug, Default)]
struct Counters {
    exported: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
}

/// The `{endpoint}/v1/traces` URL.
pub fn traces_url(endpoint: &Url) -> Option<Url> {
    let mut url = endpoint.clone();
    let base = url.path().trim_end_matches('/').to_owned();
    if url.cannot_be_a_base() {
        return None;
    }
    url.set_path(&format!("{base}/{TRACES_PATH}"));
    Some(url)
}

/// An [`AuditTap`] exporting a span per traced call record. Dropping it (when the audit log
/// closes) sends what is queued and waits for that, at most one export timeout.
pub struct TraceExporter {
    assembler: Mutex<SpanAssembler>,
    sender: Mutex<Option<mpsc::Sender<Span>>>,
    counters: Arc<Counters>,
    done: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    flush_timeout: Duration,
}

impl std::fmt::Debug for TraceExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceExporter")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl TraceExporter {
    /// Starts the export thread.
    pub fn start(opts: ExportOptions) -> Result<Self, ExportError> {
        let url = traces_url(&opts.endpoint).ok_or_else(|| ExportError::Endpoint {
            endpoint: opts.endpoint.to_string(),
        })?;
        let mut headers = HeaderMap::new();
        for (name, value) in &opts.headers {
            let n = HeaderName::try_from(name.as_str())
                .map_err(|_| ExportError::HeaderName { name: name.clone() })?;
            let mut v = HeaderValue::try_from(value.as_str())
                .map_err(|_| ExportError::HeaderValue { name: name.clone() })?;
            v.set_sensitive(true);
            headers.insert(n, v);
        }
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        // The shared client follows no redirect: credentials in the headers must not follow
        // one to another host.
        let client = warden_http::Client::with_tls(opts.timeout, opts.tls.clone());
        let uri = warden_http::uri(&url).map_err(ExportError::Client)?;
        let (sender, receiver) = mpsc::channel(opts.queue.max(1));
        let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
        let counters = Arc::new(Counters::default());
        let batcher = Batcher {
            client,
            uri,
            timeout: opts.timeout,
            headers,
            resource: opts.resource,
            interval: opts.interval,
            max_batch: opts.max_batch.max(1),
            counters: counters.clone(),
        };
        std::thread::Builder::new()
            .name("warden-trace-export".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(batcher.run(receiver)),
                    Err(e) => tracing::error!(error = %e, "trace export runtime failed to start"),
                }
                let _ = done_tx.send(());
            })
            .map_err(ExportError::Thread)?;
        Ok(Self {
            assembler: Mutex::new(SpanAssembler::default()),
            sender: Mutex::new(Some(sender)),
            counters,
            done: Mutex::new(Some(done_rx)),
            flush_timeout: opts.timeout,
        })
    }

    /// Counts so far.
    pub fn stats(&self) -> ExportStats {
        ExportStats {
            exported: self.counters.exported.load(Ordering::Relaxed),
            dropped: self.counters.dropped.load(Ordering::Relaxed),
            failed: self.counters.failed.load(Ordering::Relaxed),
        }
    }

    fn enqueue(&self, sender: &mpsc::Sender<Span>, span: Span) {
        if sender.try_send(span).is_err() {
            let n = self.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // Logged at 1, 2, 4, 8, ... drops: visible, never a flood.
            if n.is_power_of_two() {
                tracing::warn!(dropped = n, "trace export queue full; spans dropped");
            }
        }
    }
}

impl AuditTap for TraceExporter {
    fn records(&self, records: &[AuditRecord], _written: bool) {
        // The call happened whether or not its record reached the disk: export either way.
        let sender = self.sender.lock().unwrap_or_else(|e| e.into_inner());
        let Some(sender) = sender.as_ref() else {
            return;
        };
        let mut assembler = self.assembler.lock().unwrap_or_else(|e| e.into_inner());
        for record in records {
            if let Some(span) = assembler.push(record) {
                self.enqueue(sender, span);
            }
        }
    }
}

impl Drop for TraceExporter {
    fn drop(&mut self) {
        // Closing the queue makes the thread send what it holds and stop.
        drop(self.sender.lock().unwrap_or_else(|e| e.into_inner()).take());
        if let Some(done) = self.done.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = done.recv_timeout(self.flush_timeout);
        }
    }
}

/// The export thread's state.
struct Batcher {
    client: warden_http::Client,
    uri: http::Uri,
    /// Bounds each export, answer included.
    timeout: Duration,
    headers: HeaderMap,
    resource: Resource,
    interval: Duration,
    max_batch: usize,
    counters: Arc<Counters>,
}

impl Batcher {
    async fn run(self, mut receiver: mpsc::Receiver<Span>) {
        let mut batch = Vec::with_capacity(self.max_batch);
        loop {
            let Some(first) = receiver.recv().await else {
                return;
            };
            batch.push(first);
            let deadline = tokio::time::Instant::now() + self.interval;
            let mut closed = false;
            while batch.len() < self.max_batch {
                match tokio::time::timeout_at(deadline, receiver.recv()).await {
                    Ok(Some(span)) => batch.push(span),
                    Ok(None) => {
                        closed = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.send(&batch).await;
            batch.clear();
            if closed {
                return;
            }
        }
    }

    async fn send(&self, batch: &[Span]) {
        let n = u64::try_from(batch.len()).unwrap_or(u64::MAX);
        let body = otlp::encode(&self.resource, batch);
        let request = warden_http::request(
            http::Method::POST,
            self.uri.clone(),
            self.headers.clone(),
            body.into(),
        );
        let response = tokio::time::timeout(self.timeout, self.client.send(request))
            .await
            .unwrap_or(Err(warden_http::Error::Timeout));
        match response {
            Ok(r) if r.status().is_success() => {
                self.counters.exported.fetch_add(n, Ordering::Relaxed);
            }
            Ok(r) => {
                self.counters.failed.fetch_add(n, Ordering::Relaxed);
                tracing::warn!(
                    status = r.status().as_u16(),
                    spans = n,
                    "trace export refused by the collector"
                );
            }
            Err(e) => {
                self.counters.failed.fetch_add(n, Ordering::Relaxed);
                tracing::warn!(error = %e, spans = n, "trace export failed");
            }
        }
    }
}
