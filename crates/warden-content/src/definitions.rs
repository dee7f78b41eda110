//! Poisoning analysis of definitions: tools and prompts on list results, and the server's
//! instructions on `initialize` / `server/discover` results.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use futures::FutureExt as _;
use futures::future::BoxFuture;
use serde_json::Value;
use warden_detect::{Context, Finding, TextKind, Verdict as DetectVerdict};
use warden_guard::{Call, Denial, Direction, Guard, GuardError, Report, Verdict};
use warden_proto::ErrorCode;

use crate::mode::{ContentModes, Mode};

/// Checklist controls the definition guards enforce.
pub const CONTROLS: &[&str] = &["PROMPT-7", "MGMT-4", "PROMPT-2", "MULTI-2"];

/// Guard name in audit records and `check`.
pub const NAME: &str = "poisoning";

/// The client-facing name of tool `raw` of upstream `upstream`.
pub type Exposure = Arc<dyn Fn(&str, &str) -> String + Send + Sync>;

/// State shared by the list guard and the call guard.
pub struct Poisoning {
    modes: ContentModes,
    expose: Exposure,
    /// (upstream, raw name) of definitions withheld, and their client-facing names, per
    /// [`Item`] (a tool and a prompt may share a name).
    blocked: [Mutex<HashSet<(String, String)>>; 3],
    blocked_names: [Mutex<HashSet<String>>; 3],
}

/// What a withheld definition defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item {
    Tool = 0,
    Prompt = 1,
    /// Keyed by URI, which the gateway does not rename.
    Resource = 2,
}

impl Item {
    fn noun(self) -> &'static str {
        match self {
            Item::Tool => "tool",
            Item::Prompt => "prompt",
            Item::Resource => "resource",
        }
    }
}

impl std::fmt::Debug for Poisoning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poisoning")
            .field("modes", &self.modes)
            .finish_non_exhaustive()
    }
}

impl Poisoning {
    /// Poisoning analysis under `modes`; `expose` names tools as the client sees them.
    pub fn new(modes: ContentModes, expose: Exposure) -> Arc<Self> {
        Arc::new(Self {
            modes,
            expose,
            blocked: Default::default(),
            blocked_names: Default::default(),
        })
    }

    /// The guard for list and initialize results (install in `Stage::Poisoning`).
    pub fn list_guard(self: &Arc<Self>) -> Arc<dyn Guard> {
        Arc::new(DefinitionGuard(self.clone()))
    }

    /// The guard refusing calls to withheld tools (install in `Stage::PoisonedCall`).
    pub fn call_guard(self: &Arc<Self>) -> Arc<dyn Guard> {
        Arc::new(PoisonedCallGuard(self.clone()))
    }

    fn set_blocked(&self, item: Item, upstream: &str, raw: &str, blocked: bool) {
        let key = (upstream.to_owned(), raw.to_owned());
        let name = match item {
            Item::Resource => raw.to_owned(),
            _ => (self.expose)(upstream, raw),
        };
        let mut b = self.blocked[item as usize]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut n = self.blocked_names[item as usize]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if blocked {
            b.insert(key);
            n.insert(name);
        } else {
            b.remove(&key);
            n.remove(&name);
        }
    }

    fn is_blocked(
        &self,
        item: Item,
        upstream: Option<&str>,
        raw: Option<&str>,
        client_name: &str,
    ) -> bool {
        // Nothing withheld is the usual case: answered without building the owned key.
        if let (Some(u), Some(r)) = (upstream, raw) {
            let blocked = self.blocked[item as usize]
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if !blocked.is_empty() && blocked.contains(&(u.to_owned(), r.to_owned())) {
                return true;
            }
        }
        let names = self.blocked_names[item as usize]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        !names.is_empty() && names.contains(client_name)
    }
}

fn log_findings(upstream: &str, what: &str, name: &str, findings: &[Finding], withheld: bool) {
    for f in findings {
        tracing::warn!(
            upstream,
            item = what,
            name,
            rule = f.rule,
            severity = %f.severity,
            location = %f.location,
            withheld,
            "suspicious definition"
        );
    }
}

