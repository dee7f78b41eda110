//! A hostile program inside the default profile: every escape fails at the OS level.

use std::io::ErrorKind;
use std::net::TcpListener;

use serde_json::Value;
use warden_sandbox::{Network, Settings};

use crate::{PYTHON, alive, fixture, launch, plan, run, scratch};

/// A process the attacker tries to ptrace and signal; killed by pid when dropped.
struct Victim(std::process::Child);

impl Victim {
    fn start() -> Victim {
        Victim(
            std::process::Command::new("sleep")
                .arg("60")
                .spawn()
                .unwrap(),
        )
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Targets planted outside every granted path.
struct Targets {
    _dir: tempfile::TempDir,
    home: std::path::PathBuf,
    outside: std::path::PathBuf,
    listener: TcpListener,
    victim: Victim,
}

impl Targets {
    fn plant() -> Targets {
        let dir = scratch();
        let home = dir.path().join("home");
        std::fs::create_dir_all(home.join(".ssh")).unwrap();
        std::fs::write(
            home.join(".ssh/id_rsa"),
            "-----BEGIN OPENSSH PRIVATE KEY-----\n",
        )
        .unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        Targets {
            _dir: dir,
            home,
            outside,
            listener,
            victim: Victim::start(),
        }
    }

    /// Passed as configured (per-upstream) variables: the only way in for values.
    fn env(&self) -> Vec<(String, String)> {
        vec![
            ("FAKE_HOME".into(), self.home.display().to_string()),
            ("OUTSIDE_DIR".into(), self.outside.display().to_string()),
            (
                "LISTEN_PORT".into(),
                self.listener.local_addr().unwrap().port().to_string(),
            ),
            ("VICTIM_PID".into(), self.victim.pid().to_string()),
        ]
    }

    fn connections(&self) -> usize {
        let mut n = 0;
        loop {
            match self.listener.accept() {
                Ok(_) => n += 1,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return n,
                Err(e) => panic!("accept: {e}"),
            }
        }
    }
}

async fn attack(
    settings: &Settings,
    targets: &Targets,
    extra_env: &[(&str, &str)],
    attempts: &[&str],
    sandboxed: bool,
) -> Value {
    let mut env = targets.env();
    env.extend(
        extra_env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let args = vec![
        fixture("attacker.py").display().to_string(),
        attempts.join(","),
    ];
    let planned = plan(settings, PYTHON, &args, env);
    let mut launch = launch(&planned, sandboxed);
    if !sandboxed {
        // Outside the sandbox there is no private directory to point TMPDIR at.
        let tmp = targets.outside.display().to_string();
        launch.env.push(("TMPDIR".into(), tmp));
    }
    let output = run(&launch).await;
    assert_eq!(output.code, Some(0), "stderr: {}", output.stderr);
    serde_json::from_str(output.stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "attacker printed no report ({e}): {} / {}",
            output.stdout, output.stderr
        )
    })
}

fn outcome<'a>(report: &'a Value, attempt: &str) -> &'a str {
    report[attempt].as_str().unwrap_or("missing")
}

