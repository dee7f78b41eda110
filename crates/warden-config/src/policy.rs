//! The request-guard sections: `[policy]` (authorization), `[rate_limit]` and `[arguments]`
//! (argument validation): raw serde types, validated types and their validation.
//!
//! Nothing here compiles Cedar or touches the file system: policy files are paths, resolved and
//! parsed by the guard crate at startup.

use std::collections::BTreeMap;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;

use crate::error::{ConfigErrorKind, FieldPath};
use crate::raw::{RawDuration, RawMap};
use crate::validate::Problem;

/// Largest `max_schema_bytes`: compiling bigger schemas per call would be a denial of service.
const MAX_SCHEMA_BYTES_LIMIT: u64 = 16 * 1024 * 1024;
/// Largest `max_schema_depth`.
const MAX_SCHEMA_DEPTH_LIMIT: u64 = 256;
/// Default `max_schema_bytes`: generous for real tools (the largest common ones are a few KiB),
/// small enough that compiling one costs little.
pub const DEFAULT_MAX_SCHEMA_BYTES: usize = 256 * 1024;
/// Default `max_schema_depth`.
pub const DEFAULT_MAX_SCHEMA_DEPTH: usize = 32;
/// Default `max_string_bytes`: one string argument; bounded by the message limit anyway.
pub const DEFAULT_MAX_STRING_BYTES: usize = 1024 * 1024;
/// Default `resolve_timeout`: a name that does not resolve quickly is refused, not waited on.
pub const DEFAULT_RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);
/// Default `path_arguments`: argument names filesystem servers use for paths.
pub const DEFAULT_PATH_ARGUMENTS: &[&str] = &[
    "path",
    "paths",
    "file",
    "files",
    "filename",
    "filepath",
    "directory",
    "dir",
    "source",
    "destination",
    "root",
    "cwd",
    "*_path",
    "*_paths",
    "*_file",
    "*_dir",
    "*_directory",
];
/// Default `host_arguments`: argument names that carry a bare host name or address.
pub const DEFAULT_HOST_ARGUMENTS: &[&str] = &["host", "hostname", "address", "ip"];

/// `[policy]` as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct RawPolicy {
    /// `files`: Cedar policy files.
    pub files: Option<Vec<PathBuf>>,
    /// `[policy.roles.<role>]`.
    pub roles: Option<RawMap<RawRole>>,
}

/// `[policy.roles.<role>]` as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct RawRole {
    /// `tools`: `<server>/<tool>` patterns.
    pub tools: Option<Vec<String>>,
    /// `read_only_tools`.
    pub read_only_tools: Option<bool>,
    /// `resources`: URI patterns.
    pub resources: Option<Vec<String>>,
    /// `prompts`: `<server>/<prompt>` patterns.
    pub prompts: Option<Vec<String>>,
    /// `sampling`.
    pub sampling: Option<bool>,
    /// `elicitation`.
    pub elicitation: Option<bool>,
    /// `roots`.
    pub roots: Option<bool>,
}

/// `[rate_limit]` as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct RawRateLimit {
    /// `per_principal`.
    pub per_principal: Option<RawRate>,
    /// `per_tool`.
    pub per_tool: Option<RawRate>,
    /// `global`.
    pub global: Option<RawRate>,
    /// `max_concurrent_per_principal`.
    pub max_concurrent_per_principal: Option<u64>,
    /// `max_concurrent_per_upstream`.
    pub max_concurrent_per_upstream: Option<u64>,
}

/// A rate as written: `"10/s"`, or `{ rate = "10/s", burst = 20 }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(
    untagged,
    expecting = "a rate such as \"10/s\" or { rate = \"10/s\", burst = 20 }"
)]
pub enum RawRate {
    /// `"<count>/<period>"`.
    Short(String),
    /// With an explicit burst.
    Full {
        /// `rate`.
        rate: String,
        /// `burst`.
        burst: Option<u64>,
    },
}

