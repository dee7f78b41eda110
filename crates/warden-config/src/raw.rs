//! The configuration file as written: every key optional, unknown keys refused, nothing checked
//! beyond TOML types. [`crate::Config::parse`] turns it into a validated [`crate::Config`].

use std::fmt;
use std::marker::PhantomData;
use std::path::PathBuf;

use serde::Deserialize;

use crate::{Era, ValueRef};

/// The top level of `warden.toml`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct RawConfig {
    /// `listen`: socket address of the Streamable HTTP face.
    pub listen: Option<String>,
    /// `data_dir`: pins, keys, approvals, embedded store.
    pub data_dir: Option<PathBuf>,
    /// `audit_log`: the audit log file.
    pub audit_log: Option<PathBuf>,
    /// `log_level`: log filter.
    pub log_level: Option<String>,
    /// `allowed_hosts`: accepted `Host` headers.
    pub allowed_hosts: Option<Vec<String>>,
    /// `allowed_origins`: accepted `Origin` headers.
    pub allowed_origins: Option<Vec<String>>,
    /// `cors_origins`: origins whose pages may read the answers.
    pub cors_origins: Option<Vec<String>>,
    /// `public_url`: the gateway's canonical URL.
    pub public_url: Option<String>,
    /// `insecure_allow_unauthenticated_non_loopback`.
    pub insecure_allow_unauthenticated_non_loopback: Option<bool>,
    /// `[limits]`.
    pub limits: Option<RawLimits>,
    /// `[http]`.
    pub http: Option<RawHttp>,
    /// `[upstreams.<name>]`, in file order.
    pub upstreams: Option<RawMap<RawUpstream>>,
    /// `[audit]`.
    pub audit: Option<crate::audit::RawAudit>,
    /// `[auth]`.
    pub auth: Option<crate::auth::RawAuth>,
    /// `pinning`: default tool-definition pinning mode of every upstream (and of `run`).
    pub pinning: Option<crate::pinning::PinningMode>,
    /// `command_pinning`: default command pinning mode of every stdio upstream (and of `run`).
    pub command_pinning: Option<crate::pinning::PinningMode>,
    /// `[content]`: content guards of every upstream (and of `run`).
    pub content: Option<crate::content::RawContent>,
    /// `[policy]`.
    pub policy: Option<crate::policy::RawPolicy>,
    /// `[rate_limit]`.
    pub rate_limit: Option<crate::policy::RawRateLimit>,
    /// `[arguments]`.
    pub arguments: Option<crate::policy::RawArguments>,
    /// `[sandbox]`: defaults of every stdio upstream's sandbox.
    pub sandbox: Option<crate::sandbox::RawSandbox>,
    /// `[metrics]`: the Prometheus `/metrics` listener.
    pub metrics: Option<crate::metrics::RawMetrics>,
    /// `[alerts]`: anomaly rules and alert sinks.
    pub alerts: Option<crate::alerts::RawAlerts>,
    /// `[tracing]`: OpenTelemetry trace export.
    pub tracing: Option<crate::tracing::RawTracing>,
}

/// `[limits]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct RawLimits {
    /// `max_message_bytes`.
    pub max_message_bytes: Option<u64>,
    /// `max_depth`.
    pub max_depth: Option<u64>,
    /// `max_line_bytes`.
    pub max_line_bytes: Option<u64>,
    /// `max_body_bytes`.
    pub max_body_bytes: Option<u64>,
    /// `stdio_max_in_flight`.
    pub stdio_max_in_flight: Option<u64>,
    /// `stdio_max_queued`.
    pub stdio_max_queued: Option<u64>,
    /// `stdio_max_queued_bytes`.
    pub stdio_max_queued_bytes: Option<u64>,
}

/// `[http]`. Durations are humantime strings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct RawHttp {
    /// `header_read_timeout`.
    pub header_read_timeout: Option<RawDuration>,
    /// `request_timeout`.
    pub request_timeout: Option<RawDuration>,
    /// `session_idle_timeout`.
    pub session_idle_timeout: Option<RawDuration>,
    /// `session_max_lifetime`.
    pub session_max_lifetime: Option<RawDuration>,
    /// `max_sessions`.
    pub max_sessions: Option<u64>,
    /// `max_streams_per_session`.
    pub max_streams_per_session: Option<u64>,
    /// `sse_keepalive`.
    pub sse_keepalive: Option<RawDuration>,
    /// `sse_replay_buffer`.
    pub sse_replay_buffer: Option<u64>,
    /// `tls_cert`.
    pub tls_cert: Option<PathBuf>,
    /// `tls_key`.
    pub tls_key: Option<PathBuf>,
}

/// `[upstreams.<name>]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct RawUpstream {
    /// `command`: program of a stdio upstream.
    pub command: Option<String>,
    /// `args`.
    pub args: Option<Vec<String>>,
    /// `env`: extra environment of the child.
    pub env: Option<RawMap<ValueRef>>,
    /// `cwd`: working directory of the child.
    pub cwd: Option<PathBuf>,
    /// `url`: endpoint of a remote upstream.
    pub url: Option<String>,
    /// `headers`: extra request headers.
    pub headers: Option<RawMap<ValueRef>>,
    /// `ca_file`: PEM certificates an https upstream's certificate may chain to, besides the
    /// built-in roots.
    pub ca_file: Option<PathBuf>,
    /// `client_cert`: PEM certificate chain presented to an https upstream that asks for one.
    pub client_cert: Option<PathBuf>,
    /// `client_key`: the PEM private key of `client_cert`.
    pub client_key: Option<PathBuf>,
    /// `era`.
    pub era: Option<Era>,
    /// `request_timeout`.
    pub request_timeout: Option<RawDuration>,
    /// `startup_timeout`.
    pub startup_timeout: Option<RawDuration>,
    /// `shutdown_grace`.
    pub shutdown_grace: Option<RawDuration>,
    /// `enabled`.
    pub enabled: Option<bool>,
    /// `namespace`.
    pub namespace: Option<bool>,
    /// `pinning`.
    pub pinning: Option<crate::pinning::PinningMode>,
    /// `command_pinning`.
    pub command_pinning: Option<crate::pinning::PinningMode>,
    /// `[upstreams.<name>.content]`: this upstream's content guard overrides.
    pub content: Option<crate::content::RawContent>,
    /// `[upstreams.<name>.sandbox]`: this stdio upstream's sandbox overrides.
    pub sandbox: Option<crate::sandbox::RawSandbox>,
    /// `[upstreams.<name>.lifecycle]`: restarts, health checks, call and stderr limits.
    pub lifecycle: Option<crate::lifecycle::RawLifecycle>,
}

/// A duration as written, such as `"30s"`; parsed with `humantime` during validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawDuration(pub String);

impl<'de> Deserialize<'de> for RawDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = RawDuration;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // Shown after "invalid type: integer `30`, expected", the usual mistake.
                f.write_str("a duration string such as \"30s\" or \"5m\"")
            }

            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<RawDuration, E> {
                Ok(RawDuration(value.to_owned()))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// A TOML table whose keys are names, kept in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMap<V>(pub Vec<(String, V)>);

impl<V> Default for RawMap<V> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for RawMap<V> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> serde::de::Visitor<'de> for Visitor<V> {
            type Value = RawMap<V>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<RawMap<V>, A::Error> {
                // TOML itself refuses duplicate keys, so a Vec loses nothing.
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(RawMap(entries))
            }
        }
        deserializer.deserialize_map(Visitor(PhantomData))
    }
}
