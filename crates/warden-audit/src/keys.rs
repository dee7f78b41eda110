//! Audit keys: one key file in the data directory, created on first use with mode 0600.
//!
//! The file holds two 32-byte secrets, hex encoded, one per line:
//!
//! ```text
//! mcp-warden-audit-key v1
//! master <64 hex>
//! sign <64 hex>
//! ```
//!
//! `master` never keys anything directly: the chain key (record MACs and the head file) and the
//! content key (argument and result digests) are derived from it with HMAC-SHA-256 under
//! distinct labels, so a digest can never be replayed as a chain tag. `sign` is the Ed25519
//! seed of the checkpoint key; its public half is published next to the log (`<log>.pub`) so a
//! verifier without the secret key can check signed ranges.
//!
//! Keys never come from the configuration text, never appear in an error or a log line, and
//! their `Debug` shows only the public key's fingerprint.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use ring::rand::SecureRandom as _;
use ring::signature::{self, Ed25519KeyPair, KeyPair as _};
use ring::{digest, hmac};

use crate::chain::{self, Hash};

const HEADER: &str = "mcp-warden-audit-key v1";
const CHAIN_LABEL: &[u8] = b"mcp-warden-audit chain key v1";
const CONTENT_LABEL: &[u8] = b"mcp-warden-audit content key v1";
const CHECKPOINT_DOMAIN: &[u8] = b"mcp-warden-audit-checkpoint-v1\0";
const HEAD_DOMAIN: &[u8] = b"mcp-warden-audit-head-v1\0";
/// Longest key file read: it is a few lines.
const MAX_KEY_FILE: u64 = 4096;

/// Errors loading or creating the audit keys. Messages name the file, never a key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read or created.
    #[error("cannot access audit key file {path}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is readable or writable by others than its owner.
    #[error("audit key file {path} is accessible to other users (mode {mode:o}); chmod 600 it")]
    Permissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is not a key file.
    #[error("audit key file {path} is malformed")]
    Malformed {
        /// The key file.
        path: PathBuf,
    },
    /// The system random generator failed.
    #[error("cannot generate an audit key")]
    Random,
    /// A public key file is malformed.
    #[error("public key file {path} is malformed")]
    PublicKey {
        /// The file.
        path: PathBuf,
    },
    /// Key text from elsewhere than a file (the OS keyring) is not a key file's text.
    #[error("the audit key from {source_name} is malformed")]
    MalformedText {
        /// Where it came from (`keyring:SERVICE/USER`), never the text.
        source_name: String,
    },
}

/// The secret keys of one audit log.
pub struct AuditKeys {
    chain: hmac::Key,
    content: hmac::Key,
    signing: Ed25519KeyPair,
}

impl std::fmt::Debug for AuditKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditKeys")
            .field("public_key", &self.public_key().fingerprint())
            .finish_non_exhaustive()
    }
}

