//! The official MCP conformance suite (`@modelcontextprotocol/conformance`, pinned by
//! `scripts/test-deps.sh`) run THROUGH `mcp-warden serve`, against the same server run
//! directly in the same test.
//!
//! Each test starts a server (the conformance fixture or server-everything), runs the suite
//! against it directly, puts it behind one `serve` instance (as a stdio or an HTTP upstream,
//! `namespace = false` so the suite's `test_*` names reach it unchanged) and runs the suite
//! through the gateway for 2025-11-25 and then 2026-07-28 against that SAME instance (a
//! gateway serves both eras at once). For every gateway run it asserts:
//!
//! 1. the suite exits 0 with the gateway baseline (`tests/conformance/gateway-*.yaml`): the
//!    suite's own verdict over the SCORED scenarios, unexpected failures and stale entries
//!    included;
//! 2. the same baseline holds over EVERY scenario, scored or not, evaluated here from the
//!    `checks.json` files (the suite ignores entries for not-scored scenarios, which include
//!    `http-header-validation` and `http-custom-header-server-validation`);
//! 3. every check that passes directly passes through the gateway: the checks that are
//!    SUCCESS directly and anything else through the gateway are exactly the baseline's
//!    `regressions` list (a new regression fails, and so does a stale entry);
//! 4. the scenarios that exercise the gateway's own HTTP face (`dns-rebinding-protection`,
//!    `http-header-validation`) ran, and any failure there is a `gateway bug:` or `pending:`
//!    entry, never an `upstream:` one.
//!
//! A scenario in the baseline's `flaky:` list (a known, intermittent gateway bug) that breaks
//! any of these is rerun alone, up to 3 times, each logged as `conformance: FLAKE ...`; if it
//! still fails, it is left out of that run's assertions (logged too), never silently.
//!
//! Every baseline entry carries its reason in the comment block above it, whose first line
//! starts with `upstream:`, `gateway bug:`, `pending:` or `not applicable:`; see
//! `docs/conformance.md`. The direct runs must also exit 0 with the direct baselines
//! (`tests/conformance/expected-failures-*.yaml`), so a change in the upstream itself is told
//! apart from a change in the gateway.
//!
//! The suites run one at a time (a lock shared by these tests): on a 2-core CI machine
//! concurrent suites only add timing noise, and the whole module takes about a minute.
#![expect(
    clippy::print_stderr,
    reason = "per-run tallies and flake notices for CI logs (shown with --nocapture or on failure)"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;
use warden_test::deps;
use warden_test::process::Guard;

use crate::support::{Serve, toml_str};

/// Both requirement sets, in the order they run against one gateway.
const REVISIONS: [&str; 2] = ["2025-11-25", "2026-07-28"];
/// Per-scenario timeout given to the suite (its default is 30 s; a healthy scenario takes
/// well under 1 s, the slowest, server-sse-polling, about 2 s). Also what a hang costs.
const SCENARIO_TIMEOUT_MS: &str = "15000";
/// A whole suite run takes 2-6 s on 2 cores; this bound only stops a hang.
const RUN_TIMEOUT: Duration = Duration::from_secs(240);
/// Time for a server under test to listen.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Scenarios answered by the gateway's own HTTP face, whatever the upstream: the gateway must
/// pass them (any baseline entry there is a gateway bug or pending work).
const GATEWAY_OWN_SCENARIOS: [&str; 2] = ["dns-rebinding-protection", "http-header-validation"];

mod authenticated;

/// One suite at a time across this module's tests.
static SUITE_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---------------------------------------------------------------------------------------------
// The tests.

