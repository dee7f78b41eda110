//! Command pins (RUN-3): what a stdio upstream's command runs, recorded on first use and
//! compared before every start.
//!
//! A [`CommandSnapshot`] holds the executable the command resolves to (the `PATH` lookup the
//! sandbox launcher does, passed in by the caller), where its symbolic links lead, the SHA-256
//! of that file's bytes, the script an interpreter runs (`python3 server.py`: the digest of
//! `server.py`), and every package a launcher fetches (`npx`, `uvx`, `pipx run`, `bunx`,
//! `pnpm dlx`, `docker run`, ...: name, requested version and, where it can be read offline,
//! the installed version; see [`spec`] and [`installed`]).
//!
//! The first snapshot of an upstream is pinned (trust on first use). A later snapshot that
//! differs in path, digest, script or package version is recorded as pending and reported
//! *before* the process is spawned; the gateway refuses to start that upstream (or only warns,
//! as configured) until `mcp-warden pins approve <upstream> --command`. An installed version
//! that was unknown when pinned and is known now (npx fetched the package on the first run)
//! completes the pin; one known on one side only is never a change on its own.
//!
//! Records live next to the tool pins, under `command:<upstream>` (see [`crate::record`]).

pub mod digests;
pub mod installed;
pub mod spec;

use std::io::Read as _;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use warden_store::Namespace;

use crate::book::{PinBook, PinError};
use crate::record::{RECORD_VERSION, now};
use spec::{Launcher, PackageSpec, Pinning};

/// Largest file digested: bounds the start-up cost of one upstream (interpreters and
/// container runtimes are well below it).
pub const MAX_DIGEST_BYTES: u64 = 1 << 30;

/// Most upstream command records listed at once.
pub const MAX_COMMAND_RECORDS: usize = 100_000;

/// Why a command could not be observed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The executable (or script) could not be read.
    #[error("cannot read {path} to pin it")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_DIGEST_BYTES`].
    #[error("{path} is larger than {MAX_DIGEST_BYTES} bytes; it is not pinned")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
}

/// A file and the SHA-256 of its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    /// The file, after symbolic links.
    pub path: String,
    /// `sha256:<hex>` of its bytes.
    pub sha256: String,
}

/// One package a launcher fetches, as pinned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackagePin {
    /// The launcher (`npx`, `uvx`, ...).
    pub launcher: Launcher,
    /// The package's name.
    pub name: String,
    /// The version, tag, range or digest requested on the command line.
    pub requested: Option<String>,
    /// How firmly `requested` names what runs.
    pub pinning: Pinning,
    /// The version installed on this machine, when it can be read offline.
    pub installed: Option<String>,
}

/// What one upstream command runs, at one time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandSnapshot {
    /// The program as configured (`npx`, `./server`, `/usr/bin/python3`).
    pub program: String,
    /// The program after the `PATH` lookup (absolute).
    pub path: String,
    /// The executable's file (after symbolic links) and digest.
    pub executable: FileDigest,
    /// What runs the executable when it is a `#!` script: each interpreter the kernel starts
    /// (and, for `#!/usr/bin/env NAME`, the `NAME` found in `PATH`), in order, up to four
    /// levels. Empty for a binary, and in pins recorded before interpreters were pinned (the
    /// next start completes those).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interpreters: Vec<FileDigest>,
    /// The script an interpreter runs, when the command names one.
    pub script: Option<FileDigest>,
    /// The packages a launcher fetches.
    pub packages: Vec<PackagePin>,
    /// When it was observed, in Unix seconds.
    pub seen_at: u64,
}

impl CommandSnapshot {
    /// `sha256:<hex>` over everything but the time: what `pins approve --hash` names.
    pub fn hash(&self) -> String {
        let mut identity = self.clone();
        identity.seen_at = 0;
        let bytes = serde_json::to_vec(&identity).unwrap_or_default();
        format!("sha256:{}", hex(&Sha256::digest(&bytes)))
    }
}

/// The command pin of one upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRecord {
    /// Record format version.
    pub v: u32,
    /// The upstream's pin identity.
    pub upstream: String,
    /// The approved command; `None` after a revoke left a pending one.
    pub pinned: Option<CommandSnapshot>,
    /// A command observed since that differs from `pinned`, waiting for approval.
    pub pending: Option<CommandSnapshot>,
}