impl AuditKeys {
    /// Loads the key file at `path`, creating it (mode 0600, parent directories 0700) with
    /// fresh random keys when it does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        match Self::load(path) {
            Err(KeyError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Self::create(path)
            }
            other => other,
        }
    }

    /// Loads an existing key file. Refuses one that others can read or write.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let mode = file.metadata().map_err(io)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions {
                path: path.to_owned(),
                mode,
            });
        }
        let mut text = String::new();
        file.take(MAX_KEY_FILE)
            .read_to_string(&mut text)
            .map_err(io)?;
        Self::parse(&text).ok_or_else(|| KeyError::Malformed {
            path: path.to_owned(),
        })
    }

    /// Keys from the text of a key file held elsewhere (an OS keyring entry); `source_name`
    /// names that place in the error, the text never appears.
    pub fn from_text(text: &str, source_name: &str) -> Result<Self, KeyError> {
        Self::parse(text).ok_or_else(|| KeyError::MalformedText {
            source_name: source_name.to_owned(),
        })
    }

    /// The text of a key file with fresh random keys (for storing in an OS keyring).
    pub fn generate_text() -> Result<String, KeyError> {
        let rng = ring::rand::SystemRandom::new();
        let mut master = [0u8; 32];
        let mut seed = [0u8; 32];
        rng.fill(&mut master).map_err(|_| KeyError::Random)?;
        rng.fill(&mut seed).map_err(|_| KeyError::Random)?;
        Ok(format!(
            "{HEADER}\nmaster {}\nsign {}\n",
            chain::hex(&master),
            chain::hex(&seed)
        ))
    }

    fn parse(text: &str) -> Option<Self> {
        if text.len() as u64 > MAX_KEY_FILE {
            return None;
        }
        let mut lines = text.lines();
        if lines.next() != Some(HEADER) {
            return None;
        }
        let mut field = |name: &str| -> Option<Hash> {
            let value = lines
                .next()?
                .strip_prefix(name)
                .and_then(|r| r.strip_prefix(' '))?;
            chain::parse_hex(value.as_bytes()).ok()
        };
        let master = field("master")?;
        let seed = field("sign")?;
        Self::from_secrets(&master, &seed)
    }

    fn create(path: &Path) -> Result<Self, KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io)?;
        }
        let rng = ring::rand::SystemRandom::new();
        let mut master = [0u8; 32];
        let mut seed = [0u8; 32];
        rng.fill(&mut master).map_err(|_| KeyError::Random)?;
        rng.fill(&mut seed).map_err(|_| KeyError::Random)?;
        let keys = Self::from_secrets(&master, &seed).ok_or(KeyError::Random)?;
        let text = format!(
            "{HEADER}\nmaster {}\nsign {}\n",
            chain::hex(&master),
            chain::hex(&seed)
        );
        // Written whole to a file of this process's own, then linked into place (which fails
        // if the key file exists): two gateways starting at once never overwrite each other's
        // key, the loser of the race loads a complete file, and a crash mid-write leaves no
        // empty key file behind.
        let mut nonce = [0u8; 8];
        rng.fill(&mut nonce).map_err(|_| KeyError::Random)?;
        let tmp = sibling(path, &format!(".tmp{}", chain::hex(&nonce)));
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut file| {
                file.write_all(text.as_bytes())?;
                file.sync_all()
            });
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(e));
        }
        let linked = std::fs::hard_link(&tmp, path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
                    && let Ok(dir) = File::open(dir)
                {
                    let _ = dir.sync_all();
                }
                Ok(keys)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::load(path),
            Err(e) => Err(io(e)),
        }
    }

    /// Keys from raw secrets (tests and benches; the gateway uses a key file).
    pub fn from_secrets(master: &[u8; 32], seed: &[u8; 32]) -> Option<Self> {
        let root = hmac::Key::new(hmac::HMAC_SHA256, master);
        let derive =
            |label: &[u8]| hmac::Key::new(hmac::HMAC_SHA256, hmac::sign(&root, label).as_ref());
        Some(Self {
            chain: derive(CHAIN_LABEL),
            content: derive(CONTENT_LABEL),
            signing: Ed25519KeyPair::from_seed_unchecked(seed).ok()?,
        })
    }

    /// The key of record MACs and the head file.
    pub(crate) fn chain_key(&self) -> &hmac::Key {
        &self.chain
    }

    /// The tag of a record's chain hash (what the `mac` field holds).
    pub fn mac(&self, hash: &Hash) -> Hash {
        chain::record_mac(&self.chain, hash)
    }

    /// The key of argument and result digests.
    pub(crate) fn content_key(&self) -> &hmac::Key {
        &self.content
    }

    /// The public half of the checkpoint key.
    pub fn public_key(&self) -> PublicKey {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.signing.public_key().as_ref());
        PublicKey(out)
    }

    /// Signs a checkpoint over the record `seq` whose chain hash is `hash`.
    pub(crate) fn sign_checkpoint(&self, seq: u64, hash: &Hash) -> Vec<u8> {
        self.signing
            .sign(&checkpoint_message(seq, hash))
            .as_ref()
            .to_vec()
    }

    /// The tag of the head file (`seq` and `hash` of the last durable record).
    /// The chain head a head file's text records (`{"seq":..,"hash":..,"mac":..}`), when it
    /// parses and its MAC verifies under these keys.
    pub(crate) fn verified_head(&self, text: &str) -> Option<(u64, Hash)> {
        let v: serde_json::Value = serde_json::from_str(text).ok()?;
        let seq = v.get("seq")?.as_u64()?;
        let hex = |k: &str| chain::parse_hex(v.get(k)?.as_str()?.as_bytes()).ok();
        let (hash, mac) = hex("hash").zip(hex("mac"))?;
        (self.head_mac(seq, &hash) == mac).then_some((seq, hash))
    }

    pub(crate) fn head_mac(&self, seq: u64, hash: &Hash) -> Hash {
        let mut msg = Vec::with_capacity(HEAD_DOMAIN.len() + 8 + 32);
        msg.extend_from_slice(HEAD_DOMAIN);
        msg.extend_from_slice(&seq.to_be_bytes());
        msg.extend_from_slice(hash);
        chain::record_mac(&self.chain, &{
            let mut h = [0u8; 32];
            h.copy_from_slice(digest::digest(&digest::SHA256, &msg).as_ref());
            h
        })
    }
}

fn checkpoint_message(seq: u64, hash: &Hash) -> Vec<u8> {
    let mut msg = Vec::with_capacity(CHECKPOINT_DOMAIN.len() + 8 + 32);
    msg.extend_from_slice(CHECKPOINT_DOMAIN);
    msg.extend_from_slice(&seq.to_be_bytes());
    msg.extend_from_slice(hash);
    msg
}

