//! The validated configuration: real types, every default filled in.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

use crate::defaults::*;
use crate::env::{self, EnvSource};
use crate::error::{ConfigError, ConfigErrorKind, ConfigErrors};
use crate::{HostAllowlist, OriginAllowlist, ValueRef};

/// A validated `warden.toml`.
///
/// `Config::default()` is the zero configuration of `mcp-warden run`: every default, no
/// upstreams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Socket address of the Streamable HTTP face (`serve`), served at `/mcp`.
    pub listen: SocketAddr,
    /// Data directory from the file; see [`Config::resolve_data_dir`] for the one in force.
    pub data_dir: Option<PathBuf>,
    /// Audit log path from the file; see [`Config::resolve_audit_log`] for the one in force.
    pub audit_log: Option<PathBuf>,
    /// Log filter from the file; see [`Config::resolve_log_filter`] for the one in force.
    pub log_level: Option<String>,
    /// `Host` headers the HTTP face accepts.
    pub allowed_hosts: HostAllowlist,
    /// `Origin` headers the HTTP face accepts.
    pub allowed_origins: OriginAllowlist,
    /// Origins whose pages may make cross-origin requests (CORS); each is within
    /// `allowed_origins`. Empty: none.
    pub cors_origins: OriginAllowlist,
    /// The gateway's canonical URL as clients reach it (for OAuth metadata).
    pub public_url: Option<Url>,
    /// Parsed and documented only: meant to allow serving without authentication on a
    /// non-loopback address.
    pub insecure_allow_unauthenticated_non_loopback: bool,
    /// Size and nesting limits on messages.
    pub limits: LimitsConfig,
    /// The Streamable HTTP face.
    pub http: HttpConfig,
    /// The upstream servers, in file order.
    pub upstreams: Vec<UpstreamConfig>,
    /// `[audit]`: the audit log (on by default; see `docs/audit.md`).
    pub audit: crate::audit::AuditConfig,
    /// `[auth]`: authentication of the HTTP face (disabled by default).
    pub auth: crate::auth::AuthConfig,
    /// `pinning`: tool-definition pinning of upstreams without their own `pinning`, and of
    /// `run` (default `block`; see `docs/pinning.md`).
    pub pinning: crate::pinning::PinningMode,
    /// `command_pinning`: command pinning of stdio upstreams without their own, and of `run`
    /// (default: the top-level `pinning`; see `docs/pinning.md` and
    /// [`Config::command_pinning_of`]).
    pub command_pinning: Option<crate::pinning::PinningMode>,
    /// `[content]`: content guards of upstreams without their own, and of `run` (see
    /// `docs/guards.md` and [`Config::content_of`]).
    pub content: crate::content::ContentConfig,
    /// `[policy]`: authorization; `None` means no policy (everything is allowed).
    pub policy: Option<crate::policy::PolicyConfig>,
    /// `[rate_limit]`: token buckets and concurrency caps (none by default).
    pub rate_limit: crate::policy::RateLimitConfig,
    /// `[arguments]`: argument validation (schema validation on by default).
    pub arguments: crate::policy::ArgumentsConfig,
    /// `[sandbox]`: the sandbox of every stdio upstream (on by default; see
    /// `docs/sandbox.md` and [`Config::sandbox_of`]).
    pub sandbox: crate::sandbox::SandboxConfig,
    /// `[metrics]`: the Prometheus `/metrics` listener (off by default; see
    /// `docs/observability.md`).
    pub metrics: crate::metrics::MetricsConfig,
    /// `[alerts]`: anomaly rules over the audit stream and their sinks (off by default; see
    /// `docs/alerts.md`).
    pub alerts: crate::alerts::AlertsConfig,
    /// `[tracing]`: OpenTelemetry trace export over OTLP/HTTP; `None` (the default) traces
    /// nothing and leaves requests as they are (see `docs/tracing.md`).
    pub tracing: Option<crate::tracing::TracingConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN,
            data_dir: None,
            audit_log: None,
            log_level: None,
            allowed_hosts: HostAllowlist::Loopback,
            allowed_origins: OriginAllowlist::default(),
            cors_origins: OriginAllowlist::new(Vec::new()),
            public_url: None,
            insecure_allow_unauthenticated_non_loopback: false,
            limits: LimitsConfig::default(),
            http: HttpConfig::default(),
            upstreams: Vec::new(),
            audit: crate::audit::AuditConfig::default(),
            auth: crate::auth::AuthConfig::default(),
            pinning: crate::pinning::PinningMode::default(),
            command_pinning: None,
            content: crate::content::ContentConfig::default(),
            policy: None,
            rate_limit: crate::policy::RateLimitConfig::default(),
            arguments: crate::policy::ArgumentsConfig::default(),
            sandbox: crate::sandbox::SandboxConfig::default(),
            metrics: crate::metrics::MetricsConfig::default(),
            alerts: crate::alerts::AlertsConfig::default(),
            tracing: None,
        }
    }
}

