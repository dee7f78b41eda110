//! Strict JSON parsing: duplicate keys, nesting depth and size are checked while parsing.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use smallvec::SmallVec;

use crate::error::DecodeError;
use crate::jsonrpc::{Envelope, Message, classify_envelope, not_an_object};

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
    deserialize_all(
        bytes,
        StrictSeed {
            depth_left: limits.max_depth,
        },
    )
    .map_err(classify)
}

/// Parses and classifies one JSON-RPC message, keeping the original bytes.
pub fn decode(bytes: bytes::Bytes, limits: &Limits) -> Result<Message, DecodeError> {
    let value = parse_value(&bytes, limits)?;
    Message::from_parts(bytes, value)
}

/// The elements of a JSON-RPC batch (a top-level array; only the 2025-03-26 revision has
/// them), each as its own bytes sharing `bytes`, once the whole batch passed the checks
/// [`decode`] applies to one message (size, depth, duplicate keys, UTF-8, syntax). Each element
/// is then decoded on its own, so one invalid element is answered on its own. `Ok` of an empty
/// list for `[]`; an error when `bytes` is valid JSON but not an array.
///
/// ```
/// use warden_proto::{split_batch, Limits};
/// let batch = bytes::Bytes::from_static(br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}, 7 ]"#);
/// let parts = split_batch(&batch, &Limits::default()).unwrap();
/// assert_eq!(&parts[0][..], br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#);
/// assert_eq!(&parts[1][..], b"7");
/// assert!(split_batch(&br#"[{"a":1,"a":2}]"#[..].into(), &Limits::default()).is_err());
/// ```
pub fn split_batch(
    bytes: &bytes::Bytes,
    limits: &Limits,
) -> Result<Vec<bytes::Bytes>, DecodeError> {
    if !parse_value(bytes, limits)?.is_array() {
        return Err(DecodeError::Invalid {
            reason: "a batch must be an array",
            id: None,
        });
    }
    // Valid JSON already, so this reads the same array; each raw value is a span of `bytes`.
    let elements: Vec<&serde_json::value::RawValue> =
        serde_json::from_slice(bytes).map_err(classify)?;
    Ok(elements
        .iter()
        .map(|raw| bytes.slice_ref(raw.get().as_bytes()))
        .collect())
}

/// Validates `bytes` exactly as [`decode`] does (size, depth, duplicate keys, UTF-8, syntax,
/// JSON-RPC shape; the same errors for the same input) but builds no parsed tree: only the
/// envelope (kind, id, method) is read. The message's value is parsed on first use
/// ([`Message::value`]). For messages that are mostly forwarded as they are, such as an
/// upstream's responses, this skips building a tree nobody reads.
///
/// ```
/// use warden_proto::{decode_lazy, Limits};
/// let m = decode_lazy(br#"{"jsonrpc":"2.0","id":7,"result":{"a":1}}"#[..].into(), &Limits::default()).unwrap();
/// assert!(m.is_response() && !m.is_parsed());
/// assert_eq!(m.result().unwrap()["a"], 1);
/// assert!(decode_lazy(br#"{"jsonrpc":"2.0","id":7,"result":{"a":1,"a":2}}"#[..].into(), &Limits::default()).is_err());
/// ```
pub fn decode_lazy(bytes: bytes::Bytes, limits: &Limits) -> Result<Message, DecodeError> {
    if bytes.len() > limits.max_message_bytes {
        return Err(DecodeError::TooLarge {
            size: bytes.len(),
            limit: limits.max_message_bytes,
        });
    }
    let env = match skimmed_envelope(&bytes, limits) {
        Some(env) => env,
        None => serde_envelope(&bytes, limits)?,
    };
    let shape = |s: &Option<Shape>| match s {
        Some(Shape::Object) => Some(Value::Object(Map::new())),
        Some(Shape::Array) => Some(Value::Array(Vec::new())),
        Some(Shape::Scalar) => Some(Value::Null),
        None => None,
    };
    let params = shape(&env.params);
    let (kind, id) = classify_envelope(&Envelope {
        jsonrpc: env.jsonrpc.as_ref(),
        id: env.id.as_ref(),
        method: env.method.as_ref(),
        params: params.as_ref(),
        has_result: env.result.is_some(),
        error: env.error.as_ref(),
    })?;
    let method = match env.method {
        Some(Value::String(m)) => Some(Arc::from(m)),
        _ => None,
    };
    Ok(Message::from_validated(bytes, kind, id, method))
}

