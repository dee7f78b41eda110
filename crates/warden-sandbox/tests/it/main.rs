//! Integration tests of the launcher with real processes: a hostile Python program tries to
//! escape, and the kernel (not the gateway) must refuse. Each test also runs the same attempt
//! outside the sandbox where that is harmless, so that a refusal cannot come from a broken
//! test.
#![allow(missing_docs, unreachable_pub)]
#![expect(clippy::unwrap_used, reason = "tests")]

mod egress;
mod escape;
mod identity;
mod lifecycle;

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use warden_sandbox::{Availability, Control, Launch, Planned, Settings};

/// Every wait in these tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(30);

pub fn launcher() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_warden-sandbox-exec"))
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/fixtures")
        .join(name)
}

/// The system Python: the attacker needs nothing but the standard library.
pub const PYTHON: &str = "/usr/bin/python3";

/// A directory outside the system temporary directory (which the sandbox does not grant
/// either, but a private directory would also live there).
pub fn scratch() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

pub fn availability() -> Availability {
    warden_sandbox::probe(&launcher(), &std::env::temp_dir()).unwrap()
}

/// The gateway's environment as the planner sees it: this test process's real one.
pub fn real_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

pub fn plan(
    settings: &Settings,
    program: &str,
    args: &[String],
    env: Vec<(String, String)>,
) -> Planned {
    let cwd = std::env::current_dir().unwrap();
    let command = warden_sandbox::Command {
        program,
        args,
        cwd: None,
        gateway_cwd: &cwd,
        gateway_env: &real_env,
        env,
    };
    let planned = warden_sandbox::plan(
        settings,
        &availability(),
        &launcher(),
        &std::env::temp_dir(),
        &command,
    )
    .unwrap();
    // Every control but the memory cgroup, which needs root or a delegated cgroup (see
    // `process_and_memory_limits_hold`), must hold where these tests run.
    let missing: Vec<_> = planned
        .degraded
        .iter()
        .filter(|d| d.control != Control::MemoryLimit)
        .collect();
    assert!(
        missing.is_empty(),
        "sandbox controls unavailable here: {missing:?}"
    );
    planned
}

pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `launch` to completion with stdin closed.
pub async fn run(launch: &Launch) -> Output {
    let mut child = warden_sandbox::spawn(launch).unwrap();
    drop(child.stdin.take());
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (mut out, mut err) = (String::new(), String::new());
    let (a, b, status) = tokio::time::timeout(WAIT, async {
        tokio::join!(
            stdout.read_to_string(&mut out),
            stderr.read_to_string(&mut err),
            child.wait()
        )
    })
    .await
    .expect("the sandboxed process finished in time");
    a.unwrap();
    b.unwrap();
    Output {
        code: status.unwrap().code(),
        stdout: out,
        stderr: err,
    }
}

/// A launch of `planned` (sandboxed) or of the same command without a sandbox.
pub fn launch(planned: &Planned, sandboxed: bool) -> Launch {
    let profile = &planned.sandbox.profile;
    Launch {
        program: profile.program.to_string_lossy().into_owned(),
        args: profile.args.clone(),
        env: planned.env.clone(),
        env_clear: true,
        cwd: None,
        sandbox: sandboxed.then(|| planned.sandbox.clone()),
    }
}

/// True while a process with this pid exists (and is not a zombie of ours).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // The state follows the parenthesised command name.
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        }
        Err(_) => false,
    }
}
