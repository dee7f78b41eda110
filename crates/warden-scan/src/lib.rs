//! Discovery and static audit of the MCP servers configured in a machine's clients, SARIF
//! output, and the rewriting that routes a client's servers through `mcp-warden run` and back.
//!
//! Position: beside the request path, not on it. The `scan`, `wrap` and `unwrap` commands use
//! it; starting servers for live analysis is done by the binary with the gateway's own
//! upstream transports and sandbox.
//!
//! This crate reads and writes files only where its caller says (it never walks the disk on its
//! own) and never starts a process.
#![forbid(unsafe_code)]

pub mod checks;
pub mod clients;
pub mod jsonc;
pub mod sarif;
pub mod servers;
pub mod wrap;

pub use checks::{RULES, Rule, ScanFinding, check_collisions, check_server};
pub use clients::{Client, ConfigLocation, Format, Os, Platform, Scope, locations};
pub use servers::{ServerEntry, Transport, read_servers};
