//! MULTI-2 and PROMPT-7 without connecting to anything: the cross-server analysis `serve`'s
//! `cross_server` guard runs on each tool list (`warden_content::cross`), run by `check` on the
//! tool definitions the pin store holds for the configured, enabled upstreams.
//!
//! What is analysed is what clients are served, as far as the pin store tells it:
//! - pins are keyed by the upstream's pin identity, which in `serve` is its configured name;
//! - with `pinning = "block"` only approved definitions that are not held: a changed or added
//!   definition waiting for `mcp-warden pins approve` is withheld from lists, so it is not
//!   analysed (it is counted as held); with `pinning = "report"` lists go through unchanged, so
//!   the latest definition seen (the pending one when there is one) is analysed;
//! - a tool missing from the upstream's last complete list is not analysed;
//! - with `poisoning = "block"` a definition the per-definition analysis blocks is withheld
//!   before the cross-server guard sees the list, so it is left out here too (counted);
//! - an upstream with `poisoning = "off"` is skipped by the guard, and here.
//!
//! Findings below medium severity are dropped, as the guard drops them. Nothing here writes
//! to the pin store or creates it when it is absent.

use std::path::Path;

use serde::Serialize;
use serde_json::Value;
use warden_config::{Config, DefinitionMode, PinningMode};
use warden_detect::text::display_safe;
use warden_detect::{ServerTools, Severity, Verdict};
use warden_pins::record::{Kind, ServerRecord};
use warden_pins::{PIN_STORE_DIR, PinBook, ToolRecord};

/// Where the analysed definitions come from (the `source` field).
const SOURCE: &str = "pins";

/// Longest tool name shown in the table and in rewritten evidence.
const MAX_NAME_CHARS: usize = 48;

/// Longest evidence shown in the table.
const MAX_EVIDENCE_CHARS: usize = 120;

/// The cross-server analysis of the pinned definitions (`cross_server` in `--format json`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CrossServer {
    /// Always `"pins"`: the definitions come from the pin store, no upstream is contacted.
    pub(crate) source: &'static str,
    /// Every enabled upstream of the configuration, in configuration order.
    pub(crate) upstreams: Vec<UpstreamState>,
    /// Findings of medium severity and above, by upstream then tool.
    pub(crate) findings: Vec<CrossFinding>,
}

/// What the pin store held for one upstream.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct UpstreamState {
    /// The configured name.
    pub(crate) upstream: String,
    /// The identity its pins are stored under.
    pub(crate) pin_id: String,
    /// Whether it was analysed, and if not, why.
    pub(crate) state: State,
    /// Definitions analysed (what clients are served).
    pub(crate) tools: usize,
    /// Definitions held by pinning (waiting for approval): not served, not analysed.
    pub(crate) held: usize,
    /// Definitions the poisoning analysis withholds: not served, not analysed.
    pub(crate) withheld: usize,
    /// Why the pin store could not be read (state `unreadable`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

/// Whether an upstream's pinned definitions were analysed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum State {
    /// Its served definitions were compared with the others'.
    Analysed,
    /// Pinning is on but nothing is pinned yet: its tools were never listed through the
    /// gateway.
    NoPins,
    /// `pinning = "off"`: no definitions are stored.
    PinningOff,
    /// `poisoning = "off"`: the `cross_server` guard skips it.
    PoisoningOff,
    /// The pin store could not be read.
    Unreadable,
}

impl State {
    fn describe(self) -> &'static str {
        match self {
            State::Analysed => "analysed",
            State::NoPins => "no pins yet (its tools were never listed through the gateway)",
            State::PinningOff => "pinning off: no stored definitions",
            State::PoisoningOff => "poisoning off: the cross_server guard skips it",
            State::Unreadable => "pin store unreadable",
        }
    }
}

