//! Digests of the files a command runs, remembered across starts in the data directory
//! (`command-digests.json`).
//!
//! Hashing what a command runs is most of the time a start spends on its command pin: the
//! executable is read whole, and `node` is about 100 MB (40 ms of SHA-256 on every start of a
//! Node server). A remembered digest is used only when the file, opened now, has the
//! **identity** it had when it was hashed: device, inode, size, modification time and status
//! change time (`ctime`), to the nanosecond. The kernel sets `ctime` to the current time on
//! every change to a file's bytes or metadata, and no system call sets it back (`utimensat`
//! sets the access and modification times only), so a file whose bytes changed through the
//! filesystem does not match. Changing a file without changing its `ctime` takes writing to
//! the block device or setting the system clock, both root's.
//!
//! Not remembered, so hashed on every start:
//! - files on a filesystem outside [`LOCAL_FILESYSTEMS`]: network and FUSE filesystems may
//!   report attributes cached from before a change made elsewhere;
//! - files changed less than [`SETTLE_SECS`] before they were hashed: timestamps come from a
//!   coarse clock, and a second write within the same tick would leave them as they were;
//! - files whose identity changed while they were read.
//!
//! The cache is as trusted as the data directory, which also holds the audit key and (with
//! the embedded store) the pins themselves. It is bounded ([`MAX_ENTRIES`]), written
//! atomically, and a cache that cannot be read is treated as empty.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{CommandError, FileDigest, hash_file};

/// File name in the data directory.
pub const FILE_NAME: &str = "command-digests.json";

/// Most files remembered; the least recently hashed are dropped first.
pub const MAX_ENTRIES: usize = 256;

/// A file changed less than this many seconds before it was hashed is not remembered.
pub const SETTLE_SECS: i64 = 2;

/// Filesystems whose attributes are the kernel's own (`statfs(2)` magic numbers): ext2/3/4,
/// XFS, Btrfs, tmpfs, overlayfs, F2FS, ZFS, bcachefs, ramfs, squashfs.
pub const LOCAL_FILESYSTEMS: &[i64] = &[
    0xEF53,
    0x5846_5342,
    0x9123_683E,
    0x0102_1994,
    0x794C_7630,
    0xF2F5_2010,
    0x2FC1_2FC1,
    0xCA45_1A4E,
    0x8584_58F6,
    0x7371_7368,
];

/// What identifies one version of a file, as `stat(2)` reports it (the type the sandbox
/// launcher checks a program against, so a remembered identity and a checked one are the same
/// thing).
pub use warden_sandbox::ProgramIdentity as Identity;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    identity: Identity,
    sha256: String,
    /// Unix seconds when it was hashed (eviction order).
    hashed_at: u64,
}

#[derive(Default, Serialize, Deserialize)]
struct Stored {
    /// Keyed by the file's path after symbolic links.
    files: BTreeMap<String, Entry>,
}

/// How a digest was obtained (for tests and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Read from the cache: the file's identity matched.
    Remembered,
    /// The file was read and hashed, and the digest remembered.
    Hashed,
    /// The file was read and hashed, and not remembered (see the module documentation).
    HashedNotRemembered,
}

/// The cache of one data directory.
pub struct DigestCache {
    file: PathBuf,
    stored: Stored,
    changed: bool,
    /// [`SETTLE_SECS`] in nanoseconds (tests shorten it: a file's `ctime` cannot be set).
    settle_ns: i128,
}

impl DigestCache {
    /// Loads the cache of `data_dir` (empty when there is none or it cannot be read).
    pub fn open(data_dir: &Path) -> DigestCache {
        let file = data_dir.join(FILE_NAME);
        let stored = std::fs::read(&file)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        DigestCache {
            file,
            stored,
            changed: false,
            settle_ns: i128::from(SETTLE_SECS) * 1_000_000_000,
        }
    }

    /// The file and SHA-256 of `path` after symbolic links, from the cache when the file's
    /// identity matches, otherwise hashed (and remembered when allowed).
    pub fn digest(&mut self, path: &Path) -> Result<(FileDigest, Source), CommandError> {
        self.digest_identified(path).map(|(d, s, _)| (d, s))
    }

    /// [`DigestCache::digest`], with the identity of the file the digest is of (`None` when
    /// the file changed while it was read).
    pub fn digest_identified(
        &mut self,
        path: &Path,
    ) -> Result<(FileDigest, Source, Option<Identity>), CommandError> {
        let read = |source| CommandError::Read {
            path: path.to_owned(),
            source,
        };
        let target = std::fs::canonicalize(path).map_err(read)?;
        let key = target.display().to_string();
        let file = File::open(&target).map_err(read)?;
        let before = Identity::of(&file.metadata().map_err(read)?);
        if let Some(entry) = self.stored.files.get(&key)
            && entry.identity == before
            && is_local(&file)
        {
            let digest = FileDigest {
                path: key,
                sha256: entry.sha256.clone(),
            };
            return Ok((digest, Source::Remembered, Some(before)));
        }
        let now_ns = unix_now_ns();
        let sha256 = hash_file(&file, path)?;
        let after = Identity::of(&file.metadata().map_err(read)?);
        let settled = before.ctime_ns < now_ns - self.settle_ns;
        let source = if before == after && settled && is_local(&file) {
            let hashed_at = u64::try_from(now_ns / 1_000_000_000).unwrap_or(0);
            self.remember(key.clone(), after, sha256.clone(), hashed_at);
            Source::Hashed
        } else {
            if self.stored.files.remove(&key).is_some() {
                self.changed = true;
            }
            Source::HashedNotRemembered
        };
        let identity = (before == after).then_some(before);
        Ok((FileDigest { path: key, sha256 }, source, identity))
    }

    fn remember(&mut self, key: String, identity: Identity, sha256: String, hashed_at: u64) {
        let entry = Entry {
            identity,
            sha256,
            hashed_at,
        };
        self.stored.files.insert(key, entry);
        while self.stored.files.len() > MAX_ENTRIES {
            let oldest = self
                .stored
                .files
                .iter()
                .min_by_key(|(_, e)| e.hashed_at)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => self.stored.files.remove(&k),
                None => break,
            };
        }
        self.changed = true;
    }

    /// Writes the cache back if it changed (atomically: a temporary file renamed over it).
    pub fn save(&self) -> std::io::Result<()> {
        if !self.changed {
            return Ok(());
        }
        let dir = self.file.parent().unwrap_or(Path::new("."));
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(dir)?;
        let bytes = serde_json::to_vec(&self.stored).map_err(std::io::Error::other)?;
        // Unique per save: two re-checks of one gateway may save at once.
        static SAVES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SAVES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = dir.join(format!("{FILE_NAME}.{}.{n}.tmp", std::process::id()));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| f.write_all(&bytes))
            .and_then(|()| std::fs::rename(&tmp, &self.file));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }
}

fn is_local(file: &File) -> bool {
    rustix::fs::fstatfs(file).is_ok_and(|s| {
        #[expect(
            clippy::useless_conversion,
            reason = "f_type is an i64 on glibc's 64-bit targets, narrower on others"
        )]
        let kind = i64::from(s.f_type);
        LOCAL_FILESYSTEMS.contains(&kind)
    })
}

fn unix_now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX))
}

#[cfg(test)]
mod tests;
