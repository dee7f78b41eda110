//! The sandbox of mcp-warden's stdio upstreams, and the only crate that spawns processes or
//! contains `unsafe`.
//!
//! It sits at the very bottom of the request path, under `warden-upstream`: the gateway asks
//! [`spawn`] for a child, and for a sandboxed upstream that child is the launcher (the
//! gateway's own binary re-executed as `mcp-warden __sandbox-exec`, see [`launcher`]), a
//! fresh single-threaded process that builds the sandbox and then executes the server in
//! it, so the gateway itself is never restricted. [`plan`] turns settings and a command
//! into the launcher's [`Profile`]; [`report::probe`] runs the launcher in probe mode to learn
//! which controls this kernel enforces, so nothing is claimed that is not applied.
//!
//! Controls (Linux): user, mount, PID and network namespaces; Landlock filesystem rules and
//! signal/abstract-socket scoping; a seccomp filter; `no_new_privs`; no capabilities;
//! rlimits; a private size-capped tmpfs; an environment built from an allow-list. See
//! `docs/sandbox.md`.
//!
//! This crate never logs an environment value and never reads a secret: the environment it
//! is given is passed through to the child only.

pub mod heap;
pub mod launcher;
pub mod plan;
pub mod priority;
pub mod profile;
pub mod report;
mod spawn;

use std::path::PathBuf;

pub use plan::{Command, Degraded, Planned, Settings, plan};
pub use profile::{
    Filesystem, Network, PrivateTmp, Profile, ProgramIdentity, ResourceLimits, Seccomp,
};
pub use report::{Availability, Control, Status, probe};
pub use spawn::{Launch, Sandbox, Signal, signal_group, spawn};

/// Why a sandbox could not be planned or probed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The program is not an executable file (or not in `PATH`).
    #[error("program `{program}` not found or not executable")]
    ProgramNotFound {
        /// The program as configured.
        program: String,
    },
    /// The probe could not run.
    #[error("sandbox probe with `{}` failed", launcher.display())]
    Probe {
        /// The launcher binary.
        launcher: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The probe printed something that is not a report.
    #[error("sandbox probe with `{}` printed no valid report", launcher.display())]
    ProbeReport {
        /// The launcher binary.
        launcher: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}
