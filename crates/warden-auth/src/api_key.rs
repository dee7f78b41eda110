//! API keys: `mwk_<id>_<secret><checksum>`, stored only as an HMAC-SHA-256.
//!
//! - **Format.** `mwk_` (so secret scanners can find leaked keys), a 16-hex-digit public key id,
//!   `_`, 64 hex digits of secret (256 random bits) and 8 hex digits of CRC-32 over everything
//!   before them (a scanner, or the gateway, can tell a real key from a typo without a lookup).
//! - **Storage.** One record per key id in [`Namespace::API_KEY`] of a [`Store`]: the principal,
//!   roles, creation, expiry, revocation and last-use times, and `HMAC-SHA-256(k, key)`. The HMAC
//!   key `k` is 32 random bytes in a `0600` file in the data directory, apart from the store: a
//!   copy of the store alone allows no offline check of guessed keys. The key itself is shown
//!   once, at creation, and never stored.
//! - **Verification** compares HMACs in constant time, then checks revocation and expiry.
//!   Several keys per principal can be active at once (rotation with overlap).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::future::BoxFuture;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};
use warden_guard::{AuthMethod, Principal};
use warden_store::{DynStore, Namespace, StoreError};

/// Prefix of every key: what secret scanners look for.
pub const KEY_PREFIX: &str = "mwk_";
/// Hex digits of the public key id.
const ID_HEX: usize = 16;
/// Hex digits of the secret (256 bits).
const SECRET_HEX: usize = 64;
/// Hex digits of the CRC-32 checksum.
const CHECKSUM_HEX: usize = 8;
/// Length of a well-formed key.
pub const KEY_LEN: usize = KEY_PREFIX.len() + ID_HEX + 1 + SECRET_HEX + CHECKSUM_HEX;
/// File name of the HMAC key in the data directory.
pub const HMAC_KEY_FILE: &str = "api-key-hmac.key";
/// Directory of the key store in the data directory (a [`warden_store::FileStore`]).
pub const STORE_DIR: &str = "api-keys";
/// Longest principal name or role.
pub const MAX_NAME_LEN: usize = 128;
/// Most keys the gateway loads: bounds the snapshot.
pub const MAX_KEYS: usize = 10_000;

/// What went wrong managing keys. Never contains a key.
#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    /// The store failed.
    #[error("api key store failed")]
    Store(#[from] StoreError),
    /// The HMAC key file could not be read or created.
    #[error("cannot use the api key hmac file `{path}`")]
    HmacFile {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The HMAC key file is not 32 bytes.
    #[error("the api key hmac file `{path}` is not 32 bytes")]
    HmacLength {
        /// The file.
        path: String,
    },
    /// The system random generator failed.
    #[error("the system random generator failed")]
    Random,
    /// A principal or role name outside the allowed characters.
    #[error("invalid name \"{name}\": 1 to 128 of letters, digits and . _ - @ :")]
    InvalidName {
        /// As given.
        name: String,
    },
    /// No key with this id.
    #[error("no api key with id \"{id}\"")]
    NotFound {
        /// The id.
        id: String,
    },
    /// A stored record that does not parse.
    #[error("api key record \"{id}\" is corrupt")]
    Corrupt {
        /// The id.
        id: String,
    },
}

/// A stored key (everything but the key itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// The public id (also the store key).
    pub id: String,
    /// The principal the key authenticates as.
    pub principal: String,
    /// Roles granted to requests with this key.
    pub roles: Vec<String>,
    /// Optional label.
    #[serde(default)]
    pub label: Option<String>,
    /// Lowercase hex `HMAC-SHA-256(hmac key, full key)`.
    pub digest: String,
    /// Creation, Unix seconds.
    pub created: u64,
    /// Expiry, Unix seconds; `None`: never.
    pub expires: Option<u64>,
    /// Revocation, Unix seconds.
    #[serde(default)]
    pub revoked: Option<u64>,
    /// Last successful use, Unix seconds (written back periodically).
    #[serde(default)]
    pub last_used: Option<u64>,
}

