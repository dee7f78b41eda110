//! Decoding errors and the JSON-RPC error codes the gateway emits.

use serde_json::{Value, json};

/// JSON-RPC and MCP error codes used by the gateway.
///
/// MCP reserves `-32020..=-32099` for itself; the gateway emits only the codes defined there and
/// keeps its own codes outside `-32768..=-32000`, so a local error is never mistaken for a
/// peer's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i64)]
pub enum ErrorCode {
    /// Invalid JSON was received.
    ParseError = -32700,
    /// The JSON sent is not a valid request object.
    InvalidRequest = -32600,
    /// The method does not exist or is not available.
    MethodNotFound = -32601,
    /// Invalid method parameters.
    InvalidParams = -32602,
    /// Internal error (of the gateway or an upstream it reports for).
    InternalError = -32603,
    /// HTTP headers disagree with the body (2026-07-28).
    HeaderMismatch = -32020,
    /// The server needs a client capability the request did not declare (2026-07-28).
    MissingRequiredClientCapability = -32021,
    /// The requested protocol version is not supported (2026-07-28).
    UnsupportedProtocolVersion = -32022,
    /// The upstream serving this request failed or is unreachable (gateway-specific).
    UpstreamUnavailable = -31001,
    /// The upstream did not answer in time (gateway-specific).
    UpstreamTimeout = -31002,
    /// The request was refused by the gateway's policy (gateway-specific).
    Denied = -31003,
    /// Too many requests (gateway-specific).
    RateLimited = -31004,
}

impl ErrorCode {
    /// The numeric code.
    pub fn code(self) -> i64 {
        self as i64
    }
}

/// Why bytes could not be decoded into a JSON-RPC message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are not valid JSON (or not valid UTF-8).
    #[error("invalid json at line {line} column {column}: {detail}")]
    Syntax {
        /// The parser's explanation.
        detail: String,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
    },
    /// An object repeats a key.
    #[error("duplicate object key {key}")]
    DuplicateKey {
        /// The repeated key, quoted.
        key: String,
    },
    /// Arrays and objects nest deeper than allowed.
    #[error("json nesting exceeds the depth limit")]
    TooDeep,
    /// The message exceeds the size limit.
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Size of the message.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// Valid JSON that is not a JSON-RPC 2.0 message.
    #[error("invalid json-rpc message: {reason}")]
    Invalid {
        /// What is wrong.
        reason: &'static str,
        /// The id, when the message had a usable one.
        id: Option<Value>,
    },
}

impl DecodeError {
    /// The JSON-RPC error code the peer should receive for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::Syntax { .. } | DecodeError::DuplicateKey { .. } => ErrorCode::ParseError,
            DecodeError::TooDeep | DecodeError::TooLarge { .. } | DecodeError::Invalid { .. } => {
                ErrorCode::InvalidRequest
            }
        }
    }

    /// The JSON-RPC error response for this error (id `null` unless one could be recovered).
    pub fn to_response(&self) -> Value {
        let id = match self {
            DecodeError::Invalid { id: Some(id), .. } => id.clone(),
            _ => Value::Null,
        };
        error_response(&id, self.code(), &self.to_string(), None)
    }

    /// [`DecodeError::to_response`] for the refused `text`: a request refused for its size or
    /// depth is answered with its id when the start of `text` names one
    /// ([`recover_request_id`](crate::jsonrpc::recover_request_id)), so the client's call
    /// fails at once instead of waiting for an answer. Errors in the JSON itself (syntax,
    /// duplicate keys, invalid UTF-8) keep the null id JSON-RPC asks for.
    pub fn to_response_for(&self, text: &[u8]) -> Value {
        let mut response = self.to_response();
        if matches!(self, DecodeError::TooLarge { .. } | DecodeError::TooDeep)
            && response["id"].is_null()
            && let Some(id) = crate::jsonrpc::recover_request_id(text)
        {
            response["id"] = id.to_value();
        }
        response
    }
}

/// Builds a JSON-RPC error response.
///
/// ```
/// use warden_proto::{error::error_response, ErrorCode};
/// let v = error_response(&1.into(), ErrorCode::MethodNotFound, "method not found", None);
/// assert_eq!(v["error"]["code"], -32601);
/// ```
pub fn error_response(id: &Value, code: ErrorCode, message: &str, data: Option<Value>) -> Value {
    let mut error = json!({ "code": code.code(), "message": message });
    if let Some(data) = data {
        error["data"] = data;
    }
    json!({ "jsonrpc": "2.0", "id": id, "error": error })
}