/// The public checkpoint key: what a verifier without the secret key trusts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// Short identifier: the first 16 hex digits of the key's SHA-256.
    pub fn fingerprint(&self) -> String {
        chain::hex(&digest::digest(&digest::SHA256, &self.0).as_ref()[..8])
    }

    /// Checks a checkpoint signature over record `seq` with chain hash `hash`.
    pub fn verify_checkpoint(&self, seq: u64, hash: &Hash, sig: &[u8]) -> bool {
        signature::UnparsedPublicKey::new(&signature::ED25519, &self.0)
            .verify(&checkpoint_message(seq, hash), sig)
            .is_ok()
    }

    /// The text of a public key file: `ed25519 <64 hex>`.
    pub fn to_file_text(&self) -> String {
        format!("ed25519 {}\n", chain::hex(&self.0))
    }

    /// Reads a public key file.
    pub fn read(path: &Path) -> Result<Self, KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        let mut text = String::new();
        File::open(path)
            .map_err(io)?
            .take(MAX_KEY_FILE)
            .read_to_string(&mut text)
            .map_err(io)?;
        text.trim_end()
            .strip_prefix("ed25519 ")
            .and_then(|h| chain::parse_hex(h.as_bytes()).ok())
            .map(PublicKey)
            .ok_or_else(|| KeyError::PublicKey {
                path: path.to_owned(),
            })
    }
}

/// Where the public key of the log at `log` is published.
pub fn public_key_path(log: &Path) -> PathBuf {
    sibling(log, ".pub")
}

/// Where the head of the log at `log` is kept.
pub fn head_path(log: &Path) -> PathBuf {
    sibling(log, ".head")
}

/// The lock file writers of the log at `log` share.
pub fn lock_path(log: &Path) -> PathBuf {
    sibling(log, ".lock")
}

pub(crate) fn sibling(log: &Path, suffix: &str) -> PathBuf {
    let mut name = log
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(suffix);
    log.with_file_name(name)
}

#[cfg(test)]
mod tests {

    /// Gateways starting at once create one key between them: every one loads the same keys
    /// (none reads a half-written file), and no temporary file is left behind.
    #[test]
    fn concurrent_first_starts_agree_on_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        let fingerprints: Vec<String> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        AuditKeys::load_or_create(&path)
                            .unwrap()
                            .public_key()
                            .fingerprint()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(
            fingerprints.windows(2).all(|w| w[0] == w[1]),
            "{fingerprints:?}"
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["audit.key"]);
    }
    use super::*;

    #[test]
    fn key_file_is_created_private_and_reloads_to_the_same_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/audit.key");
        let a = AuditKeys::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = AuditKeys::load_or_create(&path).unwrap();
        assert_eq!(a.public_key(), b.public_key());
        let h = [3u8; 32];
        assert_eq!(
            chain::record_mac(a.chain_key(), &h),
            chain::record_mac(b.chain_key(), &h)
        );
        // Derived keys differ from each other.
        assert_ne!(
            chain::record_mac(a.chain_key(), &h),
            chain::record_mac(a.content_key(), &h)
        );
    }

    #[test]
    fn refuses_a_key_file_others_can_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        AuditKeys::load_or_create(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = AuditKeys::load(&path).unwrap_err();
        assert!(
            matches!(err, KeyError::Permissions { mode: 0o644, .. }),
            "{err}"
        );
    }

    #[test]
    fn debug_and_errors_show_no_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        let keys = AuditKeys::load_or_create(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let debug = format!("{keys:?}");
        for line in text.lines().skip(1) {
            let secret = line.split(' ').nth(1).unwrap();
            assert!(!debug.contains(secret));
        }
        std::fs::write(&path, text.replacen("master ", "master x", 1)).unwrap();
        let err = AuditKeys::load(&path).unwrap_err().to_string();
        for line in text.lines().skip(1) {
            assert!(!err.contains(line.split(' ').nth(1).unwrap()), "{err}");
        }
    }

    #[test]
    fn key_text_from_a_keyring_loads_like_the_file() {
        let text = AuditKeys::generate_text().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        std::fs::write(&path, &text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let from_file = AuditKeys::load(&path).unwrap();
        let from_text = AuditKeys::from_text(&text, "keyring:s/u").unwrap();
        assert_eq!(from_file.public_key(), from_text.public_key());
        assert_ne!(
            AuditKeys::generate_text().unwrap(),
            text,
            "every generated key is fresh"
        );
        let bad = text.replacen("master ", "master 0", 1);
        let err = AuditKeys::from_text(&bad, "keyring:s/u")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "the audit key from keyring:s/u is malformed");
        let secret = text.lines().nth(1).unwrap().split(' ').nth(1).unwrap();
        assert!(!err.contains(secret));
    }

    #[test]
    fn checkpoint_signatures_verify_only_for_their_hash() {
        let keys = AuditKeys::from_secrets(&[1; 32], &[2; 32]).unwrap();
        let sig = keys.sign_checkpoint(9, &[5; 32]);
        let pk = keys.public_key();
        assert!(pk.verify_checkpoint(9, &[5; 32], &sig));
        assert!(!pk.verify_checkpoint(8, &[5; 32], &sig));
        assert!(!pk.verify_checkpoint(9, &[6; 32], &sig));
    }
}