impl Config {
    /// The sandbox of a stdio upstream: `[sandbox]` with its `[upstreams.<name>.sandbox]`.
    pub fn sandbox_of(&self, upstream: &StdioUpstreamConfig) -> crate::sandbox::SandboxConfig {
        self.sandbox.with(&upstream.sandbox)
    }
}

/// `[limits]`: bounds on what a peer can make the gateway hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Largest JSON-RPC message, in bytes.
    pub max_message_bytes: NonZeroUsize,
    /// Deepest JSON nesting.
    pub max_depth: NonZeroUsize,
    /// Longest stdio line (one message plus its newline), in bytes.
    pub max_line_bytes: NonZeroUsize,
    /// Largest HTTP request or response body, in bytes.
    pub max_body_bytes: NonZeroUsize,
    /// Requests a stdio client (`run`) may have handled at once.
    pub stdio_max_in_flight: NonZeroUsize,
    /// Requests a stdio client may have waiting beyond those; `0` refuses them at once.
    pub stdio_max_queued: usize,
    /// Bytes of waiting stdio requests before further ones are refused.
    pub stdio_max_queued_bytes: NonZeroUsize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let max_message_bytes = const { nonzero(DEFAULT_MAX_MESSAGE_BYTES) };
        Self {
            max_message_bytes,
            max_depth: const { nonzero(DEFAULT_MAX_DEPTH) },
            max_line_bytes: max_message_bytes,
            max_body_bytes: max_message_bytes,
            stdio_max_in_flight: const { nonzero(DEFAULT_STDIO_MAX_IN_FLIGHT) },
            stdio_max_queued: DEFAULT_STDIO_MAX_QUEUED,
            stdio_max_queued_bytes: const { nonzero(DEFAULT_STDIO_MAX_QUEUED_BYTES) },
        }
    }
}

/// `[http]`: the Streamable HTTP face.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// Time allowed to receive a request's head.
    pub header_read_timeout: Duration,
    /// Longest wait for an upstream's response, unless the upstream overrides it.
    pub request_timeout: Duration,
    /// A session unused this long ends.
    pub session_idle_timeout: Duration,
    /// A session ends this long after it began, even in use.
    pub session_max_lifetime: Duration,
    /// Most sessions at once.
    pub max_sessions: NonZeroUsize,
    /// Most SSE streams one session may hold open.
    pub max_streams_per_session: NonZeroUsize,
    /// Interval of keep-alive comments on idle SSE streams.
    pub sse_keepalive: Duration,
    /// Events kept per session for resumption; 0 turns resumption off.
    pub sse_replay_buffer: usize,
    /// TLS certificate and key; plain HTTP when `None`.
    pub tls: Option<TlsConfig>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            session_idle_timeout: DEFAULT_SESSION_IDLE_TIMEOUT,
            session_max_lifetime: DEFAULT_SESSION_MAX_LIFETIME,
            max_sessions: const { nonzero(DEFAULT_MAX_SESSIONS) },
            max_streams_per_session: const { nonzero(DEFAULT_MAX_STREAMS_PER_SESSION) },
            sse_keepalive: DEFAULT_SSE_KEEPALIVE,
            sse_replay_buffer: DEFAULT_SSE_REPLAY_BUFFER,
            tls: None,
        }
    }
}

