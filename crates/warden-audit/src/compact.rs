//! The compact JSON of a request's `params` or `params.arguments`, exactly as
//! `serde_json::to_vec` of the parsed value writes it, without building that value when the
//! text is already in that form (what clients send, almost always).
//!
//! The audit digest of arguments is a keyed hash of their compact re-encoding, so that the same
//! arguments digest the same whatever whitespace or escapes a client used. Parsing every request
//! into a tree on the writer thread to produce it cost as much as the rest of the record; the
//! span is found by a borrowing parse (nothing allocated for values it skips), and a scan
//! decides whether the span's bytes already are the re-encoding. Anything unusual takes the
//! parse-and-re-encode path, which defines the result.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer};
use serde_json::Value;
use serde_json::value::RawValue;

/// Longest integer (in digits) known to survive a parse and re-encoding unchanged: every
/// integer of up to 18 digits fits both `i64` and `u64`; longer ones may become floats.
const MAX_EXACT_DIGITS: usize = 18;

/// Most keys per object the canonical check compares for duplicates (a parsed object keeps
/// one of them, so text with duplicates is not its own re-encoding); larger objects take the
/// parse.
const MAX_CHECKED_KEYS: usize = 64;

/// Marks an array on the scan's stack of open containers.
const ARRAY: usize = usize::MAX;

#[derive(Deserialize)]
struct ParamsOf<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    params: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ArgumentsOf<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    arguments: Option<&'a RawValue>,
}

/// A member that is present is `Some`, even when its value is `null` (which `Option` alone
/// would turn into `None`); an absent one is `None` through `default`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&'de RawValue>::deserialize(d).map(Some)
}

/// The compact JSON of the message's `params` (`arguments == false`), or of its
/// `params.arguments` when `params` is an object holding them (else of `params`); `null` when
/// there are no `params` or the message is not JSON.
pub(crate) fn part_json(message: &[u8], arguments: bool) -> Cow<'_, [u8]> {
    match locate(message, arguments) {
        Some(None) => Cow::Borrowed(b"null"),
        Some(Some(raw)) if is_compact_canonical(raw.get().as_bytes()) => {
            Cow::Borrowed(raw.get().as_bytes())
        }
        Some(Some(raw)) => match serde_json::from_str::<Value>(raw.get()) {
            Ok(value) => Cow::Owned(serde_json::to_vec(&value).unwrap_or_default()),
            Err(_) => by_value(message, arguments),
        },
        None => by_value(message, arguments),
    }
}

/// The part's text, or `Some(None)` for "no `params`"; `None` when the message is anything
/// but a well-formed object with at most one `params` (and `arguments`): those take
/// [`by_value`].
fn locate(message: &[u8], arguments: bool) -> Option<Option<&RawValue>> {
    if first_byte(message) != Some(b'{') {
        return None;
    }
    let params = serde_json::from_slice::<ParamsOf<'_>>(message).ok()?.params;
    let Some(params) = params else {
        return Some(None);
    };
    if !arguments || first_byte(params.get().as_bytes()) != Some(b'{') {
        return Some(Some(params));
    }
    let args = serde_json::from_str::<ArgumentsOf<'_>>(params.get()).ok()?;
    Some(Some(args.arguments.unwrap_or(params)))
}

fn first_byte(text: &[u8]) -> Option<u8> {
    text.iter()
        .copied()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
}

/// The definition: parse the whole message, take the part, re-encode it.
fn by_value(message: &[u8], arguments: bool) -> Cow<'static, [u8]> {
    let msg: Value = serde_json::from_slice(message).unwrap_or(Value::Null);
    let params = msg.get("params").unwrap_or(&Value::Null);
    let part = match (arguments, params.get("arguments")) {
        (true, Some(a)) => a,
        _ => params,
    };
    Cow::Owned(serde_json::to_vec(part).unwrap_or_default())
}

