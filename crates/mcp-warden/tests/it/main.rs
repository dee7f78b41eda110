//! Integration tests of the `mcp-warden` binary against real third-party servers and clients,
//! all started by the tests themselves on 127.0.0.1.
#![allow(missing_docs, unreachable_pub)]
#![expect(clippy::unwrap_used, reason = "tests")]

mod alerts;
mod audit;
mod auth;
mod batch;
mod browser;
mod check;
mod check_cross_server;
mod command_pins;
mod conformance;
mod content;
mod cross_server;
mod hostile;
mod inspect;
mod interop;
mod lifecycle;
mod metrics;
mod pinning;
mod redact;
mod request_guards;
mod sandbox;
mod scan;
mod support;
mod tls_upstream;
mod tracing;
