//! Interoperability with real third-party servers and a real client: every tool, prompt and
//! resource gives the same result through the gateway as directly.
//!
//! The client is the official Python SDK (`mcp` 2.3.0) driving
//! `crates/warden-test/fixtures/python/client.py`, which prints a deterministic transcript of
//! every tool call, prompt, resource read and completion (see `fixtures/README.md`). Each
//! test takes the transcript directly and through the gateway, in the same test, against
//! the same server build, and compares them after the normalisations listed in
//! [`normalise`] only (each says why it is legitimate).
//!
//! The servers are `@modelcontextprotocol/server-everything` (npm, 2025-era only) and
//! `fixtures/python/server.py` (Python SDK, both eras, or `--legacy-only`), each over stdio
//! and Streamable HTTP. Modules:
//!
//! - `transcripts`: each server × transport behind `mcp-warden run` (the client over stdio)
//!   and `mcp-warden serve` (the client over Streamable HTTP), for the client's `auto`,
//!   `legacy` and `modern` protocol modes, including era bridging (a modern client to the
//!   legacy-only servers).
//! - `aggregate`: `serve` over two upstreams at once; name collisions between
//!   `namespace = false` upstreams.
//! - `multiplex`: two HTTP clients through `serve` to one stdio upstream, hundreds of
//!   concurrent calls with the same request ids on both sides.
//! - `list_changed`: a runtime tool-list change (`fixtures/python/list_changed_server.py`)
//!   reaches every session of `serve`.

mod aggregate;
mod list_changed;
mod multiplex;
mod transcripts;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;
use warden_test::deps;
use warden_test::process::Guard;

use crate::support::{self, toml_str};

/// Longest a client.py run may take (a run takes ~5 s; it bounds itself at 90 s).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);
/// Time for a server under test to listen.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// At most this many client.py runs at once across the module: each starts a Python
/// interpreter and a server (and maybe a gateway); on a 2-core CI machine more only adds
/// noise.
static CLIENT_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(3);

/// The client's `--protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// `server/discover` probe, then `initialize` if that fails.
    Auto,
    /// `initialize` only (2025-11-25).
    Legacy,
    /// 2026-07-28 only.
    Modern,
}

impl Protocol {
    pub(crate) const ALL: [Protocol; 3] = [Protocol::Auto, Protocol::Legacy, Protocol::Modern];

    fn arg(self) -> &'static str {
        match self {
            Protocol::Auto => "auto",
            Protocol::Legacy => "legacy",
            Protocol::Modern => "modern",
        }
    }
}

/// How client.py reaches its server.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// A command it starts and talks to over stdio.
    Stdio(Vec<String>),
    /// A Streamable HTTP endpoint.
    Http(String),
}

/// Which args file the client uses.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Args {
    Everything,
    Python,
}

impl Args {
    fn path(self) -> PathBuf {
        match self {
            Args::Everything => deps::fixture("everything-args.json"),
            Args::Python => deps::fixture("python/server-args.json"),
        }
    }
}

fn s(p: impl AsRef<std::ffi::OsStr>) -> String {
    p.as_ref().to_string_lossy().into_owned()
}

/// Quotes one word for `/bin/sh`.
fn sh_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// `server-everything stdio`.
pub(crate) fn everything_stdio() -> Vec<String> {
    vec![
        s(deps::node()),
        s(deps::server_everything()),
        "stdio".into(),
    ]
}

/// `server.py stdio [extra]`.
pub(crate) fn python_stdio(extra: &[&str]) -> Vec<String> {
    let mut c = vec![
        s(deps::python()),
        s(deps::fixture("python/server.py")),
        "stdio".into(),
    ];
    c.extend(extra.iter().map(|e| (*e).to_owned()));
    c
}

/// A scratch directory per test, handing out a fresh data directory per gateway.
pub(crate) struct Scratch {
    dir: tempfile::TempDir,
    next: AtomicUsize,
}

