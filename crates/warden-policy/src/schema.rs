//! `tools/call` arguments against the called tool's own `inputSchema`.
//!
//! Schemas come from the upstream's `tools/list` (the session hands the listed definition to
//! the guard as [`warden_guard::Target::tool`]). JSON Schema 2020-12 is assumed unless the
//! schema's `$schema` names another draft (draft-07 and 2019-09 are common). Remote `$ref`s
//! are never fetched: the crate is built without its HTTP and file retrievers, so a schema that
//! needs one fails to compile and the call is refused. Patterns use a linear-time regex engine,
//! so a hostile schema cannot make validation backtrack. Compiled validators are cached by the
//! exact schema text: a changed definition compiles anew.

use std::sync::{Arc, RwLock, Weak};

use futures::FutureExt;
use futures::future::BoxFuture;
use jsonschema::Validator;
use serde_json::{Map, Value};
use warden_guard::{Call, Denial, Direction, Guard, GuardError, Verdict};
use warden_proto::ErrorCode;
use warden_proto::Field;
use warden_proto::fast_map::FastMap;

/// Compiled validators kept: bounds memory when upstreams churn definitions.
const MAX_CACHED: usize = 1024;
/// Errors described to the client per refused call.
const MAX_REPORTED_ERRORS: usize = 3;
/// Longest description of one error: validator messages quote the offending value.
const MAX_ERROR_CHARS: usize = 200;
/// Largest compiled regex of a schema `pattern`.
const MAX_PATTERN_BYTES: usize = 1 << 20;

/// Limits on the schemas the guard compiles.
#[derive(Debug, Clone, Copy)]
pub struct SchemaLimits {
    /// Largest schema, in bytes of JSON text.
    pub max_bytes: usize,
    /// Deepest schema nesting.
    pub max_depth: usize,
}

type Compiled = Result<Arc<Validator>, String>;

/// The `schema` guard.
pub struct SchemaGuard {
    limits: SchemaLimits,
    cache: RwLock<FastMap<String, Compiled>>,
    /// Validators by listed definition (the session's `Arc` of the tool object): skips
    /// serialising the schema to find it. An entry counts only while its `Weak` still points
    /// at the very allocation asked about, so a freed and reused address never matches.
    by_definition: RwLock<FastMap<usize, (Weak<Value>, Compiled)>>,
}

impl std::fmt::Debug for SchemaGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaGuard")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

