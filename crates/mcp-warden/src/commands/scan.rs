//! `mcp-warden scan [PATH...]`: the MCP servers configured on this machine (or in the given
//! files), audited without starting anything: plaintext credentials, unpinned packages, plain
//! HTTP, name collisions, servers not routed through mcp-warden.
//!
//! Output: a table, `--format json` (an array of findings), or `--format sarif` (SARIF 2.1.0,
//! each result located at the configuration file and line). Exit 1 when a finding reaches
//! `--fail-on`, 2 on usage errors.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use warden_detect::Severity;
use warden_scan::clients::{self, ConfigLocation, Platform};
use warden_scan::{ScanFinding, ServerEntry};

use super::inspect::SeverityArg;

mod live;

/// Output format of `scan`.
#[derive(Debug, Clone, Copy, Default, ValueEnum, PartialEq, Eq)]
pub(crate) enum ScanFormat {
    /// A table for people.
    #[default]
    Table,
    /// A JSON array of findings.
    Json,
    /// SARIF 2.1.0.
    Sarif,
}

/// `mcp-warden scan`.
#[derive(Debug, Args)]
pub(crate) struct ScanArgs {
    /// Configuration files to read instead of discovering the clients' own.
    #[arg(value_name = "PATH")]
    pub(crate) paths: Vec<PathBuf>,
    /// Only this client's configuration files (discovery mode).
    #[arg(long, value_name = "NAME")]
    pub(crate) client: Option<String>,
    /// Project directory whose project-scoped configs are read (default: the current one).
    #[arg(long, value_name = "DIR")]
    pub(crate) project: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ScanFormat::Table)]
    pub(crate) format: ScanFormat,
    /// Exit 1 when a finding is at least this severe.
    #[arg(long, value_enum, value_name = "SEVERITY")]
    pub(crate) fail_on: Option<SeverityArg>,
    /// Start the configured stdio servers (sandboxed, with a timeout) and analyse their tools,
    /// prompts, resources and instructions. Off by default: it runs the commands in the files.
    #[arg(long)]
    pub(crate) start: bool,
    /// Connect to the configured remote servers and analyse what they expose.
    #[arg(long)]
    pub(crate) connect: bool,
    /// Longest wait for one server when starting or connecting (seconds).
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub(crate) timeout: u64,
    /// With `--connect`: also trust the certificates of this PEM file (an internal certificate
    /// authority) for the remote servers and their TLS check.
    #[arg(long = "ca-file", value_name = "PEM", requires = "connect")]
    pub(crate) ca_file: Option<PathBuf>,
}

/// The configuration files to work on: the given `paths` (client and format recognised from
/// each file), or every known location of `client` (or of every client) that exists on this
/// machine, with the project-scoped ones under `project` when given.
pub(crate) fn locate(
    paths: &[PathBuf],
    client: Option<&str>,
    project: Option<&std::path::Path>,
) -> anyhow::Result<Vec<ConfigLocation>> {
    if !paths.is_empty() {
        let mut out = Vec::new();
        for path in paths {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read `{}`", path.display()))?;
            let (client, format) = clients::identify(path, &text);
            out.push(ConfigLocation {
                client,
                scope: clients::Scope::User,
                format,
                path: path.clone(),
            });
        }
        return Ok(out);
    }
    let platform = Platform::current(|k| std::env::var(k).ok())
        .context("cannot find the home directory (HOME is not set)")?;
    let wanted = match client {
        Some(name) => Some(
            warden_scan::Client::from_name(name)
                .with_context(|| format!("unknown client `{name}`"))?,
        ),
        None => None,
    };
    Ok(clients::locations(&platform, project)
        .into_iter()
        .filter(|l| wanted.is_none_or(|c| l.client == c))
        .filter(|l| l.path.is_file())
        .collect())
}