/// One difference between the pinned command and the observed one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// What changed (`executable digest`, `package @scope/x requested version`, ...).
    pub what: String,
    /// The pinned value (`(none)` when absent).
    pub pinned: String,
    /// The observed value (`(none)` when absent).
    pub observed: String,
}

/// What a start-up check decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandCheck {
    /// No pin existed: this command is now pinned.
    FirstUse(CommandSnapshot),
    /// The command matches its pin. `completed`: an installed version unknown at pinning time
    /// was added to the pin.
    Unchanged {
        /// Whether the pin was completed.
        completed: bool,
    },
    /// The command differs from its pin; the observed one is recorded as pending.
    Changed {
        /// The approved command (`None` when the pin was revoked).
        pinned: Option<Box<CommandSnapshot>>,
        /// What will run if started.
        observed: Box<CommandSnapshot>,
        /// The differences, in a stable order.
        changes: Vec<Change>,
    },
}

/// What a command is, before it is observed.
#[derive(Debug, Clone)]
pub struct CommandInput<'a> {
    /// The program as configured.
    pub program: &'a str,
    /// The program after the launcher's `PATH` lookup.
    pub resolved: &'a Path,
    /// The interpreters that run it, when it is a `#!` script
    /// (`warden_sandbox::plan::interpreter_chain`).
    pub interpreters: &'a [PathBuf],
    /// Its arguments.
    pub args: &'a [String],
    /// The directory it runs in (relative script paths are resolved against it).
    pub cwd: &'a Path,
    /// Where installed package versions are looked up.
    pub locations: installed::Locations,
    /// The data directory whose digest cache may be used ([`digests`]); `None` hashes every
    /// file.
    pub digest_cache: Option<&'a Path>,
}

/// Reads the executable (and script) and the installed package versions of a command.
/// Blocking file I/O: call it before the runtime, or from a blocking task.
pub fn observe(input: &CommandInput<'_>) -> Result<CommandSnapshot, CommandError> {
    observe_identified(input).map(|(snapshot, _)| snapshot)
}

/// [`observe`], with the identity of the executable file whose digest the snapshot holds
/// (`None` when it changed while it was read), for the launcher to check before it runs it.
pub fn observe_identified(
    input: &CommandInput<'_>,
) -> Result<(CommandSnapshot, Option<digests::Identity>), CommandError> {
    let mut cache = input.digest_cache.map(digests::DigestCache::open);
    let mut digest_identified = |path: &Path| match cache.as_mut() {
        Some(cache) => cache.digest_identified(path).map(|(d, _, i)| (d, i)),
        None => digest_file_identified(path),
    };
    let (executable, identity) = digest_identified(input.resolved)?;
    let mut digest = |path: &Path| digest_identified(path).map(|(d, _)| d);
    let interpreters = input
        .interpreters
        .iter()
        .map(|p| digest(p))
        .collect::<Result<Vec<_>, _>>()?;
    let script = match script_argument(input.program, input.args) {
        Some(s) => {
            let path = absolute(Path::new(s), input.cwd);
            if std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
                Some(digest(&path)?)
            } else {
                None
            }
        }
        None => None,
    };
    if let Some(cache) = &cache
        && let Err(error) = cache.save()
    {
        tracing::debug!(%error, "cannot save the command digest cache");
    }
    let specs = spec::packages(input.program, input.args);
    let versions = installed::installed_versions(&specs, &input.locations);
    let packages = specs
        .into_iter()
        .zip(versions)
        .map(|(s, installed)| package_pin(s, installed))
        .collect();
    let snapshot = CommandSnapshot {
        program: input.program.to_owned(),
        path: input.resolved.display().to_string(),
        executable,
        interpreters,
        script,
        packages,
        seen_at: now(),
    };
    Ok((snapshot, identity))
}

fn package_pin(s: PackageSpec, installed: Option<String>) -> PackagePin {
    PackagePin {
        launcher: s.launcher,
        name: s.name,
        requested: s.requested,
        pinning: s.pinning,
        installed,
    }
}

