//! `warden.toml` -> validated [`Config`], the registry of environment variables mcp-warden
//! reads ([module `env`](crate::env)), and references to credentials ([`ValueRef`]).
//!
//! This crate sits before the request path: the binary loads a [`Config`] once at startup and
//! every other crate reads typed values from it. It checks everything it can without touching
//! the outside world, and reports every problem at once, each naming file, line and field:
//!
//! ```text
//! warden.toml:14: upstreams.github.url: unsupported scheme "ftp"; expected http or https
//! ```
//!
//! It must never resolve a credential reference, read a secret file, spawn a process or open a
//! socket; its only I/O is reading the configuration file in [`Config::load`]. It never reads
//! the process environment except through an [`env::EnvSource`] the caller passes in.
//!
//! Every key, default and error is described in `docs/configuration.md`.
#![forbid(unsafe_code)]

mod alerts;
mod allow;
mod audit;
mod auth;
mod command_pinning;
mod config;
mod content;
mod defaults;
pub mod egress_allow;
pub mod env;
mod error;
mod lifecycle;
mod metrics;
mod parse;
mod pinning;
mod policy;
pub mod raw;
mod sandbox;
mod tracing;
mod validate;
mod value_ref;

pub use alerts::{
    AlertLogConfig, AlertSeverity, AlertsConfig, DEFAULT_ALERTS_QUEUE, DEFAULT_UNTRUSTED_TOOLS,
    DEFAULT_WEBHOOK_RETRIES, DEFAULT_WEBHOOK_TIMEOUT, MAX_ALERT_THRESHOLD, MAX_ALERTS_QUEUE,
    MAX_WEBHOOK_RETRIES, MAX_WEBHOOK_TIMEOUT, RawAlertLog, RawAlerts, RawSequenceRule,
    RawThresholdRule, RawWebhook, SequenceRule, ThresholdRule, WebhookConfig,
};
pub use allow::{
    HostAllowlist, HostPattern, OriginAllowlist, OriginPattern, OriginScheme, PortMatch,
};
pub use audit::{
    AuditCapture, AuditConfig, AuditFlush, AuditOnFull, DEFAULT_AUDIT_CHECKPOINT_EVERY,
    DEFAULT_AUDIT_CHECKPOINT_INTERVAL, DEFAULT_AUDIT_DURABLE_TIMEOUT, DEFAULT_AUDIT_LINGER,
    DEFAULT_AUDIT_QUEUE, DEFAULT_AUDIT_ROTATE_BYTES, DEFAULT_AUDIT_SYNC_INTERVAL, MAX_AUDIT_QUEUE,
    RawAudit,
};
pub use auth::{
    ApiKeysConfig, AuthConfig, AuthConfigError, DEFAULT_API_KEY_REFRESH, DEFAULT_AUTH_HTTP_TIMEOUT,
    DEFAULT_AUTH_LEEWAY, DEFAULT_INTROSPECTION_CACHE_TTL, DEFAULT_JWKS_MAX_AGE,
    DEFAULT_JWKS_MIN_REFRESH, DEFAULT_ROLES_CLAIMS, IntrospectionConfig, JwsAlgorithm,
    MAX_AUTH_LEEWAY, OAuthConfig, RawAuth, RawIntrospection, is_scope_token,
};
pub use config::{
    Config, Era, HttpConfig, HttpUpstreamConfig, LimitsConfig, PathError, StdioUpstreamConfig,
    TlsConfig, UpstreamConfig, UpstreamTransport, resolve_config_path,
};
pub use content::{
    ContentConfig, ContentMode, DefinitionMode, HiddenTagsSetting, RawContent, SanitizeSetting,
};
pub use defaults::*;
pub use error::{ConfigError, ConfigErrorKind, ConfigErrors, FieldPath, PathSegment};
pub use lifecycle::{
    DEFAULT_BACKOFF_INITIAL, DEFAULT_BACKOFF_JITTER, DEFAULT_BACKOFF_MAX, DEFAULT_DOWN_RETRY,
    DEFAULT_HEALTH_FAILURES, DEFAULT_HEALTH_INTERVAL, DEFAULT_HEALTH_TIMEOUT,
    DEFAULT_MAX_CALL_DURATION, DEFAULT_MAX_RESTARTS, DEFAULT_RESTART_WINDOW, DEFAULT_STDERR_BUDGET,
    DEFAULT_STDERR_WINDOW, LifecycleConfig, RawLifecycle, RestartPolicy, UnhealthyAction,
};
pub use metrics::{
    DEFAULT_METRICS_MAX_LABEL_VALUES, MAX_METRICS_LABEL_VALUES, MetricsConfig, RawMetrics,
};
pub use pinning::PinningMode;
pub use policy::{
    ArgumentRule, ArgumentsConfig, DEFAULT_HOST_ARGUMENTS, DEFAULT_MAX_SCHEMA_BYTES,
    DEFAULT_MAX_SCHEMA_DEPTH, DEFAULT_MAX_STRING_BYTES, DEFAULT_PATH_ARGUMENTS,
    DEFAULT_RESOLVE_TIMEOUT, IMPLICIT_ROLES, PolicyConfig, RateLimitConfig, RateSpec,
    RawArgumentRule, RawArguments, RawPolicy, RawRate, RawRateLimit, RawRole, RoleConfig,
    parse_rate,
};
pub use raw::RawConfig;
pub use sandbox::{
    DEFAULT_SANDBOX_CPU_TIME, DEFAULT_SANDBOX_FILE_SIZE, DEFAULT_SANDBOX_MEMORY,
    DEFAULT_SANDBOX_OPEN_FILES, DEFAULT_SANDBOX_PROCESSES, DEFAULT_SANDBOX_TMP_SIZE, RawSandbox,
    SandboxConfig, SandboxNetwork, SandboxOverride, SizeError, parse_size,
};
pub use sandbox::{RawNetwork, RawNetworkAllow};
pub use tracing::{
    DEFAULT_TRACING_EXPORT_INTERVAL, DEFAULT_TRACING_MAX_BATCH, DEFAULT_TRACING_QUEUE,
    DEFAULT_TRACING_SERVICE_NAME, DEFAULT_TRACING_TIMEOUT, MAX_TRACING_QUEUE,
    MAX_TRACING_SERVICE_NAME, RawTracing, SampleRatio, TracingConfig,
};
pub use value_ref::{
    ENV_PREFIX, FILE_PREFIX, KEYRING_PREFIX, MAX_KEYRING_NAME, ValueRef, ValueRefError,
};

/// Checks an upstream name against the naming rule (`^[a-zA-Z0-9-]{1,32}$`), returning the
/// broken rule. Names contain no `_`, so `<upstream>__<tool>` splits at the first `__`.
pub fn check_upstream_name(name: &str) -> Result<(), &'static str> {
    validate::check_upstream_name(name)
}
