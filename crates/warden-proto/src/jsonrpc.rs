//! The JSON-RPC message view: original bytes plus the parsed value and its kind.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use crate::error::DecodeError;

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
            Value::Number(n) => Some(Id::Number(n.to_string().into())),
            Value::String(s) => Some(Id::String(s.as_str().into())),
            _ => None,
        }
    }

    /// The id as a JSON value.
    pub fn to_value(&self) -> Value {
        match self {
            Id::Number(n) => {
                serde_json::from_str(n).unwrap_or_else(|_| Value::String(n.to_string()))
            }
            Id::String(s) => Value::String(s.to_string()),
        }
    }

    /// The id as JSON text.
    pub fn to_json(&self) -> String {
        match self {
            Id::Number(n) => n.to_string(),
            Id::String(s) => Value::String(s.to_string()).to_string(),
        }
    }
}

impl From<u64> for Id {
    fn from(n: u64) -> Self {
        Id::Number(n.to_string().into())
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
#[derive(Clone)]
pub struct Message {
    bytes: Bytes,
    value: Value,
    kind: Kind,
    id: Option<Id>,
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Bodies may carry secrets: show the envelope only.
        f.debug_struct("Message")
            .field("kind", &self.kind)
            .field("id", &self.id)
            .field("method", &self.method())
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

impl Message {
    /// Classifies a parsed value; `bytes` must be the text `value` was parsed from.
    pub fn from_parts(bytes: Bytes, value: Value) -> Result<Message, DecodeError> {
        let (kind, mut id) = classify(&value)?;
        if let Some(Id::Number(_)) = id
            && let Some((start, end)) = top_level_value_span(&bytes, "id")
            && let Ok(text) = std::str::from_utf8(&bytes[start..end])
        {
            id = Some(Id::Number(text.into()));
        }
        Ok(Message {
            bytes,
            value,
            kind,
            id,
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
        &self.bytes
    }

    /// The parsed message.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// Consumes the message, returning the parsed value.
    pub fn into_value(self) -> Value {
        self.value
    }

    /// Request, notification, response or error.
    pub fn kind(&self) -> &Kind {
        &self.kind
    }

    /// The id of a request or response (`None` for notifications and id-less errors).
    pub fn id(&self) -> Option<&Id> {
        self.id.as_ref()
    }

    /// The method of a request or notification.
    pub fn method(&self) -> Option<&str> {
        self.value.get("method").and_then(Value::as_str)
    }

    /// `params` of a request or notification.
    pub fn params(&self) -> Option<&Value> {
        self.value.get("params")
    }

    /// `result` of a response.
    pub fn result(&self) -> Option<&Value> {
        self.value.get("result")
    }

    /// `error` of an error response.
    pub fn error(&self) -> Option<&Value> {
        self.value.get("error")
    }

    /// True for requests.
    pub fn is_request(&self) -> bool {
        self.kind == Kind::Request
    }

    /// True for responses and error responses.
    pub fn is_response(&self) -> bool {
        matches!(self.kind, Kind::Response | Kind::Error)
    }

    /// The same message with another id, keeping every other byte as it was.
    ///
    /// Only the top-level `id` value is replaced, so unknown fields, key order and number
    /// spellings elsewhere in the message are untouched.
    pub fn with_id(&self, id: &Id) -> Message {
        let new_id = id.to_json();
        let bytes = match top_level_value_span(&self.bytes, "id") {
            Some((start, end)) => {
                let mut out = Vec::with_capacity(self.bytes.len() + new_id.len());
                out.extend_from_slice(&self.bytes[..start]);
                out.extend_from_slice(new_id.as_bytes());
                out.extend_from_slice(&self.bytes[end..]);
                Bytes::from(out)
            }
            // No id in the text (cannot happen for a request or response): re-encode.
            None => {
                let mut v = self.value.clone();
                v["id"] = id.to_value();
                Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
            }
        };
        let mut value = self.value.clone();
        if let Value::Object(map) = &mut value {
            map.insert("id".into(), id.to_value());
        }
        Message {
            bytes,
            value,
            kind: self.kind.clone(),
            id: Some(id.clone()),
        }
    }

    /// [`Message::with_id`] for a message the caller owns: the parsed value is updated in place
    /// instead of cloned (the response path restores the client's id on every message).
    pub fn into_with_id(mut self, id: &Id) -> Message {
        let new_id = id.to_json();
        let Some((start, end)) = top_level_value_span(&self.bytes, "id") else {
            return self.with_id(id);
        };
        let mut out = Vec::with_capacity(self.bytes.len() + new_id.len());
        out.extend_from_slice(&self.bytes[..start]);
        out.extend_from_slice(new_id.as_bytes());
        out.extend_from_slice(&self.bytes[end..]);
        self.bytes = Bytes::from(out);
        if let Value::Object(map) = &mut self.value {
            map.insert("id".into(), id.to_value());
        }
        self.id = Some(id.clone());
        self
    }

    /// Replaces the message with a rewritten value (re-serialised once).
    pub fn rewrite(&self, value: Value) -> Result<Message, DecodeError> {
        Message::from_value(value)
    }
}

fn classify(value: &Value) -> Result<(Kind, Option<Id>), DecodeError> {
    let obj = match value {
        Value::Object(obj) => obj,
        Value::Array(_) => {
            return Err(DecodeError::Invalid {
                reason: "json-rpc batches are not supported",
                id: None,
            });
        }
        _ => {
            return Err(DecodeError::Invalid {
                reason: "message is not an object",
                id: None,
            });
        }
    };
    let raw_id = obj.get("id");
    let id = raw_id.and_then(Id::from_value);
    // The id to echo in an error: only a well-formed one.
    let err_id = id.as_ref().map(Id::to_value);
    let invalid = |reason| DecodeError::Invalid {
        reason,
        id: err_id.clone(),
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(invalid("jsonrpc must be \"2.0\""));
    }
    if let Some(raw) = raw_id
        && id.is_none()
        && !(raw.is_null() && obj.contains_key("error"))
    {
        return Err(invalid("id must be a string or a number"));
    }
    match obj.get("method") {
        Some(Value::String(_)) => {
            if obj.contains_key("result") || obj.contains_key("error") {
                return Err(invalid("a request cannot carry result or error"));
            }
            if let Some(p) = obj.get("params")
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
        None => match (obj.get("result"), obj.get("error")) {
            (Some(_), None) if id.is_some() => Ok((Kind::Response, id)),
            (None, Some(e)) => {
                let ok = e.get("code").is_some_and(|c| c.is_i64() || c.is_u64())
                    && e.get("message").is_some_and(Value::is_string);
                if ok {
                    Ok((Kind::Error, id))
                } else {
                    Err(invalid(
                        "error must have an integer code and a string message",
                    ))
                }
            }
            (Some(_), Some(_)) => Err(invalid("a response cannot carry both result and error")),
            _ => Err(invalid("message has neither method nor result nor error")),
        },
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
                        depth -= 1;
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
                    break;
                }
                j += 1;
            }
            Some(j)
        }
    }
}

#[cfg(test)]
mod tests;
