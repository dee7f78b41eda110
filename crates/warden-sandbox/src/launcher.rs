//! The launcher: a fresh single-threaded process (`<binary> __sandbox-exec <profile>`) that
//! builds the sandbox and executes the server in it, so the gateway itself stays unrestricted.
//!
//! Process tree, top to bottom:
//!
//! ```text
//! gateway ── launcher (supervisor; outside the new PID namespace; own process group)
//!              └── init (PID 1 of the new PID namespace; reaps, exits with the server)
//!                    └── server (PID 2)
//! ```
//!
//! Order of operations, each step before the one that would forbid it:
//! 1. supervisor: create the private directory, `unshare` user + mount + PID (+ network)
//!    namespaces and map the caller's uid/gid, fork;
//! 2. init: parent-death signal (and check the supervisor is still there), make mounts
//!    private, mount a fresh `/proc` and a size-capped tmpfs on the private directory, bring
//!    loopback up (`network = "loopback"`), fork the egress forwarder (with an allow-list,
//!    see the `forwarder` module), set rlimits, clear the capability bounding and
//!    ambient sets, lock securebits, `no_new_privs`, Landlock, clear the capability sets,
//!    seccomp (last: it forbids `mount`, `unshare` and friends), fork;
//! 3. server: parent-death signal, `chdir`, `execve` with the launcher's environment (which
//!    the gateway built from an allow-list) plus `HOME` and `TMPDIR`.
//!
//! Every requested control is enforced or the launcher exits with [`EXIT_SETUP_FAILED`] and
//! one line on stderr naming the step and the kernel's error; it never runs the server with
//! less than the profile asks for. What the kernel offers is found out beforehand by the probe
//! (`__sandbox-exec --probe`), which runs the same steps and reports instead of failing.
//!
//! When the server exits, init exits and the kernel kills everything left in the PID
//! namespace. When the supervisor dies (the gateway killed it, or died and the supervisor got
//! its parent-death signal), init gets its own parent-death signal, with the same result.
#![expect(
    unsafe_code,
    reason = "fork, unshare, mount, prctl, capset, setrlimit and execve are foreign functions"
)]

mod caps;
mod cgroup;
mod filesystem;
mod forwarder;
mod seccomp;
mod sys;

use std::ffi::{CString, OsString};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::profile::{Filesystem, Network, PrivateTmp, Profile, ResourceLimits, Seccomp};
use crate::report::{Availability, Control, Status};
use sys::Failure;

/// The first argument that turns a binary into the launcher.
pub const LAUNCHER_ARG: &str = "__sandbox-exec";
/// The argument after [`LAUNCHER_ARG`] that asks for a probe instead of a server.
pub const PROBE_ARG: &str = "--probe";
/// Exit status when the sandbox could not be built (nothing was executed).
pub const EXIT_SETUP_FAILED: i32 = 125;
/// Exit status when `execve` of the server failed with a permission error.
pub const EXIT_NOT_EXECUTABLE: i32 = 126;
/// Exit status when the server's program was not found.
pub const EXIT_NOT_FOUND: i32 = 127;
/// Exit status when the program is no longer the file the gateway checked
/// ([`Profile::program_identity`]); nothing was executed.
pub const EXIT_PROGRAM_CHANGED: i32 = 123;

/// Size of the probe's tmpfs.
const PROBE_TMP_BYTES: u64 = 1 << 20;
/// Memory bound of the probe's cgroup.
const PROBE_MEMORY_BYTES: u64 = 64 << 20;
/// Proxy variables: set to the egress forwarder with an allow-list (any inherited value,
/// in any case, is dropped first; `NO_PROXY` is dropped and not set).
const PROXY_VARS: &[&str] = &["HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY"];
/// Prefix of private directories.
const TMP_PREFIX: &str = "mcp-warden-sandbox-";

