//! Stable-toolchain fuzz harness: runs each target over its corpus, then over seeded mutations
//! of it for a time budget, and saves every crashing input under `artifacts/<target>/`
//! (the cargo-fuzz place, so `cargo fuzz run <target> <file>` reproduces it too).
//!
//! ```text
//! cargo run --release --bin replay -- [--time SECS] [--seed N] [--max-len BYTES] [TARGET...]
//! cargo run --release --bin replay -- --input FILE TARGET     # run one input, panic and all
//! cargo run --release --bin replay -- --minimize FILE TARGET  # shrink a crash to FILE.min
//! ```
//!
//! Each target runs in a child process (this binary with `--worker`), so a crash that aborts
//! (stack overflow, out of memory) does not take the others down. When a worker dies that
//! way, it is run again with the same seed in trace mode, which writes each input to
//! `artifacts/<target>/last-input` before running it: the same sequence recurs, and the file
//! holds the input that killed it.

// A plain synchronous program: no async runtime whose clock tests could pause.
#![allow(clippy::disallowed_types)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use warden_fuzz::mutate::{Rng, dictionary, mutate};
use warden_fuzz::{TARGETS, Target, target};

/// The message and place of the last panic, recorded by the hook instead of printed.
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

/// Distinct crashes saved per target before the worker stops looking.
const MAX_CRASHES: usize = 10;

struct Options {
    time: Duration,
    seed: u64,
    max_len: usize,
    targets: Vec<String>,
    worker: bool,
    trace: bool,
    input: Option<PathBuf>,
    minimize: Option<PathBuf>,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        time: Duration::from_secs(60),
        seed: 1,
        max_len: 4096,
        targets: vec![],
        worker: false,
        trace: false,
        input: None,
        minimize: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--time" => {
                let secs: f64 = value("--time")?
                    .parse()
                    .map_err(|e| format!("--time: {e}"))?;
                o.time = Duration::from_secs_f64(secs);
            }
            "--seed" => {
                o.seed = value("--seed")?
                    .parse()
                    .map_err(|e| format!("--seed: {e}"))?
            }
            "--max-len" => {
                o.max_len = value("--max-len")?
                    .parse()
                    .map_err(|e| format!("--max-len: {e}"))?;
            }
            "--input" => o.input = Some(PathBuf::from(value("--input")?)),
            "--minimize" => o.minimize = Some(PathBuf::from(value("--minimize")?)),
            "--worker" => o.worker = true,
            "--trace" => o.trace = true,
            "-h" | "--help" => {
                return Err(
                    "usage: replay [--time SECS] [--seed N] [--max-len BYTES] [TARGET...]\n       replay --input FILE TARGET"
                        .into(),
                );
            }
            t if target(t).is_some() => o.targets.push(t.to_owned()),
            other => return Err(format!("unknown argument or target {other:?}")),
        }
    }
    if o.targets.is_empty() {
        o.targets = TARGETS.iter().map(|(n, _)| (*n).to_owned()).collect();
    }
    Ok(o)
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn corpus(name: &str) -> Vec<Vec<u8>> {
    let dir = root().join("corpus").join(name);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .filter(|p| p.is_file())
        .filter_map(|p| std::fs::read(p).ok())
        .collect()
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Runs one input; the panic message if it panicked.
fn exec(t: Target, input: &[u8]) -> Option<String> {
    match std::panic::catch_unwind(|| t(input)) {
        Ok(()) => None,
        Err(_) => Some(
            LAST_PANIC
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .unwrap_or_else(|| "panic".into()),
        ),
    }
}

/// The place of a panic message (`file:line`), which identifies the broken invariant.
fn signature(msg: &str) -> &str {
    msg.split(": ").next().unwrap_or(msg)
}

/// Shrinks `data` by deleting ranges while the same invariant still breaks.
fn minimize(t: Target, data: &[u8]) -> Option<(Vec<u8>, String)> {
    let first = exec(t, data)?;
    let want = signature(&first).to_owned();
    let mut cur = data.to_vec();
    let mut msg = first;
    let mut chunk = (cur.len() / 2).max(1);
    loop {
        let mut progress = false;
        let mut i = 0;
        while i < cur.len() {
            let end = (i + chunk).min(cur.len());
            let mut cand = cur[..i].to_vec();
            cand.extend_from_slice(&cur[end..]);
            match exec(t, &cand) {
                Some(m) if signature(&m) == want => {
                    cur = cand;
                    msg = m;
                    progress = true;
                }
                _ => i += chunk,
            }
        }
        if !progress {
            if chunk == 1 {
                return Some((cur, msg));
            }
            chunk /= 2;
        }
    }
}

fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        let place = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| {
                info.payload()
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
            })
            .unwrap_or_default();
        *LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!("{place}: {msg}"));
    }));
}