fn rewrite(value: Value) -> Result<Verdict, GuardError> {
    Verdict::rewrite(NAME, value)
}

/// `report` mode: what `block` would have withheld, let through and audited (item kind, name,
/// rule ids and locations; never the text).
#[derive(Default)]
struct Reported(Vec<String>);

impl Reported {
    fn add(&mut self, what: &str, name: &str, findings: &[Finding]) {
        let rules: Vec<String> = findings
            .iter()
            .map(|f| format!("{} at {}", f.rule, f.location))
            .collect();
        self.0
            .push(format!("{what} `{name}`: {}", rules.join(", ")));
    }

    fn verdict(self) -> Verdict {
        if self.0.is_empty() {
            return Verdict::Continue;
        }
        Verdict::Report(Report {
            detail: self.0.join("; "),
            controls: CONTROLS,
        })
    }
}

/// Analyses definitions on list and initialize results.
pub struct DefinitionGuard(Arc<Poisoning>);

impl DefinitionGuard {
    fn check_sync(&self, call: &Call<'_>) -> Result<Verdict, GuardError> {
        if call.direction != Direction::ToClient || call.message.method().is_some() {
            return Ok(Verdict::Continue);
        }
        let upstream = call.upstream.unwrap_or("");
        let mode = self.0.modes.of(call.upstream).poisoning;
        if mode == Mode::Off {
            return Ok(Verdict::Continue);
        }
        // Only these answers carry definitions: any other result (a tool call's above all)
        // is not parsed here.
        if !matches!(
            call.request_method,
            Some(
                "tools/list"
                    | "prompts/list"
                    | "resources/list"
                    | "resources/templates/list"
                    | "initialize"
                    | "server/discover"
            )
        ) {
            return Ok(Verdict::Continue);
        }
        let block = mode == Mode::Block || mode == Mode::Redact;
        let Some(result) = call.message.result() else {
            return Ok(Verdict::Continue);
        };
        match call.request_method {
            Some("tools/list") => {
                let Some(tools) = result.get("tools").and_then(Value::as_array) else {
                    return Ok(Verdict::Continue);
                };
                let findings = warden_detect::analyze_tools(tools);
                let mut kept = Vec::with_capacity(tools.len());
                let mut withheld = 0;
                let mut reported = Reported::default();
                for (tool, found) in tools.iter().zip(findings) {
                    let name = tool.get("name").and_then(Value::as_str).unwrap_or("");
                    let verdict = DetectVerdict::from_findings(&found);
                    let bad = verdict == DetectVerdict::Block;
                    log_findings(upstream, "tool", name, &found, bad && block);
                    self.0.set_blocked(Item::Tool, upstream, name, bad && block);
                    if bad && block {
                        withheld += 1;
                    } else {
                        if bad {
                            reported.add("tool", name, &found);
                        }
                        kept.push(tool.clone());
                    }
                }
                if withheld == 0 {
                    return Ok(reported.verdict());
                }
                let mut value = call.message.value().clone();
                value["result"]["tools"] = Value::Array(kept);
                rewrite(value)
            }
            Some(method @ ("prompts/list" | "resources/list" | "resources/templates/list")) => {
                let (key, kind, item) = match method {
                    "prompts/list" => ("prompts", "prompt", Some(Item::Prompt)),
                    "resources/list" => ("resources", "resource", Some(Item::Resource)),
                    _ => ("resourceTemplates", "resource template", None),
                };
                let Some(items) = result.get(key).and_then(Value::as_array) else {
                    return Ok(Verdict::Continue);
                };
                let mut kept = Vec::with_capacity(items.len());
                let mut withheld = 0;
                let mut reported = Reported::default();
                for (i, p) in items.iter().enumerate() {
                    let name = p.get("name").and_then(Value::as_str).unwrap_or("");
                    // A prompt or a resource is a definition like a tool: the same analysis of
                    // all its strings (name, title, description, ...).
                    let found = warden_detect::analyze_tool(
                        p,
                        &Context {
                            path: format!("{key}[{i}]"),
                        },
                    );
                    let bad = DetectVerdict::from_findings(&found) == DetectVerdict::Block;
                    log_findings(upstream, kind, name, &found, bad && block);
                    // A withheld resource is refused by its URI, the name of the others.
                    let id = match item {
                        Some(Item::Resource) => p.get("uri").and_then(Value::as_str),
                        _ => Some(name),
                    };
                    if let (Some(item), Some(id)) = (item, id) {
                        self.0.set_blocked(item, upstream, id, bad && block);
                    }
                    if bad && block {
                        withheld += 1;
                    } else {
                        if bad {
                            reported.add(kind, name, &found);
                        }
                        kept.push(p.clone());
                    }
                }
                if withheld == 0 {
                    return Ok(reported.verdict());
                }
                let mut value = call.message.value().clone();
                value["result"][key] = Value::Array(kept);
                rewrite(value)
            }
            Some("initialize" | "server/discover") => {
                let Some(text) = result.get("instructions").and_then(Value::as_str) else {
                    return Ok(Verdict::Continue);
                };
                let found = warden_detect::analyze_text(text, TextKind::ServerInstructions);
                let bad = DetectVerdict::from_findings(&found) == DetectVerdict::Block;
                log_findings(upstream, "instructions", "", &found, bad && block);
                if !(bad && block) {
                    let mut reported = Reported::default();
                    if bad {
                        reported.add("instructions", "", &found);
                    }
                    return Ok(reported.verdict());
                }
                let mut value = call.message.value().clone();
                if let Some(Value::Object(r)) = value.get_mut("result") {
                    r.remove("instructions");
                }
                rewrite(value)
            }
            _ => Ok(Verdict::Continue),
        }
    }
}

