//! The JSON-RPC message view: original bytes plus the parsed value and its kind.

use std::fmt;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde_json::Value;

use crate::error::DecodeError;
use crate::lookup::Field;

/// A JSON-RPC request id: a string or a number (never null).
///
/// Numbers keep their exact text so an id like `1.0` or `18446744073709551615` round-trips.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Id {
    /// A numeric id, as written.
    Number(Arc<str>),
    /// A string id.
    String(Arc<str>),
}

impl Id {
    /// Reads an id from a JSON value; `None` for null, booleans, arrays and objects.
    pub fn from_value(v: &Value) -> Option<Id> {
        match v {
            // Integers (what every client sends) straight into the id, without `fmt`.
            Value::Number(n) => Some(Id::Number(if let Some(u) = n.as_u64() {
                itoa::Buffer::new().format(u).into()
            } else if let Some(i) = n.as_i64() {
                itoa::Buffer::new().format(i).into()
            } else {
                n.to_string().into()
            })),
            Value::String(s) => Some(Id::String(s.as_str().into())),
            _ => None,
        }
    }

    /// The id as a JSON value.
    pub fn to_value(&self) -> Value {
        match self {
            Id::Number(n) => {
                // Integers (the ids every client uses) without a trip through the parser.
                // (`-0` is left to the parser, which reads it as a float.)
                let b = n.as_bytes();
                if b.first().is_some_and(u8::is_ascii_digit)
                    && let Ok(u) = n.parse::<u64>()
                {
                    return Value::from(u);
                }
                if b.first() == Some(&b'-')
                    && b.get(1).is_some_and(|c| (b'1'..=b'9').contains(c))
                    && let Ok(i) = n.parse::<i64>()
                {
                    return Value::from(i);
                }
                serde_json::from_str(n).unwrap_or_else(|_| Value::String(n.to_string()))
            }
            Id::String(s) => Value::String(s.to_string()),
        }
    }

    /// The id as JSON text.
    pub fn to_json(&self) -> String {
        match self {
            Id::Number(n) => n.to_string(),
            // Serialising a string cannot fail.
            Id::String(s) => serde_json::to_string(&**s).unwrap_or_default(),
        }
    }
}

impl From<u64> for Id {
    fn from(n: u64) -> Self {
        Id::Number(itoa::Buffer::new().format(n).into())
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json())
    }
}

/// What a JSON-RPC message is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A request: has a method and an id.
    Request,
    /// A notification: has a method, no id.
    Notification,
    /// A successful response: has an id and a result.
    Response,
    /// An error response: has an error (and an id, null when the request could not be read).
    Error,
}

/// One decoded JSON-RPC message.
///
/// `bytes` are exactly what the peer sent (without framing); `value` is their strict parse.
/// Forward `bytes` unless the message was rewritten.
///
/// A message decoded with [`decode_lazy`](crate::decode_lazy) (or re-identified with
/// [`Message::with_id`]) was fully validated, but its parsed value is built only when first
/// asked for ([`Message::value`] and the accessors that read it). Kind, id and method are
/// known without it, so a response the gateway only forwards is never turned into a tree.
///
/// The message itself is one pointer: messages move through many functions and futures on
/// their way (about 60 moves per `tools/call` in `run`), and its parts take 160 bytes.
#[derive(Clone)]
pub struct Message {
    inner: Box<Parts>,
}

#[derive(Clone)]
struct Parts {
    bytes: Bytes,
    value: OnceLock<Value>,
    kind: Kind,
    id: Option<Id>,
    /// The method when the value may not be parsed yet; `None` means "read it from the value".
    method: Option<Option<Arc<str>>>,
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Bodies may carry secrets: show the envelope only.
        f.debug_struct("Message")
            .field("kind", &self.inner.kind)
            .field("id", &self.inner.id)
            .field("method", &self.method())
            .field("bytes", &self.inner.bytes.len())
            .finish()
    }
}

impl Message {
    fn of(parts: Parts) -> Message {
        Message {
            inner: Box::new(parts),
        }
    }

    /// Classifies a parsed value; `bytes` must be the text `value` was parsed from.
    pub fn from_parts(bytes: Bytes, value: Value) -> Result<Message, DecodeError> {
        let (kind, id) = classify(&value)?;
        let id = exact_number_id(&bytes, id);
        Ok(Message::of(Parts {
            bytes,
            value: OnceLock::from(value),
            kind,
            id,
            method: None,
        }))
    }

