//! Translation between the protocol eras, for a client of one era and an upstream of the other.
//!
//! Legacy (initialize-based) and modern (stateless, 2026-07-28) servers describe themselves
//! differently: an `InitializeResult` once per session, or a `DiscoverResult` on demand plus
//! per-request `_meta`. These pure functions convert one description into the other and adapt
//! individual requests and results. Nothing here performs I/O.

use serde_json::{Map, Value, json};
use warden_proto::mcp::{
    LEGACY_VERSIONS, META_CLIENT_CAPABILITIES, META_CLIENT_INFO, META_PROTOCOL_VERSION,
    META_SERVER_INFO, MODERN_VERSIONS, V_2025_11_25, V_2026_07_28,
};

/// What a server said about itself, in either era.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerDescription {
    /// Era of the server.
    pub era: warden_proto::mcp::Era,
    /// The negotiated (legacy) or newest supported (modern) revision.
    pub protocol_version: String,
    /// Every revision the server declared (modern), or the negotiated one (legacy).
    pub supported_versions: Vec<String>,
    /// Server capabilities.
    pub capabilities: Value,
    /// `serverInfo` (self-reported).
    pub server_info: Value,
    /// Server instructions, if any.
    pub instructions: Option<String>,
}

impl ServerDescription {
    /// True when the server speaks revisions of `era`: its own era, or a dual-era server
    /// whose `DiscoverResult` also lists initialize-based revisions.
    pub fn supports(&self, era: warden_proto::mcp::Era) -> bool {
        self.era == era
            || self
                .supported_versions
                .iter()
                .any(|v| warden_proto::mcp::Era::of(v) == Some(era))
    }

    /// Reads an `InitializeResult`.
    pub fn from_initialize(result: &Value) -> Option<Self> {
        let version = result.get("protocolVersion")?.as_str()?.to_owned();
        Some(Self {
            era: warden_proto::mcp::Era::Legacy,
            supported_versions: vec![version.clone()],
            protocol_version: version,
            capabilities: result
                .get("capabilities")
                .cloned()
                .unwrap_or_else(|| json!({})),
            server_info: result
                .get("serverInfo")
                .cloned()
                .unwrap_or_else(|| json!({})),
            instructions: result
                .get("instructions")
                .and_then(Value::as_str)
                .map(str::to_owned),
        })
    }

    /// Reads a `DiscoverResult`.
    pub fn from_discover(result: &Value) -> Option<Self> {
        let supported: Vec<String> = result
            .get("supportedVersions")?
            .as_array()?
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        let newest_modern = supported
            .iter()
            .find(|v| MODERN_VERSIONS.contains(&v.as_str()))
            .cloned()
            .or_else(|| supported.first().cloned())?;
        let server_info = result
            .get("_meta")
            .and_then(|m| m.get(META_SERVER_INFO))
            .or_else(|| result.get("serverInfo"))
            .cloned()
            .unwrap_or_else(|| json!({}));
        Some(Self {
            era: warden_proto::mcp::Era::Modern,
            protocol_version: newest_modern,
            supported_versions: supported,
            capabilities: result
                .get("capabilities")
                .cloned()
                .unwrap_or_else(|| json!({})),
            server_info,
            instructions: result
                .get("instructions")
                .and_then(Value::as_str)
                .map(str::to_owned),
        })
    }

    /// An `InitializeResult` for a legacy client that asked for `requested`.
    pub fn to_initialize_result(&self, requested: Option<&str>) -> Value {
        let mut out = json!({
            "protocolVersion": negotiate_legacy(requested),
            "capabilities": self.capabilities,
            "serverInfo": self.server_info,
        });
        if let Some(i) = &self.instructions {
            out["instructions"] = Value::String(i.clone());
        }
        out
    }

    /// A `DiscoverResult` for a modern client.
    pub fn to_discover_result(&self) -> Value {
        let mut out = json!({
            "supportedVersions": MODERN_VERSIONS,
            "capabilities": self.capabilities,
            "_meta": { META_SERVER_INFO: self.server_info },
        });
        if let Some(i) = &self.instructions {
            out["instructions"] = Value::String(i.clone());
        }
        complete_modern_result("server/discover", &mut out);
        out
    }
}

