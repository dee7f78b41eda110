//! How `pins list|diff|approve` show command pins.

use serde_json::{Value, json};
use warden_pins::command::{CommandRecord, CommandSnapshot, changes};

use super::PinsFormat;

/// `pending` when a changed command waits for approval, `revoked` when only a pending one is
/// left, else `pinned`.
fn status(r: &CommandRecord) -> &'static str {
    match (&r.pinned, &r.pending) {
        (Some(_), Some(_)) => "changed",
        (None, _) => "revoked",
        (Some(_), None) => "pinned",
    }
}

fn snapshot_json(s: &CommandSnapshot) -> Value {
    json!({
        "hash": s.hash(),
        "program": s.program,
        "path": s.path,
        "executable": s.executable,
        "interpreters": s.interpreters,
        "script": s.script,
        "packages": s.packages,
        "seen_at": s.seen_at,
    })
}

/// The `pins list --format json` entry of a command pin.
pub(super) fn list_entry(r: &CommandRecord) -> Value {
    json!({
        "upstream": r.upstream,
        "kind": "command",
        "tool": Value::Null,
        "status": status(r),
        "pinned_hash": r.pinned.as_ref().map(CommandSnapshot::hash),
        "pinned_at": r.pinned.as_ref().map(|p| p.seen_at),
        "pending_hash": r.pending.as_ref().map(CommandSnapshot::hash),
        "pending_at": r.pending.as_ref().map(|p| p.seen_at),
        "pinned": r.pinned.as_ref().map(snapshot_json),
    })
}

/// The command pins as a table (empty when there are none).
pub(super) fn list_text(records: &[CommandRecord]) -> String {
    if records.is_empty() {
        return String::new();
    }
    let width = records
        .iter()
        .map(|r| r.upstream.len())
        .max()
        .unwrap_or(0)
        .max(8);
    let mut out = format!(
        "\n{:width$}  {:8}  {:21}  COMMAND\n",
        "UPSTREAM", "STATUS", "DIGEST"
    );
    for r in records {
        let current = r.pending.as_ref().or(r.pinned.as_ref());
        let digest = current.map_or("", |s| {
            s.executable
                .sha256
                .get(..19)
                .unwrap_or(&s.executable.sha256)
        });
        let what = current.map_or(String::new(), describe);
        out.push_str(&format!(
            "{:width$}  {:8}  {digest:21}  {}\n",
            r.upstream,
            status(r),
            shown(&what)
        ));
    }
    out
}

/// One line: the executable and the packages with their versions.
fn describe(s: &CommandSnapshot) -> String {
    let mut out = s.path.clone();
    for p in &s.packages {
        out.push_str(&format!(
            " [{} {}@{}{}]",
            p.launcher.as_str(),
            p.name,
            p.requested.as_deref().unwrap_or("(unpinned)"),
            p.installed
                .as_deref()
                .map_or(String::new(), |v| format!(", installed {v}"))
        ));
    }
    out
}

/// The `pins diff --format json` entry of a pending command.
pub(super) fn diff_entry(r: &CommandRecord) -> Value {
    let found = match (&r.pinned, &r.pending) {
        (Some(a), Some(b)) => changes(a, b),
        _ => Vec::new(),
    };
    json!({
        "upstream": r.upstream,
        "kind": "command",
        "tool": Value::Null,
        "status": status(r),
        "pinned_hash": r.pinned.as_ref().map(CommandSnapshot::hash),
        "pending_hash": r.pending.as_ref().map(CommandSnapshot::hash),
        "changes": found,
        "diff": diff_text(r),
        "pinned": r.pinned.as_ref().map(snapshot_json),
        "pending": r.pending.as_ref().map(snapshot_json),
    })
}

/// The text diff of a pending command: one line per changed field, old and new.
pub(super) fn diff_text(r: &CommandRecord) -> String {
    let mut out = format!(
        "command of {}: pinned {} -> pending {}\n",
        shown(&r.upstream),
        r.pinned
            .as_ref()
            .map_or_else(|| "(revoked)".to_owned(), CommandSnapshot::hash),
        r.pending
            .as_ref()
            .map_or_else(|| "(none)".to_owned(), CommandSnapshot::hash),
    );
    match (&r.pinned, &r.pending) {
        (Some(a), Some(b)) => {
            for c in changes(a, b) {
                out.push_str(&format!(
                    "  {}\n  - {}\n  + {}\n",
                    shown(&c.what),
                    shown(&c.pinned),
                    shown(&c.observed)
                ));
            }
        }
        (None, Some(b)) => out.push_str(&format!("  + {}\n", shown(&describe(b)))),
        _ => {}
    }
    out
}

/// `s` with control characters escaped: paths and versions come from the file system and
/// from package manifests, and must not drive the terminal.
fn shown(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The `pins approve` entries of approved commands.
pub(super) fn approved_entries(records: &[CommandRecord]) -> impl Iterator<Item = Value> + '_ {
    records.iter().map(|r| {
        json!({
            "upstream": r.upstream,
            "kind": "command",
            "tool": Value::Null,
            "hash": r.pinned.as_ref().map(CommandSnapshot::hash),
        })
    })
}

/// The `pins approve` output of approved commands.
pub(super) fn approved(records: &[CommandRecord], format: PinsFormat) -> String {
    match format {
        PinsFormat::Json => super::json_doc(&Value::Array(approved_entries(records).collect())),
        PinsFormat::Text => records
            .iter()
            .map(|r| {
                format!(
                    "approved the command of {} {}\n",
                    r.upstream,
                    r.pinned
                        .as_ref()
                        .map_or_else(String::new, CommandSnapshot::hash)
                )
            })
            .collect(),
    }
}