/// `tls_cert` and `tls_key`, which come together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// `[upstreams.<name>]`: one MCP server behind the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// The name: 1 to 32 ASCII letters, digits or `-`; prefixes its tools as `<name>__<tool>`.
    pub name: String,
    /// How to reach it.
    pub transport: UpstreamTransport,
    /// Which protocol era to speak.
    pub era: Era,
    /// Longest wait for its response (this upstream's `request_timeout`, else
    /// `http.request_timeout`).
    pub request_timeout: Duration,
    /// Time for it to start and answer `initialize`.
    pub startup_timeout: Duration,
    /// Whether the gateway uses it.
    pub enabled: bool,
    /// Whether `serve` exposes this upstream's tools and prompts as `<name>__<item>` (the
    /// default) or under their own names.
    pub namespace: bool,
    /// This upstream's `pinning`; `None` means the top-level `pinning` (see
    /// [`Config::pinning_of`]).
    pub pinning: Option<crate::pinning::PinningMode>,
    /// This upstream's `command_pinning`; see [`Config::command_pinning_of`].
    pub command_pinning: Option<crate::pinning::PinningMode>,
    /// This upstream's `[content]` keys; unset keys fall back to the top-level `[content]`
    /// (see [`Config::content_of`]).
    pub content: Option<crate::content::RawContent>,
    /// `[upstreams.<name>.lifecycle]`, defaults filled in (see `docs/lifecycle.md`).
    pub lifecycle: crate::lifecycle::LifecycleConfig,
}

/// How the gateway reaches an upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamTransport {
    /// A child process spoken to over stdin/stdout (`command`).
    Stdio(StdioUpstreamConfig),
    /// A remote Streamable HTTP server (`url`).
    Http(HttpUpstreamConfig),
}

/// A stdio upstream: the child process to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StdioUpstreamConfig {
    /// The program, looked up in `PATH` when it has no `/`.
    pub command: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Variables added to its environment, in file order; resolved when it starts.
    pub env: Vec<(String, ValueRef)>,
    /// Its working directory.
    pub cwd: Option<PathBuf>,
    /// Time between closing its stdin and SIGTERM, and between SIGTERM and SIGKILL.
    pub shutdown_grace: Duration,
    /// `[upstreams.<name>.sandbox]`; see [`Config::sandbox_of`].
    pub sandbox: crate::sandbox::SandboxOverride,
}

/// A remote Streamable HTTP upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUpstreamConfig {
    /// The MCP endpoint (http or https, no credentials, no fragment).
    pub url: Url,
    /// Headers added to every request, in file order; resolved when first needed.
    pub headers: Vec<(String, ValueRef)>,
    /// PEM certificates trusted as roots for this upstream's `https` certificate, besides the
    /// built-in Mozilla roots (an internal certificate authority).
    pub ca_file: Option<PathBuf>,
    /// A client certificate (PEM chain, PEM key) presented when the upstream asks for one
    /// (mutual TLS).
    pub client_identity: Option<TlsConfig>,
}

/// Which protocol era an upstream speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Era {
    /// Detect: probe with `server/discover`, fall back to `initialize`.
    #[default]
    Auto,
    /// Initialize-based revisions (2024-11-05 on stdio, 2025-03-26 .. 2025-11-25): no probe.
    Legacy,
    /// The stateless revision 2026-07-28 and later: no `initialize`.
    Modern,
}

impl Era {
    /// The name as written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Legacy => "legacy",
            Self::Modern => "modern",
        }
    }
}

impl std::fmt::Display for Era {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Era {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Era;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("\"auto\", \"legacy\" or \"modern\"")
            }

            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Era, E> {
                [Era::Auto, Era::Legacy, Era::Modern]
                    .into_iter()
                    .find(|era| era.as_str() == value)
                    .ok_or_else(|| E::invalid_value(serde::de::Unexpected::Str(value), &self))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// Why the data directory cannot be determined.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// No flag, variable or key names one, and the platform default needs an unset variable.
    #[error(
        "cannot determine the data directory: pass --data-dir, set MCP_WARDEN_DATA_DIR or data_dir, or set HOME"
    )]
    NoDataDir,
}

