//! `mcp-warden check [--config F]`: one row per control ID of the checklist, `enforced`,
//! `partial`, `off` or `n/a`, each with its reason.
//!
//! Statuses are derived from what the configuration actually builds: the guard pipeline
//! (each installed guard names the controls it enforces), the sandbox as probed on this
//! machine, the HTTP face, the audit log and the upstreams. Without `--config` the posture is
//! that of zero-config `mcp-warden run`.
//!
//! In `serve` shape, when the `cross_server` guard is installed, the rows of the controls it
//! names also carry the cross-server analysis of the tool definitions in the pin store
//! (`check/cross_server.rs`): no upstream is contacted.

mod command_pins;
mod controls;
mod cross_server;

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, ValueEnum};
use serde::Serialize;
use warden_config::{Config, ContentMode, RestartPolicy, UnhealthyAction, UpstreamTransport};
use warden_sandbox::Control;

use crate::cli::Common;

/// Output format of `check`.
#[derive(Debug, Clone, Copy, Default, ValueEnum, PartialEq, Eq)]
pub(crate) enum CheckFormat {
    /// A table for people.
    #[default]
    Table,
    /// `[{"id","status","reason"}]`; the MULTI-2 and PROMPT-7 rows of `serve` also carry
    /// `cross_server` (see docs/scanner.md).
    Json,
}

/// `mcp-warden check`.
#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    #[command(flatten)]
    pub(crate) common: Common,
    /// Report the posture of `serve` with this configuration (default: `run` when no
    /// configuration is given, `serve` when one is).
    #[arg(long, value_enum)]
    pub(crate) mode: Option<CheckMode>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = CheckFormat::Table)]
    pub(crate) format: CheckFormat,
}

/// Which command's posture to report.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub(crate) enum CheckMode {
    /// `mcp-warden run` (stdio, one upstream).
    Run,
    /// `mcp-warden serve` (Streamable HTTP, several upstreams).
    Serve,
}

/// A control's status. Ordered so that the strongest claim wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub(crate) enum Status {
    /// Outside a gateway's reach.
    #[serde(rename = "n/a")]
    NotApplicable,
    /// Available but not enforced by this configuration.
    #[serde(rename = "off")]
    Off,
    /// Enforced in part (the reason says what is missing).
    #[serde(rename = "partial")]
    Partial,
    /// Enforced.
    #[serde(rename = "enforced")]
    Enforced,
}

/// One row of the report.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    pub(crate) id: &'static str,
    pub(crate) status: Status,
    pub(crate) reason: String,
    /// The cross-server analysis of the pinned definitions, on the rows of the controls the
    /// `cross_server` guard names (`serve` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) cross_server: Option<Arc<cross_server::CrossServer>>,
}

#[derive(Default)]
struct Claims {
    by_id: HashMap<&'static str, Vec<(Status, String)>>,
    /// Reasons shown first whatever the status, each with the status it caps the row at.
    notes: HashMap<&'static str, Vec<(Status, String)>>,
}

