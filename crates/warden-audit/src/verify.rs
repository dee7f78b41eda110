//! Verification: replays the chain and names the first record that breaks it.
//!
//! With the secret key every record's MAC is checked, so an edit, insertion, deletion or
//! reordering anywhere is caught at the first record it touches, and the head file (the last
//! record known to be on disk, MAC'd) catches records cut off the end. With only the public
//! key, the unkeyed hash chain is recomputed and every signed checkpoint is checked against it:
//! the records up to the last checkpoint are verified; the ones after it are reported as not
//! covered.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::chain::{self, GENESIS, Hash, LineError};
use crate::keys::{self, AuditKeys, PublicKey};

/// What the verifier trusts.
#[derive(Debug)]
pub enum Trust<'a> {
    /// The secret keys: every record's MAC and the head are checked.
    Keys(&'a AuditKeys),
    /// Only the public checkpoint key.
    PublicKey(PublicKey),
}

/// What is wrong with the first bad record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The line is not a canonical audit line.
    #[error("malformed ({0})")]
    Malformed(LineError),
    /// The content does not match its hash: the record was edited.
    #[error("edited: its content does not match its hash")]
    Edited,
    /// The hash does not match its MAC: the record was edited or inserted and re-hashed
    /// without the key.
    #[error("forged: its MAC does not verify (edited or inserted without the key)")]
    Forged,
    /// Records are missing before this one.
    #[error("records {expected}..{} are missing before it (deleted or moved)", .found - 1)]
    Missing {
        /// The sequence number expected here.
        expected: u64,
        /// The one found.
        found: u64,
    },
    /// This record belongs earlier in the chain.
    #[error(
        "out of order: sequence {found} where {expected} was expected (reordered or duplicated)"
    )]
    OutOfOrder {
        /// The sequence number expected here.
        expected: u64,
        /// The one found.
        found: u64,
    },
    /// The record does not link to the one before it.
    #[error("does not link to the previous record (inserted or replaced)")]
    Unlinked,
    /// A checkpoint whose signature or coverage is wrong.
    #[error("checkpoint is invalid: {0}")]
    BadCheckpoint(&'static str),
    /// The last line has no newline: a torn write or a truncation inside a record.
    #[error("incomplete last line (torn write or truncated inside a record)")]
    Torn,
    /// The log ends before the last record known to have been on disk.
    #[error("truncated: the log ends at sequence {last} but sequence {head} was written")]
    Truncated {
        /// The last sequence number found.
        last: i128,
        /// The last sequence number the head file records.
        head: u64,
    },
    /// The head file does not verify.
    #[error("the head file does not verify (edited or forged)")]
    BadHead,
    /// The chain does not start at its first record.
    #[error("the chain starts at sequence {0}: earlier records or files are missing")]
    MissingStart(u64),
}

/// The first bad record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: line {line}{}: {problem}", .file.display(), .seq.map(|s| format!(" (record {s})")).unwrap_or_default())]
pub struct Broken {
    /// The file it is in.
    pub file: PathBuf,
    /// Its line number (1-based).
    pub line: u64,
    /// Its sequence number, when readable.
    pub seq: Option<u64>,
    /// What is wrong.
    pub problem: Problem,
}

/// Why verification could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A file could not be read.
    #[error("cannot read {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The chain is broken.
    #[error(transparent)]
    Broken(#[from] Broken),
}

/// What an intact log contains.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Files read, oldest first.
    pub files: Vec<PathBuf>,
    /// Records read.
    pub records: u64,
    /// Sequence number of the first record.
    pub first_seq: Option<u64>,
    /// Sequence number of the last record.
    pub last_seq: Option<u64>,
    /// Signed checkpoints checked.
    pub checkpoints: u64,
    /// Records after the last checkpoint (verified by MAC with the key; not covered by any
    /// signature without it).
    pub after_last_checkpoint: u64,
    /// Whether MACs and the head were checked (the secret key was available).
    pub keyed: bool,
    /// Whether a head file was found and checked.
    pub head_checked: bool,
}

