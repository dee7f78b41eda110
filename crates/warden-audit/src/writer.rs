//! The audit handle the gateway holds, and the writer task behind its bounded queue.
//!
//! The request path never touches the file: it builds an [`Event`], hands it to
//! [`AuditLog::record`] (non-blocking) or [`AuditLog::record_durable`] (waits until the record
//! is on disk, bounded by a timeout), and carries on. One writer task drains the queue in
//! batches, encodes and chains the records and appends them with one `write` per batch on the
//! blocking pool; records that must be durable are synced (`fdatasync`) before their callers
//! are released, so many of them share one sync (group commit).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ring::hmac;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::error::AuditError;
use crate::file::{FileOptions, LogFile};
use crate::keys::{AuditKeys, PublicKey};
use crate::record::{AuditRecord, Content, Event};

/// Most records written in one batch: bounds the latency one batch adds to the records behind it.
const MAX_BATCH: usize = 512;
/// Least time between two "queue full" alerts in the log: a full queue is an alert, not a flood.
const ALERT_INTERVAL: Duration = Duration::from_secs(10);

/// When records reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlushPolicy {
    /// Denials, holds, failed authentications and calls to sensitive tools are synced before
    /// the client learns their outcome; everything else is synced at least every
    /// `sync_interval`.
    #[default]
    Decisions,
    /// Every call's record is synced before its response is sent.
    Always,
    /// Nothing waits for the disk; records are synced every `sync_interval`.
    Batched,
}

/// What happens when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFull {
    /// The operation the record describes is refused (an unaudited call never happens).
    #[default]
    FailClosed,
    /// The record is dropped, counted, and the count is written to the log as soon as there is
    /// room ([`Event::Dropped`]).
    FailOpen,
}

/// How arguments and results are recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Capture {
    /// Size and keyed digest only.
    #[default]
    Digest,
    /// Size, digest and the value with secrets redacted.
    Full,
}

/// Removes secrets from a value before full capture writes it.
pub trait Redactor: Send + Sync + 'static {
    /// Replaces every secret in `value` in place.
    fn redact(&self, value: &mut Value);
}

/// Settings of an audit log.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// The log file.
    pub path: PathBuf,
    /// The key file (created 0600 on first use).
    pub key_file: PathBuf,
    /// When records reach the disk.
    pub flush: FlushPolicy,
    /// Longest time a written record stays unsynced.
    pub sync_interval: Duration,
    /// Queue capacity, in records.
    pub queue: usize,
    /// Full-queue behaviour.
    pub on_full: OnFull,
    /// How long a durable record waits for room in a full queue, and then for the disk.
    pub durable_timeout: Duration,
    /// Argument and result capture.
    pub capture: Capture,
    /// Tool-name patterns (`*` wildcards) whose calls are synced before their response.
    pub sensitive_tools: Vec<String>,
    /// Rotate when the file reaches this size.
    pub rotate_bytes: u64,
    /// Rotate when the file is this old.
    pub rotate_age: Option<Duration>,
    /// Sign a checkpoint after this many records.
    pub checkpoint_every: u64,
    /// Sign a checkpoint at least this often while records arrive.
    pub checkpoint_interval: Duration,
}

impl AuditOptions {
    /// Defaults for a log at `path` with keys in `key_file`.
    pub fn new(path: PathBuf, key_file: PathBuf) -> Self {
        Self {
            path,
            key_file,
            flush: FlushPolicy::Decisions,
            sync_interval: Duration::from_secs(1),
            queue: 4096,
            on_full: OnFull::FailClosed,
            durable_timeout: Duration::from_secs(5),
            capture: Capture::Digest,
            sensitive_tools: vec![],
            rotate_bytes: 64 * 1024 * 1024,
            rotate_age: None,
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(60),
        }
    }
}

enum Item {
    Record(Box<AuditRecord>, Option<oneshot::Sender<bool>>),
    Flush(oneshot::Sender<bool>),
    Close(oneshot::Sender<bool>),
}

