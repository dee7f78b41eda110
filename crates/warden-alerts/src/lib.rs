//! Alerts of mcp-warden: anomaly rules over the audit record stream, and the sinks their
//! alerts go to (MON-1, MON-3, LOG-3).
//!
//! Position on the request path: beside it, never in it. [`Alerts`] is an
//! [`warden_audit::AuditTap`]: the audit writer thread hands it every record after writing it,
//! the [`Engine`] evaluates the rules over them (a few hash-map operations per record), and
//! fired alerts go through a bounded queue to a thread of their own that runs the sinks
//! ([`sink`]: the log, a JSON Lines file, a signed webhook). A slow or unreachable webhook
//! fills that queue, never the audit writer: beyond it alerts are dropped, counted and the
//! drop is logged.
//!
//! Rules (see `docs/alerts.md` for exact definitions): bursts of refused authentications per
//! principal or remote address, bursts of guard denials per principal, a pinned definition
//! that changed, poisoning and injection findings, an upstream crash loop, and a session
//! calling a sensitive tool shortly after reading untrusted content. Each rule has a
//! threshold, a window and a cooldown per key, so a burst yields one alert.
//!
//! This crate must never block the audit writer, put a credential or content in an alert or
//! a log line (records hold neither), or follow a redirect with a signed alert.
#![forbid(unsafe_code)]

mod alert;
mod engine;
mod error;
pub mod sink;
mod tap;

pub use alert::Alert;
pub use engine::{Engine, MAX_KEYS, OVERFLOW_KEY, rule};
pub use error::AlertsError;
pub use sink::{ALERT_ID_HEADER, LogSink, SIGNATURE_HEADER, Secret, Sinks, WebhookSink, signature};
pub use tap::Alerts;
