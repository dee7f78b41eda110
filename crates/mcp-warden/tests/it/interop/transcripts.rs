//! Transcripts of the Python SDK client, directly and through the gateway, for each server and
//! transport, client protocol mode and gateway shape:
//!
//! - `stdio_client_run_*`: the client speaks stdio to `mcp-warden run -- <server>` (stdio
//!   upstream) or `mcp-warden run --url <server>` (Streamable HTTP upstream).
//! - `http_client_serve_*`: the client speaks Streamable HTTP to `mcp-warden serve` with the
//!   server as its only upstream (`--strip-prefix <upstream>__`).
//!
//! Each test reports every mismatching comparison at once (see [`Report`]).

use serde_json::Value;

use super::{
    Allow, Args, Protocol, Report, Scratch, Target, everything_http, everything_stdio,
    http_upstream, python_http, python_stdio, run_stdio, run_url, stdio_upstream, transcript,
    transcripts,
};
use crate::support::Serve;

fn direct(r: &anyhow::Result<Value>, what: &str) -> Value {
    match r {
        Ok(v) => v.clone(),
        Err(e) => panic!("direct transcript ({what}) failed, nothing to compare with: {e:#}"),
    }
}

fn label(gateway: &str, protocol: Protocol) -> String {
    format!("{protocol:?} client through {gateway}")
}

/// `run` around server-everything over stdio. server-everything is 2025-only: directly, the
/// `auto` client negotiates 2025-11-25 (and `legacy` gives the same bytes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_client_run_everything_stdio() {
    let scratch = Scratch::new();
    let server = everything_stdio();
    let r = transcripts(
        Args::Everything,
        vec![
            (Target::Stdio(server.clone()), Protocol::Auto, None),
            (run_stdio(&scratch, &server), Protocol::Auto, None),
            (run_stdio(&scratch, &server), Protocol::Legacy, None),
            (run_stdio(&scratch, &server), Protocol::Modern, None),
            (Target::Stdio(server.clone()), Protocol::Modern, None),
        ],
    )
    .await;
    let d = direct(&r[0], "server-everything stdio");
    let mut report = Report::default();
    // `run` is transparent: the client's own handshake reaches the upstream, so even the
    // server section must be identical.
    report.same_or_failed(&label("run", Protocol::Auto), &d, &r[1], Allow::default());
    report.same_or_failed(&label("run", Protocol::Legacy), &d, &r[2], Allow::default());
    // `run` relays the client's own `server/discover` to the upstream, so a client that only
    // speaks 2026-07-28 fails against a 2025-only server exactly as it does directly (and an
    // `auto` client falls back to `initialize`, keeping sampling, elicitation and roots).
    report.fails_as_directly(
        &label("run to a 2025-only server", Protocol::Modern),
        &r[4],
        &r[3],
    );
    report.finish();
}

/// `run --url` to server-everything over Streamable HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_client_run_everything_http() {
    let scratch = Scratch::new();
    let server = everything_http().await.unwrap();
    let r = transcripts(
        Args::Everything,
        vec![
            (Target::Http(server.url.clone()), Protocol::Auto, None),
            (run_url(&scratch, &server.url), Protocol::Auto, None),
            (run_url(&scratch, &server.url), Protocol::Legacy, None),
            (run_url(&scratch, &server.url), Protocol::Modern, None),
            (Target::Http(server.url.clone()), Protocol::Modern, None),
        ],
    )
    .await;
    let d = direct(&r[0], "server-everything HTTP");
    let mut report = Report::default();
    report.same_or_failed(
        &label("run --url", Protocol::Auto),
        &d,
        &r[1],
        Allow::default(),
    );
    report.same_or_failed(
        &label("run --url", Protocol::Legacy),
        &d,
        &r[2],
        Allow::default(),
    );
    // As for stdio: the client's own `server/discover` reaches the upstream.
    report.fails_as_directly(
        &label("run --url to a 2025-only server", Protocol::Modern),
        &r[4],
        &r[3],
    );
    report.finish();
}

