//! Rewriting a client's configuration so every server runs through `mcp-warden run`, and back.
//!
//! Edits are minimal: only the `command`/`args` values of a stdio entry (or a remote entry as a
//! whole) change; comments, indentation, key order and unknown keys stay byte for byte. Every
//! wrapped entry's original text is kept in a manifest next to the file, so `unwrap` restores
//! exactly what was there, even when the rest of the file was edited in between.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::clients::Format;
use crate::jsonc::{self, Node, quote};
use crate::servers::{self, program_name, server_tables};

/// The program wrapped entries run.
pub const WARDEN: &str = "mcp-warden";

/// What `wrap` remembers per file: the original and wrapped text of every entry it changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Format version.
    pub version: u32,
    /// By entry path (e.g. `mcpServers.github`).
    pub entries: BTreeMap<String, ManifestEntry>,
}

/// One wrapped entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestEntry {
    /// The entry's text before wrapping.
    pub original: String,
    /// The entry's text as `wrap` wrote it.
    pub wrapped: String,
}

/// What one rewrite did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The new file text.
    pub text: String,
    /// Entries changed.
    pub changed: Vec<String>,
    /// Entries left alone, with the reason.
    pub skipped: Vec<(String, String)>,
}

/// Why a file could not be rewritten.
#[derive(Debug, thiserror::Error)]
pub enum WrapError {
    /// The file could not be parsed.
    #[error(transparent)]
    Read(#[from] servers::ReadError),
    /// The manifest could not be read.
    #[error("the wrap manifest is unreadable")]
    Manifest(#[source] serde_json::Error),
}

/// One entry's replacement, as a byte range of the file and its new text.
struct Edit {
    field: String,
    range: Range<usize>,
    text: String,
    original: String,
}

fn apply(text: &str, mut edits: Vec<Edit>) -> String {
    edits.sort_by_key(|e| e.range.start);
    let mut out = String::with_capacity(text.len() + 256);
    let mut at = 0;
    for e in &edits {
        out.push_str(&text[at..e.range.start]);
        out.push_str(&e.text);
        at = e.range.end;
    }
    out.push_str(&text[at..]);
    out
}

fn json_array(items: &[String]) -> String {
    let parts: Vec<String> = items.iter().map(|s| quote(s)).collect();
    format!("[{}]", parts.join(", "))
}

/// Replaces the spans `(range relative to entry, new text)` inside `entry_text`.
fn splice(entry_text: &str, mut parts: Vec<(Range<usize>, String)>) -> String {
    parts.sort_by_key(|p| p.0.start);
    let mut out = String::new();
    let mut at = 0;
    for (r, t) in parts {
        out.push_str(&entry_text[at..r.start]);
        out.push_str(&t);
        at = r.end;
    }
    out.push_str(&entry_text[at..]);
    out
}

/// The wrapped text of one JSON(C) entry, or why it is left alone.
fn wrap_json_entry(text: &str, entry: &Node, binary: &str) -> Result<String, String> {
    let span = entry.span();
    let base = span.start;
    let entry_text = &text[span.clone()];
    let rel = |r: Range<usize>| (r.start - base)..(r.end - base);
    // Zed's older nested form: {"command": {"path", "args"}}.
    let (holder, command_key) = match entry.get("command") {
        Some(c @ Node::Object { .. }) => (c, "path"),
        _ => (entry, "command"),
    };
    if let Some(cmd) = holder.get(command_key).and_then(Node::as_str) {
        if program_name(cmd) == WARDEN || program_name(cmd) == program_name(binary) {
            return Err("already runs through mcp-warden".into());
        }
        let args = match holder.get("args") {
            None => vec![],
            Some(a) => a
                .as_str_array()
                .ok_or_else(|| "its args are not a list of strings".to_owned())?,
        };
        let mut new_args = vec!["run".to_owned(), "--".to_owned(), cmd.to_owned()];
        new_args.extend(args);
        let cmd_span = holder
            .get(command_key)
            .map(Node::span)
            .expect("checked above");
        let mut parts = vec![(rel(cmd_span.clone()), quote(binary))];
        match holder.get("args") {
            Some(a) => parts.push((rel(a.span()), json_array(&new_args))),
            None => parts.push((
                rel(cmd_span.end..cmd_span.end),
                format!(", \"args\": {}", json_array(&new_args)),
            )),
        }
        return Ok(splice(entry_text, parts));
    }
    let url_key = ["url", "serverUrl", "httpUrl"]
        .into_iter()
        .find(|k| entry.get(k).and_then(Node::as_str).is_some());
    let Some(url_key) = url_key else {
        return Err("neither a command nor a URL".into());
    };
    let url = entry
        .get(url_key)
        .and_then(Node::as_str)
        .expect("found above");
    let mut args = vec!["run".to_owned(), "--url".to_owned(), url.to_owned()];
    if let Some(h) = entry.get("headers") {
        for m in h.members() {
            let Some(v) = m.value.as_str() else {
                return Err("a header value is not a string".into());
            };
            args.push("--header".into());
            args.push(format!("{}: {v}", m.key));
        }
    }
    // A remote entry becomes a stdio entry: keep every other key, drop the transport keys.
    let mut members = vec![
        format!("\"command\": {}", quote(binary)),
        format!("\"args\": {}", json_array(&args)),
    ];
    for m in entry.members() {
        if matches!(
            m.key.as_str(),
            "url" | "serverUrl" | "httpUrl" | "headers" | "type" | "transport"
        ) {
            continue;
        }
        members.push(format!("{}: {}", quote(&m.key), &text[m.value.span()]));
    }
    if entry.get("type").is_some() {
        members.insert(0, "\"type\": \"stdio\"".into());
    }
    Ok(format!("{{{}}}", members.join(", ")))
}

/// Routes every server of a JSON(C) or TOML configuration through `binary run`.
pub fn wrap(
    text: &str,
    format: Format,
    binary: &str,
    manifest: &mut Manifest,
) -> Result<Outcome, WrapError> {
    manifest.version = 1;
    if format == Format::CodexToml {
        return wrap_toml(text, binary, manifest);
    }
    let root = jsonc::parse(text).map_err(|source| servers::ReadError::Json {
        path: String::new(),
        source,
    })?;
    let mut out = Outcome::default();
    let mut edits = Vec::new();
    for (table_field, table) in server_tables(&root, format) {
        for m in table.members() {
            let field = format!("{table_field}.{}", m.key);
            match wrap_json_entry(text, &m.value, binary) {
                Ok(new) => edits.push(Edit {
                    field,
                    range: m.value.span(),
                    text: new,
                    original: text[m.value.span()].to_owned(),
                }),
                Err(reason) => out.skipped.push((field, reason)),
            }
        }
    }
    for e in &edits {
        manifest.entries.insert(
            e.field.clone(),
            ManifestEntry {
                original: e.original.clone(),
                wrapped: e.text.clone(),
            },
        );
        out.changed.push(e.field.clone());
    }
    out.text = apply(text, edits);
    Ok(out)
}

/// Restores every entry `wrap` changed. An entry edited since is restored from its own
/// `mcp-warden run` arguments when it still has that shape, and otherwise left alone.
pub fn unwrap(text: &str, format: Format, manifest: &Manifest) -> Result<Outcome, WrapError> {
    if format == Format::CodexToml {
        return unwrap_toml(text, manifest);
    }
    let root = jsonc::parse(text).map_err(|source| servers::ReadError::Json {
        path: String::new(),
        source,
    })?;
    let mut out = Outcome::default();
    let mut edits = Vec::new();
    for (table_field, table) in server_tables(&root, format) {
        for m in table.members() {
            let field = format!("{table_field}.{}", m.key);
            let current = &text[m.value.span()];
            let restored = match manifest.entries.get(&field) {
                Some(e) if e.wrapped == current => Some(e.original.clone()),
                _ => semantic_unwrap(text, &m.value),
            };
            match restored {
                Some(t) => edits.push(Edit {
                    field,
                    range: m.value.span(),
                    text: t,
                    original: current.to_owned(),
                }),
                None => {
                    if servers::json_transport(&m.value).is_some_and(|t| matches!(t, servers::Transport::Stdio { ref command, .. } if program_name(command) == WARDEN)) {
                        out.skipped.push((field, "changed since it was wrapped; left as is".into()));
                    }
                }
            }
        }
    }
    out.changed = edits.iter().map(|e| e.field.clone()).collect();
    out.text = apply(text, edits);
    Ok(out)
}

/// `{"command": "mcp-warden", "args": ["run", "--", CMD, ARGS...]}` back to CMD ARGS.
fn semantic_unwrap(text: &str, entry: &Node) -> Option<String> {
    let cmd = entry.get("command")?;
    if program_name(cmd.as_str()?) != WARDEN {
        return None;
    }
    let args = entry.get("args")?.as_str_array()?;
    if args.first()? != "run" || args.get(1)? != "--" {
        return None;
    }
    let real = args.get(2)?;
    let base = entry.span().start;
    let rel = |r: Range<usize>| (r.start - base)..(r.end - base);
    let entry_text = &text[entry.span()];
    Some(splice(
        entry_text,
        vec![
            (rel(cmd.span()), quote(real)),
            (rel(entry.get("args")?.span()), json_array(&args[3..])),
        ],
    ))
}

/// The byte range of `[mcp_servers.<name>]`'s table in `text` (header to the next header).
fn toml_table_range(text: &str, name: &str) -> Option<Range<usize>> {
    let headers = [
        format!("[mcp_servers.{name}]"),
        format!("[mcp_servers.\"{name}\"]"),
    ];
    let mut offset = 0;
    let mut start = None;
    for line in text.split_inclusive('\n') {
        let t = line.trim();
        if let Some(s) = start {
            if t.starts_with('[') {
                return Some(s..offset);
            }
        } else if headers.iter().any(|h| t == h) {
            start = Some(offset);
        }
        offset += line.len();
    }
    start.map(|s| s..text.len())
}

fn wrap_toml(text: &str, binary: &str, manifest: &mut Manifest) -> Result<Outcome, WrapError> {
    let doc: toml_edit::DocumentMut = text.parse().map_err(|source| servers::ReadError::Toml {
        path: String::new(),
        source,
    })?;
    let mut out = Outcome::default();
    let mut edits = Vec::new();
    let names: Vec<String> = doc
        .get("mcp_servers")
        .and_then(toml_edit::Item::as_table_like)
        .map(|t| t.iter().map(|(k, _)| k.to_owned()).collect())
        .unwrap_or_default();
    for name in names {
        let field = format!("mcp_servers.{name}");
        let Some(range) = toml_table_range(text, &name) else {
            out.skipped.push((
                field,
                "not written as a `[mcp_servers.<name>]` table".into(),
            ));
            continue;
        };
        let chunk = &text[range.clone()];
        let Ok(mut part) = chunk.parse::<toml_edit::DocumentMut>() else {
            out.skipped
                .push((field, "its table could not be read on its own".into()));
            continue;
        };
        let Some(table) = part
            .get_mut("mcp_servers")
            .and_then(|t| t.get_mut(&name))
            .and_then(toml_edit::Item::as_table_mut)
        else {
            continue;
        };
        let mut args: Vec<String>;
        if let Some(cmd) = table
            .get("command")
            .and_then(toml_edit::Item::as_str)
            .map(str::to_owned)
        {
            if program_name(&cmd) == WARDEN {
                out.skipped
                    .push((field, "already runs through mcp-warden".into()));
                continue;
            }
            args = vec!["run".into(), "--".into(), cmd];
            args.extend(
                table
                    .get("args")
                    .and_then(toml_edit::Item::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default(),
            );
        } else if let Some(url) = table
            .get("url")
            .and_then(toml_edit::Item::as_str)
            .map(str::to_owned)
        {
            args = vec!["run".into(), "--url".into(), url];
            table.remove("url");
        } else {
            out.skipped
                .push((field, "neither a command nor a URL".into()));
            continue;
        }
        set_toml_value(table, "command", toml_edit::Value::from(binary));
        let mut arr = toml_edit::Array::new();
        for a in &args {
            arr.push(a.as_str());
        }
        set_toml_value(table, "args", toml_edit::Value::Array(arr));
        edits.push(Edit {
            field,
            range,
            text: part.to_string(),
            original: chunk.to_owned(),
        });
    }
    for e in &edits {
        manifest.entries.insert(
            e.field.clone(),
            ManifestEntry {
                original: e.original.clone(),
                wrapped: e.text.clone(),
            },
        );
        out.changed.push(e.field.clone());
    }
    out.text = apply(text, edits);
    Ok(out)
}

/// Sets `key`, keeping the spacing around an existing value.
fn set_toml_value(table: &mut toml_edit::Table, key: &str, mut value: toml_edit::Value) {
    if let Some(old) = table.get(key).and_then(toml_edit::Item::as_value) {
        *value.decor_mut() = old.decor().clone();
    } else {
        value.decor_mut().set_prefix(" ");
    }
    table.insert(key, toml_edit::Item::Value(value));
}

fn unwrap_toml(text: &str, manifest: &Manifest) -> Result<Outcome, WrapError> {
    let _: toml_edit::DocumentMut = text.parse().map_err(|source| servers::ReadError::Toml {
        path: String::new(),
        source,
    })?;
    let mut out = Outcome::default();
    let mut edits = Vec::new();
    for (field, entry) in &manifest.entries {
        let Some(name) = field.strip_prefix("mcp_servers.") else {
            continue;
        };
        let Some(range) = toml_table_range(text, name) else {
            continue;
        };
        if text[range.clone()] == *entry.wrapped {
            edits.push(Edit {
                field: field.clone(),
                range,
                text: entry.original.clone(),
                original: entry.wrapped.clone(),
            });
        } else {
            out.skipped.push((
                field.clone(),
                "changed since it was wrapped; left as is".into(),
            ));
        }
    }
    out.changed = edits.iter().map(|e| e.field.clone()).collect();
    out.text = apply(text, edits);
    Ok(out)
}

#[cfg(test)]
mod tests;
