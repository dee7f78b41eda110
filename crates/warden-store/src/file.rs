//! [`FileStore`]: the persistent, crash-safe embedded backend.

mod format;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write as _};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use fs4::fs_std::FileExt as _;
use tracing::warn;

use crate::limits::{opt_ttl_millis, ttl_millis};
use crate::{Limits, Namespace, Store, StoreError, StoreFuture, encode_counter, parse_counter};
use format::{HEADER_LEN, MAX_RECORD_LEN, Op, RecordError};

/// The log, relative to the store directory.
const LOG_FILE: &str = "store.log";

/// Where compaction (and creation) writes the next log before renaming it over [`LOG_FILE`].
const TMP_FILE: &str = "store.log.tmp";

/// Held with an exclusive `flock` while the store is open. A separate file, because the log itself
/// is replaced on compaction.
const LOCK_FILE: &str = "store.lock";

/// Logs smaller than this are never compacted: rewriting a small file saves little.
const COMPACT_MIN_BYTES: u64 = 1 << 20;

/// Persistent store for state that must survive restarts: pins, approvals, API keys.
///
/// # Layout
///
/// A directory (created `0700` on Unix if missing) holding `store.log` (`0600`), an append-only log
/// of checksummed records, one per write, and `store.lock`, locked exclusively while the store is
/// open so that a second process gets [`StoreError::Locked`]. All entries are also held in memory;
/// reads never touch the disk.
///
/// # Guarantees
///
/// - **Durable on return.** A write returns `Ok` only after its record is written and
///   `fdatasync`ed, and becomes visible to readers only then, so a reader never sees a write a crash
///   could undo.
/// - **Crash-safe.** A crash (kill -9, power loss) during a write leaves at most one torn record at
///   the end of the log. On open, a tail that fails its checksum and is followed by no valid record
///   (and is no longer than one record) is discarded and truncated away; it was never acknowledged.
///   Anything else unreadable is reported as [`StoreError::Corrupt`] instead of silently dropping
///   committed data. (Limit: media damage confined to the very last record looks exactly like a
///   torn write, so that one record is discarded.)
/// - **Atomic compaction.** When the log exceeds 1 MiB and twice the live data, it is rewritten to
///   `store.log.tmp`, fsynced, renamed over `store.log`, and the directory fsynced, so a crash
///   leaves either the old or the new log, both complete. A leftover temporary file is deleted on
///   open.
/// - **Fail-stop on sync errors.** If `fsync` fails, what reached the disk is unknown: the store then
///   refuses writes with [`StoreError::Poisoned`] until reopened. A failed `write` is rolled back by
///   truncating the log to its last good length.
///
/// Writes are serialized and each costs an `fdatasync` (typically 0.1–10 ms), performed on tokio's
/// blocking pool: this backend suits state written rarely, not per-request counters. Expiry times
/// are stored as wall-clock Unix milliseconds, so TTLs keep running while the gateway is down.
/// The directory-sync guarantees above are for Unix; elsewhere a rename is as durable as the OS
/// makes it. `Debug` shows the directory and entry counts, never keys or values.
pub struct FileStore {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    log_path: PathBuf,
    limits: Limits,
    clock: Clock,
    compact_min_bytes: u64,
    /// What the log says, minus torn tails; changed only after a record is durable.
    index: RwLock<Index>,
    /// Serializes writers; held across deciding, appending and applying a write.
    writer: Mutex<Writer>,
    /// Keeps the directory lock for as long as the store is open.
    _lock: File,
}

struct Writer {
    file: File,
    /// Bytes of valid log; the next record is written here.
    len: u64,
    file_id: u64,
    poisoned: bool,
    /// After a failed compaction, do not retry before the log reaches this length.
    compact_after: u64,
}

#[derive(Default)]
struct Index {
    namespaces: HashMap<String, BTreeMap<String, Entry>>,
    /// Bytes a compacted log would need for the entries held (live or expired).
    held_bytes: u64,
}

#[derive(Clone)]
struct Entry {
    value: Bytes,
    /// Unix milliseconds.
    expires_at: Option<u64>,
}

