//! Tool-definition pinning (trust on first use) for mcp-warden.
//!
//! The first time the gateway sees an upstream's tool list, every definition (the whole tool
//! object: name, title, description, inputSchema, outputSchema, annotations, `_meta`, anything
//! else) is reduced to its [canonical form](canonical), hashed with SHA-256 and pinned under the
//! upstream's identity. From then on a definition whose hash differs, a tool that was not in
//! that first list, and a name listed twice are *held*: removed from list results and refused
//! when called, until a human approves them with `mcp-warden pins approve` (in `block` mode;
//! `report` mode only records and logs). Tools that disappear are reported. Benign changes are
//! changes: the hash does not judge, `mcp-warden pins diff` shows what changed. The server's
//! `instructions` are pinned the same way and withheld when they change.
//!
//! Where it sits: [`PinListGuard`] in the response stage `Pinning` (before poisoning analysis, so
//! a changed definition is held whatever its analysis says), [`PinCallGuard`] in the request
//! stage `PinnedCall`. Records live in a [`warden_store::Store`] through [`PinBook`], which the
//! `pins` command uses too.
//!
//! [Command pins](command) (RUN-3) live in the same store: what a stdio upstream's command runs
//! (resolved executable and its SHA-256, an interpreter's script, launcher packages and
//! versions), pinned on first start and compared before every start by the gateway.
//!
//! This crate reads and writes only the pin store (and, for command pins, reads the files a
//! command runs); it never logs a definition's text.
#![forbid(unsafe_code)]

pub mod book;
pub mod canonical;
pub mod command;
pub mod diff;
pub mod guard;
pub mod record;

pub use book::{Observation, PIN_STORE_DIR, PinBook, PinError};
pub use canonical::{canonical_bytes, definition_hash};
pub use guard::{
    CONTROLS, Exposure, NAME, PinCallGuard, PinListGuard, PinMode, Pinning, UpstreamPins,
};
pub use record::{ServerRecord, Snapshot, Status, ToolRecord};
