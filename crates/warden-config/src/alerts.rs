//! `[alerts]`: anomaly rules over the audit record stream and the sinks their alerts go to
//! (see `docs/alerts.md`).
//!
//! Alerts are evaluated over the records the audit writer has written, so they require the
//! audit log: `[alerts]` with `[audit] enabled = false` is refused (an alert engine that never
//! sees a record would look configured and never fire). The webhook's signing secret is a
//! reference (`env:` or `file:`), never a value written in this file.

use std::net::IpAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::ValueRef;
use crate::error::{ConfigErrorKind, FieldPath};
use crate::raw::RawDuration;
use crate::validate::Validator;

/// Alerts waiting for the sinks: a burst of distinct alerts fits; beyond it they are dropped
/// and counted rather than held in memory or slowing the audit writer.
pub const DEFAULT_ALERTS_QUEUE: NonZeroUsize = NonZeroUsize::new(256).expect("non-zero");
/// Largest alert queue accepted: bounds memory.
pub const MAX_ALERTS_QUEUE: u64 = 65_536;
/// Largest threshold accepted: each key keeps at most this many timestamps.
pub const MAX_ALERT_THRESHOLD: u64 = 10_000;
/// How long one webhook delivery may take: a slow receiver delays later alerts by at most this
/// (per attempt), never the gateway.
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest webhook timeout accepted.
pub const MAX_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(60);
/// Retries after a failed delivery (network error, 5xx or 429): rides out a receiver restart.
pub const DEFAULT_WEBHOOK_RETRIES: u32 = 3;
/// Most retries accepted: with backoff, bounds how long one alert can occupy the sink.
pub const MAX_WEBHOOK_RETRIES: u64 = 10;

/// How serious an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertSeverity {
    /// Worth a look.
    Low,
    /// Worth a look soon.
    Medium,
    /// Worth a look now.
    High,
    /// Someone should be paged.
    Critical,
}

impl AlertSeverity {
    /// The name as written in the configuration and in alerts.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

/// `[alerts]` as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct RawAlerts {
    /// `enabled` (default true when the section is present).
    pub enabled: Option<bool>,
    /// `queue`.
    pub queue: Option<u64>,
    /// `[alerts.auth_failures]`.
    pub auth_failures: Option<RawThresholdRule>,
    /// `[alerts.denials]`.
    pub denials: Option<RawThresholdRule>,
    /// `[alerts.pin_changed]`.
    pub pin_changed: Option<RawThresholdRule>,
    /// `[alerts.poisoning]`.
    pub poisoning: Option<RawThresholdRule>,
    /// `[alerts.upstream_crash_loop]`.
    pub upstream_crash_loop: Option<RawThresholdRule>,
    /// `[alerts.untrusted_then_sensitive]`.
    pub untrusted_then_sensitive: Option<RawSequenceRule>,
    /// `[alerts.webhook]`.
    pub webhook: Option<RawWebhook>,
    /// `[alerts.log]`.
    pub log: Option<RawAlertLog>,
}

/// A counting rule as written: `threshold` events within `window` fire one alert per key,
/// then nothing for that key during `cooldown`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct RawThresholdRule {
    /// `enabled`.
    pub enabled: Option<bool>,
    /// `threshold`.
    pub threshold: Option<u64>,
    /// `window`.
    pub window: Option<RawDuration>,
    /// `cooldown`.
    pub cooldown: Option<RawDuration>,
    /// `severity`.
    pub severity: Option<AlertSeverity>,
}

/// `[alerts.untrusted_then_sensitive]` as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct RawSequenceRule {
    /// `enabled`.
    pub enabled: Option<bool>,
    /// `window`.
    pub window: Option<RawDuration>,
    /// `cooldown`.
    pub cooldown: Option<RawDuration>,
    /// `severity`.
    pub severity: Option<AlertSeverity>,
    /// `untrusted_tools`.
    pub untrusted_tools: Option<Vec<String>>,
    /// `untrusted_upstreams`.
    pub untrusted_upstreams: Option<Vec<String>>,
    /// `sensitive_tools`.
    pub sensitive_tools: Option<Vec<String>>,
}

/// `[alerts.webhook]` as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct RawWebhook {
    /// `url`.
    pub url: Option<String>,
    /// `secret`: `env:NAME` or `file:/path`.
    pub secret: Option<ValueRef>,
    /// `timeout`.
    pub timeout: Option<RawDuration>,
    /// `retries`.
    pub retries: Option<u64>,
    /// `ca_file`: PEM certificates the webhook's certificate may chain to, besides the
    /// Mozilla roots.
    pub ca_file: Option<PathBuf>,
}