/// The envelope of a message [`skim::skim`] accepts, its small members parsed from their spans
/// as [`serde_envelope`] parses them; `None` when the skim declines.
fn skimmed_envelope(bytes: &[u8], limits: &Limits) -> Option<RawEnvelope> {
    let skimmed = skim::skim(bytes, limits.max_depth)?;
    // Members of the top-level object are parsed one level down, as `TopSeed` does.
    let inner = Limits {
        max_message_bytes: usize::MAX,
        max_depth: limits.max_depth.checked_sub(1)?,
    };
    let member = |span: Option<std::ops::Range<usize>>| match span {
        Some(span) => {
            let raw = &bytes[span];
            simple_member(raw)
                .or_else(|| parse_value(raw, &inner).ok())
                .map(Some)
        }
        None => Some(None),
    };
    Some(RawEnvelope {
        jsonrpc: member(skimmed.jsonrpc)?,
        id: member(skimmed.id)?,
        method: member(skimmed.method)?,
        error: member(skimmed.error)?,
        params: skimmed.params,
        result: skimmed.result,
    })
}

/// The value of a validated member in the two shapes envelopes nearly always have, built
/// without a parser: a string without escapes (its bytes are its text) and a non-negative
/// integer of at most 18 digits (a `u64`, as serde_json reads it). `None` for anything else.
fn simple_member(raw: &[u8]) -> Option<Value> {
    match raw {
        [b'"', text @ .., b'"'] if !text.contains(&b'\\') => {
            std::str::from_utf8(text).ok().map(Value::from)
        }
        [b'0'..=b'9', ..] if raw.len() <= 18 && raw.iter().all(u8::is_ascii_digit) => {
            std::str::from_utf8(raw)
                .ok()?
                .parse::<u64>()
                .ok()
                .map(Value::from)
        }
        _ => None,
    }
}

/// `bytes` as exactly one value through `seed`, with nothing after it but whitespace.
fn deserialize_all<'de, S: DeserializeSeed<'de>>(
    bytes: &'de [u8],
    seed: S,
) -> Result<S::Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = seed.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// The envelope as the serde-based validator reads it, with the exact error for bad input.
fn serde_envelope(bytes: &[u8], limits: &Limits) -> Result<RawEnvelope, DecodeError> {
    let top = deserialize_all(
        bytes,
        TopSeed {
            depth_left: limits.max_depth,
        },
    )
    .map_err(classify)?;
    match top {
        Top::Object(env) => Ok(env),
        Top::Other { is_array } => Err(not_an_object(is_array)),
    }
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
            if out.is_empty() {
                // Sized once for the usual object (an envelope, params, a content item)
                // instead of growing and rehashing at the fourth member; `{}` allocates nothing.
                out = Map::with_capacity(SMALL_OBJECT);
            }
            // One hash per key: the entry both detects the duplicate and takes the value.
            match out.entry(key) {
                serde_json::map::Entry::Occupied(e) => {
                    return Err(de::Error::custom(format_args!(
                        "{DUPLICATE_PREFIX}{:?}",
                        e.key()
                    )));
                }
                serde_json::map::Entry::Vacant(e) => {
                    e.insert(map.next_value_seed(StrictSeed { depth_left })?);
                }
            }
        }
        Ok(Value::Object(out))
    }
}

/// What a validated value was, for the envelope's `params` and `result`.
enum Shape {
    Object,
    Array,
    Scalar,
}

/// The top-level members the envelope needs; small ones are kept as values, the others only
/// as shapes.
#[derive(Default)]
struct RawEnvelope {
    jsonrpc: Option<Value>,
    id: Option<Value>,
    method: Option<Value>,
    error: Option<Value>,
    params: Option<Shape>,
    result: Option<Shape>,
}

#[expect(
    clippy::large_enum_variant,
    reason = "one value per decode, on the stack; boxing it would cost an allocation"
)]
enum Top {
    Object(RawEnvelope),
    Other { is_array: bool },
}

/// Members a parsed object has room for before its map grows.
const SMALL_OBJECT: usize = 7;

/// Keys compared for duplicates one by one up to this many (kept on the stack); a set beyond.
const LINEAR_KEY_CHECK: usize = 16;

/// The keys of one object seen so far, for the duplicate check: unescaped keys in the serde
/// path (as [`parse_value`] compares them), raw bytes in the skim (which declines escaped keys).
/// Up to [`LINEAR_KEY_CHECK`] on the stack: one per object being validated, not allocated.
enum SeenKeys<K> {
    Few(SmallVec<[K; LINEAR_KEY_CHECK]>),
    Many(HashSet<K>),
}

impl<K: Eq + std::hash::Hash> SeenKeys<K> {
    fn new() -> Self {
        SeenKeys::Few(SmallVec::new())
    }