/// `run` around the Python SDK server over stdio: each protocol mode against the dual-era
/// server, and a modern client against `--legacy-only` (era bridging).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_client_run_python_stdio() {
    let scratch = Scratch::new();
    let dual = python_stdio(&[]);
    let legacy_only = python_stdio(&["--legacy-only"]);
    let mut runs = vec![];
    for p in Protocol::ALL {
        runs.push((Target::Stdio(dual.clone()), p, None));
    }
    runs.push((Target::Stdio(legacy_only.clone()), Protocol::Auto, None));
    for p in Protocol::ALL {
        runs.push((run_stdio(&scratch, &dual), p, None));
    }
    runs.push((run_stdio(&scratch, &legacy_only), Protocol::Modern, None));
    runs.push((Target::Stdio(legacy_only.clone()), Protocol::Modern, None));
    let r = transcripts(Args::Python, runs).await;
    let mut report = Report::default();
    for (i, p) in Protocol::ALL.into_iter().enumerate() {
        let d = direct(&r[i], &format!("server.py stdio, {p:?}"));
        report.same_or_failed(&label("run", p), &d, &r[4 + i], Allow::default());
    }
    // The client's own `server/discover` reaches the upstream (see the first test).
    report.fails_as_directly(
        &label("run to server.py --legacy-only", Protocol::Modern),
        &r[8],
        &r[7],
    );
    report.finish();
}

/// `run --url` to the Python SDK server over Streamable HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_client_run_python_http() {
    let scratch = Scratch::new();
    let dual = python_http(&[]).await.unwrap();
    let legacy_only = python_http(&["--legacy-only"]).await.unwrap();
    let mut runs = vec![];
    for p in Protocol::ALL {
        runs.push((Target::Http(dual.url.clone()), p, None));
    }
    runs.push((Target::Http(legacy_only.url.clone()), Protocol::Auto, None));
    for p in Protocol::ALL {
        runs.push((run_url(&scratch, &dual.url), p, None));
    }
    runs.push((run_url(&scratch, &legacy_only.url), Protocol::Modern, None));
    runs.push((
        Target::Http(legacy_only.url.clone()),
        Protocol::Modern,
        None,
    ));
    let r = transcripts(Args::Python, runs).await;
    let mut report = Report::default();
    for (i, p) in Protocol::ALL.into_iter().enumerate() {
        let d = direct(&r[i], &format!("server.py HTTP, {p:?}"));
        report.same_or_failed(&label("run --url", p), &d, &r[4 + i], Allow::default());
    }
    // The client's own `server/discover` reaches the upstream (see the first test).
    report.fails_as_directly(
        &label("run --url to server.py --legacy-only", Protocol::Modern),
        &r[8],
        &r[7],
    );
    report.finish();
}

/// What is allowed to differ through `serve` for a client of `protocol`, compared with the
/// direct transcript of the same mode (or, for a modern client of a 2025-only server, with
/// the direct 2025 transcript).
fn serve_allow(upstream: &'static str, protocol: Protocol, legacy_only: bool) -> Allow<'static> {
    Allow {
        serve: Some(upstream),
        // `serve` is itself a dual-era server: an `auto` client picks 2026-07-28 from it
        // whatever its upstreams speak, so with a 2025-only upstream the negotiated version
        // differs from the direct one. Only the version and era: results must not.
        bridged: legacy_only && protocol != Protocol::Legacy,
        // Server-to-client requests of a 2025-only upstream reach a 2026-07-28 client as
        // `input_required` rounds (crates/warden-session/src/mrtr.rs): nothing is skipped.
        skip_tools: &[],
    }
}

/// `serve` with server-everything over stdio as its only upstream. A stdio upstream is one
/// process shared by every session (docs/architecture.md), and server-everything keeps
/// per-connection state (`gzip-file-as-resource` adds a resource to its list), so each
/// client gets a fresh gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_client_serve_everything_stdio() {
    let upstream = stdio_upstream("everything", &everything_stdio(), "");
    let mut gateways = vec![];
    for _ in Protocol::ALL {
        gateways.push(Serve::start(&upstream).await.unwrap());
    }
    let mut runs = vec![(Target::Stdio(everything_stdio()), Protocol::Auto, None)];
    for (g, p) in gateways.iter().zip(Protocol::ALL) {
        runs.push((Target::Http(g.url.clone()), p, Some("everything__".into())));
    }
    let r = transcripts(Args::Everything, runs).await;
    let d = direct(&r[0], "server-everything stdio");
    let mut report = Report::default();
    for (i, p) in Protocol::ALL.into_iter().enumerate() {
        report.same_or_failed(
            &label("serve", p),
            &d,
            &r[1 + i],
            serve_allow("everything", p, true),
        );
    }
    report.finish();
}

