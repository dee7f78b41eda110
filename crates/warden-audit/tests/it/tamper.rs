//! Every kind of tampering is detected and the first bad record is named.
// Proves: MON-5

use proptest::prelude::*;
use warden_audit::verify::Problem;

use crate::*;

async fn log_of(n: usize) -> Fixture {
    let fx = Fixture::new();
    let mut opts = fx.options();
    // No checkpoints in the middle: line numbers map to record numbers simply.
    opts.checkpoint_every = 0;
    write_calls(&fx, opts, n).await;
    fx
}

#[tokio::test]
async fn intact_log_verifies_with_the_key_and_with_the_public_key() {
    let fx = log_of(10).await;
    let report = fx.verify().unwrap();
    // 10 calls and the final checkpoint written at close.
    assert_eq!(report.records, 11);
    assert_eq!(report.checkpoints, 1);
    assert_eq!(report.after_last_checkpoint, 0);
    assert!(report.head_checked);
    let public = fx.verify_public().unwrap();
    assert_eq!(public.records, 11);
    assert_eq!(public.checkpoints, 1);
}

#[tokio::test]
async fn edited_record_is_named() {
    let fx = log_of(10).await;
    let mut lines = fx.lines();
    lines[4] = lines[4].replacen("tool4", "tool9", 1);
    fx.write_lines(&lines);
    assert_eq!(problem(fx.verify()), (5, Problem::Edited));
}

#[tokio::test]
async fn edited_and_rehashed_record_is_forged() {
    let fx = log_of(10).await;
    let mut lines = fx.lines();
    // Re-hash the edited record so its hash matches its content: only the MAC catches it.
    let line = warden_audit::chain::parse_line(lines[4].as_bytes()).unwrap();
    let rec = line.rec.replacen("tool4", "tool9", 1);
    let hash = warden_audit::chain::record_hash(line.seq, &line.prev, rec.as_bytes());
    let mut out = vec![];
    warden_audit::chain::encode_line(
        line.seq,
        rec.as_bytes(),
        &line.prev,
        &hash,
        &line.mac,
        &mut out,
    );
    lines[4] = String::from_utf8(out).unwrap().trim_end().to_owned();
    fx.write_lines(&lines);
    assert_eq!(problem(fx.verify()), (5, Problem::Forged));
}

#[tokio::test]
async fn deleted_record_is_named() {
    let fx = log_of(10).await;
    let mut lines = fx.lines();
    lines.remove(3);
    fx.write_lines(&lines);
    assert_eq!(
        problem(fx.verify()),
        (
            4,
            Problem::Missing {
                expected: 3,
                found: 4
            }
        )
    );
}

#[tokio::test]
async fn reordered_records_are_named() {
    let fx = log_of(10).await;
    let mut lines = fx.lines();
    lines.swap(6, 7);
    fx.write_lines(&lines);
    assert_eq!(
        problem(fx.verify()),
        (
            7,
            Problem::Missing {
                expected: 6,
                found: 7
            }
        )
    );
}

#[tokio::test]
async fn duplicated_record_is_named() {
    let fx = log_of(10).await;
    let mut lines = fx.lines();
    let copy = lines[2].clone();
    lines.insert(5, copy);
    fx.write_lines(&lines);
    assert_eq!(
        problem(fx.verify()),
        (
            6,
            Problem::OutOfOrder {
                expected: 5,
                found: 2
            }
        )
    );
}

#[tokio::test]
async fn inserted_record_is_named() {
    let fx = log_of(10).await;
    let mut lines = fx.lines();
    // A well-formed record that links correctly and has the right sequence number, made
    // without the key.
    let prev = warden_audit::chain::parse_line(lines[4].as_bytes()).unwrap();
    let rec = br#"{"ts":"2026-01-01T00:00:00Z","event":"gateway_stop","pid":1}"#;
    let seq = prev.seq + 1;
    let hash = warden_audit::chain::record_hash(seq, &prev.hash, rec);
    let mut out = vec![];
    warden_audit::chain::encode_line(seq, rec, &prev.hash, &hash, &[0; 32], &mut out);
    lines.insert(5, String::from_utf8(out).unwrap().trim_end().to_owned());
    fx.write_lines(&lines);
    assert_eq!(problem(fx.verify()), (6, Problem::Forged));
}