#[tokio::test(flavor = "multi_thread")]
async fn fixture_as_stdio_upstream_passes_what_it_passes_directly() {
    let _serial = SUITE_LOCK.lock().await;
    let work = tempfile::tempdir().unwrap();
    let direct = start_fixture_http(work.path()).await;
    let upstream = format!(
        "[upstreams.fixture]\n\
         command = {}\n\
         args = [{}, \"--stdio\", \"--quiet\"]\n\
         env = {{ WARDEN_NPM_MODULES = {} }}\n\
         namespace = false\n\
         [upstreams.fixture.sandbox]\n\
         read = [{}]\n",
        path_str(&deps::node()),
        path_str(&deps::fixture("conformance/server.mjs")),
        path_str(&deps::node_modules()),
        // The fixture loads the SDK from a directory named in its environment.
        path_str(&deps::node_modules()),
    );
    compare(work, Target::Fixture, "stdio", &direct.url, &upstream).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fixture_as_http_upstream_passes_what_it_passes_directly() {
    let _serial = SUITE_LOCK.lock().await;
    let work = tempfile::tempdir().unwrap();
    // One fixture process is both the direct target and the gateway's upstream. The gateway
    // sends the upstream's own authority as `Host`, so the fixture keeps its DNS-rebinding
    // protection on (no --no-dns-rebinding-protection).
    let server = start_fixture_http(work.path()).await;
    let upstream = format!(
        "[upstreams.fixture]\nurl = {}\nnamespace = false\n",
        toml_str(&server.url)
    );
    compare(work, Target::Fixture, "http", &server.url, &upstream).await;
}

/// The suite's server scenarios call the `test_*` tools of its own fixture; server-everything
/// lists none of them, and some scenarios call its `echo` without the arguments its
/// `inputSchema` requires. With argument validation on (the default, API-1) the gateway refuses
/// those calls itself (`-32602`) where server-everything answers with its own error, and 10
/// checks differ from the direct run (docs/conformance.md). The comparison with the direct run
/// is about transport and era handling, so these two runs turn validation off; the fixture's
/// runs, whose tools are all listed, keep it on.
const SUITE_CALLS_UNLISTED_TOOLS: &str = "[arguments]\nvalidate_schema = false\n";

#[tokio::test(flavor = "multi_thread")]
async fn server_everything_as_stdio_upstream_passes_what_it_passes_directly() {
    let _serial = SUITE_LOCK.lock().await;
    let work = tempfile::tempdir().unwrap();
    let direct = start_everything_http(work.path()).await;
    let upstream = format!(
        "{SUITE_CALLS_UNLISTED_TOOLS}[upstreams.everything]\ncommand = {}\nargs = [{}, \"stdio\"]\nnamespace = false\n",
        path_str(&deps::node()),
        path_str(&deps::server_everything()),
    );
    compare(
        work,
        Target::ServerEverything,
        "stdio",
        &direct.url,
        &upstream,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn server_everything_as_http_upstream_passes_what_it_passes_directly() {
    let _serial = SUITE_LOCK.lock().await;
    let work = tempfile::tempdir().unwrap();
    let server = start_everything_http(work.path()).await;
    let upstream = format!(
        "{SUITE_CALLS_UNLISTED_TOOLS}[upstreams.everything]\nurl = {}\nnamespace = false\n",
        toml_str(&server.url)
    );
    compare(
        work,
        Target::ServerEverything,
        "http",
        &server.url,
        &upstream,
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// One comparison: direct runs, then both revisions through one gateway.

#[derive(Debug, Clone, Copy)]
enum Target {
    Fixture,
    ServerEverything,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Fixture => "fixture",
            Target::ServerEverything => "server-everything",
        }
    }
}

async fn compare(
    work: tempfile::TempDir,
    target: Target,
    transport: &str,
    direct_url: &str,
    upstream_toml: &str,
) {
    let label = format!("{} as {transport} upstream", target.name());
    let mut report = String::new();
    let mut direct = BTreeMap::new();
    for rev in REVISIONS {
        let baseline =
            conformance_dir().join(format!("expected-failures-{}-{rev}.yaml", target.name()));
        let out = work.path().join(format!("direct-{rev}"));
        let run = run_suite(direct_url, rev, &out, &baseline).await;
        eprintln!(
            "conformance: {} direct, {rev}: {}",
            target.name(),
            run.tally()
        );
        if run.exit != Some(0) {
            let _ = writeln!(
                report,
                "{} DIRECT, {rev}: the suite exited {:?} with {} -- the server itself changed, \
                 not the gateway (see {})",
                target.name(),
                run.exit,
                baseline.display(),
                out.join("conformance.log").display()
            );
        }
        direct.insert(rev, run);
    }

    let gateway = Serve::start(upstream_toml).await.unwrap();
    // Kept with the suite output on failure, to rerun the gateway by hand.
    std::fs::copy(
        gateway.dir.path().join("warden.toml"),
        work.path().join("warden.toml"),
    )
    .unwrap();
    for rev in REVISIONS {
        let baseline_path =
            conformance_dir().join(format!("gateway-{}-{transport}-{rev}.yaml", target.name()));
        let baseline = Baseline::load(&baseline_path);
        let out = work.path().join(format!("gateway-{rev}"));
        let mut run = run_suite(&gateway.url, rev, &out, &baseline_path).await;
        let first = evaluate(&baseline, &direct[rev], &run, rev);
        // The suite's verdict covers the scored scenarios, which `evaluate` covers too (and
        // more strictly); a failing suite with a clean evaluation would be a bug here.
        let suite_disagrees = run.exit != Some(0) && first.is_empty();
        let problems = retry_flaky(
            &baseline,
            &direct[rev],
            &mut run,
            first,
            &gateway.url,
            rev,
            &out,
        )
        .await;
        eprintln!(
            "conformance: {label} through the gateway, {rev}: {}",
            run.tally()
        );
        let mut problems: Vec<String> = problems.into_iter().map(|(_, p)| p).collect();
        if suite_disagrees {
            problems.push(format!(
                "the suite exited {:?} with its baseline check (scored scenarios); see the \
                 end of {}",
                run.exit,
                out.join("conformance.log").display()
            ));
        }
        problems.extend(baseline.problems());
        if !problems.is_empty() {
            let _ = writeln!(
                report,
                "{label}, {rev} (baseline {}):",
                baseline_path.display()
            );
            for p in problems {
                let _ = writeln!(report, "  - {p}");
            }
        }
    }
    drop(gateway);

    if !report.is_empty() {
        let kept = work.keep();
        panic!(
            "conformance through the gateway differs from its baseline\n{report}\nsuite output \
             kept in {} (warden.toml; direct-REV/, gateway-REV/: conformance.log and \
             server-<scenario>-<time>/checks.json); see docs/conformance.md",
            kept.display()
        );
    }
}

/// A problem found in a gateway run, and the scenario it is about (if any).
type Problem = (Option<String>, String);

/// Everything asserted about one gateway run, as problems.
fn evaluate(baseline: &Baseline, direct: &SuiteRun, run: &SuiteRun, rev: &str) -> Vec<Problem> {
    let mut problems = baseline.evaluate(run);
    problems.extend(baseline.evaluate_regressions(direct, run));
    problems.extend(gateway_own_scenarios(baseline, run, rev));
    problems
}

/// How often a `flaky:` scenario with problems is rerun alone.
const FLAKY_RERUNS: u32 = 3;

/// Reruns each `flaky:` scenario of the baseline that has problems, alone, up to
/// [`FLAKY_RERUNS`] times, putting the rerun's checks in place of the previous ones. A flaky
/// scenario still failing after that is left out (loudly): its failure is the known bug.
/// Returns the problems that remain.
async fn retry_flaky(
    baseline: &Baseline,
    direct: &SuiteRun,
    run: &mut SuiteRun,
    mut problems: Vec<Problem>,
    url: &str,
    rev: &str,
    out: &Path,
) -> Vec<Problem> {
    for entry in &baseline.flaky {
        let scenario = &entry.scenario;
        let about = |problems: &[Problem]| {
            problems
                .iter()
                .filter(|(s, _)| s.as_deref() == Some(scenario))
                .map(|(_, p)| p.clone())
                .collect::<Vec<_>>()
        };
        let mut attempt = 0;
        while !about(&problems).is_empty() {
            if attempt == FLAKY_RERUNS {
                eprintln!(
                    "conformance: FLAKE {scenario} ({rev}) still fails after {attempt} reruns \
                     (known gateway bug, {}:{}); not asserted this time: {:?}",
                    baseline.path.display(),
                    entry.line,
                    about(&problems)
                );
                problems.retain(|(s, _)| s.as_deref() != Some(scenario));
                break;
            }
            attempt += 1;
            eprintln!(
                "conformance: FLAKE {scenario} ({rev}) failed through the gateway (known \
                 gateway bug, {}:{}): {:?}; rerunning it alone, attempt {attempt}",
                baseline.path.display(),
                entry.line,
                about(&problems)
            );
            let again = run_scenario(
                url,
                rev,
                scenario,
                &out.join(format!("rerun-{scenario}-{attempt}")),
            )
            .await;
            run.checks.retain(|(s, _), _| s != scenario);
            run.checks
                .extend(again.checks.into_iter().filter(|((s, _), _)| s == scenario));
            run.raw.remove(scenario);
            if let Some(counts) = again.raw.get(scenario) {
                run.raw.insert(scenario.clone(), *counts);
            }
            problems = evaluate(baseline, direct, run, rev);
        }
    }
    problems
}

/// Scenarios the gateway answers itself must have run, and may fail only for a reason that is
/// the gateway's.
fn gateway_own_scenarios(baseline: &Baseline, run: &SuiteRun, rev: &str) -> Vec<Problem> {
    let mut problems = Vec::new();
    for scenario in GATEWAY_OWN_SCENARIOS {
        if scenario == "http-header-validation" && rev != "2026-07-28" {
            continue;
        }
        let passed = run
            .checks
            .iter()
            .any(|((s, _), c)| s == scenario && c.status == Status::Success);
        if !passed {
            problems.push((
                Some(scenario.to_owned()),
                format!("{scenario} did not run or passed no check through the gateway"),
            ));
        }
        for entry in baseline.server.iter().filter(|e| e.scenario == scenario) {
            if !matches!(entry.kind, ReasonKind::GatewayBug | ReasonKind::Pending) {
                problems.push((
                    None,
                    format!(
                        "baseline entry {} is in a scenario the gateway answers itself; its \
                         reason must be `gateway bug:` or `pending:`",
                        entry.text()
                    ),
                ));
            }
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------------
// Servers under test.

struct Server {
    _guard: Guard,
    url: String,
}

/// The conformance fixture over Streamable HTTP on a free loopback port.
async fn start_fixture_http(dir: &Path) -> Server {
    let port = warden_test::free_port();
    let mut cmd = Command::new(deps::node());
    cmd.arg(deps::fixture("conformance/server.mjs"))
        .args(["--http", "--host", "127.0.0.1", "--port", &port.to_string()])
        .arg("--quiet")
        .env("WARDEN_NPM_MODULES", deps::node_modules());
    start(cmd, dir, "fixture", port).await
}

/// server-everything over Streamable HTTP, pinned to 127.0.0.1 by the loopback shim (its
/// HTTP mode listens on all interfaces otherwise).
async fn start_everything_http(dir: &Path) -> Server {
    let port = warden_test::free_port();
    let mut cmd = Command::new(deps::node());
    cmd.arg(deps::server_everything())
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .env(
            "NODE_OPTIONS",
            format!("--require={}", deps::loopback_shim().display()),
        );
    start(cmd, dir, "server-everything", port).await
}

async fn start(mut cmd: Command, dir: &Path, name: &str, port: u16) -> Server {
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let guard = Guard::spawn(cmd).unwrap();
    warden_test::wait_port(port, START_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{name} did not start: {e}"));
    Server {
        _guard: guard,
        url: format!("http://127.0.0.1:{port}/mcp"),
    }
}

fn path_str(p: &Path) -> String {
    toml_str(p.to_str().expect("test dependency paths are UTF-8"))
}

fn conformance_dir() -> PathBuf {
    std::fs::canonicalize(deps::repo().join("tests/conformance")).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Running the suite and reading its results.

/// A check's status; the order is "worse", as the suite ranks duplicates of one check id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Status {
    Skipped,
    Success,
    Warning,
    Failure,
}

impl Status {
    fn parse(s: &str) -> Option<Status> {
        match s {
            "SKIPPED" => Some(Status::Skipped),
            "SUCCESS" => Some(Status::Success),
            "WARNING" => Some(Status::Warning),
            "FAILURE" => Some(Status::Failure),
            _ => None, // INFO: not a verdict
        }
    }

    fn failing(self) -> bool {
        matches!(self, Status::Warning | Status::Failure)
    }
}

#[derive(Debug)]
struct Check {
    status: Status,
    message: String,
}

#[derive(Debug)]
struct SuiteRun {
    exit: Option<i32>,
    /// (scenario, check id) -> worst status of that id in the scenario (INFO dropped).
    checks: BTreeMap<(String, String), Check>,
    /// Scenarios the run started.
    scenarios: BTreeSet<String>,
    /// Per scenario, the raw counts of SUCCESS, FAILURE and WARNING entries in its
    /// `checks.json` (what the suite's console and `scripts/conformance.sh` count).
    raw: BTreeMap<String, [usize; 3]>,
    /// Scenarios scored by the requirement set.
    scored: BTreeSet<String>,
}

impl SuiteRun {
    /// Raw check counts (all scenarios, then scored ones) and how many scored scenarios pass.
    fn tally(&self) -> String {
        let sum = |scored_only: bool| {
            self.raw
                .iter()
                .filter(|(s, _)| !scored_only || self.scored.contains(*s))
                .fold([0; 3], |a, (_, n)| [a[0] + n[0], a[1] + n[1], a[2] + n[2]])
        };
        let [p, f, w] = sum(false);
        let [sp, sf, sw] = sum(true);
        let scored_pass = self
            .scored
            .iter()
            .filter(|s| self.scenarios.contains(*s))
            .filter(|s| {
                !self
                    .checks
                    .iter()
                    .any(|((sc, _), c)| sc == *s && c.status.failing())
            })
            .count();
        format!(
            "{} scenarios; checks passed {p}, failed {f}, warnings {w}; scored scenarios: \
             checks {sp}/{sf}/{sw}, {scored_pass} of {} pass; suite exit {:?}",
            self.scenarios.len(),
            self.scored.len(),
            self.exit
        )
    }
}

/// Runs `conformance server --requirements REV` against `url` with `baseline`, writing to `out`.
async fn run_suite(url: &str, rev: &str, out: &Path, baseline: &Path) -> SuiteRun {
    run_suite_as(url, rev, out, baseline, None).await
}

/// [`run_suite`] sending `credential` on every request to the gateway.
async fn run_suite_as(
    url: &str,
    rev: &str,
    out: &Path,
    baseline: &Path,
    credential: Option<&Credential>,
) -> SuiteRun {
    let mut args = vec![
        "--requirements".into(),
        rev.into(),
        "--expected-failures".into(),
    ];
    args.push(baseline.as_os_str().to_owned());
    let exit = run_conformance(url, &args, out, credential).await;
    let log = std::fs::read_to_string(out.join("conformance.log")).unwrap_or_default();
    read_checks(out, &log, exit, scored_scenarios(rev))
}

/// Runs one scenario alone (`--scenario X --spec-version REV`: no requirement scoring) and
/// returns its checks.
async fn run_scenario(url: &str, rev: &str, scenario: &str, out: &Path) -> SuiteRun {
    run_scenario_as(url, rev, scenario, out, None).await
}

/// [`run_scenario`] sending `credential` on every request to the gateway.
async fn run_scenario_as(
    url: &str,
    rev: &str,
    scenario: &str,
    out: &Path,
    credential: Option<&Credential>,
) -> SuiteRun {
    let args = ["--scenario", scenario, "--spec-version", rev].map(OsString::from);
    let exit = run_conformance(url, &args, out, credential).await;
    // No "=== Running scenario" line in this mode: name the scenario, so a run that wrote no
    // checks.json still counts as a failure.
    let log = format!("=== Running scenario: {scenario} ===\n");
    read_checks(out, &log, exit, BTreeSet::new())
}

/// An `Authorization` header value the suite sends to the gateway, through the preload
/// `conformance/authorization.cjs` (the suite itself has no option for request headers).
struct Credential {
    /// The header value, e.g. `Bearer eyJ...`.
    header: String,
    /// The gateway's `host:port`: only requests there carry the credential.
    authority: String,
    /// Where the preload appends, at exit, how many requests of each HTTP client it decorated.
    log: PathBuf,
}

/// `node <conformance> server --url URL --timeout T -o OUT ARGS...`, console to
/// `OUT/conformance.log`; the exit code (None: killed by a signal).
async fn run_conformance(
    url: &str,
    args: &[OsString],
    out: &Path,
    credential: Option<&Credential>,
) -> Option<i32> {
    std::fs::create_dir_all(out).unwrap();
    let log = std::fs::File::create(out.join("conformance.log")).unwrap();
    let node = deps::node();
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![node.parent().unwrap().to_path_buf()];
    paths.extend(std::env::split_paths(&path));
    let mut cmd = Command::new(&node);
    cmd.arg(deps::conformance())
        .args([
            "server",
            "--url",
            url,
            "--timeout",
            SCENARIO_TIMEOUT_MS,
            "-o",
        ])
        .arg(out)
        .args(args)
        // Node 22 first for anything the suite spawns; no colour codes in the log.
        .env("PATH", std::env::join_paths(paths).unwrap())
        .env("NO_COLOR", "1")
        .env("FORCE_COLOR", "0")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    if let Some(credential) = credential {
        let preload =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/conformance/authorization.cjs");
        cmd.env("NODE_OPTIONS", format!("--require={}", preload.display()))
            .env("WARDEN_CONFORMANCE_AUTHORIZATION", &credential.header)
            .env("WARDEN_CONFORMANCE_AUTHORITY", &credential.authority)
            .env("WARDEN_CONFORMANCE_AUTH_LOG", &credential.log)
            .env("WARDEN_NPM_MODULES", deps::node_modules());
    }
    let mut guard = Guard::spawn(cmd).unwrap();
    let status = guard.wait(RUN_TIMEOUT).await.unwrap_or_else(|e| {
        panic!(
            "conformance {args:?} against {url} did not finish: {e} (bound {RUN_TIMEOUT:?}; \
             output in {})",
            out.display()
        )
    });
    status.code()
}

/// Reads `OUT/server-<scenario>-<ISO time>/checks.json` (the latest per scenario). A scenario
/// that threw writes no file; the suite then counts one synthetic FAILURE whose id is the
/// scenario name, and so does this.
fn read_checks(out: &Path, log: &str, exit: Option<i32>, scored: BTreeSet<String>) -> SuiteRun {
    let scenarios: BTreeSet<String> = log
        .lines()
        .filter_map(|l| l.strip_prefix("=== Running scenario: "))
        .filter_map(|l| l.strip_suffix(" ==="))
        .map(str::to_owned)
        .collect();
    let mut latest: BTreeMap<String, (String, PathBuf)> = BTreeMap::new();
    for entry in std::fs::read_dir(out).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((scenario, stamp)) = split_result_dir(&name) else {
            continue;
        };
        let file = entry.path().join("checks.json");
        if !file.exists() {
            continue;
        }
        let newer = latest
            .get(scenario)
            .is_none_or(|(prev, _)| prev.as_str() < stamp);
        if newer {
            latest.insert(scenario.to_owned(), (stamp.to_owned(), file));
        }
    }
    let mut checks: BTreeMap<(String, String), Check> = BTreeMap::new();
    let mut raw: BTreeMap<String, [usize; 3]> = BTreeMap::new();
    for (scenario, (_, file)) in &latest {
        let counts = raw.entry(scenario.clone()).or_default();
        let text = std::fs::read_to_string(file).unwrap();
        let list: Vec<Value> =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for c in list {
            let Some(status) = c["status"].as_str().and_then(Status::parse) else {
                continue;
            };
            match status {
                Status::Success => counts[0] += 1,
                Status::Failure => counts[1] += 1,
                Status::Warning => counts[2] += 1,
                Status::Skipped => {}
            }
            let id = c["id"].as_str().unwrap_or("?").to_owned();
            let message = c["errorMessage"].as_str().unwrap_or("").to_owned();
            let key = (scenario.clone(), id);
            match checks.get(&key) {
                Some(prev) if prev.status > status => {}
                _ => {
                    checks.insert(key, Check { status, message });
                }
            }
        }
    }
    for scenario in scenarios.iter().filter(|s| !latest.contains_key(*s)) {
        raw.insert(scenario.clone(), [0, 1, 0]);
        checks.insert(
            (scenario.clone(), scenario.clone()),
            Check {
                status: Status::Failure,
                message: "failed to run scenario (no checks.json; see conformance.log)".into(),
            },
        );
    }
    SuiteRun {
        exit,
        checks,
        scenarios,
        raw,
        scored,
    }
}

/// `server-<scenario>-2026-11-21T06-42-22-123Z` -> (scenario, timestamp).
fn split_result_dir(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix("server-")?;
    // The timestamp is `YYYY-MM-DDT...Z`: find the `-YYYY-MM-DDT` that starts it.
    let bytes = rest.as_bytes();
    (0..rest.len()).rev().find_map(|i| {
        let stamp = rest.get(i + 1..)?;
        let ok = bytes[i] == b'-'
            && stamp.len() > 11
            && stamp.ends_with('Z')
            && stamp.as_bytes()[10] == b'T'
            && stamp[..4].bytes().all(|b| b.is_ascii_digit());
        ok.then(|| (&rest[..i], stamp))
    })
}

/// The scenarios the suite scores for `rev` (its frozen `requirements/REV.yaml`, `server:`).
fn scored_scenarios(rev: &str) -> BTreeSet<String> {
    let file = deps::conformance()
        .parent()
        .unwrap()
        .join("../requirements")
        .join(format!("{rev}.yaml"));
    let text = std::fs::read_to_string(&file).unwrap();
    let mut in_server = false;
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if !line.starts_with([' ', '#']) && !line.is_empty() {
            in_server = line.trim_end() == "server:";
        } else if in_server && let Some(name) = line.strip_prefix("  - ") {
            out.insert(name.trim().to_owned());
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Baselines.

/// Why a baseline entry is there: the first word(s) of the comment block above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReasonKind {
    /// The server fails it directly too.
    Upstream,
    /// The gateway's fault; reported as a bug.
    GatewayBug,
    /// Gateway work in progress.
    Pending,
    /// Through the gateway the check reports INFO ("not applicable") instead of SUCCESS.
    NotApplicable,
    /// No comment, or an unknown prefix.
    Missing,
}

#[derive(Debug, Clone)]
struct Entry {
    scenario: String,
    check: Option<String>,
    kind: ReasonKind,
    line: usize,
}

impl Entry {
    fn text(&self) -> String {
        match &self.check {
            Some(c) => format!("{}:{c}", self.scenario),
            None => self.scenario.clone(),
        }
    }
}

/// A gateway baseline: the suite's `--expected-failures` format (`server:`), plus
/// `regressions:`, the checks that pass directly but not through the gateway. Only the YAML
/// subset those files use is read: top-level `key:` / `key: []`, `  - item`, comments.
#[derive(Debug)]
struct Baseline {
    path: PathBuf,
    server: Vec<Entry>,
    regressions: Vec<Entry>,
    flaky: Vec<Entry>,
    errors: Vec<String>,
}

impl Baseline {
    fn load(path: &Path) -> Baseline {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("baseline {}: {e}", path.display()));
        let mut b = Baseline {
            path: path.to_owned(),
            server: Vec::new(),
            regressions: Vec::new(),
            flaky: Vec::new(),
            errors: Vec::new(),
        };
        let mut key: Option<String> = None;
        let mut reason = ReasonKind::Missing;
        let mut in_comment = false;
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let trimmed = raw.trim();
            if let Some(comment) = trimmed.strip_prefix('#') {
                if !in_comment {
                    // The first line of a comment block gives the reason of the entries below.
                    reason = reason_kind(comment.trim());
                }
                in_comment = true;
                continue;
            }
            in_comment = false;
            if trimmed.is_empty() {
                continue;
            }
            if !raw.starts_with(' ') {
                let Some((k, v)) = trimmed.split_once(':') else {
                    b.errors.push(format!("line {line}: not `key:`"));
                    continue;
                };
                if !matches!(v.trim(), "" | "[]") {
                    b.errors.push(format!("line {line}: `{k}:` must be a list"));
                }
                key = Some(k.to_owned());
                reason = ReasonKind::Missing;
                continue;
            }
            let Some(item) = trimmed.strip_prefix("- ") else {
                b.errors.push(format!("line {line}: not a `- item`"));
                continue;
            };
            let (scenario, check) = match item.split_once(':') {
                Some((s, c)) => (s.to_owned(), Some(c.to_owned())),
                None => (item.to_owned(), None),
            };
            let entry = Entry {
                scenario,
                check,
                kind: reason,
                line,
            };
            match key.as_deref() {
                Some("server") => b.server.push(entry),
                Some("regressions") => b.regressions.push(entry),
                Some("flaky") => b.flaky.push(entry),
                other => b
                    .errors
                    .push(format!("line {line}: item under unknown key {other:?}")),
            }
        }
        b
    }

    /// Entries without a reason, or with a reason that does not fit their list.
    fn problems(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .errors
            .iter()
            .map(|e| format!("{}: {e}", self.path.display()))
            .collect();
        for e in self
            .server
            .iter()
            .chain(&self.regressions)
            .chain(&self.flaky)
        {
            if e.kind == ReasonKind::Missing {
                out.push(format!(
                    "baseline line {}: {} has no reason (a comment block above it starting \
                     with `upstream:`, `gateway bug:`, `pending:` or `not applicable:`)",
                    e.line,
                    e.text()
                ));
            }
        }
        for e in &self.flaky {
            if e.check.is_some() || e.kind != ReasonKind::GatewayBug {
                out.push(format!(
                    "baseline line {}: flaky entry {} must be a whole scenario with a \
                     `gateway bug:` reason",
                    e.line,
                    e.text()
                ));
            }
        }
        for e in &self.regressions {
            if e.check.is_none() {
                out.push(format!(
                    "baseline line {}: regression {} must name a check (`scenario:check-id`)",
                    e.line,
                    e.text()
                ));
            }
            if e.kind == ReasonKind::Upstream {
                out.push(format!(
                    "baseline line {}: regression {} passes directly, so its reason cannot be \
                     `upstream:`",
                    e.line,
                    e.text()
                ));
            }
        }
        out
    }

    /// The `server:` list over every scenario of the run (the suite itself only looks at the
    /// scored ones): no unexpected FAILURE/WARNING, no entry that matches none.
    fn evaluate(&self, run: &SuiteRun) -> Vec<Problem> {
        let whole: BTreeSet<&str> = self
            .server
            .iter()
            .filter(|e| e.check.is_none())
            .map(|e| e.scenario.as_str())
            .collect();
        let listed: BTreeSet<(&str, &str)> = self
            .server
            .iter()
            .filter_map(|e| Some((e.scenario.as_str(), e.check.as_deref()?)))
            .collect();
        let mut out = Vec::new();
        for ((scenario, id), check) in &run.checks {
            if check.status.failing()
                && !whole.contains(scenario.as_str())
                && !listed.contains(&(scenario.as_str(), id.as_str()))
            {
                out.push((
                    Some(scenario.clone()),
                    format!(
                        "unexpected {:?} through the gateway: {scenario}:{id}{}: {}",
                        check.status,
                        scored_tag(run, scenario),
                        check.message
                    ),
                ));
            }
        }
        for e in &self.server {
            let stale = match &e.check {
                None => !run
                    .checks
                    .iter()
                    .any(|((s, _), c)| *s == e.scenario && c.status.failing()),
                Some(id) => !run
                    .checks
                    .get(&(e.scenario.clone(), id.clone()))
                    .is_some_and(|c| c.status.failing()),
            };
            if stale {
                out.push((
                    Some(e.scenario.clone()),
                    format!(
                        "stale baseline entry (no longer fails through the gateway): {}{}",
                        e.text(),
                        scored_tag(run, &e.scenario)
                    ),
                ));
            }
        }
        out
    }

    /// Checks that are SUCCESS directly but not through the gateway must be exactly the
    /// `regressions:` list.
    fn evaluate_regressions(&self, direct: &SuiteRun, gateway: &SuiteRun) -> Vec<Problem> {
        let listed: BTreeSet<(String, String)> = self
            .regressions
            .iter()
            .filter_map(|e| Some((e.scenario.clone(), e.check.clone()?)))
            .collect();
        let mut out = Vec::new();
        let mut found = BTreeSet::new();
        for (key, check) in &direct.checks {
            if check.status != Status::Success {
                continue;
            }
            let through = gateway.checks.get(key);
            if through.is_some_and(|c| c.status == Status::Success) {
                continue;
            }
            found.insert(key.clone());
            if !listed.contains(key) {
                let what = match through {
                    Some(c) => format!("{:?}: {}", c.status, c.message),
                    None => "not reported (INFO only, or the scenario did not run)".to_owned(),
                };
                out.push((
                    Some(key.0.clone()),
                    format!(
                        "REGRESSION: {}:{} passes directly but through the gateway is {what}",
                        key.0, key.1
                    ),
                ));
            }
        }
        for key in listed.difference(&found) {
            out.push((
                Some(key.0.clone()),
                format!(
                    "stale regression entry (passes through the gateway, or no longer passes \
                     directly): {}:{}",
                    key.0, key.1
                ),
            ));
        }
        out
    }
}

fn reason_kind(first_line: &str) -> ReasonKind {
    let lower = first_line.to_ascii_lowercase();
    if lower.starts_with("upstream:") {
        ReasonKind::Upstream
    } else if lower.starts_with("gateway bug:") {
        ReasonKind::GatewayBug
    } else if lower.starts_with("pending:") {
        ReasonKind::Pending
    } else if lower.starts_with("not applicable:") {
        ReasonKind::NotApplicable
    } else {
        ReasonKind::Missing
    }
}

fn scored_tag(run: &SuiteRun, scenario: &str) -> &'static str {
    if run.scored.contains(scenario) {
        " (scored)"
    } else {
        " (not scored)"
    }
}

#[test]
fn splits_result_directory_names() {
    assert_eq!(
        split_result_dir("server-tools-call-simple-text-2026-11-21T06-42-22-123Z"),
        Some(("tools-call-simple-text", "2026-11-21T06-42-22-123Z"))
    );
    assert_eq!(
        split_result_dir("server-sep-2164-resource-not-found-2026-11-21T06-42-22Z"),
        Some(("sep-2164-resource-not-found", "2026-11-21T06-42-22Z"))
    );
    assert_eq!(split_result_dir("conformance.log"), None);
}
