//! Start-up cost of the sandbox: spawn a program and wait for it to exit, directly and
//! through the launcher with the default profile (namespaces, private /proc and tmpfs, pids
//! cgroup, rlimits, Landlock, capabilities, seccomp). Reported as a ratio in the same run.
#![allow(missing_docs)]
#![expect(clippy::unwrap_used, reason = "bench")]

use std::path::{Path, PathBuf};

use criterion::{Criterion, criterion_group, criterion_main};
use warden_sandbox::{Launch, Settings};

fn launch(program: &str, args: &[&str], sandboxed: bool) -> Launch {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let launcher = PathBuf::from(env!("CARGO_BIN_EXE_warden-sandbox-exec"));
    let availability = warden_sandbox::probe(&launcher, &std::env::temp_dir()).unwrap();
    let env = |name: &str| std::env::var(name).ok();
    let cwd = std::env::current_dir().unwrap();
    let command = warden_sandbox::Command {
        program,
        args: &args,
        cwd: None,
        gateway_cwd: &cwd,
        gateway_env: &env,
        env: Vec::new(),
    };
    let planned = warden_sandbox::plan(
        &Settings::default(),
        &availability,
        &launcher,
        Path::new(&std::env::temp_dir()),
        &command,
    )
    .unwrap();
    assert!(planned.degraded.is_empty(), "{:?}", planned.degraded);
    Launch {
        program: planned.sandbox.profile.program.display().to_string(),
        args,
        env: planned.env,
        env_clear: true,
        cwd: None,
        sandbox: sandboxed.then_some(planned.sandbox),
    }
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("spawn");
    group.sample_size(30);
    for (name, program, args) in [
        ("true", "/bin/true", &[][..]),
        ("python3", "/usr/bin/python3", &["-c", "pass"][..]),
    ] {
        for sandboxed in [false, true] {
            let launch = launch(program, args, sandboxed);
            let label = format!("{name}/{}", if sandboxed { "sandboxed" } else { "direct" });
            group.bench_function(label, |b| {
                b.iter(|| {
                    runtime.block_on(async {
                        let mut child = warden_sandbox::spawn(&launch).unwrap();
                        drop(child.stdin.take());
                        let status = child.wait().await.unwrap();
                        assert!(status.success());
                    })
                })
            });
        }
    }
    group.finish();
    c.bench_function("probe", |b| {
        let launcher = PathBuf::from(env!("CARGO_BIN_EXE_warden-sandbox-exec"));
        b.iter(|| warden_sandbox::probe(&launcher, &std::env::temp_dir()).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
