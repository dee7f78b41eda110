//! What the launcher applies: the profile the gateway hands to `__sandbox-exec`.
//!
//! A profile holds no secret: secrets travel in the launcher's environment, which the
//! gateway builds from an explicit allow-list (see [`crate::plan`]). The profile is passed as
//! one JSON argument and is visible in `/proc/<pid>/cmdline` until the server is executed.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Everything the launcher needs to start one sandboxed server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Absolute path of the program to execute (resolved by the gateway).
    pub program: PathBuf,
    /// `argv[0]` as the server sees it.
    pub argv0: String,
    /// The arguments after `argv[0]`.
    pub args: Vec<String>,
    /// Working directory; the launcher's when `None`.
    pub cwd: Option<PathBuf>,
    /// New user, mount and PID namespaces (the server runs as PID 2 under a small init).
    pub namespaces: bool,
    /// Network access.
    pub network: Network,
    /// Landlock filesystem rules; `None` leaves the filesystem unrestricted.
    pub filesystem: Option<Filesystem>,
    /// A private, size-capped, read-write temporary directory (also `HOME` and `TMPDIR`).
    pub private_tmp: Option<PrivateTmp>,
    /// The seccomp filter; `None` installs none.
    pub seccomp: Option<Seccomp>,
    /// rlimits applied before the server starts.
    pub limits: ResourceLimits,
    /// Put the sandbox in a pids cgroup of its own with `pids.max = limits.processes`.
    pub cgroup_pids: bool,
    /// Put the sandbox in a memory cgroup of its own bounded by `limits.memory`.
    pub cgroup_memory: bool,
    /// Egress through the gateway's proxy (`network = { allow = [..] }`): the Unix socket of
    /// that proxy. Needs `network = loopback` and namespaces: init starts a forwarder on
    /// `127.0.0.1:<port>` in the sandbox's network namespace that relays each connection to
    /// this socket, and the server gets `HTTPS_PROXY` and friends pointing at it.
    #[serde(default)]
    pub egress_proxy: Option<PathBuf>,
    /// The identity `program` had when the gateway checked it against its command pin. The
    /// server process opens `program`, refuses to run it when the file's identity differs
    /// (it changed since the check), and executes an ELF binary through that descriptor, so
    /// that what runs is the file that was checked; see [`ProgramIdentity`].
    #[serde(default)]
    pub program_identity: Option<ProgramIdentity>,
}

/// What identifies one version of a file, as `stat(2)` reports it: device, inode, size,
/// modification and status change times (nanoseconds). The kernel sets the status change time
/// on every change to a file's bytes or metadata and no system call sets it back, so a file
/// rewritten in place, or replaced by another, does not keep its identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramIdentity {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
    /// `st_size`.
    pub size: u64,
    /// `st_mtime` in nanoseconds.
    pub mtime_ns: i128,
    /// `st_ctime` in nanoseconds.
    pub ctime_ns: i128,
}

impl ProgramIdentity {
    /// The identity of the file `meta` describes.
    pub fn of(meta: &std::fs::Metadata) -> ProgramIdentity {
        use std::os::unix::fs::MetadataExt as _;
        let ns = |secs: i64, nanos: i64| i128::from(secs) * 1_000_000_000 + i128::from(nanos);
        ProgramIdentity {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// Network access of a sandboxed server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// A new, empty network namespace: no interface is up, not even loopback.
    #[default]
    None,
    /// A new network namespace with only its own loopback up (the host's loopback services
    /// are out of reach).
    Loopback,
    /// The host's network, unrestricted.
    Full,
}

impl Network {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Network::None => "none",
            Network::Loopback => "loopback",
            Network::Full => "full",
        }
    }
}

/// Landlock rules: everything not listed is denied (reads, writes and execution).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filesystem {
    /// Readable and executable, recursively. Paths that do not exist are skipped.
    pub read: Vec<PathBuf>,
    /// Readable, writable and executable, recursively. Paths that do not exist are skipped.
    pub write: Vec<PathBuf>,
}

/// The private temporary directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivateTmp {
    /// Where the launcher creates it (a fresh `mcp-warden-sandbox-XXXXXX` directory, mode 0700).
    pub parent: PathBuf,
    /// Size of the tmpfs mounted on it (with namespaces); without namespaces it is a plain
    /// directory and the cap does not apply.
    pub size_bytes: u64,
}

/// The seccomp filter's options. The denied system calls are fixed (see
/// [`crate::launcher`] and `docs/sandbox.md`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seccomp {
    /// Allow `socket(AF_UNIX, ..)`. Off by default: connecting to a named Unix socket
    /// (`docker.sock`, an ssh-agent, D-Bus) is not covered by Landlock before ABI 9 nor by a
    /// network namespace.
    pub allow_unix_sockets: bool,
}

/// rlimits; `None` leaves the gateway's limit in place.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceLimits {
    /// Resident memory of the whole sandbox in bytes (memory cgroup, with
    /// [`Profile::cgroup_memory`]).
    pub memory: Option<u64>,
    /// `RLIMIT_AS`: address space per process in bytes.
    pub address_space: Option<u64>,
    /// `RLIMIT_CPU`: CPU seconds per process.
    pub cpu_seconds: Option<u64>,
    /// `RLIMIT_NOFILE`: open file descriptors per process.
    pub open_files: Option<u64>,
    /// Processes and threads: `RLIMIT_NPROC` (counted per user namespace, so only set with
    /// namespaces; the kernel does not enforce it for uid 0) and, with
    /// [`Profile::cgroup_pids`], the cgroup's `pids.max`.
    pub processes: Option<u64>,
    /// `RLIMIT_FSIZE`: largest file a process may write, in bytes.
    pub file_size: Option<u64>,
}