fn depth(value: &Value) -> usize {
    match value {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn truncate(mut text: String) -> String {
    if let Some((at, _)) = text.char_indices().nth(MAX_ERROR_CHARS) {
        text.truncate(at);
        text.push('…');
    }
    text
}

impl SchemaGuard {
    /// Stable name in audit records and `check`.
    pub const NAME: &'static str = "schema";
    /// Controls enforced.
    pub const CONTROLS: &'static [&'static str] = &["API-1", "TOOL-3"];

    /// A guard compiling schemas within `limits`.
    pub fn new(limits: SchemaLimits) -> Self {
        Self {
            limits,
            cache: RwLock::new(FastMap::default()),
            by_definition: RwLock::new(FastMap::default()),
        }
    }

    /// The compiled validator of `schema`, from the cache or compiled now.
    pub fn validator(&self, schema: &Value) -> Compiled {
        let text = schema.to_string();
        if let Some(hit) = self
            .cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&text)
        {
            return hit.clone();
        }
        let compiled = self.compile(schema, text.len());
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(text, compiled.clone());
        compiled
    }

    fn compile(&self, schema: &Value, bytes: usize) -> Compiled {
        if bytes > self.limits.max_bytes {
            return Err(format!(
                "inputSchema is {bytes} bytes; the limit is {}",
                self.limits.max_bytes
            ));
        }
        let d = depth(schema);
        if d > self.limits.max_depth {
            return Err(format!(
                "inputSchema nests {d} levels; the limit is {}",
                self.limits.max_depth
            ));
        }
        jsonschema::options()
            .should_validate_formats(true)
            .with_pattern_options(jsonschema::PatternOptions::regex().size_limit(MAX_PATTERN_BYTES))
            .build(schema)
            .map(Arc::new)
            .map_err(|e| truncate(format!("inputSchema does not compile: {e}")))
    }

    /// Validates `arguments` (a `tools/call`'s `params.arguments`, `None` when absent) against
    /// the tool object `tool`. `Err` is the client-facing message and the audit detail.
    pub fn validate(
        &self,
        tool: &Value,
        arguments: Option<&Value>,
    ) -> Result<(), (String, String)> {
        let compiled = tool
            .field("inputSchema")
            .map(|schema| self.validator(schema));
        Self::check(compiled, arguments)
    }

    /// [`SchemaGuard::validate`] for a listed definition the session shares: the validator is
    /// found by the definition's identity before falling back to its schema text.
    pub fn validate_listed(
        &self,
        tool: &Arc<Value>,
        arguments: Option<&Value>,
    ) -> Result<(), (String, String)> {
        let key = Arc::as_ptr(tool) as usize;
        let hit = self
            .by_definition
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .filter(|(weak, _)| weak.upgrade().is_some_and(|live| Arc::ptr_eq(&live, tool)))
            .map(|(_, compiled)| compiled.clone());
        let compiled = match hit {
            Some(c) => Some(c),
            None => {
                let compiled = tool
                    .field("inputSchema")
                    .map(|schema| self.validator(schema));
                if let Some(c) = &compiled {
                    let mut map = self
                        .by_definition
                        .write()
                        .unwrap_or_else(|e| e.into_inner());
                    if map.len() >= MAX_CACHED {
                        map.retain(|_, (weak, _)| weak.strong_count() > 0);
                        if map.len() >= MAX_CACHED {
                            map.clear();
                        }
                    }
                    map.insert(key, (Arc::downgrade(tool), c.clone()));
                }
                compiled
            }
        };
        Self::check(compiled, arguments)
    }

    fn check(
        compiled: Option<Compiled>,
        arguments: Option<&Value>,
    ) -> Result<(), (String, String)> {
        let empty = Value::Object(Map::new());
        let arguments = arguments.unwrap_or(&empty);
        if !arguments.is_object() {
            return Err((
                "invalid arguments: expected an object".into(),
                "arguments is not an object".into(),
            ));
        }
        let Some(compiled) = compiled else {
            // The MCP schema requires inputSchema; a tool without one accepts nothing.
            return Err((
                "the tool's input schema is missing; the call cannot be validated".into(),
                "tool definition has no inputSchema".into(),
            ));
        };
        let validator = match compiled {
            Ok(v) => v,
            Err(reason) => {
                return Err((
                    "the tool's input schema is not accepted by the gateway; the call cannot be validated".into(),
                    reason,
                ));
            }
        };
        // The common case answers without building error values; the errors are collected
        // only for a call that fails.
        if validator.is_valid(arguments) {
            return Ok(());
        }
        let problems: Vec<String> = validator
            .iter_errors(arguments)
            .take(MAX_REPORTED_ERRORS)
            .map(|e| {
                let at = e.instance_path().to_string();
                let text = truncate(e.to_string());
                match at.strip_prefix('/') {
                    None => format!("arguments: {text}"),
                    Some(field) => format!("argument `{}`: {text}", field.replace('/', ".")),
                }
            })
            .collect();
        if problems.is_empty() {
            return Ok(());
        }
        let message = format!("invalid arguments: {}", problems.join("; "));
        Err((message, "arguments failed inputSchema validation".into()))
    }

    fn decide(&self, call: &Call<'_>) -> Verdict {
        let message = call.message;
        if call.direction != Direction::ToUpstream
            || !message.is_request()
            || message.method() != Some("tools/call")
        {
            return Verdict::Continue;
        }
        let params = message.params();
        let shown = params
            .and_then(|p| p.field("name"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let Some(target) = call.target else {
            // The session could not route the name to any upstream (unknown, or withheld as a
            // collision): nothing can be forwarded, and routing answers with the precise reason.
            return Verdict::Continue;
        };
        let Some(tool) = target.tool.as_ref() else {
            return self.deny(
                format!("tool {shown:?} is not in the upstream's tool list; the call cannot be validated"),
                "no listed definition for the called tool".into(),
            );
        };
        match self.validate_listed(tool, params.and_then(|p| p.field("arguments"))) {
            Ok(()) => Verdict::Continue,
            Err((message, detail)) => self.deny(message, detail),
        }
    }

    fn deny(&self, message: String, detail: String) -> Verdict {
        Verdict::Deny(Denial {
            guard: Self::NAME,
            code: ErrorCode::InvalidParams,
            message,
            detail,
            controls: Self::CONTROLS,
            retry_after: None,
        })
    }
}

impl Guard for SchemaGuard {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn controls(&self) -> &'static [&'static str] {
        Self::CONTROLS
    }

    fn check<'a>(&'a self, call: &'a Call<'a>) -> BoxFuture<'a, Result<Verdict, GuardError>> {
        let verdict = self.decide(call);
        async move { Ok(verdict) }.boxed()
    }
    fn check_now(&self, call: &Call<'_>) -> Option<Result<Verdict, GuardError>> {
        Some(Ok(self.decide(call)))
    }
}

#[cfg(test)]
mod tests;
