//! `[sandbox]` (defaults for every stdio upstream) and `[upstreams.<name>.sandbox]` (one
//! upstream's overrides): raw serde type, validated types and their validation.
//!
//! Every key is optional in both places. An upstream's value replaces the global one, except
//! `read`, `write` and `inherit_env`, which are added to the global lists. See
//! `docs/sandbox.md`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::egress_allow::AllowList;
use crate::error::{ConfigErrorKind, FieldPath};
use crate::raw::RawDuration;
use crate::validate::Problem;
use crate::value_ref::is_env_name;

/// Default `memory`: resident memory of one sandbox (memory cgroup).
pub const DEFAULT_SANDBOX_MEMORY: u64 = 2 << 30;
/// Default `cpu_time` per process: a long-lived server that spins for an hour is stuck.
pub const DEFAULT_SANDBOX_CPU_TIME: Duration = Duration::from_secs(3600);
/// Default `open_files` per process.
pub const DEFAULT_SANDBOX_OPEN_FILES: u64 = 1024;
/// Default `processes` (and threads) in one sandbox: a worker pool fits, a fork bomb does not.
pub const DEFAULT_SANDBOX_PROCESSES: u64 = 256;
/// Default `file_size`: the largest file a server may write.
pub const DEFAULT_SANDBOX_FILE_SIZE: u64 = 1 << 30;
/// Default `tmp_size`: the private tmpfs counts against memory.
pub const DEFAULT_SANDBOX_TMP_SIZE: u64 = 256 << 20;
/// Largest `processes`.
const MAX_PROCESSES: u64 = 1 << 20;
/// Largest `open_files`.
const MAX_OPEN_FILES: u64 = 1 << 20;

/// `[sandbox]` or `[upstreams.<name>.sandbox]` as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct RawSandbox {
    /// `enabled`.
    pub enabled: Option<bool>,
    /// `network`: `none`, `loopback`, `full` or `{ allow = ["host:port", ..] }`.
    pub network: Option<RawNetwork>,
    /// `read`: extra read-only paths.
    pub read: Option<Vec<PathBuf>>,
    /// `write`: extra read-write paths.
    pub write: Option<Vec<PathBuf>>,
    /// `inherit_env`: names of the gateway's variables passed through, besides the defaults.
    pub inherit_env: Option<Vec<String>>,
    /// `memory`: resident-memory limit of the sandbox, a size or `"unlimited"`.
    pub memory: Option<String>,
    /// `address_space`: address-space limit per process, a size or `"unlimited"`.
    pub address_space: Option<String>,
    /// `cpu_time`: CPU time per process, a duration or `"unlimited"`.
    pub cpu_time: Option<RawDuration>,
    /// `open_files`.
    pub open_files: Option<u64>,
    /// `processes`.
    pub processes: Option<u64>,
    /// `file_size`: a size or `"unlimited"`.
    pub file_size: Option<String>,
    /// `tmp_size`: size of the private tmpfs.
    pub tmp_size: Option<String>,
    /// `unix_sockets`.
    pub unix_sockets: Option<bool>,
    /// `require`.
    pub require: Option<bool>,
}

/// `network` as written: a name or a table with an allow-list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(
    untagged,
    expecting = "\"none\", \"loopback\", \"full\" or a table { allow = [\"host:port\", ..] }"
)]
pub enum RawNetwork {
    /// `none`, `loopback` or `full`.
    Name(String),
    /// `{ allow = [..] }`.
    Allow(RawNetworkAllow),
}

/// `network = { allow = [..] }` as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNetworkAllow {
    /// `host:port` entries.
    pub allow: Vec<String>,
}

impl From<&str> for RawNetwork {
    fn from(name: &str) -> RawNetwork {
        RawNetwork::Name(name.to_owned())
    }
}

/// Network access of a sandboxed upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum SandboxNetwork {
    /// A new network namespace with no interface up.
    #[default]
    None,
    /// A new network namespace with its own loopback only.
    Loopback,
    /// The host's network.
    Full,
    /// A new network namespace with its own loopback, and egress only through the gateway's
    /// proxy to the hosts of [`SandboxConfig::network_allow`].
    AllowList,
}