    /// A message whose bytes were validated strictly and whose envelope was classified, with
    /// the value left to be parsed on first use.
    pub(crate) fn from_validated(
        bytes: Bytes,
        kind: Kind,
        id: Option<Id>,
        method: Option<Arc<str>>,
    ) -> Message {
        let id = exact_number_id(&bytes, id);
        Message::of(Parts {
            bytes,
            value: OnceLock::new(),
            kind,
            id,
            method: Some(method),
        })
    }

    /// Builds a message from a value the gateway made itself (serialised once, here).
    pub fn from_value(value: Value) -> Result<Message, DecodeError> {
        let bytes = Bytes::from(
            serde_json::to_vec(&value).map_err(|_| DecodeError::Invalid {
                reason: "value cannot be serialised",
                id: None,
            })?,
        );
        Message::from_parts(bytes, value)
    }

    /// The bytes to forward.
    pub fn bytes(&self) -> &Bytes {
        &self.inner.bytes
    }

    /// The parsed message.
    pub fn value(&self) -> &Value {
        self.inner.value.get_or_init(|| reparse(&self.inner.bytes))
    }

    /// True once the parsed value exists (it was decoded eagerly or asked for).
    pub fn is_parsed(&self) -> bool {
        self.inner.value.get().is_some()
    }

    /// Consumes the message, returning the parsed value.
    pub fn into_value(mut self) -> Value {
        match self.inner.value.take() {
            Some(v) => v,
            None => reparse(&self.inner.bytes),
        }
    }

    /// Request, notification, response or error.
    pub fn kind(&self) -> &Kind {
        &self.inner.kind
    }

    /// The id of a request or response (`None` for notifications and id-less errors).
    pub fn id(&self) -> Option<&Id> {
        self.inner.id.as_ref()
    }

    /// The method of a request or notification.
    pub fn method(&self) -> Option<&str> {
        match &self.inner.method {
            Some(method) => method.as_deref(),
            None => self.value().field("method").and_then(Value::as_str),
        }
    }

    /// `params` of a request or notification.
    pub fn params(&self) -> Option<&Value> {
        self.value().field("params")
    }

    /// `result` of a response.
    pub fn result(&self) -> Option<&Value> {
        self.value().field("result")
    }

    /// `error` of an error response.
    pub fn error(&self) -> Option<&Value> {
        self.value().field("error")
    }

    /// True for requests.
    pub fn is_request(&self) -> bool {
        self.inner.kind == Kind::Request
    }

    /// True for responses and error responses.
    pub fn is_response(&self) -> bool {
        matches!(self.inner.kind, Kind::Response | Kind::Error)
    }

    /// The same message with another id, keeping every other byte as it was.
    ///
    /// Only the top-level `id` value is replaced, so unknown fields, key order and number
    /// spellings elsewhere in the message are untouched. The parsed value is not copied: the
    /// new message parses its own bytes if and when its value is asked for (the stdio path
    /// forwards the bytes only).
    pub fn with_id(&self, id: &Id) -> Message {
        match top_level_value_span(&self.inner.bytes, "id") {
            Some(span) => Message::of(Parts {
                bytes: self.spliced_id(span, id),
                value: OnceLock::new(),
                kind: self.inner.kind.clone(),
                id: Some(id.clone()),
                method: Some(self.method().map(Arc::from)),
            }),
            // No id in the text (cannot happen for a request or response): re-encode.
            None => {
                let mut value = self.value().clone();
                if let Value::Object(map) = &mut value {
                    map.insert("id".into(), id.to_value());
                }
                let bytes = Bytes::from(serde_json::to_vec(&value).unwrap_or_default());
                Message::of(Parts {
                    bytes,
                    value: OnceLock::from(value),
                    kind: self.inner.kind.clone(),
                    id: Some(id.clone()),
                    method: None,
                })
            }
        }
    }

    /// [`Message::with_id`] for a message the caller owns: the parsed value is updated in place
    /// instead of cloned (the response path restores the client's id on every message).
    pub fn into_with_id(mut self, id: &Id) -> Message {
        let Some(span) = top_level_value_span(&self.inner.bytes, "id") else {
            return self.with_id(id);
        };
        self.inner.bytes = self.spliced_id(span, id);
        // A value not parsed yet will be parsed from the new bytes.
        if let Some(Value::Object(map)) = self.inner.value.get_mut() {
            map.insert("id".into(), id.to_value());
        }
        self.inner.id = Some(id.clone());
        self
    }