// Proves: RUN-1, RUN-2, RUN-4, AUTH-4, ISO-2
#[tokio::test]
async fn default_profile_denies_every_escape() {
    let targets = Targets::plant();
    let settings = Settings::default();
    let attempts = [
        "read_secret",
        "write_outside",
        "write_tmp",
        "connect_out",
        "ptrace_victim",
        "ptrace_child",
        "signal_victim",
        "mount",
        "unshare",
        "unix_socket",
        "read_shadow",
    ];
    let report = attack(&settings, &targets, &[], &attempts, true).await;

    // Filesystem (Landlock): the planted key and anything outside the grants.
    assert_eq!(outcome(&report, "read_secret"), "EACCES", "{report}");
    assert_eq!(outcome(&report, "write_outside"), "EACCES", "{report}");
    assert_eq!(outcome(&report, "read_shadow"), "EACCES", "{report}");
    assert!(!targets.outside.join("planted").exists());
    // Its private directory works.
    assert_eq!(outcome(&report, "write_tmp"), "ok", "{report}");
    // Network `none`: no route at all, and the host's listener saw nothing.
    assert_eq!(outcome(&report, "connect_out"), "ENETUNREACH", "{report}");
    assert_eq!(targets.connections(), 0);
    // Processes: seccomp denies ptrace even of its own child; the gateway's processes are
    // not in its PID namespace, so it cannot signal them.
    assert_eq!(outcome(&report, "ptrace_victim"), "EPERM", "{report}");
    assert_eq!(outcome(&report, "ptrace_child"), "EPERM", "{report}");
    assert_eq!(outcome(&report, "signal_victim"), "ESRCH", "{report}");
    assert!(alive(targets.victim.pid()));
    assert_eq!(outcome(&report, "mount"), "EPERM", "{report}");
    assert_eq!(outcome(&report, "unshare"), "EPERM", "{report}");
    assert_eq!(outcome(&report, "unix_socket"), "EPERM", "{report}");
    // It runs as PID 2 (under the launcher's init) and sees only its namespace.
    assert_eq!(report["pid"], 2, "{report}");
    let pids: Vec<u64> = report["pids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap())
        .collect();
    assert!(pids.iter().all(|p| *p <= 16), "{pids:?}");
    // No capabilities, no new privileges, a seccomp filter.
    let status = &report["status"];
    assert_eq!(status["CapEff"], "0000000000000000", "{report}");
    assert_eq!(status["CapPrm"], "0000000000000000", "{report}");
    assert_eq!(status["CapBnd"], "0000000000000000", "{report}");
    assert_eq!(status["NoNewPrivs"], "1", "{report}");
    assert_eq!(status["Seccomp"], "2", "{report}");
    // Environment: the allow-list and configured values only; HOME is the private directory.
    let env: Vec<&str> = report["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
    assert!(!env.contains(&"CARGO_MANIFEST_DIR"), "{env:?}");
    for name in ["PATH", "HOME", "TMPDIR", "FAKE_HOME"] {
        assert!(env.contains(&name), "{name} missing from {env:?}");
    }

    // The same attempts outside the sandbox succeed: the refusals above are the sandbox's.
    let control = attack(
        &settings,
        &targets,
        &[],
        &[
            "read_secret",
            "write_outside",
            "connect_out",
            "ptrace_child",
            "unix_socket",
        ],
        false,
    )
    .await;
    for attempt in [
        "read_secret",
        "write_outside",
        "connect_out",
        "ptrace_child",
        "unix_socket",
    ] {
        assert_eq!(outcome(&control, attempt), "ok", "{attempt}: {control}");
    }
    assert_eq!(targets.connections(), 1);
}

// Proves: RUN-5, LIFE-5
#[tokio::test]
async fn process_and_memory_limits_hold() {
    let targets = Targets::plant();
    let mut settings = Settings::default();
    settings.limits.processes = Some(32);
    settings.limits.memory = Some(256 << 20);
    let report = attack(
        &settings,
        &targets,
        &[("FORK_ATTEMPTS", "4096"), ("ALLOC_BYTES", "1073741824")],
        &["fork_bomb", "allocate"],
        true,
    )
    .await;
    assert_eq!(outcome(&report, "fork_bomb"), "EAGAIN", "{report}");
    if crate::availability().is_available(warden_sandbox::Control::MemoryLimit) {
        // The memory cgroup's OOM killer ends the process that went over.
        assert_eq!(
            outcome(&report, "allocate"),
            "killed by signal 9",
            "{report}"
        );
    } else {
        // No writable memory cgroup (an unprivileged run without delegation): the probe says
        // so, and nothing bounds resident memory. The address-space bound below still holds.
        assert_eq!(outcome(&report, "allocate"), "ok", "{report}");
    }

    // The address-space rlimit, for runtimes that tolerate one, fails the allocation itself.
    let mut settings = Settings::default();
    settings.limits.address_space = Some(512 << 20);
    let report = attack(
        &settings,
        &targets,
        &[("ALLOC_BYTES", "1073741824")],
        &["allocate"],
        true,
    )
    .await;
    assert_eq!(outcome(&report, "allocate"), "MemoryError", "{report}");
}

// Proves: ISO-2
#[tokio::test]
async fn loopback_network_is_its_own() {
    let targets = Targets::plant();
    let settings = Settings {
        network: Network::Loopback,
        ..Settings::default()
    };
    let report = attack(&settings, &targets, &[], &["connect_out"], true).await;
    // Its own loopback is up and has nothing on that port; the host's never sees it.
    assert_eq!(outcome(&report, "connect_out"), "ECONNREFUSED", "{report}");
    assert_eq!(targets.connections(), 0);
}

// Proves: ISO-2
#[tokio::test]
async fn configured_grants_and_options_open_exactly_what_they_name() {
    let targets = Targets::plant();
    let settings = Settings {
        network: Network::Full,
        read: vec![targets.home.join(".ssh")],
        write: vec![targets.outside.clone()],
        allow_unix_sockets: true,
        ..Settings::default()
    };
    let report = attack(
        &settings,
        &targets,
        &[],
        &[
            "read_secret",
            "write_outside",
            "connect_out",
            "unix_socket",
            "read_shadow",
        ],
        true,
    )
    .await;
    for attempt in ["read_secret", "write_outside", "connect_out", "unix_socket"] {
        assert_eq!(outcome(&report, attempt), "ok", "{attempt}: {report}");
    }
    assert_eq!(targets.connections(), 1);
    // What was not named stays closed.
    assert_eq!(outcome(&report, "read_shadow"), "EACCES", "{report}");
}

#[tokio::test]
async fn private_directory_is_removed_after_exit() {
    let settings = Settings::default();
    let args = vec![
        "-c".to_owned(),
        "echo \"$TMPDIR\"; touch \"$TMPDIR/x\"".to_owned(),
    ];
    let planned = plan(&settings, "/bin/sh", &args, Vec::new());
    let output = run(&launch(&planned, true)).await;
    assert_eq!(output.code, Some(0), "{}", output.stderr);
    let dir = std::path::PathBuf::from(output.stdout.trim());
    assert!(
        dir.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("mcp-warden-sandbox-"),
        "{}",
        dir.display()
    );
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[tokio::test]
async fn exit_status_of_the_server_is_reported() {
    let settings = Settings::default();
    let args = vec!["-c".to_owned(), "exit 7".to_owned()];
    let planned = plan(&settings, "/bin/sh", &args, Vec::new());
    assert_eq!(run(&launch(&planned, true)).await.code, Some(7));
    let mut missing = launch(&planned, true);
    if let Some(sandbox) = missing.sandbox.as_mut() {
        sandbox.profile.program = "/nonexistent/server".into();
    }
    let output = run(&missing).await;
    assert_eq!(
        output.code,
        Some(warden_sandbox::launcher::EXIT_NOT_FOUND),
        "{}",
        output.stderr
    );
}
