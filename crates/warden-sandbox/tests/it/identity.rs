//! `program_identity`: the server process runs the program only if it is still the file the
//! gateway checked, and an ELF binary is executed through the descriptor it checked.

use warden_sandbox::Settings;
use warden_sandbox::launcher::EXIT_PROGRAM_CHANGED;
use warden_sandbox::profile::ProgramIdentity;

use crate::{launch, plan, run, scratch};

fn identity(path: &std::path::Path) -> ProgramIdentity {
    ProgramIdentity::of(&std::fs::metadata(path).unwrap())
}

fn executable(path: &std::path::Path, bytes: &[u8]) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, bytes).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Runs `planned` expecting the launcher to refuse its changed program: exit 123, and nothing
/// of the program ran (no output).
async fn refused(planned: &warden_sandbox::Planned) -> crate::Output {
    let out = run(&launch(planned, true)).await;
    assert_eq!(out.code, Some(EXIT_PROGRAM_CHANGED), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    out
}

#[tokio::test]
async fn an_unchanged_binary_runs_through_its_descriptor_and_a_changed_one_does_not_run() {
    let dir = scratch();
    // A copy of the system shell (an ELF binary) as the server.
    let server = dir.path().join("server");
    let shell = std::fs::canonicalize("/bin/sh").unwrap();
    executable(&server, &std::fs::read(&shell).unwrap());
    // The shell reports the name the kernel gave the process: the file's, not `/dev/fd/N`'s.
    let args = vec![
        "-c".to_owned(),
        "read name < /proc/self/comm; echo \"$name\"; exit 7".to_owned(),
    ];
    let mut planned = plan(
        &Settings::default(),
        &server.display().to_string(),
        &args,
        Vec::new(),
    );
    planned.sandbox.profile.program_identity = Some(identity(&server));
    let ran = run(&launch(&planned, true)).await;
    assert_eq!(ran.code, Some(7), "{}", ran.stderr);
    assert_eq!(ran.stdout.trim(), "server", "{}", ran.stderr);

    // The same bytes written again: a new status change time, so not the checked file.
    std::thread::sleep(std::time::Duration::from_millis(20));
    executable(&server, &std::fs::read(&shell).unwrap());
    let refused = refused(&planned).await;
    assert!(
        refused
            .stderr
            .contains("changed after its command pin was checked"),
        "{}",
        refused.stderr
    );
}

#[tokio::test]
async fn a_script_is_checked_and_executed_by_path() {
    let dir = scratch();
    let server = dir.path().join("server.sh");
    executable(&server, b"#!/bin/sh\necho \"$0\"\nexit 5\n");
    let mut planned = plan(
        &Settings::default(),
        &server.display().to_string(),
        &[],
        Vec::new(),
    );
    planned.sandbox.profile.program_identity = Some(identity(&server));
    let ran = run(&launch(&planned, true)).await;
    assert_eq!(ran.code, Some(5), "{}", ran.stderr);
    // Executed by path: the script sees its own path, not `/dev/fd/N`.
    assert_eq!(ran.stdout.trim(), server.display().to_string());

    std::thread::sleep(std::time::Duration::from_millis(20));
    executable(&server, b"#!/bin/sh\necho \"$0\"\nexit 6\n");
    refused(&planned).await;
}