/// One cross-server finding on one served definition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct CrossFinding {
    /// Rule identifier (`poison.name-collision`, `poison.lookalike-name`, ...).
    pub(crate) rule: &'static str,
    /// Severity (medium or above).
    pub(crate) severity: Severity,
    /// The upstream whose definition it is (configured name).
    pub(crate) upstream: String,
    /// The tool, as the upstream names it.
    pub(crate) tool: String,
    /// The field of the definition (`name`, `description`, ...).
    pub(crate) field: String,
    /// Field and byte span, as `inspect` prints locations.
    pub(crate) location: String,
    /// Short evidence naming the other upstream's tool; never definition text beyond names.
    pub(crate) evidence: String,
}

/// One enabled upstream as the `cross_server` guard sees it.
pub(crate) struct Target {
    pub(crate) upstream: String,
    pub(crate) pin_id: String,
    pub(crate) pinning: PinningMode,
    pub(crate) poisoning: DefinitionMode,
}

/// The targets of `serve`: every enabled upstream, pins under its configured name.
pub(crate) fn serve_targets(config: &Config) -> Vec<Target> {
    config
        .upstreams
        .iter()
        .filter(|u| u.enabled)
        .map(|u| Target {
            upstream: u.name.clone(),
            pin_id: u.name.clone(),
            pinning: config.pinning_of(u),
            poisoning: config.content_of(u).poisoning,
        })
        .collect()
}

/// What the pin store says about one pin identity.
pub(crate) enum Stored {
    /// Its records (tools and instructions) and whether a baseline was recorded.
    Records {
        records: Vec<ToolRecord>,
        baseline: bool,
    },
    /// The store could not be read.
    Unreadable(String),
}

/// Reads the pin store under `data_dir` (never creating it) and analyses `targets`.
/// `data_dir` is `Err` with the reason when no data directory could be resolved.
pub(crate) async fn from_pins(
    targets: Vec<Target>,
    data_dir: Result<&Path, String>,
) -> CrossServer {
    let needs_pins = targets
        .iter()
        .any(|t| t.pinning != PinningMode::Off && t.poisoning != DefinitionMode::Off);
    let stored: Vec<Option<Stored>> = if !needs_pins {
        targets.iter().map(|_| None).collect()
    } else {
        match data_dir {
            Err(why) => targets
                .iter()
                .map(|_| Some(Stored::Unreadable(why.clone())))
                .collect(),
            Ok(dir) if !dir.join(PIN_STORE_DIR).exists() => targets
                .iter()
                .map(|_| {
                    Some(Stored::Records {
                        records: Vec::new(),
                        baseline: false,
                    })
                })
                .collect(),
            Ok(dir) => read_all(&PinBook::file(dir), &targets).await,
        }
    };
    analyse(&targets, stored)
}

async fn read_all(book: &PinBook, targets: &[Target]) -> Vec<Option<Stored>> {
    let baselines: Result<Vec<ServerRecord>, String> =
        book.upstreams().await.map_err(|e| error_text(&e));
    let mut out = Vec::with_capacity(targets.len());
    for t in targets {
        if t.pinning == PinningMode::Off || t.poisoning == DefinitionMode::Off {
            out.push(None);
            continue;
        }
        let baselines = match &baselines {
            Ok(b) => b,
            Err(why) => {
                out.push(Some(Stored::Unreadable(why.clone())));
                continue;
            }
        };
        out.push(Some(match book.list(Some(&t.pin_id)).await {
            Ok(records) => Stored::Records {
                records,
                baseline: baselines.iter().any(|b| b.upstream == t.pin_id),
            },
            Err(e) => Stored::Unreadable(error_text(&e)),
        }));
    }
    out
}

