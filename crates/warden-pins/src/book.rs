//! [`PinBook`]: pin records in a [`Store`], read and written in short transactions.
//!
//! The embedded [`FileStore`] is locked exclusively by the process that has it open, and both
//! gateways (`run`, `serve`, possibly several `run` processes sharing one data directory) and the
//! `pins` command must reach the pins while the others run. So the book never keeps a file store
//! open: every operation opens the pin store, does its reads and writes, and closes it,
//! retrying while another process holds it ([`PinBook::file`]). A shared backend (Redis later,
//! memory in tests) is used as is ([`PinBook::shared`]). Either way, an approval made by the CLI
//! is what the gateway reads on its next list or held call: no restart, no watcher.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::{Mutex, MutexGuard};
use tokio::time::{Duration, Instant};
use warden_store::{DynStore, FileStore, Limits, Namespace, Store, StoreError};

use crate::canonical::definition_hash;
use crate::record::{
    INSTRUCTIONS_NAME, Kind, RECORD_VERSION, ServerRecord, Snapshot, ToolRecord, instructions_key,
    now, server_key, tool_key, tool_prefix,
};

/// Directory of the pin store under the data directory. Pins have their own store so that the
/// gateway's other state (sessions, keys) may keep its store open while pins are shared.
pub const PIN_STORE_DIR: &str = "pins";

/// Longest wait for another process to release the pin store: a transaction takes
/// milliseconds, so this is only reached when something is stuck.
pub const LOCK_WAIT: Duration = Duration::from_secs(5);

/// Most tool records read for one upstream: bounds the work of one list (`Store::list`).
pub const MAX_TOOLS_PER_UPSTREAM: usize = 10_000;

/// Why a pin operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// The store failed (or stayed locked by another process for [`LOCK_WAIT`]).
    #[error("the pin store failed")]
    Store(#[source] StoreError),
    /// A stored record is not valid JSON of the expected shape.
    #[error("a pin record of upstream `{upstream}` is unreadable")]
    Corrupt {
        /// The upstream whose record it is.
        upstream: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A list with more tools than [`MAX_TOOLS_PER_UPSTREAM`]: refused rather than let one
    /// upstream fill the store.
    #[error("upstream `{upstream}` listed {count} tools, more than pinning accepts")]
    TooManyTools {
        /// The upstream.
        upstream: String,
        /// How many it listed.
        count: usize,
    },
    /// Approval of a tool that has nothing pending.
    #[error("tool `{tool}` of upstream `{upstream}` has no pending definition")]
    NothingPending {
        /// The upstream.
        upstream: String,
        /// The tool.
        tool: String,
    },
    /// The pending definition changed between `diff` and `approve`.
    #[error("the pending definition of `{tool}` is {actual}, not {expected}")]
    HashMismatch {
        /// The tool.
        tool: String,
        /// The hash the approver saw.
        expected: String,
        /// The hash pending now.
        actual: String,
    },
}

impl From<StoreError> for PinError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

enum Backend {
    Shared(DynStore),
    File(PathBuf),
}

/// Access to the pin records.
pub struct PinBook {
    backend: Backend,
    /// Serialises this process's transactions: two opens of the same file store in one process
    /// would also exclude each other, so they queue here instead of spinning on the lock.
    txn: Mutex<()>,
}

impl std::fmt::Debug for PinBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.backend {
            Backend::Shared(_) => f.write_str("PinBook(shared)"),
            Backend::File(dir) => f.debug_tuple("PinBook").field(dir).finish(),
        }
    }
}

/// One transaction: the store, held open, and this process's turn.
pub(crate) struct Txn<'a> {
    pub(crate) store: DynStore,
    _serial: MutexGuard<'a, ()>,
}

/// What one observed list decided for one upstream.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Observation {
    /// Tools pinned now for the first time (first sight), by name.
    pub first_seen: Vec<String>,
    /// Tools whose definition differs from the pin (or are new after the baseline, or revoked),
    /// by name, with the hash of the definition seen.
    pub held: BTreeMap<String, String>,
    /// Pinned tools missing from this (complete) list.
    pub removed: Vec<String>,
    /// Names listed more than once in this list: they are held without being recorded.
    pub ambiguous: Vec<String>,
}