/// The files `scan` reads: project scope under `--project` (default: the current directory).
fn targets(args: &ScanArgs) -> anyhow::Result<Vec<ConfigLocation>> {
    let project = match &args.project {
        Some(p) => Some(p.clone()),
        None => std::env::current_dir().ok(),
    };
    locate(&args.paths, args.client.as_deref(), project.as_deref())
}

/// What a scan found, before formatting.
pub(crate) struct Report {
    pub(crate) files: Vec<ConfigLocation>,
    pub(crate) servers: Vec<ServerEntry>,
    pub(crate) findings: Vec<ScanFinding>,
}

/// Reads every target and runs the static checks.
pub(crate) fn collect(locations: Vec<ConfigLocation>) -> Report {
    let mut servers = Vec::new();
    let mut findings = Vec::new();
    let mut files = Vec::new();
    for loc in locations {
        let text = match std::fs::read_to_string(&loc.path) {
            Ok(t) => t,
            Err(e) => {
                findings.push(unreadable(&loc, &e.to_string()));
                continue;
            }
        };
        match warden_scan::read_servers(&loc, &text) {
            Ok(entries) => servers.extend(entries),
            Err(e) => {
                let why =
                    std::error::Error::source(&e).map_or_else(|| e.to_string(), |s| s.to_string());
                findings.push(unreadable(&loc, &why));
            }
        }
        files.push(loc);
    }
    for s in servers.iter().filter(|s| !s.disabled) {
        findings.extend(warden_scan::check_server(s));
    }
    findings.extend(warden_scan::check_collisions(&servers));
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.file.cmp(&b.file))
            .then_with(|| a.line.cmp(&b.line))
    });
    Report {
        files,
        servers,
        findings,
    }
}

fn unreadable(loc: &ConfigLocation, why: &str) -> ScanFinding {
    ScanFinding {
        rule: "config.unreadable",
        severity: Severity::Low,
        file: loc.path.display().to_string(),
        line: 1,
        client: loc.client,
        server: String::new(),
        message: format!("the file could not be read: {why}"),
        evidence: String::new(),
    }
}

/// Runs `scan`.
pub(crate) fn scan(args: ScanArgs) -> anyhow::Result<ExitCode> {
    let locations = targets(&args)?;
    let mut report = collect(locations);
    if args.start || args.connect {
        let tls = warden_http::TlsOptions::trusting(args.ca_file.as_deref())
            .map_err(|e| anyhow::anyhow!("--ca-file: {e}"))?;
        let consent = live::Consent {
            start: args.start,
            connect: args.connect,
            timeout: std::time::Duration::from_secs(args.timeout.max(1)),
            tls,
        };
        crate::logging::init("warn", None)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let live = runtime.block_on(live::analyse(&report.servers, consent));
        report.findings.extend(live);
        report.findings.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then_with(|| a.file.cmp(&b.file))
                .then_with(|| a.line.cmp(&b.line))
        });
    }
    let mut out = std::io::stdout().lock();
    match args.format {
        ScanFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &report.findings)?;
            writeln!(out)?;
        }
        ScanFormat::Sarif => {
            let sarif =
                warden_scan::sarif::to_sarif(&report.findings, env!("CARGO_PKG_VERSION"), &[]);
            serde_json::to_writer_pretty(&mut out, &sarif)?;
            writeln!(out)?;
        }
        ScanFormat::Table => {
            writeln!(
                out,
                "{} configuration file(s), {} server(s), {} finding(s)",
                report.files.len(),
                report.servers.len(),
                report.findings.len()
            )?;
            for f in &report.findings {
                writeln!(
                    out,
                    "{:<8} {:<26} {}:{} [{}] {}: {}",
                    f.severity.to_string(),
                    f.rule,
                    f.file,
                    f.line,
                    f.client,
                    f.server,
                    f.message
                )?;
                if !f.evidence.is_empty() {
                    writeln!(out, "         {}", f.evidence)?;
                }
            }
        }
    }
    out.flush()?;
    let threshold = args.fail_on.map(Severity::from);
    let failed = threshold.is_some_and(|t| report.findings.iter().any(|f| f.severity >= t));
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
