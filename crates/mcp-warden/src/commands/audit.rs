//! `mcp-warden audit verify|tail|search`, and opening the audit log for `run` and `serve`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};
use warden_audit::query::{self, Filter};
use warden_audit::verify::{self, Trust, VerifyError};
use warden_audit::{AuditKeys, AuditLog, AuditOptions, Event, PublicKey};
use warden_config::{AuditCapture, AuditFlush, AuditOnFull, Config};
use warden_guard::Pipeline;
use warden_session::Gateway;
use warden_session::audit::DecisionAudit;

use crate::cli::Common;

/// Exit code of `verify` when the chain is broken (2 stays "usage or configuration error").
const BROKEN: u8 = 1;
/// How often `tail --follow` looks for new records.
const FOLLOW_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

/// `mcp-warden audit ...`.
#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    #[command(subcommand)]
    action: AuditAction,
}

#[derive(Debug, Clone, Copy, Default, ValueEnum, PartialEq, Eq)]
enum Format {
    /// For people.
    #[default]
    Text,
    /// JSON (`verify`: one object; `tail`/`search`: one record per line).
    Json,
}

#[derive(Debug, Subcommand)]
enum AuditAction {
    /// Verifies the chain: exit 0 when intact, 1 naming the first bad record.
    Verify {
        #[command(flatten)]
        common: Common,
        /// The log (default: the configured audit log). Rotated files are verified with it.
        file: Option<PathBuf>,
        /// The key file (default: `[audit] key_file`, else `audit.key` in the data directory).
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// Verify with this public key only (no secret key): signed checkpoints are checked.
        #[arg(long, value_name = "FILE", conflicts_with = "key")]
        public_key: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// The last records, optionally following the log as it grows.
    Tail {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        filter: FilterArgs,
        /// The log (default: the configured audit log).
        file: Option<PathBuf>,
        /// How many records.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: usize,
        /// Keep printing new records.
        #[arg(short, long)]
        follow: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Records matching every given filter, oldest first.
    Search {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        filter: FilterArgs,
        /// The log (default: the configured audit log).
        file: Option<PathBuf>,
        /// At most this many records (the newest).
        #[arg(long)]
        limit: Option<usize>,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

#[derive(Debug, Args)]
struct FilterArgs {
    /// At or after: RFC 3339 time, or a duration back from now (`10m`, `2h`).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Before: RFC 3339 time, or a duration back from now.
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Session id.
    #[arg(long)]
    session: Option<String>,
    /// Principal subject.
    #[arg(long)]
    principal: Option<String>,
    /// Tool or prompt name, or resource URI (`*` wildcards).
    #[arg(long)]
    tool: Option<String>,
    /// Verdict or outcome: deny, hold, rewrite, skip, denied, held, error, result, failure...
    #[arg(long)]
    verdict: Option<String>,
    /// Event kind: call, decision, session_start, session_end, auth, message, upstream, ...
    #[arg(long)]
    event: Option<String>,
    /// Upstream name.
    #[arg(long)]
    upstream: Option<String>,
}

impl FilterArgs {
    fn filter(self) -> anyhow::Result<Filter> {
        let time = |t: Option<String>, flag: &str| -> anyhow::Result<_> {
            t.map(|t| {
                query::parse_time(&t).with_context(|| {
                    format!("--{flag} {t:?}: expected an RFC 3339 time or a duration")
                })
            })
            .transpose()
        };
        Ok(Filter {
            since: time(self.since, "since")?,
            until: time(self.until, "until")?,
            session: self.session,
            principal: self.principal,
            tool: self.tool,
            verdict: self.verdict,
            event: self.event,
            upstream: self.upstream,
        })
    }
}

pub(crate) fn audit(args: AuditArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        AuditAction::Verify {
            common,
            file,
            key,
            public_key,
            format,
        } => verify_cmd(&common, file, key, public_key, format),
        AuditAction::Tail {
            common,
            filter,
            file,
            lines,
            follow,
            format,
        } => {
            let (path, _) = locate(&common, file)?;
            let filter = filter.filter()?;
            let found = query::search(&path, &filter)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let start = found.len().saturating_sub(lines);
            for f in &found[start..] {
                emit(f, format)?;
            }
            if follow {
                follow_log(&path, &filter, format)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditAction::Search {
            common,
            filter,
            file,
            limit,
            format,
        } => {
            let (path, _) = locate(&common, file)?;
            let found = query::search(&path, &filter.filter()?)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let start = limit.map_or(0, |l| found.len().saturating_sub(l));
            for f in &found[start..] {
                emit(f, format)?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The log file and the configuration: the argument, else the configured audit log.
fn locate(common: &Common, file: Option<PathBuf>) -> anyhow::Result<(PathBuf, Config)> {
    let env = super::env();
    let config = match warden_config::resolve_config_path(common.config.as_deref(), &env) {
        Some(p) => Config::load(&p).map_err(|errors| anyhow::anyhow!("{errors}"))?,
        None => Config::default(),
    };
    if let Some(f) = file {
        return Ok((f, config));
    }
    let data_dir = config
        .resolve_data_dir(common.data_dir.as_deref(), &env)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let path = config.resolve_audit_log(common.audit_log.as_deref(), &data_dir, &env);
    Ok((path, config))
}

/// The audit keys of `[audit] key = "keyring:SERVICE/USER"`, read from the OS keyring (none
/// when the key comes from a key file). The entry holds a key file's text.
fn keyring_keys(config: &Config) -> anyhow::Result<Option<AuditKeys>> {
    let Some(warden_config::ValueRef::Keyring { service, user }) = &config.audit.key else {
        return Ok(None);
    };
    let text = crate::keyring::get(service, user).context("audit.key")?;
    let keys = AuditKeys::from_text(&text, &format!("keyring:{service}/{user}"))?;
    Ok(Some(keys))
}

fn key_file(common: &Common, config: &Config) -> anyhow::Result<PathBuf> {
    if let Some(k) = &config.audit.key_file {
        return Ok(k.clone());
    }
    let data_dir = config
        .resolve_data_dir(common.data_dir.as_deref(), &super::env())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(data_dir.join(warden_audit::KEY_FILE_NAME))
}

fn verify_cmd(
    common: &Common,
    file: Option<PathBuf>,
    key: Option<PathBuf>,
    public_key: Option<PathBuf>,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let (path, config) = locate(common, file)?;
    let keys;
    let trust = match public_key {
        Some(pk) => Trust::PublicKey(PublicKey::read(&pk)?),
        None => {
            keys = match (key, keyring_keys(&config)?) {
                (Some(k), _) => AuditKeys::load(&k)?,
                (None, Some(from_keyring)) => from_keyring,
                (None, None) => AuditKeys::load(&key_file(common, &config)?)?,
            };
            Trust::Keys(&keys)
        }
    };
    let fingerprint = match &trust {
        Trust::Keys(k) => k.public_key().fingerprint(),
        Trust::PublicKey(p) => p.fingerprint(),
    };
    match verify::verify_log(&path, trust) {
        Ok(report) => {
            let text = match format {
                Format::Json => json!({
                    "intact": true,
                    "files": report.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
                    "records": report.records,
                    "first_seq": report.first_seq,
                    "last_seq": report.last_seq,
                    "checkpoints": report.checkpoints,
                    "after_last_checkpoint": report.after_last_checkpoint,
                    "keyed": report.keyed,
                    "head_checked": report.head_checked,
                    "public_key": fingerprint,
                })
                .to_string(),
                Format::Text => {
                    let mut t = format!(
                        "intact: {} records in {} file(s), {} signed checkpoint(s), key {fingerprint}",
                        report.records,
                        report.files.len(),
                        report.checkpoints
                    );
                    if !report.keyed && report.after_last_checkpoint > 0 {
                        t.push_str(&format!(
                            "\nwarning: the last {} record(s) follow the last checkpoint and are not covered by a signature",
                            report.after_last_checkpoint
                        ));
                    }
                    if report.keyed && !report.head_checked {
                        t.push_str("\nwarning: no head file; truncation of the last records cannot be detected");
                    }
                    t
                }
            };
            write_line(&text)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(VerifyError::Broken(b)) => {
            let text = match format {
                Format::Json => json!({
                    "intact": false,
                    "file": b.file.display().to_string(),
                    "line": b.line,
                    "seq": b.seq,
                    "problem": b.problem.to_string(),
                })
                .to_string(),
                Format::Text => format!("broken: {b}"),
            };
            write_line(&text)?;
            Ok(ExitCode::from(BROKEN))
        }
        Err(e @ VerifyError::Io { .. }) => Err(e.into()),
    }
}

fn emit(found: &query::Found, format: Format) -> anyhow::Result<()> {
    let text = match format {
        Format::Json => {
            let mut v = found.record.clone();
            if let Value::Object(o) = &mut v {
                o.insert("seq".into(), found.seq.into());
            }
            v.to_string()
        }
        Format::Text => summary(found),
    };
    write_line(&text)
}

/// One line for people: time, sequence, event, then the fields that identify it.
fn summary(found: &query::Found) -> String {
    let r = &found.record;
    let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("");
    let mut line = format!("{} #{} {}", s("ts"), found.seq, s("event"));
    for key in [
        "principal",
        "session",
        "method",
        "name",
        "upstream",
        "guard",
        "verdict",
        "status",
        "outcome",
        "reason",
        "action",
    ] {
        if let Some(v) = r.get(key).and_then(Value::as_str) {
            line.push_str(&format!(" {key}={v:?}"));
        }
    }
    if let Some(l) = r.get("latency_us").and_then(Value::as_u64) {
        line.push_str(&format!(" latency_us={l}"));
    }
    line
}

fn follow_log(path: &Path, filter: &Filter, format: Format) -> anyhow::Result<()> {
    let mut offset = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let mut ino = inode(path);
    loop {
        std::thread::sleep(FOLLOW_INTERVAL);
        let now = inode(path);
        if now != ino {
            // Rotated: read the new file from its start.
            ino = now;
            offset = 0;
        }
        let mut found = Vec::new();
        offset = query::read_from(&path.to_path_buf(), offset, filter, &mut found)
            .with_context(|| format!("cannot read {}", path.display()))?;
        for f in &found {
            emit(f, format)?;
        }
    }
}

fn inode(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(path).ok().map(|m| m.ino())
}

fn write_line(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}")
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")
}

/// The audit log of a running gateway (`run`, `serve`), or nothing when `[audit]` is disabled.
pub(crate) struct GatewayAudit {
    log: Option<AuditLog>,
    /// The alert engine tapping the log (`[alerts]`), closed after the log.
    alerts: Option<Arc<warden_alerts::Alerts>>,
}

impl GatewayAudit {
    /// The audit of `run` and `serve`: the log with the metrics (`metrics`) and trace export
    /// taps, and the sandbox's egress proxies recording their decisions in it
    /// (docs/sandbox.md).
    pub(crate) fn open_for_gateway(
        common: &Common,
        config: &Config,
        mode: &str,
        metrics: Option<&super::metrics::GatewayMetrics>,
    ) -> anyhow::Result<Self> {
        let taps = super::metrics::taps(metrics)
            .into_iter()
            .chain(super::trace::taps(config, &super::env())?)
            .collect();
        let audit = Self::open_with_taps(common, config, mode, taps)?;
        crate::egress::audit_to(audit.log());
        Ok(audit)
    }

    /// Opens the configured audit log (creating the key file on first use) and records the
    /// start and the configuration. Fails when the log cannot be opened: a gateway that
    /// should audit never runs unaudited. `taps` (metrics, trace export) are fed every record
    /// the writer writes; with `[audit]` disabled there is no writer and they see nothing.
    fn open_with_taps(
        common: &Common,
        config: &Config,
        mode: &str,
        taps: Vec<Arc<dyn warden_audit::AuditTap>>,
    ) -> anyhow::Result<Self> {
        if !config.audit.enabled {
            tracing::warn!("audit log disabled ([audit] enabled = false)");
            return Ok(Self {
                log: None,
                alerts: None,
            });
        }
        let env = super::env();
        let data_dir = config
            .resolve_data_dir(common.data_dir.as_deref(), &env)
            .map_err(|e| {
                anyhow::anyhow!(
                    "{e} (the audit log keeps its key there; or set [audit] enabled = false)"
                )
            })?;
        let path = config.resolve_audit_log(common.audit_log.as_deref(), &data_dir, &env);
        let a = &config.audit;
        let mut opts = AuditOptions::new(
            path.clone(),
            a.key_file
                .clone()
                .unwrap_or_else(|| data_dir.join(warden_audit::KEY_FILE_NAME)),
        );
        // `[audit] key = "keyring:..."`: the key from the OS keyring instead of a file.
        opts.keys = keyring_keys(config)?.map(Arc::new);
        opts.flush = match a.flush {
            AuditFlush::Decisions => warden_audit::FlushPolicy::Decisions,
            AuditFlush::Always => warden_audit::FlushPolicy::Always,
            AuditFlush::Batched => warden_audit::FlushPolicy::Batched,
        };
        opts.sync_interval = a.sync_interval;
        opts.linger = a.linger;
        opts.queue = a.queue.get();
        opts.on_full = match a.on_full {
            AuditOnFull::FailClosed => warden_audit::OnFull::FailClosed,
            AuditOnFull::FailOpen => warden_audit::OnFull::FailOpen,
        };
        opts.durable_timeout = a.durable_timeout;
        opts.capture = match a.capture {
            AuditCapture::Digest => warden_audit::Capture::Digest,
            AuditCapture::Full => warden_audit::Capture::Full,
        };
        opts.sensitive_tools = a.sensitive_tools.clone();
        opts.rotate_bytes = a.rotate_bytes.get();
        opts.rotate_age = a.rotate_age;
        opts.checkpoint_every = a.checkpoint_every;
        opts.checkpoint_interval = a.checkpoint_interval;
        opts.taps.extend(taps);
        // Config validation refuses `[alerts]` without the audit log, so this is the one place.
        let alerts = super::alerts::start(config, &data_dir, &env)?;
        if let Some(a) = &alerts {
            opts.taps.push(a.clone());
        }
        let log = AuditLog::open(opts, redactor())
            .with_context(|| format!("cannot open the audit log {}", path.display()))?;
        tracing::info!(path = %path.display(), key = %log.public_key().fingerprint(), "audit log open");
        log.record(Event::GatewayStart {
            mode: mode.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
        })?;
        let source = warden_config::resolve_config_path(common.config.as_deref(), &env);
        let digest = source
            .as_deref()
            .and_then(|p| std::fs::read(p).ok())
            .map(|bytes| log.content_bytes(&bytes))
            // Under full capture, content_bytes would parse the TOML as JSON: keep the digest.
            .map(|mut c| {
                c.value = None;
                c
            });
        log.record(Event::Config {
            action: "loaded".into(),
            source: source.map(|p| p.display().to_string()),
            digest,
        })?;
        Ok(Self {
            log: Some(log),
            alerts,
        })
    }

    /// The handle for [`warden_session::GatewayOptions::audit`].
    pub(crate) fn log(&self) -> Option<AuditLog> {
        self.log.clone()
    }

    /// `pipeline`, reporting its decisions to the audit log.
    pub(crate) fn observe(&self, pipeline: Pipeline) -> Pipeline {
        match &self.log {
            Some(log) => pipeline.observed(Arc::new(DecisionAudit::new(log.clone()))),
            None => pipeline,
        }
    }

    /// Records the upstreams the gateway started.
    pub(crate) fn started(&self, gateway: &Gateway) {
        gateway.audit_upstreams_started();
    }

    /// Records the stop, writes a final checkpoint and syncs.
    pub(crate) async fn close(&self) {
        let Some(log) = &self.log else { return };
        let _ = log.record(Event::GatewayStop {
            pid: std::process::id(),
        });
        if let Err(e) = log.close().await {
            tracing::error!(error = %e, "audit log did not close cleanly");
        }
        // After the log: the last records (the stop) have been through the rules.
        if let Some(a) = &self.alerts {
            a.close(super::alerts::CLOSE_TIMEOUT).await;
        }
    }
}

/// Full capture redacts with the same engine as `mcp-warden redact` and the redact guard:
/// every string and object key (secrets and personal data) before the record is queued.
struct DetectRedactor;

impl warden_audit::Redactor for DetectRedactor {
    fn redact(&self, value: &mut Value) {
        warden_detect::redact::redact_json(value);
    }
}

/// The redaction engine for full capture.
fn redactor() -> Option<Arc<dyn warden_audit::Redactor>> {
    Some(Arc::new(DetectRedactor))
}