fn absolute(path: &Path, base: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        base.join(path)
    }
}

/// The file and SHA-256 of `path`, after symbolic links.
pub fn digest_file(path: &Path) -> Result<FileDigest, CommandError> {
    digest_file_identified(path).map(|(d, _)| d)
}

/// [`digest_file`], with the file's identity (`None` when it changed while it was read).
fn digest_file_identified(
    path: &Path,
) -> Result<(FileDigest, Option<digests::Identity>), CommandError> {
    let read = |source| CommandError::Read {
        path: path.to_owned(),
        source,
    };
    let target = std::fs::canonicalize(path).map_err(read)?;
    let file = std::fs::File::open(&target).map_err(read)?;
    let before = digests::Identity::of(&file.metadata().map_err(read)?);
    let sha256 = hash_file(&file, path)?;
    let after = digests::Identity::of(&file.metadata().map_err(read)?);
    let digest = FileDigest {
        path: target.display().to_string(),
        sha256,
    };
    Ok((digest, (before == after).then_some(before)))
}

/// `sha256:<hex>` of the bytes of `file` (opened from `path`, named in errors), refusing files
/// over [`MAX_DIGEST_BYTES`].
fn hash_file(file: &std::fs::File, path: &Path) -> Result<String, CommandError> {
    let read = |source| CommandError::Read {
        path: path.to_owned(),
        source,
    };
    let mut hasher = Sha256::new();
    let mut limited = file.take(MAX_DIGEST_BYTES + 1);
    let mut buf = vec![0u8; 256 * 1024];
    let mut total: u64 = 0;
    loop {
        let n = limited.read(&mut buf).map_err(read)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > MAX_DIGEST_BYTES {
            return Err(CommandError::TooLarge {
                path: path.to_owned(),
            });
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("sha256:{}", hex(&hasher.finalize())))
}

/// Interpreters whose first non-option argument is the program they run.
fn is_interpreter(name: &str) -> bool {
    let versioned = |prefix: &str| {
        name.strip_prefix(prefix)
            .is_some_and(|v| v.chars().all(|c| c.is_ascii_digit() || c == '.'))
    };
    versioned("python")
        || versioned("pypy")
        || versioned("node")
        || matches!(
            name,
            "nodejs"
                | "deno"
                | "bun"
                | "tsx"
                | "ts-node"
                | "bash"
                | "sh"
                | "dash"
                | "zsh"
                | "ksh"
                | "ruby"
                | "perl"
                | "php"
        )
}

/// The script argument of an interpreter command (`python3 -u server.py` -> `server.py`), or
/// `None` when the command is not an interpreter or runs inline code or a module.
pub fn script_argument<'a>(program: &str, args: &'a [String]) -> Option<&'a str> {
    let name = spec::program_name(program);
    if !is_interpreter(name) {
        return None;
    }
    let mut rest = args;
    if matches!(name, "deno" | "bun") && rest.first().is_some_and(|a| a == "run") {
        rest = &rest[1..];
    }
    let mut i = 0;
    while let Some(a) = rest.get(i) {
        let a = a.as_str();
        if a == "--" {
            return rest.get(i + 1).map(String::as_str);
        }
        if !a.starts_with('-') || a == "-" {
            return (a != "-").then_some(a);
        }
        // Inline code or a module: no script file.
        if matches!(
            a,
            "-m" | "-c" | "-e" | "--eval" | "-p" | "--print" | "--command"
        ) {
            return None;
        }
        let takes_value = matches!(
            a,
            "-W" | "-X" | "-r" | "--require" | "--import" | "--loader" | "--experimental-loader"
        );
        i += if takes_value { 2 } else { 1 };
    }
    None
}