/// The launcher's entry point. `args` are the arguments after [`LAUNCHER_ARG`]. Returns the
/// exit status (the server's, or [`EXIT_SETUP_FAILED`]).
///
/// Must be called before the process starts any thread: it forks.
pub fn main(args: &[OsString]) -> i32 {
    match args {
        [flag, tmp_parent] if flag.as_bytes() == PROBE_ARG.as_bytes() => {
            probe(Path::new(tmp_parent))
        }
        [profile] => match serde_json::from_slice::<Profile>(profile.as_bytes()) {
            Ok(profile) => match supervise(&profile, Mode::Exec, Findings::default()) {
                Ok(code) => code,
                Err(failure) => report_failure(&failure),
            },
            Err(error) => report_failure(&Failure::message("profile", error.to_string())),
        },
        _ => report_failure(&Failure::message(
            "arguments",
            format!("usage: {LAUNCHER_ARG} <profile-json> | {LAUNCHER_ARG} {PROBE_ARG} <dir>"),
        )),
    }
}

fn report_failure(failure: &Failure) -> i32 {
    let _ = writeln!(std::io::stderr(), "mcp-warden sandbox: {failure}");
    EXIT_SETUP_FAILED
}

/// Execute the server, or probe and print the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Exec,
    Probe,
}

/// What init found while building the sandbox (probe mode only).
#[derive(Default)]
struct Findings {
    entries: Vec<(Control, Status)>,
}

impl Findings {
    fn set(&mut self, control: Control, status: Status) {
        self.entries.retain(|(c, _)| *c != control);
        self.entries.push((control, status));
    }

    fn ok(&mut self, control: Control, detail: impl Into<String>) {
        self.set(
            control,
            Status::Available {
                detail: detail.into(),
            },
        );
    }

    fn failed(&mut self, control: Control, failure: &Failure) {
        self.set(
            control,
            Status::Unavailable {
                reason: failure.to_string(),
            },
        );
    }

    fn into_availability(mut self) -> Availability {
        for control in Control::ALL {
            if !self.entries.iter().any(|(c, _)| *c == control) {
                self.set(
                    control,
                    Status::Unavailable {
                        reason: "not checked".into(),
                    },
                );
            }
        }
        self.entries.sort_by_key(|(c, _)| *c);
        Availability {
            controls: self.entries,
        }
    }
}

/// The profile the probe tries: everything on, loopback network, tiny limits.
fn probe_profile(tmp_parent: &Path) -> Profile {
    Profile {
        program: PathBuf::from("/nonexistent"),
        argv0: "probe".into(),
        args: Vec::new(),
        cwd: None,
        namespaces: true,
        network: Network::Loopback,
        filesystem: Some(Filesystem {
            read: vec![PathBuf::from("/usr")],
            write: Vec::new(),
        }),
        private_tmp: Some(PrivateTmp {
            parent: tmp_parent.to_owned(),
            size_bytes: PROBE_TMP_BYTES,
        }),
        seccomp: Some(Seccomp::default()),
        limits: ResourceLimits {
            memory: Some(PROBE_MEMORY_BYTES),
            address_space: None,
            cpu_seconds: Some(60),
            open_files: Some(256),
            processes: Some(64),
            file_size: Some(1 << 20),
        },
        cgroup_pids: true,
        cgroup_memory: true,
        // Never connected to: the probe only starts the forwarder.
        egress_proxy: Some(tmp_parent.join("mcp-warden-probe-egress.sock")),
        program_identity: None,
    }
}

fn probe(tmp_parent: &Path) -> i32 {
    let mut profile = probe_profile(tmp_parent);
    let mut findings = Findings::default();
    // Namespaces are tried first in a throwaway child; without them the rest is probed as
    // the launcher would apply it on this machine.
    if let Err(failure) = sys::check_unshare() {
        profile.namespaces = false;
        profile.network = Network::Full;
        profile.egress_proxy = None;
        profile.limits.processes = None;
        for control in [
            Control::UserNamespace,
            Control::MountNamespace,
            Control::PidNamespace,
            Control::NetworkNamespace,
            Control::NetworkAllowList,
        ] {
            findings.failed(control, &failure);
        }
    }
    match supervise(&profile, Mode::Probe, findings) {
        Ok(code) => code,
        Err(failure) => report_failure(&failure),
    }
}

