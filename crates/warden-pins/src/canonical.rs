//! The canonical form of a definition, its hash, and the pretty form diffs are made of.
//!
//! # Canonical form
//!
//! A JSON value is written as compact JSON (no whitespace) with:
//! - object members sorted by key, comparing the keys' UTF-8 bytes (which is Unicode code point
//!   order); every member is kept, including `_meta` and members unknown to the specification;
//! - array elements in their original order (order is meaningful in JSON);
//! - strings as decoded text, re-escaped minimally: `"` and `\` escaped, control characters
//!   below U+0020 written as `\b \f \n \r \t` or `\u00XX` (lowercase hex), everything else
//!   (including non-ASCII) as raw UTF-8. So `"\u0061"` and `"a"` are the same string and hash
//!   the same; escapes in the input never matter, only the decoded text;
//! - numbers as the gateway's JSON parser reads them: integers exactly (`1`, `-7`), other
//!   numbers as the shortest decimal that round-trips an IEEE 754 double (`1.0`, `1e300`). So
//!   `1` and `1.0` differ: a changed number spelling is a changed definition;
//! - `true`, `false`, `null` as themselves.
//!
//! A duplicate key cannot reach this module: the gateway's strict parser refuses messages with
//! duplicate keys, and a [`serde_json::Value`] cannot hold two.
//!
//! The hash of a definition is SHA-256 over its canonical bytes, written `sha256:<64 hex>`.

use std::fmt::Write as _;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Prefix of every pin hash: names the algorithm, so another can be added without ambiguity.
pub const HASH_PREFIX: &str = "sha256:";

/// The canonical bytes of `value` (see the module documentation).
pub fn canonical_bytes(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_value(value, &mut out);
    out
}

/// `sha256:<hex>` of the canonical bytes of `value`.
///
/// ```
/// use serde_json::json;
/// let a = warden_pins::definition_hash(&json!({"name": "a", "description": "x"}));
/// let b = warden_pins::definition_hash(&json!({"description": "x", "name": "a"}));
/// assert_eq!(a, b);
/// assert!(a.starts_with("sha256:"));
/// ```
pub fn definition_hash(value: &Value) -> String {
    let digest = Sha256::digest(canonical_bytes(value));
    let mut out = String::with_capacity(HASH_PREFIX.len() + 64);
    out.push_str(HASH_PREFIX);
    for b in digest {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// `value` with every object's members sorted as in the canonical form, for display: its
/// pretty-printed text is what `pins diff` compares line by line.
pub fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            let mut out = Map::with_capacity(map.len());
            for k in keys {
                if let Some(v) = map.get(k) {
                    out.insert(k.clone(), sorted(v));
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// The canonical value pretty-printed (two-space indent, sorted keys), one member per line.
pub fn pretty(value: &Value) -> String {
    // Serialising a Value (string keys only) cannot fail; fall back to compact text anyway.
    serde_json::to_string_pretty(&sorted(value))
        .unwrap_or_else(|_| String::from_utf8_lossy(&canonical_bytes(value)).into_owned())
}

fn write_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(k, out);
                out.push(b':');
                write_value(v, out);
            }
            out.push(b'}');
        }
    }
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\u{08}' => out.extend_from_slice(b"\\b"),
            '\u{0c}' => out.extend_from_slice(b"\\f"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                let mut buf = String::with_capacity(6);
                let _ = write!(buf, "\\u{:04x}", c as u32);
                out.extend_from_slice(buf.as_bytes());
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests;