/// The differences between a pinned and an observed command (empty when they match).
/// Installed versions are compared only when both are known.
pub fn changes(pinned: &CommandSnapshot, observed: &CommandSnapshot) -> Vec<Change> {
    let mut out = Vec::new();
    let mut diff = |what: String, a: Option<&str>, b: Option<&str>| {
        if a != b {
            out.push(Change {
                what,
                pinned: a.unwrap_or("(none)").to_owned(),
                observed: b.unwrap_or("(none)").to_owned(),
            });
        }
    };
    diff(
        "resolved path".into(),
        Some(&pinned.path),
        Some(&observed.path),
    );
    diff(
        "executable file".into(),
        Some(&pinned.executable.path),
        Some(&observed.executable.path),
    );
    diff(
        "executable digest".into(),
        Some(&pinned.executable.sha256),
        Some(&observed.executable.sha256),
    );
    // A pin recorded before interpreters were pinned has none: completed, not changed.
    if !pinned.interpreters.is_empty() || observed.interpreters.is_empty() {
        let count = pinned.interpreters.len().max(observed.interpreters.len());
        for i in 0..count {
            let (a, b) = (pinned.interpreters.get(i), observed.interpreters.get(i));
            diff(
                format!("interpreter {} file", i + 1),
                a.map(|f| f.path.as_str()),
                b.map(|f| f.path.as_str()),
            );
            diff(
                format!("interpreter {} digest", i + 1),
                a.map(|f| f.sha256.as_str()),
                b.map(|f| f.sha256.as_str()),
            );
        }
    }
    diff(
        "script file".into(),
        pinned.script.as_ref().map(|s| s.path.as_str()),
        observed.script.as_ref().map(|s| s.path.as_str()),
    );
    diff(
        "script digest".into(),
        pinned.script.as_ref().map(|s| s.sha256.as_str()),
        observed.script.as_ref().map(|s| s.sha256.as_str()),
    );
    let count = pinned.packages.len().max(observed.packages.len());
    for i in 0..count {
        let (a, b) = (pinned.packages.get(i), observed.packages.get(i));
        let name = b.or(a).map_or("", |p| p.name.as_str());
        diff(
            format!("package {} name", i + 1),
            a.map(|p| p.name.as_str()),
            b.map(|p| p.name.as_str()),
        );
        diff(
            format!("package {name} launcher"),
            a.map(|p| p.launcher.as_str()),
            b.map(|p| p.launcher.as_str()),
        );
        diff(
            format!("package {name} requested version"),
            a.and_then(|p| p.requested.as_deref()),
            b.and_then(|p| p.requested.as_deref()),
        );
        if let (Some(x), Some(y)) = (
            a.and_then(|p| p.installed.as_deref()),
            b.and_then(|p| p.installed.as_deref()),
        ) {
            diff(
                format!("package {name} installed version"),
                Some(x),
                Some(y),
            );
        }
    }
    out
}

/// `pinned` with what only `observed` knows (installed versions; the interpreters of a pin
/// recorded before they were pinned); `None` when nothing was added.
fn completed(pinned: &CommandSnapshot, observed: &CommandSnapshot) -> Option<CommandSnapshot> {
    let mut out = pinned.clone();
    let mut added = false;
    if out.interpreters.is_empty() && !observed.interpreters.is_empty() {
        out.interpreters.clone_from(&observed.interpreters);
        added = true;
    }
    for (p, o) in out.packages.iter_mut().zip(&observed.packages) {
        if p.installed.is_none() && o.installed.is_some() {
            p.installed.clone_from(&o.installed);
            added = true;
        }
    }
    added.then_some(out)
}

/// Key of the command record of `upstream`.
pub fn command_key(upstream: &str) -> String {
    format!("command:{upstream}")
}