/// `[alerts.log]` as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct RawAlertLog {
    /// `enabled`.
    pub enabled: Option<bool>,
    /// `file`.
    pub file: Option<PathBuf>,
}

/// A validated counting rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThresholdRule {
    /// Whether the rule is evaluated.
    pub enabled: bool,
    /// Events within `window` that fire an alert.
    pub threshold: NonZeroU32,
    /// The sliding window.
    pub window: Duration,
    /// Quiet time per key after an alert: a burst yields one alert.
    pub cooldown: Duration,
    /// Severity of its alerts.
    pub severity: AlertSeverity,
}

impl ThresholdRule {
    const fn new(threshold: u32, window: Duration, cooldown: Duration, sev: AlertSeverity) -> Self {
        Self {
            enabled: true,
            threshold: match NonZeroU32::new(threshold) {
                Some(t) => t,
                None => NonZeroU32::MIN,
            },
            window,
            cooldown,
            severity: sev,
        }
    }
}

/// The validated `[alerts.untrusted_then_sensitive]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceRule {
    /// Whether the rule is evaluated.
    pub enabled: bool,
    /// Longest time between reading untrusted content and the sensitive call.
    pub window: Duration,
    /// Quiet time per session after an alert.
    pub cooldown: Duration,
    /// Severity of its alerts.
    pub severity: AlertSeverity,
    /// Tool-name patterns (`*` wildcards, client-facing names) whose results are untrusted.
    pub untrusted_tools: Vec<String>,
    /// Upstream names (`*` wildcards) every result of which is untrusted.
    pub untrusted_upstreams: Vec<String>,
    /// Tool-name patterns of sensitive tools; `None` means `[audit] sensitive_tools`.
    pub sensitive_tools: Option<Vec<String>>,
}

/// The validated `[alerts.webhook]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Where alerts are POSTed (https, or http to a loopback address).
    pub url: Url,
    /// The HMAC-SHA-256 signing secret, as a reference resolved at startup.
    pub secret: Option<ValueRef>,
    /// Timeout of one delivery attempt.
    pub timeout: Duration,
    /// Retries after a failed attempt.
    pub retries: u32,
    /// PEM file of extra trust anchors for the webhook's certificate.
    pub ca_file: Option<PathBuf>,
}

/// The validated `[alerts.log]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertLogConfig {
    /// Whether alerts are logged (warn level, `security alert`).
    pub enabled: bool,
    /// A JSON Lines file alerts are appended to as well.
    pub file: Option<PathBuf>,
}

/// The validated `[alerts]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertsConfig {
    /// Whether alerts are evaluated (false without an `[alerts]` section).
    pub enabled: bool,
    /// Capacity of the queue between the rules and the sinks.
    pub queue: NonZeroUsize,
    /// Refused authentications per principal (or remote address).
    pub auth_failures: ThresholdRule,
    /// Guard denials per principal.
    pub denials: ThresholdRule,
    /// Pinned definitions that changed, per upstream.
    pub pin_changed: ThresholdRule,
    /// Poisoning and injection findings, per upstream.
    pub poisoning: ThresholdRule,
    /// Upstream exits, per upstream.
    pub upstream_crash_loop: ThresholdRule,
    /// A sensitive call shortly after untrusted content, per session.
    pub untrusted_then_sensitive: SequenceRule,
    /// The webhook sink.
    pub webhook: Option<WebhookConfig>,
    /// The log sink.
    pub log: AlertLogConfig,
}

/// Default `untrusted_tools`: names of tools that bring text from the open web into a session.
pub const DEFAULT_UNTRUSTED_TOOLS: &[&str] = &["*fetch*", "*browse*", "*scrape*", "*crawl*"];

