//! Detection engines shared by the gateway's content guards, `mcp-warden inspect`,
//! `mcp-warden redact` and the scanner: tool poisoning, indirect prompt injection, Unicode
//! tricks, secrets and PII.
//!
//! Position on the request path: none of its own. Guards in `warden-guard` call into it on list
//! results, tool results and server-initiated content; the CLI calls it on files.
//!
//! This crate performs no I/O, never allocates in proportion to anything but its input, and
//! matches in linear time (automata only, no backtracking), with a bound on work per input byte.
#![forbid(unsafe_code)]

pub mod entropy;
pub mod finding;
mod injection;
pub mod pii;
pub mod poison;
pub mod redact;
pub mod secrets;
pub mod text;
pub mod tool;
pub mod unicode;

pub use finding::{Finding, Location, Severity, Verdict};
pub use text::{TextKind, analyze_json_text, analyze_text};
pub use tool::{
    Context, ServerTools, analyze_across_servers, analyze_instructions, analyze_servers,
    analyze_tool, analyze_tools,
};

/// Builds the analysis automata now (the phrase lexicon of the injection and poisoning rules,
/// about 5 ms) rather than on the first definition or result analysed. The secret and
/// personal-data rules have their own: [`redact::warm_up`].
pub fn warm_up_analysis() {
    injection::warm_up();
}