/// The supervisor: steps 1 of the module docs, then waits for init.
fn supervise(profile: &Profile, mode: Mode, mut findings: Findings) -> Result<i32, Failure> {
    let uid = sys::getuid();
    let gid = sys::getgid();
    let mut limits = Vec::new();
    if profile.cgroup_pids
        && let Some(max) = profile.limits.processes
    {
        limits.push(cgroup::Limit::Pids(max));
    }
    if profile.cgroup_memory
        && let Some(bytes) = profile.limits.memory
    {
        limits.push(cgroup::Limit::Memory(bytes));
    }
    let group = match mode {
        Mode::Exec if limits.is_empty() => None,
        Mode::Exec => Some(cgroup::Groups::join(&limits)?),
        Mode::Probe => {
            // Each controller on its own: one may be delegated without the other.
            let mut pids = false;
            for limit in &limits {
                let (control, detail) = match limit {
                    cgroup::Limit::Pids(_) => (Control::ProcessLimit, crate::report::PIDS_CGROUP),
                    cgroup::Limit::Memory(_) => (Control::MemoryLimit, "memory cgroup"),
                };
                match cgroup::Groups::check(*limit) {
                    Ok(()) => {
                        findings.ok(control, detail);
                        pids |= control == Control::ProcessLimit;
                    }
                    Err(failure) => findings.failed(control, &failure),
                }
            }
            if !pids {
                if profile.namespaces && uid != 0 {
                    findings.ok(Control::ProcessLimit, "RLIMIT_NPROC in the user namespace");
                } else {
                    findings.failed(
                        Control::ProcessLimit,
                        &Failure::message(
                            "process limit",
                            "no pids cgroup, and RLIMIT_NPROC is not enforced for uid 0 or without a user namespace",
                        ),
                    );
                }
            }
            None
        }
    };
    let tmp = match &profile.private_tmp {
        Some(tmp) => match make_private_dir(&tmp.parent) {
            Ok(dir) => Some(dir),
            Err(failure) => {
                if let Some(group) = &group {
                    group.leave();
                }
                return Err(failure);
            }
        },
        None => None,
    };
    let result = supervise_in(profile, mode, findings, uid, gid, tmp.as_deref());
    if let Some(dir) = &tmp {
        cleanup_private_dir(dir, profile.namespaces);
    }
    if let Some(group) = &group {
        group.leave();
    }
    result
}

fn supervise_in(
    profile: &Profile,
    mode: Mode,
    findings: Findings,
    uid: u32,
    gid: u32,
    tmp: Option<&Path>,
) -> Result<i32, Failure> {
    if profile.namespaces {
        sys::unshare_namespaces(profile.network != Network::Full, uid, gid)?;
    } else if profile.network != Network::Full {
        return Err(Failure::message(
            "network",
            format!(
                "network = \"{}\" needs namespaces",
                profile.network.as_str()
            ),
        ));
    }
    let alive = sys::Pipe::new()?;
    match sys::fork()? {
        sys::Forked::Child => {
            // Init. Never returns to the caller: its fate is the server's.
            let alive_read = alive.into_read_end();
            let code = init(profile, mode, findings, tmp, alive_read);
            sys::exit_now(code)
        }
        sys::Forked::Parent(child) => {
            // The write end stays open (and unused) for as long as the supervisor lives: init
            // sees it close when the supervisor dies.
            let _alive_write = alive.into_write_end();
            if mode == Mode::Exec {
                // The gateway signals the whole process group; the server gets SIGTERM
                // directly, and the supervisor must outlive it to report its status.
                sys::ignore_termination_signals();
                // Only the server holds the protocol pipes, so their end is its end.
                sys::detach_stdio()?;
            }
            Ok(sys::wait_for(child))
        }
    }
}