    /// The bytes with the value at `start..end` (the top-level id) replaced by `id`.
    fn spliced_id(&self, (start, end): (usize, usize), id: &Id) -> Bytes {
        let string_id;
        let id_text = match id {
            Id::Number(n) => n.as_bytes(),
            Id::String(_) => {
                string_id = id.to_json();
                string_id.as_bytes()
            }
        };
        // Exactly the length: `Bytes::from` a full vector takes it over as it is, where a vector
        // with room to spare costs a second allocation for the shared header.
        let mut out = Vec::with_capacity(self.inner.bytes.len() - (end - start) + id_text.len());
        out.extend_from_slice(&self.inner.bytes[..start]);
        out.extend_from_slice(id_text);
        out.extend_from_slice(&self.inner.bytes[end..]);
        Bytes::from(out)
    }

    /// Replaces the message with a rewritten value (re-serialised once).
    pub fn rewrite(&self, value: Value) -> Result<Message, DecodeError> {
        Message::from_value(value)
    }
}

/// A numeric id keeps the exact text the peer wrote. An integer's text (optional `-`, then
/// digits) already is: JSON allows no leading zeros or `+`, serde_json reads an integer that
/// fits 64 bits exactly (`-0` as a float, so as `-0.0`), and [`Id::from_value`] writes it back
/// in the one canonical form. Anything else (`1.0`, `1e2`, an integer beyond 64 bits) is
/// read from the bytes.
fn exact_number_id(bytes: &[u8], id: Option<Id>) -> Option<Id> {
    if let Some(Id::Number(n)) = &id
        && !is_plain_integer(n.as_bytes())
        && let Some((start, end)) = top_level_value_span(bytes, "id")
        && let Ok(text) = std::str::from_utf8(&bytes[start..end])
    {
        return Some(Id::Number(text.into()));
    }
    id
}

fn is_plain_integer(text: &[u8]) -> bool {
    let digits = text.strip_prefix(b"-").unwrap_or(text);
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
}

/// Parses the bytes of a message that was already validated under its limits. Parsing the
/// same bytes with the same strict rules cannot fail; if it ever did, the message reads as
/// `null` (no method, no params), which every caller treats as "nothing to act on".
fn reparse(bytes: &[u8]) -> Value {
    let unbounded = crate::Limits {
        max_message_bytes: usize::MAX,
        max_depth: usize::MAX,
    };
    let parsed = crate::parse_value(bytes, &unbounded);
    debug_assert!(parsed.is_ok(), "a validated message failed to parse");
    parsed.unwrap_or(Value::Null)
}

/// The top-level members of a message that decide what it is, as [`classify_envelope`] reads
/// them. `params` and `result` only need their presence and shape.
pub(crate) struct Envelope<'a> {
    pub(crate) jsonrpc: Option<&'a Value>,
    pub(crate) id: Option<&'a Value>,
    pub(crate) method: Option<&'a Value>,
    pub(crate) params: Option<&'a Value>,
    pub(crate) has_result: bool,
    pub(crate) error: Option<&'a Value>,
}

fn classify(value: &Value) -> Result<(Kind, Option<Id>), DecodeError> {
    let obj = match value {
        Value::Object(obj) => obj,
        other => return Err(not_an_object(other.is_array())),
    };
    classify_envelope(&Envelope {
        jsonrpc: obj.field("jsonrpc"),
        id: obj.field("id"),
        method: obj.field("method"),
        params: obj.field("params"),
        has_result: obj.contains_key("result"),
        error: obj.field("error"),
    })
}

/// The error for a top-level value that is not an object.
pub(crate) fn not_an_object(is_array: bool) -> DecodeError {
    DecodeError::Invalid {
        reason: if is_array {
            "json-rpc batches are not supported"
        } else {
            "message is not an object"
        },
        id: None,
    }
}

