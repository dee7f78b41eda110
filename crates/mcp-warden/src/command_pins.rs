//! Command pins at start-up (RUN-3): before a stdio upstream is spawned, what its command runs
//! (resolved executable, its digest, its `#!` interpreters, an interpreter's script, launcher
//! packages) is compared with its pin in `<data dir>/pins` (see `warden_pins::command`).
//!
//! First use pins it (audited). A change is reported before anything runs: in `block` mode
//! (the default) the upstream is not started, and the message names the old and new values
//! and the approval command; in `report` mode the gateway warns and starts it.

use std::path::{Path, PathBuf};

use anyhow::Context;
use warden_audit::{AuditLog, Event};
use warden_config::PinningMode;
use warden_config::env::EnvSource;
use warden_pins::PinBook;
use warden_pins::command::installed::Locations;
use warden_pins::command::{self, CommandCheck, CommandInput, CommandSnapshot};

/// One stdio upstream's command, observed, with how its pin is enforced.
pub(crate) struct CommandTarget {
    /// The gateway's name of the upstream.
    pub(crate) name: String,
    /// Its pin identity (the upstream's name in `serve`, a derived id in `run`).
    pub(crate) pin_id: String,
    /// `command_pinning` in force.
    pub(crate) mode: PinningMode,
    /// What its command runs now.
    pub(crate) snapshot: CommandSnapshot,
    /// The identity of the executable file the snapshot's digest is of: the sandbox launcher
    /// runs only that file (`None` when it changed while it was read).
    pub(crate) identity: Option<warden_sandbox::ProgramIdentity>,
}

/// Reads what `program args` runs, resolving `program` as the sandbox launcher does (the
/// gateway's working directory and `PATH`). Digests of unchanged files come from the data
/// directory's cache (`warden_pins::command::digests`). Blocking file I/O: call before the
/// runtime.
pub(crate) fn observe(
    name: &str,
    program: &str,
    args: &[String],
    cwd: Option<&Path>,
    data_dir: Option<&Path>,
    env: &dyn EnvSource,
) -> anyhow::Result<(CommandSnapshot, Option<warden_sandbox::ProgramIdentity>)> {
    let gateway_cwd = std::env::current_dir().context("reading the working directory")?;
    let path_var = env.var("PATH").unwrap_or_default();
    let resolved = warden_sandbox::plan::resolve_program(program, &gateway_cwd, &path_var)
        .with_context(|| format!("upstream `{name}`"))?;
    let run_dir = match cwd {
        Some(c) if c.is_absolute() => c.to_owned(),
        Some(c) => gateway_cwd.join(c),
        None => gateway_cwd.clone(),
    };
    let npm_cache = env
        .var("npm_config_cache")
        .map(PathBuf::from)
        .or_else(|| env.var("HOME").map(|h| PathBuf::from(h).join(".npm")));
    let interpreters = warden_sandbox::plan::interpreter_chain(&resolved, &path_var);
    command::observe_identified(&CommandInput {
        program,
        resolved: &resolved,
        interpreters: &interpreters,
        args,
        cwd: &run_dir,
        locations: Locations {
            cwd: Some(run_dir.clone()),
            npm_cache,
        },
        digest_cache: data_dir,
    })
    .with_context(|| format!("upstream `{name}`: cannot pin its command"))
}

/// What [`verify`] decided for the targets.
#[derive(Debug, Default)]
pub(crate) struct Verdicts {
    /// Upstreams that must not start, each with the message saying why.
    pub(crate) refused: Vec<(String, String)>,
}

