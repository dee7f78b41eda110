//! Values of the MCP HTTP headers the 2026-07-28 revision mirrors from the body.

use std::borrow::Cow;

use base64::Engine as _;

/// Header carrying the session id of a legacy Streamable HTTP session.
pub const MCP_SESSION_ID: &str = "mcp-session-id";
/// Header carrying the protocol revision.
pub const MCP_PROTOCOL_VERSION: &str = "mcp-protocol-version";
/// Header mirroring the JSON-RPC `method` (2026-07-28).
pub const MCP_METHOD: &str = "mcp-method";
/// Header mirroring `params.name` / `params.uri` (2026-07-28).
pub const MCP_NAME: &str = "mcp-name";
/// Header asking an SSE server to resume after an event id.
pub const LAST_EVENT_ID: &str = "last-event-id";

/// A longer mirrored value is omitted rather than sent (SEP-2243 value encoding, rule 5):
/// servers and proxies commonly cap a header line at 8 KiB.
pub const MAX_MIRRORED_VALUE_BYTES: usize = 8192;

const BASE64_PREFIX: &str = "=?base64?";
const BASE64_SUFFIX: &str = "?=";

/// Encodes a value mirrored into an `Mcp-*` header.
///
/// Plain printable ASCII without leading or trailing blanks is sent as is; anything else
/// (non-ASCII, control characters, leading/trailing space or tab, or text that itself looks
/// like an encoded value) becomes `=?base64?<standard base64>?=`. Returns `None` when the
/// result would exceed [`MAX_MIRRORED_VALUE_BYTES`]; the header must then be omitted.
///
/// ```
/// use warden_upstream::headers::encode_mirrored_value;
/// assert_eq!(encode_mirrored_value("get_weather").as_deref(), Some("get_weather"));
/// assert_eq!(
///     encode_mirrored_value("Hello, 世界").as_deref(),
///     Some("=?base64?SGVsbG8sIOS4lueVjA==?=")
/// );
/// ```
pub fn encode_mirrored_value(value: &str) -> Option<Cow<'_, str>> {
    let encoded = if needs_base64(value) {
        let mut out = String::from(BASE64_PREFIX);
        base64::engine::general_purpose::STANDARD.encode_string(value, &mut out);
        out.push_str(BASE64_SUFFIX);
        Cow::Owned(out)
    } else {
        Cow::Borrowed(value)
    };
    (encoded.len() <= MAX_MIRRORED_VALUE_BYTES).then_some(encoded)
}

fn needs_base64(value: &str) -> bool {
    let blank = |c: Option<u8>| matches!(c, Some(b' ' | b'\t'));
    blank(value.bytes().next())
        || blank(value.bytes().last())
        || value.bytes().any(|b| !(0x20..=0x7e).contains(&b))
        // A literal value shaped like an encoded one would be decoded by the server: encode it
        // so the round trip is exact.
        || (value.starts_with(BASE64_PREFIX) && value.ends_with(BASE64_SUFFIX))
}

/// True for a session id the transport allows: 1 to 1024 visible ASCII characters
/// (0x21..=0x7E). The length bound is ours; it keeps a hostile server from making us echo
/// huge headers.
pub(crate) fn is_valid_session_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 1024 && id.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_ascii_is_sent_as_is() {
        assert_eq!(
            encode_mirrored_value("us-west1").as_deref(),
            Some("us-west1")
        );
        assert_eq!(
            encode_mirrored_value("file:///projects/app/config.json").as_deref(),
            Some("file:///projects/app/config.json")
        );
        assert_eq!(encode_mirrored_value("").as_deref(), Some(""));
    }

    #[test]
    fn encodes_the_spec_examples() {
        assert_eq!(
            encode_mirrored_value("Hello, 世界").as_deref(),
            Some("=?base64?SGVsbG8sIOS4lueVjA==?=")
        );
        assert_eq!(
            encode_mirrored_value(" padded ").as_deref(),
            Some("=?base64?IHBhZGRlZCA=?=")
        );
        assert_eq!(
            encode_mirrored_value("line1\nline2").as_deref(),
            Some("=?base64?bGluZTEKbGluZTI=?=")
        );
    }

    #[test]
    fn encodes_control_characters_tabs_and_lookalikes() {
        for v in [
            "a\tb",
            "\tlead",
            "trail ",
            "nul\0",
            "del\x7f",
            "cr\r",
            "=?base64?eA==?=",
        ] {
            let got = encode_mirrored_value(v).expect("short");
            assert!(got.starts_with("=?base64?") && got.ends_with("?="), "{v:?}");
            let inner = &got["=?base64?".len()..got.len() - 2];
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(inner)
                .expect("valid base64");
            assert_eq!(decoded, v.as_bytes());
        }
    }

    #[test]
    fn encoded_values_are_always_valid_header_values() {
        for v in ["ü", "a\r\nInjected: 1", "x\u{2028}y", "tools/call"] {
            let got = encode_mirrored_value(v).expect("short");
            assert!(http::HeaderValue::from_str(&got).is_ok(), "{v:?}");
            assert!(!got.contains('\n') && !got.contains('\r'));
        }
    }

    #[test]
    fn omits_values_over_the_limit() {
        let ascii = "a".repeat(MAX_MIRRORED_VALUE_BYTES);
        assert!(encode_mirrored_value(&ascii).is_some());
        assert!(encode_mirrored_value(&format!("{ascii}a")).is_none());
        // Base64 grows the value by a third: 7000 non-ASCII bytes no longer fit.
        assert!(encode_mirrored_value(&"é".repeat(3500)).is_none());
    }

    #[test]
    fn validates_session_ids() {
        assert!(is_valid_session_id("1f3a4b5c-6d7e"));
        assert!(!is_valid_session_id(""));
        assert!(!is_valid_session_id("has space"));
        assert!(!is_valid_session_id("ü"));
        assert!(!is_valid_session_id(&"a".repeat(1025)));
    }
}