impl PinBook {
    /// Compares `observed` with the command pin of `upstream`: pins it on first use, completes
    /// it with newly known installed versions, or records it as pending when it differs.
    pub async fn check_command(
        &self,
        upstream: &str,
        observed: &CommandSnapshot,
    ) -> Result<CommandCheck, PinError> {
        let txn = self.begin().await?;
        let store = txn.store.as_ref();
        let key = command_key(upstream);
        let old = read_command(store, upstream, &key).await?;
        let (record, outcome) = match old.clone() {
            None => (
                CommandRecord {
                    v: RECORD_VERSION,
                    upstream: upstream.to_owned(),
                    pinned: Some(observed.clone()),
                    pending: None,
                },
                CommandCheck::FirstUse(observed.clone()),
            ),
            Some(mut rec) => match rec.pinned.clone() {
                Some(pinned) => {
                    let found = changes(&pinned, observed);
                    if found.is_empty() {
                        rec.pending = None;
                        let completion = completed(&pinned, observed);
                        let done = completion.is_some();
                        if let Some(c) = completion {
                            rec.pinned = Some(c);
                        }
                        (rec, CommandCheck::Unchanged { completed: done })
                    } else {
                        if rec
                            .pending
                            .as_ref()
                            .is_none_or(|p| p.hash() != observed.hash())
                        {
                            rec.pending = Some(observed.clone());
                        }
                        (
                            rec,
                            CommandCheck::Changed {
                                pinned: Some(Box::new(pinned)),
                                observed: Box::new(observed.clone()),
                                changes: found,
                            },
                        )
                    }
                }
                None => {
                    // Revoked: what runs now waits for approval like any change.
                    let changes = vec![Change {
                        what: "command pin".into(),
                        pinned: "(revoked)".into(),
                        observed: observed.hash(),
                    }];
                    rec.pending = Some(observed.clone());
                    (
                        rec,
                        CommandCheck::Changed {
                            pinned: None,
                            observed: Box::new(observed.clone()),
                            changes,
                        },
                    )
                }
            },
        };
        if old.as_ref() != Some(&record) {
            write_command(store, &key, &record).await?;
        }
        Ok(outcome)
    }

    /// The command record of `upstream`, if any.
    pub async fn command(&self, upstream: &str) -> Result<Option<CommandRecord>, PinError> {
        let txn = self.begin().await?;
        read_command(txn.store.as_ref(), upstream, &command_key(upstream)).await
    }

    /// Every command record (sorted by upstream), or the one of `upstream`.
    pub async fn commands(&self, upstream: Option<&str>) -> Result<Vec<CommandRecord>, PinError> {
        let txn = self.begin().await?;
        let store = txn.store.as_ref();
        let mut out = Vec::new();
        match upstream {
            Some(u) => out.extend(read_command(store, u, &command_key(u)).await?),
            None => {
                for key in store
                    .list(Namespace::PIN, "command:", MAX_COMMAND_RECORDS)
                    .await?
                {
                    let u = key.strip_prefix("command:").unwrap_or("");
                    out.extend(read_command(store, u, &key).await?);
                }
            }
        }
        out.sort_by(|a, b| a.upstream.cmp(&b.upstream));
        Ok(out)
    }

    /// Pins the pending command of `upstream` (optionally only if its hash is `expected`).
    pub async fn approve_command(
        &self,
        upstream: &str,
        expected: Option<&str>,
    ) -> Result<CommandRecord, PinError> {
        let txn = self.begin().await?;
        let store = txn.store.as_ref();
        let key = command_key(upstream);
        let nothing = || PinError::NothingPending {
            upstream: upstream.to_owned(),
            tool: "(command)".to_owned(),
        };
        let mut rec = read_command(store, upstream, &key)
            .await?
            .ok_or_else(nothing)?;
        let pending = rec.pending.take().ok_or_else(nothing)?;
        let actual = pending.hash();
        if let Some(expected) = expected
            && expected != actual
        {
            return Err(PinError::HashMismatch {
                tool: "(command)".to_owned(),
                expected: expected.to_owned(),
                actual,
            });
        }
        rec.pinned = Some(pending);
        write_command(store, &key, &rec).await?;
        Ok(rec)
    }

    /// Removes the command pin of `upstream`: its next start is a first use again. Returns
    /// whether one existed.
    pub async fn revoke_command(&self, upstream: &str) -> Result<bool, PinError> {
        let txn = self.begin().await?;
        Ok(txn
            .store
            .delete(Namespace::PIN, &command_key(upstream))
            .await?)
    }
}

async fn read_command(
    store: &dyn warden_store::Store,
    upstream: &str,
    key: &str,
) -> Result<Option<CommandRecord>, PinError> {
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

async fn write_command(
    store: &dyn warden_store::Store,
    key: &str,
    rec: &CommandRecord,
) -> Result<(), PinError> {
    // Plain data (strings, numbers): serialising cannot fail.
    let bytes = Bytes::from(serde_json::to_vec(rec).unwrap_or_default());
    store
        .put(Namespace::PIN, key, bytes, None)
        .await
        .map_err(PinError::from)
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

#[cfg(test)]
mod tests;
