//! Reading records back: filters for `mcp-warden audit tail` and `audit search`.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::Value;

use crate::chain;

/// Which records to show. Every set field must match.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// At or after this time.
    pub since: Option<SystemTime>,
    /// Before this time.
    pub until: Option<SystemTime>,
    /// Session id.
    pub session: Option<String>,
    /// Principal subject.
    pub principal: Option<String>,
    /// Tool or prompt name or resource URI (`*` wildcards).
    pub tool: Option<String>,
    /// Verdict (`deny`, `hold`, ...), call status (`denied`, `error`, ...) or auth outcome.
    pub verdict: Option<String>,
    /// Event kind (`call`, `decision`, `session_start`, ...).
    pub event: Option<String>,
    /// Upstream name.
    pub upstream: Option<String>,
}

/// One record read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// Its sequence number.
    pub seq: u64,
    /// The record object.
    pub record: Value,
}

impl Filter {
    /// True when `record` passes every set field.
    pub fn matches(&self, record: &Value) -> bool {
        let field = |k: &str| record.get(k).and_then(Value::as_str);
        let ts = field("ts").and_then(|t| humantime::parse_rfc3339_weak(t).ok());
        if let Some(since) = self.since
            && ts.is_none_or(|t| t < since)
        {
            return false;
        }
        if let Some(until) = self.until
            && ts.is_none_or(|t| t >= until)
        {
            return false;
        }
        let eq = |want: &Option<String>, keys: &[&str]| match want {
            None => true,
            Some(w) => keys.iter().any(|k| field(k) == Some(w.as_str())),
        };
        eq(&self.session, &["session"])
            && eq(&self.principal, &["principal"])
            && eq(&self.verdict, &["verdict", "status", "outcome"])
            && eq(&self.event, &["event"])
            && eq(&self.upstream, &["upstream"])
            && match &self.tool {
                None => true,
                Some(p) => field("name").is_some_and(|n| crate::writer::glob_match(p, n)),
            }
    }
}

/// Parses a time bound: RFC 3339 (`2026-01-02T03:04:05Z`, or without zone as UTC) or a
/// duration back from now (`10m`, `2h`).
pub fn parse_time(text: &str) -> Option<SystemTime> {
    if let Ok(t) = humantime::parse_rfc3339_weak(text) {
        return Some(t);
    }
    let d = humantime::parse_duration(text).ok()?;
    SystemTime::now().checked_sub(d)
}

/// Every record of the log at `path` (its rotated files first) that passes `filter`, in
/// order. Lines that are not audit lines are skipped (run `verify` for integrity).
pub fn search(path: &Path, filter: &Filter) -> std::io::Result<Vec<Found>> {
    let (files, _) = crate::verify::chain_files(path);
    let mut out = Vec::new();
    for file in files {
        read_from(&file, 0, filter, &mut out)?;
    }
    Ok(out)
}

/// Records of one file from byte `offset` on that pass `filter`; returns the offset after the
/// last complete line (for following a growing file).
pub fn read_from(
    file: &PathBuf,
    offset: u64,
    filter: &Filter,
    out: &mut Vec<Found>,
) -> std::io::Result<u64> {
    use std::io::Seek as _;
    let mut f = std::fs::File::open(file)?;
    f.seek(std::io::SeekFrom::Start(offset))?;
    let mut reader = BufReader::new(f);
    let mut pos = offset;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf)?;
        if n == 0 || buf.last() != Some(&b'\n') {
            return Ok(pos);
        }
        pos += n as u64;
        let Ok(line) = chain::parse_line(&buf[..n - 1]) else {
            continue;
        };
        let Ok(record) = serde_json::from_str::<Value>(line.rec) else {
            continue;
        };
        if filter.matches(&record) {
            out.push(Found {
                seq: line.seq,
                record,
            });
        }
    }
}
