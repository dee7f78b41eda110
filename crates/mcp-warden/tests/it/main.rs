//! Integration tests of the `mcp-warden` binary against real third-party servers and clients,
//! all started by the tests themselves on 127.0.0.1.
#![allow(missing_docs, unreachable_pub)]
#![expect(clippy::unwrap_used, reason = "tests")]

mod conformance;
mod hostile;
mod interop;
mod support;
