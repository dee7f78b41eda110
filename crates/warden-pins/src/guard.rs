//! The pinning guards: [`PinListGuard`] on list results, [`PinCallGuard`] on calls.
//!
//! Both share one [`Pinning`]: the per-upstream settings, the [`PinBook`], and the set of tools
//! currently held (with the hash of the definition that made them held). The list guard fills
//! that set; the call guard refuses calls to its members, after re-reading the store, so that an
//! approval made with `mcp-warden pins approve` while the gateway runs releases the tool on its
//! next call or list.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use futures::FutureExt as _;
use futures::future::BoxFuture;
use serde_json::Value;
use warden_guard::{Call, Denial, Direction, Guard, GuardError, Report, Target, Verdict};
use warden_proto::ErrorCode;
use warden_proto::Field;
use warden_proto::fast_map::FastMap;

use crate::book::{PinBook, PinError, tool_name};
use crate::canonical::definition_hash;

/// Checklist controls the pinning guards enforce.
pub const CONTROLS: &[&str] = &["INT-1", "MGMT-1", "MGMT-2", "MGMT-10", "MGMT-11"];

/// What pinning does for one upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PinMode {
    /// No pinning: definitions are neither recorded nor checked.
    Off,
    /// Record pins and changes, log changes, hold nothing.
    Report,
    /// Record pins; hold changed, added and ambiguous definitions until approved.
    #[default]
    Block,
}

/// Pinning settings of one upstream, keyed by the gateway's upstream name.
#[derive(Debug, Clone)]
pub struct UpstreamPins {
    /// The identity pins are stored under: the configured upstream name, or for `run` a name
    /// derived from the command line or URL (so two different servers never share pins).
    pub pin_id: String,
    /// What to do.
    pub mode: PinMode,
}

/// The client-facing name of tool `raw` of gateway upstream `upstream` (`<server>__<tool>`
/// when namespaced, the raw name in `run`).
pub type Exposure = Arc<dyn Fn(&str, &str) -> String + Send + Sync>;

#[derive(Default)]
struct State {
    /// (gateway upstream, raw tool name) -> hash of the held definition ("" if unknown).
    held: HashMap<(String, String), String>,
    /// Names seen on earlier pages of a list being paged through, per gateway upstream.
    pages: HashMap<String, HashSet<String>>,
    /// Gateway upstream -> raw tool name -> hash of the definition last found equal to its
    /// pin (nested so that a call is looked up by its borrowed names).
    verified: FastMap<String, FastMap<String, String>>,
}

impl State {
    fn is_verified(&self, upstream: &str, raw: &str) -> bool {
        self.verified
            .get(upstream)
            .is_some_and(|tools| tools.contains_key(raw))
    }

    fn set_verified(&mut self, (upstream, raw): (String, String), hash: String) {
        self.verified.entry(upstream).or_default().insert(raw, hash);
    }

    fn unverify(&mut self, (upstream, raw): &(String, String)) {
        if let Some(tools) = self.verified.get_mut(upstream) {
            tools.remove(raw);
        }
    }
}

/// Shared state of the two pinning guards.
pub struct Pinning {
    book: Arc<PinBook>,
    upstreams: FastMap<String, UpstreamPins>,
    expose: Exposure,
    state: Mutex<State>,
}

impl std::fmt::Debug for Pinning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pinning")
            .field("book", &self.book)
            .field("upstreams", &self.upstreams)
            .finish_non_exhaustive()
    }
}

impl Pinning {
    /// Pinning over `book` for `upstreams` (keyed by gateway upstream name); upstreams not in
    /// the map are not pinned.
    pub fn new(
        book: Arc<PinBook>,
        upstreams: HashMap<String, UpstreamPins>,
        expose: Exposure,
    ) -> Arc<Self> {
        Arc::new(Self {
            book,
            upstreams: upstreams.into_iter().collect(),
            expose,
            state: Mutex::new(State::default()),
        })
    }

    /// Loads the definitions held by earlier runs, so calls to them are refused before the
    /// first list of this run.
    pub async fn load(&self) -> Result<(), PinError> {
        for (gateway_name, pins) in &self.upstreams {
            if pins.mode != PinMode::Block {
                continue;
            }
            for rec in self.book.list(Some(&pins.pin_id)).await? {
                if rec.is_held() {
                    let hash = rec.pending.map(|p| p.hash).unwrap_or_default();
                    self.state()
                        .held
                        .insert((gateway_name.clone(), rec.tool), hash);
                }
            }
        }
        Ok(())
    }

