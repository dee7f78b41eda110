//! Request header parsing: media types, `Accept`, and the 2026-07-28 header–body validation
//! (`MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`).
//!
//! The body is the source of truth. A header that is missing, repeated, not decodable or
//! different from the body is a `-32020` HeaderMismatch: an intermediary that routed on the
//! header would otherwise act on a value the server never sees.

use std::borrow::Cow;

use base64::Engine as _;
use http::{HeaderMap, HeaderName, StatusCode};
use serde_json::{Value, json};
use warden_proto::mcp::{self, Era, MODERN_VERSIONS};
use warden_proto::{ErrorCode, Message};

use super::body::Rejection;

/// `MCP-Protocol-Version`.
pub(crate) static PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");
/// `Mcp-Session-Id`.
pub(crate) static SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
/// `Mcp-Method`.
pub(crate) static METHOD: HeaderName = HeaderName::from_static("mcp-method");
/// `Mcp-Name`.
pub(crate) static NAME: HeaderName = HeaderName::from_static("mcp-name");
/// `Last-Event-ID`.
pub(crate) static LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");

/// A header that is present more than once or is not visible ASCII.
#[derive(Debug)]
pub(crate) struct BadHeader;

/// The single value of `name`, with optional whitespace trimmed (RFC 9110 §5.5).
pub(crate) fn single<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'a str>, BadHeader> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(BadHeader);
    }
    let text = first.to_str().map_err(|_| BadHeader)?;
    Ok(Some(text.trim_matches([' ', '\t'])))
}

/// True when `Content-Type` is `application/json` (parameters such as `charset` ignored).
pub(crate) fn is_json_content(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    media_type(value).eq_ignore_ascii_case("application/json")
}

fn media_type(value: &str) -> &str {
    value.split(';').next().unwrap_or("").trim()
}

/// What the client's `Accept` header allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Accepts {
    /// `application/json`.
    pub(crate) json: bool,
    /// `text/event-stream`.
    pub(crate) sse: bool,
}

impl Accepts {
    /// Reads every `Accept` header; no header means anything is acceptable. Wildcards count;
    /// a range with `q=0` is refused.
    pub(crate) fn parse(headers: &HeaderMap) -> Self {
        let mut values = headers.get_all(http::header::ACCEPT).iter().peekable();
        if values.peek().is_none() {
            return Self {
                json: true,
                sse: true,
            };
        }
        let mut out = Self {
            json: false,
            sse: false,
        };
        for value in values {
            let Ok(value) = value.to_str() else { continue };
            for range in value.split(',') {
                let mut parts = range.split(';');
                let kind = parts.next().unwrap_or("").trim().to_ascii_lowercase();
                let refused = parts.any(|p| {
                    let p = p.trim();
                    p.strip_prefix("q=")
                        .or_else(|| p.strip_prefix("Q="))
                        .and_then(|q| q.trim().parse::<f32>().ok())
                        .is_some_and(|q| q <= 0.0)
                });
                if refused {
                    continue;
                }
                match kind.as_str() {
                    "*/*" => {
                        out.json = true;
                        out.sse = true;
                    }
                    "application/*" | "application/json" => out.json = true,
                    "text/*" | "text/event-stream" => out.sse = true,
                    _ => {}
                }
            }
        }
        out
    }
}

/// Decodes the `=?base64?…?=` form of a header value (SEP-2243 value encoding); any other value
/// is literal, including one whose markers are not exactly the lowercase `=?base64?` and `?=`
/// ("These markers are case-sensitive"). `None` when the base64 is invalid (alphabet, padding,
/// non-zero trailing bits) or not UTF-8.
pub(crate) fn decode_value(value: &str) -> Option<Cow<'_, str>> {
    const PREFIX: &str = "=?base64?";
    const SUFFIX: &str = "?=";
    let encoded = value
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.strip_suffix(SUFFIX));
    let Some(encoded) = encoded else {
        return Some(Cow::Borrowed(value));
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    String::from_utf8(bytes).ok().map(Cow::Owned)
}

/// The era the `MCP-Protocol-Version` header names, if it names a known revision.
pub(crate) fn header_era(headers: &HeaderMap) -> Option<Era> {
    single(headers, &PROTOCOL_VERSION)
        .ok()
        .flatten()
        .and_then(Era::of)
}

