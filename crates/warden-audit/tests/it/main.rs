//! Integration tests of the audit log: real files, the real writer task, the real verifier.
#![allow(missing_docs, unreachable_pub)]
#![expect(clippy::unwrap_used, reason = "tests")]

mod tamper;
mod writer;

use std::path::{Path, PathBuf};

use warden_audit::verify::{self, Broken, Problem, Report, Trust, VerifyError};
use warden_audit::{AuditKeys, AuditLog, AuditOptions, Direction, Event, Status};

/// A log in a fresh directory.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub key_file: PathBuf,
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

impl Fixture {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/audit.jsonl");
        let key_file = dir.path().join("audit.key");
        Self {
            dir,
            path,
            key_file,
        }
    }

    pub fn options(&self) -> AuditOptions {
        AuditOptions::new(self.path.clone(), self.key_file.clone())
    }

    pub fn keys(&self) -> AuditKeys {
        AuditKeys::load(&self.key_file).unwrap()
    }

    pub fn verify(&self) -> Result<Report, VerifyError> {
        let keys = self.keys();
        verify::verify_log(&self.path, Trust::Keys(&keys))
    }

    pub fn verify_public(&self) -> Result<Report, VerifyError> {
        let pk = warden_audit::PublicKey::read(&warden_audit::keys::public_key_path(&self.path))
            .unwrap();
        verify::verify_log(&self.path, Trust::PublicKey(pk))
    }

    pub fn lines(&self) -> Vec<String> {
        read_lines(&self.path)
    }

    pub fn write_lines(&self, lines: &[String]) {
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(&self.path, text).unwrap();
    }
}

pub fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A call record for `tool`.
pub fn call(tool: &str, status: Status) -> Event {
    Event::Call {
        session: Some("s1".into()),
        principal: "alice".into(),
        direction: Direction::ToUpstream,
        method: "tools/call".into(),
        name: Some(tool.into()),
        upstream: Some("everything".into()),
        latency_us: 100,
        status,
        code: None,
        arguments: None,
        result: None,
        trace: None,
    }
}

/// Writes `n` call records through a real writer and closes it.
pub async fn write_calls(fx: &Fixture, opts: AuditOptions, n: usize) {
    let log = AuditLog::open(opts, None).unwrap();
    for i in 0..n {
        log.record(call(&format!("tool{i}"), Status::Result))
            .unwrap();
    }
    log.close().await.unwrap();
    let _ = fx;
}

/// The first bad record's line number and problem, or panics if the log verifies.
pub fn broken(r: Result<Report, VerifyError>) -> Broken {
    match r {
        Err(VerifyError::Broken(b)) => b,
        other => panic!("expected a broken chain, got {other:?}"),
    }
}

pub fn problem(r: Result<Report, VerifyError>) -> (u64, Problem) {
    let b = broken(r);
    (b.line, b.problem)
}
