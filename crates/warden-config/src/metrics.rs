//! `[metrics]`: the Prometheus exposition listener (see `docs/observability.md`).
//!
//! Off unless `listen` is set. The listener is separate from the MCP face, so it is never
//! reachable through `/mcp` and never shares its authentication; it serves counters only (no
//! arguments, results or credentials), but those still describe who calls what, so a
//! non-loopback address needs either a bearer token or an explicit, loudly named opt-out.

use std::net::SocketAddr;
use std::num::NonZeroUsize;

use serde::Deserialize;

use crate::ValueRef;
use crate::error::{ConfigErrorKind, FieldPath};
use crate::validate::Problem;

/// Distinct values kept per free-form label (upstream, method, tool, guard, ...) before the
/// rest are folded into `other`: tool and method names come from peers, and every distinct
/// value is a time series the scraper stores.
pub const DEFAULT_METRICS_MAX_LABEL_VALUES: NonZeroUsize =
    NonZeroUsize::new(100).expect("non-zero");
/// Largest `max_label_values` accepted: bounds the memory of the registry and of a scrape.
pub const MAX_METRICS_LABEL_VALUES: u64 = 10_000;

/// `[metrics]` as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct RawMetrics {
    /// `listen`: `IP:port` of the `/metrics` listener.
    pub listen: Option<String>,
    /// `bearer_token`: `env:NAME`, `file:/path` or `keyring:SERVICE/USER` of a token scrapers
    /// must send.
    pub bearer_token: Option<ValueRef>,
    /// `insecure_allow_non_loopback`.
    pub insecure_allow_non_loopback: Option<bool>,
    /// `max_label_values`.
    pub max_label_values: Option<u64>,
}

/// The validated `[metrics]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Address of the `/metrics` listener; `None` (the default) serves no metrics.
    pub listen: Option<SocketAddr>,
    /// Token a scraper must send as `Authorization: Bearer <token>`; never a literal.
    pub bearer_token: Option<ValueRef>,
    /// Serve on a non-loopback address without a bearer token (default false).
    pub insecure_allow_non_loopback: bool,
    /// Distinct values kept per free-form label; the rest become `other`.
    pub max_label_values: NonZeroUsize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: None,
            bearer_token: None,
            insecure_allow_non_loopback: false,
            max_label_values: DEFAULT_METRICS_MAX_LABEL_VALUES,
        }
    }
}