struct Shared {
    tx: mpsc::Sender<Item>,
    keys: Arc<AuditKeys>,
    flush: FlushPolicy,
    on_full: OnFull,
    durable_timeout: Duration,
    capture: Capture,
    sensitive: Vec<String>,
    redactor: Option<Arc<dyn Redactor>>,
    dropped: Arc<AtomicU64>,
    last_alert: std::sync::Mutex<Option<Instant>>,
    path: PathBuf,
}

/// The handle on one audit log. Cheap to clone; every clone feeds the same writer.
#[derive(Clone)]
pub struct AuditLog {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.shared.path)
            .field("flush", &self.shared.flush)
            .finish_non_exhaustive()
    }
}

/// Two handles are equal when they feed the same writer.
impl PartialEq for AuditLog {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl Eq for AuditLog {}

impl AuditLog {
    /// Loads (or creates) the keys, opens the log, and starts the writer task on the current
    /// tokio runtime. `redactor` is required for [`Capture::Full`].
    pub fn open(
        opts: AuditOptions,
        redactor: Option<Arc<dyn Redactor>>,
    ) -> Result<AuditLog, AuditError> {
        if opts.capture == Capture::Full && redactor.is_none() {
            return Err(AuditError::NoRedactor);
        }
        let keys = Arc::new(AuditKeys::load_or_create(&opts.key_file)?);
        let file = LogFile::open(
            &opts.path,
            keys.clone(),
            FileOptions {
                rotate_bytes: opts.rotate_bytes.max(1),
                rotate_age: opts.rotate_age,
                checkpoint_every: opts.checkpoint_every,
            },
        )?;
        let (tx, rx) = mpsc::channel(opts.queue.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        tokio::spawn(writer(
            file,
            rx,
            dropped.clone(),
            opts.sync_interval,
            opts.checkpoint_interval,
        ));
        Ok(AuditLog {
            shared: Arc::new(Shared {
                tx,
                keys,
                flush: opts.flush,
                on_full: opts.on_full,
                durable_timeout: opts.durable_timeout,
                capture: opts.capture,
                sensitive: opts.sensitive_tools,
                redactor,
                dropped,
                last_alert: std::sync::Mutex::new(None),
                path: opts.path,
            }),
        })
    }

    /// Queues a record without waiting. With [`OnFull::FailClosed`] a full queue is an error
    /// (the caller refuses the operation); with [`OnFull::FailOpen`] the record is dropped and
    /// counted.
    pub fn record(&self, event: Event) -> Result<(), AuditError> {
        match self
            .shared
            .tx
            .try_send(Item::Record(Box::new(AuditRecord::now(event)), None))
        {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => self.full(),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(AuditError::Closed),
        }
    }

    /// Queues a record and waits until it is on disk (`fdatasync`), waiting at most the
    /// configured durable timeout for room and again for the disk. With
    /// [`OnFull::FailOpen`] a timeout is logged and counted and the caller carries on.
    pub async fn record_durable(&self, event: Event) -> Result<(), AuditError> {
        let (ack, done) = oneshot::channel();
        let item = Item::Record(Box::new(AuditRecord::now(event)), Some(ack));
        let timeout = self.shared.durable_timeout;
        match self.shared.tx.send_timeout(item, timeout).await {
            Ok(()) => {}
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => return self.full(),
            Err(mpsc::error::SendTimeoutError::Closed(_)) => return Err(AuditError::Closed),
        }
        match tokio::time::timeout(timeout, done).await {
            Ok(Ok(true)) => Ok(()),
            _ => {
                self.alert("audit record was not confirmed on disk in time");
                match self.shared.on_full {
                    OnFull::FailOpen => Ok(()),
                    OnFull::FailClosed => Err(AuditError::NotDurable),
                }
            }
        }
    }

    /// [`AuditLog::record_durable`] when the flush policy asks for it for this event
    /// (`sensitive`: the call names a sensitive tool), [`AuditLog::record`] otherwise.
    pub async fn submit(&self, event: Event, sensitive: bool) -> Result<(), AuditError> {
        if self.needs_sync(&event, sensitive) {
            self.record_durable(event).await
        } else {
            self.record(event)
        }
    }

    /// True when the flush policy wants `event` on disk before the client hears of it.
    pub fn needs_sync(&self, event: &Event, sensitive: bool) -> bool {
        match self.shared.flush {
            FlushPolicy::Always => true,
            FlushPolicy::Decisions => sensitive || event.is_denial(),
            FlushPolicy::Batched => false,
        }
    }

    fn full(&self) -> Result<(), AuditError> {
        self.alert("audit queue full");
        match self.shared.on_full {
            OnFull::FailOpen => {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            OnFull::FailClosed => Err(AuditError::QueueFull),
        }
    }

    fn alert(&self, what: &'static str) {
        let now = Instant::now();
        let Ok(mut last) = self.shared.last_alert.lock() else {
            return;
        };
        if last.is_some_and(|t| now.duration_since(t) < ALERT_INTERVAL) {
            return;
        }
        *last = Some(now);
        tracing::error!(
            alert = what,
            path = %self.shared.path.display(),
            depth = self.queue_depth(),
            dropped = self.shared.dropped.load(Ordering::Relaxed),
            fail_closed = self.shared.on_full == OnFull::FailClosed,
            "audit alert"
        );
    }

    /// Waits until everything queued so far is on disk.
    pub async fn flush(&self) -> Result<(), AuditError> {
        let (ack, done) = oneshot::channel();
        self.shared
            .tx
            .send(Item::Flush(ack))
            .await
            .map_err(|_| AuditError::Closed)?;
        match done.await {
            Ok(true) => Ok(()),
            _ => Err(AuditError::NotDurable),
        }
    }

    /// Writes a final checkpoint, syncs, and stops the writer. Later records fail with
    /// [`AuditError::Closed`].
    pub async fn close(&self) -> Result<(), AuditError> {
        let (ack, done) = oneshot::channel();
        self.shared
            .tx
            .send(Item::Close(ack))
            .await
            .map_err(|_| AuditError::Closed)?;
        match done.await {
            Ok(true) => Ok(()),
            _ => Err(AuditError::NotDurable),
        }
    }

    /// Records waiting in the queue.
    pub fn queue_depth(&self) -> usize {
        self.shared.tx.max_capacity() - self.shared.tx.capacity()
    }

    /// Records dropped so far (fail-open only).
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// The public checkpoint key.
    pub fn public_key(&self) -> PublicKey {
        self.shared.keys.public_key()
    }

    /// The log file.
    pub fn path(&self) -> &std::path::Path {
        &self.shared.path
    }

    /// True when calls to `tool` are sensitive (synced before their response under the default
    /// policy).
    pub fn is_sensitive_tool(&self, tool: &str) -> bool {
        self.shared.sensitive.iter().any(|p| glob_match(p, tool))
    }

    /// True when a record can be queued now, or the policy is fail-open: a fail-closed
    /// gateway refuses a call up front rather than perform it unaudited.
    pub fn has_room(&self) -> bool {
        self.shared.on_full == OnFull::FailOpen || self.shared.tx.capacity() > 0
    }

    /// The minimised form of an argument or result: size and keyed digest of its compact JSON,
    /// plus the redacted value under full capture.
    pub fn content(&self, value: &Value) -> Content {
        let bytes = serde_json::to_vec(value).unwrap_or_default();
        self.digest(&bytes, || value.clone())
    }

    /// [`AuditLog::content`] of a message as it travelled (its bytes): the digest covers the
    /// whole JSON-RPC message, which spares the request path a re-encoding.
    pub fn content_bytes(&self, bytes: &[u8]) -> Content {
        self.digest(bytes, || {
            serde_json::from_slice(bytes).unwrap_or(Value::Null)
        })
    }

    fn digest(&self, bytes: &[u8], value: impl FnOnce() -> Value) -> Content {
        let tag = hmac::sign(self.shared.keys.content_key(), bytes);
        let value = match (self.shared.capture, &self.shared.redactor) {
            (Capture::Full, Some(r)) => {
                let mut v = value();
                r.redact(&mut v);
                Some(v)
            }
            _ => None,
        };
        Content {
            bytes: bytes.len() as u64,
            hmac: crate::chain::hex(tag.as_ref()),
            value,
        }
    }
}

/// `*` matches any run of characters; everything else matches itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, rest) = parts.split_first().expect("split yields at least one part");
    let Some(mut remaining) = text.strip_prefix(first) else {
        return false;
    };
    let (last, middle) = rest.split_last().expect("a `*` yields at least two parts");
    for part in middle {
        match remaining.find(part) {
            Some(i) => remaining = &remaining[i + part.len()..],
            None => return false,
        }
    }
    remaining.len() >= last.len() && remaining.ends_with(last)
}

async fn writer(
    file: LogFile,
    mut rx: mpsc::Receiver<Item>,
    dropped: Arc<AtomicU64>,
    sync_interval: Duration,
    checkpoint_interval: Duration,
) {
    let mut file = Some(file);
    let mut dirty = false;
    let mut last_sync = Instant::now();
    let mut last_checkpoint = Instant::now();
    let mut records_since_checkpoint = false;
    loop {
        let deadline = if dirty {
            Some(last_sync + sync_interval)
        } else if records_since_checkpoint {
            Some(last_checkpoint + checkpoint_interval)
        } else {
            None
        };
        let first = match deadline {
            Some(d) => match tokio::time::timeout_at(d, rx.recv()).await {
                Ok(item) => item,
                // Deadline reached: a flush nobody waits for (sync, and checkpoint if due).
                Err(_) => Some(Item::Flush(oneshot::channel().0)),
            },
            None => rx.recv().await,
        };
        let Some(first) = first else {
            // Every handle is gone: close the file cleanly.
            if let Some(mut f) = file.take() {
                let _ = tokio::task::spawn_blocking(move || f.close()).await;
            }
            return;
        };
        let mut records = Vec::new();
        let mut acks = Vec::new();
        let mut sync = false;
        let mut close = None;
        let mut next = Some(first);
        while let Some(item) = next.take() {
            match item {
                Item::Record(r, ack) => {
                    records.push(*r);
                    if let Some(a) = ack {
                        acks.push(a);
                        sync = true;
                    }
                }
                Item::Flush(a) => {
                    acks.push(a);
                    sync = true;
                }
                Item::Close(a) => {
                    close = Some(a);
                    break;
                }
            }
            if records.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        let lost = dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            records.insert(0, AuditRecord::now(Event::Dropped { count: lost }));
        }
        let now = Instant::now();
        if dirty && now >= last_sync + sync_interval {
            sync = true;
        }
        let checkpoint_due = now >= last_checkpoint + checkpoint_interval;
        let closing = close.is_some();
        let Some(mut f) = file.take() else { return };
        let had_records = !records.is_empty();
        // Records this batch stands for: its own, plus the drops its `dropped` record counts.
        let batch_len = records.len() as u64 - u64::from(lost > 0) + lost;
        let joined = tokio::task::spawn_blocking(move || {
            let r = if closing {
                f.write_batch(&records, true, true)
            } else {
                f.write_batch(&records, sync, checkpoint_due)
            };
            (f, r)
        })
        .await;
        let ok = match joined {
            Ok((f, r)) => {
                file = Some(f);
                match r {
                    Ok(()) => true,
                    Err(e) => {
                        // The batch is lost: count it, so the next successful write records
                        // the gap (`dropped`) in the chain itself.
                        dropped.fetch_add(batch_len, Ordering::Relaxed);
                        tracing::error!(error = %e, records = batch_len, "audit write failed");
                        false
                    }
                }
            }
            Err(_) => {
                tracing::error!("audit writer task failed");
                return;
            }
        };
        if had_records {
            records_since_checkpoint = true;
            dirty = true;
        }
        if sync || closing {
            last_sync = now;
            dirty = !ok;
        }
        if checkpoint_due || closing {
            last_checkpoint = now;
            records_since_checkpoint = false;
        }
        for a in acks {
            let _ = a.send(ok);
        }
        if let Some(a) = close {
            let _ = a.send(ok);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn glob_matches_wildcards() {
        assert!(glob_match("*", "anything"));
        assert!(glob_match("delete_*", "delete_file"));
        assert!(!glob_match("delete_*", "undelete_file"));
        assert!(glob_match("*__exec*", "shell__exec_command"));
        assert!(glob_match("a*b*c", "abc"));
        assert!(!glob_match("a*b*c", "acb"));
        assert!(!glob_match("ab*ba", "aba"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
    }
}