impl Default for AlertsConfig {
    fn default() -> Self {
        const MIN: Duration = Duration::from_secs(60);
        Self {
            enabled: false,
            queue: DEFAULT_ALERTS_QUEUE,
            // Typos and expired keys give a few failures; a guessing client gives many.
            auth_failures: ThresholdRule::new(10, MIN, 10 * MIN, AlertSeverity::High),
            // An agent probing its limits gets denied repeatedly; a normal one rarely.
            denials: ThresholdRule::new(20, MIN, 10 * MIN, AlertSeverity::Medium),
            // One change is already a rug pull candidate; the hold repeats on every list.
            pin_changed: ThresholdRule::new(1, 10 * MIN, 60 * MIN, AlertSeverity::High),
            poisoning: ThresholdRule::new(1, 10 * MIN, 60 * MIN, AlertSeverity::High),
            // A clean shutdown is one exit; three in five minutes is a loop.
            upstream_crash_loop: ThresholdRule::new(3, 5 * MIN, 30 * MIN, AlertSeverity::High),
            untrusted_then_sensitive: SequenceRule {
                enabled: true,
                window: 2 * MIN,
                cooldown: 10 * MIN,
                severity: AlertSeverity::High,
                untrusted_tools: DEFAULT_UNTRUSTED_TOOLS
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect(),
                untrusted_upstreams: Vec::new(),
                sensitive_tools: None,
            },
            webhook: None,
            log: AlertLogConfig {
                enabled: true,
                file: None,
            },
        }
    }
}

/// True for `http` URLs whose host is a loopback address or `localhost`.
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

fn invalid(reason: impl Into<String>) -> ConfigErrorKind {
    ConfigErrorKind::Invalid {
        reason: reason.into(),
    }
}

