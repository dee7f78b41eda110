//! `RawConfig` -> `Config`: every check, every error collected, defaults filled in.
//!
//! Errors carry a [`FieldPath`]; `parse.rs` turns the path into a line.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use crate::config::{
    Config, HttpConfig, HttpUpstreamConfig, LimitsConfig, StdioUpstreamConfig, TlsConfig,
    UpstreamConfig, UpstreamTransport,
};
use crate::defaults::*;
use crate::error::{ConfigErrorKind, FieldPath};
use crate::raw::{RawConfig, RawDuration, RawHttp, RawLimits, RawMap, RawUpstream};
use crate::value_ref::{ValueRef, is_env_name};
use crate::{HostAllowlist, HostPattern, OriginAllowlist, OriginPattern};

/// Headers the gateway sets itself; configuring them would break framing or sessions.
const MANAGED_HEADERS: &[&str] = &[
    "accept",
    "connection",
    "content-length",
    "content-type",
    "host",
    "keep-alive",
    "last-event-id",
    "mcp-protocol-version",
    "mcp-session-id",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// A validation error before it is located in the file.
pub(crate) type Problem = (FieldPath, ConfigErrorKind);

/// Validates `raw`. `rejected` lists fields the schema pass already reported and removed, so
/// their absence is not reported again (a bad `url` is not also a missing one). The returned
/// `Config` is meaningful only when the problem list is empty.
pub(crate) fn validate(raw: RawConfig, rejected: &[FieldPath]) -> (Config, Vec<Problem>) {
    let mut validator = Validator {
        problems: Vec::new(),
        rejected,
    };
    let config = validator.config(raw);
    (config, validator.problems)
}

pub(crate) struct Validator<'a> {
    problems: Vec<Problem>,
    rejected: &'a [FieldPath],
}