impl Entry {
    fn is_live(&self, now: u64) -> bool {
        self.expires_at.is_none_or(|at| now < at)
    }
}

/// What a write decided to do to the entry it inspected (times in Unix milliseconds).
enum Write {
    Keep,
    Delete,
    Put {
        value: Bytes,
        expires_at: Option<u64>,
    },
    Expire(u64),
}

/// Wall-clock time in Unix milliseconds.
#[derive(Debug, Clone)]
pub(crate) enum Clock {
    System,
    /// A clock tests move by hand.
    #[cfg(test)]
    Manual(Arc<std::sync::atomic::AtomicU64>),
}

impl Clock {
    fn now_ms(&self) -> u64 {
        match self {
            Self::System => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            #[cfg(test)]
            Self::Manual(now) => now.load(std::sync::atomic::Ordering::SeqCst),
        }
    }
}

/// Knobs tests turn; production uses the defaults.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) clock: Clock,
    pub(crate) compact_min_bytes: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            clock: Clock::System,
            compact_min_bytes: COMPACT_MIN_BYTES,
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Writers only mutate `Writer` through single assignments after I/O calls return, so a panic
    // cannot leave it half-updated.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read(index: &RwLock<Index>) -> RwLockReadGuard<'_, Index> {
    index.read().unwrap_or_else(PoisonError::into_inner)
}

fn write(index: &RwLock<Index>) -> RwLockWriteGuard<'_, Index> {
    index.write().unwrap_or_else(PoisonError::into_inner)
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn expiry(now: u64, ttl_ms: Option<u64>) -> Option<u64> {
    ttl_ms.map(|ms| now.saturating_add(ms))
}

/// A file id unlikely to repeat, so records from an older log never validate in a newer one.
fn new_file_id(previous: u64) -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    #[expect(
        clippy::cast_possible_truncation,
        reason = "mixing bits; losing the high ones is fine"
    )]
    let id = (nanos as u64) ^ (u64::from(std::process::id()) << 32) ^ previous.rotate_left(17);
    if id == previous {
        id.wrapping_add(1)
    } else {
        id
    }
}

fn create_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        // Values may be secrets (API key hashes, approval arguments).
        options.mode(0o600);
    }
    options
}