/// An error and its causes on one line (store errors name files, never pin contents).
fn error_text(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The definitions of `records` clients are served under `pinning`, and how many are held.
fn served(records: &[ToolRecord], pinning: PinningMode) -> (Vec<Value>, usize) {
    let mut tools = Vec::new();
    let mut held = 0;
    for r in records.iter().filter(|r| r.kind == Kind::Tool) {
        if r.removed_at.is_some() {
            // Missing from the upstream's last complete list: not served.
            continue;
        }
        let definition = match pinning {
            PinningMode::Block if r.is_held() => {
                held += 1;
                continue;
            }
            PinningMode::Block => r.pinned.as_ref(),
            // `report`: lists pass unchanged, so the latest definition seen is served.
            PinningMode::Report | PinningMode::Off => r.pending.as_ref().or(r.pinned.as_ref()),
        };
        if let Some(s) = definition {
            tools.push(s.definition.clone());
        }
    }
    (tools, held)
}

/// The analysis proper: `stored[i]` is what the store holds for `targets[i]` (`None`: not
/// read, because pinning or poisoning is off for it).
pub(crate) fn analyse(targets: &[Target], stored: Vec<Option<Stored>>) -> CrossServer {
    let mut upstreams = Vec::with_capacity(targets.len());
    // (index into `upstreams`, served definitions)
    let mut lists: Vec<(usize, Vec<Value>)> = Vec::new();
    for (t, s) in targets.iter().zip(stored) {
        let mut state = UpstreamState {
            upstream: t.upstream.clone(),
            pin_id: t.pin_id.clone(),
            state: State::Analysed,
            tools: 0,
            held: 0,
            withheld: 0,
            error: None,
        };
        if t.poisoning == DefinitionMode::Off {
            state.state = State::PoisoningOff;
        } else if t.pinning == PinningMode::Off {
            state.state = State::PinningOff;
        } else {
            match s {
                None => state.state = State::NoPins,
                Some(Stored::Unreadable(why)) => {
                    state.state = State::Unreadable;
                    state.error = Some(why);
                }
                Some(Stored::Records { records, baseline }) => {
                    if !baseline && records.iter().all(|r| r.kind != Kind::Tool) {
                        state.state = State::NoPins;
                    } else {
                        let (mut tools, held) = served(&records, t.pinning);
                        state.held = held;
                        if t.poisoning == DefinitionMode::Block {
                            // The definition guard withholds these before the cross-server
                            // guard sees the list.
                            let verdicts = warden_detect::analyze_tools(&tools);
                            let before = tools.len();
                            let mut keep = verdicts
                                .iter()
                                .map(|f| Verdict::from_findings(f) != Verdict::Block);
                            tools.retain(|_| keep.next().unwrap_or(true));
                            state.withheld = before - tools.len();
                        }
                        state.tools = tools.len();
                        lists.push((upstreams.len(), tools));
                    }
                }
            }
        }
        upstreams.push(state);
    }
    let servers: Vec<ServerTools<'_>> = lists
        .iter()
        .map(|(i, tools)| ServerTools {
            server: &upstreams[*i].upstream,
            tools,
        })
        .collect();
    let mut findings = Vec::new();
    if servers.len() >= 2 {
        let found = warden_detect::analyze_across_servers(&servers);
        for (server, per_tool) in servers.iter().zip(found) {
            for (tool, list) in server.tools.iter().zip(per_tool) {
                let name = tool.get("name").and_then(Value::as_str).unwrap_or("");
                for f in list.into_iter().filter(|f| f.severity >= Severity::Medium) {
                    findings.push(CrossFinding {
                        rule: f.rule,
                        severity: f.severity,
                        upstream: server.server.to_owned(),
                        tool: name.to_owned(),
                        field: f.location.field.clone(),
                        location: f.location.to_string(),
                        evidence: name_the_tools(&f.evidence, &servers),
                    });
                }
            }
        }
    }
    CrossServer {
        source: SOURCE,
        upstreams,
        findings,
    }
}

/// The engine names another server's tool as `tools[N] of server `S``, `N` being its index in
/// the list analysed, which is meaningless outside this run: replaced by the tool's name.
/// Anything that does not parse is left as it is.
fn name_the_tools(evidence: &str, servers: &[ServerTools<'_>]) -> String {
    const OPEN: &str = "tools[";
    const OF: &str = "] of server `";
    let mut out = String::with_capacity(evidence.len());
    let mut rest = evidence;
    while let Some(at) = rest.find(OPEN) {
        out.push_str(&rest[..at]);
        let after = &rest[at + OPEN.len()..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        let named = after[digits..].strip_prefix(OF).and_then(|tail| {
            let end = tail.find('`')?;
            let server = &tail[..end];
            let index: usize = after[..digits].parse().ok()?;
            let s = servers.iter().find(|s| s.server == server)?;
            let name = s.tools.get(index)?.get("name")?.as_str()?;
            Some(format!("`{}`", display_safe(name, MAX_NAME_CHARS)))
        });
        match named {
            Some(name) => {
                out.push_str(&name);
                rest = &after[digits + 1..];
            }
            None => {
                out.push_str(OPEN);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

impl CrossServer {
    /// Upstreams whose definitions were analysed.
    pub(crate) fn analysed(&self) -> Vec<&str> {
        self.upstreams
            .iter()
            .filter(|u| u.state == State::Analysed)
            .map(|u| u.upstream.as_str())
            .collect()
    }

    /// True when the pin store could not be read for some upstream.
    pub(crate) fn unreadable(&self) -> bool {
        self.upstreams.iter().any(|u| u.state == State::Unreadable)
    }

    /// The sentence the MULTI-2 and PROMPT-7 rows carry.
    pub(crate) fn reason(&self) -> String {
        let analysed = self.analysed();
        let n = self.findings.len();
        let mut text = if analysed.len() < 2 {
            "cross-server analysis of the pin store: fewer than two upstreams have pinned definitions to compare".to_owned()
        } else if n == 0 {
            format!(
                "no cross-server finding on the pinned tool definitions clients are served ({})",
                analysed.join(", ")
            )
        } else {
            format!(
                "{n} cross-server finding{} on the pinned tool definitions clients are served ({}); the `cross_server` guard reports them and withholds nothing",
                if n == 1 { "" } else { "s" },
                analysed.join(", ")
            )
        };
        let skipped: Vec<String> = self
            .upstreams
            .iter()
            .filter(|u| u.state != State::Analysed)
            .map(|u| format!("{} ({})", u.upstream, u.state.describe()))
            .collect();
        if !skipped.is_empty() {
            text.push_str(&format!("; not analysed: {}", skipped.join(", ")));
        }
        let held: usize = self.upstreams.iter().map(|u| u.held).sum();
        if held > 0 {
            text.push_str(&format!(
                "; {held} held definition{} (not served) left out",
                if held == 1 { "" } else { "s" }
            ));
        }
        if n == 0 && analysed.len() >= 2 {
            text.push_str("; the `cross_server` guard is report-only");
        }
        text
    }

    /// The table section: one line per upstream, then one per finding.
    pub(crate) fn table(&self, controls: &[&str]) -> String {
        let mut out = format!(
            "\nCross-server analysis ({}) of the pinned tool definitions clients are served, read from the pin store (no upstream contacted):\n",
            controls.join(", ")
        );
        for u in &self.upstreams {
            let mut line = match u.state {
                State::Analysed => format!(
                    "{} tool{} analysed",
                    u.tools,
                    if u.tools == 1 { "" } else { "s" }
                ),
                other => other.describe().to_owned(),
            };
            if u.held > 0 {
                line.push_str(&format!(", {} held (not served)", u.held));
            }
            if u.withheld > 0 {
                line.push_str(&format!(", {} withheld as poisoned", u.withheld));
            }
            if let Some(e) = &u.error {
                line.push_str(&format!(": {}", display_safe(e, MAX_EVIDENCE_CHARS)));
            }
            out.push_str(&format!("  {:<20} {line}\n", u.upstream));
        }
        match self.findings.len() {
            0 => out.push_str("No cross-server findings.\n"),
            n => {
                out.push_str(&format!(
                    "{n} finding{} (reported by the `cross_server` guard, never withheld):\n",
                    if n == 1 { "" } else { "s" }
                ));
                for f in &self.findings {
                    out.push_str(&format!(
                        "  {:<8} {:<32} {}/{} at {}: {}\n",
                        f.severity.to_string(),
                        f.rule,
                        f.upstream,
                        display_safe(&f.tool, MAX_NAME_CHARS),
                        display_safe(&f.location, MAX_NAME_CHARS),
                        display_safe(&f.evidence, MAX_EVIDENCE_CHARS),
                    ));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
