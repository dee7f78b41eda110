//! `x-mcp-header` annotations (2026-07-28, SEP-2243): which tool arguments a Streamable HTTP
//! client mirrors into `Mcp-Param-{Name}` headers.
//!
//! The gateway learns them from the `inputSchema` of every tool an upstream lists, and the HTTP
//! face asks for them ([`Handler::param_headers`](crate::Handler::param_headers)) to check a
//! `tools/call`'s headers against its body. The rules are the transport specification's
//! (`basic/transports/streamable-http.mdx`, "Schema Extension"): the name is a non-empty RFC 9110
//! token, unique case-insensitively within the schema, on a `string`, `integer` or `boolean`
//! property reachable from the root through `properties` keys only. A schema that breaks any of
//! them is invalid as a whole: conforming clients drop such a tool, and the gateway records no
//! mapping for it (its `Mcp-Param-*` headers are then neither trusted nor forwarded).
//!
//! The walk mirrors the reference SDK's (TypeScript `scanXMcpHeaderDeclarations`), so the
//! gateway and its clients agree on which tools are valid and which headers they carry.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};

/// The schema-extension key.
pub const X_MCP_HEADER: &str = "x-mcp-header";

/// Deepest schema nesting walked; deeper schemas are refused rather than risking the stack on
/// what a peer sent.
const MAX_SCHEMA_DEPTH: usize = 64;

/// Keywords whose subschemas are not statically reachable: an annotation under any of them
/// makes the schema invalid (the chain must consist of `properties` keys only).
const UNREACHABLE_KEYWORDS: &[&str] = &[
    "items",
    "prefixItems",
    "contains",
    "additionalProperties",
    "unevaluatedProperties",
    "unevaluatedItems",
    "propertyNames",
    "patternProperties",
    "dependentSchemas",
    "oneOf",
    "anyOf",
    "allOf",
    "not",
    "if",
    "then",
    "else",
    "$defs",
    "definitions",
];

/// Keywords among [`UNREACHABLE_KEYWORDS`] whose value maps names to subschemas.
const NAMED_SUBSCHEMA_KEYWORDS: &[&str] = &[
    "patternProperties",
    "dependentSchemas",
    "$defs",
    "definitions",
];

/// One argument a client mirrors into a header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamHeader {
    /// The `{Name}` of `Mcp-Param-{Name}`, as the tool declared it (an RFC 9110 token; header
    /// names compare case-insensitively).
    pub header: String,
    /// Property names from `arguments` down to the value: one element for a top-level
    /// property, more for a nested one.
    pub path: Vec<String>,
}

/// Why a tool's `x-mcp-header` annotations are invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnnotationError {
    /// On the root, or under a keyword other than `properties` (`items`, `oneOf`, `$defs`, ...).
    #[error("x-mcp-header at `{path}` is not reachable through `properties` keys only")]
    Unreachable {
        /// Where it was found.
        path: String,
    },
    /// Not a string, or empty.
    #[error("x-mcp-header at `{path}` is not a non-empty string")]
    NotString {
        /// Where it was found.
        path: String,
    },
    /// Not an RFC 9110 token (spaces, colons, control characters, non-ASCII, ...).
    #[error("x-mcp-header {header:?} at `{path}` is not an RFC 9110 token")]
    NotToken {
        /// The value.
        header: String,
        /// Where it was found.
        path: String,
    },
    /// On a property whose `type` is not `string`, `integer` or `boolean`.
    #[error("x-mcp-header {header:?} at `{path}` is on a property of type {kind}")]
    NotPrimitive {
        /// The value.
        header: String,
        /// Where it was found.
        path: String,
        /// The property's `type` (`"<none>"` when missing or not a single string).
        kind: String,
    },
    /// The same name twice, ignoring case.
    #[error("x-mcp-header {header:?} is declared twice (names are case-insensitive)")]
    Duplicate {
        /// The second declaration.
        header: String,
    },
    /// Nested deeper than the walk goes.
    #[error("inputSchema is nested deeper than {MAX_SCHEMA_DEPTH} levels")]
    TooDeep,
}

/// True for an RFC 9110 `token` (`1*tchar`).
///
/// ```
/// use warden_session::params::is_token;
/// assert!(is_token("Region"));
/// assert!(!is_token("My Region"));
/// assert!(!is_token(""));
/// ```
pub fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// The `x-mcp-header` annotations of one tool's `inputSchema`, in schema order; empty when it
/// has none.
///
/// ```
/// use serde_json::json;
/// use warden_session::params::param_headers;
/// let schema = json!({"type": "object", "properties": {
///     "region": {"type": "string", "x-mcp-header": "Region"}}});
/// let found = param_headers(&schema).unwrap();
/// assert_eq!(found[0].header, "Region");
/// assert_eq!(found[0].path, ["region"]);
/// ```
pub fn param_headers(input_schema: &Value) -> Result<Vec<ParamHeader>, AnnotationError> {
    let mut walk = Walk::default();
    walk.visit(input_schema, &mut Vec::new(), true)?;
    Ok(walk.found)
}

#[derive(Default)]
struct Walk {
    found: Vec<ParamHeader>,
    /// Lower-cased names seen so far.
    seen: std::collections::HashSet<String>,
}