#[tokio::test]
async fn truncated_log_is_detected() {
    let fx = log_of(10).await;
    let mut lines = fx.lines();
    lines.truncate(7);
    fx.write_lines(&lines);
    let b = broken(fx.verify());
    assert_eq!(b.problem, Problem::Truncated { last: 6, head: 10 });
}

/// A writer never continues a cut log: records removed from its end (whole lines, the whole
/// file, or mid-record) while the gateway was stopped make the next start refuse, instead of
/// chaining new records onto the cut and rewriting the head file (after which `verify` would
/// pass).
#[tokio::test]
async fn a_writer_refuses_to_continue_a_truncated_log() {
    for cut in ["lines", "all", "mid-record"] {
        let fx = log_of(10).await;
        let lines = fx.lines();
        match cut {
            "lines" => fx.write_lines(&lines[..7]),
            "all" => std::fs::write(&fx.path, "").unwrap(),
            _ => {
                let mut text = lines[..7].join("\n");
                text.push('\n');
                text.push_str(&lines[7][..20]);
                std::fs::write(&fx.path, text).unwrap();
            }
        }
        let opened = warden_audit::AuditLog::open(fx.options(), None);
        let Err(error) = opened else {
            panic!("{cut}: the truncated log was continued")
        };
        assert!(
            matches!(
                error,
                warden_audit::AuditError::Truncated { written: 10, .. }
            ),
            "{cut}: {error:?}"
        );
        // Nothing was written over the evidence: verify still names the cut.
        assert!(matches!(
            broken(fx.verify()).problem,
            Problem::Truncated { head: 10, .. } | Problem::Torn
        ));
    }
}

/// A head file that does not verify keeps the writer from starting (it was edited).
#[tokio::test]
async fn a_writer_refuses_a_forged_head_file() {
    let fx = log_of(5).await;
    let head = warden_audit::keys::head_path(&fx.path);
    let text = std::fs::read_to_string(&head).unwrap();
    std::fs::write(&head, text.replacen("\"seq\":5", "\"seq\":3", 1)).unwrap();
    let opened = warden_audit::AuditLog::open(fx.options(), None);
    assert!(matches!(
        opened.err(),
        Some(warden_audit::AuditError::BrokenTail { .. })
    ));
}

/// An intact log, and one whose head file lags (written before the last records were
/// synced), is continued.
#[tokio::test]
async fn a_writer_continues_an_intact_log() {
    let fx = log_of(5).await;
    write_calls(&fx, fx.options(), 3).await;
    let report = fx.verify().unwrap();
    assert!(report.head_checked);
    let head = warden_audit::keys::head_path(&fx.path);
    std::fs::remove_file(&head).unwrap();
    write_calls(&fx, fx.options(), 2).await;
    fx.verify().unwrap();
}

/// A head file that is there but unreadable (here a directory) does not verify; only a
/// missing one is merely reported.
#[tokio::test]
async fn an_unreadable_head_file_does_not_verify() {
    let fx = log_of(3).await;
    let head = warden_audit::keys::head_path(&fx.path);
    std::fs::remove_file(&head).unwrap();
    assert!(!fx.verify().unwrap().head_checked);
    std::fs::create_dir(&head).unwrap();
    assert_eq!(broken(fx.verify()).problem, Problem::BadHead);
}

/// A start with the wrong key file fails without replacing the published public key (the only
/// file that checks the log's checkpoints).
#[tokio::test]
async fn a_failed_start_keeps_the_published_public_key() {
    let fx = log_of(3).await;
    let public = warden_audit::keys::public_key_path(&fx.path);
    let before = std::fs::read_to_string(&public).unwrap();
    std::fs::remove_file(&fx.key_file).unwrap();
    assert!(warden_audit::AuditLog::open(fx.options(), None).is_err());
    assert_eq!(std::fs::read_to_string(&public).unwrap(), before);
    fx.verify_public().unwrap_or_else(|e| panic!("{e:?}"));
}

#[tokio::test]
async fn emptied_log_is_detected() {
    let fx = log_of(3).await;
    std::fs::write(&fx.path, "").unwrap();
    assert_eq!(
        broken(fx.verify()).problem,
        Problem::Truncated { last: -1, head: 3 }
    );
}

