//! From settings (what `warden.toml` asks for) and a command to a [`Sandbox`]: resolves the
//! program, derives the default filesystem allow-list, builds the environment from an
//! allow-list, and drops what the probe found unavailable, saying so.
//!
//! Runs in the gateway; reads only file metadata and the first line of the program (for a
//! `#!` interpreter).

use std::ffi::OsStr;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use crate::SandboxError;
use crate::profile::{Filesystem, Network, PrivateTmp, Profile, ResourceLimits, Seccomp};
use crate::report::{Availability, Control};
use crate::spawn::Sandbox;

/// Read-only for every sandboxed server: the system's programs and libraries, TLS roots,
/// name resolution, time zones, users and groups (names only: `/etc/shadow` is not listed),
/// the private `/proc` and CPU topology. Paths that do not exist are skipped.
pub const DEFAULT_READ: &[&str] = &[
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/pki",
    "/etc/crypto-policies",
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/nsswitch.conf",
    "/etc/gai.conf",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/passwd",
    "/etc/group",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/mime.types",
    "/etc/os-release",
    "/proc",
    "/sys/devices/system/cpu",
    "/sys/fs/cgroup",
    "/dev/urandom",
    "/dev/random",
    "/dev/zero",
];

/// Read-write for every sandboxed server (besides its private directory).
pub const DEFAULT_WRITE: &[&str] = &["/dev/null", "/dev/full"];

/// Environment variables copied from the gateway by default: locale, time zone and the
/// program search path. Nothing else is inherited.
pub const DEFAULT_ENV_ALLOW: &[&str] = &[
    "PATH",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "LC_MESSAGES",
    "TZ",
];

/// Bounds a server's private directory (a tmpfs: it counts against memory).
pub const DEFAULT_TMP_BYTES: u64 = 256 << 20;
/// Bounds the sandbox's resident memory (memory cgroup).
pub const DEFAULT_MEMORY_BYTES: u64 = 2 << 30;
/// CPU seconds per process; a long-lived server that spins for an hour is stuck.
pub const DEFAULT_CPU_SECONDS: u64 = 3600;
/// Open files per process.
pub const DEFAULT_OPEN_FILES: u64 = 1024;
/// Processes and threads in the sandbox: enough for a worker pool, not for a fork bomb.
pub const DEFAULT_PROCESSES: u64 = 256;
/// Largest file a server may write.
pub const DEFAULT_FILE_SIZE_BYTES: u64 = 1 << 30;

/// Sub-directories of an install prefix (`<prefix>/bin/<program>`) a server may read: enough
/// for Node, CPython and virtualenvs, without the rest of a prefix such as `~/.local/share`
/// or `~/.cargo/credentials.toml`.
const PREFIX_PARTS: &[&str] = &[
    "bin",
    "sbin",
    "lib",
    "lib64",
    "lib32",
    "libexec",
    "pyvenv.cfg",
];
/// Longest `#!` line read from a program.
const SHEBANG_MAX: usize = 256;

/// What the configuration asks for one upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Network access.
    pub network: Network,
    /// Extra read-only paths.
    pub read: Vec<PathBuf>,
    /// Extra read-write paths.
    pub write: Vec<PathBuf>,
    /// Names of the gateway's environment variables passed through (replaces
    /// [`DEFAULT_ENV_ALLOW`]).
    pub env_allow: Vec<String>,
    /// rlimits.
    pub limits: ResourceLimits,
    /// Size of the private tmpfs.
    pub tmp_bytes: u64,
    /// Allow `socket(AF_UNIX)`.
    pub allow_unix_sockets: bool,
    /// Egress only through the gateway's proxy listening on this Unix socket
    /// (`network = { allow = [..] }`; see [`Profile::egress_proxy`]). Implies a network
    /// namespace with loopback, whatever [`Settings::network`] says.
    pub egress_proxy: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            network: Network::None,
            read: Vec::new(),
            write: Vec::new(),
            env_allow: DEFAULT_ENV_ALLOW.iter().map(|s| (*s).to_owned()).collect(),
            limits: ResourceLimits {
                memory: Some(DEFAULT_MEMORY_BYTES),
                // Unbounded by default: V8 reserves 10 GiB of address space per WebAssembly
                // memory, so any useful bound breaks Node servers.
                address_space: None,
                cpu_seconds: Some(DEFAULT_CPU_SECONDS),
                open_files: Some(DEFAULT_OPEN_FILES),
                processes: Some(DEFAULT_PROCESSES),
                file_size: Some(DEFAULT_FILE_SIZE_BYTES),
            },
            tmp_bytes: DEFAULT_TMP_BYTES,
            allow_unix_sockets: false,
            egress_proxy: None,
        }
    }
}

