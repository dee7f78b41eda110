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

mod allow;
mod audit;
mod auth;
mod config;
mod content;
mod defaults;
pub mod env;
mod error;
mod parse;
mod pinning;
mod policy;
pub mod raw;
mod sandbox;
mod validate;
mod value_ref;

pub use allow::{
    HostAllowlist, HostPattern, OriginAllowlist, OriginPattern, OriginScheme, PortMatch,
};
pub use audit::{
    AuditCapture, AuditConfig, AuditFlush, AuditOnFull, DEFAULT_AUDIT_CHECKPOINT_EVERY,
    DEFAULT_AUDIT_CHECKPOINT_INTERVAL, DEFAULT_AUDIT_DURABLE_TIMEOUT, DEFAULT_AUDIT_QUEUE,
    DEFAULT_AUDIT_ROTATE_BYTES, DEFAULT_AUDIT_SYNC_INTERVAL, MAX_AUDIT_QUEUE, RawAudit,
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
pub use content::{ContentConfig, ContentMode, DefinitionMode, RawContent, SanitizeSetting};
pub use defaults::*;
pub use error::{ConfigError, ConfigErrorKind, ConfigErrors, FieldPath, PathSegment};
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
pub use value_ref::{ENV_PREFIX, FILE_PREFIX, ValueRef, ValueRefError};

/// Checks an upstream name against the naming rule (`^[a-zA-Z0-9-]{1,32}$`), returning the
/// broken rule. Names contain no `_`, so `<upstream>__<tool>` splits at the first `__`.
pub fn check_upstream_name(name: &str) -> Result<(), &'static str> {
    validate::check_upstream_name(name)
}