#[tokio::test]
async fn torn_last_line_is_detected() {
    let fx = log_of(5).await;
    let text = std::fs::read_to_string(&fx.path).unwrap();
    std::fs::write(&fx.path, &text[..text.len() - 10]).unwrap();
    let b = broken(fx.verify());
    assert_eq!((b.line, b.problem), (6, Problem::Torn));
}

#[tokio::test]
async fn forged_head_is_detected() {
    let fx = log_of(5).await;
    let head = warden_audit::keys::head_path(&fx.path);
    let text = std::fs::read_to_string(&head).unwrap();
    std::fs::write(&head, text.replacen("\"seq\":5", "\"seq\":3", 1)).unwrap();
    assert_eq!(broken(fx.verify()).problem, Problem::BadHead);
}

#[tokio::test]
async fn public_key_verification_catches_an_edit_before_a_checkpoint() {
    let fx = log_of(10).await;
    let mut lines = fx.lines();
    // Edit and re-hash every record from 4 on, as an attacker without the key can: the
    // checkpoint signature no longer matches.
    let mut prev = warden_audit::chain::parse_line(lines[3].as_bytes())
        .unwrap()
        .hash;
    for line in lines.iter_mut().skip(4) {
        let parsed = warden_audit::chain::parse_line(line.as_bytes()).unwrap();
        let rec = parsed.rec.replacen("tool4", "toolX", 1);
        let hash = warden_audit::chain::record_hash(parsed.seq, &prev, rec.as_bytes());
        let mut out = vec![];
        warden_audit::chain::encode_line(
            parsed.seq,
            rec.as_bytes(),
            &prev,
            &hash,
            &parsed.mac,
            &mut out,
        );
        *line = String::from_utf8(out).unwrap().trim_end().to_owned();
        prev = hash;
    }
    fx.write_lines(&lines);
    let b = broken(fx.verify_public());
    assert_eq!(b.line, 11);
    assert!(matches!(b.problem, Problem::BadCheckpoint(_)), "{b}");
    assert_eq!(problem(fx.verify()), (5, Problem::Forged));
}

#[tokio::test]
async fn error_names_file_line_and_record() {
    let fx = log_of(4).await;
    let mut lines = fx.lines();
    lines[1] = lines[1].replacen("alice", "mallory", 1);
    fx.write_lines(&lines);
    let text = broken(fx.verify()).to_string();
    assert!(
        text.contains("audit.jsonl: line 2 (record 1): edited"),
        "{text}"
    );
}

/// A log written once, shared by the property test (writing is the slow part).
fn sample() -> &'static (Fixture, Vec<u8>) {
    use std::sync::OnceLock;
    static SAMPLE: OnceLock<(Fixture, Vec<u8>)> = OnceLock::new();
    SAMPLE.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let fx = rt.block_on(async {
            let fx = Fixture::new();
            let mut opts = fx.options();
            opts.checkpoint_every = 4;
            write_calls(&fx, opts, 8).await;
            fx
        });
        let bytes = std::fs::read(&fx.path).unwrap();
        (fx, bytes)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any change of any single byte is detected, with the key and (for bytes up to the last
    /// checkpoint, which here is the last record) with the public key alone.
    #[test]
    fn any_single_byte_change_is_detected(pos in any::<prop::sample::Index>(), new in any::<u8>()) {
        let (fx, bytes) = sample();
        let i = pos.index(bytes.len());
        prop_assume!(bytes[i] != new);
        let mut copy = bytes.clone();
        copy[i] = new;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        std::fs::write(&path, &copy).unwrap();
        std::fs::copy(warden_audit::keys::head_path(&fx.path), warden_audit::keys::head_path(&path)).unwrap();
        let keys = fx.keys();
        prop_assert!(verify::verify_log(&path, Trust::Keys(&keys)).is_err());
        // Without the key, MAC bytes are not checked (they prove nothing to such a verifier);
        // every other byte is.
        if !in_mac_field(bytes, i) {
            let pk = keys.public_key();
            prop_assert!(verify::verify_log(&path, Trust::PublicKey(pk)).is_err());
        }
    }
}

/// True when byte `i` is one of the 64 hex digits of a line's `mac` field.
fn in_mac_field(bytes: &[u8], i: usize) -> bool {
    let end = i + bytes[i..]
        .iter()
        .position(|b| *b == b'\n')
        .unwrap_or(bytes.len() - i);
    // The line ends with `<64 hex>"}`.
    end >= 66 && i >= end - 66 && i < end - 2
}
