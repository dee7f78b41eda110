//! Which sandbox controls this machine can enforce: a typed report built by running the real
//! launcher in probe mode, so it says what the kernel actually accepted, not what it should.

use std::fmt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::SandboxError;
use crate::launcher::{LAUNCHER_ARG, PROBE_ARG};

/// The probe's detail for [`Control::ProcessLimit`] when a pids cgroup enforces it (the
/// planner then asks the launcher for one).
pub(crate) const PIDS_CGROUP: &str = "cgroup pids.max";

/// How long the probe may take before it is killed and reported as failed.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// One control of the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Control {
    /// A user namespace (makes the other namespaces possible without root).
    UserNamespace,
    /// A mount namespace: private `/proc`, tmpfs for the private directory.
    MountNamespace,
    /// A PID namespace: the server sees only its own processes; all die with its init.
    PidNamespace,
    /// A network namespace (`network = "none"` or `"loopback"`).
    NetworkNamespace,
    /// Landlock filesystem rules and signal / abstract-socket scoping.
    Landlock,
    /// The seccomp system-call filter.
    Seccomp,
    /// `PR_SET_NO_NEW_PRIVS`.
    NoNewPrivileges,
    /// Empty capability sets, bounding set and locked securebits.
    Capabilities,
    /// rlimits (address space, CPU time, open files, file size, no core dumps).
    ResourceLimits,
    /// A bound on processes and threads (`RLIMIT_NPROC` in the user namespace, or a pids
    /// cgroup).
    ProcessLimit,
    /// A bound on the sandbox's resident memory (a memory cgroup).
    MemoryLimit,
    /// Egress to an allow-list of hosts.
    NetworkAllowList,
}

impl Control {
    /// Every control, in report order.
    pub const ALL: [Control; 12] = [
        Control::UserNamespace,
        Control::MountNamespace,
        Control::PidNamespace,
        Control::NetworkNamespace,
        Control::Landlock,
        Control::Seccomp,
        Control::NoNewPrivileges,
        Control::Capabilities,
        Control::ResourceLimits,
        Control::ProcessLimit,
        Control::MemoryLimit,
        Control::NetworkAllowList,
    ];

    /// The control's name in reports and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Control::UserNamespace => "user_namespace",
            Control::MountNamespace => "mount_namespace",
            Control::PidNamespace => "pid_namespace",
            Control::NetworkNamespace => "network_namespace",
            Control::Landlock => "landlock",
            Control::Seccomp => "seccomp",
            Control::NoNewPrivileges => "no_new_privileges",
            Control::Capabilities => "capabilities",
            Control::ResourceLimits => "resource_limits",
            Control::ProcessLimit => "process_limit",
            Control::MemoryLimit => "memory_limit",
            Control::NetworkAllowList => "network_allow_list",
        }
    }
}

impl fmt::Display for Control {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a control can be enforced here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    /// Enforced by the probe; `detail` says how (such as the Landlock ABI).
    Available {
        /// What was enforced.
        detail: String,
    },
    /// Not enforceable; `reason` says why (the kernel's error, or "not implemented").
    Unavailable {
        /// Why not.
        reason: String,
    },
}

impl Status {
    /// True when the control was enforced.
    pub fn is_available(&self) -> bool {
        matches!(self, Status::Available { .. })
    }
}

/// The probe's findings, one entry per [`Control`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Availability {
    /// Each control and its status, in [`Control::ALL`] order.
    pub controls: Vec<(Control, Status)>,
}

impl Availability {
    /// The status of `control` (unavailable if the probe did not report it).
    pub fn status(&self, control: Control) -> Status {
        self.controls
            .iter()
            .find(|(c, _)| *c == control)
            .map(|(_, s)| s.clone())
            .unwrap_or_else(|| Status::Unavailable {
                reason: "not reported by the probe".into(),
            })
    }

    /// True when `control` was enforced by the probe.
    pub fn is_available(&self, control: Control) -> bool {
        self.status(control).is_available()
    }

    /// A report in which nothing is available, each control for `reason` (used when the
    /// probe itself could not run).
    pub fn none(reason: &str) -> Availability {
        Availability {
            controls: Control::ALL
                .iter()
                .map(|c| {
                    (
                        *c,
                        Status::Unavailable {
                            reason: reason.to_owned(),
                        },
                    )
                })
                .collect(),
        }
    }
}

/// Runs `launcher __sandbox-exec --probe <tmp parent>` and reads its report.
///
/// Blocking; takes a few milliseconds. The probe applies every mechanism to a throwaway
/// process that exits without executing anything.
pub fn probe(launcher: &Path, tmp_parent: &Path) -> Result<Availability, SandboxError> {
    let mut command = std::process::Command::new(launcher);
    command
        .arg(LAUNCHER_ARG)
        .arg(PROBE_ARG)
        .arg(tmp_parent)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = command.spawn().map_err(|source| SandboxError::Probe {
        launcher: launcher.to_owned(),
        source,
    })?;
    let output = wait_with_timeout(child, PROBE_TIMEOUT).map_err(|source| SandboxError::Probe {
        launcher: launcher.to_owned(),
        source,
    })?;
    serde_json::from_slice(&output).map_err(|source| SandboxError::ProbeReport {
        launcher: launcher.to_owned(),
        source,
    })
}

fn wait_with_timeout(mut child: std::process::Child, limit: Duration) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| std::io::Error::other("probe stdout is not piped"))?;
    let pid = child.id();
    // A watchdog instead of a timed read: the probe never legitimately takes long, and the
    // read below ends when the probe (and so its stdout) is gone.
    let (done_tx, done_rx) = std::sync::mpsc::sync_channel::<()>(1);
    let watchdog = std::thread::spawn(move || {
        if done_rx.recv_timeout(limit).is_err() {
            crate::spawn::kill_pid(pid);
        }
    });
    let mut out = Vec::new();
    let read = stdout.read_to_end(&mut out);
    let status = child.wait();
    let _ = done_tx.send(());
    let _ = watchdog.join();
    read?;
    let status = status?;
    if !status.success() {
        return Err(std::io::Error::other(format!("probe exited with {status}")));
    }
    Ok(out)
}