/// Validates a stateless (2026-07-28) request's headers against its body.
///
/// Order: header present, required `_meta` present, header equals `_meta`, version supported,
/// `Mcp-Method`, `Mcp-Name`. The first two match the order the conformance suite's own
/// reference server uses, so a request with several faults gets the same code from both.
pub(crate) fn check_modern(headers: &HeaderMap, message: &Message) -> Result<(), Rejection> {
    let mismatch = |what: &'static str| {
        Rejection::new(StatusCode::BAD_REQUEST, ErrorCode::HeaderMismatch, what)
    };
    let header_version = match single(headers, &PROTOCOL_VERSION) {
        Ok(Some(v)) => v,
        Ok(None) => return Err(mismatch("missing MCP-Protocol-Version header")),
        Err(BadHeader) => return Err(mismatch("invalid MCP-Protocol-Version header")),
    };
    let meta = mcp::meta(message);
    let declared = meta
        .and_then(|m| m.get(mcp::META_PROTOCOL_VERSION))
        .and_then(Value::as_str);
    let has_capabilities = meta
        .and_then(|m| m.get(mcp::META_CLIENT_CAPABILITIES))
        .is_some_and(Value::is_object);
    let Some(declared) = declared else {
        return Err(invalid_params(
            "missing _meta[\"io.modelcontextprotocol/protocolVersion\"]",
        ));
    };
    if !has_capabilities {
        return Err(invalid_params(
            "missing _meta[\"io.modelcontextprotocol/clientCapabilities\"]",
        ));
    }
    if header_version != declared {
        return Err(mismatch(
            "MCP-Protocol-Version header does not match _meta protocolVersion",
        ));
    }
    if Era::of(declared) != Some(Era::Modern) {
        return Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::UnsupportedProtocolVersion,
            "unsupported protocol version",
        )
        .with_data(json!({ "supported": MODERN_VERSIONS, "requested": declared })));
    }
    let method = message.method().unwrap_or_default();
    match single(headers, &METHOD) {
        Ok(Some(v)) if decode_value(v).as_deref() == Some(method) => {}
        Ok(Some(_)) => return Err(mismatch("Mcp-Method header does not match the body")),
        Ok(None) => return Err(mismatch("missing Mcp-Method header")),
        Err(BadHeader) => return Err(mismatch("invalid Mcp-Method header")),
    }
    if mcp::is_named_call(method) {
        let body_name = mcp::header_name(message);
        let header = single(headers, &NAME).map_err(|_| mismatch("invalid Mcp-Name header"))?;
        match (header, body_name) {
            (None, None) => {}
            (None, Some(_)) => return Err(mismatch("missing Mcp-Name header")),
            (Some(v), body) => match decode_value(v) {
                None => return Err(mismatch("invalid Mcp-Name header encoding")),
                Some(decoded) if Some(decoded.as_ref()) == body => {}
                Some(_) => return Err(mismatch("Mcp-Name header does not match the body")),
            },
        }
    }
    Ok(())
}

fn invalid_params(what: &'static str) -> Rejection {
    Rejection::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidParams, what)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn accepts(v: &str) -> Accepts {
        let mut h = HeaderMap::new();
        h.insert(http::header::ACCEPT, HeaderValue::from_str(v).unwrap());
        Accepts::parse(&h)
    }

    #[test]
    fn parses_accept_ranges() {
        assert_eq!(
            accepts("application/json, text/event-stream"),
            Accepts {
                json: true,
                sse: true
            }
        );
        assert_eq!(
            accepts("text/event-stream"),
            Accepts {
                json: false,
                sse: true
            }
        );
        assert_eq!(
            accepts("*/*;q=0.8"),
            Accepts {
                json: true,
                sse: true
            }
        );
        assert_eq!(
            accepts("application/json, text/event-stream;q=0"),
            Accepts {
                json: true,
                sse: false
            }
        );
        assert_eq!(
            accepts("text/html"),
            Accepts {
                json: false,
                sse: false
            }
        );
        assert!(Accepts::parse(&HeaderMap::new()).json);
    }

    #[test]
    fn decodes_base64_header_values() {
        assert_eq!(
            decode_value("=?base64?SGVsbG8=?=").as_deref(),
            Some("Hello")
        );
        // The markers are case-sensitive: anything else is a literal value.
        assert_eq!(
            decode_value("=?BASE64?SGVsbG8=?=").as_deref(),
            Some("=?BASE64?SGVsbG8=?=")
        );
        assert_eq!(decode_value("=?base64??=").as_deref(), Some(""));
        // "=?base64?=" overlaps prefix and suffix: not wrapped, literal.
        assert_eq!(decode_value("=?base64?=").as_deref(), Some("=?base64?="));
        assert_eq!(decode_value("=?base64?SGVsbG8?="), None, "padding required");
        assert_eq!(decode_value("=?base64?SGVs!!!bG8=?="), None);
        assert_eq!(
            decode_value("=?base64?SGVsbG8="),
            Some("=?base64?SGVsbG8=".into())
        );
        assert_eq!(decode_value("SGVsbG8="), Some("SGVsbG8=".into()));
        assert_eq!(decode_value("=?base64?/w==?="), None, "not utf-8");
    }

    #[test]
    fn content_type_ignores_parameters() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("Application/JSON; charset=utf-8"),
        );
        assert!(is_json_content(&h));
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain"),
        );
        assert!(!is_json_content(&h));
    }
}