impl Guard for DefinitionGuard {
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

/// Refuses what the definition guard withheld: calls to its tools, `prompts/get` of its
/// prompts, `resources/read` and `resources/subscribe` of its resources' URIs.
pub struct PoisonedCallGuard(Arc<Poisoning>);

impl PoisonedCallGuard {
    fn decide(&self, call: &Call<'_>) -> Verdict {
        let (item, name) = match call.called_tool() {
            Some(name) => (Item::Tool, name),
            None if call.direction == Direction::ToUpstream => {
                let (item, key) = match call.message.method() {
                    Some("prompts/get") => (Item::Prompt, "name"),
                    Some("resources/read" | "resources/subscribe") => (Item::Resource, "uri"),
                    _ => return Verdict::Continue,
                };
                match call
                    .message
                    .params()
                    .and_then(|p| p.get(key))
                    .and_then(Value::as_str)
                {
                    Some(name) => (item, name),
                    None => return Verdict::Continue,
                }
            }
            None => return Verdict::Continue,
        };
        let upstream = call.target.map(|t| t.upstream.as_ref());
        let raw = match item {
            // URIs are not renamed: the client's is the upstream's.
            Item::Resource => Some(name),
            _ => call.target.and_then(|t| t.name.as_deref()),
        };
        if !self.0.is_blocked(item, upstream, raw, name) {
            return Verdict::Continue;
        }
        let noun = item.noun();
        Verdict::Deny(Denial {
            guard: NAME,
            code: ErrorCode::Denied,
            message: format!(
                "{noun} `{name}` is withheld: its definition failed the poisoning analysis"
            ),
            detail: format!("{noun} {name} withheld by poisoning analysis"),
            controls: CONTROLS,
            retry_after: None,
        })
    }
}

impl Guard for PoisonedCallGuard {
    fn name(&self) -> &'static str {
        NAME
    }
    fn controls(&self) -> &'static [&'static str] {
        CONTROLS
    }
    fn check<'a>(&'a self, call: &'a Call<'a>) -> BoxFuture<'a, Result<Verdict, GuardError>> {
        let verdict = self.decide(call);
        async move { Ok(verdict) }.boxed()
    }
    fn check_now(&self, call: &Call<'_>) -> Option<Result<Verdict, GuardError>> {
        Some(Ok(self.decide(call)))
    }
}

#[cfg(test)]
mod tests;