/// The legacy revision to answer a client that asked for `requested`: the same one when the
/// gateway speaks it, otherwise the newest legacy revision (the client may then disconnect).
pub fn negotiate_legacy(requested: Option<&str>) -> &'static str {
    match requested {
        Some(v) => LEGACY_VERSIONS
            .iter()
            .find(|known| **known == v)
            .copied()
            .unwrap_or(V_2025_11_25),
        None => V_2025_11_25,
    }
}

/// Methods whose modern results carry cache hints.
const CACHEABLE: &[&str] = &[
    "server/discover",
    "tools/list",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
    "resources/read",
];

/// Adds the fields a 2026-07-28 result requires when a legacy upstream's result lacks them:
/// `resultType` (absent means complete) and, for list and read results, `ttlMs: 0` with
/// `cacheScope: "private"` (the most conservative hints: never cached, never shared).
pub fn complete_modern_result(method: &str, result: &mut Value) {
    if let Value::Object(map) = result {
        map.entry("resultType")
            .or_insert_with(|| Value::String("complete".into()));
        if CACHEABLE.contains(&method) {
            map.entry("ttlMs").or_insert_with(|| json!(0));
            map.entry("cacheScope")
                .or_insert_with(|| Value::String("private".into()));
        }
    }
}

/// Adds the per-request `_meta` a modern upstream needs to a request from a legacy client,
/// from what that client declared in `initialize`.
pub fn add_modern_meta(
    params: &mut Map<String, Value>,
    capabilities: Option<&Value>,
    client_info: Option<&Value>,
) {
    let meta = params
        .entry("_meta")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(meta) = meta {
        meta.insert(
            META_PROTOCOL_VERSION.into(),
            Value::String(V_2026_07_28.into()),
        );
        meta.entry(META_CLIENT_CAPABILITIES)
            .or_insert_with(|| capabilities.cloned().unwrap_or_else(|| json!({})));
        meta.entry(META_CLIENT_INFO).or_insert_with(|| {
            client_info.cloned().unwrap_or_else(
                || json!({"name": "mcp-warden", "version": env!("CARGO_PKG_VERSION")}),
            )
        });
    }
}

/// Removes the per-request protocol keys of a 2026-07-28 request (its revision, the client's
/// capabilities, info and log level) before it goes to a legacy upstream; other `_meta` keys
/// (progress tokens, vendor keys, trace context) stay. An emptied `_meta` is removed.
pub fn strip_modern_meta(params: &mut Map<String, Value>) {
    let emptied = match params.get_mut("_meta") {
        Some(Value::Object(meta)) => {
            for key in [
                META_PROTOCOL_VERSION,
                META_CLIENT_CAPABILITIES,
                META_CLIENT_INFO,
                warden_proto::mcp::META_LOG_LEVEL,
            ] {
                meta.remove(key);
            }
            meta.is_empty()
        }
        _ => false,
    };
    if emptied {
        params.remove("_meta");
    }
}

/// The `initialize` params the gateway sends to a legacy upstream on behalf of a client.
pub fn initialize_params(capabilities: Option<&Value>, client_info: Option<&Value>) -> Value {
    json!({
        "protocolVersion": V_2025_11_25,
        "capabilities": capabilities.cloned().unwrap_or_else(|| json!({})),
        "clientInfo": client_info.cloned().unwrap_or_else(|| json!({"name": "mcp-warden", "version": env!("CARGO_PKG_VERSION")})),
    })
}

/// The `server/discover` probe the gateway sends to learn an upstream's era.
pub fn discover_params() -> Value {
    json!({
        "_meta": {
            META_PROTOCOL_VERSION: V_2026_07_28,
            META_CLIENT_CAPABILITIES: {},
            META_CLIENT_INFO: {"name": "mcp-warden", "version": env!("CARGO_PKG_VERSION")},
        }
    })
}