/// Classifies a message from its envelope members (shared by eager and lazy decoding, so
/// both accept and refuse exactly the same messages).
pub(crate) fn classify_envelope(env: &Envelope<'_>) -> Result<(Kind, Option<Id>), DecodeError> {
    let raw_id = env.id;
    let id = raw_id.and_then(Id::from_value);
    // The id to echo in an error: only a well-formed one.
    let invalid = |reason| DecodeError::Invalid {
        reason,
        id: id.as_ref().map(Id::to_value),
    };
    if env.jsonrpc.and_then(Value::as_str) != Some("2.0") {
        return Err(invalid("jsonrpc must be \"2.0\""));
    }
    if let Some(raw) = raw_id
        && id.is_none()
        && !(raw.is_null() && env.error.is_some())
    {
        return Err(invalid("id must be a string or a number"));
    }
    match env.method {
        Some(Value::String(_)) => {
            if env.has_result || env.error.is_some() {
                return Err(invalid("a request cannot carry result or error"));
            }
            if let Some(p) = env.params
                && !p.is_object()
                && !p.is_array()
            {
                return Err(invalid("params must be an object or an array"));
            }
            Ok((
                if id.is_some() {
                    Kind::Request
                } else {
                    Kind::Notification
                },
                id,
            ))
        }
        Some(_) => Err(invalid("method must be a string")),
        None => match (env.has_result, env.error) {
            (true, None) if id.is_some() => Ok((Kind::Response, id)),
            (false, Some(e)) => {
                let ok = e.field("code").is_some_and(|c| c.is_i64() || c.is_u64())
                    && e.field("message").is_some_and(Value::is_string);
                if ok {
                    Ok((Kind::Error, id))
                } else {
                    Err(invalid(
                        "error must have an integer code and a string message",
                    ))
                }
            }
            (true, Some(_)) => Err(invalid("a response cannot carry both result and error")),
            _ => Err(invalid("message has neither method nor result nor error")),
        },
    }
}

/// How many bytes of a refused message [`recover_response_id`] looks at.
pub const RECOVERY_SCAN_BYTES: usize = 64 * 1024;

/// What a bounded look at a message the gateway refused (too large, too deep, duplicate keys,
/// invalid UTF-8, bad syntax) can tell about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovered {
    /// It reads as a response (a top-level `result` or `error` member and no `method`); the
    /// id when one could be read without ambiguity.
    Response(Option<Id>),
    /// Anything else: a request, a notification, or text that is not a JSON object.
    Other,
}

/// Reads what a refused message was, leniently and within bounds: only the first
/// [`RECOVERY_SCAN_BYTES`] are scanned, without recursion and without building values (one
/// scalar `id` is parsed). The text may be truncated (the head of an over-long line) or
/// invalid; nothing in it is trusted beyond telling which pending request it was meant to
/// answer, so that request can fail at once instead of waiting for its timeout.
///
/// Two different top-level ids give `Response(None)`.
///
/// ```
/// use warden_proto::jsonrpc::{recover_response_id, Recovered};
/// use warden_proto::Id;
/// let refused = br#"{"jsonrpc":"2.0","id":7,"result":{"a":1,"a":2}}"#;
/// assert_eq!(recover_response_id(refused), Recovered::Response(Some(Id::from(7))));
/// assert_eq!(recover_response_id(br#"{"jsonrpc":"2.0","id":7,"method":"x""#), Recovered::Other);
/// ```
pub fn recover_response_id(text: &[u8]) -> Recovered {
    let head = scan_head(text);
    if head.answers && !head.method {
        Recovered::Response(if head.ambiguous { None } else { head.id })
    } else {
        Recovered::Other
    }
}

/// The id of a refused *request* (a top-level `method`, no `result` or `error`), read as
/// [`recover_response_id`] reads a response's: from the first [`RECOVERY_SCAN_BYTES`] only,
/// top-level members only, `None` when it is absent, not yet reached, cut by the end of the
/// text, or ambiguous. A client told which request failed does not wait for its answer until
/// it gives up.
///
/// ```
/// use warden_proto::jsonrpc::recover_request_id;
/// use warden_proto::Id;
/// assert_eq!(recover_request_id(br#"{"jsonrpc":"2.0","id":41,"method":"tools/call","params":{"#), Some(Id::from(41)));
/// assert_eq!(recover_request_id(br#"{"jsonrpc":"2.0","method":"x","params":{"id":3"#), None);
/// assert_eq!(recover_request_id(br#"{"jsonrpc":"2.0","id":7,"result":{"#), None);
/// assert_eq!(recover_request_id(br#"{"jsonrpc":"2.0","method":"x","id":12"#), None);
/// ```
pub fn recover_request_id(text: &[u8]) -> Option<Id> {
    // (The cut-number case: `{"method":"x","id":12` may be the head of `"id":12345`.)
    let head = scan_head(text);
    (head.method && !head.answers && !head.ambiguous)
        .then_some(head.id)
        .flatten()
}