/// Incremental verifier over the lines of one chain (one or more files, in order).
#[derive(Debug)]
pub struct Verifier<'a> {
    trust: Trust<'a>,
    public: PublicKey,
    anchored: bool,
    expected: Option<u64>,
    prev: Hash,
    head: Option<(u64, Hash)>,
    report: Report,
}

impl<'a> Verifier<'a> {
    /// A verifier. `anchored`: the chain must start at sequence 0 (a whole log); otherwise the
    /// first record's link is taken as given (a single rotated file).
    pub fn new(trust: Trust<'a>, anchored: bool) -> Self {
        let public = match &trust {
            Trust::Keys(k) => k.public_key(),
            Trust::PublicKey(p) => *p,
        };
        let keyed = matches!(trust, Trust::Keys(_));
        Self {
            trust,
            public,
            anchored,
            expected: None,
            prev: GENESIS,
            head: None,
            report: Report {
                keyed,
                ..Report::default()
            },
        }
    }

    /// Checks the head file text (keyed verification only): the log must reach its record.
    pub fn expect_head(&mut self, text: &str) -> Result<(), Problem> {
        let Trust::Keys(keys) = &self.trust else {
            return Ok(());
        };
        self.head = Some(keys.verified_head(text).ok_or(Problem::BadHead)?);
        self.report.head_checked = true;
        Ok(())
    }

    /// Checks one line (without its newline).
    pub fn line(&mut self, line: &[u8]) -> Result<(), (Option<u64>, Problem)> {
        let parsed = chain::parse_line(line).map_err(|e| (None, Problem::Malformed(e)))?;
        let seq = parsed.seq;
        let fail = |p| Err((Some(seq), p));
        match self.expected {
            None => {
                if self.anchored && seq != 0 {
                    return fail(Problem::MissingStart(seq));
                }
                if self.anchored {
                    self.prev = GENESIS;
                } else {
                    self.prev = parsed.prev;
                }
            }
            Some(expected) if seq > expected => {
                return fail(Problem::Missing {
                    expected,
                    found: seq,
                });
            }
            Some(expected) if seq < expected => {
                return fail(Problem::OutOfOrder {
                    expected,
                    found: seq,
                });
            }
            Some(_) => {}
        }
        let hash = chain::record_hash(seq, &parsed.prev, parsed.rec.as_bytes());
        if hash != parsed.hash {
            return fail(Problem::Edited);
        }
        if let Trust::Keys(keys) = &self.trust
            && !chain::mac_matches(keys.chain_key(), &parsed.hash, &parsed.mac)
        {
            return fail(Problem::Forged);
        }
        if parsed.prev != self.prev {
            return fail(Problem::Unlinked);
        }
        if let Some((head_seq, head_hash)) = self.head
            && head_seq == seq
            && head_hash != hash
        {
            return fail(Problem::BadHead);
        }
        if parsed.rec.contains("\"event\":\"checkpoint\"") {
            self.checkpoint(seq, parsed.rec)
                .map_err(|p| (Some(seq), p))?;
        } else {
            self.report.after_last_checkpoint += 1;
        }
        self.prev = hash;
        // Saturating: a record after one numbered u64::MAX cannot link to it (Unlinked).
        self.expected = Some(seq.saturating_add(1));
        self.report.records += 1;
        self.report.first_seq.get_or_insert(seq);
        self.report.last_seq = Some(seq);
        Ok(())
    }