/// Validates `[metrics]`. `audit_enabled` is `[audit] enabled`: metrics are derived from the
/// audit record stream, so they need the audit writer.
pub(crate) fn metrics(
    path: &FieldPath,
    raw: RawMetrics,
    audit_enabled: bool,
    problems: &mut Vec<Problem>,
) -> MetricsConfig {
    let d = MetricsConfig::default();
    let listen = raw
        .listen
        .and_then(|value| match value.parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(source) => {
                problems.push((
                    path.key("listen"),
                    ConfigErrorKind::InvalidSocketAddr { value, source },
                ));
                None
            }
        });
    // A token that is present but refused (a literal) is reported once, as itself.
    let token_given = raw.bearer_token.is_some();
    let bearer_token = match raw.bearer_token {
        Some(ValueRef::Literal(_)) => {
            problems.push((
                path.key("bearer_token"),
                ConfigErrorKind::Invalid {
                    reason: "plain secret values are not allowed; use env:, file: or keyring:"
                        .into(),
                },
            ));
            None
        }
        other => other,
    };
    let insecure = raw.insecure_allow_non_loopback.unwrap_or(false);
    if let Some(addr) = listen {
        if !addr.ip().is_loopback() && !token_given && !insecure {
            problems.push((
                path.key("listen"),
                ConfigErrorKind::Invalid {
                    reason: format!(
                        "refusing to serve metrics on non-loopback address {addr} without a \
                         bearer_token; set bearer_token (env:, file: or keyring:) or \
                         insecure_allow_non_loopback = true to accept the risk"
                    ),
                },
            ));
        }
        if !audit_enabled {
            problems.push((
                path.key("listen"),
                ConfigErrorKind::Invalid {
                    reason: "metrics are derived from the audit record stream and need the \
                             audit log; remove [audit] enabled = false or [metrics] listen"
                        .into(),
                },
            ));
        }
    }
    let max_label_values = match raw.max_label_values {
        None => d.max_label_values,
        Some(n) => match usize::try_from(n).ok().and_then(NonZeroUsize::new) {
            Some(v) if n <= MAX_METRICS_LABEL_VALUES => v,
            _ => {
                problems.push((
                    path.key("max_label_values"),
                    ConfigErrorKind::OutOfRange {
                        value: n,
                        min: 1,
                        max: MAX_METRICS_LABEL_VALUES,
                    },
                ));
                d.max_label_values
            }
        },
    };
    MetricsConfig {
        listen,
        bearer_token,
        insecure_allow_non_loopback: insecure,
        max_label_values,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    #[test]
    fn metrics_are_off_by_default() {
        let c = Config::parse("", "warden.toml").unwrap();
        assert_eq!(c.metrics, MetricsConfig::default());
        assert_eq!(c.metrics.listen, None);
    }

    #[test]
    fn parses_every_key() {
        let c = Config::parse(
            "[metrics]\nlisten = \"0.0.0.0:9464\"\nbearer_token = \"env:METRICS_TOKEN\"\n\
             insecure_allow_non_loopback = false\nmax_label_values = 20\n",
            "warden.toml",
        )
        .unwrap();
        let m = c.metrics;
        assert_eq!(m.listen, Some("0.0.0.0:9464".parse().unwrap()));
        assert_eq!(m.bearer_token, Some(ValueRef::Env("METRICS_TOKEN".into())));
        assert!(!m.insecure_allow_non_loopback);
        assert_eq!(m.max_label_values.get(), 20);
    }

    #[test]
    fn loopback_needs_no_token() {
        let c = Config::parse("[metrics]\nlisten = \"[::1]:9464\"\n", "warden.toml").unwrap();
        assert_eq!(c.metrics.listen, Some("[::1]:9464".parse().unwrap()));
    }

    #[test]
    fn non_loopback_is_accepted_with_the_explicit_opt_out() {
        let c = Config::parse(
            "[metrics]\nlisten = \"0.0.0.0:9464\"\ninsecure_allow_non_loopback = true\n",
            "warden.toml",
        )
        .unwrap();
        assert!(c.metrics.insecure_allow_non_loopback);
    }

    #[test]
    fn refuses_non_loopback_without_a_token() {
        let errors = Config::parse("[metrics]\nlisten = \"0.0.0.0:9464\"\n", "warden.toml")
            .unwrap_err()
            .to_string();
        assert!(
            errors.contains("warden.toml:2: metrics.listen: refusing to serve metrics on non-loopback address 0.0.0.0:9464"),
            "{errors}"
        );
    }

    #[test]
    fn refuses_metrics_without_the_audit_log() {
        let errors = Config::parse(
            "[audit]\nenabled = false\n\n[metrics]\nlisten = \"127.0.0.1:9464\"\n",
            "warden.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            errors.contains(
                "warden.toml:5: metrics.listen: metrics are derived from the audit record stream"
            ),
            "{errors}"
        );
        // Without a listener, a disabled audit log is fine.
        Config::parse("[audit]\nenabled = false\n\n[metrics]\n", "warden.toml").unwrap();
    }

    #[test]
    fn reports_bad_values_with_their_line() {
        let errors = Config::parse(
            "[metrics]\nlisten = \"localhost:9464\"\nbearer_token = \"hunter2\"\nmax_label_values = 0\nport = 1\n",
            "warden.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(errors.contains("warden.toml:2: metrics.listen"), "{errors}");
        assert!(
            errors.contains(
                "warden.toml:3: metrics.bearer_token: plain secret values are not allowed"
            ),
            "{errors}"
        );
        assert!(!errors.contains("hunter2"), "{errors}");
        assert!(
            errors.contains("warden.toml:4: metrics.max_label_values: 0 is out of range"),
            "{errors}"
        );
        assert!(errors.contains("warden.toml:5: metrics"), "{errors}");
        let errors = Config::parse("[metrics]\nmax_label_values = 10001\n", "warden.toml")
            .unwrap_err()
            .to_string();
        assert!(errors.contains("metrics.max_label_values"), "{errors}");
    }
}