    /// The guard for list results (install in `Stage::Pinning`).
    pub fn list_guard(self: &Arc<Self>) -> Arc<dyn Guard> {
        Arc::new(PinListGuard(self.clone()))
    }

    /// The guard for calls (install in `Stage::PinnedCall`).
    pub fn call_guard(self: &Arc<Self>) -> Arc<dyn Guard> {
        Arc::new(PinCallGuard(self.clone()))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update is a single insert/remove; a panic elsewhere cannot leave it torn.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn check_list(&self, call: &Call<'_>) -> Result<Verdict, GuardError> {
        if call.direction != Direction::ToClient {
            return Ok(Verdict::Continue);
        }
        match call.request_method {
            Some("tools/list") => {}
            Some("initialize" | "server/discover") => return self.check_instructions(call).await,
            _ => return Ok(Verdict::Continue),
        }
        let Some(upstream) = call.upstream else {
            return Ok(Verdict::Continue);
        };
        let Some(pins) = self
            .upstreams
            .get(upstream)
            .filter(|p| p.mode != PinMode::Off)
        else {
            return Ok(Verdict::Continue);
        };
        let Some(result) = call.message.result() else {
            return Ok(Verdict::Continue);
        };
        let Some(tools) = result.field("tools").and_then(Value::as_array) else {
            return Ok(Verdict::Continue);
        };
        let complete = result.field("nextCursor").is_none_or(Value::is_null);
        let earlier: HashSet<String> = {
            let mut state = self.state();
            if complete {
                state.pages.remove(upstream).unwrap_or_default()
            } else {
                let acc = state.pages.entry(upstream.to_owned()).or_default();
                acc.extend(tools.iter().map(|t| tool_name(t).to_owned()));
                HashSet::new()
            }
        };
        let obs = self
            .book
            .observe(&pins.pin_id, tools, complete, &earlier)
            .await
            .map_err(|e| GuardError::Unavailable {
                guard: NAME,
                source: Box::new(e),
            })?;
        for name in &obs.first_seen {
            tracing::info!(upstream, pin = %pins.pin_id, tool = %name, "tool definition pinned on first sight");
        }
        for (name, hash) in &obs.held {
            tracing::warn!(upstream, pin = %pins.pin_id, tool = %name, hash = %hash, mode = ?pins.mode, "tool definition differs from its pin");
        }
        for name in &obs.removed {
            tracing::warn!(upstream, pin = %pins.pin_id, tool = %name, "pinned tool missing from the upstream's list");
        }
        for name in &obs.ambiguous {
            tracing::warn!(upstream, pin = %pins.pin_id, tool = %name, "tool listed more than once; withheld");
        }
        if pins.mode != PinMode::Block {
            // `warn`: the list goes through unchanged, and the change is audited.
            return Ok(list_report(&pins.pin_id, &obs));
        }
        {
            let mut state = self.state();
            for t in tools {
                let name = tool_name(t);
                let key = (upstream.to_owned(), name.to_owned());
                match obs.held.get(name) {
                    Some(hash) => {
                        state.unverify(&key);
                        state.held.insert(key, hash.clone());
                    }
                    None if obs.ambiguous.iter().any(|n| n == name) => {
                        state.unverify(&key);
                        state.held.insert(key, String::new());
                    }
                    None => {
                        state.held.remove(&key);
                        state.set_verified(key, definition_hash(t));
                    }
                }
            }
        }
        if obs.held.is_empty() && obs.ambiguous.is_empty() {
            return Ok(Verdict::Continue);
        }
        let kept: Vec<Value> = tools
            .iter()
            .filter(|t| {
                let name = tool_name(t);
                !obs.held.contains_key(name) && !obs.ambiguous.iter().any(|n| n == name)
            })
            .cloned()
            .collect();
        let mut value = call.message.value().clone();
        if let Some(slot) = value.get_mut("result").and_then(|r| r.get_mut("tools")) {
            *slot = Value::Array(kept);
        }
        Verdict::rewrite(NAME, value)
    }

    /// Pins the server's `instructions` in an `initialize` or `server/discover` result, and
    /// withholds changed ones (in `block` mode) until approved.
    async fn check_instructions(&self, call: &Call<'_>) -> Result<Verdict, GuardError> {
        let Some(upstream) = call.upstream else {
            return Ok(Verdict::Continue);
        };
        let Some(pins) = self
            .upstreams
            .get(upstream)
            .filter(|p| p.mode != PinMode::Off)
        else {
            return Ok(Verdict::Continue);
        };
        let Some(text) = call
            .message
            .result()
            .and_then(|r| r.field("instructions"))
            .and_then(Value::as_str)
        else {
            return Ok(Verdict::Continue);
        };
        let held = self
            .book
            .observe_instructions(&pins.pin_id, text)
            .await
            .map_err(|e| GuardError::Unavailable {
                guard: NAME,
                source: Box::new(e),
            })?;
        let Some(hash) = held else {
            return Ok(Verdict::Continue);
        };
        tracing::warn!(upstream, pin = %pins.pin_id, hash = %hash, mode = ?pins.mode, "server instructions differ from their pin");
        if pins.mode != PinMode::Block {
            // `warn`: released unchanged, and the change is audited.
            return Ok(Verdict::Report(Report {
                detail: format!(
                    "pin {}: server instructions differ from their pin (sha256 {hash})",
                    pins.pin_id
                ),
                controls: CONTROLS,
            }));
        }
        let mut value = call.message.value().clone();
        if let Some(Value::Object(result)) = value.get_mut("result") {
            result.remove("instructions");
        }
        Verdict::rewrite(NAME, value)
    }

    /// The held tools a call to `name` may be (the session resolves most calls to (upstream,
    /// raw name) before the guards run; a name it could not resolve, for instance because the
    /// held tool was withheld from its catalogue, is matched against the client-facing names
    /// of the held tools).
    fn held_for<'s>(
        &'s self,
        state: &'s State,
        call: &'s Call<'_>,
        name: &'s str,
    ) -> impl Iterator<Item = (&'s (String, String), &'s String)> {
        let resolved = call
            .target
            .and_then(|t| Some((t.upstream.as_ref(), t.name.as_deref()?)));
        state
            .held
            .iter()
            .filter(move |((upstream, raw), _)| match resolved {
                Some((u, n)) => u == upstream && n == raw,
                None => {
                    call.upstream.is_none_or(|u| u == upstream)
                        && (self.expose)(upstream, raw) == name
                }
            })
    }

