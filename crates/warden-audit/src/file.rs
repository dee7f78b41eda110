//! The blocking side of the writer: one log file, its lock, rotation, checkpoints and the head.
//!
//! Several gateway processes may share one log (a desktop client starts one `mcp-warden run`
//! per server). Every batch is written under an exclusive `flock` on `<log>.lock`; a writer
//! that finds the file longer than it left it, or replaced by a rotation, re-reads the chain's
//! last record before appending, so the chain stays one sequence whoever wrote last.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use fs4::fs_std::FileExt as _;
use ring::digest;

use crate::chain::{self, GENESIS, Hash};
use crate::error::AuditError;
use crate::keys::{self, AuditKeys};
use crate::record::{AuditRecord, Event};

/// Rotation thresholds and checkpoint cadence.
#[derive(Debug, Clone)]
pub(crate) struct FileOptions {
    pub(crate) rotate_bytes: u64,
    pub(crate) rotate_age: Option<std::time::Duration>,
    pub(crate) checkpoint_every: u64,
}

/// Where the chain stands in memory: restored when records encoded after it are not written.
#[derive(Clone, Copy)]
struct Head {
    next_seq: u64,
    prev: Hash,
    since_checkpoint: u64,
}

pub(crate) struct LogFile {
    path: PathBuf,
    file: File,
    lock: File,
    keys: Arc<AuditKeys>,
    opts: FileOptions,
    /// Sequence number of the next record.
    next_seq: u64,
    /// Hash of the last record (the next record's `prev`).
    prev: Hash,
    /// Length of the file after our last write: anything else means another writer appended.
    len: u64,
    /// Inode of the file we hold: another means it was rotated under us.
    ino: u64,
    /// When the current file was started, for age-based rotation.
    started: SystemTime,
    /// Records since the last checkpoint.
    since_checkpoint: u64,
    /// Records written but not yet synced.
    unsynced: bool,
    buf: Vec<u8>,
    /// The record being encoded, reused so that encoding does not grow a new buffer each time.
    rec: Vec<u8>,
}

