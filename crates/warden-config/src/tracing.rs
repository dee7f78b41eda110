//! `[tracing]`: OpenTelemetry traces exported over OTLP/HTTP (see `docs/tracing.md`).
//!
//! Off unless `endpoint` is set. Spans are built from the audit record stream, so tracing needs
//! the audit log. Header values may be credentials: write them as `env:NAME` or `file:/path`.

use std::num::NonZeroUsize;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::ValueRef;
use crate::error::{ConfigErrorKind, FieldPath};
use crate::raw::{RawDuration, RawMap};
use crate::validate::Validator;

/// `service.name` of the exported spans unless configured.
pub const DEFAULT_TRACING_SERVICE_NAME: &str = "mcp-warden";
/// Bound on one export request: a collector that hangs costs one batch, never a request.
pub const DEFAULT_TRACING_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a span waits for its batch: the OpenTelemetry SDK's default schedule delay.
pub const DEFAULT_TRACING_EXPORT_INTERVAL: Duration = Duration::from_secs(5);
/// Spans queued for export before new ones are dropped (the OpenTelemetry SDK's default):
/// bounds memory while the collector is down.
pub const DEFAULT_TRACING_QUEUE: NonZeroUsize = NonZeroUsize::new(2048).expect("non-zero");
/// Spans per export request (the OpenTelemetry SDK's default).
pub const DEFAULT_TRACING_MAX_BATCH: NonZeroUsize = NonZeroUsize::new(512).expect("non-zero");
/// Largest `queue` and `max_batch` accepted: bounds the memory spans may take.
pub const MAX_TRACING_QUEUE: u64 = 1_000_000;
/// Longest `service_name` accepted.
pub const MAX_TRACING_SERVICE_NAME: usize = 255;

/// `[tracing]` as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct RawTracing {
    /// `enabled`.
    pub enabled: Option<bool>,
    /// `endpoint`: the collector's OTLP/HTTP base URL.
    pub endpoint: Option<String>,
    /// `headers`: extra request headers (values may be `env:` or `file:` references).
    pub headers: Option<RawMap<ValueRef>>,
    /// `service_name`.
    pub service_name: Option<String>,
    /// `sample_ratio`.
    pub sample_ratio: Option<f64>,
    /// `timeout`.
    pub timeout: Option<RawDuration>,
    /// `export_interval`.
    pub export_interval: Option<RawDuration>,
    /// `queue`.
    pub queue: Option<u64>,
    /// `max_batch`.
    pub max_batch: Option<u64>,
    /// `insecure_allow_http`.
    pub insecure_allow_http: Option<bool>,
    /// `ca_file`: PEM certificates the collector's certificate may chain to, besides the
    /// Mozilla roots.
    pub ca_file: Option<std::path::PathBuf>,
}

/// A ratio of new traces to record, in `0.0..=1.0` (never NaN).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleRatio(f64);

// Validation never builds a NaN ratio, so equality is reflexive.
impl Eq for SampleRatio {}

impl SampleRatio {
    /// Every trace.
    pub const ALL: SampleRatio = SampleRatio(1.0);

    /// `ratio` when it is a number in `0.0..=1.0`.
    pub fn new(ratio: f64) -> Option<Self> {
        (0.0..=1.0).contains(&ratio).then_some(Self(ratio))
    }

    /// The ratio.
    pub fn get(self) -> f64 {
        self.0
    }
}

/// The validated `[tracing]` section (present only when tracing is on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracingConfig {
    /// The collector's OTLP/HTTP base URL; spans go to `{endpoint}/v1/traces`.
    pub endpoint: Url,
    /// Extra request headers, unresolved.
    pub headers: Vec<(String, ValueRef)>,
    /// `service.name` of the spans.
    pub service_name: String,
    /// Ratio of new traces recorded; a client's valid `traceparent` decides for its own trace.
    pub sample_ratio: SampleRatio,
    /// Bound on one export request.
    pub timeout: Duration,
    /// Longest a span waits for its batch.
    pub export_interval: Duration,
    /// Spans queued for export, at most.
    pub queue: NonZeroUsize,
    /// Spans per export request, at most.
    pub max_batch: NonZeroUsize,
    /// Export over plain http to a non-loopback collector (default false).
    pub insecure_allow_http: bool,
    /// PEM file of extra trust anchors for the collector's certificate.
    pub ca_file: Option<std::path::PathBuf>,
}

