//! Signalling an upstream's process group. Spawning and every `unsafe` call live in
//! `warden-sandbox`, the only crate allowed to contain them.

pub(crate) use warden_sandbox::{Signal, signal_group};
