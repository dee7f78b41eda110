//! The content guards: what the gateway does to the text servers hand to the model.
//!
//! - [`DefinitionGuard`] (stage `poisoning`, list and `initialize` results): every tool and
//!   prompt definition and the server's instructions go through the detection engine; in
//!   `block` mode a definition whose verdict is `block` is removed from the list and calls to
//!   it are refused ([`PoisonedCallGuard`], stage `poisoned_call`).
//! - [`CrossServerGuard`] (stage `poisoning`, after the definition guard, `serve` with two
//!   or more upstreams): name collisions, look-alike names and references to another
//!   upstream's tools across upstreams, reported ([`cross`]).
//! - [`InjectionGuard`] (stage `injection_scan`): tool results, resource contents, prompts,
//!   the server's error text and server-initiated sampling/elicitation messages are scanned for
//!   indirect prompt injection.
//! - [`RedactGuard`] (stage `redact`): secrets and personal data in the same traffic, and in
//!   the server's log and progress messages and error text, are replaced by typed markers, in
//!   text and in structured content, keeping valid JSON.
//! - [`SanitizeGuard`] (stage `sanitize`): terminal escapes and invisible characters are
//!   removed (or made visible) from everything the client will display; in content, hidden
//!   tags (`<SECRET>`) and HTML comments are made visible or stripped ([`hidden`]).
//!
//! - [`ArgumentSecretsGuard`] (stage `secrets_in_args`, toward the upstream): credentials in
//!   the arguments of `tools/call` (reported by default).
//! - [`AnswerSecretsGuard`] (stage `secrets_in_args`, toward the upstream): credentials in a
//!   client's answers to the server's own requests: sampling results, elicitation answers,
//!   roots (redacted by default).
//!
//! Each is configured per upstream as off / report / redact / block. Redaction rather than
//! blocking is the default for results: refusing a whole read-only result for one match is
//! what users of other gateways complain about most.
//!
//! Position on the request path: response direction, after pinning. This crate performs no I/O.
#![forbid(unsafe_code)]

/// Implements `warden_guard::Guard` for a content guard whose decision needs no I/O: its
/// inherent `NAME`, `CONTROLS` and `check_sync`.
macro_rules! sync_guard {
    ($guard:ty) => {
        impl warden_guard::Guard for $guard {
            fn name(&self) -> &'static str {
                Self::NAME
            }
            fn controls(&self) -> &'static [&'static str] {
                Self::CONTROLS
            }
            fn check<'a>(
                &'a self,
                call: &'a warden_guard::Call<'a>,
            ) -> futures::future::BoxFuture<
                'a,
                Result<warden_guard::Verdict, warden_guard::GuardError>,
            > {
                let r = self.check_sync(call);
                Box::pin(async move { r })
            }
            fn check_now(
                &self,
                call: &warden_guard::Call<'_>,
            ) -> Option<Result<warden_guard::Verdict, warden_guard::GuardError>> {
                Some(self.check_sync(call))
            }
        }
    };
}

mod arguments;
pub mod cross;
mod definitions;
pub mod hidden;
mod mode;
mod results;
pub mod sanitize;

pub use arguments::{AnswerSecretsGuard, ArgumentSecretsGuard};
pub use cross::CrossServerGuard;
pub use definitions::{
    CONTROLS as POISONING_CONTROLS, DefinitionGuard, Exposure, NAME as POISONING,
    PoisonedCallGuard, Poisoning,
};
pub use mode::{ContentModes, HiddenTagsMode, Mode, Modes, SanitizeMode};
pub use results::{InjectionGuard, RedactGuard, SanitizeGuard};

use serde_json::Value;
use warden_guard::{Call, Direction};

/// Methods whose results carry server content the model will read (`tasks/result` carries
/// the result of a task-augmented call; `completion/complete` the values a client offers the
/// user to pick, which then become arguments).
const CONTENT_RESULTS: &[&str] = &[
    "tools/call",
    "resources/read",
    "prompts/get",
    "tasks/result",
    "completion/complete",
];

/// Server-initiated requests whose params carry content for the user or the model.
const CONTENT_REQUESTS: &[&str] = &["sampling/createMessage", "elicitation/create"];

/// The part of a message toward the client that carries content, and whether it is a result
/// (`true`) or the params of a server-initiated request (`false`).
fn content_of<'a>(call: &'a Call<'_>) -> Option<(&'a Value, bool)> {
    if call.direction != Direction::ToClient {
        return None;
    }
    if let Some(method) = call.message.method() {
        return CONTENT_REQUESTS
            .contains(&method)
            .then(|| call.message.params().map(|p| (p, false)))
            .flatten();
    }
    let method = call.request_method?;
    if !CONTENT_RESULTS.contains(&method) {
        return None;
    }
    call.message.result().map(|r| (r, true))
}

/// Server text toward the client that is neither content nor a definition but is displayed
/// all the same: the `error` of an error response (its message and data, shown to the user and
/// often to the model), and the params of a log message (`notifications/message`), a
/// progress message (`notifications/progress`) or a task's status (`notifications/tasks/status`,
/// whose `statusMessage` a client shows). With the member's name, to rewrite it.
fn displayed_text<'a>(call: &'a Call<'_>) -> Option<(&'a Value, &'static str)> {
    if call.direction != Direction::ToClient {
        return None;
    }
    match call.message.method() {
        Some("notifications/message" | "notifications/progress" | "notifications/tasks/status") => {
            call.message.params().map(|p| (p, "params"))
        }
        Some(_) => None,
        None if *call.message.kind() == warden_proto::Kind::Error => {
            call.message.error().map(|e| (e, "error"))
        }
        // A task's status as a result: its `statusMessage` is shown like the notification's.
        None if matches!(call.request_method, Some("tasks/get" | "tasks/list")) => {
            call.message.result().map(|r| (r, "result"))
        }
        None => None,
    }
}
