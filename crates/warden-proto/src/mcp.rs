//! MCP-specific views on JSON-RPC messages: protocol revisions, eras, `_meta` keys and the
//! method/name pairs that the 2026-07-28 HTTP headers mirror.

use serde_json::Value;

use crate::jsonrpc::Message;
use crate::lookup::Field;

/// `_meta` key carrying the protocol revision of a stateless (2026-07-28) request.
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// `_meta` key carrying the client's capabilities on a stateless request.
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// `_meta` key carrying the client's self-description on a stateless request.
pub const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
/// `_meta` key carrying the server's self-description in a stateless result.
pub const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
/// `_meta` key correlating subscription notifications with their `subscriptions/listen`.
pub const META_SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";
/// `_meta` key carrying the requested log level on a stateless request.
pub const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";

/// The stateless revision.
pub const V_2026_07_28: &str = "2026-07-28";
/// The last initialize-based revision.
pub const V_2025_11_25: &str = "2025-11-25";
/// Initialize-based revision with structured output and elicitation.
pub const V_2025_06_18: &str = "2025-06-18";
/// The first Streamable HTTP revision (assumed when an HTTP client sends no version header).
pub const V_2025_03_26: &str = "2025-03-26";
/// The HTTP+SSE revision; accepted on stdio only.
pub const V_2024_11_05: &str = "2024-11-05";

/// Initialize-based revisions the gateway speaks, newest first.
pub const LEGACY_VERSIONS: &[&str] = &[V_2025_11_25, V_2025_06_18, V_2025_03_26, V_2024_11_05];
/// Stateless revisions the gateway speaks, newest first.
pub const MODERN_VERSIONS: &[&str] = &[V_2026_07_28];

/// Which handshake family a revision belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Era {
    /// `initialize`-based revisions (2024-11-05 .. 2025-11-25): sessions, server-to-client
    /// requests, GET streams.
    Legacy,
    /// Stateless revisions (2026-07-28 and later): per-request `_meta`, `server/discover`.
    Modern,
}

impl Era {
    /// The era of a revision string, `None` if the gateway does not know it.
    pub fn of(version: &str) -> Option<Era> {
        if LEGACY_VERSIONS.contains(&version) {
            Some(Era::Legacy)
        } else if MODERN_VERSIONS.contains(&version) {
            Some(Era::Modern)
        } else {
            None
        }
    }
}

/// Every revision the gateway accepts.
pub fn supported_versions() -> impl Iterator<Item = &'static str> {
    MODERN_VERSIONS.iter().chain(LEGACY_VERSIONS).copied()
}

/// The request's `params._meta`, if any.
pub fn meta(message: &Message) -> Option<&serde_json::Map<String, Value>> {
    message.params()?.field("_meta")?.as_object()
}

/// The protocol revision a stateless request declares in its `_meta`.
pub fn declared_version(message: &Message) -> Option<&str> {
    meta(message)?.field(META_PROTOCOL_VERSION)?.as_str()
}

/// The value the `Mcp-Name` header mirrors: `params.name` for `tools/call` and `prompts/get`,
/// `params.uri` for `resources/read`; `None` for other methods.
pub fn header_name(message: &Message) -> Option<&str> {
    let key = match message.method()? {
        "tools/call" | "prompts/get" => "name",
        "resources/read" => "uri",
        _ => return None,
    };
    message.params()?.get(key)?.as_str()
}

/// Methods a client may send that the gateway routes to one upstream by a name in `params`.
pub fn is_named_call(method: &str) -> bool {
    matches!(method, "tools/call" | "prompts/get" | "resources/read")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Limits, decode};

    #[test]
    fn reads_meta_version_and_header_name() {
        let m = decode(
            bytes::Bytes::from_static(
                br#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"test://x","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
            ),
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(declared_version(&m), Some(V_2026_07_28));
        assert_eq!(header_name(&m), Some("test://x"));
        assert_eq!(Era::of("2025-06-18"), Some(Era::Legacy));
        assert_eq!(Era::of("2099-01-01"), None);
    }
}