/// `[arguments]` as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct RawArguments {
    /// `validate_schema`.
    pub validate_schema: Option<bool>,
    /// `max_schema_bytes`.
    pub max_schema_bytes: Option<u64>,
    /// `max_schema_depth`.
    pub max_schema_depth: Option<u64>,
    /// `max_string_bytes`.
    pub max_string_bytes: Option<u64>,
    /// `path_roots`.
    pub path_roots: Option<Vec<PathBuf>>,
    /// `path_arguments`.
    pub path_arguments: Option<Vec<String>>,
    /// `block_private_addresses`.
    pub block_private_addresses: Option<bool>,
    /// `url_allow_hosts`.
    pub url_allow_hosts: Option<Vec<String>>,
    /// `host_arguments`.
    pub host_arguments: Option<Vec<String>>,
    /// `resolve_timeout`.
    pub resolve_timeout: Option<RawDuration>,
    /// `deny_unresolvable_hosts`.
    pub deny_unresolvable_hosts: Option<bool>,
    /// `[[arguments.rules]]`.
    pub rules: Option<Vec<RawArgumentRule>>,
}

/// `[[arguments.rules]]` as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct RawArgumentRule {
    /// `tool`: `<server>/<tool>` pattern.
    pub tool: Option<String>,
    /// `argument`: top-level argument name.
    pub argument: Option<String>,
    /// `max_length`: in characters.
    pub max_length: Option<u64>,
    /// `pattern`: a regular expression the whole value must match.
    pub pattern: Option<String>,
}

/// `[policy]`: who may do what. Present means default deny for everything not permitted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyConfig {
    /// Cedar policy files, as written (relative paths are relative to the configuration file).
    pub files: Vec<PathBuf>,
    /// The role table, in file order.
    pub roles: BTreeMap<String, RoleConfig>,
}

/// One row of the role table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleConfig {
    /// Tools the role may call: `<server>/<tool>` globs (`*` matches any run of characters).
    pub tools: Vec<String>,
    /// Restrict the role's tools further to those annotated `readOnlyHint: true`.
    pub read_only_tools: bool,
    /// Resource URIs the role may read: globs.
    pub resources: Vec<String>,
    /// Prompts the role may get: `<server>/<prompt>` globs.
    pub prompts: Vec<String>,
    /// Whether upstreams may send `sampling/createMessage` to the role's sessions.
    pub sampling: bool,
    /// Whether upstreams may send `elicitation/create` to the role's sessions.
    pub elicitation: bool,
    /// Whether upstreams may send `roots/list` to the role's sessions.
    pub roots: bool,
}

/// A token-bucket rate: `count` requests per `period`, with bursts of up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSpec {
    /// Requests per period.
    pub count: NonZeroU32,
    /// The period.
    pub period: Duration,
    /// Largest burst (bucket size).
    pub burst: NonZeroU32,
}

/// `[rate_limit]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Bucket per principal (every request).
    pub per_principal: Option<RateSpec>,
    /// Bucket per principal and tool (`tools/call`).
    pub per_tool: Option<RateSpec>,
    /// One bucket for all requests.
    pub global: Option<RateSpec>,
    /// In-flight calls per principal.
    pub max_concurrent_per_principal: Option<NonZeroUsize>,
    /// In-flight calls per upstream.
    pub max_concurrent_per_upstream: Option<NonZeroUsize>,
}

/// One `[[arguments.rules]]` entry.
#[derive(Debug, Clone)]
pub struct ArgumentRule {
    /// `<server>/<tool>` glob.
    pub tool: String,
    /// Top-level argument name.
    pub argument: String,
    /// Longest value, in characters.
    pub max_length: Option<usize>,
    /// Pattern the whole value must match (anchored).
    pub pattern: Option<Regex>,
}

impl PartialEq for ArgumentRule {
    fn eq(&self, other: &Self) -> bool {
        self.tool == other.tool
            && self.argument == other.argument
            && self.max_length == other.max_length
            && self.pattern.as_ref().map(Regex::as_str) == other.pattern.as_ref().map(Regex::as_str)
    }
}