impl Claims {
    fn add(&mut self, ids: &[&'static str], status: Status, reason: impl Into<String>) {
        let reason = reason.into();
        for id in ids {
            self.by_id
                .entry(id)
                .or_default()
                .push((status, reason.clone()));
        }
    }

    /// A reason every row of `ids` shows first, capping its status at `cap` (a control
    /// enforced by one guard is only `partial` while findings stand that another guard
    /// only reports).
    fn note(&mut self, ids: &[&'static str], cap: Status, reason: impl Into<String>) {
        let reason = reason.into();
        for id in ids {
            self.notes
                .entry(id)
                .or_default()
                .push((cap, reason.clone()));
        }
    }
}

/// What the report is computed from.
pub(crate) struct Built<'a> {
    pub(crate) config: &'a Config,
    pub(crate) serve: bool,
    pub(crate) pipeline: &'a warden_guard::Pipeline,
    pub(crate) sandbox: &'a warden_sandbox::Availability,
    /// The cross-server analysis of the pin store, when the `cross_server` guard is installed.
    pub(crate) cross: Option<Arc<cross_server::CrossServer>>,
}

fn sandbox_claims(b: &Built<'_>, c: &mut Claims) {
    let cfg = &b.config.sandbox;
    let stdio = !b.serve
        || b.config
            .upstreams
            .iter()
            .any(|u| u.enabled && matches!(u.transport, UpstreamTransport::Stdio(_)));
    let ids = &[
        "RUN-1", "RUN-2", "ISO-1", "AUTH-4", "TOOL-2", "PLAT-1", "TOOL-4", "TOOL-6",
    ];
    if !stdio {
        c.add(
            ids,
            Status::NotApplicable,
            "no stdio upstream: remote servers run elsewhere",
        );
        return;
    }
    let disabled: Vec<&str> = b
        .config
        .upstreams
        .iter()
        .filter(|u| u.enabled)
        .filter(|u| match &u.transport {
            UpstreamTransport::Stdio(s) => !b.config.sandbox_of(s).enabled,
            UpstreamTransport::Http(_) => false,
        })
        .map(|u| u.name.as_str())
        .collect();
    let stdio_count = b
        .config
        .upstreams
        .iter()
        .filter(|u| u.enabled && matches!(u.transport, UpstreamTransport::Stdio(_)))
        .count();
    if (!b.serve && !cfg.enabled) || (b.serve && disabled.len() == stdio_count) {
        c.add(
            ids,
            Status::Off,
            "the sandbox is disabled ([sandbox] enabled = false)",
        );
        c.add(
            &["ISO-2", "RUN-5", "RUN-4"],
            Status::Off,
            "the sandbox is disabled",
        );
        return;
    }
    let core = [
        Control::UserNamespace,
        Control::MountNamespace,
        Control::Landlock,
        Control::Seccomp,
        Control::NoNewPrivileges,
        Control::Capabilities,
    ];
    let missing: Vec<String> = core
        .iter()
        .filter(|k| !b.sandbox.is_available(**k))
        .map(|k| format!("{k:?}"))
        .collect();
    let (status, reason) = if !missing.is_empty() {
        (
            Status::Partial,
            format!(
                "sandbox on, but unavailable on this machine: {}",
                missing.join(", ")
            ),
        )
    } else if !disabled.is_empty() {
        (
            Status::Partial,
            format!("sandbox on, except for upstream(s) {}", disabled.join(", ")),
        )
    } else {
        (Status::Enforced, "every stdio upstream runs in the sandbox: user and mount namespaces, Landlock, seccomp, no new privileges, no capabilities".to_owned())
    };
    c.add(ids, status, reason);
    let fs = b.sandbox.is_available(Control::Landlock);
    // `network = { allow = [..] }` also needs the egress forwarder (probed).
    let net = b.sandbox.is_available(Control::NetworkNamespace)
        && (cfg.network != warden_config::SandboxNetwork::AllowList
            || b.sandbox.is_available(Control::NetworkAllowList));
    c.add(
        &["ISO-2"],
        match (fs, net) {
            (true, true) => Status::Enforced,
            (false, false) => Status::Off,
            _ => Status::Partial,
        },
        format!(
            "per-upstream filesystem rules {}, network {}",
            if fs { "on" } else { "unavailable" },
            if net {
                format!("{:?}", cfg.network).to_lowercase()
            } else {
                "unrestricted (no network namespace)".into()
            }
        ),
    );
    let limits = b.sandbox.is_available(Control::ResourceLimits);
    c.add(
        &["RUN-5"],
        if limits {
            Status::Enforced
        } else {
            Status::Partial
        },
        format!(
            "message size cap {} bytes{}",
            b.config.limits.max_message_bytes,
            if limits {
                "; rlimits on every stdio upstream"
            } else {
                "; rlimits unavailable"
            }
        ),
    );
    c.add(&["RUN-4"], Status::Enforced, "upstreams get an environment built from an allow-list, never the gateway's; values are never logged");
    c.add(
        &["LIFE-2"],
        Status::Enforced,
        if b.sandbox.is_available(Control::PidNamespace) {
            "process group, parent-death signal and PID namespace: no upstream process outlives the gateway"
        } else {
            "process group and parent-death signal (no PID namespace on this machine)"
        },
    );
}

fn face_claims(b: &Built<'_>, c: &mut Claims) {
    let cfg = b.config;
    if !b.serve {
        c.add(
            &[
                "CAUTH-1", "CAUTH-2", "CAUTH-3", "DATA-3", "AUTH-5", "AUTH-6", "TOKEN-1", "TLS-3",
                "TLS-4",
            ],
            Status::NotApplicable,
            "run speaks stdio to one local client: no network face to authenticate or encrypt",
        );
        c.add(
            &[
                "MGMT-3", "MGMT-5", "MGMT-7", "MGMT-9", "MGMT-12", "TOOL-9", "MULTI-1",
            ],
            Status::NotApplicable,
            "run fronts a single server: no names from several servers to collide",
        );
        let l = &cfg.limits;
        c.add(
            &["API-2"],
            Status::Partial,
            format!(
                "run caps its client at {} requests in flight and {} queued ({} bytes); one more is refused at once with -31004; no rate limit unless [rate_limit]",
                l.stdio_max_in_flight, l.stdio_max_queued, l.stdio_max_queued_bytes
            ),
        );
        return;
    }
    let loopback = cfg.listen.ip().is_loopback();
    let oauth = cfg.auth.oauth.is_some();
    let keys = cfg.auth.api_keys.is_some();
    match (oauth || keys, loopback) {
        (true, _) => c.add(
            &["CAUTH-1"],
            Status::Enforced,
            format!(
                "every request authenticated ({})",
                [
                    oauth.then_some("OAuth bearer tokens"),
                    keys.then_some("API keys")
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(", ")
            ),
        ),
        (false, true) => c.add(
            &["CAUTH-1"],
            Status::Partial,
            "no authentication, but the face listens on loopback only",
        ),
        (false, false) => c.add(
            &["CAUTH-1"],
            Status::Off,
            "no authentication on a non-loopback address (explicit opt-out)",
        ),
    }
    if oauth {
        c.add(&["CAUTH-2", "AUTH-6", "TOKEN-1"], Status::Enforced, "OAuth 2.1 resource server: JWT validation against JWKS, audience bound to this gateway, RFC 9728 metadata, scope checks");
    } else {
        c.add(
            &["CAUTH-2", "AUTH-6", "TOKEN-1"],
            Status::Off,
            "no [auth] oauth configured",
        );
    }
    if keys {
        c.add(
            &["AUTH-5"],
            Status::Enforced,
            "API keys stored as keyed hashes, with expiry, several per principal, revocation",
        );
    } else {
        c.add(&["AUTH-5"], Status::Off, "API keys disabled");
    }
    let cors = match cfg.cors_origins.patterns() {
        [] => "no page may read answers cross-origin".to_owned(),
        origins => format!(
            "pages of {} may read answers cross-origin (cors_origins)",
            origins
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    if cfg.cors_origins.patterns().is_empty() || oauth || keys {
        c.add(
            &["CAUTH-3"],
            Status::Enforced,
            format!("Host and Origin checked on every request (DNS-rebinding defence); {cors}"),
        );
    } else {
        c.add(
            &["CAUTH-3"],
            Status::Partial,
            format!(
                "Host and Origin checked on every request; {cors} without authentication \
                 (this machine's pages only)"
            ),
        );
    }
    c.add(
        &["DATA-3"],
        Status::Enforced,
        "sessions are bound to the principal that created them; ids are 128-bit CSPRNG values",
    );
    match (&cfg.http.tls, loopback) {
        (Some(_), _) => c.add(
            &["TLS-3", "TLS-4"],
            Status::Enforced,
            "TLS 1.2+ (rustls, no weak suites) on the HTTP face",
        ),
        (None, true) => c.add(
            &["TLS-3", "TLS-4"],
            Status::Partial,
            "plain HTTP, on loopback only",
        ),
        (None, false) => c.add(
            &["TLS-3", "TLS-4"],
            Status::Off,
            "plain HTTP on a non-loopback address",
        ),
    }
    let all_namespaced = cfg
        .upstreams
        .iter()
        .filter(|u| u.enabled)
        .all(|u| u.namespace);
    c.add(
        &["MGMT-5", "TOOL-9"],
        if all_namespaced {
            Status::Enforced
        } else {
            Status::Partial
        },
        if all_namespaced {
            "tools exposed as <server>__<tool>"
        } else {
            "some upstreams expose their tools without a namespace"
        },
    );
    c.add(
        &["MGMT-3", "MGMT-7", "MGMT-9", "MGMT-12"],
        Status::Enforced,
        "a name two upstreams expose is withheld and refused, never \"first wins\"",
    );
    c.add(&["MULTI-1"], Status::Partial, "one endpoint aggregates the configured servers; `mcp-warden scan` covers the machine's clients");
}

fn upstream_claims(b: &Built<'_>, c: &mut Claims) {
    let http: Vec<&warden_config::HttpUpstreamConfig> = b
        .config
        .upstreams
        .iter()
        .filter(|u| u.enabled)
        .filter_map(|u| match &u.transport {
            UpstreamTransport::Http(h) => Some(h),
            UpstreamTransport::Stdio(_) => None,
        })
        .collect();
    if http.is_empty() {
        c.add(
            &["TLS-1", "TLS-2", "AUTH-3"],
            Status::NotApplicable,
            "no remote upstream",
        );
    } else if http.iter().all(|h| h.url.scheme() == "https") {
        c.add(&["TLS-1", "TLS-2", "AUTH-3"], Status::Enforced, "remote upstreams over TLS (rustls, certificates validated); the client's token is never passed through");
    } else {
        c.add(
            &["TLS-1", "TLS-2", "AUTH-3"],
            Status::Partial,
            "some remote upstreams use plain HTTP",
        );
    }
    c.add(&["DATA-2"], if http.iter().all(|h| h.url.scheme() == "https") { Status::Partial } else { Status::Off }, "network hops to upstreams use TLS where configured; stored pins and keys are not encrypted at rest");
    // Packages run by stdio upstreams: pinned to a version, or not.
    let unpinned: Vec<&str> = b
        .config
        .upstreams
        .iter()
        .filter(|u| u.enabled)
        .filter(|u| match &u.transport {
            UpstreamTransport::Stdio(s) => {
                let entry = warden_scan::ServerEntry {
                    name: u.name.clone(),
                    location: warden_scan::ConfigLocation {
                        client: warden_scan::Client::ClaudeDesktop,
                        scope: warden_scan::Scope::User,
                        format: warden_scan::Format::McpServers,
                        path: std::path::PathBuf::new(),
                    },
                    field: String::new(),
                    line: 0,
                    field_lines: Default::default(),
                    transport: Some(warden_scan::Transport::Stdio {
                        command: s.command.clone(),
                        args: s.args.clone(),
                        env: vec![],
                    }),
                    disabled: false,
                };
                warden_scan::check_server(&entry)
                    .iter()
                    .any(|f| f.rule == "config.unpinned-package")
            }
            UpstreamTransport::Http(_) => false,
        })
        .map(|u| u.name.as_str())
        .collect();
    // Command pins (resolved path, digest, package versions) and unpinned packages.
    command_pins::claims(b, &unpinned, c);
}

/// The anomaly rules of `[alerts]` (each names its controls: MON-1, MON-3, LOG-2, LOG-3,
/// PROMPT-1, AI-2) and MON-4 from `[metrics]` and `[tracing]`.
fn observability_claims(b: &Built<'_>, c: &mut Claims) {
    use warden_alerts::rule;
    let alerts = &b.config.alerts;
    // `[alerts]` without the audit log is refused when the configuration loads.
    if alerts.enabled {
        let thresholds = [
            (rule::AUTH_FAILURES, &alerts.auth_failures),
            (rule::DENIALS, &alerts.denials),
            (rule::PIN_CHANGED, &alerts.pin_changed),
            (rule::POISONING, &alerts.poisoning),
            (rule::UPSTREAM_CRASH_LOOP, &alerts.upstream_crash_loop),
        ];
        let mut on: Vec<(&str, String)> = thresholds
            .iter()
            .filter(|(_, r)| r.enabled)
            .map(|(name, r)| {
                (
                    *name,
                    format!("`{name}` ({} in {})", r.threshold, human(r.window)),
                )
            })
            .collect();
        let sequence = &alerts.untrusted_then_sensitive;
        if sequence.enabled {
            let name = rule::UNTRUSTED_THEN_SENSITIVE;
            on.push((
                name,
                format!("`{name}` (within {})", human(sequence.window)),
            ));
        }
        let mut sinks = Vec::new();
        if alerts.log.enabled {
            sinks.push("the log");
        }
        if alerts.webhook.is_some() {
            sinks.push("a signed webhook");
        }
        let to = if sinks.is_empty() {
            "no sink".to_owned()
        } else {
            sinks.join(" and ")
        };
        // Each control is claimed by the rules that name it.
        let mut by_control: Vec<(&'static str, Vec<&str>)> = Vec::new();
        for (name, text) in &on {
            for id in rule::controls(name) {
                match by_control.iter_mut().find(|(c, _)| c == id) {
                    Some((_, texts)) => texts.push(text),
                    None => by_control.push((id, vec![text])),
                }
            }
        }
        let status = if sinks.is_empty() {
            Status::Partial
        } else {
            Status::Enforced
        };
        for (id, texts) in by_control {
            c.add(
                &[id],
                status,
                format!(
                    "anomaly rules over the audit stream: {}; alerts to {to}",
                    texts.join(", ")
                ),
            );
        }
    }
    let metrics = b
        .config
        .metrics
        .listen
        .map(|a| format!("Prometheus metrics on {a}"));
    let traces = b
        .config
        .tracing
        .as_ref()
        .map(|t| format!("OpenTelemetry spans to {} (OTLP/HTTP, JSON)", t.endpoint));
    let audit = b
        .config
        .audit
        .enabled
        .then_some("the audit log is JSON Lines".to_owned());
    let parts: Vec<String> = [metrics.clone(), traces.clone(), audit]
        .into_iter()
        .flatten()
        .collect();
    if metrics.is_some() || traces.is_some() {
        let status = if metrics.is_some() && traces.is_some() {
            Status::Enforced
        } else {
            Status::Partial
        };
        c.add(
            &["MON-4"],
            status,
            format!("{}; the diagnostic log (stderr) is text", parts.join("; ")),
        );
    }
}

/// LIFE-1 (restart with backoff) and LIFE-3 (health checks), from each upstream's
/// `[upstreams.<name>.lifecycle]` in `serve`. `run` restarts and checks nothing: the client's
/// session lives in its one upstream process (docs/lifecycle.md).
fn lifecycle_claims(b: &Built<'_>, c: &mut Claims) {
    if !b.serve {
        c.add(
            &["LIFE-1"],
            Status::Partial,
            "run starts, initializes and stops its upstream but does not restart it: when the upstream exits, run exits (status 2) so that its host restarts the server, since a new process would not hold the client's session",
        );
        c.add(
            &["LIFE-3"],
            Status::Off,
            format!(
                "run sends no health checks: a call to a hung upstream fails after the request timeout ({})",
                human(b.config.http.request_timeout)
            ),
        );
        activity_claim(
            b,
            c,
            format!(
                "a `tools/call` ends after {} in all, progress included",
                human(warden_config::DEFAULT_MAX_CALL_DURATION)
            ),
            &[("the upstream".to_owned(), b.config.sandbox.clone())],
        );
        return;
    }
    let upstreams: Vec<&warden_config::UpstreamConfig> =
        b.config.upstreams.iter().filter(|u| u.enabled).collect();
    if upstreams.is_empty() {
        return;
    }
    // LIFE-1: restarted with backoff, or marked down at once (`restart = "never"`).
    let (restarted, never): (Vec<_>, Vec<_>) = upstreams
        .iter()
        .copied()
        .partition(|u| u.lifecycle.restart == RestartPolicy::OnFailure);
    let restarts = per_upstream(&restarted, |l| {
        format!(
            "restarted with backoff from {} to {} (jitter {} %), marked down after {} restarts within {}{}",
            human(l.backoff_initial),
            human(l.backoff_max),
            l.backoff_jitter_permille / 10,
            l.max_restarts,
            human(l.restart_window),
            match l.down_retry {
                Some(d) => format!(", tried again after {}", human(d)),
                None => ", until the gateway restarts".into(),
            }
        )
    });
    match (restarted.is_empty(), never.is_empty()) {
        (false, true) => c.add(&["LIFE-1"], Status::Enforced, format!("the gateway starts, initializes, supervises and stops each upstream: {restarts}")),
        (false, false) => c.add(&["LIFE-1"], Status::Partial, format!("{restarts}; not restarted (restart = \"never\", marked down when it dies): {}", names(&never))),
        (true, _) => c.add(&["LIFE-1"], Status::Partial, "the gateway starts, initializes and stops each upstream but restarts none (restart = \"never\"): an upstream that dies is marked down"),
    }
    // LIFE-3: periodic `ping` / `server/discover`.
    let (checked, unchecked): (Vec<_>, Vec<_>) = upstreams
        .iter()
        .copied()
        .partition(|u| u.lifecycle.health_interval.is_some());
    let checks = per_upstream(&checked, |l| {
        format!(
            "`ping` (or `server/discover`) every {}, answered within {}; after {} failures in a row the upstream is {}",
            human(l.health_interval.unwrap_or_default()),
            human(l.health_timeout),
            l.health_failures,
            match l.on_unhealthy {
                UnhealthyAction::Restart => "restarted",
                UnhealthyAction::MarkDown => "marked down until a check is answered",
            }
        )
    });
    match (checked.is_empty(), unchecked.is_empty()) {
        (false, true) => c.add(
            &["LIFE-3"],
            Status::Enforced,
            format!("health checks: {checks}"),
        ),
        (false, false) => c.add(
            &["LIFE-3"],
            Status::Partial,
            format!(
                "health checks: {checks}; none (health_interval = \"0s\"): {}",
                names(&unchecked)
            ),
        ),
        (true, _) => c.add(
            &["LIFE-3"],
            Status::Off,
            "health checks are off for every upstream (health_interval = \"0s\")",
        ),
    }
    // LIFE-5: timeouts, the maximum call duration, the sandbox's limits on processes.
    let stdio: Vec<(String, warden_config::SandboxConfig)> = upstreams
        .iter()
        .filter_map(|u| match &u.transport {
            UpstreamTransport::Stdio(s) => Some((format!("`{}`", u.name), b.config.sandbox_of(s))),
            UpstreamTransport::Http(_) => None,
        })
        .collect();
    let durations = per_upstream(&upstreams, |l| {
        format!(
            "a `tools/call` ends after {} in all, progress included",
            human(l.max_call_duration)
        )
    });
    activity_claim(b, c, durations, &stdio);
}

/// LIFE-5: enforced when every stdio upstream in `stdio` (its name and sandbox) runs with
/// limits on CPU time, memory and processes that this machine can apply.
fn activity_claim(
    b: &Built<'_>,
    c: &mut Claims,
    durations: String,
    stdio: &[(String, warden_config::SandboxConfig)],
) {
    let head = format!(
        "per-request timeout {}; {durations}",
        human(b.config.http.request_timeout)
    );
    if stdio.is_empty() {
        let why = "remote upstreams only: none of their processes runs here";
        c.add(&["LIFE-5"], Status::Enforced, format!("{head}; {why}"));
        return;
    }
    let mut gaps: Vec<String> = Vec::new();
    for (name, sandbox) in stdio {
        if !sandbox.enabled {
            gaps.push(format!("{name}: sandbox disabled"));
            continue;
        }
        let unlimited: Vec<&str> = [
            (sandbox.cpu_time.is_none(), "CPU time"),
            (sandbox.memory.is_none(), "memory"),
            (sandbox.processes.is_none(), "processes"),
        ]
        .into_iter()
        .filter_map(|(off, what)| off.then_some(what))
        .collect();
        if !unlimited.is_empty() {
            gaps.push(format!("{name}: {} unlimited", unlimited.join(", ")));
        }
    }
    let missing: Vec<&str> = [
        (Control::ResourceLimits, "CPU time"),
        (Control::MemoryLimit, "memory"),
        (Control::ProcessLimit, "processes"),
    ]
    .into_iter()
    .filter(|(k, _)| !b.sandbox.is_available(*k))
    .map(|(_, what)| what)
    .collect();
    if !missing.is_empty() {
        gaps.push(format!(
            "limits unavailable on this machine: {}",
            missing.join(", ")
        ));
    }
    if gaps.is_empty() {
        let limits = "CPU time, memory and processes limited in every stdio upstream's sandbox";
        c.add(&["LIFE-5"], Status::Enforced, format!("{head}; {limits}"));
    } else {
        let gaps = gaps.join("; ");
        c.add(&["LIFE-5"], Status::Partial, format!("{head}; {gaps}"));
    }
}

/// `describe` of the upstreams' lifecycles: once for all when they agree, else per upstream.
fn per_upstream(
    upstreams: &[&warden_config::UpstreamConfig],
    describe: impl Fn(&warden_config::LifecycleConfig) -> String,
) -> String {
    let texts: Vec<String> = upstreams.iter().map(|u| describe(&u.lifecycle)).collect();
    if texts.windows(2).all(|w| w[0] == w[1]) {
        let who = if upstreams.len() == 1 {
            format!("`{}`", upstreams[0].name)
        } else {
            "every upstream".into()
        };
        texts
            .first()
            .map(|t| format!("{who}: {t}"))
            .unwrap_or_default()
    } else {
        upstreams
            .iter()
            .zip(texts)
            .map(|(u, t)| format!("`{}`: {t}", u.name))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// `None` when the content setting `pick` is on for every upstream; else where it is off:
/// empty for `run` and when it is off everywhere, ` to `a`, `b`` otherwise.
fn content_off(
    b: &Built<'_>,
    pick: impl Fn(&warden_config::ContentConfig) -> warden_config::ContentMode,
) -> Option<String> {
    let off = |c: &warden_config::ContentConfig| pick(c) == warden_config::ContentMode::Off;
    if !b.serve {
        return off(&b.config.content).then(String::new);
    }
    let upstreams: Vec<&warden_config::UpstreamConfig> =
        b.config.upstreams.iter().filter(|u| u.enabled).collect();
    let without: Vec<&warden_config::UpstreamConfig> = upstreams
        .iter()
        .copied()
        .filter(|u| off(&b.config.content_of(u)))
        .collect();
    if without.is_empty() {
        None
    } else if without.len() == upstreams.len() {
        Some(String::new())
    } else {
        Some(format!(" to {}", names(&without)))
    }
}

fn names(upstreams: &[&warden_config::UpstreamConfig]) -> String {
    upstreams
        .iter()
        .map(|u| format!("`{}`", u.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A duration as configured (`30s`, `5m`, `1h`).
fn human(d: std::time::Duration) -> String {
    humantime::format_duration(d).to_string()
}

fn always_claims(b: &Built<'_>, c: &mut Claims) {
    // What the content guards do not see of the client's side of the traffic.
    if let Some(who) = content_off(b, |m| m.secrets_in_arguments) {
        c.note(
            &["DATA-5"],
            Status::Partial,
            format!("the credentials in the arguments a client sends{who} are not scanned (secrets_in_arguments = \"off\")"),
        );
    }
    if let Some(who) = content_off(b, |m| m.secrets_in_answers) {
        c.note(
            &["SAMP-2"],
            Status::Partial,
            format!("a client's answers to sampling and elicitation requests{who} reach the upstream unscanned (secrets_in_answers = \"off\")"),
        );
    }
    let l = &b.config.limits;
    c.add(&["API-1", "TOOL-3", "TOOL-5"], Status::Partial, format!("strict JSON-RPC framing: {} bytes per message, depth {}, duplicate keys and invalid UTF-8 refused", l.max_message_bytes, l.max_depth));
    c.add(
        &["TOOL-8"],
        Status::Enforced,
        "refusals carry a stable message; details go to the audit record only",
    );
    c.add(
        &["PROMPT-9"],
        Status::NotApplicable,
        "the host manages its conversation history",
    );
    if b.config.audit.enabled {
        c.add(&["MON-2", "MON-5", "MON-6", "AI-1", "LOG-1", "LOG-2", "LIFE-4", "UX-4", "AUTO-4"], Status::Enforced, "audit log on: keyed hash chain with signed checkpoints; `mcp-warden audit verify|search`");
        c.add(&["INT-2"], Status::Partial, "audit checkpoints are Ed25519 signatures that `mcp-warden audit verify --public-key` checks anywhere, with the public key alone; pins have no separate verifier");
        let full = format!("{:?}", b.config.audit.capture).to_lowercase();
        c.add(
            &["DATA-1"],
            if full.contains("full") {
                Status::Partial
            } else {
                Status::Enforced
            },
            if full.contains("full") {
                "full capture of arguments and results is on (redacted)"
            } else {
                "arguments and results are recorded as size and hash only"
            },
        );
    } else {
        c.add(
            &[
                "MON-2", "MON-5", "MON-6", "AI-1", "LOG-1", "LOG-2", "LIFE-4", "UX-4", "AUTO-4",
                "DATA-1",
            ],
            Status::Off,
            "the audit log is disabled ([audit] enabled = false)",
        );
    }
    if b.config.content.pii == ContentMode::Off && b.config.content.secrets == ContentMode::Off {
        c.add(&["CRYPTO-1"], Status::Off, "secret redaction is off");
    } else {
        c.add(
            &["CRYPTO-1"],
            Status::Partial,
            "private keys and mnemonics in results are redacted; arguments are not scanned yet",
        );
    }
}

/// The report for `built`.
pub(crate) fn report(built: &Built<'_>) -> Vec<Row> {
    let mut claims = Claims::default();
    for (stage, guard) in built.pipeline.installed() {
        let ids: Vec<&'static str> = guard.controls().to_vec();
        claims.add(
            &ids,
            Status::Enforced,
            format!("guard `{}` in stage {stage:?}", guard.name()),
        );
    }
    sandbox_claims(built, &mut claims);
    face_claims(built, &mut claims);
    upstream_claims(built, &mut claims);
    lifecycle_claims(built, &mut claims);
    observability_claims(built, &mut claims);
    always_claims(built, &mut claims);
    cross_server_claims(built, &mut claims);
    for (id, why) in controls::OUT_OF_REACH {
        claims.add(&[id], Status::NotApplicable, *why);
    }
    controls::IDS
        .iter()
        .map(|id| {
            let list = claims.by_id.remove(id).unwrap_or_default();
            let notes = claims.notes.remove(id).unwrap_or_default();
            let best = list.iter().map(|(s, _)| *s).max();
            let mut row = match best {
                None => Row {
                    id,
                    status: Status::Off,
                    reason: "nothing in this configuration enforces it".into(),
                    cross_server: None,
                },
                Some(status) => {
                    let mut reasons: Vec<String> = list
                        .into_iter()
                        .filter(|(s, _)| *s == status)
                        .map(|(_, r)| r)
                        .collect();
                    reasons.dedup();
                    Row {
                        id,
                        status,
                        reason: reasons.join("; "),
                        cross_server: None,
                    }
                }
            };
            if !notes.is_empty() {
                let mut reasons: Vec<String> = Vec::with_capacity(notes.len() + 1);
                for (cap, reason) in notes {
                    row.status = row.status.min(cap);
                    reasons.push(reason);
                }
                reasons.push(row.reason);
                row.reason = reasons.join("; ");
            }
            if warden_content::cross::CONTROLS.contains(id) {
                row.cross_server = built.cross.clone();
            }
            row
        })
        .collect()
}

/// The `cross_server` guard reports, never withholds: with findings on the definitions the
/// pin store says clients are served, its controls are `partial` (whatever another guard
/// enforces for them), and the reason counts the findings.
fn cross_server_claims(b: &Built<'_>, c: &mut Claims) {
    let Some(cross) = &b.cross else {
        return;
    };
    let cap = if cross.findings.is_empty() && !cross.unreadable() {
        Status::Enforced
    } else {
        Status::Partial
    };
    c.note(warden_content::cross::CONTROLS, cap, cross.reason());
}

/// The table for people: one line per row, the totals, then the cross-server analysis.
fn render_table(rows: &[Row]) -> String {
    let mut out = String::new();
    for r in rows {
        let s = match r.status {
            Status::NotApplicable => "n/a",
            Status::Off => "off",
            Status::Partial => "partial",
            Status::Enforced => "enforced",
        };
        out.push_str(&format!("{:<10} {:<9} {}\n", r.id, s, r.reason));
    }
    let count = |s: Status| rows.iter().filter(|r| r.status == s).count();
    out.push_str(&format!(
        "\n{} enforced, {} partial, {} off, {} n/a ({} controls)\n",
        count(Status::Enforced),
        count(Status::Partial),
        count(Status::Off),
        count(Status::NotApplicable),
        rows.len()
    ));
    if let Some(cross) = rows.iter().find_map(|r| r.cross_server.as_ref()) {
        out.push_str(&cross.table(warden_content::cross::CONTROLS));
    }
    out
}

/// Runs `check`.
pub(crate) fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let env = super::env();
    let path = warden_config::resolve_config_path(args.common.config.as_deref(), &env);
    let config = match &path {
        Some(p) => Config::load(p).map_err(|errors| anyhow::anyhow!("{errors}"))?,
        None => Config::default(),
    };
    let serve = match args.mode {
        Some(m) => m == CheckMode::Serve,
        None => path.is_some(),
    };
    crate::logging::init(args.common.log_level.as_deref().unwrap_or("error"), None)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let pipeline = runtime.block_on(super::pipeline::build(
        &args.common,
        &config,
        if serve {
            super::pipeline::Shape::Serve
        } else {
            super::pipeline::Shape::Run {
                name: "server",
                pin_id: "check".into(),
            }
        },
    ))?;
    let sandbox = crate::sandbox::availability();
    // The cross-server guard compares the lists of several upstreams as they pass; offline,
    // the pin store holds the definitions it would compare.
    let cross = if serve
        && pipeline
            .installed()
            .any(|(_, g)| g.name() == warden_content::cross::NAME)
    {
        let data_dir = config
            .resolve_data_dir(args.common.data_dir.as_deref(), &env)
            .map_err(|e| e.to_string());
        Some(Arc::new(runtime.block_on(cross_server::from_pins(
            cross_server::serve_targets(&config),
            data_dir.as_deref().map_err(Clone::clone),
        ))))
    } else {
        None
    };
    let rows = report(&Built {
        config: &config,
        serve,
        pipeline: &pipeline,
        sandbox,
        cross,
    });
    let mut out = std::io::stdout().lock();
    match args.format {
        CheckFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &rows)?;
            writeln!(out)?;
        }
        CheckFormat::Table => out.write_all(render_table(&rows).as_bytes())?,
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ID list is the checklist's appendix, in order, when the shared checklist is present.
    #[test]
    fn ids_match_the_checklist_appendix() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/CHECKLIST.md");
        let Ok(text) = std::fs::read_to_string(&path) else {
            // Outside the project's own checkout (a crate built alone) there is nothing to
            // compare with; in CI the checklist is always beside the repository.
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must have {}",
                path.display()
            );
            return;
        };
        let appendix = text
            .split("## Appendix")
            .nth(1)
            .expect("the checklist has an appendix");
        let ids: Vec<&str> = appendix
            .lines()
            .filter_map(|l| l.strip_prefix("| "))
            .filter_map(|l| l.split(' ').next())
            .filter(|id| {
                id.contains('-') && id.chars().next().is_some_and(|c| c.is_ascii_uppercase())
            })
            .collect();
        assert_eq!(ids, controls::IDS);
    }

    /// A serve-shaped report whose pipeline has the definition guard and the cross-server
    /// guard, with `cross` as the analysis of the pin store.
    fn serve_rows(cross: cross_server::CrossServer) -> Vec<Row> {
        let config = Config::default();
        let targets = ["alpha", "beta"]
            .map(|name| crate::commands::content::ContentTarget {
                name: name.into(),
                config: config.content,
                namespace: true,
            })
            .into();
        let pipeline = crate::commands::content::install(
            warden_guard::Pipeline::passthrough(),
            &config,
            targets,
        );
        report(&Built {
            config: &config,
            serve: true,
            pipeline: &pipeline,
            sandbox: &warden_sandbox::Availability::none("not probed in unit tests"),
            cross: Some(Arc::new(cross)),
        })
    }

    fn pinned(upstream: &str, names: &[&str]) -> Option<cross_server::Stored> {
        let records = names
            .iter()
            .map(|name| {
                let definition = serde_json::json!({"name": name, "description": "A tool."});
                warden_pins::ToolRecord {
                    v: warden_pins::record::RECORD_VERSION,
                    kind: warden_pins::record::Kind::Tool,
                    upstream: upstream.into(),
                    tool: (*name).into(),
                    pinned: Some(warden_pins::Snapshot {
                        hash: warden_pins::definition_hash(&definition),
                        definition,
                        seen_at: 0,
                    }),
                    pending: None,
                    removed_at: None,
                }
            })
            .collect();
        Some(cross_server::Stored::Records {
            records,
            baseline: true,
        })
    }

    fn analysed(alpha: &[&str], beta: &[&str]) -> cross_server::CrossServer {
        let target = |name: &str| cross_server::Target {
            upstream: name.into(),
            pin_id: name.into(),
            pinning: warden_config::PinningMode::Block,
            poisoning: warden_config::DefinitionMode::Block,
        };
        cross_server::analyse(
            &[target("alpha"), target("beta")],
            vec![pinned("alpha", alpha), pinned("beta", beta)],
        )
    }

    #[test]
    fn cross_server_findings_make_its_controls_partial_and_are_carried_on_their_rows() {
        // Proves: MULTI-2 (findings on the pinned lists are counted and listed)
        let rows = serve_rows(analysed(&["echo", "fetch"], &["echo"]));
        for id in warden_content::cross::CONTROLS {
            let row = rows.iter().find(|r| r.id == *id).unwrap();
            assert_eq!(row.status, Status::Partial, "{row:?}");
            assert!(
                row.reason.starts_with("2 cross-server findings on the pinned tool definitions clients are served (alpha, beta); the `cross_server` guard reports them and withholds nothing; "),
                "{row:?}"
            );
            // The guards' own claims follow.
            assert!(
                row.reason
                    .contains("guard `cross_server` in stage Poisoning"),
                "{row:?}"
            );
            let json = serde_json::to_value(row).unwrap();
            assert_eq!(json["cross_server"]["source"], "pins");
            assert_eq!(
                json["cross_server"]["findings"].as_array().unwrap().len(),
                2
            );
            assert_eq!(
                json["cross_server"]["findings"][0]["rule"],
                "poison.name-collision"
            );
            assert_eq!(json["cross_server"]["findings"][0]["upstream"], "alpha");
            assert_eq!(json["cross_server"]["findings"][0]["tool"], "echo");
            assert_eq!(json["cross_server"]["findings"][0]["field"], "name");
            assert_eq!(json["cross_server"]["findings"][0]["severity"], "high");
        }
        // Every other row keeps the documented shape.
        for row in rows
            .iter()
            .filter(|r| !warden_content::cross::CONTROLS.contains(&r.id))
        {
            let json = serde_json::to_value(row).unwrap();
            let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
            assert_eq!(keys, ["id", "status", "reason"], "{json}");
        }
        let table = render_table(&rows);
        assert_eq!(
            table
                .matches("Cross-server analysis (MULTI-2, PROMPT-7)")
                .count(),
            1,
            "the section is printed once: {table}"
        );
        assert!(
            table.contains("  high     poison.name-collision            alpha/echo at name[0..4]: same name as `echo` of server `beta`\n"),
            "{table}"
        );
        assert!(
            table
                .contains("\n2 findings (reported by the `cross_server` guard, never withheld):\n"),
            "{table}"
        );
        let multi = table.lines().find(|l| l.starts_with("MULTI-2 ")).unwrap();
        assert!(
            multi.starts_with("MULTI-2    partial   2 cross-server findings"),
            "{multi}"
        );
    }

    #[test]
    fn clean_pinned_lists_leave_the_controls_enforced_and_say_so() {
        let rows = serve_rows(analysed(&["fetch"], &["add_tool"]));
        let row = rows.iter().find(|r| r.id == "MULTI-2").unwrap();
        assert_eq!(row.status, Status::Enforced, "{row:?}");
        assert!(
            row.reason.starts_with("no cross-server finding on the pinned tool definitions clients are served (alpha, beta)"),
            "{row:?}"
        );
        assert!(render_table(&rows).ends_with("No cross-server findings.\n"));
    }

    #[test]
    fn out_of_reach_controls_are_known_ids() {
        for (id, _) in controls::OUT_OF_REACH {
            assert!(controls::IDS.contains(id), "{id}");
        }
    }
}