impl Scratch {
    pub(crate) fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().unwrap(),
            next: AtomicUsize::new(0),
        }
    }

    /// A new empty directory.
    pub(crate) fn fresh(&self) -> PathBuf {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let p = self.dir.path().join(format!("d{n}"));
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    /// A path in the scratch directory.
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// `mcp-warden run --data-dir DIR -- <server>`.
pub(crate) fn run_stdio(scratch: &Scratch, server: &[String]) -> Target {
    let mut c = vec![
        s(support::bin()),
        "run".into(),
        "--data-dir".into(),
        s(scratch.fresh()),
        "--".into(),
    ];
    c.extend(server.iter().cloned());
    Target::Stdio(c)
}

/// `mcp-warden run --data-dir DIR --url URL`.
pub(crate) fn run_url(scratch: &Scratch, url: &str) -> Target {
    Target::Stdio(vec![
        s(support::bin()),
        "run".into(),
        "--data-dir".into(),
        s(scratch.fresh()),
        "--url".into(),
        url.to_owned(),
    ])
}

/// A `[upstreams.NAME]` table for a stdio server; `extra` is more TOML lines.
pub(crate) fn stdio_upstream(name: &str, command: &[String], extra: &str) -> String {
    let args: Vec<String> = command[1..].iter().map(|a| toml_str(a)).collect();
    format!(
        "[upstreams.{name}]\ncommand = {}\nargs = [{}]\n{extra}\n",
        toml_str(&command[0]),
        args.join(", ")
    )
}

/// A `[upstreams.NAME]` table for a Streamable HTTP server.
pub(crate) fn http_upstream(name: &str, url: &str, extra: &str) -> String {
    format!("[upstreams.{name}]\nurl = {}\n{extra}\n", toml_str(url))
}

/// A server listening on 127.0.0.1, stopped when dropped.
#[derive(Debug)]
pub(crate) struct HttpServer {
    _guard: Guard,
    pub(crate) url: String,
}

/// `server-everything streamableHttp` on a free loopback port (the loopback shim pins its
/// `listen()` to 127.0.0.1: on its own it listens on every interface).
pub(crate) async fn everything_http() -> anyhow::Result<HttpServer> {
    let port = warden_test::free_port();
    let mut c = Command::new(deps::node());
    c.arg(deps::server_everything())
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .env(
            "NODE_OPTIONS",
            format!("--require={}", deps::loopback_shim().display()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let guard = Guard::spawn(c)?;
    warden_test::wait_port(port, START_TIMEOUT).await?;
    Ok(HttpServer {
        _guard: guard,
        url: format!("http://127.0.0.1:{port}/mcp"),
    })
}

/// `server.py http --port N [extra]` (it binds 127.0.0.1 only).
pub(crate) async fn python_http(extra: &[&str]) -> anyhow::Result<HttpServer> {
    let port = warden_test::free_port();
    let mut c = Command::new(deps::python());
    c.arg(deps::fixture("python/server.py"))
        .arg("http")
        .arg("--port")
        .arg(port.to_string())
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let guard = Guard::spawn(c)?;
    warden_test::wait_port(port, START_TIMEOUT).await?;
    Ok(HttpServer {
        _guard: guard,
        url: format!("http://127.0.0.1:{port}/mcp"),
    })
}

/// One client.py run: the transcript, or an error with the client's stderr (which also holds
/// the stderr of a gateway it started).
pub(crate) async fn transcript(
    target: &Target,
    args: Args,
    protocol: Protocol,
    strip_prefix: Option<&str>,
) -> anyhow::Result<Value> {
    let _slot = CLIENT_SLOTS.acquire().await?;
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("transcript.json");
    let err = dir.path().join("stderr.txt");
    let mut c = Command::new(deps::python());
    c.arg(deps::fixture("python/client.py"));
    match target {
        Target::Stdio(cmd) => {
            let line: Vec<String> = cmd.iter().map(|w| sh_quote(w)).collect();
            c.arg("--stdio").arg(line.join(" "));
        }
        Target::Http(url) => {
            c.arg("--http").arg(url);
        }
    }
    c.arg("--args")
        .arg(args.path())
        .arg("--protocol")
        .arg(protocol.arg())
        .arg("--timeout")
        .arg("90")
        .arg("--out")
        .arg(&out);
    if let Some(p) = strip_prefix {
        c.arg("--strip-prefix").arg(p);
    }
    // Inherited by a gateway the client starts over stdio.
    c.env("MCP_WARDEN_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&err)?));
    let mut guard = Guard::spawn(c)?;
    let status = guard.wait(CLIENT_TIMEOUT).await;
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    let status = status.map_err(|e| anyhow::anyhow!("client.py did not finish: {e}\n{stderr}"))?;
    anyhow::ensure!(
        status.success(),
        "client.py against {target:?} ({protocol:?}) failed: {status}\n{stderr}"
    );
    Ok(serde_json::from_slice(&std::fs::read(&out)?)?)
}

/// What may legitimately differ between a direct transcript and one through the gateway.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Allow<'a> {
    /// Through `serve`, with this upstream name: the gateway is the server the client talks to.
    pub(crate) serve: Option<&'a str>,
    /// A modern client through the gateway to a legacy-only server (compared with the direct
    /// legacy transcript).
    pub(crate) bridged: bool,
    /// Tool calls left out of the comparison (why: at the call site).
    pub(crate) skip_tools: &'a [&'a str],
}

/// Applies exactly the allowed normalisations to copies of both transcripts.
///
/// - `serve` answers `initialize` / `server/discover` itself (docs/architecture.md, "gateway
///   answers initialize / server/discover"): `serverInfo` is the gateway's own (checked:
///   `name` is `mcp-warden`), each upstream's `instructions` are prefixed with `[<upstream>] `
///   (checked), `listChanged` is `true` for tools, prompts and resources because the
///   gateway re-lists on change (dispatch.rs, `aggregate_description`), and the `tasks`
///   capability may be absent (serve offers no tasks yet). Nothing else of the
///   server section is normalised: `protocolVersion`, `era` and every other capability must
///   match.
/// - bridged: the client asked for 2026-07-28 from a 2025-only server, so `protocolVersion`
///   and `era` are the client's, by design. Results must still match.
/// - `skip_tools`: removed from `toolCalls` on both sides.
pub(crate) fn normalise(direct: &Value, through: &Value, allow: Allow<'_>) -> (Value, Value) {
    let mut d = direct.clone();
    let mut t = through.clone();
    if let Some(name) = allow.serve {
        let server = &mut t["server"];
        if server["serverInfo"]["name"] == "mcp-warden" {
            server["serverInfo"] = d["server"]["serverInfo"].clone();
        }
        if let (Some(di), Some(ti)) = (
            d["server"]["instructions"].as_str(),
            server["instructions"].as_str(),
        ) && ti.strip_prefix(&format!("[{name}] ")) == Some(di)
        {
            server["instructions"] = Value::String(di.to_owned());
        }
        // `serve` offers no tasks until a task is bound to its caller (dispatch.rs,
        // `handle_request`): only the capability's absence is allowed.
        if server["capabilities"].get("tasks").is_none()
            && let Some(v) = d["server"]["capabilities"].get("tasks")
        {
            server["capabilities"]["tasks"] = v.clone();
        }
        for cap in ["tools", "prompts", "resources"] {
            let direct_value = d["server"]["capabilities"][cap].get("listChanged").cloned();
            if let Some(c) = server["capabilities"][cap].as_object_mut()
                && c.get("listChanged") == Some(&Value::Bool(true))
            {
                match direct_value {
                    Some(v) => c.insert("listChanged".into(), v),
                    None => c.remove("listChanged"),
                };
            }
        }
    }
    if allow.bridged {
        for key in ["protocolVersion", "era"] {
            t["server"][key] = d["server"][key].clone();
        }
        // Across eras the gateway withholds what it cannot carry: logging, list-change
        // notifications and resource subscriptions work differently in the two eras
        // (docs/architecture.md). Only their absence is allowed, never another value.
        let dc = d["server"]["capabilities"].clone();
        let tc = &mut t["server"]["capabilities"];
        // `tasks` moved to an extension in 2026-07-28: a 2025 `tasks` capability is not
        // announced to a 2026 client.
        for key in ["logging", "tasks"] {
            if tc.get(key).is_none()
                && let Some(v) = dc.get(key)
            {
                tc[key] = v.clone();
            }
        }
        for feature in ["tools", "prompts", "resources"] {
            for key in ["listChanged", "subscribe"] {
                if let Some(v) = dc[feature].get(key)
                    && let Some(f) = tc[feature].as_object_mut()
                    && !f.contains_key(key)
                {
                    f.insert(key.into(), v.clone());
                }
            }
        }
    }
    for tool in allow.skip_tools {
        for v in [&mut d, &mut t] {
            if let Some(calls) = v["toolCalls"].as_object_mut() {
                calls.remove(*tool);
            }
        }
    }
    (d, t)
}

/// Collects every mismatch of a test, so one run reports them all.
#[derive(Debug, Default)]
pub(crate) struct Report {
    failures: Vec<String>,
    passed: Vec<String>,
}

impl Report {
    /// Compares `through` with `direct` (after [`normalise`]).
    pub(crate) fn same(&mut self, label: &str, direct: &Value, through: &Value, allow: Allow<'_>) {
        let (d, t) = normalise(direct, through, allow);
        let mut lines = vec![];
        diff(&mut String::new(), &d, &t, &mut lines);
        if lines.is_empty() {
            self.passed.push(label.to_owned());
        } else {
            let total = lines.len();
            lines.truncate(40);
            let mut text =
                format!("{label}: {total} difference(s) (directly vs through the gateway)");
            for l in lines {
                let _ = write!(text, "\n    {l}");
            }
            if total > 40 {
                let _ = write!(text, "\n    ... {} more", total - 40);
            }
            self.failures.push(text);
        }
    }

    /// Records a run that could not produce a transcript.
    pub(crate) fn failed(&mut self, label: &str, error: &anyhow::Error) {
        self.failures
            .push(format!("{label}: no transcript: {error:#}"));
    }

    /// Compares when the run produced a transcript.
    pub(crate) fn same_or_failed(
        &mut self,
        label: &str,
        direct: &Value,
        through: &anyhow::Result<Value>,
        allow: Allow<'_>,
    ) {
        match through {
            Ok(t) => self.same(label, direct, t, allow),
            Err(e) => self.failed(label, e),
        }
    }

    /// Expects the client to fail through the gateway as it fails directly (both runs ended
    /// in an error).
    pub(crate) fn fails_as_directly(
        &mut self,
        label: &str,
        direct: &anyhow::Result<Value>,
        through: &anyhow::Result<Value>,
    ) {
        match (direct, through) {
            (Err(_), Err(_)) => self.passed.push(label.to_owned()),
            (Ok(_), _) => self.failures.push(format!(
                "{label}: expected the direct run to fail, it succeeded"
            )),
            (Err(d), Ok(_)) => self.failures.push(format!(
                "{label}: fails directly ({d:#}) but succeeds through the gateway"
            )),
        }
    }

    /// Panics with every mismatch.
    pub(crate) fn finish(self) {
        assert!(
            self.failures.is_empty(),
            "{} comparison(s) failed, {} passed ({}):\n\n{}",
            self.failures.len(),
            self.passed.len(),
            self.passed.join(", "),
            self.failures.join("\n\n")
        );
    }
}

fn short(v: &Value) -> String {
    let mut t = v.to_string();
    if t.len() > 240 {
        let mut cut = 240;
        while !t.is_char_boundary(cut) {
            cut -= 1;
        }
        t.truncate(cut);
        t.push('…');
    }
    t
}

/// The key that identifies each element of a transcript list, if every element has a
/// distinct one (a URI, or else a name): differences are then reported per item.
fn keyed(items: &[Value]) -> Option<Vec<(String, &Value)>> {
    let keyed: Vec<(String, &Value)> = items
        .iter()
        .map(|i| {
            ["uri", "uriTemplate", "name"]
                .iter()
                .find_map(|k| i.get(*k).and_then(Value::as_str))
                .map(|k| (k.to_owned(), i))
        })
        .collect::<Option<_>>()?;
    let mut keys: Vec<&String> = keyed.iter().map(|(k, _)| k).collect();
    keys.sort();
    keys.dedup();
    (keys.len() == keyed.len()).then_some(keyed)
}

/// Lists the differences between two JSON values, one line per differing path.
fn diff(path: &mut String, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let len = path.len();
                let _ = write!(path, ".{k}");
                match (x.get(k), y.get(k)) {
                    (Some(va), Some(vb)) => diff(path, va, vb, out),
                    (Some(va), None) => {
                        out.push(format!("{path}: only directly: {}", short(va)));
                    }
                    (None, Some(vb)) => {
                        out.push(format!("{path}: only through the gateway: {}", short(vb)));
                    }
                    (None, None) => {}
                }
                path.truncate(len);
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            if let (Some(kx), Some(ky)) = (keyed(x), keyed(y)) {
                let order = |k: &[(String, &Value)]| -> Vec<String> {
                    k.iter().map(|(k, _)| k.clone()).collect()
                };
                let (ox, oy) = (order(&kx), order(&ky));
                let mut sx = ox.clone();
                sx.sort();
                let mut sy = oy.clone();
                sy.sort();
                if sx == sy && ox != oy {
                    out.push(format!(
                        "{path}: order differs: directly {ox:?} / through the gateway {oy:?}"
                    ));
                }
                let mut names: Vec<&String> = kx
                    .iter()
                    .map(|(k, _)| k)
                    .chain(ky.iter().map(|(k, _)| k))
                    .collect();
                names.sort();
                names.dedup();
                for n in names {
                    let len = path.len();
                    let _ = write!(path, "[{n}]");
                    let va = kx.iter().find(|(k, _)| k == n).map(|(_, v)| *v);
                    let vb = ky.iter().find(|(k, _)| k == n).map(|(_, v)| *v);
                    match (va, vb) {
                        (Some(va), Some(vb)) => diff(path, va, vb, out),
                        (Some(va), None) => {
                            out.push(format!("{path}: only directly: {}", short(va)));
                        }
                        (None, Some(vb)) => {
                            out.push(format!("{path}: only through the gateway: {}", short(vb)));
                        }
                        (None, None) => {}
                    }
                    path.truncate(len);
                }
            } else if x.len() == y.len() {
                for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                    let len = path.len();
                    let _ = write!(path, "[{i}]");
                    diff(path, va, vb, out);
                    path.truncate(len);
                }
            } else {
                out.push(format!(
                    "{path}: directly {} / through the gateway {}",
                    short(a),
                    short(b)
                ));
            }
        }
        _ if a != b => out.push(format!(
            "{path}: directly {} / through the gateway {}",
            short(a),
            short(b)
        )),
        _ => {}
    }
}

/// Runs client.py for each `(target, protocol, prefix)` concurrently (bounded by
/// [`CLIENT_SLOTS`]), results in order.
pub(crate) async fn transcripts(
    args: Args,
    runs: Vec<(Target, Protocol, Option<String>)>,
) -> Vec<anyhow::Result<Value>> {
    let mut set = tokio::task::JoinSet::new();
    for (i, (target, protocol, prefix)) in runs.into_iter().enumerate() {
        set.spawn(async move {
            (
                i,
                transcript(&target, args, protocol, prefix.as_deref()).await,
            )
        });
    }
    let mut out: Vec<(usize, anyhow::Result<Value>)> = vec![];
    while let Some(r) = set.join_next().await {
        out.push(r.unwrap());
    }
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}