impl KeyRecord {
    /// `active`, `expired` or `revoked` at `now`.
    pub fn status(&self, now: u64) -> &'static str {
        if self.revoked.is_some() {
            "revoked"
        } else if self.expires.is_some_and(|exp| now >= exp) {
            "expired"
        } else {
            "active"
        }
    }
}

/// Unix seconds now.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The HMAC key, loaded from (or created in) the data directory.
pub struct HmacKey(hmac::Key);

impl std::fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HmacKey(***)")
    }
}

impl HmacKey {
    /// Reads `dir/api-key-hmac.key`, creating it (`0600`, 32 random bytes) when `create` and it
    /// does not exist. `Ok(None)`: absent and not created.
    pub fn load(dir: &Path, create: bool) -> Result<Option<Self>, ApiKeyError> {
        let path = dir.join(HMAC_KEY_FILE);
        let shown = || path.display().to_string();
        match std::fs::read(&path) {
            Ok(bytes) if bytes.len() == 32 => Ok(Some(Self::from_bytes(&bytes))),
            Ok(_) => Err(ApiKeyError::HmacLength { path: shown() }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound && create => {
                let mut bytes = [0u8; 32];
                SystemRandom::new()
                    .fill(&mut bytes)
                    .map_err(|_| ApiKeyError::Random)?;
                write_private(dir, &path, &bytes).map_err(|source| ApiKeyError::HmacFile {
                    path: shown(),
                    source,
                })?;
                Ok(Some(Self::from_bytes(&bytes)))
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ApiKeyError::HmacFile {
                path: shown(),
                source,
            }),
        }
    }

    /// A key from raw bytes (tests and benches).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, bytes))
    }

    fn digest(&self, key: &str) -> String {
        hex(hmac::sign(&self.0, key.as_bytes()).as_ref())
    }

    fn verify(&self, key: &str, digest_hex: &str) -> bool {
        let Some(digest) = unhex(digest_hex) else {
            return false;
        };
        hmac::verify(&self.0, key.as_bytes(), &digest).is_ok()
    }
}

/// Creates `path` with mode `0600` (failing if it exists, so a concurrent creator's key is
/// never overwritten), in `dir` created `0700` if missing.
fn write_private(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    #[cfg(unix)]
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    builder.mode(0o700);
    builder.create(dir)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn is_lower_hex(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The key id of a well-formed key (prefix, lengths, lowercase hex, checksum), else `None`.
pub fn parse_key(key: &str) -> Option<&str> {
    // ASCII first: the splits below are at byte offsets, which must be character boundaries
    // (a header may carry any byte from 0x80 up).
    if key.len() != KEY_LEN || !key.is_ascii() || !key.starts_with(KEY_PREFIX) {
        return None;
    }
    let rest = &key[KEY_PREFIX.len()..];
    let (id, rest) = rest.split_at(ID_HEX);
    let rest = rest.strip_prefix('_')?;
    let (secret, checksum) = rest.split_at(SECRET_HEX);
    if !is_lower_hex(id) || !is_lower_hex(secret) || !is_lower_hex(checksum) {
        return None;
    }
    let body = &key[..key.len() - CHECKSUM_HEX];
    (format!("{:08x}", crc32fast::hash(body.as_bytes())) == checksum).then_some(id)
}

/// Checks a principal or role name: 1 to 128 of `[A-Za-z0-9._@:-]`.
pub fn check_name(name: &str) -> Result<(), ApiKeyError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@:".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ApiKeyError::InvalidName {
            name: name.chars().take(MAX_NAME_LEN + 1).collect(),
        })
    }
}

/// A freshly created key: the secret is here and nowhere else.
pub struct CreatedKey {
    /// The full key, to show once.
    pub key: String,
    /// What was stored.
    pub record: KeyRecord,
}

impl std::fmt::Debug for CreatedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedKey")
            .field("key", &"***")
            .field("record", &self.record)
            .finish()
    }
}

/// Key management over a store (`mcp-warden keys`).
pub struct KeyAdmin<'a> {
    /// The store.
    pub store: &'a DynStore,
    /// The HMAC key.
    pub hmac: &'a HmacKey,
}

