//! Prometheus metrics of the gateway, derived from the audit record stream.
//!
//! [`Metrics`] is a [`warden_audit::AuditTap`]: the audit writer hands it every record after
//! writing it, on the writer thread, so counting adds nothing to a request's latency and the
//! metrics can never disagree with the audit log about what happened. A few values that no
//! record carries (the audit queue's depth, records dropped before reaching the log) are read
//! when a scraper asks, from an [`warden_audit::AuditLog`] handle.
//!
//! [`MetricsServer`] serves `GET /metrics` in the Prometheus text exposition format (0.0.4) on
//! a listener of its own, away from the MCP face and its authentication.
//!
//! Labels whose values come from peers or upstreams (methods, tools, upstreams, guards) are
//! bounded: each keeps its first `max_label_values` distinct values and folds the rest into
//! `other`, and each metric family holds a bounded number of series, so no peer can grow the
//! registry or a scraper's storage. This crate never sees arguments, results or credentials:
//! audit records carry none of them in a form it reads.
#![forbid(unsafe_code)]

mod exposition;
mod labels;
mod registry;
mod server;

pub use exposition::CONTENT_TYPE;
pub use labels::OTHER;
pub use registry::{LATENCY_BUCKETS_US, Live, Metrics, MetricsOptions};
pub use server::{MetricsError, MetricsServer, ServerOptions};