/// What [`scan_head`] read of a message's top-level members.
struct Head {
    answers: bool,
    method: bool,
    id: Option<Id>,
    ambiguous: bool,
}

fn scan_head(text: &[u8]) -> Head {
    let text = &text[..text.len().min(RECOVERY_SCAN_BYTES)];
    let mut answers = false;
    let mut method = false;
    let mut id: Option<Id> = None;
    let mut ambiguous = false;
    let mut i = skip_ws(text, 0);
    if text.get(i) != Some(&b'{') {
        return Head {
            answers,
            method,
            id,
            ambiguous,
        };
    }
    i += 1;
    // Stops at the end of the object or wherever the text stops making sense.
    while let Some(&c) = text.get(skip_ws(text, i)) {
        i = skip_ws(text, i);
        match c {
            b',' => {
                i += 1;
                continue;
            }
            b'"' => {}
            _ => break,
        }
        let Some(key_end) = skip_string(text, i) else {
            break;
        };
        let raw_key = &text[i..key_end];
        let key = if raw_key.contains(&b'\\') {
            serde_json::from_slice::<String>(raw_key).ok()
        } else {
            std::str::from_utf8(&raw_key[1..raw_key.len() - 1])
                .ok()
                .map(str::to_owned)
        };
        match key.as_deref() {
            Some("result" | "error") => answers = true,
            Some("method") => method = true,
            _ => {}
        }
        i = skip_ws(text, key_end);
        if text.get(i) != Some(&b':') {
            break;
        }
        let start = skip_ws(text, i + 1);
        let Some(end) = skip_value(text, start) else {
            break;
        };
        if key.as_deref() == Some("id") {
            let found = scalar_id(&text[start..end]);
            match (&id, found) {
                (_, None) => ambiguous = true,
                (None, Some(f)) => id = Some(f),
                (Some(prev), Some(f)) if *prev == f => {}
                (Some(_), Some(_)) => ambiguous = true,
            }
        }
        i = end;
    }
    Head {
        answers,
        method,
        id,
        ambiguous,
    }
}

/// A string or number id from its exact text (numbers keep their spelling).
fn scalar_id(text: &[u8]) -> Option<Id> {
    match text.first()? {
        b'"' => serde_json::from_slice::<String>(text)
            .ok()
            .map(|s| Id::String(s.into())),
        b'-' | b'0'..=b'9' => {
            let value: Value = serde_json::from_slice(text).ok()?;
            value
                .is_number()
                .then(|| Id::Number(String::from_utf8_lossy(text).as_ref().into()))
        }
        _ => None,
    }
}

/// Byte span of the value of top-level `key` in a JSON object text that already parsed.
///
/// Keys are compared after unescaping, so `"\u0069d"` is found as `id`.
pub(crate) fn top_level_value_span(text: &[u8], key: &str) -> Option<(usize, usize)> {
    let mut i = skip_ws(text, 0);
    if text.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    loop {
        i = skip_ws(text, i);
        match text.get(i)? {
            b'}' => return None,
            b',' => {
                i += 1;
                continue;
            }
            b'"' => {}
            _ => return None,
        }
        let key_start = i;
        let key_end = skip_string(text, i)?;
        let raw_key = &text[key_start..key_end];
        let matches = if raw_key.contains(&b'\\') {
            serde_json::from_slice::<String>(raw_key).ok().as_deref() == Some(key)
        } else {
            &raw_key[1..raw_key.len() - 1] == key.as_bytes()
        };
        i = skip_ws(text, key_end);
        if text.get(i) != Some(&b':') {
            return None;
        }
        let value_start = skip_ws(text, i + 1);
        let value_end = skip_value(text, value_start)?;
        if matches {
            return Some((value_start, value_end));
        }
        i = value_end;
    }
}

fn skip_ws(text: &[u8], mut i: usize) -> usize {
    while matches!(text.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// `i` is at the opening quote; returns the index after the closing quote.
fn skip_string(text: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    loop {
        match text.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
}

fn skip_value(text: &[u8], i: usize) -> Option<usize> {
    match text.get(i)? {
        b'"' => skip_string(text, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match text.get(j)? {
                    b'"' => {
                        j = skip_string(text, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let mut j = i;
            while let Some(c) = text.get(j) {
                if matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                    return Some(j);
                }
                j += 1;
            }
            // The text stops inside it: a cut head (`12` of `12345`), not the value.
            None
        }
    }
}

#[cfg(test)]
mod tests;