impl std::fmt::Debug for KeyAdmin<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyAdmin")
    }
}

impl KeyAdmin<'_> {
    /// Creates and stores a key for `principal`.
    pub async fn create(
        &self,
        principal: &str,
        roles: Vec<String>,
        label: Option<String>,
        valid_for: Option<Duration>,
    ) -> Result<CreatedKey, ApiKeyError> {
        check_name(principal)?;
        for role in &roles {
            check_name(role)?;
        }
        let rng = SystemRandom::new();
        let mut id_bytes = [0u8; ID_HEX / 2];
        let mut secret = [0u8; SECRET_HEX / 2];
        rng.fill(&mut id_bytes).map_err(|_| ApiKeyError::Random)?;
        rng.fill(&mut secret).map_err(|_| ApiKeyError::Random)?;
        let id = hex(&id_bytes);
        let body = format!("{KEY_PREFIX}{id}_{}", hex(&secret));
        let key = format!("{body}{:08x}", crc32fast::hash(body.as_bytes()));
        let now = unix_now();
        let mut roles = roles;
        roles.sort();
        roles.dedup();
        let record = KeyRecord {
            id: id.clone(),
            principal: principal.to_owned(),
            roles,
            label,
            digest: self.hmac.digest(&key),
            created: now,
            expires: valid_for.map(|d| now.saturating_add(d.as_secs())),
            revoked: None,
            last_used: None,
        };
        let value = Bytes::from(
            serde_json::to_vec(&record).map_err(|_| ApiKeyError::Corrupt { id: id.clone() })?,
        );
        // 64 random bits: a collision is practically impossible, and refused if it happens.
        if !self
            .store
            .put_if_absent(Namespace::API_KEY, &id, value, None)
            .await?
        {
            return Err(ApiKeyError::Random);
        }
        Ok(CreatedKey { key, record })
    }

    /// Every stored key, by id.
    pub async fn list(&self) -> Result<Vec<KeyRecord>, ApiKeyError> {
        load_all(self.store).await
    }

    /// Revokes `id` (the record stays, marked revoked). Revoking twice keeps the first time.
    pub async fn revoke(&self, id: &str) -> Result<KeyRecord, ApiKeyError> {
        loop {
            let current = self
                .store
                .get(Namespace::API_KEY, id)
                .await?
                .ok_or_else(|| ApiKeyError::NotFound { id: id.to_owned() })?;
            let mut record: KeyRecord = serde_json::from_slice(&current)
                .map_err(|_| ApiKeyError::Corrupt { id: id.to_owned() })?;
            if record.revoked.is_some() {
                return Ok(record);
            }
            record.revoked = Some(unix_now());
            let value = Bytes::from(
                serde_json::to_vec(&record)
                    .map_err(|_| ApiKeyError::Corrupt { id: id.to_owned() })?,
            );
            if self
                .store
                .compare_and_swap(Namespace::API_KEY, id, Some(&current), Some(value), None)
                .await?
            {
                return Ok(record);
            }
        }
    }
}

async fn load_all(store: &DynStore) -> Result<Vec<KeyRecord>, ApiKeyError> {
    let ids = store.list(Namespace::API_KEY, "", MAX_KEYS).await?;
    let mut records = Vec::with_capacity(ids.len());
    for id in ids {
        let Some(bytes) = store.get(Namespace::API_KEY, &id).await? else {
            continue;
        };
        match serde_json::from_slice::<KeyRecord>(&bytes) {
            Ok(record) if record.id == id => records.push(record),
            _ => return Err(ApiKeyError::Corrupt { id }),
        }
    }
    Ok(records)
}

/// Opens the key store for one refresh; the store is dropped (and its lock released) after.
pub type StoreOpener =
    Arc<dyn Fn() -> BoxFuture<'static, Result<DynStore, StoreError>> + Send + Sync>;