/// Whether `text` (one valid JSON value) is byte for byte what `serde_json::to_vec` writes
/// for it once parsed. Conservative: `false` may be returned for text that is, never `true`
/// for text that is not. Compact means no whitespace between tokens; strings may hold any
/// character but `"`, `\` and controls raw, and only the escapes serde_json writes
/// (`\"`, `\\`, `\n`, `\r`, `\t`, `\b`, `\f`; a `\u` escape is declined); numbers must be
/// integers of at most 18 digits other than `-0` (fractions and exponents are re-formatted);
/// no object may repeat a key (compared as written, which under these rules is as decoded).
pub(crate) fn is_compact_canonical(text: &[u8]) -> bool {
    // Keys of the open objects, and where each open container's keys start (`ARRAY` for an
    // array): duplicates are looked for among the innermost object's keys.
    let mut keys: Vec<&[u8]> = Vec::new();
    let mut open: Vec<usize> = Vec::new();
    let mut i = 0;
    while let Some(&b) = text.get(i) {
        match b {
            b'"' => {
                let start = i;
                i += 1;
                loop {
                    match text.get(i) {
                        None => return false,
                        Some(b'"') => break,
                        Some(b'\\') => match text.get(i + 1) {
                            Some(b'"' | b'\\' | b'n' | b'r' | b't' | b'b' | b'f') => i += 2,
                            _ => return false,
                        },
                        Some(&c) if c < 0x20 => return false,
                        Some(_) => i += 1,
                    }
                }
                i += 1;
                if text.get(i) == Some(&b':') {
                    let Some(&from) = open.last().filter(|&&f| f != ARRAY) else {
                        return false;
                    };
                    let key = &text[start..i];
                    if keys.len() - from >= MAX_CHECKED_KEYS || keys[from..].contains(&key) {
                        return false;
                    }
                    keys.push(key);
                }
            }
            b'{' => {
                open.push(keys.len());
                i += 1;
            }
            b'[' => {
                open.push(ARRAY);
                i += 1;
            }
            b'}' | b']' => {
                if let Some(from) = open.pop().filter(|&f| f != ARRAY) {
                    keys.truncate(from);
                }
                i += 1;
            }
            b':' | b',' => i += 1,
            b't' | b'f' | b'n' => {
                let word: &[u8] = match b {
                    b't' => b"true",
                    b'f' => b"false",
                    _ => b"null",
                };
                if !text[i..].starts_with(word) {
                    return false;
                }
                i += word.len();
            }
            b'-' | b'0'..=b'9' => {
                let negative = b == b'-';
                let start = if negative { i + 1 } else { i };
                let digits = text[start..]
                    .iter()
                    .take_while(|c| c.is_ascii_digit())
                    .count();
                let end = start + digits;
                // A fraction or exponent after the digits ends the scan below: `.`, `e` and
                // `E` are no token of it.
                if digits == 0
                    || digits > MAX_EXACT_DIGITS
                    || (negative && &text[start..end] == b"0")
                {
                    return false;
                }
                i = end;
            }
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn message(params: &str) -> String {
        format!(r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{params}}}"#)
    }

    #[test]
    fn compact_arguments_are_borrowed_not_re_encoded() {
        let m = message(r#"{"name":"echo","arguments":{"message":"hi \"you\"\n","n":-12}}"#);
        let got = part_json(m.as_bytes(), true);
        assert!(matches!(got, Cow::Borrowed(_)));
        assert_eq!(&*got, br#"{"message":"hi \"you\"\n","n":-12}"#);
        assert_eq!(got, by_value(m.as_bytes(), true));
    }

    #[test]
    fn unusual_shapes_match_the_definition() {
        let cases = [
            message(r#"{"name":"echo","arguments":null}"#),
            message(r#"{"name":"echo"}"#),
            message("null"),
            message("[1,2]"),
            message(r#""text""#),
            message(r#" { "arguments" : { "b" : 1.50, "a" : 1e2, "c" : -0, "d" : "\u0041\/" } } "#),
            message(r#"{"arguments":{"big":123456789012345678901234,"neg":-9223372036854775808}}"#),
            message(r#"{"arguments":{"a":1,"a":2}}"#),
            message(r#"{"arguments":{"ctl":"\u001f","uni":"é ☃ \u2028"}}"#),
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#.to_owned(),
            r#"{"params":{"arguments":{"x":1}},"params":{"arguments":{"x":2}}}"#.to_owned(),
            "[1]".to_owned(),
            "not json".to_owned(),
        ];
        for m in &cases {
            for arguments in [true, false] {
                assert_eq!(
                    part_json(m.as_bytes(), arguments),
                    by_value(m.as_bytes(), arguments),
                    "{m} (arguments: {arguments})"
                );
            }
        }
    }

    #[test]
    fn the_canonical_check_declines_what_re_encoding_changes() {
        for text in [
            "1.0",
            "1e2",
            "-0",
            "01x",
            "\"\\u0041\"",
            "\"\\/\"",
            "[1, 2]",
            " 1",
            "tru",
            "1234567890123456789",
            r#"{"a":1,"a":2}"#,
            r#"[{"a":{"a":1},"b":2,"a":3}]"#,
        ] {
            assert!(!is_compact_canonical(text.as_bytes()), "{text}");
        }
        for text in [
            "0",
            "-1",
            "true",
            "null",
            "[]",
            "{}",
            r#"{"a":[1,"\t",false]}"#,
            r#"{"a":{"a":1},"b":[{"a":2}]}"#,
        ] {
            assert!(is_compact_canonical(text.as_bytes()), "{text}");
        }
    }

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            any::<String>().prop_map(Value::String),
            "[\\x00-\\x7f]{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::vec(("[a-z\\\\\"\\x00-\\x1f]{0,4}", inner), 0..6)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Whatever the value and however the message is written (compact, pretty), the result
        /// is the definition's: the parse and re-encoding of the part.
        #[test]
        fn equals_the_parse_and_re_encoding(args in json(), pretty in any::<bool>(), with_name in any::<bool>()) {
            let mut params = serde_json::Map::new();
            if with_name {
                params.insert("name".into(), Value::from("echo"));
            }
            params.insert("arguments".into(), args);
            let msg = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params});
            let text = if pretty {
                serde_json::to_vec_pretty(&msg).unwrap()
            } else {
                serde_json::to_vec(&msg).unwrap()
            };
            for arguments in [true, false] {
                prop_assert_eq!(part_json(&text, arguments), by_value(&text, arguments));
            }
        }

        /// The canonical check never accepts a text whose re-encoding differs.
        #[test]
        fn the_canonical_check_is_never_wrong(text in "[-0-9.eE\"\\\\a-z\\[\\]{}:, \\x00-\\x1f]{0,24}") {
            if let Ok(value) = serde_json::from_str::<Value>(&text)
                && is_compact_canonical(text.as_bytes())
            {
                prop_assert_eq!(serde_json::to_vec(&value).unwrap(), text.as_bytes().to_vec());
            }
        }
    }
}