impl Eq for ArgumentRule {}

/// `[arguments]`: argument validation before a call leaves the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgumentsConfig {
    /// Validate `tools/call` arguments against the tool's `inputSchema`.
    pub validate_schema: bool,
    /// Largest `inputSchema` accepted, in bytes of its JSON text.
    pub max_schema_bytes: NonZeroUsize,
    /// Deepest `inputSchema` accepted.
    pub max_schema_depth: NonZeroUsize,
    /// Longest string anywhere in the arguments, in bytes.
    pub max_string_bytes: NonZeroUsize,
    /// Directories path arguments must stay within (empty: no path checks).
    pub path_roots: Vec<PathBuf>,
    /// Argument names (globs) whose string values are paths.
    pub path_arguments: Vec<String>,
    /// Refuse URLs and hosts that are or resolve to loopback, private, link-local, metadata
    /// and other non-public addresses.
    pub block_private_addresses: bool,
    /// When not empty, the only hosts URLs may name (globs such as `*.example.com`).
    pub url_allow_hosts: Vec<String>,
    /// Argument names (globs) whose string values are bare hosts.
    pub host_arguments: Vec<String>,
    /// Longest wait for a DNS answer.
    pub resolve_timeout: Duration,
    /// Refuse host names that do not resolve (or not in time). Off by default: a name the
    /// gateway cannot resolve is one the upstream, on the same resolver, cannot reach either,
    /// and a hostile name server can change its answer between the two lookups whatever this
    /// says (DNS rebinding), so failing here adds outages more than protection.
    pub deny_unresolvable_hosts: bool,
    /// Per-tool rules.
    pub rules: Vec<ArgumentRule>,
}

impl Default for ArgumentsConfig {
    fn default() -> Self {
        let nz = |n: usize| NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN);
        Self {
            validate_schema: true,
            max_schema_bytes: nz(DEFAULT_MAX_SCHEMA_BYTES),
            max_schema_depth: nz(DEFAULT_MAX_SCHEMA_DEPTH),
            max_string_bytes: nz(DEFAULT_MAX_STRING_BYTES),
            path_roots: Vec::new(),
            path_arguments: DEFAULT_PATH_ARGUMENTS.iter().map(|s| (*s).into()).collect(),
            block_private_addresses: true,
            url_allow_hosts: Vec::new(),
            host_arguments: DEFAULT_HOST_ARGUMENTS.iter().map(|s| (*s).into()).collect(),
            resolve_timeout: DEFAULT_RESOLVE_TIMEOUT,
            deny_unresolvable_hosts: false,
            rules: Vec::new(),
        }
    }
}

/// Role names that the gateway gives principals by how they authenticated.
pub const IMPLICIT_ROLES: &[&str] = &["anonymous", "local", "authenticated"];