/// Compares every target with its pin, records first uses and changes, and audits both.
pub(crate) async fn verify(
    data_dir: Option<&Path>,
    targets: Vec<CommandTarget>,
    audit: Option<&AuditLog>,
) -> anyhow::Result<Verdicts> {
    let mut verdicts = Verdicts::default();
    let targets: Vec<CommandTarget> = targets
        .into_iter()
        .filter(|t| t.mode != PinningMode::Off)
        .collect();
    if targets.is_empty() {
        return Ok(verdicts);
    }
    let data_dir = data_dir
        .context("command pinning needs a data directory (or set command_pinning = \"off\")")?;
    let book = PinBook::file(data_dir);
    for t in targets {
        let checked = book
            .check_command(&t.pin_id, &t.snapshot)
            .await
            .with_context(|| format!("upstream `{}`: cannot check its command pin", t.name))?;
        match checked {
            CommandCheck::FirstUse(snapshot) => {
                tracing::info!(upstream = %t.name, pin = %t.pin_id, program = %snapshot.path, digest = %snapshot.executable.sha256, "command pinned on first use");
                record(audit, &t.name, "command_pinned", summary(&snapshot))?;
            }
            CommandCheck::Unchanged { completed: true } => {
                tracing::info!(upstream = %t.name, pin = %t.pin_id, "command pin completed with installed package versions");
                record(
                    audit,
                    &t.name,
                    "command_pin_completed",
                    summary(&t.snapshot),
                )?;
            }
            CommandCheck::Unchanged { completed: false } => {
                tracing::debug!(upstream = %t.name, pin = %t.pin_id, "command matches its pin");
            }
            CommandCheck::Changed {
                observed, changes, ..
            } => {
                let listed: Vec<String> = changes
                    .iter()
                    .map(|c| format!("{}: {} -> {}", c.what, c.pinned, c.observed))
                    .collect();
                let detail = format!("{}; pending {}", listed.join("; "), observed.hash());
                let block = t.mode == PinningMode::Block;
                record(
                    audit,
                    &t.name,
                    if block {
                        "command_refused"
                    } else {
                        "command_changed"
                    },
                    detail,
                )?;
                let approve = if t.pin_id == t.name {
                    format!("mcp-warden pins approve {} --command", t.pin_id)
                } else {
                    format!("mcp-warden pins approve '{}' --command", t.pin_id)
                };
                if block {
                    verdicts.refused.push((
                        t.name.clone(),
                        format!(
                            "upstream `{}`: its command changed since it was pinned and was not started:\n  {}\nReview it (`mcp-warden pins diff {} --command`), then approve it with `{approve}` (or set command_pinning = \"report\" to only warn)",
                            t.name,
                            listed.join("\n  "),
                            t.pin_id,
                        ),
                    ));
                } else {
                    tracing::warn!(upstream = %t.name, pin = %t.pin_id, changes = %listed.join("; "), "command changed since it was pinned; starting it (command_pinning = report)");
                }
            }
        }
    }
    Ok(verdicts)
}

/// The audit detail of a pinned command: paths, digests and package versions (no arguments,
/// no environment).
fn summary(s: &CommandSnapshot) -> String {
    let mut out = format!(
        "{} -> {} {}",
        s.path, s.executable.path, s.executable.sha256
    );
    for interpreter in &s.interpreters {
        out.push_str(&format!(
            "; interpreter {} {}",
            interpreter.path, interpreter.sha256
        ));
    }
    if let Some(script) = &s.script {
        out.push_str(&format!("; script {} {}", script.path, script.sha256));
    }
    for p in &s.packages {
        out.push_str(&format!(
            "; {} {} requested {} installed {}",
            p.launcher.as_str(),
            p.name,
            p.requested.as_deref().unwrap_or("(none)"),
            p.installed.as_deref().unwrap_or("(unknown)")
        ));
    }
    out
}

fn record(
    audit: Option<&AuditLog>,
    upstream: &str,
    action: &str,
    detail: String,
) -> anyhow::Result<()> {
    if let Some(log) = audit {
        log.record(Event::Upstream {
            upstream: upstream.to_owned(),
            action: action.to_owned(),
            pid: None,
            exit_code: None,
            detail: Some(detail),
        })
        .context("cannot write the audit record of a command pin")?;
    }
    Ok(())
}

/// Every enabled stdio upstream of `config` whose command pinning is on, with its mode.
fn pinned_stdio(
    config: &warden_config::Config,
) -> impl Iterator<Item = (&str, &warden_config::StdioUpstreamConfig, PinningMode)> {
    config
        .upstreams
        .iter()
        .filter(|u| u.enabled)
        .filter_map(|u| {
            let warden_config::UpstreamTransport::Stdio(s) = &u.transport else {
                return None;
            };
            let mode = config.command_pinning_of(u);
            (mode != PinningMode::Off).then_some((u.name.as_str(), s, mode))
        })
}

/// The command targets of `serve`: every enabled stdio upstream whose command pinning is on.
pub(crate) fn for_config(
    config: &warden_config::Config,
    data_dir: Option<&Path>,
    env: &dyn EnvSource,
) -> anyhow::Result<Vec<CommandTarget>> {
    pinned_stdio(config)
        .map(|(name, s, mode)| {
            let (snapshot, identity) =
                observe(name, &s.command, &s.args, s.cwd.as_deref(), data_dir, env)?;
            Ok(CommandTarget {
                name: name.to_owned(),
                pin_id: name.to_owned(),
                mode,
                snapshot,
                identity,
            })
        })
        .collect()
}