/// Verifies API keys against a periodically refreshed snapshot of the store.
///
/// The embedded store is a single-writer file, shared with `mcp-warden keys`; the verifier
/// opens it only for a refresh (every `api_key_refresh`), reads every record, writes back
/// last-used times, and closes it. A key created or revoked takes effect within one refresh.
pub struct ApiKeyVerifier {
    hmac: HmacKey,
    opener: StoreOpener,
    snapshot: RwLock<Arc<HashMap<String, KeyRecord>>>,
    /// Ids used since the last write-back, with the time of use.
    used: Mutex<HashMap<String, u64>>,
}

impl std::fmt::Debug for ApiKeyVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyVerifier")
            .field("keys", &self.snapshot.read().map_or(0, |s| s.len()))
            .finish_non_exhaustive()
    }
}

/// Why an API key was refused (for logs; the client learns only "invalid API key").
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyRefusal {
    /// Not a well-formed key.
    #[error("malformed api key")]
    Malformed,
    /// No record for the id, or the HMAC differs.
    #[error("unknown api key")]
    Unknown,
    /// Revoked.
    #[error("revoked api key")]
    Revoked,
    /// Past its expiry.
    #[error("expired api key")]
    Expired,
}

impl ApiKeyVerifier {
    /// A verifier that reads keys through `opener`; call [`ApiKeyVerifier::refresh`] before use.
    pub fn new(hmac: HmacKey, opener: StoreOpener) -> Self {
        Self {
            hmac,
            opener,
            snapshot: RwLock::new(Arc::new(HashMap::new())),
            used: Mutex::new(HashMap::new()),
        }
    }

    /// The principal of `key` at `now`.
    pub fn verify(&self, key: &str, now: u64) -> Result<Principal, KeyRefusal> {
        let id = parse_key(key).ok_or(KeyRefusal::Malformed)?;
        let snapshot = Arc::clone(&self.snapshot.read().unwrap_or_else(PoisonError::into_inner));
        let record = snapshot.get(id).ok_or(KeyRefusal::Unknown)?;
        if !self.hmac.verify(key, &record.digest) {
            return Err(KeyRefusal::Unknown);
        }
        if record.revoked.is_some() {
            return Err(KeyRefusal::Revoked);
        }
        if record.expires.is_some_and(|exp| now >= exp) {
            return Err(KeyRefusal::Expired);
        }
        self.used
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(record.id.clone(), now);
        Ok(
            Principal::new(record.principal.as_str(), AuthMethod::ApiKey)
                .with_roles(record.roles.iter().map(String::as_str)),
        )
    }

    /// Re-reads the store and writes back last-used times. On failure the previous snapshot
    /// stays in force (a revocation is then delayed, never undone).
    pub async fn refresh(&self) -> Result<usize, ApiKeyError> {
        let store = (self.opener)().await?;
        let used: Vec<(String, u64)> =
            std::mem::take(&mut *self.used.lock().unwrap_or_else(PoisonError::into_inner))
                .into_iter()
                .collect();
        for (id, at) in used {
            if let Err(error) = touch(&store, &id, at).await {
                warn!(%error, "writing an api key's last-used time failed");
            }
        }
        let records = load_all(&store).await?;
        drop(store);
        let count = records.len();
        let map = records.into_iter().map(|r| (r.id.clone(), r)).collect();
        *self
            .snapshot
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(map);
        debug!(keys = count, "api keys loaded");
        Ok(count)
    }
}

/// Sets `last_used` of `id` to `at` unless it is already later.
async fn touch(store: &DynStore, id: &str, at: u64) -> Result<(), ApiKeyError> {
    for _ in 0..8 {
        let Some(current) = store.get(Namespace::API_KEY, id).await? else {
            return Ok(());
        };
        let mut record: KeyRecord = serde_json::from_slice(&current)
            .map_err(|_| ApiKeyError::Corrupt { id: id.to_owned() })?;
        if record.last_used.is_some_and(|last| last >= at) {
            return Ok(());
        }
        record.last_used = Some(at);
        let value = Bytes::from(
            serde_json::to_vec(&record).map_err(|_| ApiKeyError::Corrupt { id: id.to_owned() })?,
        );
        if store
            .compare_and_swap(Namespace::API_KEY, id, Some(&current), Some(value), None)
            .await?
        {
            return Ok(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