/// The command to sandbox and where the gateway runs.
#[derive(Clone)]
pub struct Command<'a> {
    /// The program as configured (a name looked up in `PATH`, or a path).
    pub program: &'a str,
    /// Its arguments.
    pub args: &'a [String],
    /// Configured working directory.
    pub cwd: Option<&'a Path>,
    /// The gateway's working directory (relative paths are resolved against it).
    pub gateway_cwd: &'a Path,
    /// Reads one of the gateway's environment variables.
    pub gateway_env: &'a dyn Fn(&str) -> Option<String>,
    /// Variables configured for this upstream (already resolved; they may be secrets).
    pub env: Vec<(String, String)>,
}

impl std::fmt::Debug for Command<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The environment may hold secrets: names only.
        let names: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Command")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("cwd", &self.cwd)
            .field("env", &names)
            .finish_non_exhaustive()
    }
}

/// A control the plan could not apply, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Degraded {
    /// The control.
    pub control: Control,
    /// Why (the probe's finding).
    pub reason: String,
}

/// The outcome of [`plan`]. `Debug` shows environment names only.
#[derive(Clone)]
pub struct Planned {
    /// The launcher and profile.
    pub sandbox: Sandbox,
    /// The child's entire environment. May hold secrets: never log it.
    pub env: Vec<(String, String)>,
    /// Controls asked for but not enforceable on this machine (empty when all hold).
    pub degraded: Vec<Degraded>,
}

impl std::fmt::Debug for Planned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Planned")
            .field("sandbox", &self.sandbox)
            .field("env", &names)
            .field("degraded", &self.degraded)
            .finish()
    }
}

/// Builds the sandbox of one server.
pub fn plan(
    settings: &Settings,
    availability: &Availability,
    launcher: &Path,
    tmp_parent: &Path,
    command: &Command<'_>,
) -> Result<Planned, SandboxError> {
    let path_var = (command.gateway_env)("PATH").unwrap_or_default();
    let program = resolve_program(command.program, command.gateway_cwd, &path_var)?;
    let home = (command.gateway_env)("HOME").map(PathBuf::from);
    let home = home.as_deref();

    let mut read: Vec<PathBuf> = DEFAULT_READ.iter().map(PathBuf::from).collect();
    read.extend(executable_grants(&program, &path_var, home));
    let base = command.cwd.unwrap_or(command.gateway_cwd);
    for arg in command.args {
        if let Some(grant) = argument_grant(arg, base, home) {
            read.push(grant);
        }
        // An executable argument is a program a wrapper (`sh -c`, `env`) will run: it needs
        // what the program itself would (its install prefix, its interpreter).
        let path = absolute(Path::new(arg), base);
        if arg.contains('/') && is_executable(&path) {
            read.extend(executable_grants(&path, &path_var, home));
        }
    }
    if let Some(cwd) = command.cwd
        && !is_too_broad(cwd, home)
    {
        read.push(absolute(cwd, command.gateway_cwd));
    }
    read.extend(
        settings
            .read
            .iter()
            .map(|p| absolute(p, command.gateway_cwd)),
    );
    let mut write: Vec<PathBuf> = DEFAULT_WRITE.iter().map(PathBuf::from).collect();
    write.extend(
        settings
            .write
            .iter()
            .map(|p| absolute(p, command.gateway_cwd)),
    );
    dedup(&mut read);
    dedup(&mut write);

    let mut degraded = Vec::new();
    let mut note = |control: Control| {
        let reason = match availability.status(control) {
            crate::report::Status::Unavailable { reason } => reason,
            crate::report::Status::Available { .. } => return,
        };
        degraded.push(Degraded { control, reason });
    };
    let namespaces = [
        Control::UserNamespace,
        Control::MountNamespace,
        Control::PidNamespace,
    ]
    .iter()
    .all(|c| availability.is_available(*c));
    if !namespaces {
        note(Control::UserNamespace);
        note(Control::MountNamespace);
        note(Control::PidNamespace);
    }
    let mut network = settings.network;
    let mut egress_proxy = None;
    if let Some(socket) = &settings.egress_proxy {
        // Without the forwarder the server keeps its own loopback and reaches nothing (fail
        // closed); without a network namespace, the line below widens it to `full` and says so.
        network = Network::Loopback;
        if namespaces
            && availability.is_available(Control::NetworkNamespace)
            && availability.is_available(Control::NetworkAllowList)
        {
            egress_proxy = Some(socket.clone());
        } else {
            note(Control::NetworkAllowList);
        }
    }
    if network != Network::Full
        && !(namespaces && availability.is_available(Control::NetworkNamespace))
    {
        note(Control::NetworkNamespace);
        network = Network::Full;
    }
    let filesystem = if availability.is_available(Control::Landlock) {
        Some(Filesystem { read, write })
    } else {
        note(Control::Landlock);
        None
    };
    let seccomp = if availability.is_available(Control::Seccomp) {
        Some(Seccomp {
            allow_unix_sockets: settings.allow_unix_sockets,
        })
    } else {
        note(Control::Seccomp);
        None
    };
    let process_limit = availability.status(Control::ProcessLimit);
    let cgroup_pids = matches!(
        &process_limit,
        crate::report::Status::Available { detail } if detail == crate::report::PIDS_CGROUP
    );
    if settings.limits.processes.is_some() && !process_limit.is_available() {
        note(Control::ProcessLimit);
    }
    let cgroup_memory = availability.is_available(Control::MemoryLimit);
    if settings.limits.memory.is_some() && !cgroup_memory {
        note(Control::MemoryLimit);
    }
    let mut env = Vec::new();
    for name in &settings.env_allow {
        if let Some(value) = (command.gateway_env)(name) {
            env.push((name.clone(), value));
        }
    }
    for (key, value) in &command.env {
        env.retain(|(k, _)| k != key);
        env.push((key.clone(), value.clone()));
    }
    let argv0 = command.program.to_owned();
    let profile = Profile {
        program,
        argv0,
        args: command.args.to_vec(),
        cwd: command.cwd.map(|c| absolute(c, command.gateway_cwd)),
        namespaces,
        network,
        filesystem,
        private_tmp: Some(PrivateTmp {
            parent: tmp_parent.to_owned(),
            size_bytes: settings.tmp_bytes,
        }),
        seccomp,
        limits: settings.limits,
        cgroup_pids,
        cgroup_memory,
        egress_proxy,
        program_identity: None,
    };
    Ok(Planned {
        sandbox: Sandbox {
            launcher: launcher.to_owned(),
            profile,
        },
        env,
        degraded,
    })
}