/// The command target of `run -- CMD ARGS...` (none when command pinning is off).
pub(crate) fn for_run(
    config: &warden_config::Config,
    name: &str,
    command: &[String],
    data_dir: Option<&Path>,
    env: &dyn EnvSource,
) -> anyhow::Result<Option<CommandTarget>> {
    let mode = config.run_command_pinning();
    let Some((program, args)) = command.split_first() else {
        return Ok(None);
    };
    if mode == PinningMode::Off {
        return Ok(None);
    }
    let (snapshot, identity) = observe(name, program, args, None, data_dir, env)?;
    Ok(Some(CommandTarget {
        name: name.to_owned(),
        pin_id: crate::commands::pins::run_pin_id(name, command, None),
        mode,
        snapshot,
        identity,
    }))
}

/// What to observe again for one upstream: its command as configured and how its pin applies.
struct Watched {
    pin_id: String,
    mode: PinningMode,
    program: String,
    args: Vec<String>,
    cwd: Option<PathBuf>,
}

/// Re-checks command pins before an upstream's process is started again (a restart, or the
/// second process for legacy clients): the approval at start-up covers what the command ran
/// then, not whatever its path holds later. Installed as
/// [`warden_session::GatewayOptions::prelaunch`].
pub(crate) struct Recheck {
    data_dir: PathBuf,
    audit: Option<AuditLog>,
    watched: std::collections::HashMap<String, Watched>,
}

impl Recheck {
    fn installed(
        data_dir: Option<&Path>,
        audit: Option<AuditLog>,
        watched: std::collections::HashMap<String, Watched>,
    ) -> Option<std::sync::Arc<dyn warden_session::Prelaunch>> {
        let data_dir = data_dir?.to_owned();
        if watched.is_empty() {
            return None;
        }
        Some(std::sync::Arc::new(Recheck {
            data_dir,
            audit,
            watched,
        }))
    }

    /// The re-check for `serve`'s stdio upstreams whose command pinning is on.
    pub(crate) fn for_config(
        config: &warden_config::Config,
        data_dir: Option<&Path>,
        audit: Option<AuditLog>,
    ) -> Option<std::sync::Arc<dyn warden_session::Prelaunch>> {
        let watched = pinned_stdio(config)
            .map(|(name, s, mode)| {
                let w = Watched {
                    pin_id: name.to_owned(),
                    mode,
                    program: s.command.clone(),
                    args: s.args.clone(),
                    cwd: s.cwd.clone(),
                };
                (name.to_owned(), w)
            })
            .collect();
        Self::installed(data_dir, audit, watched)
    }

    /// The re-check for `run`'s upstream: `target` (checked at start-up) runs `command`.
    pub(crate) fn for_run(
        target: &CommandTarget,
        command: &[String],
        data_dir: Option<&Path>,
        audit: Option<AuditLog>,
    ) -> Option<std::sync::Arc<dyn warden_session::Prelaunch>> {
        let (program, args) = command.split_first()?;
        let w = Watched {
            pin_id: target.pin_id.clone(),
            mode: target.mode,
            program: program.clone(),
            args: args.to_vec(),
            cwd: None,
        };
        Self::installed(data_dir, audit, [(target.name.clone(), w)].into())
    }
}

impl warden_session::Prelaunch for Recheck {
    fn check<'a>(
        &'a self,
        upstream: &'a str,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = warden_session::PrelaunchResult> + Send + 'a>,
    > {
        Box::pin(async move {
            let Some(w) = self.watched.get(upstream) else {
                return Ok(None);
            };
            let (name, program, args, cwd, data_dir) = (
                upstream.to_owned(),
                w.program.clone(),
                w.args.clone(),
                w.cwd.clone(),
                self.data_dir.clone(),
            );
            // Hashing an executable is blocking file I/O (a node binary is ~100 MB).
            let (snapshot, identity) = tokio::task::spawn_blocking(move || {
                observe(
                    &name,
                    &program,
                    &args,
                    cwd.as_deref(),
                    Some(&data_dir),
                    &crate::commands::env(),
                )
            })
            .await
            .map_err(|_| "the command check did not finish".to_owned())?
            .map_err(|e| format!("{e:#}"))?;
            let target = CommandTarget {
                name: upstream.to_owned(),
                pin_id: w.pin_id.clone(),
                mode: w.mode,
                snapshot,
                identity,
            };
            let verdicts = verify(Some(&self.data_dir), vec![target], self.audit.as_ref())
                .await
                .map_err(|e| format!("{e:#}"))?;
            match verdicts.refused.into_iter().next() {
                Some((_, message)) => Err(message),
                None => Ok(identity),
            }
        })
    }
}