/// The sandbox of one stdio upstream, every default filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxConfig {
    /// Whether the upstream runs sandboxed (default true; turning it off is logged loudly).
    pub enabled: bool,
    /// Network access (default `none`).
    pub network: SandboxNetwork,
    /// The hosts reachable with [`SandboxNetwork::AllowList`] (empty otherwise).
    pub network_allow: AllowList,
    /// Extra read-only paths.
    pub read: Vec<PathBuf>,
    /// Extra read-write paths.
    pub write: Vec<PathBuf>,
    /// Names of the gateway's variables passed through besides the default allow-list.
    pub inherit_env: Vec<String>,
    /// Resident memory of the whole sandbox, in bytes (memory cgroup).
    pub memory: Option<u64>,
    /// Address space per process, in bytes (`RLIMIT_AS`; unlimited by default because V8
    /// reserves 10 GiB per WebAssembly memory).
    pub address_space: Option<u64>,
    /// CPU time per process (whole seconds).
    pub cpu_time: Option<Duration>,
    /// Open files per process.
    pub open_files: Option<u64>,
    /// Processes and threads in the sandbox.
    pub processes: Option<u64>,
    /// Largest file written, in bytes.
    pub file_size: Option<u64>,
    /// Size of the private tmpfs, in bytes.
    pub tmp_size: u64,
    /// Allow Unix-domain sockets.
    pub unix_sockets: bool,
    /// Refuse to start the upstream when a control is unavailable on this machine, instead of
    /// starting it with a warning naming the control.
    pub require: bool,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            network: SandboxNetwork::None,
            network_allow: AllowList::default(),
            read: Vec::new(),
            write: Vec::new(),
            inherit_env: Vec::new(),
            memory: Some(DEFAULT_SANDBOX_MEMORY),
            address_space: None,
            cpu_time: Some(DEFAULT_SANDBOX_CPU_TIME),
            open_files: Some(DEFAULT_SANDBOX_OPEN_FILES),
            processes: Some(DEFAULT_SANDBOX_PROCESSES),
            file_size: Some(DEFAULT_SANDBOX_FILE_SIZE),
            tmp_size: DEFAULT_SANDBOX_TMP_SIZE,
            unix_sockets: false,
            require: false,
        }
    }
}

/// One upstream's `[upstreams.<name>.sandbox]`, validated: `None` means "as `[sandbox]`".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxOverride {
    /// `enabled`.
    pub enabled: Option<bool>,
    /// `network`.
    pub network: Option<SandboxNetwork>,
    /// The allow-list that comes with `network = { allow = [..] }` (boxed: this struct sits
    /// in every stdio upstream's configuration).
    pub network_allow: Option<Box<AllowList>>,
    /// `read`, added to the global list.
    pub read: Vec<PathBuf>,
    /// `write`, added to the global list.
    pub write: Vec<PathBuf>,
    /// `inherit_env`, added to the global list.
    pub inherit_env: Vec<String>,
    /// `memory` (`Some(None)` is `"unlimited"`).
    pub memory: Option<Option<u64>>,
    /// `address_space` (`Some(None)` is `"unlimited"`).
    pub address_space: Option<Option<u64>>,
    /// `cpu_time`.
    pub cpu_time: Option<Option<Duration>>,
    /// `open_files`.
    pub open_files: Option<u64>,
    /// `processes`.
    pub processes: Option<u64>,
    /// `file_size`.
    pub file_size: Option<Option<u64>>,
    /// `tmp_size`.
    pub tmp_size: Option<u64>,
    /// `unix_sockets`.
    pub unix_sockets: Option<bool>,
    /// `require`.
    pub require: Option<bool>,
}