/// Validates `[policy]`.
pub(crate) fn policy(
    path: &FieldPath,
    raw: RawPolicy,
    problems: &mut Vec<Problem>,
) -> PolicyConfig {
    let mut out = PolicyConfig::default();
    for (i, file) in raw.files.unwrap_or_default().into_iter().enumerate() {
        if file.as_os_str().is_empty() {
            problems.push((path.key("files").index(i), ConfigErrorKind::Empty));
        } else {
            out.files.push(file);
        }
    }
    for (name, role) in raw.roles.unwrap_or_default().0 {
        let at = path.key("roles").key(name.clone());
        if !valid_name(&name) {
            problems.push((
                at.clone(),
                invalid(format!(
                    "invalid role name \"{name}\"; expected letters, digits, '-', '_', '.', ':'"
                )),
            ));
            continue;
        }
        let tools = patterns(&at.key("tools"), role.tools, true, problems);
        let prompts = patterns(&at.key("prompts"), role.prompts, true, problems);
        let resources = patterns(&at.key("resources"), role.resources, false, problems);
        out.roles.insert(
            name,
            RoleConfig {
                tools,
                read_only_tools: role.read_only_tools.unwrap_or(false),
                resources,
                prompts,
                sampling: role.sampling.unwrap_or(false),
                elicitation: role.elicitation.unwrap_or(false),
                roots: role.roots.unwrap_or(false),
            },
        );
    }
    if out.files.is_empty() && out.roles.is_empty() {
        problems.push((
            path.clone(),
            invalid("[policy] grants nothing; add `files` or `[policy.roles.<role>]`, or remove the section".into()),
        ));
    }
    out
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

fn invalid(reason: String) -> ConfigErrorKind {
    ConfigErrorKind::Invalid { reason }
}

/// Glob patterns; `qualified` ones are `<server>/<name>`.
fn patterns(
    path: &FieldPath,
    raw: Option<Vec<String>>,
    qualified: bool,
    problems: &mut Vec<Problem>,
) -> Vec<String> {
    let mut out = vec![];
    for (i, p) in raw.unwrap_or_default().into_iter().enumerate() {
        let at = path.index(i);
        if p.is_empty() {
            problems.push((at, ConfigErrorKind::Empty));
        } else if p.chars().any(char::is_control) {
            problems.push((
                at,
                invalid(format!("pattern {p:?} contains a control character")),
            ));
        } else if qualified && !p.contains('/') {
            problems.push((
                at,
                invalid(format!(
                    "pattern \"{p}\" must be <server>/<name> (use \"*/{p}\" for any server)"
                )),
            ));
        } else {
            out.push(p);
        }
    }
    out
}

/// Validates `[rate_limit]`.
pub(crate) fn rate_limit(
    path: &FieldPath,
    raw: RawRateLimit,
    problems: &mut Vec<Problem>,
) -> RateLimitConfig {
    let concurrency = |key: &str, v: Option<u64>, problems: &mut Vec<Problem>| {
        let v = v?;
        match usize::try_from(v)
            .ok()
            .filter(|n| (1..=1_000_000).contains(n))
        {
            Some(n) => NonZeroUsize::new(n),
            None => {
                problems.push((
                    path.key(key),
                    ConfigErrorKind::OutOfRange {
                        value: v,
                        min: 1,
                        max: 1_000_000,
                    },
                ));
                None
            }
        }
    };
    RateLimitConfig {
        per_principal: raw
            .per_principal
            .and_then(|r| rate(&path.key("per_principal"), r, problems)),
        per_tool: raw
            .per_tool
            .and_then(|r| rate(&path.key("per_tool"), r, problems)),
        global: raw
            .global
            .and_then(|r| rate(&path.key("global"), r, problems)),
        max_concurrent_per_principal: concurrency(
            "max_concurrent_per_principal",
            raw.max_concurrent_per_principal,
            problems,
        ),
        max_concurrent_per_upstream: concurrency(
            "max_concurrent_per_upstream",
            raw.max_concurrent_per_upstream,
            problems,
        ),
    }
}

/// Parses `"<count>/<period>"` where period is `s`, `m`, `h`, `d` or a humantime duration.
pub fn parse_rate(text: &str) -> Result<(NonZeroU32, Duration), String> {
    let (count, period) = text.split_once('/').ok_or_else(|| {
        format!("invalid rate \"{text}\"; expected <count>/<period> such as \"10/s\"")
    })?;
    let count: u32 = count
        .trim()
        .parse()
        .map_err(|_| format!("invalid rate \"{text}\"; the count must be a whole number"))?;
    let count = NonZeroU32::new(count)
        .ok_or_else(|| format!("rate \"{text}\" must allow at least one request"))?;
    let period = match period.trim() {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        "d" | "day" => Duration::from_secs(86_400),
        other => humantime::parse_duration(other).map_err(|_| {
            format!(
                "invalid rate \"{text}\"; the period must be s, m, h, d or a duration such as 10s"
            )
        })?,
    };
    if period.is_zero() || period > Duration::from_secs(86_400) {
        return Err(format!(
            "rate \"{text}\": the period must be longer than zero and at most a day"
        ));
    }
    Ok((count, period))
}

fn rate(path: &FieldPath, raw: RawRate, problems: &mut Vec<Problem>) -> Option<RateSpec> {
    let (text, burst, at) = match raw {
        RawRate::Short(t) => (t, None, path.clone()),
        RawRate::Full { rate, burst } => (rate, burst, path.key("rate")),
    };
    let (count, period) = match parse_rate(&text) {
        Ok(x) => x,
        Err(reason) => {
            problems.push((at, invalid(reason)));
            return None;
        }
    };
    let burst = match burst {
        None => count,
        Some(b) => match u32::try_from(b).ok().and_then(NonZeroU32::new) {
            Some(b) if b.get() <= 1_000_000 => b,
            _ => {
                problems.push((
                    path.key("burst"),
                    ConfigErrorKind::OutOfRange {
                        value: b,
                        min: 1,
                        max: 1_000_000,
                    },
                ));
                return None;
            }
        },
    };
    Some(RateSpec {
        count,
        period,
        burst,
    })
}

/// Validates `[arguments]`.
pub(crate) fn arguments(
    path: &FieldPath,
    raw: RawArguments,
    problems: &mut Vec<Problem>,
) -> ArgumentsConfig {
    let d = ArgumentsConfig::default();
    let mut bounded = |key: &str, v: Option<u64>, default: NonZeroUsize, max: u64| {
        let Some(v) = v else { return default };
        match usize::try_from(v).ok().and_then(NonZeroUsize::new) {
            Some(n) if v <= max => n,
            _ => {
                problems.push((
                    path.key(key),
                    ConfigErrorKind::OutOfRange {
                        value: v,
                        min: 1,
                        max,
                    },
                ));
                default
            }
        }
    };
    let max_schema_bytes = bounded(
        "max_schema_bytes",
        raw.max_schema_bytes,
        d.max_schema_bytes,
        MAX_SCHEMA_BYTES_LIMIT,
    );
    let max_schema_depth = bounded(
        "max_schema_depth",
        raw.max_schema_depth,
        d.max_schema_depth,
        MAX_SCHEMA_DEPTH_LIMIT,
    );
    let max_string_bytes = bounded(
        "max_string_bytes",
        raw.max_string_bytes,
        d.max_string_bytes,
        u64::from(u32::MAX),
    );
    let mut path_roots = vec![];
    for (i, root) in raw.path_roots.unwrap_or_default().into_iter().enumerate() {
        if !root.is_absolute() {
            problems.push((
                path.key("path_roots").index(i),
                invalid(format!("path root \"{}\" must be absolute", root.display())),
            ));
        } else {
            path_roots.push(root);
        }
    }
    let names =
        |key: &str, v: Option<Vec<String>>, default: Vec<String>, problems: &mut Vec<Problem>| {
            v.map_or(default, |v| {
                patterns(&path.key(key), Some(v), false, problems)
            })
        };
    let path_arguments = names(
        "path_arguments",
        raw.path_arguments,
        d.path_arguments,
        problems,
    );
    let host_arguments = names(
        "host_arguments",
        raw.host_arguments,
        d.host_arguments,
        problems,
    );
    let url_allow_hosts = names("url_allow_hosts", raw.url_allow_hosts, vec![], problems);
    let resolve_timeout = match raw.resolve_timeout {
        None => d.resolve_timeout,
        Some(RawDuration(v)) => match humantime::parse_duration(&v) {
            Ok(t) if !t.is_zero() && t <= Duration::from_secs(60) => t,
            _ => {
                problems.push((
                    path.key("resolve_timeout"),
                    invalid(format!(
                        "invalid resolve_timeout \"{v}\"; expected a duration from 1ms to 60s"
                    )),
                ));
                d.resolve_timeout
            }
        },
    };
    let mut rules = vec![];
    for (i, r) in raw.rules.unwrap_or_default().into_iter().enumerate() {
        let at = path.key("rules").index(i);
        let (Some(tool), Some(argument)) = (r.tool, r.argument) else {
            problems.push((at, invalid("a rule needs `tool` and `argument`".into())));
            continue;
        };
        if !tool.contains('/') {
            problems.push((
                at.key("tool"),
                invalid(format!("pattern \"{tool}\" must be <server>/<tool>")),
            ));
            continue;
        }
        let pattern = match r.pattern {
            None => None,
            Some(p) => match regex::RegexBuilder::new(&format!("^(?:{p})$"))
                .size_limit(1 << 20)
                .build()
            {
                Ok(re) => Some(re),
                Err(e) => {
                    problems.push((at.key("pattern"), invalid(format!("invalid pattern: {e}"))));
                    continue;
                }
            },
        };
        let max_length = match r.max_length.map(usize::try_from) {
            None => None,
            Some(Ok(n)) => Some(n),
            Some(Err(_)) => {
                problems.push((
                    at.key("max_length"),
                    invalid("max_length is too large".into()),
                ));
                continue;
            }
        };
        if pattern.is_none() && max_length.is_none() {
            problems.push((at, invalid("a rule needs `max_length` or `pattern`".into())));
            continue;
        }
        rules.push(ArgumentRule {
            tool,
            argument,
            max_length,
            pattern,
        });
    }
    ArgumentsConfig {
        validate_schema: raw.validate_schema.unwrap_or(true),
        max_schema_bytes,
        max_schema_depth,
        max_string_bytes,
        path_roots,
        path_arguments,
        block_private_addresses: raw.block_private_addresses.unwrap_or(true),
        url_allow_hosts,
        host_arguments,
        resolve_timeout,
        deny_unresolvable_hosts: raw.deny_unresolvable_hosts.unwrap_or(false),
        rules,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rates() {
        let (c, p) = parse_rate("10/s").unwrap();
        assert_eq!((c.get(), p), (10, Duration::from_secs(1)));
        let (c, p) = parse_rate("100 / 5m").unwrap();
        assert_eq!((c.get(), p), (100, Duration::from_secs(300)));
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("10").is_err());
        assert!(parse_rate("10/0s").is_err());
        assert!(parse_rate("10/fortnight").is_err());
    }

    #[test]
    fn reports_every_request_guard_problem_with_its_field() {
        let text = r#"
[policy.roles."bad role"]
tools = ["x"]

[policy.roles.dev]
tools = ["noslash", "files/*"]

[rate_limit]
per_tool = "0/s"
global = { rate = "10/s", burst = 0 }

[arguments]
path_roots = ["relative"]

[[arguments.rules]]
tool = "files/*"
argument = "mode"
pattern = "("
"#;
        let errors = crate::Config::parse(text, "warden.toml")
            .unwrap_err()
            .to_string();
        for expected in [
            "warden.toml:2: policy.roles.\"bad role\": invalid role name",
            "policy.roles.dev.tools[0]: pattern \"noslash\" must be <server>/<name>",
            "rate_limit.per_tool: rate \"0/s\" must allow at least one request",
            "rate_limit.global.burst: 0 is out of range",
            "arguments.path_roots[0]: path root \"relative\" must be absolute",
            "arguments.rules[0].pattern: invalid pattern",
        ] {
            assert!(
                errors.contains(expected),
                "missing {expected:?} in:\n{errors}"
            );
        }
        let ok = crate::Config::parse(
            "[policy.roles.dev]\ntools = [\"files/*\"]\nread_only_tools = true\n[rate_limit]\nper_principal = \"10/s\"\n",
            "warden.toml",
        )
        .unwrap();
        let policy = ok.policy.unwrap();
        assert!(policy.roles["dev"].read_only_tools);
        let rate = ok.rate_limit.per_principal.unwrap();
        assert_eq!((rate.count.get(), rate.burst.get()), (10, 10));
    }
}