/// `serve` with server-everything over Streamable HTTP as its only upstream (fresh gateway
/// per client: modern clients share the gateway's own upstream session, see above).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_client_serve_everything_http() {
    let server = everything_http().await.unwrap();
    let upstream = http_upstream("everything", &server.url, "");
    let mut gateways = vec![];
    for _ in Protocol::ALL {
        gateways.push(Serve::start(&upstream).await.unwrap());
    }
    let mut runs = vec![(Target::Http(server.url.clone()), Protocol::Auto, None)];
    for (g, p) in gateways.iter().zip(Protocol::ALL) {
        runs.push((Target::Http(g.url.clone()), p, Some("everything__".into())));
    }
    let r = transcripts(Args::Everything, runs).await;
    let d = direct(&r[0], "server-everything HTTP");
    let mut report = Report::default();
    for (i, p) in Protocol::ALL.into_iter().enumerate() {
        report.same_or_failed(
            &label("serve", p),
            &d,
            &r[1 + i],
            serve_allow("everything", p, true),
        );
    }
    report.finish();
}

/// `serve` with the Python SDK server over stdio: one gateway for the three modes, one after
/// the other (a log notification of a shared stdio child goes to the one session with a
/// request in flight, docs/architecture.md, so the clients must not overlap); and a modern
/// client to `--legacy-only` (era bridging).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_client_serve_python_stdio() {
    let gateway = Serve::start(&stdio_upstream("py", &python_stdio(&[]), ""))
        .await
        .unwrap();
    let legacy_gateway = Serve::start(&stdio_upstream("py", &python_stdio(&["--legacy-only"]), ""))
        .await
        .unwrap();
    let mut runs = vec![];
    for p in Protocol::ALL {
        runs.push((Target::Stdio(python_stdio(&[])), p, None));
    }
    runs.push((
        Target::Stdio(python_stdio(&["--legacy-only"])),
        Protocol::Auto,
        None,
    ));
    runs.push((
        Target::Http(legacy_gateway.url.clone()),
        Protocol::Modern,
        Some("py__".into()),
    ));
    let r = transcripts(Args::Python, runs).await;
    let mut report = Report::default();
    for (i, p) in Protocol::ALL.into_iter().enumerate() {
        let d = direct(&r[i], &format!("server.py stdio, {p:?}"));
        let t = transcript(
            &Target::Http(gateway.url.clone()),
            Args::Python,
            p,
            Some("py__"),
        )
        .await;
        report.same_or_failed(&label("serve", p), &d, &t, serve_allow("py", p, false));
    }
    let d = direct(&r[3], "server.py stdio --legacy-only");
    report.same_or_failed(
        &label(
            "serve to server.py --legacy-only (era bridging)",
            Protocol::Modern,
        ),
        &d,
        &r[4],
        serve_allow("py", Protocol::Modern, true),
    );
    report.finish();
}

/// `serve` with the Python SDK server over Streamable HTTP (legacy sessions get their own
/// upstream session, modern requests are stateless: the clients may overlap).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_client_serve_python_http() {
    let dual = python_http(&[]).await.unwrap();
    let legacy_only = python_http(&["--legacy-only"]).await.unwrap();
    let gateway = Serve::start(&http_upstream("py", &dual.url, ""))
        .await
        .unwrap();
    let legacy_gateway = Serve::start(&http_upstream("py", &legacy_only.url, ""))
        .await
        .unwrap();
    let mut runs = vec![];
    for p in Protocol::ALL {
        runs.push((Target::Http(dual.url.clone()), p, None));
    }
    runs.push((Target::Http(legacy_only.url.clone()), Protocol::Auto, None));
    for p in Protocol::ALL {
        runs.push((Target::Http(gateway.url.clone()), p, Some("py__".into())));
    }
    runs.push((
        Target::Http(legacy_gateway.url.clone()),
        Protocol::Modern,
        Some("py__".into()),
    ));
    let r = transcripts(Args::Python, runs).await;
    let mut report = Report::default();
    for (i, p) in Protocol::ALL.into_iter().enumerate() {
        let d = direct(&r[i], &format!("server.py HTTP, {p:?}"));
        report.same_or_failed(
            &label("serve", p),
            &d,
            &r[4 + i],
            serve_allow("py", p, false),
        );
    }
    let d = direct(&r[3], "server.py HTTP --legacy-only");
    report.same_or_failed(
        &label(
            "serve to server.py --legacy-only (era bridging)",
            Protocol::Modern,
        ),
        &d,
        &r[7],
        serve_allow("py", Protocol::Modern, true),
    );
    report.finish();
}
