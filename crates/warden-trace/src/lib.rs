//! OpenTelemetry traces of the gateway: W3C trace context carried in MCP `params._meta`, one
//! server span per request crossing the gateway, exported over OTLP/HTTP (JSON).
//!
//! Position on the request path: when `[tracing]` is configured, the session layer hands each
//! audited client request to [`Propagator::start`] before the guards run. The request gets a
//! gateway span, child of the client's `params._meta.traceparent` when that is valid, and is
//! forwarded with the gateway span in its place. That is the only work on the request path:
//! a byte-level edit of `params._meta` and two random ids. The span itself is completed off
//! the request path, from the audit record stream: [`TraceExporter`] is an audit tap that
//! turns each traced call record (with its latency and outcome) and the guard decisions made
//! under it into a span, queues it (bounded; dropped and counted when full) and exports
//! batches from a thread of its own.
//!
//! When tracing is not configured nothing here runs and requests are forwarded byte for byte.
//! Spans carry no arguments, results or guard details: method, target name, upstream,
//! session, principal and outcome only.
#![forbid(unsafe_code)]

pub mod context;
pub mod export;
pub mod otlp;
pub mod propagate;
pub mod span;

pub use context::{Sampler, SpanContext, SpanId, TraceId, TraceParent, TraceParentError};
pub use export::{ExportError, ExportOptions, ExportStats, TraceExporter};
pub use propagate::{Propagator, current, in_span};
pub use span::{Span, SpanAssembler};
