//! Child processes started by tests, stopped by their pid when the guard drops.

use std::process::Stdio;

use tokio::process::{Child, Command};

/// A started process; dropping the guard kills it (and its process group) by pid.
#[derive(Debug)]
pub struct Guard {
    child: Option<Child>,
    pgid: Option<i32>,
}

impl Guard {
    /// Starts `cmd` in its own process group with stdio as configured by the caller.
    pub fn spawn(mut cmd: Command) -> anyhow::Result<Guard> {
        cmd.process_group(0).kill_on_drop(true);
        let child = cmd.spawn()?;
        let pgid = child.id().map(|p| p as i32);
        Ok(Guard {
            child: Some(child),
            pgid,
        })
    }

    /// The child, for its pipes.
    pub fn child(&mut self) -> &mut Child {
        self.child.as_mut().unwrap()
    }

    /// The pid.
    pub fn pid(&self) -> u32 {
        self.pgid.unwrap_or(0) as u32
    }

    /// Waits for the process to exit, up to `timeout`.
    pub async fn wait(
        &mut self,
        timeout: std::time::Duration,
    ) -> anyhow::Result<std::process::ExitStatus> {
        let child = self.child.as_mut().unwrap();
        Ok(tokio::time::timeout(timeout, child.wait()).await??)
    }

    /// Sends SIGTERM to the process (not its group: a gateway stops its own children) and
    /// waits for it to exit, up to `timeout`: the clean-stop path, on which a gateway drains
    /// and closes its audit log. A SIGKILL (what dropping the guard does) may lose records that
    /// were queued but not yet written.
    pub async fn terminate(
        &mut self,
        timeout: std::time::Duration,
    ) -> anyhow::Result<std::process::ExitStatus> {
        if let Some(pid) = self.pgid.filter(|p| *p > 1) {
            signal_term(pid);
        }
        self.wait(timeout).await
    }
}

#[expect(unsafe_code, reason = "kill(2) has no safe wrapper in std")]
fn signal_term(pid: i32) {
    // SAFETY: kill(2) with the positive pid of a child this guard spawned and has not reaped
    // (its `Child` is still held, so the pid cannot have been reused); no memory is touched.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid {
            // killpg(2) on the group this guard created; never kill(1) with a negative pid.
            kill_group(pgid);
        }
    }
}

#[expect(unsafe_code, reason = "killpg(2) has no safe wrapper in std")]
fn kill_group(pgid: i32) {
    if pgid > 1 {
        // SAFETY: killpg with a positive process-group id this guard created is a plain
        // syscall with no memory effects; an already-gone group returns ESRCH, ignored.
        unsafe {
            libc::killpg(pgid, libc::SIGKILL);
        }
    }
}

/// A command with piped stdin/stdout and inherited stderr.
pub fn piped(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new(program);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    c
}

/// True while a process with this pid exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}