    /// False when `key` was seen before.
    fn insert(&mut self, key: K) -> bool {
        match self {
            SeenKeys::Few(keys) => {
                if keys.contains(&key) {
                    return false;
                }
                if keys.len() < LINEAR_KEY_CHECK {
                    keys.push(key);
                } else {
                    let mut set: HashSet<K> = keys.drain(..).collect();
                    set.insert(key);
                    *self = SeenKeys::Many(set);
                }
                true
            }
            SeenKeys::Many(set) => set.insert(key),
        }
    }
}

fn duplicate<E: de::Error>(key: &str) -> E {
    E::custom(format_args!("{DUPLICATE_PREFIX}{key:?}"))
}

/// An object key, borrowed from the input unless it had escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(KeySeed)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

/// Validates one value under the same rules as [`StrictVisitor`] without building it.
struct CheckSeed {
    depth_left: usize,
}

impl<'de> DeserializeSeed<'de> for CheckSeed {
    type Value = Shape;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Shape, D::Error> {
        d.deserialize_any(self)
    }
}

impl CheckSeed {
    fn enter<E: de::Error>(&self) -> Result<usize, E> {
        self.depth_left
            .checked_sub(1)
            .ok_or_else(|| E::custom(DEPTH_MSG))
    }
}

impl<'de> Visitor<'de> for CheckSeed {
    type Value = Shape;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Shape, E> {
        Ok(Shape::Scalar)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Shape, E> {
        Ok(Shape::Scalar)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Shape, E> {
        Ok(Shape::Scalar)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Shape, E> {
        // The same rule as `StrictVisitor::visit_f64`.
        match serde_json::Number::from_f64(v) {
            Some(_) => Ok(Shape::Scalar),
            None => Err(E::custom("number out of range")),
        }
    }
    // Strings arrive here UTF-8-checked by the deserializer.
    fn visit_str<E>(self, _: &str) -> Result<Shape, E> {
        Ok(Shape::Scalar)
    }
    fn visit_unit<E>(self) -> Result<Shape, E> {
        Ok(Shape::Scalar)
    }
    fn visit_none<E>(self) -> Result<Shape, E> {
        Ok(Shape::Scalar)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Shape, A::Error> {
        let depth_left = self.enter()?;
        while seq.next_element_seed(CheckSeed { depth_left })?.is_some() {}
        Ok(Shape::Array)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Shape, A::Error> {
        let depth_left = self.enter()?;
        let mut seen = SeenKeys::new();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if !seen.insert(key.clone()) {
                return Err(duplicate(&key));
            }
            map.next_value_seed(CheckSeed { depth_left })?;
        }
        Ok(Shape::Object)
    }
}

/// The top-level value: an object yields its envelope; anything else is validated only.
struct TopSeed {
    depth_left: usize,
}

impl<'de> DeserializeSeed<'de> for TopSeed {
    type Value = Top;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Top, D::Error> {
        d.deserialize_any(self)
    }
}

impl TopSeed {
    fn other<E>(&self, shape: Result<Shape, E>) -> Result<Top, E> {
        shape.map(|s| Top::Other {
            is_array: matches!(s, Shape::Array),
        })
    }
    fn check(&self) -> CheckSeed {
        CheckSeed {
            depth_left: self.depth_left,
        }
    }
}

impl<'de> Visitor<'de> for TopSeed {
    type Value = Top;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Top, E> {
        let r = self.check().visit_bool(v);
        self.other(r)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Top, E> {
        let r = self.check().visit_i64(v);
        self.other(r)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Top, E> {
        let r = self.check().visit_u64(v);
        self.other(r)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Top, E> {
        let r = self.check().visit_f64(v);
        self.other(r)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Top, E> {
        let r = self.check().visit_str(v);
        self.other(r)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Top, E> {
        let r = self.check().visit_unit();
        self.other(r)
    }
    fn visit_none<E: de::Error>(self) -> Result<Top, E> {
        let r = self.check().visit_none();
        self.other(r)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Top, A::Error> {
        let r = self.check().visit_seq(seq);
        self.other(r)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top, A::Error> {
        let depth_left = self.check().enter()?;
        let mut seen = SeenKeys::new();
        let mut env = RawEnvelope::default();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if !seen.insert(key.clone()) {
                return Err(duplicate(&key));
            }
            let full = || StrictSeed { depth_left };
            let check = CheckSeed { depth_left };
            match key.as_ref() {
                "jsonrpc" => env.jsonrpc = Some(map.next_value_seed(full())?),
                "id" => env.id = Some(map.next_value_seed(full())?),
                "method" => env.method = Some(map.next_value_seed(full())?),
                "error" => env.error = Some(map.next_value_seed(full())?),
                "params" => env.params = Some(map.next_value_seed(check)?),
                "result" => env.result = Some(map.next_value_seed(check)?),
                _ => {
                    map.next_value_seed(check)?;
                }
            }
        }
        Ok(Top::Object(env))
    }
}

mod skim;

#[cfg(test)]
mod tests;