impl Config {
    /// Reads and validates a configuration file. Errors name the file as `path` displays.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigErrors> {
        let path = path.as_ref();
        let file = path.display().to_string();
        let fail = |line, kind| {
            Err(ConfigErrors::new(vec![ConfigError {
                file: file.clone(),
                line,
                field: None,
                kind,
            }]))
        };
        let bytes = match read_bounded(path) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                return fail(
                    None,
                    ConfigErrorKind::TooLarge {
                        limit: MAX_CONFIG_FILE_BYTES,
                    },
                );
            }
            Err(source) => return fail(None, ConfigErrorKind::Read { source }),
        };
        match String::from_utf8(bytes) {
            Ok(text) => Self::parse(&text, &file),
            Err(error) => {
                let valid = &error.as_bytes()[..error.utf8_error().valid_up_to()];
                let line = valid.iter().filter(|&&byte| byte == b'\n').count() + 1;
                fail(Some(line), ConfigErrorKind::NotUtf8)
            }
        }
    }

    /// Parses and validates configuration text. `file` names the source in errors, such as
    /// `warden.toml`.
    ///
    /// ```
    /// let config = warden_config::Config::parse(
    ///     "[upstreams.docs]\nurl = \"https://mcp.example.com/mcp\"\n",
    ///     "warden.toml",
    /// )?;
    /// assert_eq!(config.upstreams[0].name, "docs");
    ///
    /// let errors = warden_config::Config::parse("listen = 8080\n", "warden.toml").unwrap_err();
    /// assert_eq!(
    ///     errors.to_string(),
    ///     "warden.toml:1: listen: invalid type: integer `8080`, expected a string"
    /// );
    /// # Ok::<(), warden_config::ConfigErrors>(())
    /// ```
    pub fn parse(text: &str, file: &str) -> Result<Self, ConfigErrors> {
        crate::parse::parse(text, file)
    }

    /// The upstream called `name`.
    pub fn upstream(&self, name: &str) -> Option<&UpstreamConfig> {
        self.upstreams.iter().find(|upstream| upstream.name == name)
    }

    /// The data directory in force: `flag` (`--data-dir`), else `MCP_WARDEN_DATA_DIR`, else
    /// `data_dir`, else [`env::default_data_dir`].
    pub fn resolve_data_dir(
        &self,
        flag: Option<&Path>,
        env: &dyn EnvSource,
    ) -> Result<PathBuf, PathError> {
        flag.map(Path::to_path_buf)
            .or_else(|| env.path(env::MCP_WARDEN_DATA_DIR))
            .or_else(|| self.data_dir.clone())
            .or_else(|| env::default_data_dir(env))
            .ok_or(PathError::NoDataDir)
    }

    /// The audit log in force: `flag` (`--audit-log`), else `MCP_WARDEN_AUDIT_LOG`, else
    /// `audit_log`, else [`DEFAULT_AUDIT_LOG_FILE_NAME`] in `data_dir` (the resolved one).
    pub fn resolve_audit_log(
        &self,
        flag: Option<&Path>,
        data_dir: &Path,
        env: &dyn EnvSource,
    ) -> PathBuf {
        flag.map(Path::to_path_buf)
            .or_else(|| env.path(env::MCP_WARDEN_AUDIT_LOG))
            .or_else(|| self.audit_log.clone())
            .unwrap_or_else(|| data_dir.join(DEFAULT_AUDIT_LOG_FILE_NAME))
    }

    /// The log filter in force: `MCP_WARDEN_LOG`, else `log_level`; `None` leaves the choice
    /// to the binary.
    pub fn resolve_log_filter(&self, env: &dyn EnvSource) -> Option<String> {
        env.var(env::MCP_WARDEN_LOG)
            .or_else(|| self.log_level.clone())
    }
}

/// The configuration file to load: `flag` (`--config`), else `MCP_WARDEN_CONFIG`, else none.
pub fn resolve_config_path(flag: Option<&Path>, env: &dyn EnvSource) -> Option<PathBuf> {
    flag.map(Path::to_path_buf)
        .or_else(|| env.path(env::MCP_WARDEN_CONFIG))
}

/// The file's bytes, or `None` when it exceeds [`MAX_CONFIG_FILE_BYTES`].
fn read_bounded(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_CONFIG_FILE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    let too_large = u64::try_from(bytes.len()).map_or(true, |len| len > MAX_CONFIG_FILE_BYTES);
    Ok((!too_large).then_some(bytes))
}

/// `n` as a `NonZeroUsize`; only called in `const` blocks, so a zero fails the build.
pub(crate) const fn nonzero(n: usize) -> NonZeroUsize {
    match NonZeroUsize::new(n) {
        Some(n) => n,
        None => panic!("a default limit is zero"),
    }
}