    fn checkpoint(&mut self, seq: u64, rec: &str) -> Result<(), Problem> {
        let v: Value =
            serde_json::from_str(rec).map_err(|_| Problem::BadCheckpoint("unreadable"))?;
        if v.get("event").and_then(Value::as_str) != Some("checkpoint") {
            // The text appeared inside some other field: not a checkpoint.
            self.report.after_last_checkpoint += 1;
            return Ok(());
        }
        let covers = v
            .get("covers_seq")
            .and_then(Value::as_u64)
            .ok_or(Problem::BadCheckpoint("no covers_seq"))?;
        let covers_hash = v
            .get("covers_hash")
            .and_then(Value::as_str)
            .and_then(|h| chain::parse_hex(h.as_bytes()).ok())
            .ok_or(Problem::BadCheckpoint("no covers_hash"))?;
        let sig = v
            .get("sig")
            .and_then(Value::as_str)
            .and_then(|h| chain::parse_hex_vec(h).ok())
            .ok_or(Problem::BadCheckpoint("no signature"))?;
        if seq == 0 || covers != seq - 1 || covers_hash != self.prev {
            return Err(Problem::BadCheckpoint(
                "it does not cover the record before it",
            ));
        }
        if !self.public.verify_checkpoint(covers, &covers_hash, &sig) {
            return Err(Problem::BadCheckpoint("bad signature"));
        }
        self.report.checkpoints += 1;
        self.report.after_last_checkpoint = 0;
        Ok(())
    }

    /// Ends verification: checks the head was reached.
    pub fn finish(self) -> Result<Report, Problem> {
        if let Some((head, _)) = self.head {
            let last = self.report.last_seq;
            if last.is_none_or(|l| l < head) {
                return Err(Problem::Truncated {
                    last: last.map_or(-1, i128::from),
                    head,
                });
            }
        }
        Ok(self.report)
    }
}

/// The files of the log at `path`, oldest first: its rotated files, then itself. A rotated
/// file given directly is verified alone.
pub fn chain_files(path: &Path) -> (Vec<PathBuf>, bool) {
    let is_rotated = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.len() == 20 && e.bytes().all(|b| b.is_ascii_digit()));
    if is_rotated {
        return (vec![path.to_owned()], false);
    }
    let mut files = crate::file::rotated_files(path);
    files.push(path.to_owned());
    (files, true)
}

/// Verifies the log at `path` (with its rotated files and head when it is the active file).
pub fn verify_log(path: &Path, trust: Trust<'_>) -> Result<Report, VerifyError> {
    let (files, anchored) = chain_files(path);
    let mut v = Verifier::new(trust, anchored);
    let last_file = files.last().cloned().unwrap_or_else(|| path.to_owned());
    if anchored {
        let head = keys::head_path(path);
        // A missing head file is reported (`head_checked` stays false); one that is there but
        // cannot be read as text (a directory, bytes that are not UTF-8) does not verify.
        let checked = match std::fs::read_to_string(&head) {
            Ok(text) => v.expect_head(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(_) => Err(Problem::BadHead),
        };
        checked.map_err(|problem| Broken {
            file: head.clone(),
            line: 1,
            seq: None,
            problem,
        })?;
    }
    for file in &files {
        let f = std::fs::File::open(file).map_err(|source| VerifyError::Io {
            path: file.clone(),
            source,
        })?;
        let mut reader = BufReader::new(f);
        let mut buf = Vec::new();
        let mut line_no = 0u64;
        loop {
            buf.clear();
            let n = reader
                .read_until(b'\n', &mut buf)
                .map_err(|source| VerifyError::Io {
                    path: file.clone(),
                    source,
                })?;
            if n == 0 {
                break;
            }
            line_no += 1;
            let broken = |seq, problem| Broken {
                file: file.clone(),
                line: line_no,
                seq,
                problem,
            };
            let Some(line) = buf.strip_suffix(b"\n") else {
                return Err(broken(None, Problem::Torn).into());
            };
            v.line(line).map_err(|(seq, p)| broken(seq, p))?;
        }
        v.report.files.push(file.clone());
    }
    v.finish().map_err(|problem| {
        Broken {
            file: last_file,
            line: 0,
            seq: None,
            problem,
        }
        .into()
    })
}
