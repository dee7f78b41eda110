//! The OTLP/HTTP JSON encoding of a batch of spans (`ExportTraceServiceRequest`).
//!
//! Follows the OTLP JSON mapping: trace and span ids as lowercase hex (not base64), 64-bit
//! integers as decimal strings, enums as their integer values, field names in lowerCamelCase.

use serde_json::{Value, json};

use crate::span::{AttrValue, Attribute, Span, SpanStatus};

/// `SPAN_KIND_SERVER`: the gateway serves the client's request.
pub const SPAN_KIND_SERVER: u8 = 2;
/// `STATUS_CODE_ERROR`.
pub const STATUS_CODE_ERROR: u8 = 2;
/// Instrumentation scope name.
pub const SCOPE_NAME: &str = "mcp-warden";

/// What every span of this process shares (the OTLP resource).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// `service.name`.
    pub service_name: String,
    /// `service.version`.
    pub service_version: String,
}

fn value(v: &AttrValue) -> Value {
    match v {
        AttrValue::Str(s) => json!({ "stringValue": s }),
        AttrValue::StrList(items) => json!({
            "arrayValue": { "values": items.iter().map(|s| json!({ "stringValue": s })).collect::<Vec<_>>() }
        }),
    }
}

fn attributes(attrs: &[Attribute]) -> Value {
    Value::Array(
        attrs
            .iter()
            .map(|(k, v)| json!({ "key": k, "value": value(v) }))
            .collect(),
    )
}

fn span(s: &Span) -> Value {
    let mut out = json!({
        "traceId": s.trace_id.to_hex(),
        "spanId": s.span_id.to_hex(),
        "name": s.name,
        "kind": SPAN_KIND_SERVER,
        "startTimeUnixNano": s.start_unix_nanos.to_string(),
        "endTimeUnixNano": s.end_unix_nanos.to_string(),
        "attributes": attributes(&s.attributes),
        "events": s.events.iter().map(|e| json!({
            "timeUnixNano": e.time_unix_nanos.to_string(),
            "name": e.name,
            "attributes": attributes(&e.attributes),
        })).collect::<Vec<_>>(),
        "status": match &s.status {
            SpanStatus::Unset => json!({}),
            SpanStatus::Error(message) => json!({ "code": STATUS_CODE_ERROR, "message": message }),
        },
    });
    if let Some(parent) = s.parent {
        out["parentSpanId"] = Value::String(parent.to_hex());
    }
    out
}

/// The request body for `POST {endpoint}/v1/traces` with `Content-Type: application/json`.
pub fn encode(resource: &Resource, spans: &[Span]) -> Vec<u8> {
    let body = json!({
        "resourceSpans": [{
            "resource": { "attributes": attributes(&[
                ("service.name", AttrValue::Str(resource.service_name.clone())),
                ("service.version", AttrValue::Str(resource.service_version.clone())),
            ]) },
            "scopeSpans": [{
                "scope": { "name": SCOPE_NAME, "version": resource.service_version },
                "spans": spans.iter().map(span).collect::<Vec<_>>(),
            }],
        }],
    });
    // Serialising a Value built from strings and numbers cannot fail.
    serde_json::to_vec(&body).unwrap_or_default()
}