impl SandboxConfig {
    /// The global settings with one upstream's overrides applied.
    pub fn with(&self, o: &SandboxOverride) -> SandboxConfig {
        let mut merged = self.clone();
        merged.enabled = o.enabled.unwrap_or(self.enabled);
        if let Some(network) = o.network {
            merged.network = network;
            merged.network_allow = o.network_allow.as_deref().cloned().unwrap_or_default();
        }
        merged.read.extend(o.read.iter().cloned());
        merged.write.extend(o.write.iter().cloned());
        merged.inherit_env.extend(o.inherit_env.iter().cloned());
        merged.memory = o.memory.unwrap_or(self.memory);
        merged.address_space = o.address_space.unwrap_or(self.address_space);
        merged.cpu_time = o.cpu_time.unwrap_or(self.cpu_time);
        merged.open_files = o.open_files.or(self.open_files);
        merged.processes = o.processes.or(self.processes);
        merged.file_size = o.file_size.unwrap_or(self.file_size);
        merged.tmp_size = o.tmp_size.unwrap_or(self.tmp_size);
        merged.unix_sockets = o.unix_sockets.unwrap_or(self.unix_sockets);
        merged.require = o.require.unwrap_or(self.require);
        merged
    }
}

/// Validates `[sandbox]`.
pub(crate) fn global(
    path: &FieldPath,
    raw: RawSandbox,
    problems: &mut Vec<Problem>,
) -> SandboxConfig {
    SandboxConfig::default().with(&upstream(path, raw, problems))
}

/// Validates `[upstreams.<name>.sandbox]`.
pub(crate) fn upstream(
    path: &FieldPath,
    raw: RawSandbox,
    problems: &mut Vec<Problem>,
) -> SandboxOverride {
    let mut report = |field: &str, kind: ConfigErrorKind| problems.push((path.key(field), kind));
    let mut network_allow = None;
    let network = match raw.network {
        None => None,
        Some(RawNetwork::Name(value)) => match value.as_str() {
            "none" => Some(SandboxNetwork::None),
            "loopback" => Some(SandboxNetwork::Loopback),
            "full" => Some(SandboxNetwork::Full),
            _ => {
                report(
                    "network",
                    ConfigErrorKind::Invalid {
                        reason: format!(
                            "unknown network {value:?}; expected \"none\", \"loopback\", \"full\" or {{ allow = [\"host:port\", ..] }}"
                        ),
                    },
                );
                None
            }
        },
        Some(RawNetwork::Allow(RawNetworkAllow { allow })) if allow.is_empty() => {
            report(
                "network",
                ConfigErrorKind::Invalid {
                    reason: "empty allow-list; use \"loopback\" for no egress".into(),
                },
            );
            None
        }
        Some(RawNetwork::Allow(RawNetworkAllow { allow })) => match AllowList::parse(&allow) {
            Ok(list) => {
                network_allow = Some(Box::new(list));
                Some(SandboxNetwork::AllowList)
            }
            Err(error) => {
                report(
                    "network",
                    ConfigErrorKind::Invalid {
                        reason: error.to_string(),
                    },
                );
                None
            }
        },
    };
    let mut paths = |field: &str, list: Option<Vec<PathBuf>>| -> Vec<PathBuf> {
        let list = list.unwrap_or_default();
        for (index, p) in list.iter().enumerate() {
            let reason = if p.as_os_str().is_empty() {
                Some(ConfigErrorKind::Empty)
            } else if p.as_os_str().as_encoded_bytes().contains(&0) {
                Some(ConfigErrorKind::ContainsNul)
            } else if !p.is_absolute() {
                Some(ConfigErrorKind::Invalid {
                    reason: format!("path {:?} must be absolute", p.display().to_string()),
                })
            } else {
                None
            };
            if let Some(kind) = reason {
                problems.push((path.key(field).index(index), kind));
            }
        }
        list
    };
    let read = paths("read", raw.read);
    let write = paths("write", raw.write);
    let inherit_env = raw.inherit_env.unwrap_or_default();
    for (index, name) in inherit_env.iter().enumerate() {
        if !is_env_name(name) {
            problems.push((
                path.key("inherit_env").index(index),
                ConfigErrorKind::InvalidEnvName { name: name.clone() },
            ));
        }
    }
    let mut size = |field: &str, value: Option<String>, allow_unlimited: bool| {
        value.and_then(|value| match parse_size(&value) {
            Ok(Some(bytes)) => Some(Some(bytes)),
            Ok(None) if allow_unlimited => Some(None),
            Ok(None) | Err(SizeError) => {
                problems.push((
                    path.key(field),
                    ConfigErrorKind::Invalid {
                        reason: format!(
                            "invalid size {value:?}; expected a positive number of bytes with an optional unit (KiB, MiB, GiB, TiB){}",
                            if allow_unlimited { " or \"unlimited\"" } else { "" }
                        ),
                    },
                ));
                None
            }
        })
    };
    let memory = size("memory", raw.memory, true);
    let address_space = size("address_space", raw.address_space, true);
    let file_size = size("file_size", raw.file_size, true);
    let tmp_size = size("tmp_size", raw.tmp_size, false).flatten();
    let cpu_time = raw.cpu_time.and_then(|RawDuration(value)| {
        if value == "unlimited" {
            return Some(None);
        }
        match humantime::parse_duration(&value) {
            Ok(d) if d.as_secs() >= 1 => Some(Some(d)),
            _ => {
                problems.push((
                    path.key("cpu_time"),
                    ConfigErrorKind::Invalid {
                        reason: format!(
                            "invalid cpu_time {value:?}; expected a duration of at least 1s or \"unlimited\""
                        ),
                    },
                ));
                None
            }
        }
    });
    let mut count = |field: &str, value: Option<u64>, max: u64| {
        value.filter(|n| {
            let ok = (1..=max).contains(n);
            if !ok {
                problems.push((
                    path.key(field),
                    ConfigErrorKind::OutOfRange {
                        value: *n,
                        min: 1,
                        max,
                    },
                ));
            }
            ok
        })
    };
    let open_files = count("open_files", raw.open_files, MAX_OPEN_FILES);
    let processes = count("processes", raw.processes, MAX_PROCESSES);
    SandboxOverride {
        enabled: raw.enabled,
        network,
        network_allow,
        read,
        write,
        inherit_env,
        memory,
        address_space,
        cpu_time,
        open_files,
        processes,
        file_size,
        tmp_size,
        unix_sockets: raw.unix_sockets,
        require: raw.require,
    }
}