impl Validator<'_> {
    pub(crate) fn report(&mut self, path: FieldPath, kind: ConfigErrorKind) {
        self.problems.push((path, kind));
    }

    pub(crate) fn was_rejected(&self, path: &FieldPath) -> bool {
        self.rejected
            .iter()
            .any(|rejected| rejected.starts_with(path))
    }

    fn config(&mut self, raw: RawConfig) -> Config {
        let root = FieldPath::root();
        let defaults = Config::default();
        let listen = raw.listen.map_or(defaults.listen, |value| {
            value.parse::<SocketAddr>().unwrap_or_else(|source| {
                self.report(
                    root.key("listen"),
                    ConfigErrorKind::InvalidSocketAddr { value, source },
                );
                defaults.listen
            })
        });
        let data_dir = self.path(root.key("data_dir"), raw.data_dir);
        let audit_log = self.path(root.key("audit_log"), raw.audit_log);
        let log_level = raw.log_level.filter(|level| {
            let ok = !level.trim().is_empty();
            if !ok {
                self.report(root.key("log_level"), ConfigErrorKind::Empty);
            }
            ok
        });
        let allowed_hosts = match raw.allowed_hosts {
            None => HostAllowlist::Loopback,
            Some(hosts) => self.allowed_hosts(&root.key("allowed_hosts"), hosts),
        };
        let allowed_origins = match raw.allowed_origins {
            None => OriginAllowlist::default(),
            Some(origins) => self.allowed_origins(&root.key("allowed_origins"), origins),
        };
        let cors_origins = raw.cors_origins.map_or_else(
            || OriginAllowlist::new(Vec::new()),
            |origins| self.cors_origins(&root.key("cors_origins"), origins, &allowed_origins),
        );
        let public_url = raw
            .public_url
            .and_then(|value| self.http_url(root.key("public_url"), value));
        let limits = self.limits(&root.key("limits"), raw.limits.unwrap_or_default());
        let http = self.http(&root.key("http"), raw.http.unwrap_or_default());
        let sandbox = crate::sandbox::global(
            &root.key("sandbox"),
            raw.sandbox.unwrap_or_default(),
            &mut self.problems,
        );
        let upstreams = self.upstreams(
            &root.key("upstreams"),
            raw.upstreams.unwrap_or_default(),
            http.request_timeout,
        );
        let auth = raw.auth.map_or_else(Default::default, |auth| {
            self.auth(&root.key("auth"), auth, public_url.as_ref())
        });
        if !auth.is_enabled() {
            self.cors_needs_auth(&root.key("cors_origins"), &cors_origins);
        }
        let audit_enabled = raw.audit.as_ref().and_then(|a| a.enabled) != Some(false);
        let metrics = crate::metrics::metrics(
            &root.key("metrics"),
            raw.metrics.unwrap_or_default(),
            audit_enabled,
            &mut self.problems,
        );
        let alerts = raw.alerts.map_or_else(Default::default, |a| {
            self.alerts(&root.key("alerts"), a, audit_enabled)
        });
        let tracing = raw
            .tracing
            .and_then(|t| self.tracing(&root.key("tracing"), t, audit_enabled));
        Config {
            listen,
            data_dir,
            audit_log,
            log_level,
            allowed_hosts,
            allowed_origins,
            cors_origins,
            public_url,
            insecure_allow_unauthenticated_non_loopback: raw
                .insecure_allow_unauthenticated_non_loopback
                .unwrap_or(false),
            limits,
            http,
            upstreams,
            audit: raw
                .audit
                .map_or_else(Default::default, |a| self.audit(&root.key("audit"), a)),
            auth,
            pinning: raw.pinning.unwrap_or_default(),
            command_pinning: raw.command_pinning,
            content: crate::content::ContentConfig::default()
                .with(&raw.content.unwrap_or_default()),
            policy: raw
                .policy
                .map(|p| crate::policy::policy(&root.key("policy"), p, &mut self.problems)),
            rate_limit: crate::policy::rate_limit(
                &root.key("rate_limit"),
                raw.rate_limit.unwrap_or_default(),
                &mut self.problems,
            ),
            arguments: crate::policy::arguments(
                &root.key("arguments"),
                raw.arguments.unwrap_or_default(),
                &mut self.problems,
            ),
            sandbox,
            metrics,
            alerts,
            tracing,
        }
    }

    fn allowed_hosts(&mut self, path: &FieldPath, hosts: Vec<String>) -> HostAllowlist {
        if hosts.is_empty() {
            self.report(
                path.clone(),
                ConfigErrorKind::EmptyList {
                    reason: "an empty list refuses every request; remove the key for the loopback default",
                },
            );
        }
        let mut patterns = Vec::new();
        for (index, value) in hosts.into_iter().enumerate() {
            match HostPattern::parse(&value) {
                Ok(pattern) => patterns.push(pattern),
                Err(reason) => {
                    self.report(
                        path.index(index),
                        ConfigErrorKind::InvalidHost { value, reason },
                    );
                }
            }
        }
        HostAllowlist::Only(patterns)
    }

    fn allowed_origins(&mut self, path: &FieldPath, origins: Vec<String>) -> OriginAllowlist {
        // An empty list is meaningful: no browser page may call the gateway.
        let mut patterns = Vec::new();
        for (index, value) in origins.into_iter().enumerate() {
            match OriginPattern::parse(&value) {
                Ok(pattern) => patterns.push(pattern),
                Err(reason) => {
                    self.report(
                        path.index(index),
                        ConfigErrorKind::InvalidOrigin { value, reason },
                    );
                }
            }
        }
        OriginAllowlist::new(patterns)
    }

    /// `cors_origins`: parsed like `allowed_origins`, and each entry must be within it (its
    /// requests would be refused with 403 before CORS applies).
    fn cors_origins(
        &mut self,
        path: &FieldPath,
        origins: Vec<String>,
        allowed: &OriginAllowlist,
    ) -> OriginAllowlist {
        let parsed = self.allowed_origins(path, origins.clone());
        for (index, value) in origins.into_iter().enumerate() {
            let Ok(pattern) = OriginPattern::parse(&value) else {
                continue;
            };
            if !allowed.covers(&pattern) {
                self.report(
                    path.index(index),
                    ConfigErrorKind::Invalid {
                        reason: format!(
                            "origin \"{value}\" is not within `allowed_origins`: its requests \
                             would be refused (403) before CORS applies; add it there too"
                        ),
                    },
                );
            }
        }
        parsed
    }

    /// Without authentication, a page of a CORS origin can call every tool as the anonymous
    /// caller: acceptable for pages served from this machine (a local inspector), refused for
    /// any other origin (any script on that site, or injected into it, would get that access).
    fn cors_needs_auth(&mut self, path: &FieldPath, cors: &OriginAllowlist) {
        for (index, pattern) in cors.patterns().iter().enumerate() {
            if !pattern.is_loopback() {
                self.report(
                    path.index(index),
                    ConfigErrorKind::Invalid {
                        reason: format!(
                            "origin \"{pattern}\" is not this machine's, and no [auth] method is \
                             configured: any script on that site could call every tool \
                             anonymously; configure `[auth]` (api_keys or an issuer) or remove it"
                        ),
                    },
                );
            }
        }
    }

    fn limits(&mut self, path: &FieldPath, raw: RawLimits) -> LimitsConfig {
        let defaults = LimitsConfig::default();
        let max_message_bytes = self.count(
            path.key("max_message_bytes"),
            raw.max_message_bytes,
            defaults.max_message_bytes,
            MAX_BYTES_LIMIT,
        );
        LimitsConfig {
            max_message_bytes,
            max_depth: self.count(
                path.key("max_depth"),
                raw.max_depth,
                defaults.max_depth,
                MAX_DEPTH_LIMIT,
            ),
            // A stdio line or an HTTP body carries one message, so the message limit is the
            // natural default for both.
            max_line_bytes: self.count(
                path.key("max_line_bytes"),
                raw.max_line_bytes,
                max_message_bytes,
                MAX_BYTES_LIMIT,
            ),
            max_body_bytes: self.count(
                path.key("max_body_bytes"),
                raw.max_body_bytes,
                max_message_bytes,
                MAX_BYTES_LIMIT,
            ),
            stdio_max_in_flight: self.count(
                path.key("stdio_max_in_flight"),
                raw.stdio_max_in_flight,
                defaults.stdio_max_in_flight,
                STDIO_MAX_IN_FLIGHT_LIMIT,
            ),
            stdio_max_queued: self.bounded(
                path.key("stdio_max_queued"),
                raw.stdio_max_queued,
                defaults.stdio_max_queued,
                0,
                STDIO_MAX_QUEUED_LIMIT,
            ),
            stdio_max_queued_bytes: self.count(
                path.key("stdio_max_queued_bytes"),
                raw.stdio_max_queued_bytes,
                defaults.stdio_max_queued_bytes,
                MAX_BYTES_LIMIT,
            ),
        }
    }

    /// A certificate file and its key file, which come together (`tls_cert`/`tls_key`,
    /// `client_cert`/`client_key`): both paths, or neither.
    fn cert_and_key(
        &mut self,
        path: &FieldPath,
        (cert_key, cert): (&'static str, Option<PathBuf>),
        (key_key, key): (&'static str, Option<PathBuf>),
    ) -> Option<TlsConfig> {
        match (cert, key) {
            (Some(cert), Some(key)) => {
                let cert = self.path(path.key(cert_key), Some(cert));
                let key = self.path(path.key(key_key), Some(key));
                cert.zip(key).map(|(cert, key)| TlsConfig { cert, key })
            }
            (Some(_), None) => {
                if !self.was_rejected(&path.key(key_key)) {
                    self.report(
                        path.key(cert_key),
                        ConfigErrorKind::TlsIncomplete {
                            present: cert_key,
                            missing: key_key,
                        },
                    );
                }
                None
            }
            (None, Some(_)) => {
                if !self.was_rejected(&path.key(cert_key)) {
                    self.report(
                        path.key(key_key),
                        ConfigErrorKind::TlsIncomplete {
                            present: key_key,
                            missing: cert_key,
                        },
                    );
                }
                None
            }
            (None, None) => None,
        }
    }

    fn http(&mut self, path: &FieldPath, raw: RawHttp) -> HttpConfig {
        let defaults = HttpConfig::default();
        let tls = self.cert_and_key(path, ("tls_cert", raw.tls_cert), ("tls_key", raw.tls_key));
        HttpConfig {
            header_read_timeout: self.duration(
                path.key("header_read_timeout"),
                raw.header_read_timeout,
                defaults.header_read_timeout,
            ),
            request_timeout: self.duration(
                path.key("request_timeout"),
                raw.request_timeout,
                defaults.request_timeout,
            ),
            session_idle_timeout: self.duration(
                path.key("session_idle_timeout"),
                raw.session_idle_timeout,
                defaults.session_idle_timeout,
            ),
            session_max_lifetime: self.duration(
                path.key("session_max_lifetime"),
                raw.session_max_lifetime,
                defaults.session_max_lifetime,
            ),
            max_sessions: self.count(
                path.key("max_sessions"),
                raw.max_sessions,
                defaults.max_sessions,
                MAX_SESSIONS_LIMIT,
            ),
            max_streams_per_session: self.count(
                path.key("max_streams_per_session"),
                raw.max_streams_per_session,
                defaults.max_streams_per_session,
                MAX_STREAMS_PER_SESSION_LIMIT,
            ),
            sse_keepalive: self.duration(
                path.key("sse_keepalive"),
                raw.sse_keepalive,
                defaults.sse_keepalive,
            ),
            sse_replay_buffer: self.bounded(
                path.key("sse_replay_buffer"),
                raw.sse_replay_buffer,
                defaults.sse_replay_buffer,
                0,
                MAX_SSE_REPLAY_BUFFER_LIMIT,
            ),
            tls,
        }
    }

    fn upstreams(
        &mut self,
        path: &FieldPath,
        raw: RawMap<RawUpstream>,
        request_timeout: Duration,
    ) -> Vec<UpstreamConfig> {
        raw.0
            .into_iter()
            .filter_map(|(name, upstream)| {
                self.upstream(path.key(name.as_str()), name, upstream, request_timeout)
            })
            .collect()
    }

    fn upstream(
        &mut self,
        path: FieldPath,
        name: String,
        raw: RawUpstream,
        default_request_timeout: Duration,
    ) -> Option<UpstreamConfig> {
        let name_ok = match check_upstream_name(&name) {
            Ok(()) => true,
            Err(reason) => {
                self.report(
                    path.clone(),
                    ConfigErrorKind::InvalidUpstreamName {
                        name: name.clone(),
                        reason,
                    },
                );
                false
            }
        };
        let request_timeout = self.duration(
            path.key("request_timeout"),
            raw.request_timeout,
            default_request_timeout,
        );
        let startup_timeout = self.duration(
            path.key("startup_timeout"),
            raw.startup_timeout,
            DEFAULT_STARTUP_TIMEOUT,
        );
        let transport = match (raw.command, raw.url) {
            (Some(_), Some(_)) => {
                self.report(path.clone(), ConfigErrorKind::CommandAndUrl);
                None
            }
            (None, None) => {
                // A `command` or `url` the schema pass refused was written; do not also call it
                // missing.
                if !self.was_rejected(&path.key("command")) && !self.was_rejected(&path.key("url"))
                {
                    self.report(path.clone(), ConfigErrorKind::NoCommandOrUrl);
                }
                None
            }
            (Some(command), None) => {
                if raw.headers.is_some() {
                    self.wrong_transport(&path, "headers", "HTTP", "url");
                }
                for (key, present) in [
                    ("ca_file", raw.ca_file.is_some()),
                    ("client_cert", raw.client_cert.is_some()),
                    ("client_key", raw.client_key.is_some()),
                ] {
                    if present {
                        self.wrong_transport(&path, key, "HTTP", "url");
                    }
                }
                let sandbox = crate::sandbox::upstream(
                    &path.key("sandbox"),
                    raw.sandbox.unwrap_or_default(),
                    &mut self.problems,
                );
                self.stdio(
                    &path,
                    command,
                    raw.args,
                    raw.env,
                    raw.cwd,
                    raw.shutdown_grace,
                )
                .map(|stdio| UpstreamTransport::Stdio(StdioUpstreamConfig { sandbox, ..stdio }))
            }
            (None, Some(url)) => {
                for (key, present) in [
                    ("args", raw.args.is_some()),
                    ("env", raw.env.is_some()),
                    ("cwd", raw.cwd.is_some()),
                    ("shutdown_grace", raw.shutdown_grace.is_some()),
                    ("sandbox", raw.sandbox.is_some()),
                ] {
                    if present {
                        self.wrong_transport(&path, key, "stdio", "command");
                    }
                }
                let url = self.http_url(path.key("url"), url);
                let headers = self.headers(&path.key("headers"), raw.headers.unwrap_or_default());
                let ca_file = self.path(path.key("ca_file"), raw.ca_file);
                let client_identity = self.cert_and_key(
                    &path,
                    ("client_cert", raw.client_cert),
                    ("client_key", raw.client_key),
                );
                url.map(|url| {
                    UpstreamTransport::Http(HttpUpstreamConfig {
                        url,
                        headers,
                        ca_file,
                        client_identity,
                    })
                })
            }
        };
        let lifecycle = crate::lifecycle::upstream(
            self,
            &path.key("lifecycle"),
            raw.lifecycle.unwrap_or_default(),
            matches!(transport, Some(UpstreamTransport::Stdio(_))),
        );
        let transport = transport.filter(|_| name_ok)?;
        Some(UpstreamConfig {
            name,
            transport,
            era: raw.era.unwrap_or_default(),
            request_timeout,
            startup_timeout,
            enabled: raw.enabled.unwrap_or(true),
            namespace: raw.namespace.unwrap_or(true),
            pinning: raw.pinning,
            command_pinning: raw.command_pinning,
            content: raw.content,
            lifecycle,
        })
    }

    fn wrong_transport(
        &mut self,
        path: &FieldPath,
        key: &'static str,
        applies_to: &'static str,
        requires: &'static str,
    ) {
        self.report(
            path.key(key),
            ConfigErrorKind::WrongTransportKey {
                key,
                applies_to,
                requires,
            },
        );
    }

    fn stdio(
        &mut self,
        path: &FieldPath,
        command: String,
        args: Option<Vec<String>>,
        env: Option<RawMap<ValueRef>>,
        cwd: Option<PathBuf>,
        shutdown_grace: Option<RawDuration>,
    ) -> Option<StdioUpstreamConfig> {
        let mut ok = true;
        if command.is_empty() {
            self.report(path.key("command"), ConfigErrorKind::Empty);
            ok = false;
        } else if command.contains('\0') {
            self.report(path.key("command"), ConfigErrorKind::ContainsNul);
            ok = false;
        }
        let args = args.unwrap_or_default();
        for (index, arg) in args.iter().enumerate() {
            if arg.contains('\0') {
                self.report(path.key("args").index(index), ConfigErrorKind::ContainsNul);
            }
        }
        let env_path = path.key("env");
        let env = env.unwrap_or_default().0;
        for (name, value) in &env {
            if !is_env_name(name) {
                self.report(
                    env_path.key(name.as_str()),
                    ConfigErrorKind::InvalidEnvName { name: name.clone() },
                );
            } else if matches!(value, ValueRef::Literal(literal) if literal.contains('\0')) {
                self.report(env_path.key(name.as_str()), ConfigErrorKind::ContainsNul);
            }
        }
        let cwd = self.path(path.key("cwd"), cwd);
        let shutdown_grace = self.duration_allowing_zero(
            path.key("shutdown_grace"),
            shutdown_grace,
            DEFAULT_SHUTDOWN_GRACE,
        );
        ok.then_some(StdioUpstreamConfig {
            command,
            args,
            env,
            cwd,
            shutdown_grace,
            sandbox: Default::default(),
        })
    }

    pub(crate) fn headers(
        &mut self,
        path: &FieldPath,
        headers: RawMap<ValueRef>,
    ) -> Vec<(String, ValueRef)> {
        let mut seen = HashSet::new();
        for (name, value) in &headers.0 {
            let field = path.key(name.as_str());
            let lower = name.to_ascii_lowercase();
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                self.report(
                    field,
                    ConfigErrorKind::InvalidHeaderName { name: name.clone() },
                );
            } else if MANAGED_HEADERS.contains(&lower.as_str()) {
                self.report(field, ConfigErrorKind::ManagedHeader { name: name.clone() });
            } else if !seen.insert(lower) {
                self.report(
                    field,
                    ConfigErrorKind::DuplicateHeader { name: name.clone() },
                );
            } else if matches!(value, ValueRef::Literal(literal) if literal.contains(['\r', '\n', '\0']))
            {
                self.report(field, ConfigErrorKind::InvalidHeaderValue);
            }
        }
        headers.0
    }

    /// An http(s) URL without credentials or fragment.
    pub(crate) fn http_url(&mut self, path: FieldPath, value: String) -> Option<Url> {
        let url = match Url::parse(&value) {
            Ok(url) => url,
            Err(source) => {
                self.report(path, ConfigErrorKind::InvalidUrl { value, source });
                return None;
            }
        };
        let kind = if !matches!(url.scheme(), "http" | "https") {
            ConfigErrorKind::UnsupportedScheme {
                scheme: url.scheme().to_owned(),
            }
        } else if !url.username().is_empty() || url.password().is_some() {
            ConfigErrorKind::UrlCredentials
        } else if let Some(fragment) = url.fragment() {
            ConfigErrorKind::UrlFragment {
                fragment: fragment.to_owned(),
            }
        } else {
            return Some(url);
        };
        self.report(path, kind);
        None
    }

    pub(crate) fn path(&mut self, field: FieldPath, path: Option<PathBuf>) -> Option<PathBuf> {
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

    /// A positive duration up to [`MAX_DURATION`].
    pub(crate) fn duration(
        &mut self,
        path: FieldPath,
        raw: Option<RawDuration>,
        default: Duration,
    ) -> Duration {
        let Some(RawDuration(value)) = raw else {
            return default;
        };
        match self.parse_duration(path.clone(), &value) {
            Some(duration) if duration.is_zero() => {
                self.report(path, ConfigErrorKind::ZeroDuration { value });
                default
            }
            Some(duration) => duration,
            None => default,
        }
    }

    /// A duration from zero up to [`MAX_DURATION`].
    pub(crate) fn duration_allowing_zero(
        &mut self,
        path: FieldPath,
        raw: Option<RawDuration>,
        default: Duration,
    ) -> Duration {
        raw.and_then(|RawDuration(value)| self.parse_duration(path, &value))
            .unwrap_or(default)
    }

    fn parse_duration(&mut self, path: FieldPath, value: &str) -> Option<Duration> {
        match humantime::parse_duration(value) {
            Ok(duration) if duration > MAX_DURATION => {
                self.report(
                    path,
                    ConfigErrorKind::DurationTooLong {
                        value: value.to_owned(),
                        max: "366days".to_owned(),
                    },
                );
                None
            }
            Ok(duration) => Some(duration),
            Err(source) => {
                self.report(
                    path,
                    ConfigErrorKind::InvalidDuration {
                        value: value.to_owned(),
                        source,
                    },
                );
                None
            }
        }
    }

    /// A count from 1 to `max`.
    fn count(
        &mut self,
        path: FieldPath,
        raw: Option<u64>,
        default: NonZeroUsize,
        max: usize,
    ) -> NonZeroUsize {
        let value = self.bounded(path, raw, default.get(), 1, max);
        NonZeroUsize::new(value).unwrap_or(default)
    }

    /// A number from `min` to `max`.
    fn bounded(
        &mut self,
        path: FieldPath,
        raw: Option<u64>,
        default: usize,
        min: usize,
        max: usize,
    ) -> usize {
        let Some(value) = raw else {
            return default;
        };
        match usize::try_from(value) {
            Ok(n) if (min..=max).contains(&n) => n,
            _ => {
                self.report(
                    path,
                    ConfigErrorKind::OutOfRange {
                        value,
                        min: min as u64,
                        max: max as u64,
                    },
                );
                default
            }
        }
    }
}

/// Checks the upstream naming rule: `^[a-zA-Z0-9-]{1,32}$`.
pub(crate) fn check_upstream_name(name: &str) -> Result<(), &'static str> {
    if name.contains('_') {
        // Checked first: the reason matters more than the character set.
        Err(
            "`_` is not allowed because tools are exposed as `<upstream>__<tool>` and the first `__` must end the upstream name; use `-`",
        )
    } else if name.is_empty() || name.len() > MAX_UPSTREAM_NAME_LEN {
        Err("names are 1 to 32 characters")
    } else if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        Err("names use only ASCII letters, digits and `-`")
    } else {
        Ok(())
    }
}

/// Whether `byte` may appear in an HTTP field name (RFC 9110 `tchar`).
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}