impl Validator<'_> {
    /// Validates `[alerts]`; `audit_enabled` is `[audit] enabled`.
    pub(crate) fn alerts(
        &mut self,
        path: &FieldPath,
        raw: RawAlerts,
        audit_enabled: bool,
    ) -> AlertsConfig {
        let d = AlertsConfig::default();
        let enabled = raw.enabled.unwrap_or(true);
        if enabled && !audit_enabled {
            self.report(
                path.clone(),
                invalid(
                    "alerts are evaluated over the audit log, which `[audit] enabled = false` \
                     turns off; enable the audit log or set `[alerts] enabled = false`",
                ),
            );
        }
        let queue = match raw.queue {
            None => d.queue,
            Some(n) => match usize::try_from(n).ok().and_then(NonZeroUsize::new) {
                Some(q) if n <= MAX_ALERTS_QUEUE => q,
                _ => {
                    self.report(
                        path.key("queue"),
                        ConfigErrorKind::OutOfRange {
                            value: n,
                            min: 1,
                            max: MAX_ALERTS_QUEUE,
                        },
                    );
                    d.queue
                }
            },
        };
        let rule = |v: &mut Self, name: &str, raw: Option<RawThresholdRule>, d| {
            v.threshold_rule(&path.key(name), raw.unwrap_or_default(), d)
        };
        let auth_failures = rule(self, "auth_failures", raw.auth_failures, d.auth_failures);
        let denials = rule(self, "denials", raw.denials, d.denials);
        let pin_changed = rule(self, "pin_changed", raw.pin_changed, d.pin_changed);
        let poisoning = rule(self, "poisoning", raw.poisoning, d.poisoning);
        let upstream_crash_loop = rule(
            self,
            "upstream_crash_loop",
            raw.upstream_crash_loop,
            d.upstream_crash_loop,
        );
        let untrusted_then_sensitive = self.sequence_rule(
            &path.key("untrusted_then_sensitive"),
            raw.untrusted_then_sensitive.unwrap_or_default(),
            d.untrusted_then_sensitive,
        );
        let webhook = raw
            .webhook
            .and_then(|w| self.webhook(&path.key("webhook"), w));
        let log = raw.log.unwrap_or_default();
        let log = AlertLogConfig {
            enabled: log.enabled.unwrap_or(d.log.enabled),
            file: self.alert_path(path.key("log").key("file"), log.file),
        };
        AlertsConfig {
            enabled,
            queue,
            auth_failures,
            denials,
            pin_changed,
            poisoning,
            upstream_crash_loop,
            untrusted_then_sensitive,
            webhook,
            log,
        }
    }

    fn alert_path(&mut self, field: FieldPath, path: Option<PathBuf>) -> Option<PathBuf> {
        let path = path?;
        if path.as_os_str().is_empty() {
            self.report(field, ConfigErrorKind::Empty);
            None
        } else if path.as_os_str().as_encoded_bytes().contains(&0) {
            self.report(field, ConfigErrorKind::ContainsNul);
            None
        } else {
            Some(path)
        }
    }

    fn threshold_rule(
        &mut self,
        path: &FieldPath,
        raw: RawThresholdRule,
        d: ThresholdRule,
    ) -> ThresholdRule {
        let threshold = match raw.threshold {
            None => d.threshold,
            Some(n) => match u32::try_from(n).ok().and_then(NonZeroU32::new) {
                Some(t) if n <= MAX_ALERT_THRESHOLD => t,
                _ => {
                    self.report(
                        path.key("threshold"),
                        ConfigErrorKind::OutOfRange {
                            value: n,
                            min: 1,
                            max: MAX_ALERT_THRESHOLD,
                        },
                    );
                    d.threshold
                }
            },
        };
        ThresholdRule {
            enabled: raw.enabled.unwrap_or(d.enabled),
            threshold,
            window: self.duration(path.key("window"), raw.window, d.window),
            cooldown: self.duration_allowing_zero(path.key("cooldown"), raw.cooldown, d.cooldown),
            severity: raw.severity.unwrap_or(d.severity),
        }
    }

    fn patterns(&mut self, path: FieldPath, raw: Option<Vec<String>>) -> Option<Vec<String>> {
        let raw = raw?;
        let mut out = Vec::with_capacity(raw.len());
        for (i, p) in raw.into_iter().enumerate() {
            if p.is_empty() {
                self.report(path.index(i), ConfigErrorKind::Empty);
            } else {
                out.push(p);
            }
        }
        Some(out)
    }

    fn sequence_rule(
        &mut self,
        path: &FieldPath,
        raw: RawSequenceRule,
        d: SequenceRule,
    ) -> SequenceRule {
        SequenceRule {
            enabled: raw.enabled.unwrap_or(d.enabled),
            window: self.duration(path.key("window"), raw.window, d.window),
            cooldown: self.duration_allowing_zero(path.key("cooldown"), raw.cooldown, d.cooldown),
            severity: raw.severity.unwrap_or(d.severity),
            untrusted_tools: self
                .patterns(path.key("untrusted_tools"), raw.untrusted_tools)
                .unwrap_or(d.untrusted_tools),
            untrusted_upstreams: self
                .patterns(path.key("untrusted_upstreams"), raw.untrusted_upstreams)
                .unwrap_or(d.untrusted_upstreams),
            sensitive_tools: self.patterns(path.key("sensitive_tools"), raw.sensitive_tools),
        }
    }

    fn webhook(&mut self, path: &FieldPath, raw: RawWebhook) -> Option<WebhookConfig> {
        let url = match raw.url {
            Some(value) => {
                let url = self.http_url(path.key("url"), value.clone());
                match url {
                    Some(u) if u.scheme() == "http" && !is_loopback(&u) => {
                        self.report(
                            path.key("url"),
                            invalid(format!(
                                "\"{value}\" must use https (plain http is accepted only for \
                                 loopback addresses): alerts name principals and sessions"
                            )),
                        );
                        None
                    }
                    other => other,
                }
            }
            None => {
                self.report(path.clone(), invalid("`url` is required"));
                None
            }
        };
        let secret = match raw.secret {
            Some(ValueRef::Literal(_)) => {
                self.report(
                    path.key("secret"),
                    invalid("plain secret values are not allowed; use a reference such as env: or file:"),
                );
                None
            }
            other => other,
        };
        let timeout = self.duration(path.key("timeout"), raw.timeout, DEFAULT_WEBHOOK_TIMEOUT);
        let timeout = if timeout > MAX_WEBHOOK_TIMEOUT {
            self.report(
                path.key("timeout"),
                invalid(format!(
                    "the webhook timeout must be at most {}",
                    humantime::format_duration(MAX_WEBHOOK_TIMEOUT)
                )),
            );
            DEFAULT_WEBHOOK_TIMEOUT
        } else {
            timeout
        };
        let retries = match raw.retries {
            None => DEFAULT_WEBHOOK_RETRIES,
            Some(n) if n <= MAX_WEBHOOK_RETRIES => u32::try_from(n).unwrap_or(0),
            Some(n) => {
                self.report(
                    path.key("retries"),
                    ConfigErrorKind::OutOfRange {
                        value: n,
                        min: 0,
                        max: MAX_WEBHOOK_RETRIES,
                    },
                );
                DEFAULT_WEBHOOK_RETRIES
            }
        };
        let ca_file = self.path(path.key("ca_file"), raw.ca_file);
        Some(WebhookConfig {
            url: url?,
            secret,
            timeout,
            retries,
            ca_file,
        })
    }
}

#[cfg(test)]
mod tests;