/// `<parent>/mcp-warden-sandbox-<supervisor pid>-XXXXXX`, after removing the empty
/// directories of supervisors that were SIGKILLed (their pid is gone, so no sandbox of theirs
/// is alive: init dies with its supervisor). rmdir(2) never removes a non-empty directory.
fn make_private_dir(parent: &Path) -> Result<PathBuf, Failure> {
    if let Ok(entries) = std::fs::read_dir(parent) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let pid = name
                .to_str()
                .and_then(|n| n.strip_prefix(TMP_PREFIX))
                .and_then(|rest| rest.split_once('-'))
                .and_then(|(pid, _)| pid.parse::<u32>().ok());
            if let Some(pid) = pid
                && !Path::new(&format!("/proc/{pid}")).exists()
            {
                let _ = std::fs::remove_dir(entry.path());
            }
        }
    }
    sys::make_private_dir(parent, &format!("{TMP_PREFIX}{}-", std::process::id()))
}

fn cleanup_private_dir(dir: &Path, namespaces: bool) {
    if namespaces {
        // The tmpfs lives in the mount namespace this process shares with init; detach it so
        // the (empty) directory underneath can be removed from the host.
        let _ = sys::unmount_detach(dir);
        let _ = std::fs::remove_dir(dir);
    } else {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Init: steps 2 of the module docs, then fork the server and reap until it exits.
fn init(
    profile: &Profile,
    mode: Mode,
    mut findings: Findings,
    tmp: Option<&Path>,
    alive: std::os::fd::OwnedFd,
) -> i32 {
    let result = build(profile, mode, tmp, &alive, &mut findings);
    drop(alive);
    let (result, egress_port) = match result {
        Ok(port) => (Ok(()), port),
        Err(failure) => (Err(failure), None),
    };
    match mode {
        Mode::Probe => {
            if let Err(failure) = result {
                // `build` records each step itself; an error here is not tied to one control.
                let _ = writeln!(std::io::stderr(), "mcp-warden sandbox: probe: {failure}");
            }
            let availability = findings.into_availability();
            match serde_json::to_vec(&availability) {
                Ok(json) => {
                    let mut out = std::io::stdout();
                    if out.write_all(&json).and_then(|()| out.flush()).is_ok() {
                        0
                    } else {
                        EXIT_SETUP_FAILED
                    }
                }
                Err(_) => EXIT_SETUP_FAILED,
            }
        }
        Mode::Exec => match result {
            Ok(()) => run_server(profile, tmp, egress_port),
            Err(failure) => report_failure(&failure),
        },
    }
}

/// Runs one step: in exec mode its failure ends the launch; in probe mode it is recorded
/// against `control` and the probe goes on.
fn step(
    mode: Mode,
    findings: &mut Findings,
    control: Control,
    result: Result<String, Failure>,
) -> Result<bool, Failure> {
    match (result, mode) {
        (Ok(detail), _) => {
            findings.ok(control, detail);
            Ok(true)
        }
        (Err(failure), Mode::Probe) => {
            findings.failed(control, &failure);
            Ok(false)
        }
        (Err(failure), Mode::Exec) => Err(failure),
    }
}

fn build(
    profile: &Profile,
    mode: Mode,
    tmp: Option<&Path>,
    alive: &std::os::fd::OwnedFd,
    findings: &mut Findings,
) -> Result<Option<u16>, Failure> {
    sys::set_parent_death_signal()?;
    sys::check_parent_alive(alive)?;
    if profile.namespaces {
        findings.ok(Control::UserNamespace, "uid and gid mapped to themselves");
        let mounted = sys::make_mounts_private()
            .and_then(|()| sys::mount_proc())
            .and_then(|()| match (tmp, &profile.private_tmp) {
                (Some(dir), Some(spec)) => sys::mount_tmpfs(dir, spec.size_bytes),
                _ => Ok(()),
            })
            .map(|()| "private /proc and tmpfs".to_owned());
        step(mode, findings, Control::MountNamespace, mounted)?;
        findings.ok(
            Control::PidNamespace,
            "server runs as PID 2 under the launcher's init",
        );
        let network = match profile.network {
            Network::Loopback => sys::loopback_up().map(|()| "loopback up".to_owned()),
            Network::None => Ok("no interface up".to_owned()),
            Network::Full => Ok("host network".to_owned()),
        };
        if profile.network != Network::Full {
            step(mode, findings, Control::NetworkNamespace, network)?;
        }
    }
    // The egress forwarder, before any restriction of the server (see `forwarder`).
    let mut egress_port = None;
    if let Some(socket) = &profile.egress_proxy {
        let started = if profile.namespaces && profile.network == Network::Loopback {
            forwarder::start(socket)
        } else {
            Err(Failure::message(
                "egress",
                "an allow-list needs namespaces and network = \"loopback\"",
            ))
        };
        match (started, mode) {
            (Ok(port), _) => {
                findings.ok(
                    Control::NetworkAllowList,
                    "forwarder on the sandbox's loopback to the gateway's proxy",
                );
                egress_port = Some(port);
            }
            (Err(failure), Mode::Probe) => findings.failed(Control::NetworkAllowList, &failure),
            (Err(failure), Mode::Exec) => return Err(failure),
        }
    }
    let limits =
        sys::set_rlimits(&profile.limits, profile.namespaces).map(|()| "rlimits set".to_owned());
    step(mode, findings, Control::ResourceLimits, limits)?;
    let bounding = caps::drop_bounding_and_ambient().map(|()| String::new());
    let bounding_ok = step(mode, findings, Control::Capabilities, bounding)?;
    let nnp = sys::set_no_new_privs().map(|()| "set".to_owned());
    step(mode, findings, Control::NoNewPrivileges, nnp)?;
    if let Some(filesystem) = &profile.filesystem {
        let mut filesystem = filesystem.clone();
        if let Some(dir) = tmp {
            filesystem.write.push(dir.to_owned());
        }
        step(
            mode,
            findings,
            Control::Landlock,
            filesystem::restrict(&filesystem),
        )?;
    }
    if bounding_ok {
        let cleared = caps::clear_sets().map(|()| {
            "bounding, ambient, effective, permitted and inheritable sets empty".to_owned()
        });
        step(mode, findings, Control::Capabilities, cleared)?;
    }
    if let Some(options) = &profile.seccomp {
        step(
            mode,
            findings,
            Control::Seccomp,
            seccomp::install(options).map(|n| format!("{n} system calls denied")),
        )?;
    }
    Ok(egress_port)
}

/// Forks the server, then reaps until it exits; returns its status.
fn run_server(profile: &Profile, tmp: Option<&Path>, egress_port: Option<u16>) -> i32 {
    // Everything the child needs is prepared here, so that an error is reported before the
    // fork and the child only calls async-signal-safe functions (the process is
    // single-threaded, so this is belt and braces).
    let exec = match Exec::prepare(profile, tmp, egress_port) {
        Ok(exec) => exec,
        Err(failure) => return report_failure(&failure),
    };
    match sys::fork() {
        Ok(sys::Forked::Child) => {
            let code = exec.run();
            sys::exit_now(code)
        }
        Ok(sys::Forked::Parent(server)) => {
            // Init does not hold the protocol pipes: the server's exit closes them.
            if let Err(failure) = sys::detach_stdio() {
                return report_failure(&failure);
            }
            sys::reap_until(server)
        }
        Err(failure) => report_failure(&failure),
    }
}

/// Why the checked program was not executed.
enum Refused {
    /// It could not be opened (reported as a failed `execve` would be).
    Open(std::io::Error),
    /// It is not the file that was checked.
    Changed(Failure),
}

/// A prepared `execve`.
struct Exec {
    program: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    cwd: Option<CString>,
    /// The identity the gateway checked `program` with ([`Profile::program_identity`]).
    identity: Option<crate::profile::ProgramIdentity>,
}

impl Exec {
    fn prepare(
        profile: &Profile,
        tmp: Option<&Path>,
        egress_port: Option<u16>,
    ) -> Result<Exec, Failure> {
        let c = |what: &'static str, bytes: &[u8]| {
            CString::new(bytes).map_err(|_| Failure::message(what, "contains a NUL byte"))
        };
        let program = c("program", profile.program.as_os_str().as_bytes())?;
        let mut argv = vec![c("argv0", profile.argv0.as_bytes())?];
        for arg in &profile.args {
            argv.push(c("argument", arg.as_bytes())?);
        }
        let mut envp = Vec::new();
        for (key, value) in std::env::vars_os() {
            if tmp.is_some() && (key == "HOME" || key == "TMPDIR") {
                continue;
            }
            if egress_port.is_some()
                && key
                    .to_str()
                    .is_some_and(|k| PROXY_VARS.iter().any(|v| v.eq_ignore_ascii_case(k)))
            {
                continue;
            }
            let mut entry = key.as_bytes().to_vec();
            entry.push(b'=');
            entry.extend_from_slice(value.as_bytes());
            envp.push(c("environment", &entry)?);
        }
        if let Some(dir) = tmp {
            for key in ["HOME", "TMPDIR"] {
                let mut entry = format!("{key}=").into_bytes();
                entry.extend_from_slice(dir.as_os_str().as_bytes());
                envp.push(c("environment", &entry)?);
            }
        }
        if let Some(port) = egress_port {
            for key in PROXY_VARS.iter().filter(|k| **k != "NO_PROXY") {
                for key in [key.to_string(), key.to_ascii_lowercase()] {
                    envp.push(c(
                        "environment",
                        format!("{key}=http://127.0.0.1:{port}").as_bytes(),
                    )?);
                }
            }
        }
        let cwd = match &profile.cwd {
            Some(cwd) => Some(c("cwd", cwd.as_os_str().as_bytes())?),
            None => None,
        };
        Ok(Exec {
            program,
            argv,
            envp,
            cwd,
            identity: profile.program_identity,
        })
    }

    /// Opens the program and checks that it is still the file the gateway checked. An ELF
    /// binary is returned open, to be executed through its descriptor; `None` for a script.
    fn open_checked(
        &self,
        expected: crate::profile::ProgramIdentity,
    ) -> Result<Option<std::fs::File>, Refused> {
        use std::io::Read as _;
        use std::os::unix::ffi::OsStrExt as _;
        let path = std::path::Path::new(std::ffi::OsStr::from_bytes(self.program.as_bytes()));
        let mut file = std::fs::File::open(path).map_err(Refused::Open)?;
        let meta = file.metadata().map_err(Refused::Open)?;
        if crate::profile::ProgramIdentity::of(&meta) != expected {
            return Err(Refused::Changed(Failure::message(
                "program",
                format!(
                    "{} changed after its command pin was checked; not executed",
                    path.display()
                ),
            )));
        }
        let mut magic = [0u8; 4];
        let elf = file.read_exact(&mut magic).is_ok() && magic == *b"\x7fELF";
        Ok(elf.then_some(file))
    }

    /// In the server's process: parent-death signal, chdir, execve. Returns only on failure.
    fn run(&self) -> i32 {
        if let Err(failure) = sys::set_parent_death_signal() {
            return report_failure(&failure);
        }
        if let Some(cwd) = &self.cwd
            && let Err(failure) = sys::chdir(cwd)
        {
            return report_failure(&failure);
        }
        let error = match self.identity {
            Some(identity) => match self.open_checked(identity) {
                Ok(Some(file)) => {
                    use std::os::fd::AsFd as _;
                    sys::execve_fd(file.as_fd(), &self.argv, &self.envp)
                }
                // A script: the kernel starts its interpreter with the script's path, so it is
                // executed by path (the check above still covers it).
                Ok(None) => sys::execve(&self.program, &self.argv, &self.envp),
                Err(Refused::Open(error)) => error,
                Err(Refused::Changed(failure)) => {
                    report_failure(&failure);
                    return EXIT_PROGRAM_CHANGED;
                }
            },
            None => sys::execve(&self.program, &self.argv, &self.envp),
        };
        let code = match error.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => EXIT_NOT_FOUND,
            _ => EXIT_NOT_EXECUTABLE,
        };
        let _ = writeln!(
            std::io::stderr(),
            "mcp-warden sandbox: execve {}: {error}",
            String::from_utf8_lossy(self.program.as_bytes())
        );
        code
    }
}