impl LogFile {
    /// Opens (or creates) the log, takes the lock and finds the chain's head. A torn last line
    /// (a write cut by a crash) is removed and recorded as [`Event::Recovered`].
    pub(crate) fn open(
        path: &Path,
        keys: Arc<AuditKeys>,
        opts: FileOptions,
    ) -> Result<Self, AuditError> {
        let io = io_error(path);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(&io)?;
        }
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(keys::lock_path(path))
            .map_err(&io)?;
        let file = open_log(path).map_err(&io)?;
        let meta = file.metadata().map_err(&io)?;
        let mut log = LogFile {
            path: path.to_owned(),
            file,
            lock,
            keys,
            opts,
            next_seq: 0,
            prev: GENESIS,
            // Unknown: the first recover() reads the chain's head from the file.
            len: u64::MAX,
            ino: meta.ino(),
            started: meta
                .created()
                .or_else(|_| meta.modified())
                .unwrap_or_else(|_| SystemTime::now()),
            since_checkpoint: 0,
            unsynced: false,
            buf: Vec::with_capacity(64 * 1024),
            rec: Vec::with_capacity(1024),
        };
        log.lock.lock_exclusive().map_err(&io)?;
        let r = log.recover();
        let _ = fs4::fs_std::FileExt::unlock(&log.lock);
        r?;
        // Only once the log is known to continue under these keys: a start that fails (the
        // wrong key file) must not replace the public key the log's checkpoints need.
        publish_public_key(path, &log.keys).map_err(&io)?;
        Ok(log)
    }

    /// Under the lock: re-reads the head of the chain if another writer moved it, removing a
    /// torn last line.
    fn recover(&mut self) -> Result<(), AuditError> {
        let io = io_error(&self.path);
        match std::fs::metadata(&self.path) {
            Ok(m) if m.ino() == self.ino => {}
            // Rotated (or removed) by another writer: continue in the file now at the path.
            _ => {
                self.file = open_log(&self.path).map_err(&io)?;
                let m = self.file.metadata().map_err(&io)?;
                self.ino = m.ino();
                self.started = m
                    .created()
                    .or_else(|_| m.modified())
                    .unwrap_or_else(|_| SystemTime::now());
                self.len = u64::MAX;
            }
        }
        let len = self.file.metadata().map_err(&io)?.len();
        if len == self.len {
            return Ok(());
        }
        let (last, torn) = last_line(&mut self.file, len).map_err(&io)?;
        // The chain's last record: the file's last line, or (an empty file) the last record
        // of the newest rotated file.
        let found: Option<(u64, Hash)> = match last {
            Some(line) => {
                let parsed = chain::parse_line(&line).map_err(|_| AuditError::BrokenTail {
                    path: self.path.clone(),
                })?;
                if !chain::mac_matches(self.keys.chain_key(), &parsed.hash, &parsed.mac) {
                    return Err(AuditError::BrokenTail {
                        path: self.path.clone(),
                    });
                }
                Some((parsed.seq, parsed.hash))
            }
            None => last_of_rotated(&self.path, &self.keys),
        };
        // Records are only ever added: what this writer wrote, or what the head file records
        // as written (it is updated only after the records are on disk), must still be there.
        // A log that ends earlier was cut, and continuing it would hide the cut for good.
        let written = self
            .next_seq
            .checked_sub(1)
            .map(|seq| (seq, self.prev))
            .into_iter()
            .chain(read_head(&self.path, &self.keys)?);
        for (seq, hash) in written {
            let kept = match found {
                Some((last, last_hash)) => last > seq || (last == seq && last_hash == hash),
                None => false,
            };
            if !kept {
                return Err(AuditError::Truncated {
                    path: self.path.clone(),
                    written: seq,
                    found: found.map_or_else(|| "none".to_owned(), |(s, _)| s.to_string()),
                });
            }
        }
        if let Some((seq, hash)) = found {
            self.next_seq = seq + 1;
            self.prev = hash;
        }
        // A torn write after the last complete record (a crash mid-append) is removed, and
        // said so in the chain.
        let mut recovered = None;
        if !torn.is_empty() {
            let keep = len - torn.len() as u64;
            self.file.set_len(keep).map_err(&io)?;
            let sha = chain::hex(digest::digest(&digest::SHA256, &torn).as_ref());
            tracing::warn!(path = %self.path.display(), bytes = torn.len(), "audit log ended with an incomplete record; removed it");
            recovered = Some(Event::Recovered {
                discarded_bytes: torn.len() as u64,
                discarded_sha256: sha,
            });
        }
        self.len = self.file.metadata().map_err(&io)?.len();
        if let Some(event) = recovered {
            self.buf.clear();
            let before = self.head();
            self.encode(&AuditRecord::now(event));
            self.append_buf(before)?;
        }
        Ok(())
    }

    /// Appends `records` (in order) under the lock, rotating and checkpointing as configured,
    /// and syncs to disk when `sync` is set.
    pub(crate) fn write_batch(
        &mut self,
        records: &[AuditRecord],
        sync: bool,
        checkpoint_due: bool,
    ) -> Result<(), AuditError> {
        let io = io_error(&self.path);
        self.lock.lock_exclusive().map_err(&io)?;
        let r = self.write_locked(records, sync, checkpoint_due);
        let _ = fs4::fs_std::FileExt::unlock(&self.lock);
        r
    }

    fn write_locked(
        &mut self,
        records: &[AuditRecord],
        sync: bool,
        checkpoint_due: bool,
    ) -> Result<(), AuditError> {
        self.recover()?;
        if self.rotation_due() {
            self.rotate()?;
        }
        self.buf.clear();
        let before = self.head();
        for r in records {
            self.encode(r);
            if self.opts.checkpoint_every > 0 && self.since_checkpoint >= self.opts.checkpoint_every
            {
                self.encode_checkpoint();
            }
        }
        if checkpoint_due && self.since_checkpoint > 0 {
            self.encode_checkpoint();
        }
        self.append_buf(before)?;
        if sync {
            self.sync()?;
        }
        Ok(())
    }

    fn rotation_due(&self) -> bool {
        if self.len == 0 {
            return false;
        }
        self.len >= self.opts.rotate_bytes
            || self
                .opts
                .rotate_age
                .is_some_and(|age| self.started.elapsed().is_ok_and(|e| e >= age))
    }

    /// Closes the current file with a checkpoint, renames it `<log>.<first seq, 20 digits>`,
    /// and starts a new file whose first record names it and links to its last record.
    fn rotate(&mut self) -> Result<(), AuditError> {
        let io = io_error(&self.path);
        self.buf.clear();
        if self.since_checkpoint > 0 {
            let before = self.head();
            self.encode_checkpoint();
            self.append_buf(before)?;
        }
        self.sync()?;
        let first = first_seq(&mut self.file)
            .map_err(&io)?
            .unwrap_or(self.next_seq);
        let rotated = keys::sibling(&self.path, &format!(".{first:020}"));
        std::fs::rename(&self.path, &rotated).map_err(&io)?;
        self.file = open_log(&self.path).map_err(&io)?;
        let m = self.file.metadata().map_err(&io)?;
        self.ino = m.ino();
        self.len = 0;
        self.started = SystemTime::now();
        let name = rotated
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.buf.clear();
        let before = self.head();
        self.encode(&AuditRecord::now(Event::Continued {
            previous_file: name,
        }));
        self.append_buf(before)?;
        if let Ok(dir) = File::open(self.path.parent().unwrap_or(Path::new("."))) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    /// The chain head in memory, to restore when what was encoded after it is not written.
    fn head(&self) -> Head {
        Head {
            next_seq: self.next_seq,
            prev: self.prev,
            since_checkpoint: self.since_checkpoint,
        }
    }

    fn encode(&mut self, record: &AuditRecord) {
        let mut rec = std::mem::take(&mut self.rec);
        rec.clear();
        match serde_json::to_writer(&mut rec, record) {
            Ok(()) => self.encode_raw(&rec),
            // Records are plain data; serialisation cannot fail short of a bug.
            Err(e) => tracing::error!(error = %e, "audit record could not be encoded"),
        }
        // A rare huge record does not keep its buffer.
        if rec.capacity() <= 64 * 1024 {
            self.rec = rec;
        }
    }

    fn encode_raw(&mut self, rec: &[u8]) {
        let seq = self.next_seq;
        let hash = chain::record_hash(seq, &self.prev, rec);
        let mac = chain::record_mac(self.keys.chain_key(), &hash);
        chain::encode_line(seq, rec, &self.prev, &hash, &mac, &mut self.buf);
        self.prev = hash;
        self.next_seq += 1;
        self.since_checkpoint += 1;
    }

    fn encode_checkpoint(&mut self) {
        let covers = self.next_seq.saturating_sub(1);
        let sig = self.keys.sign_checkpoint(covers, &self.prev);
        let event = Event::Checkpoint {
            covers_seq: covers,
            covers_hash: chain::hex(&self.prev),
            key: self.keys.public_key().fingerprint(),
            sig: chain::hex(&sig),
        };
        self.encode(&AuditRecord::now(event));
        self.since_checkpoint = 0;
    }

    /// Writes what was encoded since `before` (the chain head then); on failure the file and
    /// the chain head in memory are both back where they were.
    fn append_buf(&mut self, before: Head) -> Result<(), AuditError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let io = io_error(&self.path);
        if let Err(e) = self.file.write_all(&self.buf) {
            // Never leave a partial line behind: the next append would follow garbage.
            let _ = self.file.set_len(self.len);
            // Nor a head in memory that no record on disk carries: the next batch would link
            // to it, and the log would never verify again.
            self.next_seq = before.next_seq;
            self.prev = before.prev;
            self.since_checkpoint = before.since_checkpoint;
            self.buf.clear();
            // Re-read the file's head next time (it must match the one restored).
            self.len = u64::MAX;
            return Err(io(e));
        }
        self.len += self.buf.len() as u64;
        self.buf.clear();
        self.unsynced = true;
        Ok(())
    }

    /// `fdatasync`, then the head file.
    pub(crate) fn sync(&mut self) -> Result<(), AuditError> {
        if !self.unsynced {
            return Ok(());
        }
        let io = io_error(&self.path);
        self.file.sync_data().map_err(&io)?;
        self.unsynced = false;
        if self.next_seq > 0 {
            let seq = self.next_seq - 1;
            let text = format!(
                "{{\"seq\":{seq},\"hash\":\"{}\",\"mac\":\"{}\"}}\n",
                chain::hex(&self.prev),
                chain::hex(&self.keys.head_mac(seq, &self.prev))
            );
            let head = keys::head_path(&self.path);
            let tmp = keys::sibling(&self.path, ".head.tmp");
            std::fs::write(&tmp, text)
                .and_then(|()| std::fs::rename(&tmp, &head))
                .map_err(&io)?;
        }
        Ok(())
    }
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> AuditError + use<> {
    let path = path.to_owned();
    move |source| AuditError::Io {
        path: path.clone(),
        source,
    }
}