impl Validator<'_> {
    /// Validates `[tracing]`: `None` when tracing is off. `audit_enabled` is `[audit]
    /// enabled`: spans are built from the audit record stream.
    pub(crate) fn tracing(
        &mut self,
        path: &FieldPath,
        raw: RawTracing,
        audit_enabled: bool,
    ) -> Option<TracingConfig> {
        let headers = raw
            .headers
            .map(|h| self.headers(&path.key("headers"), h))
            .unwrap_or_default();
        let service_name = match raw.service_name {
            None => DEFAULT_TRACING_SERVICE_NAME.to_owned(),
            Some(name) if name.trim().is_empty() => {
                self.report(path.key("service_name"), ConfigErrorKind::Empty);
                DEFAULT_TRACING_SERVICE_NAME.to_owned()
            }
            Some(name) if name.len() > MAX_TRACING_SERVICE_NAME || name.contains('\0') => {
                self.report(
                    path.key("service_name"),
                    ConfigErrorKind::Invalid {
                        reason: format!(
                            "service_name must be at most {MAX_TRACING_SERVICE_NAME} bytes without NUL"
                        ),
                    },
                );
                DEFAULT_TRACING_SERVICE_NAME.to_owned()
            }
            Some(name) => name,
        };
        let sample_ratio = match raw.sample_ratio {
            None => SampleRatio::ALL,
            Some(r) => SampleRatio::new(r).unwrap_or_else(|| {
                self.report(
                    path.key("sample_ratio"),
                    ConfigErrorKind::Invalid {
                        reason: format!("sample_ratio must be between 0.0 and 1.0, got {r}"),
                    },
                );
                SampleRatio::ALL
            }),
        };
        let timeout = self.duration(path.key("timeout"), raw.timeout, DEFAULT_TRACING_TIMEOUT);
        let export_interval = self.duration(
            path.key("export_interval"),
            raw.export_interval,
            DEFAULT_TRACING_EXPORT_INTERVAL,
        );
        let queue = self.tracing_count(path.key("queue"), raw.queue, DEFAULT_TRACING_QUEUE);
        let max_batch = self.tracing_count(
            path.key("max_batch"),
            raw.max_batch,
            DEFAULT_TRACING_MAX_BATCH,
        );
        let endpoint = raw
            .endpoint
            .and_then(|e| self.http_url(path.key("endpoint"), e));
        if raw.enabled == Some(false) {
            return None;
        }
        let endpoint = match endpoint {
            Some(url) if url.query().is_some() => {
                self.report(
                    path.key("endpoint"),
                    ConfigErrorKind::Invalid {
                        reason: "the endpoint is a base URL (spans go to {endpoint}/v1/traces); \
                                 remove the query"
                            .into(),
                    },
                );
                return None;
            }
            Some(url)
                if url.scheme() == "http"
                    && !is_loopback(&url)
                    && raw.insecure_allow_http != Some(true) =>
            {
                self.report(
                    path.key("endpoint"),
                    ConfigErrorKind::Invalid {
                        reason: "spans name principals, sessions and tools, and headers may \
                                 carry credentials: use https, or http to a loopback address, \
                                 or set insecure_allow_http = true to accept the risk"
                            .into(),
                    },
                );
                return None;
            }
            Some(url) => url,
            None => {
                if !self.was_rejected(&path.key("endpoint")) {
                    self.report(
                        path.key("endpoint"),
                        ConfigErrorKind::Invalid {
                            reason: "[tracing] needs the collector's OTLP/HTTP endpoint \
                                     (such as \"http://127.0.0.1:4318\"), or enabled = false"
                                .into(),
                        },
                    );
                }
                return None;
            }
        };
        if !audit_enabled {
            self.report(
                path.key("endpoint"),
                ConfigErrorKind::Invalid {
                    reason: "spans are built from the audit record stream and need the audit \
                             log; remove [audit] enabled = false or [tracing]"
                        .into(),
                },
            );
        }
        let ca_file = self.path(path.key("ca_file"), raw.ca_file);
        Some(TracingConfig {
            endpoint,
            headers,
            service_name,
            sample_ratio,
            timeout,
            export_interval,
            queue,
            max_batch,
            insecure_allow_http: raw.insecure_allow_http.unwrap_or(false),
            ca_file,
        })
    }

    fn tracing_count(
        &mut self,
        path: FieldPath,
        raw: Option<u64>,
        default: NonZeroUsize,
    ) -> NonZeroUsize {
        match raw {
            None => default,
            Some(n) => match usize::try_from(n).ok().and_then(NonZeroUsize::new) {
                Some(v) if n <= MAX_TRACING_QUEUE => v,
                _ => {
                    self.report(
                        path,
                        ConfigErrorKind::OutOfRange {
                            value: n,
                            min: 1,
                            max: MAX_TRACING_QUEUE,
                        },
                    );
                    default
                }
            },
        }
    }
}

/// True for `localhost` and loopback IP literals.
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

#[cfg(test)]
mod tests;
