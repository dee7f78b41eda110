//! Cross-server checks on tool lists ([`CrossServerGuard`], stage `poisoning`, after the
//! per-definition analysis): the same tool name on two upstreams, look-alike names across
//! upstreams (UTS #39 skeletons, `read_file_secure` next to `read_file`), and definitions that
//! name another upstream's tools (shadowing, priority hijacking).
//!
//! The gateway guards an aggregated `tools/list` once per upstream, on that upstream's own
//! items, so no single check sees every list. The guard keeps the latest tool list it passed
//! for each upstream (after the poisoning guard withheld what it blocks) and, on each list,
//! checks that upstream's tools against the latest lists of the others. Findings are
//! reported, never blocking: a shared name is not proof of malice (namespacing already keeps
//! routing apart), but it is what a reviewer wants to see. An upstream whose list comes first
//! is told about the later one when it lists again; the later one is told at once.
//!
//! Cost per list: [`warden_detect::analyze_across_servers`] over the kept lists, linear in
//! their text (one automaton over all names, one skeleton per name); no per-definition
//! analysis is repeated.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::FutureExt as _;
use futures::future::BoxFuture;
use serde_json::Value;
use warden_detect::{ServerTools, Severity};
use warden_guard::{Call, Direction, Guard, GuardError, Report, Verdict};
use warden_proto::Field;

use crate::mode::{ContentModes, Mode};

/// Guard name.
pub const NAME: &str = "cross_server";

/// Controls.
pub const CONTROLS: &[&str] = &["MULTI-2", "PROMPT-7"];

/// Most findings named in one audit detail; the rest are counted.
const MAX_DETAILED: usize = 32;

/// Cross-server checks on `tools/list` results; see the module documentation.
pub struct CrossServerGuard {
    modes: ContentModes,
    /// Latest tool list passed per upstream.
    lists: Mutex<HashMap<String, Arc<Vec<Value>>>>,
}

impl CrossServerGuard {
    /// Guard name.
    pub const NAME: &'static str = NAME;
    /// Controls.
    pub const CONTROLS: &'static [&'static str] = CONTROLS;

    /// Runs for upstreams whose `poisoning` mode is not off.
    pub fn new(modes: ContentModes) -> Self {
        Self {
            modes,
            lists: Mutex::new(HashMap::new()),
        }
    }

    fn check_sync(&self, call: &Call<'_>) -> Result<Verdict, GuardError> {
        if call.direction != Direction::ToClient
            || call.message.method().is_some()
            || call.request_method != Some("tools/list")
        {
            return Ok(Verdict::Continue);
        }
        let Some(upstream) = call.upstream else {
            return Ok(Verdict::Continue);
        };
        if self.modes.of(Some(upstream)).poisoning == Mode::Off {
            return Ok(Verdict::Continue);
        }
        let Some(Value::Array(tools)) = call.message.result().and_then(|r| r.field("tools")) else {
            return Ok(Verdict::Continue);
        };
        let mine = Arc::new(tools.clone());
        // Snapshot under the lock, analyse outside it.
        let mut others: Vec<(String, Arc<Vec<Value>>)> = {
            let mut lists = self.lists.lock().unwrap_or_else(|p| p.into_inner());
            lists.insert(upstream.to_owned(), mine.clone());
            lists
                .iter()
                .filter(|(name, _)| name.as_str() != upstream)
                .map(|(name, list)| (name.clone(), list.clone()))
                .collect()
        };
        if others.is_empty() {
            return Ok(Verdict::Continue);
        }
        others.sort_by(|a, b| a.0.cmp(&b.0));
        let mut servers = vec![ServerTools {
            server: upstream,
            tools: &mine,
        }];
        servers.extend(others.iter().map(|(name, list)| ServerTools {
            server: name,
            tools: list,
        }));
        let found = warden_detect::analyze_across_servers(&servers);
        let Some(own) = found.into_iter().next() else {
            return Ok(Verdict::Continue);
        };
        let mut lines = Vec::new();
        let mut total = 0;
        for (tool, findings) in mine.iter().zip(own) {
            let name = tool.field("name").and_then(Value::as_str).unwrap_or("?");
            for f in findings.iter().filter(|f| f.severity >= Severity::Medium) {
                total += 1;
                tracing::warn!(
                    upstream,
                    rule = f.rule,
                    severity = %f.severity,
                    location = %f.location,
                    "cross-server finding on a tool list"
                );
                if lines.len() < MAX_DETAILED {
                    lines.push(format!(
                        "tool `{}`: {} at {}: {}",
                        short(name),
                        f.rule,
                        f.location,
                        f.evidence
                    ));
                }
            }
        }
        if total == 0 {
            return Ok(Verdict::Continue);
        }
        if total > lines.len() {
            lines.push(format!("and {} more", total - lines.len()));
        }
        Ok(Verdict::Report(Report {
            detail: lines.join("; "),
            controls: CONTROLS,
        }))
    }
}

/// At most 64 characters of a name, for the audit detail.
fn short(name: &str) -> String {
    match name.char_indices().nth(64) {
        Some((i, _)) => format!("{}…", &name[..i]),
        None => name.to_owned(),
    }
}

impl Guard for CrossServerGuard {
    fn name(&self) -> &'static str {
        NAME
    }
    fn controls(&self) -> &'static [&'static str] {
        CONTROLS
    }
    fn check<'a>(&'a self, call: &'a Call<'a>) -> BoxFuture<'a, Result<Verdict, GuardError>> {
        let r = self.check_sync(call);
        async move { r }.boxed()
    }
    fn check_now(&self, call: &Call<'_>) -> Option<Result<Verdict, GuardError>> {
        Some(self.check_sync(call))
    }
}

#[cfg(test)]
mod tests;