fn open_log(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
}

/// The chain head the head file records, when it verifies; `None` when there is none. A head
/// file that is present but does not verify is an error: it was edited.
fn read_head(log: &Path, keys: &AuditKeys) -> Result<Option<(u64, Hash)>, AuditError> {
    let path = keys::head_path(log);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(AuditError::Io { path, source }),
    };
    keys.verified_head(&text)
        .map(Some)
        .ok_or(AuditError::BrokenTail { path })
}

fn publish_public_key(log: &Path, keys: &AuditKeys) -> std::io::Result<()> {
    let path = keys::public_key_path(log);
    let text = keys.public_key().to_file_text();
    match std::fs::read_to_string(&path) {
        Ok(t) if t == text => return Ok(()),
        Ok(_) => {
            // Another key's (a log under older keys, moved aside): kept beside it, never
            // overwritten, since the checkpoints signed with it can be checked only with it.
            let old = match crate::PublicKey::read(&path) {
                Ok(k) => keys::sibling(log, &format!(".pub.{}", k.fingerprint())),
                Err(_) => keys::sibling(log, ".pub.unreadable"),
            };
            if !old.exists() {
                std::fs::rename(&path, &old)?;
            }
        }
        Err(_) => {}
    }
    let tmp = keys::sibling(log, ".pub.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, &path)
}

/// The last complete line of a file of `len` bytes, and any bytes after it (a torn write).
fn last_line(file: &mut File, len: u64) -> std::io::Result<(Option<Vec<u8>>, Vec<u8>)> {
    const CHUNK: u64 = 64 * 1024;
    let mut tail: Vec<u8> = Vec::new();
    let mut pos = len;
    // Read backwards until the tail holds two newlines (or the whole file).
    loop {
        let start = pos.saturating_sub(CHUNK);
        let mut chunk = vec![0u8; (pos - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut chunk)?;
        chunk.extend_from_slice(&tail);
        tail = chunk;
        pos = start;
        let newlines = tail.iter().filter(|b| **b == b'\n').count();
        let complete_end = tail.iter().rposition(|b| *b == b'\n');
        let enough = match complete_end {
            Some(end) => tail[..end].contains(&b'\n') || pos == 0,
            None => pos == 0,
        };
        if enough || newlines >= 2 {
            break;
        }
    }
    let Some(end) = tail.iter().rposition(|b| *b == b'\n') else {
        return Ok((None, tail));
    };
    let torn = tail[end + 1..].to_vec();
    let start = tail[..end]
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    Ok((Some(tail[start..end].to_vec()), torn))
}

fn first_seq(file: &mut File) -> std::io::Result<Option<u64>> {
    file.seek(SeekFrom::Start(0))?;
    let mut head = vec![0u8; 64];
    let n = file.read(&mut head)?;
    let text = String::from_utf8_lossy(&head[..n]);
    Ok(text
        .strip_prefix("{\"seq\":")
        .and_then(|r| r.split(',').next())
        .and_then(|d| d.parse().ok()))
}

/// The rotated files of the log at `path`, oldest first.
pub fn rotated_files(path: &Path) -> Vec<PathBuf> {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return vec![];
    };
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d.to_owned(),
        None => PathBuf::from("."),
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return vec![];
    };
    let prefix = format!("{name}.");
    let mut files: Vec<(u64, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let digits = n.strip_prefix(&prefix)?;
            (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
                .then(|| digits.parse().ok().map(|s| (s, e.path())))
                .flatten()
        })
        .collect();
    files.sort();
    files.into_iter().map(|(_, p)| p).collect()
}

