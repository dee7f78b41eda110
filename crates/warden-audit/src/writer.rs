//! The audit handle the gateway holds, and the writer thread behind its bounded queue.
//!
//! The request path never touches the file, and pays for as little as it can: it builds an
//! [`Event`] from data at hand (arguments and results as reference-counted message bytes,
//! [`AuditLog::content_deferred`]), stamps it and pushes it onto a bounded in-memory queue
//! under a short uncontended lock, signalling the writer only when it is idle. One dedicated OS
//! thread (not the async runtime, not its blocking pool) drains the queue in batches: it formats
//! timestamps, digests contents, encodes and chains the records and appends them with one
//! `write` per batch. Durable records are synced (`fdatasync`) before their callers are
//! released, so many of them share one sync (group commit), and everything queued before them
//! is on disk with them (FIFO).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use ring::hmac;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::error::AuditError;
use crate::file::{FileOptions, LogFile};
use crate::keys::{AuditKeys, PublicKey};
use crate::record::{AuditRecord, Content, Deferred, Event, Part};

/// Most records written in one batch: bounds the latency one batch adds to the records behind it.
const MAX_BATCH: usize = 512;
/// Least time between two "queue full" alerts in the log: a full queue is an alert, not a flood.
const ALERT_INTERVAL: Duration = Duration::from_secs(10);
/// Default [`AuditOptions::linger`].
pub const DEFAULT_LINGER: Duration = Duration::from_millis(5);
/// How often a caller waiting for room in a full queue looks again.
const ROOM_POLL: Duration = Duration::from_millis(1);

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

/// Receives every record after the writer has appended it to the log, on the writer thread,
/// off the request path: how metrics, alerts and trace exporters see what the gateway did
/// without adding work to a request. A tap must return quickly (hand heavy work to a thread of
/// its own); it sees records in chain order, each exactly once, including records of a batch
/// whose write failed (`written` is false then).
pub trait AuditTap: Send + Sync + std::fmt::Debug + 'static {
    /// Called once per written batch, in order, before anyone waiting for the batch (a durable
    /// record, a flush) is answered.
    fn records(&self, records: &[AuditRecord], written: bool);
}

/// Settings of an audit log.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// The log file.
    pub path: PathBuf,
    /// The key file (created 0600 on first use).
    pub key_file: PathBuf,
    /// Keys held elsewhere (the OS keyring): used instead of `key_file` when set.
    pub keys: Option<Arc<AuditKeys>>,
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
    /// Observers of every written record (metrics, alerts, traces).
    pub taps: Vec<Arc<dyn AuditTap>>,
    /// After writing a batch, how long the writer lets records that nobody waits for gather
    /// before it writes the next one (zero: write each as it comes). Records a caller waits for
    /// (durable records, flushes) end the wait at once, so the flush policy is unchanged; what
    /// this trades is the window of other records a SIGKILL can lose (at most `linger` of them,
    /// still in memory) against one writer wake-up per record on the request path.
    pub linger: Duration,
}

impl AuditOptions {
    /// Defaults for a log at `path` with keys in `key_file`.
    pub fn new(path: PathBuf, key_file: PathBuf) -> Self {
        Self {
            path,
            key_file,
            keys: None,
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
            taps: Vec::new(),
            linger: DEFAULT_LINGER,
        }
    }
}

enum Item {
    Record(SystemTime, Box<Event>, Option<oneshot::Sender<bool>>),
    Flush(oneshot::Sender<bool>),
    Close(oneshot::Sender<bool>),
}

/// The bounded queue between the request path and the writer thread.
struct Queue {
    state: Mutex<QueueState>,
    wake: Condvar,
    capacity: usize,
    /// Queue length at which a lingering writer is woken anyway.
    wake_at: usize,
}

struct QueueState {
    items: VecDeque<Item>,
    /// The writer is blocked waiting for items (a push must signal it).
    idle: bool,
    /// The writer is letting records gather (only a push someone waits for, or one that
    /// fills the queue past `wake_at`, signals it).
    lingering: bool,
    /// An item someone waits for is queued: the writer must not linger.
    urgent: bool,
    /// Every handle is gone: the writer closes the file and stops.
    closed: bool,
}

enum Push {
    Done,
    Full(Item),
    Closed,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // A writer that panicked mid-batch leaves consistent queue state behind (items are
        // only pushed and popped whole), so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Pushes without blocking; signals the writer when it is idle.
    fn push(&self, item: Item) -> Push {
        let mut s = self.lock();
        if s.closed {
            return Push::Closed;
        }
        if s.items.len() >= self.capacity {
            return Push::Full(item);
        }
        let urgent = !matches!(item, Item::Record(_, _, None));
        s.items.push_back(item);
        s.urgent |= urgent;
        let wake = s.idle || (s.lingering && (urgent || s.items.len() >= self.wake_at));
        drop(s);
        if wake {
            self.wake.notify_one();
        }
        Push::Done
    }