impl Walk {
    fn visit(
        &mut self,
        node: &Value,
        path: &mut Vec<String>,
        reachable: bool,
    ) -> Result<(), AnnotationError> {
        let Value::Object(schema) = node else {
            return Ok(());
        };
        if path.len() > MAX_SCHEMA_DEPTH {
            return Err(AnnotationError::TooDeep);
        }
        if let Some(raw) = schema.get(X_MCP_HEADER) {
            self.annotation(schema, raw, path, reachable)?;
        }
        if let Some(Value::Object(properties)) = schema.get("properties") {
            for (key, child) in properties {
                path.push(key.clone());
                let result = self.visit(child, path, reachable);
                path.pop();
                result?;
            }
        }
        for keyword in UNREACHABLE_KEYWORDS {
            let Some(sub) = schema.get(*keyword) else {
                continue;
            };
            path.push(format!("<{keyword}>"));
            let result = match sub {
                Value::Array(branches) => {
                    branches.iter().try_for_each(|b| self.visit(b, path, false))
                }
                Value::Object(named) if NAMED_SUBSCHEMA_KEYWORDS.contains(keyword) => {
                    named.values().try_for_each(|b| self.visit(b, path, false))
                }
                other => self.visit(other, path, false),
            };
            path.pop();
            result?;
        }
        Ok(())
    }

    fn annotation(
        &mut self,
        schema: &Map<String, Value>,
        raw: &Value,
        path: &[String],
        reachable: bool,
    ) -> Result<(), AnnotationError> {
        let at = || {
            if path.is_empty() {
                "<root>".to_owned()
            } else {
                path.join(".")
            }
        };
        if !reachable || path.is_empty() {
            return Err(AnnotationError::Unreachable { path: at() });
        }
        let header = match raw {
            Value::String(s) if !s.is_empty() => s,
            _ => return Err(AnnotationError::NotString { path: at() }),
        };
        if !is_token(header) {
            return Err(AnnotationError::NotToken {
                header: header.clone(),
                path: at(),
            });
        }
        let kind = schema.get("type").and_then(Value::as_str);
        if !matches!(kind, Some("string" | "integer" | "boolean")) {
            return Err(AnnotationError::NotPrimitive {
                header: header.clone(),
                path: at(),
                kind: kind.unwrap_or("<none>").to_owned(),
            });
        }
        if !self.seen.insert(header.to_ascii_lowercase()) {
            return Err(AnnotationError::Duplicate {
                header: header.clone(),
            });
        }
        self.found.push(ParamHeader {
            header: header.clone(),
            path: path.to_vec(),
        });
        Ok(())
    }
}

/// The `Mcp-Param-{Name}` headers a 2026-07-28 HTTP client must send for a `tools/call` with
/// `arguments`: strings as they are (Base64-wrapped by the encoder when unsafe), integers as
/// decimal text, booleans as `true`/`false`; null, absent, object and array values get none.
pub(crate) fn mirror_headers(
    mapping: &[ParamHeader],
    arguments: Option<&Value>,
) -> Vec<(http::HeaderName, http::HeaderValue)> {
    let mut out = Vec::new();
    for p in mapping {
        let mut value = arguments;
        for key in &p.path {
            value = value.and_then(|v| v.get(key));
        }
        let text = match value {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Bool(b)) => b.to_string(),
            Some(Value::Number(n)) => n.to_string(),
            _ => continue,
        };
        let Some(encoded) = warden_upstream::headers::encode_mirrored_value(&text) else {
            continue;
        };
        let name = format!("mcp-param-{}", p.header.to_ascii_lowercase());
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(&encoded),
        ) {
            out.push((name, value));
        }
    }
    out
}

/// True when a tool's `x-mcp-header` annotations are invalid: HTTP clients must drop such a
/// tool from `tools/list`, so the gateway withholds it from the lists it serves.
pub(crate) fn has_invalid_annotations(tool: &Value) -> bool {
    tool.get("inputSchema")
        .is_some_and(|schema| param_headers(schema).is_err())
}

/// The annotated tools of one upstream, by the upstream's own tool name, from its last
/// `tools/list`. Tools without annotations, and tools whose annotations are invalid, are absent.
#[derive(Debug, Default)]
pub(crate) struct ToolParams {
    by_tool: HashMap<String, Arc<[ParamHeader]>>,
}

impl ToolParams {
    /// Reads the annotations of `tools` (a `tools/list` result's items, original names).
    pub(crate) fn from_tools(upstream: &str, tools: &[Value]) -> Self {
        let mut by_tool = HashMap::new();
        for tool in tools {
            let Some(name) = tool.get("name").and_then(Value::as_str) else {
                continue;
            };
            let Some(schema) = tool.get("inputSchema") else {
                continue;
            };
            match param_headers(schema) {
                Ok(found) if found.is_empty() => {}
                Ok(found) => {
                    by_tool.insert(name.to_owned(), Arc::from(found));
                }
                Err(error) => {
                    // Conforming HTTP clients drop this tool; the gateway cannot tell which
                    // header means what, so it checks none for it.
                    tracing::warn!(upstream, tool = name, %error, "invalid x-mcp-header annotation; Mcp-Param headers of this tool are not validated");
                }
            }
        }
        Self { by_tool }
    }

    /// The annotations of the upstream's tool `name`.
    pub(crate) fn get(&self, name: &str) -> Option<Arc<[ParamHeader]>> {
        self.by_tool.get(name).cloned()
    }
}

#[cfg(test)]
mod tests;
