//! Starting a child (sandboxed or not) in its own process group, and signalling that group.
//!
//! Moved here from `warden-upstream` so that this crate is the only one that spawns
//! processes or contains `unsafe`.
#![expect(
    unsafe_code,
    reason = "pre_exec, killpg and kill are foreign functions; each block has its SAFETY note"
)]

use std::io;
use std::path::PathBuf;
use std::process::Stdio;

use tokio::process::{Child, Command};

use crate::launcher::LAUNCHER_ARG;
use crate::profile::Profile;

/// How to start a child. With `sandbox` set, the launcher is started instead and executes
/// `program` inside the profile; `program`, `args` and `cwd` are then taken from the profile.
///
/// `Debug` shows the names of the environment variables, never their values.
#[derive(Clone)]
pub struct Launch {
    /// The program (looked up in `PATH` unless it contains a slash).
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Environment variables to set.
    pub env: Vec<(String, String)>,
    /// Start from an empty environment instead of the gateway's.
    pub env_clear: bool,
    /// Working directory (the gateway's when `None`).
    pub cwd: Option<PathBuf>,
    /// Run inside a sandbox.
    pub sandbox: Option<Sandbox>,
}

impl std::fmt::Debug for Launch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Launch")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("env", &names)
            .field("env_clear", &self.env_clear)
            .field("cwd", &self.cwd)
            .field("sandbox", &self.sandbox)
            .finish()
    }
}

/// A sandbox: the launcher binary and the profile it applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    /// A binary that runs [`crate::launcher::main`] when called as `<binary> __sandbox-exec`
    /// (`mcp-warden` itself, or this crate's `warden-sandbox-exec`).
    pub launcher: PathBuf,
    /// What to apply.
    pub profile: Profile,
}

/// Signals the gateway sends to an upstream's process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Asks the group to exit.
    Term,
    /// Ends the group; cannot be caught or ignored.
    Kill,
}

impl Signal {
    fn number(self) -> libc::c_int {
        match self {
            Signal::Term => libc::SIGTERM,
            Signal::Kill => libc::SIGKILL,
        }
    }
}

/// Starts `launch` with piped stdin, stdout and stderr, in a process group of its own, with
/// the kernel's parent-death signal armed (Linux) and `kill_on_drop`.
///
/// A sandboxed child gets exactly `launch.env` (the environment is always cleared): the
/// gateway's own variables never reach it.
pub fn spawn(launch: &Launch) -> io::Result<Child> {
    let mut command = match &launch.sandbox {
        Some(sandbox) => {
            let profile = serde_json::to_string(&sandbox.profile)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let mut command = Command::new(&sandbox.launcher);
            command.arg(LAUNCHER_ARG).arg(profile).env_clear();
            command
        }
        None => {
            let mut command = Command::new(&launch.program);
            command.args(&launch.args);
            if launch.env_clear {
                command.env_clear();
            }
            if let Some(cwd) = &launch.cwd {
                command.current_dir(cwd);
            }
            command
        }
    };
    command.envs(launch.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    isolate(&mut command);
    command.spawn()
}

/// Puts the child in a process group of its own (so the whole group can be signalled without
/// touching the gateway) and, on Linux, makes the kernel SIGKILL it if the gateway dies.
fn isolate(command: &mut Command) {
    command.process_group(0);
    #[cfg(target_os = "linux")]
    set_parent_death_signal(command);
}

/// Arms `PR_SET_PDEATHSIG = SIGKILL` in the child between fork and exec.
///
/// The kernel sends the signal when the *thread* that forked the child exits, not the
/// process. tokio spawns from runtime worker threads, which live as long as the runtime, so
/// in practice this fires when the gateway dies (even by SIGKILL). Only the direct child is
/// covered; a sandboxed child's launcher arms the same signal for its own children, and the
/// PID namespace takes every other descendant down with the server's init.
#[cfg(target_os = "linux")]
fn set_parent_death_signal(command: &mut Command) {
    // The gateway's pid as the child will see it through getppid(2), read before the fork.
    let parent = std::process::id();
    // SAFETY: `pre_exec` requires the closure to be async-signal-safe, because it runs in the
    // forked child of a multi-threaded process. It only calls prctl(2) and getppid(2), which
    // are plain system calls, and builds `io::Error`s from raw OS error codes, which does not
    // allocate. It touches no locks and no memory shared with the parent.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            ) == -1
            {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl; the signal would never come.
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// Sends `signal` to process group `pgid`.
///
/// Returns `Ok(false)` when the group no longer exists (ESRCH). Refuses group ids 0 and 1:
/// 0 means "our own group" to killpg(2), and no upstream can have pid 1 in our namespace.
pub fn signal_group(pgid: u32, signal: Signal) -> io::Result<bool> {
    let pgid = libc::pid_t::try_from(pgid)
        .ok()
        .filter(|p| *p > 1)
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: killpg(2) takes two integers and touches no memory of ours; the only hazard is
    // signalling the wrong group, which the check above and the callers' bookkeeping (the
    // group id is the pid of a child we spawned with `process_group(0)`) rule out.
    let rc = unsafe { libc::killpg(pgid, signal.number()) };
    if rc == 0 {
        return Ok(true);
    }
    let error = io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::ESRCH) {
        Ok(false)
    } else {
        Err(error)
    }
}

/// SIGKILLs one process we started and have not reaped (the probe, on timeout).
pub(crate) fn kill_pid(pid: u32) {
    let Some(pid) = libc::pid_t::try_from(pid).ok().filter(|p| *p > 1) else {
        return;
    };
    // SAFETY: kill(2) takes two integers. The pid is that of a child we have not yet waited
    // for, so it cannot have been recycled.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}