fn worker(name: &str, o: &Options) -> ExitCode {
    quiet_panics();
    let t = target(name).expect("known target");
    let seeds = corpus(name);
    let dict = dictionary(name);
    let artifacts = root().join("artifacts").join(name);
    let trace_file = artifacts.join("last-input");
    if o.trace {
        let _ = std::fs::create_dir_all(&artifacts);
    }
    let mut seen: Vec<String> = vec![];
    let mut crashes = 0usize;
    let mut execs = 0u64;
    let started = Instant::now();
    let mut report = |input: &[u8], msg: String, seen: &mut Vec<String>| {
        let key = msg.lines().next().unwrap_or_default().to_owned();
        if seen.contains(&key) {
            return;
        }
        seen.push(key);
        let _ = std::fs::create_dir_all(&artifacts);
        let file = artifacts.join(format!("crash-{:016x}", fnv(input)));
        let _ = std::fs::write(&file, input);
        println!(
            "CRASH {name} {} ({} bytes): {msg}",
            file.display(),
            input.len()
        );
        crashes += 1;
    };
    let mut run = |input: &[u8], seen: &mut Vec<String>| {
        if o.trace {
            let _ = std::fs::write(&trace_file, input);
        }
        execs += 1;
        if let Some(msg) = exec(t, input) {
            report(input, msg, seen);
        }
    };
    for s in &seeds {
        run(s, &mut seen);
    }
    let deadline = started + o.time;
    let mut rng = Rng::new(o.seed ^ warden_fuzz::splitmix(fnv(name.as_bytes())));
    let mut current: Vec<u8> = vec![];
    // Check the clock every few executions only.
    'outer: loop {
        for _ in 0..64 {
            if current.is_empty() || rng.one_in(3) {
                current = if seeds.is_empty() {
                    vec![]
                } else {
                    seeds[rng.below(seeds.len())].clone()
                };
            }
            mutate(&mut rng, &mut current, &seeds, dict, o.max_len);
            run(&current, &mut seen);
            if seen.len() >= MAX_CRASHES {
                break 'outer;
            }
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "DONE {name} execs={execs} seeds={} secs={secs:.1} execs_per_sec={:.0} crashes={}",
        seeds.len(),
        execs as f64 / secs.max(1e-9),
        seen.len()
    );
    if seen.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn spawn_worker(exe: &Path, name: &str, o: &Options, trace: bool) -> std::process::Output {
    let mut c = Command::new(exe);
    c.arg("--worker")
        .arg(name)
        .args(["--time", &o.time.as_secs_f64().to_string()])
        .args(["--seed", &o.seed.to_string()])
        .args(["--max-len", &o.max_len.to_string()]);
    if trace {
        c.arg("--trace");
    }
    c.stderr(std::process::Stdio::inherit());
    c.output().expect("cannot start a worker")
}

fn main() -> ExitCode {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Some(input) = &o.input {
        let data = std::fs::read(input).expect("cannot read --input");
        let t = target(&o.targets[0]).expect("known target");
        t(&data);
        println!("{}: no invariant broken", input.display());
        return ExitCode::SUCCESS;
    }
    if let Some(file) = &o.minimize {
        let data = std::fs::read(file).expect("cannot read --minimize");
        let t = target(&o.targets[0]).expect("known target");
        quiet_panics();
        let Some((small, msg)) = minimize(t, &data) else {
            println!("{}: no invariant broken", file.display());
            return ExitCode::SUCCESS;
        };
        let out = PathBuf::from(format!("{}.min", file.display()));
        std::fs::write(&out, &small).expect("cannot write the minimized input");
        println!(
            "{} ({} -> {} bytes): {msg}",
            out.display(),
            data.len(),
            small.len()
        );
        println!("bytes: {:?}", String::from_utf8_lossy(&small));
        return ExitCode::from(1);
    }
    if o.worker {
        return worker(&o.targets[0], &o);
    }
    let exe = std::env::current_exe().expect("own path");
    let mut failed = false;
    for name in &o.targets {
        let out = spawn_worker(&exe, name, &o, false);
        print!("{}", String::from_utf8_lossy(&out.stdout));
        if out.status.success() {
            continue;
        }
        failed = true;
        if out.status.code().is_none() {
            println!(
                "ABORT {name}: worker died ({}); re-running in trace mode to capture the input",
                out.status
            );
            let traced = spawn_worker(&exe, name, &o, true);
            print!("{}", String::from_utf8_lossy(&traced.stdout));
            let last = root().join("artifacts").join(name).join("last-input");
            if traced.status.code().is_none() {
                println!(
                    "ABORT {name}: input that killed the worker: {}",
                    last.display()
                );
            } else {
                println!(
                    "ABORT {name}: did not recur in trace mode ({})",
                    traced.status
                );
            }
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
