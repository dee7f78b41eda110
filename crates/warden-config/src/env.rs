//! The environment variables mcp-warden reads, and where it reads them from.
//!
//! Every variable is a constant here and listed in [`ALL`]; code reads them through an
//! [`EnvSource`], so tests pass a [`MapEnv`] instead of mutating the process environment.
//! An empty value counts as unset.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

/// Path of the configuration file, used when `--config` is not given.
pub const MCP_WARDEN_CONFIG: &str = "MCP_WARDEN_CONFIG";
/// Data directory (pins, keys, approvals, embedded store); overrides `data_dir` in the file,
/// and is overridden by `--data-dir`.
pub const MCP_WARDEN_DATA_DIR: &str = "MCP_WARDEN_DATA_DIR";
/// Audit log file; overrides `audit_log` in the file, and is overridden by `--audit-log`.
pub const MCP_WARDEN_AUDIT_LOG: &str = "MCP_WARDEN_AUDIT_LOG";
/// Log filter in `tracing` `EnvFilter` syntax (such as `info` or `warn,warden_guard=debug`);
/// overrides `log_level` in the file.
pub const MCP_WARDEN_LOG: &str = "MCP_WARDEN_LOG";

/// An environment variable mcp-warden reads, with what it is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvVar {
    /// The variable's name.
    pub name: &'static str,
    /// What it sets, for `--help` and generated documentation.
    pub description: &'static str,
}

/// Every environment variable mcp-warden reads. Platform variables used to find the default
/// data directory (`XDG_DATA_HOME`, `HOME`, `LOCALAPPDATA`) are not listed.
pub const ALL: &[EnvVar] = &[
    EnvVar {
        name: MCP_WARDEN_CONFIG,
        description: "path of the configuration file, used when --config is not given",
    },
    EnvVar {
        name: MCP_WARDEN_DATA_DIR,
        description: "data directory; overrides data_dir, overridden by --data-dir",
    },
    EnvVar {
        name: MCP_WARDEN_AUDIT_LOG,
        description: "audit log file; overrides audit_log, overridden by --audit-log",
    },
    EnvVar {
        name: MCP_WARDEN_LOG,
        description: "log filter (tracing EnvFilter syntax); overrides log_level",
    },
];

/// A read-only view of environment variables.
pub trait EnvSource {
    /// The value of `name`, or `None` when it is unset or empty.
    fn var_os(&self, name: &str) -> Option<OsString>;

    /// The value of `name` as UTF-8, or `None` when it is unset, empty or not UTF-8.
    fn var(&self, name: &str) -> Option<String> {
        self.var_os(name).and_then(|value| value.into_string().ok())
    }

    /// The value of `name` as a path, or `None` when it is unset or empty.
    fn path(&self, name: &str) -> Option<PathBuf> {
        self.var_os(name).map(PathBuf::from)
    }
}

/// The environment of this process.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn var_os(&self, name: &str) -> Option<OsString> {
        std::env::var_os(name).filter(|value| !value.is_empty())
    }
}

/// A fixed set of variables, for tests and for embedding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MapEnv(HashMap<String, OsString>);

impl MapEnv {
    /// An environment with no variables.
    pub fn new() -> Self {
        Self::default()
    }

    /// This environment with `name` set to `value`.
    #[must_use]
    pub fn with(mut self, name: impl Into<String>, value: impl AsRef<OsStr>) -> Self {
        self.0.insert(name.into(), value.as_ref().to_owned());
        self
    }
}

impl<K: Into<String>, V: AsRef<OsStr>> FromIterator<(K, V)> for MapEnv {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        iter.into_iter()
            .fold(Self::new(), |env, (name, value)| env.with(name, value))
    }
}

impl EnvSource for MapEnv {
    fn var_os(&self, name: &str) -> Option<OsString> {
        self.0.get(name).filter(|value| !value.is_empty()).cloned()
    }
}

/// The name of mcp-warden's directory inside the platform's data directory.
pub const DATA_DIR_NAME: &str = "mcp-warden";

/// The platform's per-user data directory for mcp-warden, or `None` when the environment names
/// no usable home:
///
/// - Linux and other Unix: `$XDG_DATA_HOME/mcp-warden` if `XDG_DATA_HOME` is absolute
///   (the XDG spec ignores relative values), else `$HOME/.local/share/mcp-warden`;
/// - macOS: `$HOME/Library/Application Support/mcp-warden`;
/// - Windows: `%LOCALAPPDATA%\mcp-warden` (state is machine-local, so not the roaming profile).
///
/// `HOME` and `LOCALAPPDATA` must be absolute paths.
pub fn default_data_dir(env: &dyn EnvSource) -> Option<PathBuf> {
    let absolute = |name: &str| env.path(name).filter(|path| path.is_absolute());
    if cfg!(windows) {
        absolute("LOCALAPPDATA").map(|base| base.join(DATA_DIR_NAME))
    } else if cfg!(target_os = "macos") {
        absolute("HOME").map(|home| {
            home.join("Library")
                .join("Application Support")
                .join(DATA_DIR_NAME)
        })
    } else {
        absolute("XDG_DATA_HOME")
            .or_else(|| absolute("HOME").map(|home| home.join(".local").join("share")))
            .map(|base| base.join(DATA_DIR_NAME))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_env_treats_empty_as_unset() {
        let env = MapEnv::new().with("A", "1").with("EMPTY", "");
        assert_eq!(env.var("A").as_deref(), Some("1"));
        assert_eq!(env.var("EMPTY"), None);
        assert_eq!(env.var("MISSING"), None);
    }

    #[test]
    fn every_variable_is_listed_once() {
        let names: Vec<_> = ALL.iter().map(|var| var.name).collect();
        for name in [
            MCP_WARDEN_CONFIG,
            MCP_WARDEN_DATA_DIR,
            MCP_WARDEN_AUDIT_LOG,
            MCP_WARDEN_LOG,
        ] {
            assert_eq!(names.iter().filter(|listed| **listed == name).count(), 1);
        }
    }

    #[cfg(all(unix, not(target_os = "macos")))]
    #[test]
    fn default_data_dir_follows_xdg() {
        let home = MapEnv::new().with("HOME", "/home/ada");
        assert_eq!(
            default_data_dir(&home),
            Some(PathBuf::from("/home/ada/.local/share/mcp-warden"))
        );
        let xdg = home.clone().with("XDG_DATA_HOME", "/data");
        assert_eq!(
            default_data_dir(&xdg),
            Some(PathBuf::from("/data/mcp-warden"))
        );
        let relative_xdg = home.with("XDG_DATA_HOME", "data");
        assert_eq!(
            default_data_dir(&relative_xdg),
            Some(PathBuf::from("/home/ada/.local/share/mcp-warden"))
        );
        assert_eq!(default_data_dir(&MapEnv::new()), None);
        assert_eq!(
            default_data_dir(&MapEnv::new().with("HOME", "relative")),
            None
        );
    }
}