    /// Pushes an item a caller waits for, waiting up to `timeout` for room (None: forever).
    async fn push_waiting(&self, mut item: Item, timeout: Option<Duration>) -> Push {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            match self.push(item) {
                Push::Full(back) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Push::Full(back);
                    }
                    item = back;
                    tokio::time::sleep(ROOM_POLL).await;
                }
                other => return other,
            }
        }
    }

    fn len(&self) -> usize {
        self.lock().items.len()
    }

    fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_one();
    }
}

/// What the writer needs to finish records: the content key and the capture mode.
struct Finisher {
    keys: Arc<AuditKeys>,
    capture: Capture,
    redactor: Option<Arc<dyn Redactor>>,
}

impl Finisher {
    fn digest(&self, bytes: &[u8], value: impl FnOnce() -> Value) -> Content {
        let tag = hmac::sign(self.keys.content_key(), bytes);
        let value = match (self.capture, &self.redactor) {
            (Capture::Full, Some(r)) => {
                let mut v = value();
                r.redact(&mut v);
                Some(v)
            }
            _ => None,
        };
        Content::new(bytes.len() as u64, crate::chain::hex(tag.as_ref()), value)
    }

    fn value(&self, value: &Value) -> Content {
        let bytes = serde_json::to_vec(value).unwrap_or_default();
        self.digest(&bytes, || value.clone())
    }

    fn resolve(&self, d: &Deferred) -> Content {
        match d.part {
            Part::Message => self.digest(&d.bytes, || {
                serde_json::from_slice(&d.bytes).unwrap_or(Value::Null)
            }),
            Part::Params | Part::Arguments => {
                // The compact JSON of the part, usually borrowed from the message's bytes.
                let json = crate::compact::part_json(&d.bytes, d.part == Part::Arguments);
                self.digest(&json, || {
                    serde_json::from_slice(&json).unwrap_or(Value::Null)
                })
            }
        }
    }

    /// The record of a queued event: timestamp formatted, deferred contents digested.
    fn finish(&self, at: SystemTime, mut event: Event) -> AuditRecord {
        for c in event.contents_mut() {
            if let Some(d) = c.deferred.take() {
                *c = self.resolve(&d);
            }
        }
        AuditRecord {
            ts: crate::record::timestamp(at),
            event,
        }
    }
}

