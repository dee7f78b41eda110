//! `mcp-warden pins list|diff|approve|revoke`: review and decide tool-definition pins.
//!
//! Reads and writes the same pin store as `run` and `serve` (`<data dir>/pins`, the data
//! directory resolved as they resolve it: `--data-dir`, `MCP_WARDEN_DATA_DIR`, `data_dir` in the
//! configuration, the user's data directory). The store is opened per operation, so this works
//! while gateways run, and they see an approval on their next list or call of the tool.
//!
//! Command pins (what a stdio upstream's command runs; see `crate::command_pins`) are listed,
//! diffed, approved and revoked by the same subcommands (`--command`); a gateway reads an
//! approved command on its next start.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};
use warden_pins::record::{INSTRUCTIONS_NAME, Kind};
use warden_pins::{PinBook, ToolRecord, diff};

use crate::cli::Common;

mod command;

/// `mcp-warden pins`.
#[derive(Debug, Args)]
pub(crate) struct PinsArgs {
    #[command(subcommand)]
    pub(crate) command: PinsCommand,
}

/// Output format of the `pins` subcommands.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq, Default)]
pub(crate) enum PinsFormat {
    /// For people.
    #[default]
    Text,
    /// One JSON document (see docs/pinning.md).
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum PinsCommand {
    /// Pinned tools and their status (pinned, changed, added, removed).
    List {
        #[command(flatten)]
        common: Common,
        /// Only this upstream (its configured name, or the pin name `run` shows).
        #[arg(long)]
        upstream: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: PinsFormat,
    },
    /// Differences between pinned and pending definitions (pretty canonical JSON).
    Diff {
        #[command(flatten)]
        common: Common,
        /// Only this upstream.
        upstream: Option<String>,
        /// Only this tool.
        #[arg(conflicts_with = "command")]
        tool: Option<String>,
        /// Only command pins (what the upstream's command runs).
        #[arg(long)]
        command: bool,
        #[arg(long, value_enum, default_value_t)]
        format: PinsFormat,
    },
    /// Pins the pending definition of a tool (or of every held tool of an upstream).
    Approve {
        #[command(flatten)]
        common: Common,
        /// The upstream.
        upstream: String,
        /// The tool, as the upstream names it.
        #[arg(required_unless_present_any = ["all", "instructions", "command"], conflicts_with_all = ["all", "instructions", "command"])]
        tool: Option<String>,
        /// The server's pending `instructions` instead of a tool.
        #[arg(long, conflicts_with_all = ["all", "command"])]
        instructions: bool,
        /// The upstream's pending command (changed executable, script or package version).
        #[arg(long, conflicts_with = "all")]
        command: bool,
        /// Every pending definition of the upstream (tools, instructions and command).
        #[arg(long)]
        all: bool,
        /// Approve only if the pending definition still has this hash (from `pins diff`).
        #[arg(long, value_name = "SHA256", conflicts_with = "all")]
        hash: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: PinsFormat,
    },
    /// Removes a pin: the tool is then new on its next sight (held until approved). With
    /// `--all`, removes every pin of the upstream: its next list is pinned as a first sight.
    Revoke {
        #[command(flatten)]
        common: Common,
        /// The upstream.
        upstream: String,
        /// The tool, as the upstream names it.
        #[arg(required_unless_present_any = ["all", "instructions", "command"], conflicts_with_all = ["all", "instructions", "command"])]
        tool: Option<String>,
        /// The pin of the server's `instructions` instead of a tool.
        #[arg(long, conflicts_with_all = ["all", "command"])]
        instructions: bool,
        /// The pin of the upstream's command: its next start pins it as a first use.
        #[arg(long, conflicts_with = "all")]
        command: bool,
        /// Every pin of the upstream (tools, instructions, command), and its baseline.
        #[arg(long)]
        all: bool,
        #[arg(long, value_enum, default_value_t)]
        format: PinsFormat,
    },
}

impl PinsCommand {
    fn common(&self) -> &Common {
        match self {
            Self::List { common, .. }
            | Self::Diff { common, .. }
            | Self::Approve { common, .. }
            | Self::Revoke { common, .. } => common,
        }
    }
}

/// Runs `pins`.
pub(crate) fn pins(args: PinsArgs) -> anyhow::Result<ExitCode> {
    let common = args.command.common();
    let prepared = super::prepare(common, "warn", false)?;
    let data_dir = prepared
        .config
        .resolve_data_dir(common.data_dir.as_deref(), &super::env())
        .context("cannot locate the pin store")?;
    let book = PinBook::file(&data_dir);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let out = runtime.block_on(execute(&book, args.command))?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")?;
    Ok(ExitCode::SUCCESS)
}

async fn execute(book: &PinBook, command: PinsCommand) -> anyhow::Result<String> {
    match command {
        PinsCommand::List {
            upstream, format, ..
        } => {
            let records = book.list(upstream.as_deref()).await?;
            let commands = book.commands(upstream.as_deref()).await?;
            Ok(match format {
                PinsFormat::Json => json_doc(&Value::Array(
                    records
                        .iter()
                        .map(list_entry)
                        .chain(commands.iter().map(command::list_entry))
                        .collect(),
                )),
                PinsFormat::Text if records.is_empty() && !commands.is_empty() => {
                    command::list_text(&commands)
                }
                PinsFormat::Text => list_text(&records) + &command::list_text(&commands),
            })
        }
        PinsCommand::Diff {
            upstream,
            tool,
            command: only_command,
            format,
            ..
        } => {
            let records: Vec<ToolRecord> = if only_command {
                Vec::new()
            } else {
                book.list(upstream.as_deref())
                    .await?
                    .into_iter()
                    .filter(|r| r.pending.is_some())
                    .filter(|r| tool.as_deref().is_none_or(|t| t == r.tool))
                    .collect()
            };
            let commands: Vec<warden_pins::command::CommandRecord> = if tool.is_some() {
                Vec::new()
            } else {
                book.commands(upstream.as_deref())
                    .await?
                    .into_iter()
                    .filter(|r| r.pending.is_some())
                    .collect()
            };
            Ok(match format {
                PinsFormat::Json => json_doc(&Value::Array(
                    records
                        .iter()
                        .map(diff_entry)
                        .chain(commands.iter().map(command::diff_entry))
                        .collect(),
                )),
                PinsFormat::Text if records.is_empty() && commands.is_empty() => {
                    "no pending definitions\n".to_owned()
                }
                PinsFormat::Text => records
                    .iter()
                    .map(diff_text)
                    .chain(commands.iter().map(command::diff_text))
                    .collect(),
            })
        }
        PinsCommand::Approve {
            upstream,
            command: true,
            hash,
            format,
            ..
        } => {
            let rec = book
                .approve_command(&upstream, hash.as_deref())
                .await
                .with_context(|| format!("cannot approve the command of upstream {upstream:?}"))?;
            Ok(command::approved(&[rec], format))
        }
        PinsCommand::Approve {
            upstream,
            tool,
            instructions,
            all,
            hash,
            format,
            ..
        } => {
            // (kind, tool name) of each definition to approve.
            let items: Vec<(Kind, String)> = match (tool, instructions) {
                (Some(t), _) => vec![(Kind::Tool, t)],
                (None, true) => vec![(Kind::Instructions, String::new())],
                (None, false) => book
                    .list(Some(&upstream))
                    .await?
                    .into_iter()
                    .filter(|r| r.pending.is_some())
                    .map(|r| (r.kind, r.tool))
                    .collect(),
            };
            let mut approved = vec![];
            for (kind, t) in items {
                let rec = match kind {
                    Kind::Tool => book.approve(&upstream, &t, hash.as_deref()).await,
                    Kind::Instructions => {
                        book.approve_instructions(&upstream, hash.as_deref()).await
                    }
                }
                .with_context(|| format!("cannot approve {t:?} of upstream {upstream:?}"))?;
                approved.push(rec);
            }
            // `--all` covers a pending command too.
            let mut commands = vec![];
            if all
                && book
                    .command(&upstream)
                    .await?
                    .is_some_and(|r| r.pending.is_some())
            {
                commands.push(
                    book.approve_command(&upstream, None)
                        .await
                        .with_context(|| {
                            format!("cannot approve the command of upstream {upstream:?}")
                        })?,
                );
            }
            Ok(match format {
                PinsFormat::Json => json_doc(&Value::Array(
                    approved
                        .iter()
                        .map(|r| json!({"upstream": r.upstream, "kind": r.kind, "tool": r.tool, "hash": pinned_hash(r)}))
                        .chain(command::approved_entries(&commands))
                        .collect(),
                )),
                PinsFormat::Text if approved.is_empty() && commands.is_empty() => {
                    format!("upstream {upstream:?} has no pending definitions\n")
                }
                PinsFormat::Text => approved
                    .iter()
                    .map(|r| format!("approved {}/{} {}\n", r.upstream, r.tool, pinned_hash(r)))
                    .collect::<String>()
                    + &command::approved(&commands, format),
            })
        }
        PinsCommand::Revoke {
            upstream,
            command: true,
            format,
            ..
        } => {
            let revoked = book.revoke_command(&upstream).await?;
            Ok(match format {
                PinsFormat::Json => json_doc(
                    &json!({"upstream": upstream, "kind": "command", "tool": Value::Null, "revoked": usize::from(revoked)}),
                ),
                PinsFormat::Text if revoked => format!(
                    "revoked the command pin of {upstream}; its next start pins its command as a first use\n"
                ),
                PinsFormat::Text => format!("no command pin for {upstream}\n"),
            })
        }
        PinsCommand::Revoke {
            upstream,
            tool,
            instructions,
            format,
            ..
        } => {
            let revoked = match (&tool, instructions) {
                (Some(t), _) => usize::from(book.revoke(&upstream, t).await?),
                (None, true) => usize::from(book.revoke_instructions(&upstream).await?),
                (None, false) => {
                    book.revoke_upstream(&upstream).await?
                        + usize::from(book.revoke_command(&upstream).await?)
                }
            };
            let tool = tool.or_else(|| instructions.then(|| INSTRUCTIONS_NAME.to_owned()));
            Ok(match format {
                PinsFormat::Json => {
                    json_doc(&json!({"upstream": upstream, "tool": tool, "revoked": revoked}))
                }
                PinsFormat::Text => match &tool {
                    Some(t) if revoked == 0 => format!("no pin for {upstream}/{t}\n"),
                    Some(t) => format!("revoked {upstream}/{t}\n"),
                    None => format!(
                        "revoked {revoked} pins of {upstream}; its next list is pinned as a first sight\n"
                    ),
                },
            })
        }
    }
}

fn json_doc(v: &Value) -> String {
    // Serialising a Value cannot fail.
    serde_json::to_string_pretty(v).unwrap_or_default() + "\n"
}

fn pinned_hash(r: &ToolRecord) -> &str {
    r.pinned.as_ref().map_or("", |p| p.hash.as_str())
}

fn list_entry(r: &ToolRecord) -> Value {
    json!({
        "upstream": r.upstream,
        "kind": r.kind,
        "tool": r.tool,
        "status": r.status(),
        "pinned_hash": r.pinned.as_ref().map(|p| &p.hash),
        "pinned_at": r.pinned.as_ref().map(|p| p.seen_at),
        "pending_hash": r.pending.as_ref().map(|p| &p.hash),
        "pending_at": r.pending.as_ref().map(|p| p.seen_at),
        "removed_at": r.removed_at,
    })
}

fn diff_entry(r: &ToolRecord) -> Value {
    let old = r.pinned.as_ref().map(|p| &p.definition);
    let new = r.pending.as_ref().map(|p| &p.definition);
    let (removed, added) = diff::counts(old, new);
    json!({
        "upstream": r.upstream,
        "kind": r.kind,
        "tool": r.tool,
        "status": r.status(),
        "pinned_hash": r.pinned.as_ref().map(|p| &p.hash),
        "pending_hash": r.pending.as_ref().map(|p| &p.hash),
        "lines_removed": removed,
        "lines_added": added,
        "diff": diff_text_of(r),
        "pinned": old,
        "pending": new,
    })
}

fn diff_text_of(r: &ToolRecord) -> String {
    let label = |what: &str, hash: Option<&String>| {
        format!(
            "{what} {}/{} {}",
            r.upstream,
            r.tool,
            hash.map_or("(none)", String::as_str)
        )
    };
    diff::unified(
        r.pinned.as_ref().map(|p| &p.definition),
        r.pending.as_ref().map(|p| &p.definition),
        &label("pinned", r.pinned.as_ref().map(|p| &p.hash)),
        &label("pending", r.pending.as_ref().map(|p| &p.hash)),
    )
}

fn diff_text(r: &ToolRecord) -> String {
    format!("{}\n", diff_text_of(r))
}

fn list_text(records: &[ToolRecord]) -> String {
    if records.is_empty() {
        return "no pins\n".to_owned();
    }
    let width_u = records
        .iter()
        .map(|r| r.upstream.len())
        .max()
        .unwrap_or(0)
        .max(8);
    let width_t = records
        .iter()
        .map(|r| r.tool.len())
        .max()
        .unwrap_or(0)
        .max(4);
    let mut out = format!(
        "{:width_u$}  {:width_t$}  {:8}  HASH\n",
        "UPSTREAM", "TOOL", "STATUS"
    );
    for r in records {
        let status = serde_json::to_value(r.status())
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let hash = r
            .pending
            .as_ref()
            .or(r.pinned.as_ref())
            .map_or("", |p| p.hash.get(..19).unwrap_or(&p.hash));
        out.push_str(&format!(
            "{:width_u$}  {:width_t$}  {status:8}  {hash}\n",
            r.upstream,
            // Names come from servers: show control characters escaped, never raw.
            r.tool.escape_debug().to_string()
        ));
    }
    out
}

/// One upstream as pinning sees it: gateway name, pin identity, mode, namespaced in `serve`.
pub(crate) struct PinTarget {
    pub(crate) name: String,
    pub(crate) pin_id: String,
    pub(crate) mode: warden_config::PinningMode,
    pub(crate) namespace: bool,
}

/// The pin identity of `mcp-warden run -- CMD ARGS...` or `run --url URL` (see
/// [`warden_pins::record::derived_pin_id`]).
pub(crate) fn run_pin_id(gateway_name: &str, command: &[String], url: Option<&url::Url>) -> String {
    match url {
        Some(u) => warden_pins::record::derived_pin_id(gateway_name, &["url", u.as_str()]),
        None => {
            let mut parts = vec!["cmd"];
            parts.extend(command.iter().map(String::as_str));
            warden_pins::record::derived_pin_id(gateway_name, &parts)
        }
    }
}

/// Installs the pinning guards for `targets` into `pipeline` (unchanged when every target has
/// pinning off). `transparent`: client-facing names are the upstream's own (`run`).
pub(crate) async fn install(
    pipeline: warden_guard::Pipeline,
    common: &Common,
    config: &warden_config::Config,
    targets: Vec<PinTarget>,
    transparent: bool,
) -> anyhow::Result<warden_guard::Pipeline> {
    use warden_config::PinningMode as Mode;
    use warden_pins::{Exposure, PinMode, Pinning, UpstreamPins};
    if targets.iter().all(|t| t.mode == Mode::Off) {
        return Ok(pipeline);
    }
    let data_dir = config
        .resolve_data_dir(common.data_dir.as_deref(), &super::env())
        .context("tool-definition pinning needs a data directory (or set pinning = \"off\")")?;
    let book = std::sync::Arc::new(PinBook::file(&data_dir));
    let namespaced: std::collections::HashMap<String, bool> = targets
        .iter()
        .map(|t| (t.name.clone(), t.namespace && !transparent))
        .collect();
    let upstreams = targets
        .into_iter()
        .map(|t| {
            let mode = match t.mode {
                Mode::Off => PinMode::Off,
                Mode::Report => PinMode::Report,
                Mode::Block => PinMode::Block,
            };
            (
                t.name,
                UpstreamPins {
                    pin_id: t.pin_id,
                    mode,
                },
            )
        })
        .collect();
    let expose: Exposure = std::sync::Arc::new(move |upstream: &str, raw: &str| {
        if namespaced.get(upstream).copied().unwrap_or(false) {
            warden_session::naming::expose(upstream, raw).0
        } else {
            raw.to_owned()
        }
    });
    let pinning = Pinning::new(book, upstreams, expose);
    pinning.load().await.context("cannot read the pin store")?;
    tracing::debug!(data_dir = ?data_dir, "tool-definition pinning enabled");
    Ok(pipeline
        .with(warden_guard::Stage::Pinning, pinning.list_guard())
        .with(warden_guard::Stage::PinnedCall, pinning.call_guard()))
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> Result<PinsCommand, clap::Error> {
        let mut all = vec!["mcp-warden", "pins"];
        all.extend(args);
        match Cli::try_parse_from(all)?.command {
            Command::Pins(p) => Ok(p.command),
            other => panic!("not pins: {other:?}"),
        }
    }

    #[test]
    fn approve_takes_a_tool_instructions_or_all_but_only_one_of_them() {
        assert!(matches!(
            parse(&["approve", "fx", "fetch", "--hash", "sha256:ab"]).unwrap(),
            PinsCommand::Approve { tool: Some(t), hash: Some(_), all: false, .. } if t == "fetch"
        ));
        assert!(matches!(
            parse(&["approve", "fx", "--all", "--format", "json"]).unwrap(),
            PinsCommand::Approve {
                all: true,
                format: PinsFormat::Json,
                ..
            }
        ));
        assert!(matches!(
            parse(&["approve", "fx", "--instructions"]).unwrap(),
            PinsCommand::Approve {
                instructions: true,
                tool: None,
                ..
            }
        ));
        assert!(parse(&["approve", "fx"]).is_err());
        assert!(parse(&["approve", "fx", "fetch", "--all"]).is_err());
        assert!(parse(&["approve", "fx", "--all", "--hash", "sha256:ab"]).is_err());
        assert!(parse(&["revoke", "fx", "fetch", "--instructions"]).is_err());
    }

    #[test]
    fn command_pins_are_approved_and_revoked_alone_or_with_all() {
        assert!(matches!(
            parse(&["approve", "fx", "--command", "--hash", "sha256:ab"]).unwrap(),
            PinsCommand::Approve {
                command: true,
                tool: None,
                hash: Some(_),
                ..
            }
        ));
        assert!(matches!(
            parse(&["revoke", "fx", "--command"]).unwrap(),
            PinsCommand::Revoke { command: true, .. }
        ));
        assert!(matches!(
            parse(&["diff", "fx", "--command"]).unwrap(),
            PinsCommand::Diff { command: true, .. }
        ));
        // A command is not a tool, not the instructions, and not part of an explicit --all.
        assert!(parse(&["approve", "fx", "fetch", "--command"]).is_err());
        assert!(parse(&["approve", "fx", "--instructions", "--command"]).is_err());
        assert!(parse(&["approve", "fx", "--all", "--command"]).is_err());
        assert!(parse(&["revoke", "fx", "fetch", "--command"]).is_err());
        assert!(parse(&["diff", "fx", "fetch", "--command"]).is_err());
    }

    #[test]
    fn every_subcommand_accepts_the_data_dir() {
        for args in [
            vec!["list", "--data-dir", "/d"],
            vec!["diff", "fx", "--data-dir", "/d"],
            vec!["approve", "fx", "t", "--data-dir", "/d"],
            vec!["revoke", "fx", "--all", "--data-dir", "/d"],
        ] {
            let command = parse(&args).unwrap();
            assert_eq!(
                command.common().data_dir.as_deref(),
                Some(std::path::Path::new("/d"))
            );
        }
    }

    #[test]
    fn run_pin_ids_differ_by_command_line_and_url() {
        let a = run_pin_id("python3", &["python3".into(), "a.py".into()], None);
        let b = run_pin_id("python3", &["python3".into(), "b.py".into()], None);
        let u: url::Url = "https://mcp.example.com/mcp".parse().unwrap();
        let c = run_pin_id("mcp.example.com", &[], Some(&u));
        assert_ne!(a, b);
        assert!(c.starts_with("mcp.example.com@"), "{c}");
        assert_eq!(
            a,
            run_pin_id("python3", &["python3".into(), "a.py".into()], None)
        );
    }
}