/// Seq and hash of the last record of the newest rotated file, if its tag verifies.
fn last_of_rotated(path: &Path, keys: &AuditKeys) -> Option<(u64, Hash)> {
    let newest = rotated_files(path).pop()?;
    let mut f = File::open(newest).ok()?;
    let len = f.metadata().ok()?.len();
    let (line, _) = last_line(&mut f, len).ok()?;
    let line = line?;
    let parsed = chain::parse_line(&line).ok()?;
    chain::mac_matches(keys.chain_key(), &parsed.hash, &parsed.mac)
        .then_some((parsed.seq, parsed.hash))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::{self, Trust};

    fn note(n: u64) -> AuditRecord {
        AuditRecord::now(Event::Recovered {
            discarded_bytes: n,
            discarded_sha256: String::new(),
        })
    }

    /// A batch whose write fails (a full disk) leaves neither bytes nor a chain head behind:
    /// the next batch links to the last record on disk, and the log still verifies. (Before,
    /// the head of the failed batch stayed in memory after a rotation's empty file, and the
    /// log reported records missing for good.)
    #[test]
    fn a_failed_write_leaves_no_head_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let keys = Arc::new(AuditKeys::load_or_create(&dir.path().join("audit.key")).unwrap());
        let opts = FileOptions {
            rotate_bytes: u64::MAX,
            rotate_age: None,
            checkpoint_every: 0,
        };
        let mut log = LogFile::open(&path, keys.clone(), opts).unwrap();
        log.write_batch(&[note(1), note(2)], true, false).unwrap();
        // The same file, read-only: every write fails.
        let writable = std::mem::replace(&mut log.file, File::open(&path).unwrap());
        assert!(log.write_batch(&[note(3), note(4)], true, false).is_err());
        log.file = writable;
        log.write_batch(&[note(5)], true, false).unwrap();
        let report = verify::verify_log(&path, Trust::Keys(&keys)).unwrap();
        assert_eq!(report.records, 3, "{report:?}");
    }
}
