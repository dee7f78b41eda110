//! The crate's only `unsafe` code: process-group isolation of a child and signalling that
//! group. Each function is small enough to audit on its own.

use std::io;

use tokio::process::Command;

/// Signals the gateway sends to an upstream's process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
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

/// Puts the child in a process group of its own (so the whole group can be signalled without
/// touching the gateway) and, on Linux, makes the kernel SIGKILL it if the gateway dies.
pub(crate) fn isolate(command: &mut Command) {
    command.process_group(0);
    #[cfg(target_os = "linux")]
    set_parent_death_signal(command);
}

/// Arms `PR_SET_PDEATHSIG = SIGKILL` in the child between fork and exec.
///
/// The kernel sends the signal when the *thread* that forked the child exits, not the
/// process. tokio spawns from runtime worker threads, which live as long as the runtime, so
/// in practice this fires when the gateway dies (even by SIGKILL). Only the direct child is
/// covered; its descendants are reached through the process group.
#[cfg(target_os = "linux")]
#[expect(
    unsafe_code,
    reason = "pre_exec runs a closure in the forked child before exec"
)]
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
#[expect(unsafe_code, reason = "libc::killpg is a foreign function")]
pub(crate) fn signal_group(pgid: u32, signal: Signal) -> io::Result<bool> {
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