fn dedup(paths: &mut Vec<PathBuf>) {
    let mut seen = std::collections::HashSet::new();
    paths.retain(|p| seen.insert(p.clone()));
}

fn absolute(path: &Path, base: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        base.join(path)
    }
}

/// `program` as an absolute path: relative to `cwd` when it has a `/`, else the first
/// executable match in `path_var`.
pub fn resolve_program(program: &str, cwd: &Path, path_var: &str) -> Result<PathBuf, SandboxError> {
    let not_found = || SandboxError::ProgramNotFound {
        program: program.to_owned(),
    };
    if program.is_empty() {
        return Err(not_found());
    }
    if program.contains('/') {
        let path = absolute(Path::new(program), cwd);
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(not_found())
        };
    }
    std::env::split_paths(OsStr::new(path_var))
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(not_found)
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Home itself or the root: never granted implicitly, only by explicit configuration.
fn is_too_broad(path: &Path, home: Option<&Path>) -> bool {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    path.parent().is_none()
        || home.is_some_and(|h| std::fs::canonicalize(h).unwrap_or_else(|_| h.to_owned()) == path)
}

/// What a program needs to run: its install prefix's `bin`/`lib` (or its own directory),
/// for the path as configured and after symlinks, plus the same for a `#!` interpreter.
fn executable_grants(program: &Path, path_var: &str, home: Option<&Path>) -> Vec<PathBuf> {
    let mut grants = Vec::new();
    let mut todo = vec![program.to_owned()];
    // Bounded: the program, its target, an interpreter and an `env` indirection.
    for _ in 0..4 {
        let Some(next) = todo.pop() else { break };
        let mut candidates = vec![next.clone()];
        if let Ok(real) = std::fs::canonicalize(&next)
            && real != next
        {
            candidates.push(real);
        }
        for file in candidates {
            grants.extend(install_grants(&file, home));
            if let Some(interpreter) = shebang(&file, path_var) {
                todo.push(interpreter);
            }
        }
    }
    grants
}

/// `<prefix>/bin/x` -> the prefix's [`PREFIX_PARTS`]; `<dir>/x` -> `<dir>` (or only the file
/// when `<dir>` is home or the root).
fn install_grants(file: &Path, home: Option<&Path>) -> Vec<PathBuf> {
    let Some(dir) = file.parent() else {
        return Vec::new();
    };
    let is_bin = matches!(
        dir.file_name().and_then(OsStr::to_str),
        Some("bin" | "sbin")
    );
    match (is_bin, dir.parent()) {
        (true, Some(prefix)) => PREFIX_PARTS.iter().map(|p| prefix.join(p)).collect(),
        _ if is_too_broad(dir, home) => vec![file.to_owned()],
        _ => vec![dir.to_owned()],
    }
}