impl PinBook {
    /// A book over the pin store in `<data_dir>/pins`, opened per transaction.
    pub fn file(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            backend: Backend::File(data_dir.into().join(PIN_STORE_DIR)),
            txn: Mutex::new(()),
        }
    }

    /// A book over a store shared with the rest of the gateway (kept open).
    pub fn shared(store: DynStore) -> Self {
        Self {
            backend: Backend::Shared(store),
            txn: Mutex::new(()),
        }
    }

    pub(crate) async fn begin(&self) -> Result<Txn<'_>, PinError> {
        let serial = self.txn.lock().await;
        let store = match &self.backend {
            Backend::Shared(s) => s.clone(),
            Backend::File(dir) => {
                let deadline = Instant::now() + LOCK_WAIT;
                let mut pause = Duration::from_millis(5);
                loop {
                    match FileStore::open(dir, Limits::default()).await {
                        Ok(s) => break Arc::new(s) as DynStore,
                        Err(StoreError::Locked { .. }) if Instant::now() < deadline => {
                            tokio::time::sleep(pause).await;
                            pause = (pause * 2).min(Duration::from_millis(100));
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        };
        Ok(Txn {
            store,
            _serial: serial,
        })
    }

    /// Records one tool list of `upstream` and decides which tools are held.
    ///
    /// `complete` says this page ends the list: only then are pinned tools missing from it
    /// (and from `earlier`, the names of the list's earlier pages) reported as removed, and only
    /// then does a first list become the baseline. Changes are recorded as pending whatever the
    /// mode; holding them is the caller's decision.
    pub async fn observe(
        &self,
        upstream: &str,
        tools: &[Value],
        complete: bool,
        earlier: &HashSet<String>,
    ) -> Result<Observation, PinError> {
        if tools.len() + earlier.len() > MAX_TOOLS_PER_UPSTREAM {
            return Err(PinError::TooManyTools {
                upstream: upstream.to_owned(),
                count: tools.len() + earlier.len(),
            });
        }
        let txn = self.begin().await?;
        let store = txn.store.as_ref();
        let baseline = store
            .get(Namespace::PIN, &server_key(upstream))
            .await?
            .is_some();
        let mut obs = Observation::default();
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for t in tools {
            *counts.entry(tool_name(t)).or_default() += 1;
        }
        let at = now();
        for t in tools {
            let name = tool_name(t);
            if counts.get(name).copied().unwrap_or(0) > 1 {
                if !obs.ambiguous.iter().any(|n| n == name) {
                    obs.ambiguous.push(name.to_owned());
                }
                continue;
            }
            let hash = definition_hash(t);
            let key = tool_key(upstream, name);
            let snapshot = || Snapshot {
                hash: hash.clone(),
                definition: t.clone(),
                seen_at: at,
            };
            let old = read_tool(store, upstream, &key).await?;
            let new = match &old {
                None if !baseline => {
                    obs.first_seen.push(name.to_owned());
                    ToolRecord {
                        v: RECORD_VERSION,
                        kind: Kind::Tool,
                        upstream: upstream.to_owned(),
                        tool: name.to_owned(),
                        pinned: Some(snapshot()),
                        pending: None,
                        removed_at: None,
                    }
                }
                None => {
                    obs.held.insert(name.to_owned(), hash.clone());
                    ToolRecord {
                        v: RECORD_VERSION,
                        kind: Kind::Tool,
                        upstream: upstream.to_owned(),
                        tool: name.to_owned(),
                        pinned: None,
                        pending: Some(snapshot()),
                        removed_at: None,
                    }
                }
                Some(rec) => {
                    let mut rec = rec.clone();
                    rec.removed_at = None;
                    if rec.pinned.as_ref().is_some_and(|p| p.hash == hash) {
                        // Back to (or still at) the approved definition.
                        rec.pending = None;
                    } else {
                        obs.held.insert(name.to_owned(), hash.clone());
                        if rec.pending.as_ref().is_none_or(|p| p.hash != hash) {
                            rec.pending = Some(snapshot());
                        }
                    }
                    rec
                }
            };
            if old.as_ref() != Some(&new) {
                write_tool(store, &key, &new).await?;
            }
        }
        if complete {
            let mut listed: HashSet<&str> = tools.iter().map(tool_name).collect();
            listed.extend(earlier.iter().map(String::as_str));
            for rec in self.records_in(store, upstream).await? {
                if rec.pinned.is_some() && !listed.contains(rec.tool.as_str()) {
                    obs.removed.push(rec.tool.clone());
                    if rec.removed_at.is_none() {
                        let mut rec = rec;
                        rec.removed_at = Some(at);
                        write_tool(store, &tool_key(upstream, &rec.tool), &rec).await?;
                    }
                }
            }
            if !baseline {
                let server = ServerRecord {
                    v: RECORD_VERSION,
                    upstream: upstream.to_owned(),
                    baseline_at: at,
                };
                store
                    .put(
                        Namespace::PIN,
                        &server_key(upstream),
                        to_bytes(&server),
                        None,
                    )
                    .await?;
            }
        }
        Ok(obs)
    }

    /// Records the server's `instructions` of `upstream`: pinned on first sight; a different
    /// text is recorded as pending. Returns the hash of the text when it differs from the pin.
    pub async fn observe_instructions(
        &self,
        upstream: &str,
        text: &str,
    ) -> Result<Option<String>, PinError> {
        let txn = self.begin().await?;
        let store = txn.store.as_ref();
        let key = instructions_key(upstream);
        let definition = Value::String(text.to_owned());
        let hash = definition_hash(&definition);
        let snapshot = Snapshot {
            hash: hash.clone(),
            definition,
            seen_at: now(),
        };
        let old = read_tool(store, upstream, &key).await?;
        let (new, held) = match &old {
            None => (
                ToolRecord {
                    v: RECORD_VERSION,
                    kind: Kind::Instructions,
                    upstream: upstream.to_owned(),
                    tool: INSTRUCTIONS_NAME.to_owned(),
                    pinned: Some(snapshot),
                    pending: None,
                    removed_at: None,
                },
                false,
            ),
            Some(rec) => {
                let mut rec = rec.clone();
                let held = rec.pinned.as_ref().is_none_or(|p| p.hash != hash);
                if !held {
                    rec.pending = None;
                } else if rec.pending.as_ref().is_none_or(|p| p.hash != hash) {
                    rec.pending = Some(snapshot);
                }
                (rec, held)
            }
        };
        if old.as_ref() != Some(&new) {
            write_tool(store, &key, &new).await?;
        }
        Ok(held.then_some(hash))
    }

    /// The instructions record of `upstream`, if any.
    pub async fn instructions(&self, upstream: &str) -> Result<Option<ToolRecord>, PinError> {
        let txn = self.begin().await?;
        read_tool(txn.store.as_ref(), upstream, &instructions_key(upstream)).await
    }

    /// Pins the pending instructions of `upstream` (optionally only if their hash is
    /// `expected`).
    pub async fn approve_instructions(
        &self,
        upstream: &str,
        expected: Option<&str>,
    ) -> Result<ToolRecord, PinError> {
        self.approve_key(
            upstream,
            &instructions_key(upstream),
            INSTRUCTIONS_NAME,
            expected,
        )
        .await
    }

    /// Removes the pin of the instructions of `upstream`: the next text seen is pinned again.
    pub async fn revoke_instructions(&self, upstream: &str) -> Result<bool, PinError> {
        let txn = self.begin().await?;
        Ok(txn
            .store
            .delete(Namespace::PIN, &instructions_key(upstream))
            .await?)
    }

    /// The record of one tool, if any.
    pub async fn tool(&self, upstream: &str, name: &str) -> Result<Option<ToolRecord>, PinError> {
        let txn = self.begin().await?;
        read_tool(txn.store.as_ref(), upstream, &tool_key(upstream, name)).await
    }

    /// Every tool record of `upstream` (sorted by tool name), or of every upstream.
    pub async fn list(&self, upstream: Option<&str>) -> Result<Vec<ToolRecord>, PinError> {
        let txn = self.begin().await?;
        let store = txn.store.as_ref();
        let mut out = match upstream {
            Some(u) => {
                let mut records = self.records_in(store, u).await?;
                records.extend(read_tool(store, u, &instructions_key(u)).await?);
                records
            }
            None => {
                let mut all = vec![];
                for key in store
                    .list(Namespace::PIN, "instructions:", MAX_TOOLS_PER_UPSTREAM)
                    .await?
                {
                    let upstream = key.strip_prefix("instructions:").unwrap_or("");
                    all.extend(read_tool(store, upstream, &key).await?);
                }
                for key in store
                    .list(Namespace::PIN, "tool:", MAX_TOOLS_PER_UPSTREAM * 16)
                    .await?
                {
                    let upstream = key
                        .strip_prefix("tool:")
                        .and_then(|k| k.rsplit_once(':'))
                        .map_or("", |(u, _)| u);
                    if let Some(rec) = read_tool(store, upstream, &key).await? {
                        all.push(rec);
                    }
                }
                all
            }
        };
        out.sort_by(|a, b| {
            let order = |r: &ToolRecord| (r.upstream.clone(), r.kind == Kind::Instructions);
            order(a).cmp(&order(b)).then_with(|| a.tool.cmp(&b.tool))
        });
        Ok(out)
    }

    /// Upstreams with a baseline (their first complete list was pinned).
    pub async fn upstreams(&self) -> Result<Vec<ServerRecord>, PinError> {
        let txn = self.begin().await?;
        let store = txn.store.as_ref();
        let mut out = vec![];
        for key in store.list(Namespace::PIN, "server:", 100_000).await? {
            if let Some(bytes) = store.get(Namespace::PIN, &key).await? {
                let upstream = key.strip_prefix("server:").unwrap_or(&key).to_owned();
                out.push(
                    serde_json::from_slice(&bytes)
                        .map_err(|source| PinError::Corrupt { upstream, source })?,
                );
            }
        }
        Ok(out)
    }

    /// Pins the pending definition of `tool` (optionally only if its hash is `expected`).
    /// Returns the record as now stored.
    pub async fn approve(
        &self,
        upstream: &str,
        tool: &str,
        expected: Option<&str>,
    ) -> Result<ToolRecord, PinError> {
        self.approve_key(upstream, &tool_key(upstream, tool), tool, expected)
            .await
    }

    async fn approve_key(
        &self,
        upstream: &str,
        key: &str,
        tool: &str,
        expected: Option<&str>,
    ) -> Result<ToolRecord, PinError> {
        let txn = self.begin().await?;
        let store = txn.store.as_ref();
        let mut rec = read_tool(store, upstream, key)
            .await?
            .filter(|r| r.pending.is_some())
            .ok_or_else(|| PinError::NothingPending {
                upstream: upstream.to_owned(),
                tool: tool.to_owned(),
            })?;
        let pending = rec.pending.take().ok_or_else(|| PinError::NothingPending {
            upstream: upstream.to_owned(),
            tool: tool.to_owned(),
        })?;
        if let Some(expected) = expected
            && expected != pending.hash
        {
            return Err(PinError::HashMismatch {
                tool: tool.to_owned(),
                expected: expected.to_owned(),
                actual: pending.hash,
            });
        }
        rec.pinned = Some(pending);
        rec.removed_at = None;
        write_tool(store, key, &rec).await?;
        Ok(rec)
    }

    /// Removes the pin (and any pending definition) of `tool`. Returns whether one existed.
    ///
    /// With the upstream's baseline in place, the tool is then new on its next sight: held until
    /// approved.
    pub async fn revoke(&self, upstream: &str, tool: &str) -> Result<bool, PinError> {
        let txn = self.begin().await?;
        Ok(txn
            .store
            .delete(Namespace::PIN, &tool_key(upstream, tool))
            .await?)
    }

    /// Removes every pin of `upstream` and its baseline: its next list is a first sight again.
    /// Returns how many tool records were removed.
    pub async fn revoke_upstream(&self, upstream: &str) -> Result<usize, PinError> {
        let txn = self.begin().await?;
        let store = txn.store.as_ref();
        let mut removed = 0;
        loop {
            let keys = store
                .list(Namespace::PIN, &tool_prefix(upstream), 1024)
                .await?;
            if keys.is_empty() {
                break;
            }
            for key in keys {
                if store.delete(Namespace::PIN, &key).await? {
                    removed += 1;
                }
            }
        }
        store.delete(Namespace::PIN, &server_key(upstream)).await?;
        if store
            .delete(Namespace::PIN, &instructions_key(upstream))
            .await?
        {
            removed += 1;
        }
        Ok(removed)
    }

    async fn records_in(
        &self,
        store: &dyn Store,
        upstream: &str,
    ) -> Result<Vec<ToolRecord>, PinError> {
        let mut out = vec![];
        for key in store
            .list(
                Namespace::PIN,
                &tool_prefix(upstream),
                MAX_TOOLS_PER_UPSTREAM,
            )
            .await?
        {
            if let Some(rec) = read_tool(store, upstream, &key).await? {
                out.push(rec);
            }
        }
        Ok(out)
    }
}

/// The name of a listed tool; a tool without a string name is recorded under the empty name
/// (and so held as soon as two such tools appear, or its definition changes).
pub(crate) fn tool_name(tool: &Value) -> &str {
    tool.get("name").and_then(Value::as_str).unwrap_or("")
}

async fn read_tool(
    store: &dyn Store,
    upstream: &str,
    key: &str,
) -> Result<Option<ToolRecord>, PinError> {
    let Some(bytes) = store.get(Namespace::PIN, key).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| PinError::Corrupt {
            upstream: upstream.to_owned(),
            source,
        })
}

async fn write_tool(store: &dyn Store, key: &str, rec: &ToolRecord) -> Result<(), PinError> {
    store
        .put(Namespace::PIN, key, to_bytes(rec), None)
        .await
        .map_err(PinError::from)
}

fn to_bytes<T: serde::Serialize>(value: &T) -> Bytes {
    // Records are plain data (strings, numbers, JSON values): serialising cannot fail.
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

#[cfg(test)]
mod tests;
