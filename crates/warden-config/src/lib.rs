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
mod config;
mod defaults;
pub mod env;
mod error;
mod parse;
pub mod raw;
mod validate;
mod value_ref;

pub use allow::{
    HostAllowlist, HostPattern, OriginAllowlist, OriginPattern, OriginScheme, PortMatch,
};
pub use config::{
    Config, Era, HttpConfig, HttpUpstreamConfig, LimitsConfig, PathError, StdioUpstreamConfig,
    TlsConfig, UpstreamConfig, UpstreamTransport, resolve_config_path,
};
pub use defaults::*;
pub use error::{ConfigError, ConfigErrorKind, ConfigErrors, FieldPath, PathSegment};
pub use raw::RawConfig;
pub use value_ref::{ENV_PREFIX, FILE_PREFIX, ValueRef, ValueRefError};

/// Checks an upstream name against the naming rule (`^[a-zA-Z0-9-]{1,32}$`), returning the
/// broken rule. Names contain no `_`, so `<upstream>__<tool>` splits at the first `__`.
pub fn check_upstream_name(name: &str) -> Result<(), &'static str> {
    validate::check_upstream_name(name)
}