    /// True when [`Pinning::check_call`] would let the call to `name` through without
    /// consulting the pin store: no held tool matches it, and its resolved definition is not
    /// one to verify or was verified already.
    fn call_settled(&self, call: &Call<'_>, name: &str) -> bool {
        let state = self.state();
        if self.held_for(&state, call, name).next().is_some() {
            return false;
        }
        self.resolved_to_check(call)
            .is_none_or(|(target, raw, _, _)| state.is_verified(&target.upstream, raw))
    }

    /// The definition the session resolved for a call, when this guard must check it against
    /// its pin: (target, raw tool name, definition, the upstream's pins in `block` mode).
    fn resolved_to_check<'c>(
        &self,
        call: &Call<'c>,
    ) -> Option<(&'c Target, &'c str, &'c Value, &UpstreamPins)> {
        let target = call.target?;
        let (raw, definition) = (target.name.as_deref()?, target.tool.as_deref()?);
        let pins = self
            .upstreams
            .get(target.upstream.as_ref())
            .filter(|p| p.mode == PinMode::Block)?;
        Some((target, raw, definition, pins))
    }

    async fn check_call(&self, call: &Call<'_>) -> Result<Verdict, GuardError> {
        let Some(name) = call.called_tool() else {
            return Ok(Verdict::Continue);
        };
        let candidates: Vec<((String, String), String)> = {
            let state = self.state();
            self.held_for(&state, call, name)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        for ((upstream, raw), hash) in candidates {
            let Some(pins) = self
                .upstreams
                .get(&upstream)
                .filter(|p| p.mode == PinMode::Block)
            else {
                continue;
            };
            // The approval may have happened since the list: the store decides.
            let rec =
                self.book
                    .tool(&pins.pin_id, &raw)
                    .await
                    .map_err(|e| GuardError::Unavailable {
                        guard: NAME,
                        source: Box::new(e),
                    })?;
            let released = rec.as_ref().is_some_and(|r| {
                !r.is_held()
                    && (hash.is_empty() || r.pinned.as_ref().is_some_and(|p| p.hash == hash))
            });
            if released {
                tracing::info!(upstream = %upstream, tool = %raw, "held tool released by an approval");
                self.state().held.remove(&(upstream, raw));
                continue;
            }
            return Ok(Verdict::Deny(held_denial(
                name,
                &upstream,
                &pins.pin_id,
                &raw,
                &hash,
            )));
        }
        // A tool no list showed this guard (the session listed it on its own, for a call to a
        // name it did not know): the definition the session resolved must be the pinned one,
        // and is pinned now if this is the upstream's first sight. A tool the list guard has
        // seen is governed by what the lists showed (above): the session's catalogue can be
        // older than the client's last list (`run` forwards lists without refreshing it).
        if let Some((target, raw, definition, pins)) = self.resolved_to_check(call) {
            if self.state().is_verified(&target.upstream, raw) {
                return Ok(Verdict::Continue);
            }
            let key = (target.upstream.to_string(), raw.to_owned());
            let hash = definition_hash(definition);
            let obs = self
                .book
                .observe(
                    &pins.pin_id,
                    std::slice::from_ref(definition),
                    false,
                    &HashSet::new(),
                )
                .await
                .map_err(|e| GuardError::Unavailable {
                    guard: NAME,
                    source: Box::new(e),
                })?;
            if obs.held.is_empty() && obs.ambiguous.is_empty() {
                self.state().set_verified(key, hash);
                return Ok(Verdict::Continue);
            }
            tracing::warn!(upstream = %target.upstream, pin = %pins.pin_id, tool = %raw, hash = %hash, "called tool's definition differs from its pin");
            self.state().held.insert(key.clone(), hash.clone());
            return Ok(Verdict::Deny(held_denial(
                name,
                &key.0,
                &pins.pin_id,
                raw,
                &hash,
            )));
        }
        Ok(Verdict::Continue)
    }
}