/// The interpreter of a `#!` script, resolved (`#!/usr/bin/env node` -> `node` in `PATH`).
fn shebang(file: &Path, path_var: &str) -> Option<PathBuf> {
    let (interpreter, env_name) = shebang_line(file)?;
    match env_name {
        Some(name) => resolve_program(&name, Path::new("/"), path_var).ok(),
        None if is_env(&interpreter) => None,
        None => Some(interpreter),
    }
}

/// The interpreter named by a `#!` line and, when it is `env`, the program name `env` is asked
/// to find (its first argument that is not an option).
fn shebang_line(file: &Path) -> Option<(PathBuf, Option<String>)> {
    use std::os::unix::ffi::OsStrExt as _;
    let mut head = [0u8; SHEBANG_MAX];
    let n = std::fs::File::open(file).ok()?.read(&mut head).ok()?;
    let rest = head[..n].strip_prefix(b"#!")?;
    // As the kernel reads it (fs/binfmt_script.c): up to the newline, or without one the whole
    // buffer, unless the interpreter's name itself runs to its end (then exec fails).
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let line = match rest.iter().position(|&b| b == b'\n') {
        Some(end) => &rest[..end],
        None => {
            let start = rest.iter().position(|b| !blank(b))?;
            rest[start..].iter().position(blank)?;
            rest
        }
    };
    let mut words = line.split(blank).filter(|w| !w.is_empty());
    let interpreter = PathBuf::from(OsStr::from_bytes(words.next()?));
    let env_name = if is_env(&interpreter) {
        words
            .find(|w| !w.starts_with(b"-"))
            .and_then(|w| std::str::from_utf8(w).ok())
            .map(str::to_owned)
    } else {
        None
    };
    Some((interpreter, env_name))
}

fn is_env(interpreter: &Path) -> bool {
    interpreter.file_name() == Some(OsStr::new("env"))
}

/// How many `#!` levels the kernel follows before refusing to execute (`BINPRM_MAX_RECURSION`
/// in Linux's `fs/exec.c`).
pub const INTERPRETER_LEVELS: usize = 4;

/// The files that execute after `program` itself when it is started: for a `#!` script, its
/// interpreter and, for `#!/usr/bin/env NAME`, also the `NAME` that `env` finds in `path_var`;
/// then the same for each of those, as the kernel does, up to [`INTERPRETER_LEVELS`] levels.
/// In order, without repeats. A program that is not a script gives an empty list, and so does
/// an interpreter that cannot be read or found (starting it fails the same way).
pub fn interpreter_chain(program: &Path, path_var: &str) -> Vec<PathBuf> {
    let mut chain: Vec<PathBuf> = Vec::new();
    let mut current = vec![program.to_owned()];
    for _ in 0..INTERPRETER_LEVELS {
        let mut next = Vec::new();
        for file in &current {
            let Some((interpreter, env_name)) = shebang_line(file) else {
                continue;
            };
            next.push(interpreter);
            if let Some(found) =
                env_name.and_then(|n| resolve_program(&n, Path::new("/"), path_var).ok())
            {
                next.push(found);
            }
        }
        next.retain(|f| f != program && !chain.contains(f));
        next.dedup();
        if next.is_empty() {
            break;
        }
        chain.extend(next.iter().cloned());
        current = next;
    }
    chain
}

/// A file argument (a script, an entry point): its package directory. Inside `node_modules`,
/// the project that holds the outermost `node_modules`; else the file's directory. Only
/// files that exist count; directories are never granted implicitly.
fn argument_grant(arg: &str, base: &Path, home: Option<&Path>) -> Option<PathBuf> {
    if arg.starts_with('-') && !arg.contains('/') {
        return None;
    }
    let path = absolute(Path::new(arg), base);
    if !std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
        return None;
    }
    let path = std::fs::canonicalize(&path).unwrap_or(path);
    let mut outermost_modules = None;
    let mut prefix = PathBuf::new();
    for component in path.components() {
        prefix.push(component);
        if component == Component::Normal(OsStr::new("node_modules")) && outermost_modules.is_none()
        {
            outermost_modules = Some(prefix.clone());
        }
    }
    let dir = match outermost_modules {
        Some(modules) => match modules.parent() {
            Some(project) if !is_too_broad(project, home) => project.to_owned(),
            _ => modules,
        },
        None => path.parent()?.to_owned(),
    };
    if is_too_broad(&dir, home) {
        Some(path)
    } else {
        Some(dir)
    }
}

#[cfg(test)]
mod tests;
