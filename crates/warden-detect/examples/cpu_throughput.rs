//! Throughput by thread CPU time, for a loaded machine where criterion's wall-clock figures
//! mostly measure the other processes: `cargo run --release -p warden-detect --example
//! cpu_throughput [BUDGET_MS [FILTER]]`.
//!
//! It builds the inputs of the `redact` and `poisoning` benches (the same generators), runs each
//! analysis for `BUDGET_MS` of CPU time (default 1000) and prints MB/s (10^6 bytes per CPU
//! second) from the mean CPU time per run (only the measurements whose name contains `FILTER`),
//! reading the thread's own CPU time from `/proc/thread-self/schedstat` (Linux),
//! so time the thread spent waiting for a core is not counted. Pin it (`taskset -c 0`) to keep
//! caches warm.
#![expect(clippy::print_stdout, reason = "prints its figures")]

#[path = "../tests/common/planted.rs"]
mod planted;

#[path = "../benches/common/inputs.rs"]
mod inputs;

use warden_detect::{TextKind, analyze_text};

/// CPU time of the calling thread in nanoseconds (first field of `schedstat`).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Runs `f` until it has used `budget_ms` of CPU time (at least three times) and
/// prints the mean CPU time per run. The kernel may account thread CPU time in scheduler
/// ticks, so a single short run is not measured on its own.
fn measure(name: &str, bytes: usize, budget_ms: u64, mut f: impl FnMut() -> usize) {
    if std::env::args()
        .nth(2)
        .is_some_and(|filter| !name.contains(&filter))
    {
        return;
    }
    let mut out = 0;
    let mut runs = 0u64;
    let start = thread_cpu_ns();
    let mut spent = 0;
    while runs < 3 || spent < budget_ms * 1_000_000 {
        out = std::hint::black_box(f());
        runs += 1;
        spent = thread_cpu_ns().saturating_sub(start);
    }
    let per_run = spent as f64 / runs as f64;
    println!(
        "{name:<40} {:>9.3} ms  {:>7.1} MB/s  ({out} results, {runs} runs)",
        per_run / 1e6,
        bytes as f64 / (per_run / 1e9) / 1e6
    );
}

fn main() {
    let budget_ms: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    warden_detect::secrets::warm_up();
    warden_detect::pii::warm_up();
    let _ = analyze_text("warm up", TextKind::ToolResult);
    for (name, input) in [
        ("1mib_text", inputs::redact_text(false)),
        ("1mib_keyword_dense", inputs::redact_text(true)),
        ("large_result_1mib", inputs::large_result()),
    ] {
        let n = input.len();
        measure(&format!("{name}/secrets"), n, budget_ms, || {
            warden_detect::secrets::scan(&input).len()
        });
        measure(&format!("{name}/pii"), n, budget_ms, || {
            warden_detect::pii::scan(&input).len()
        });
        measure(&format!("{name}/redact"), n, budget_ms, || {
            warden_detect::redact::redact(&input).findings.len()
        });
        measure(&format!("{name}/analyze_text"), n, budget_ms, || {
            analyze_text(&input, TextKind::ToolResult).len()
        });
        measure(&format!("{name}/result_path"), n, budget_ms, || {
            inputs::result_path(&input)
        });
    }
    let description = inputs::description_text();
    measure(
        "description_text/analyze_text",
        description.len(),
        budget_ms,
        || analyze_text(&description, TextKind::ToolDescription).len(),
    );
}