/// True when a `server/discover` error proves the server is modern (it recognised the
/// request's revision and named what it supports), so the gateway must not fall back.
pub fn is_modern_error(error: &Value) -> bool {
    let code = error.get("code").and_then(Value::as_i64);
    matches!(code, Some(-32022) | Some(-32020) | Some(-32021))
        && error
            .get("data")
            .and_then(|d| d.get("supported"))
            .is_some_and(|s| {
                s.as_array().is_some_and(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .any(|v| MODERN_VERSIONS.contains(&v))
                })
            })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initialize_result_becomes_discover_result() {
        let init = json!({
            "protocolVersion": "2025-06-18",
            "capabilities": {"tools": {"listChanged": true}},
            "serverInfo": {"name": "fs", "version": "1"},
            "instructions": "use me",
        });
        let d = ServerDescription::from_initialize(&init).unwrap();
        let out = d.to_discover_result();
        assert_eq!(out["supportedVersions"], json!(["2026-07-28"]));
        assert_eq!(out["capabilities"]["tools"]["listChanged"], true);
        assert_eq!(out["_meta"][META_SERVER_INFO]["name"], "fs");
        assert_eq!(out["resultType"], "complete");
        assert_eq!(out["ttlMs"], 0);
        assert_eq!(out["cacheScope"], "private");
        assert_eq!(out["instructions"], "use me");
    }

    #[test]
    fn discover_result_becomes_initialize_result() {
        let disc = json!({
            "supportedVersions": ["2026-07-28"],
            "capabilities": {"prompts": {}},
            "_meta": {META_SERVER_INFO: {"name": "m", "version": "2"}},
            "resultType": "complete", "ttlMs": 0, "cacheScope": "private",
        });
        let d = ServerDescription::from_discover(&disc).unwrap();
        let init = d.to_initialize_result(Some("2025-06-18"));
        assert_eq!(init["protocolVersion"], "2025-06-18");
        assert_eq!(init["serverInfo"]["name"], "m");
        assert_eq!(init["capabilities"], json!({"prompts": {}}));
        let init = d.to_initialize_result(Some("2031-01-01"));
        assert_eq!(init["protocolVersion"], V_2025_11_25);
    }

    #[test]
    fn completes_modern_results_without_overwriting() {
        let mut r = json!({"tools": [], "ttlMs": 500});
        complete_modern_result("tools/list", &mut r);
        assert_eq!(r["ttlMs"], 500);
        assert_eq!(r["cacheScope"], "private");
        assert_eq!(r["resultType"], "complete");
        let mut r = json!({"content": []});
        complete_modern_result("tools/call", &mut r);
        assert!(r.get("ttlMs").is_none());
    }

    #[test]
    fn modern_meta_is_added_without_dropping_vendor_keys() {
        let mut p = json!({"name": "x", "_meta": {"vendor/key": 1}});
        add_modern_meta(
            p.as_object_mut().unwrap(),
            Some(&json!({"sampling": {}})),
            None,
        );
        assert_eq!(p["_meta"]["vendor/key"], 1);
        assert_eq!(p["_meta"][META_PROTOCOL_VERSION], V_2026_07_28);
        assert_eq!(
            p["_meta"][META_CLIENT_CAPABILITIES],
            json!({"sampling": {}})
        );
    }

    #[test]
    fn modern_meta_is_stripped_for_legacy_upstreams_keeping_other_keys() {
        let mut p = json!({"name": "x", "_meta": {META_PROTOCOL_VERSION: "2026-07-28", META_CLIENT_CAPABILITIES: {}, "progressToken": 3}});
        strip_modern_meta(p.as_object_mut().unwrap());
        assert_eq!(p["_meta"], json!({"progressToken": 3}));
        let mut p = json!({"_meta": {META_PROTOCOL_VERSION: "2026-07-28"}});
        strip_modern_meta(p.as_object_mut().unwrap());
        assert_eq!(p, json!({}));
    }

    #[test]
    fn only_a_recognised_modern_error_counts_as_modern() {
        assert!(is_modern_error(
            &json!({"code": -32022, "message": "x", "data": {"supported": ["2026-07-28"], "requested": "x"}})
        ));
        assert!(!is_modern_error(
            &json!({"code": -32601, "message": "method not found"})
        ));
        assert!(!is_modern_error(&json!({"code": -32022, "message": "x"})));
    }
}