/// What a `warn`-mode list observation reports: changed, removed and ambiguous tools (names
/// and hashes only), or `Continue` when the list matches its pins.
fn list_report(pin_id: &str, obs: &crate::book::Observation) -> Verdict {
    let mut parts: Vec<String> = obs
        .held
        .iter()
        .map(|(name, hash)| format!("tool `{name}` differs from its pin (sha256 {hash})"))
        .collect();
    parts.extend(
        obs.removed
            .iter()
            .map(|name| format!("pinned tool `{name}` missing")),
    );
    parts.extend(
        obs.ambiguous
            .iter()
            .map(|name| format!("tool `{name}` listed more than once")),
    );
    if parts.is_empty() {
        return Verdict::Continue;
    }
    Verdict::Report(Report {
        detail: format!("pin {pin_id}: {}", parts.join("; ")),
        controls: CONTROLS,
    })
}

fn held_denial(name: &str, upstream: &str, pin_id: &str, raw: &str, hash: &str) -> Denial {
    Denial {
        guard: NAME,
        code: ErrorCode::Denied,
        message: format!(
            "tool {name:?} is held: its definition changed since it was pinned \
             (review it with `mcp-warden pins diff`, approve it with `mcp-warden pins approve`)"
        ),
        detail: format!(
            "upstream `{upstream}` (pins `{pin_id}`), tool {raw:?}, held definition {hash}"
        ),
        controls: CONTROLS,
        retry_after: None,
    }
}

/// Stable guard name in audit records and `check`.
pub const NAME: &str = "pinning";

/// Pins tool definitions on list results and withholds held ones.
#[derive(Debug)]
pub struct PinListGuard(Arc<Pinning>);

/// Refuses calls to held tools.
#[derive(Debug)]
pub struct PinCallGuard(Arc<Pinning>);

impl Guard for PinListGuard {
    fn name(&self) -> &'static str {
        NAME
    }
    fn controls(&self) -> &'static [&'static str] {
        CONTROLS
    }
    fn check<'a>(&'a self, call: &'a Call<'a>) -> BoxFuture<'a, Result<Verdict, GuardError>> {
        self.0.check_list(call).boxed()
    }
    fn check_now(&self, call: &Call<'_>) -> Option<Result<Verdict, GuardError>> {
        // `check_list`'s first test: only list and handshake results are its business.
        let concerned = call.direction == Direction::ToClient
            && matches!(
                call.request_method,
                Some("tools/list" | "initialize" | "server/discover")
            );
        (!concerned).then_some(Ok(Verdict::Continue))
    }
}

impl Guard for PinCallGuard {
    fn name(&self) -> &'static str {
        NAME
    }
    fn controls(&self) -> &'static [&'static str] {
        CONTROLS
    }
    fn check<'a>(&'a self, call: &'a Call<'a>) -> BoxFuture<'a, Result<Verdict, GuardError>> {
        self.0.check_call(call).boxed()
    }
    fn check_now(&self, call: &Call<'_>) -> Option<Result<Verdict, GuardError>> {
        // Only calls to a named tool are its business, and of those only the ones that may be
        // held or are still to be verified need the pin store.
        let settled = match call.called_tool() {
            None => true,
            Some(name) => self.0.call_settled(call, name),
        };
        settled.then_some(Ok(Verdict::Continue))
    }
}

#[cfg(test)]
mod tests;
