//! Strict JSON parsing: duplicate keys, nesting depth and size are checked while parsing.

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::error::DecodeError;
use crate::jsonrpc::Message;

/// Bounds memory per message and keeps one peer from monopolising the gateway.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 << 20;
/// Deep enough for any real schema; shallow enough that recursion stays cheap.
pub const DEFAULT_MAX_DEPTH: usize = 64;

/// Limits applied to every message the gateway decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted message, in bytes (without the framing newline).
    pub max_message_bytes: usize,
    /// Deepest accepted nesting of arrays and objects (the top-level value is depth 1).
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }
}

/// Parses `bytes` as one JSON value under `limits`, rejecting duplicate keys, invalid UTF-8,
/// trailing data and excessive nesting.
///
/// ```
/// use warden_proto::{parse_value, Limits};
/// assert!(parse_value(br#"{"a":1}"#, &Limits::default()).is_ok());
/// assert!(parse_value(br#"{"a":1,"a":2}"#, &Limits::default()).is_err());
/// ```
pub fn parse_value(bytes: &[u8], limits: &Limits) -> Result<Value, DecodeError> {
    if bytes.len() > limits.max_message_bytes {
        return Err(DecodeError::TooLarge {
            size: bytes.len(),
            limit: limits.max_message_bytes,
        });
    }
    // serde_json's own recursion guard stops at 128 levels; ours is configurable and the
    // seed below enforces it. Keep serde_json's guard on as a second line of defence.
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = StrictSeed {
        depth_left: limits.max_depth,
    }
    .deserialize(&mut de)
    .map_err(classify)?;
    de.end().map_err(classify)?;
    Ok(value)
}

/// Parses and classifies one JSON-RPC message, keeping the original bytes.
pub fn decode(bytes: bytes::Bytes, limits: &Limits) -> Result<Message, DecodeError> {
    let value = parse_value(&bytes, limits)?;
    Message::from_parts(bytes, value)
}

fn classify(err: serde_json::Error) -> DecodeError {
    let text = err.to_string();
    if let Some(rest) = text.strip_prefix(DUPLICATE_PREFIX) {
        let key = rest.split(" at line").next().unwrap_or(rest).to_owned();
        return DecodeError::DuplicateKey { key };
    }
    if text.starts_with(DEPTH_MSG) {
        return DecodeError::TooDeep;
    }
    if text.contains("recursion limit exceeded") {
        return DecodeError::TooDeep;
    }
    DecodeError::Syntax {
        detail: text,
        line: err.line(),
        column: err.column(),
    }
}

const DUPLICATE_PREFIX: &str = "duplicate object key ";
const DEPTH_MSG: &str = "nesting depth limit exceeded";

struct StrictSeed {
    depth_left: usize,
}

impl<'de> DeserializeSeed<'de> for StrictSeed {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(StrictVisitor {
            depth_left: self.depth_left,
        })
    }
}

struct StrictVisitor {
    depth_left: usize,
}

impl StrictVisitor {
    fn enter<E: de::Error>(&self) -> Result<usize, E> {
        match self.depth_left.checked_sub(1) {
            Some(left) => Ok(left),
            None => Err(E::custom(DEPTH_MSG)),
        }
    }
}

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let depth_left = self.enter()?;
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(v) = seq.next_element_seed(StrictSeed { depth_left })? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let depth_left = self.enter()?;
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!("{DUPLICATE_PREFIX}{key:?}")));
            }
            let v = map.next_value_seed(StrictSeed { depth_left })?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests;