/// A size that does not parse: not a positive whole number of bytes with a known unit, or too
/// large.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid size; expected a positive number of bytes with an optional unit (KiB, MiB, GiB, TiB)"
)]
pub struct SizeError;

/// `"512MiB"` -> `Ok(Some(536870912))`; `"unlimited"` -> `Ok(None)`; zero, overflow or an
/// unknown unit -> [`SizeError`].
pub fn parse_size(value: &str) -> Result<Option<u64>, SizeError> {
    let value = value.trim();
    if value == "unlimited" {
        return Ok(None);
    }
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (digits, unit) = value.split_at(split);
    let number: u64 = digits.parse().map_err(|_| SizeError)?;
    let shift = match unit.trim() {
        "" | "B" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        "TiB" => 40,
        _ => return Err(SizeError),
    };
    let bytes = number.checked_mul(1u64 << shift).ok_or(SizeError)?;
    if bytes == 0 {
        Err(SizeError)
    } else {
        Ok(Some(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_size("512MiB"), Ok(Some(512 << 20)));
        assert_eq!(parse_size("4 GiB"), Ok(Some(4 << 30)));
        assert_eq!(parse_size("1024"), Ok(Some(1024)));
        assert_eq!(parse_size("unlimited"), Ok(None));
        for bad in ["", "0", "1.5GiB", "12GB", "-1", "99999999999TiB", "MiB"] {
            assert_eq!(parse_size(bad), Err(SizeError), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn size_roundtrips_in_every_unit(n in 1u64..1_000_000, unit in 0usize..5) {
            let (name, shift) = [("B", 0), ("KiB", 10), ("MiB", 20), ("GiB", 30), ("TiB", 40)][unit];
            let parsed = parse_size(&format!("{n}{name}"));
            match n.checked_mul(1u64 << shift) {
                Some(bytes) => prop_assert_eq!(parsed, Ok(Some(bytes))),
                None => prop_assert_eq!(parsed, Err(SizeError)),
            }
        }

        #[test]
        fn parse_size_never_panics(s in ".{0,40}") {
            let _ = parse_size(&s);
        }
    }

    #[test]
    fn upstream_values_replace_and_lists_extend() {
        let mut problems = Vec::new();
        let global = global(
            &FieldPath::root().key("sandbox"),
            RawSandbox {
                read: Some(vec!["/srv/shared".into()]),
                memory: Some("1GiB".into()),
                ..RawSandbox::default()
            },
            &mut problems,
        );
        let o = upstream(
            &FieldPath::root().key("u"),
            RawSandbox {
                network: Some("loopback".into()),
                read: Some(vec!["/srv/own".into()]),
                memory: Some("unlimited".into()),
                enabled: Some(false),
                ..RawSandbox::default()
            },
            &mut problems,
        );
        assert!(problems.is_empty(), "{problems:?}");
        let merged = global.with(&o);
        assert!(!merged.enabled);
        assert_eq!(merged.network, SandboxNetwork::Loopback);
        assert_eq!(
            merged.read,
            [PathBuf::from("/srv/shared"), PathBuf::from("/srv/own")]
        );
        assert_eq!(merged.memory, None);
        assert_eq!(merged.processes, Some(DEFAULT_SANDBOX_PROCESSES));
        // The defaults hold where nothing is said.
        assert_eq!(
            SandboxConfig::default().with(&SandboxOverride::default()),
            SandboxConfig::default()
        );
    }

    #[test]
    fn network_allow_lists_parse_merge_and_reject_bad_entries() {
        let raw = |text: &str| toml::from_str::<RawSandbox>(text).unwrap();
        let mut problems = Vec::new();
        let global = global(
            &FieldPath::root().key("sandbox"),
            raw(r#"network = { allow = ["api.github.com:443", "*.example.com:443"] }"#),
            &mut problems,
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(global.network, SandboxNetwork::AllowList);
        assert_eq!(global.network_allow.rules().len(), 2);
        // An upstream's `network` replaces the list with its own (or with none).
        let o = upstream(
            &FieldPath::root().key("u"),
            raw(r#"network = "full""#),
            &mut problems,
        );
        let merged = global.with(&o);
        assert_eq!(merged.network, SandboxNetwork::Full);
        assert!(merged.network_allow.rules().is_empty());
        // An upstream that says nothing keeps the global list.
        assert_eq!(global.with(&SandboxOverride::default()), global);
        for bad in [
            r#"network = { allow = [] }"#,
            r#"network = { allow = ["api.github.com"] }"#,
            r#"network = { allow = ["*:443"] }"#,
        ] {
            let mut problems = Vec::new();
            let o = upstream(&FieldPath::root().key("u"), raw(bad), &mut problems);
            assert_eq!(o.network, None, "{bad}");
            assert_eq!(problems.len(), 1, "{bad}: {problems:?}");
            assert_eq!(problems[0].0.to_string(), "u.network");
        }
        // Unknown keys in the table are refused by the parser.
        assert!(toml::from_str::<RawSandbox>(r#"network = { allow = [], deny = [] }"#).is_err());
    }

    #[test]
    fn rejects_bad_values_naming_each_field() {
        let mut problems = Vec::new();
        upstream(
            &FieldPath::root().key("sandbox"),
            RawSandbox {
                network: Some("allowlist".into()),
                read: Some(vec!["relative/dir".into()]),
                inherit_env: Some(vec!["A=B".into()]),
                memory: Some("lots".into()),
                tmp_size: Some("unlimited".into()),
                cpu_time: Some(RawDuration("0s".into())),
                processes: Some(0),
                ..RawSandbox::default()
            },
            &mut problems,
        );
        let fields: Vec<String> = problems.iter().map(|(p, _)| p.to_string()).collect();
        assert_eq!(
            fields,
            [
                "sandbox.network",
                "sandbox.read[0]",
                "sandbox.inherit_env[0]",
                "sandbox.memory",
                "sandbox.tmp_size",
                "sandbox.cpu_time",
                "sandbox.processes"
            ]
        );
    }
}