fn create_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Makes a rename or file creation in `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Writes `contents` to a fresh `tmp` and syncs it; returns the file, open for writing.
fn write_tmp(tmp: &Path, contents: &[u8]) -> Result<File, StoreError> {
    let result = (|| {
        let mut file = create_options().truncate(true).open(tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        Ok(file)
    })();
    result.map_err(|source| {
        // Best effort: a leftover is also removed on the next open.
        let _ = fs::remove_file(tmp);
        io_error(tmp)(source)
    })
}

/// Renames `tmp` over `path` (atomically replacing it), removing `tmp` on failure.
fn rename_tmp(tmp: &Path, path: &Path) -> Result<(), StoreError> {
    fs::rename(tmp, path).map_err(|source| {
        let _ = fs::remove_file(tmp);
        io_error(path)(source)
    })
}

impl Index {
    fn get(&self, namespace: &str, key: &str) -> Option<&Entry> {
        self.namespaces.get(namespace)?.get(key)
    }

    fn len(&self, namespace: &str) -> usize {
        self.namespaces.get(namespace).map_or(0, BTreeMap::len)
    }

    fn insert(&mut self, namespace: String, key: String, entry: Entry) {
        let (namespace_len, key_len) = (namespace.len(), key.len());
        self.held_bytes += entry_bytes(namespace_len, key_len, &entry);
        if let Some(old) = self
            .namespaces
            .entry(namespace)
            .or_default()
            .insert(key, entry)
        {
            self.held_bytes -= entry_bytes(namespace_len, key_len, &old);
        }
    }

    fn remove(&mut self, namespace: &str, key: &str) {
        if let Some(old) = self
            .namespaces
            .get_mut(namespace)
            .and_then(|map| map.remove(key))
        {
            self.held_bytes -= entry_bytes(namespace.len(), key.len(), &old);
        }
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Put {
                namespace,
                key,
                value,
                expires_at,
            } => self.insert(namespace, key, Entry { value, expires_at }),
            Op::Delete { namespace, key } => self.remove(&namespace, &key),
            Op::Expire {
                namespace,
                key,
                expires_at,
            } => {
                if let Some(entry) = self
                    .namespaces
                    .get_mut(&namespace)
                    .and_then(|map| map.get_mut(&key))
                {
                    entry.expires_at = Some(expires_at);
                }
            }
        }
    }

    /// Forgets expired entries of one namespace (all if `None`); returns how many.
    ///
    /// Not logged: an expired entry is absent whether or not the log still holds it, and
    /// compaction drops it from the log.
    fn purge(&mut self, namespace: Option<&str>, now: u64) -> usize {
        let mut removed = 0;
        let mut freed = 0;
        for (name, map) in &mut self.namespaces {
            if namespace.is_some_and(|ns| ns != name) {
                continue;
            }
            map.retain(|key, entry| {
                let live = entry.is_live(now);
                if !live {
                    removed += 1;
                    freed += entry_bytes(name.len(), key.len(), entry);
                }
                live
            });
        }
        self.held_bytes -= freed;
        removed
    }
}

/// Bytes the entry's record takes in a compacted log.
fn entry_bytes(namespace_len: usize, key_len: usize, entry: &Entry) -> u64 {
    format::put_record_len(namespace_len, key_len, entry.value.len()) as u64
}

impl fmt::Debug for FileStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let index = read(&self.inner.index);
        let mut counts: Vec<_> = index
            .namespaces
            .iter()
            .map(|(name, map)| (name.as_str(), map.len()))
            .collect();
        counts.sort_unstable();
        f.debug_struct("FileStore")
            .field("dir", &self.inner.dir)
            .field("entries", &counts)
            .finish_non_exhaustive()
    }
}

impl FileStore {
    /// Opens (or creates) the store in `dir`, replaying its log.
    ///
    /// Fails with [`StoreError::Locked`] if another process has it open, and
    /// [`StoreError::Corrupt`] if the log holds unreadable data other than a torn final write.
    pub async fn open(dir: impl AsRef<Path>, limits: Limits) -> Result<Self, StoreError> {
        Self::open_with(dir.as_ref(), limits, Options::default()).await
    }

    pub(crate) async fn open_with(
        dir: &Path,
        limits: Limits,
        options: Options,
    ) -> Result<Self, StoreError> {
        let dir = dir.to_path_buf();
        let inner = tokio::task::spawn_blocking(move || Inner::open(dir, limits, options))
            .await
            .map_err(StoreError::Worker)??;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The store directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Path of the log, for tests that damage it.
    #[cfg(test)]
    fn log_path(&self) -> &Path {
        &self.inner.log_path
    }

    /// Current length of the log, for tests.
    #[cfg(test)]
    fn log_len(&self) -> u64 {
        lock(&self.inner.writer).len
    }

    fn read(&self, namespace: Namespace, key: &str) -> Option<Entry> {
        let now = self.inner.clock.now_ms();
        read(&self.inner.index)
            .get(namespace.as_str(), key)
            .filter(|entry| entry.is_live(now))
            .cloned()
    }

    /// Runs a write on the blocking pool: it waits for a lock and an `fdatasync`.
    async fn write<R: Send + 'static>(
        &self,
        namespace: Namespace,
        key: &str,
        decide: impl FnOnce(Option<&Entry>, u64) -> Result<(Write, R), StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let inner = Arc::clone(&self.inner);
        let key = key.to_owned();
        tokio::task::spawn_blocking(move || inner.write(namespace, key, decide))
            .await
            .map_err(StoreError::Worker)?
    }
}

impl Inner {
    fn open(dir: PathBuf, limits: Limits, options: Options) -> Result<Self, StoreError> {
        create_dir(&dir).map_err(io_error(&dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock_file = create_options()
            .truncate(false)
            .open(&lock_path)
            .map_err(io_error(&lock_path))?;
        if !lock_file
            .try_lock_exclusive()
            .map_err(io_error(&lock_path))?
        {
            return Err(StoreError::Locked { path: dir });
        }

        // A leftover temporary log is an unfinished compaction or creation; the real log (or its
        // absence) is still authoritative.
        let tmp_path = dir.join(TMP_FILE);
        match fs::remove_file(&tmp_path) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => {
                return Err(io_error(&tmp_path)(err));
            }
            _ => {}
        }

        let log_path = dir.join(LOG_FILE);
        let data = match fs::read(&log_path) {
            Ok(data) => data,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                // Created under another name and renamed, so the log never exists without its
                // header.
                let header = format::encode_header(new_file_id(0));
                drop(write_tmp(&tmp_path, &header)?);
                rename_tmp(&tmp_path, &log_path)?;
                sync_dir(&dir).map_err(io_error(&dir))?;
                header.to_vec()
            }
            Err(err) => return Err(io_error(&log_path)(err)),
        };
        let corrupt = |offset: usize, reason| StoreError::Corrupt {
            path: log_path.clone(),
            offset: offset as u64,
            reason,
        };
        let file_id = format::decode_header(&data)
            .ok_or_else(|| corrupt(0, "missing or unknown file header"))?;

        let mut index = Index::default();
        let mut pos = HEADER_LEN;
        while pos < data.len() {
            match format::decode_record(&data, pos, file_id) {
                Ok((op, next)) => {
                    index.apply(op);
                    pos = next;
                }
                Err(RecordError::Malformed) => {
                    return Err(corrupt(
                        pos,
                        "a record with valid checksums does not decode",
                    ));
                }
                Err(RecordError::Invalid) => {
                    if data.len() - pos > MAX_RECORD_LEN {
                        return Err(corrupt(pos, "unreadable data longer than any record"));
                    }
                    if format::next_valid_record(&data, pos, file_id).is_some() {
                        return Err(corrupt(pos, "unreadable data followed by valid records"));
                    }
                    break;
                }
            }
        }
        let clock = options.clock;
        index.purge(None, clock.now_ms());

        let mut file = create_options()
            .truncate(false)
            .open(&log_path)
            .map_err(io_error(&log_path))?;
        let len = pos as u64;
        if pos < data.len() {
            warn!(
                path = %log_path.display(),
                valid_bytes = pos,
                discarded_bytes = data.len() - pos,
                "discarding a torn final write in the store log"
            );
            file.set_len(len)
                .and_then(|()| file.sync_all())
                .map_err(io_error(&log_path))?;
        }
        file.seek(SeekFrom::Start(len))
            .map_err(io_error(&log_path))?;

        Ok(Self {
            dir,
            log_path,
            limits,
            clock,
            compact_min_bytes: options.compact_min_bytes,
            index: RwLock::new(index),
            writer: Mutex::new(Writer {
                file,
                len,
                file_id,
                poisoned: false,
                compact_after: 0,
            }),
            _lock: lock_file,
        })
    }

    /// Decides, logs, syncs and applies one write, holding the writer lock throughout so the
    /// decision is made against the state the record is appended to.
    fn write<R>(
        &self,
        namespace: Namespace,
        key: String,
        decide: impl FnOnce(Option<&Entry>, u64) -> Result<(Write, R), StoreError>,
    ) -> Result<R, StoreError> {
        let mut writer = lock(&self.writer);
        if writer.poisoned {
            return Err(StoreError::Poisoned {
                path: self.log_path.clone(),
            });
        }
        let now = self.clock.now_ms();
        let ns = namespace.as_str();

        let index = read(&self.index);
        let held = index.get(ns, &key);
        let is_held = held.is_some();
        let (decision, out) = decide(held.filter(|entry| entry.is_live(now)), now)?;
        let held_in_namespace = index.len(ns);
        drop(index);

        let op = match decision {
            Write::Keep => return Ok(out),
            // Nothing to log if nothing is held; an expired entry is deleted for real.
            Write::Delete if !is_held => return Ok(out),
            Write::Delete => Op::Delete {
                namespace: ns.to_owned(),
                key,
            },
            Write::Expire(expires_at) => Op::Expire {
                namespace: ns.to_owned(),
                key,
                expires_at,
            },
            Write::Put { value, expires_at } => {
                let max = self.limits.max_entries(namespace);
                if !is_held && held_in_namespace >= max {
                    // Only writers change the index and we are the writer, so nothing above
                    // changed since the read lock was released.
                    let mut index = write(&self.index);
                    index.purge(Some(ns), now);
                    if index.len(ns) >= max {
                        return Err(StoreError::Full { namespace, max });
                    }
                }
                Op::Put {
                    namespace: ns.to_owned(),
                    key,
                    value,
                    expires_at,
                }
            }
        };

        self.append(&mut writer, &op)?;
        write(&self.index).apply(op);
        self.maybe_compact(&mut writer, now);
        Ok(out)
    }

    /// Appends one record and syncs it.
    fn append(&self, writer: &mut Writer, op: &Op) -> Result<(), StoreError> {
        let mut buf = Vec::new();
        format::encode_record(&mut buf, writer.file_id, op);
        let written = writer
            .file
            .seek(SeekFrom::Start(writer.len))
            .and_then(|_| writer.file.write_all(&buf));
        if let Err(source) = written {
            // Cut off any part of the record that reached the file, so that the next record is
            // not appended after garbage (which would read as corruption on open).
            let rolled_back = writer
                .file
                .set_len(writer.len)
                .and_then(|()| writer.file.sync_data());
            if rolled_back.is_err() {
                writer.poisoned = true;
            }
            return Err(io_error(&self.log_path)(source));
        }
        if let Err(source) = writer.file.sync_data() {
            // After a failed fsync the kernel may have dropped the dirty pages: what is on disk
            // is unknown, so stop writing rather than build on it.
            writer.poisoned = true;
            return Err(io_error(&self.log_path)(source));
        }
        writer.len += buf.len() as u64;
        Ok(())
    }

    fn maybe_compact(&self, writer: &mut Writer, now: u64) {
        let held = read(&self.index).held_bytes;
        let threshold = self
            .compact_min_bytes
            .max(2 * (HEADER_LEN as u64 + held))
            .max(writer.compact_after);
        if writer.len <= threshold {
            return;
        }
        if let Err(error) = self.compact(writer, now) {
            warn!(error = %error, "store compaction failed; keeping the current log");
            writer.compact_after = writer.len.saturating_mul(2);
        }
    }

    /// Rewrites the log with only the live entries.
    fn compact(&self, writer: &mut Writer, now: u64) -> Result<(), StoreError> {
        let file_id = new_file_id(writer.file_id);
        let mut buf = format::encode_header(file_id).to_vec();
        for (namespace, map) in &read(&self.index).namespaces {
            for (key, entry) in map.iter().filter(|(_, entry)| entry.is_live(now)) {
                format::encode_put(
                    &mut buf,
                    file_id,
                    namespace,
                    key,
                    &entry.value,
                    entry.expires_at,
                );
            }
        }
        let tmp_path = self.dir.join(TMP_FILE);
        let file = write_tmp(&tmp_path, &buf)?;
        rename_tmp(&tmp_path, &self.log_path)?;
        // The name now points at the new log: switch to it whatever happens next.
        writer.file = file;
        writer.len = buf.len() as u64;
        writer.file_id = file_id;
        writer.compact_after = 0;
        write(&self.index).purge(None, now);
        if let Err(source) = sync_dir(&self.dir) {
            // The rename may not survive a crash, so writes to the new log might be lost.
            writer.poisoned = true;
            return Err(io_error(&self.dir)(source));
        }
        Ok(())
    }
}

impl Store for FileStore {
    fn get<'a>(&'a self, namespace: Namespace, key: &'a str) -> StoreFuture<'a, Option<Bytes>> {
        Box::pin(async move {
            Limits::check_key(namespace, key)?;
            Ok(self.read(namespace, key).map(|entry| entry.value))
        })
    }

    fn put<'a>(
        &'a self,
        namespace: Namespace,
        key: &'a str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.inner.limits.check_write(namespace, key, &value)?;
            let ttl = opt_ttl_millis(ttl)?;
            self.write(namespace, key, move |_, now| {
                let expires_at = expiry(now, ttl);
                Ok((Write::Put { value, expires_at }, ()))
            })
            .await
        })
    }

    fn put_if_absent<'a>(
        &'a self,
        namespace: Namespace,
        key: &'a str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            self.inner.limits.check_write(namespace, key, &value)?;
            let ttl = opt_ttl_millis(ttl)?;
            self.write(namespace, key, move |current, now| {
                Ok(match current {
                    Some(_) => (Write::Keep, false),
                    None => {
                        let expires_at = expiry(now, ttl);
                        (Write::Put { value, expires_at }, true)
                    }
                })
            })
            .await
        })
    }

    fn compare_and_swap<'a>(
        &'a self,
        namespace: Namespace,
        key: &'a str,
        expected: Option<&'a [u8]>,
        new: Option<Bytes>,
        ttl: Option<Duration>,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            match &new {
                Some(value) => self.inner.limits.check_write(namespace, key, value)?,
                None => Limits::check_key(namespace, key)?,
            }
            let ttl = opt_ttl_millis(ttl)?;
            let expected = expected.map(Bytes::copy_from_slice);
            self.write(namespace, key, move |current, now| {
                if current.map(|entry| &entry.value) != expected.as_ref() {
                    return Ok((Write::Keep, false));
                }
                let write = match new {
                    Some(value) => Write::Put {
                        value,
                        expires_at: expiry(now, ttl),
                    },
                    None => Write::Delete,
                };
                Ok((write, true))
            })
            .await
        })
    }

    fn delete<'a>(&'a self, namespace: Namespace, key: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            Limits::check_key(namespace, key)?;
            self.write(namespace, key, |current, _| {
                Ok((Write::Delete, current.is_some()))
            })
            .await
        })
    }

    fn list<'a>(
        &'a self,
        namespace: Namespace,
        prefix: &'a str,
        limit: usize,
    ) -> StoreFuture<'a, Vec<String>> {
        Box::pin(async move {
            let now = self.inner.clock.now_ms();
            let index = read(&self.inner.index);
            let Some(map) = index.namespaces.get(namespace.as_str()) else {
                return Ok(Vec::new());
            };
            Ok(map
                .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
                .take_while(|(key, _)| key.starts_with(prefix))
                .filter(|(_, entry)| entry.is_live(now))
                .take(limit)
                .map(|(key, _)| key.clone())
                .collect())
        })
    }

    fn touch<'a>(
        &'a self,
        namespace: Namespace,
        key: &'a str,
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            Limits::check_key(namespace, key)?;
            let ttl = ttl_millis(ttl)?;
            self.write(namespace, key, move |current, now| {
                Ok(match current {
                    Some(_) => (Write::Expire(now.saturating_add(ttl)), true),
                    None => (Write::Keep, false),
                })
            })
            .await
        })
    }

    fn incr<'a>(
        &'a self,
        namespace: Namespace,
        key: &'a str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> StoreFuture<'a, i64> {
        Box::pin(async move {
            Limits::check_key(namespace, key)?;
            let ttl = opt_ttl_millis(ttl)?;
            self.write(namespace, key, move |current, now| {
                let value = match current {
                    Some(entry) => {
                        parse_counter(&entry.value).ok_or(StoreError::NotACounter { namespace })?
                    }
                    None => 0,
                };
                let value = value
                    .checked_add(delta)
                    .ok_or(StoreError::Overflow { namespace })?;
                let expires_at = current
                    .and_then(|entry| entry.expires_at)
                    .or_else(|| expiry(now, ttl));
                let write = Write::Put {
                    value: encode_counter(value),
                    expires_at,
                };
                Ok((write, value))
            })
            .await
        })
    }
}

#[cfg(test)]
mod tests;