struct Shared {
    queue: Arc<Queue>,
    finisher: Arc<Finisher>,
    flush: FlushPolicy,
    on_full: OnFull,
    durable_timeout: Duration,
    sensitive: Vec<String>,
    dropped: Arc<AtomicU64>,
    last_alert: Mutex<Option<Instant>>,
    path: PathBuf,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The last handle is gone: the writer writes what is queued, closes the file, stops.
        self.queue.close();
    }
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
    /// Loads (or creates) the keys, opens the log, and starts the writer thread.
    /// `redactor` is required for [`Capture::Full`].
    pub fn open(
        opts: AuditOptions,
        redactor: Option<Arc<dyn Redactor>>,
    ) -> Result<AuditLog, AuditError> {
        if opts.capture == Capture::Full && redactor.is_none() {
            return Err(AuditError::NoRedactor);
        }
        let keys = match &opts.keys {
            Some(keys) => keys.clone(),
            None => Arc::new(AuditKeys::load_or_create(&opts.key_file)?),
        };
        let file = LogFile::open(
            &opts.path,
            keys.clone(),
            FileOptions {
                rotate_bytes: opts.rotate_bytes.max(1),
                rotate_age: opts.rotate_age,
                checkpoint_every: opts.checkpoint_every,
            },
        )?;
        let capacity = opts.queue.max(1);
        let queue = Arc::new(Queue {
            state: Mutex::new(QueueState {
                items: VecDeque::with_capacity(capacity.min(MAX_BATCH * 2)),
                idle: false,
                lingering: false,
                urgent: false,
                closed: false,
            }),
            wake: Condvar::new(),
            capacity,
            wake_at: (capacity / 2).clamp(1, MAX_BATCH),
        });
        let finisher = Arc::new(Finisher {
            keys,
            capture: opts.capture,
            redactor,
        });
        let dropped = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            file,
            queue: queue.clone(),
            finisher: finisher.clone(),
            dropped: dropped.clone(),
            sync_interval: opts.sync_interval,
            checkpoint_interval: opts.checkpoint_interval,
            taps: opts.taps,
            linger: opts.linger,
        };
        std::thread::Builder::new()
            .name("warden-audit".into())
            .spawn(move || writer.run())
            .map_err(AuditError::Thread)?;
        Ok(AuditLog {
            shared: Arc::new(Shared {
                queue,
                finisher,
                flush: opts.flush,
                on_full: opts.on_full,
                durable_timeout: opts.durable_timeout,
                sensitive: opts.sensitive_tools,
                dropped,
                last_alert: Mutex::new(None),
                path: opts.path,
            }),
        })
    }

    /// Queues a record without waiting. With [`OnFull::FailClosed`] a full queue is an error
    /// (the caller refuses the operation); with [`OnFull::FailOpen`] the record is dropped and
    /// counted.
    pub fn record(&self, event: Event) -> Result<(), AuditError> {
        let item = Item::Record(SystemTime::now(), Box::new(event), None);
        match self.shared.queue.push(item) {
            Push::Done => Ok(()),
            Push::Full(_) => self.full(),
            Push::Closed => Err(AuditError::Closed),
        }
    }

    /// Queues a record and waits until it is on disk (`fdatasync`), waiting at most the
    /// configured durable timeout for room and again for the disk. With
    /// [`OnFull::FailOpen`] a timeout is logged and counted and the caller carries on.
    pub async fn record_durable(&self, event: Event) -> Result<(), AuditError> {
        let (ack, done) = oneshot::channel();
        let item = Item::Record(SystemTime::now(), Box::new(event), Some(ack));
        let timeout = self.shared.durable_timeout;
        match self.shared.queue.push_waiting(item, Some(timeout)).await {
            Push::Done => {}
            Push::Full(_) => return self.full(),
            Push::Closed => return Err(AuditError::Closed),
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
        match self.shared.queue.push_waiting(Item::Flush(ack), None).await {
            Push::Done => {}
            _ => return Err(AuditError::Closed),
        }
        match done.await {
            Ok(true) => Ok(()),
            _ => Err(AuditError::NotDurable),
        }
    }

    /// Writes a final checkpoint, syncs, and stops the writer. Later records fail with
    /// [`AuditError::Closed`].
    pub async fn close(&self) -> Result<(), AuditError> {
        let (ack, done) = oneshot::channel();
        match self.shared.queue.push_waiting(Item::Close(ack), None).await {
            Push::Done => {}
            _ => return Err(AuditError::Closed),
        }
        match done.await {
            Ok(true) => Ok(()),
            _ => Err(AuditError::NotDurable),
        }
    }

    /// Records waiting in the queue.
    pub fn queue_depth(&self) -> usize {
        self.shared.queue.len()
    }

    /// Records dropped so far (fail-open only).
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// The public checkpoint key.
    pub fn public_key(&self) -> PublicKey {
        self.shared.finisher.keys.public_key()
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
        self.shared.on_full == OnFull::FailOpen
            || self.shared.queue.len() < self.shared.queue.capacity
    }

    /// The minimised form of an argument or result, computed now: size and keyed digest of
    /// its compact JSON, plus the redacted value under full capture. The request path should
    /// prefer [`AuditLog::content_deferred`].
    pub fn content(&self, value: &Value) -> Content {
        self.shared.finisher.value(value)
    }

    /// [`AuditLog::content`] of a message as it travelled (its bytes): the digest covers the
    /// whole JSON-RPC message.
    pub fn content_bytes(&self, bytes: &[u8]) -> Content {
        self.shared.finisher.resolve(&Deferred {
            bytes: bytes::Bytes::copy_from_slice(bytes),
            part: Part::Message,
        })
    }

    /// The minimised form of `part` of the message `bytes`, left for the writer thread to
    /// compute: the request path only clones a reference-counted handle. The record holds the
    /// same size, digest (and redacted value) as [`AuditLog::content`] of that part would
    /// ([`Part::Message`]: of the bytes as they are).
    pub fn content_deferred(&self, bytes: bytes::Bytes, part: Part) -> Content {
        Content {
            bytes: 0,
            hmac: String::new(),
            value: None,
            deferred: Some(Deferred { bytes, part }),
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

struct Writer {
    file: LogFile,
    queue: Arc<Queue>,
    finisher: Arc<Finisher>,
    dropped: Arc<AtomicU64>,
    sync_interval: Duration,
    checkpoint_interval: Duration,
    taps: Vec<Arc<dyn AuditTap>>,
    linger: Duration,
}

impl Writer {
    /// Waits for work: anything queued, a closed queue, or `deadline` (the next sync or
    /// checkpoint). Until `linger_until`, queued records nobody waits for are left to gather
    /// (see [`AuditOptions::linger`]). Takes up to [`MAX_BATCH`] items into `batch` and returns
    /// true when the queue is closed and empty; an empty batch means the deadline passed.
    fn take(
        &self,
        deadline: Option<Instant>,
        linger_until: Option<Instant>,
        batch: &mut Vec<Item>,
    ) -> bool {
        let mut s = self.queue.lock();
        loop {
            if s.closed {
                break;
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                break;
            }
            let linger = linger_until
                .filter(|l| now < *l && !s.urgent && s.items.len() < self.queue.wake_at);
            if !s.items.is_empty() && linger.is_none() {
                break;
            }
            let until = match (deadline, linger) {
                (Some(d), Some(l)) => Some(d.min(l)),
                (d, l) => d.or(l),
            };
            if linger.is_some() {
                s.lingering = true;
            } else {
                s.idle = true;
            }
            s = match until {
                Some(u) => {
                    self.queue
                        .wake
                        .wait_timeout(s, u - now)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0
                }
                None => self
                    .queue
                    .wake
                    .wait(s)
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            };
            s.idle = false;
            s.lingering = false;
        }
        let n = s.items.len().min(MAX_BATCH);
        batch.extend(s.items.drain(..n));
        if s.items.is_empty() {
            s.urgent = false;
        }
        s.closed && s.items.is_empty()
    }

    fn run(mut self) {
        let mut dirty = false;
        let mut last_sync = Instant::now();
        let mut last_checkpoint = Instant::now();
        let mut records_since_checkpoint = false;
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut records = Vec::with_capacity(MAX_BATCH);
        let mut linger_until = None;
        loop {
            let deadline = if dirty {
                Some(last_sync + self.sync_interval)
            } else if records_since_checkpoint {
                Some(last_checkpoint + self.checkpoint_interval)
            } else {
                None
            };
            let closed = self.take(deadline, linger_until, &mut batch);
            let nothing_queued = batch.is_empty();
            let mut acks = Vec::new();
            let mut sync = false;
            let mut close = None;
            records.clear();
            let mut items = batch.drain(..);
            for item in items.by_ref() {
                match item {
                    Item::Record(at, event, ack) => {
                        records.push(self.finisher.finish(at, *event));
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
            }
            // Anything queued behind a close is answered as not written.
            for item in items {
                match item {
                    Item::Record(_, _, Some(a)) | Item::Flush(a) | Item::Close(a) => {
                        let _ = a.send(false);
                    }
                    Item::Record(_, _, None) => {}
                }
            }
            let lost = self.dropped.swap(0, Ordering::Relaxed);
            if lost > 0 {
                records.insert(0, AuditRecord::now(Event::Dropped { count: lost }));
            }
            let now = Instant::now();
            // An empty batch means a deadline passed: a flush nobody waits for (sync, and
            // checkpoint if due).
            if nothing_queued {
                sync = true;
            }
            if dirty && now >= last_sync + self.sync_interval {
                sync = true;
            }
            let checkpoint_due = now >= last_checkpoint + self.checkpoint_interval;
            let closing = close.is_some() || closed;
            let had_records = !records.is_empty();
            // Records this batch stands for: its own, plus the drops its `dropped` record counts.
            let batch_len = records.len() as u64 - u64::from(lost > 0) + lost;
            let r = if closing {
                self.file.write_batch(&records, true, true)
            } else {
                self.file.write_batch(&records, sync, checkpoint_due)
            };
            let ok = match r {
                Ok(()) => true,
                Err(e) => {
                    // The batch is lost: count it, so the next successful write records the
                    // gap (`dropped`) in the chain itself.
                    self.dropped.fetch_add(batch_len, Ordering::Relaxed);
                    tracing::error!(error = %e, records = batch_len, "audit write failed");
                    false
                }
            };
            if had_records {
                records_since_checkpoint = true;
                dirty = true;
            }
            linger_until = (had_records && !self.linger.is_zero()).then(|| now + self.linger);
            if sync || closing {
                last_sync = now;
                dirty = !ok;
            }
            if checkpoint_due || closing {
                last_checkpoint = now;
                records_since_checkpoint = false;
            }
            // Taps first: once a flush or a durable record is acknowledged, every tap has seen
            // it (a metric or an alert is never behind what a caller knows is written).
            if had_records {
                for tap in &self.taps {
                    tap.records(&records, ok);
                }
            }
            for a in acks {
                let _ = a.send(ok);
            }
            if closing {
                self.queue.close();
                if let Some(a) = close {
                    let _ = a.send(ok);
                }
                return;
            }
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
