//! Credentials in what a client sends: the arguments of `tools/call` and `prompts/get`, what
//! `completion/complete` is asked to complete, the URI of `resources/read`.
//!
//! A model that read a key somewhere (a file, another server's result, the user's message) can
//! pass it to any tool, and the server of that tool may be someone else's. The results guards
//! look at what servers send; this one looks at what goes the other way, with the same
//! detector. The default is `report` (logged, audited, seen by the alert rules): a credential
//! in a call's arguments may be the call's purpose, and redacting or refusing it changes what
//! the call does. `redact` replaces each credential by its typed marker and forwards the call;
//! `block` refuses it before it reaches the upstream.

use warden_detect::redact::{RedactOptions, redact_json_with, scan_json_with};
use warden_guard::{Call, Denial, Direction, GuardError, Report, Verdict};
use warden_proto::ErrorCode;

use crate::mode::{ContentModes, Mode};

/// Credentials in the arguments of `tools/call` and `prompts/get`, in the params of
/// `completion/complete`, and in the URI of `resources/read` and `resources/subscribe` (stage
/// `SecretsInArgs`).
pub struct ArgumentSecretsGuard {
    modes: ContentModes,
}

/// Credentials only: names, addresses and emails are what many tools are called with.
const SECRETS: RedactOptions = RedactOptions {
    secrets: true,
    pii: false,
};

impl ArgumentSecretsGuard {
    /// Guard name.
    pub const NAME: &'static str = "secrets_in_args";
    /// Controls.
    pub const CONTROLS: &'static [&'static str] = &["DATA-5", "DATA-1"];

    /// Under `modes` (their `secrets_in_arguments`).
    pub fn new(modes: ContentModes) -> Self {
        Self { modes }
    }

    fn check_sync(&self, call: &Call<'_>) -> Result<Verdict, GuardError> {
        if call.direction != Direction::ToUpstream {
            return Ok(Verdict::Continue);
        }
        // What the model or the user fills in: a call's and a prompt's arguments, what a
        // completion is asked for (the value typed so far and the arguments around it), and a
        // resource's URI (a token in its query reaches the server as surely).
        let (name, key, pointer): (&str, Option<&str>, &'static [&'static str]) =
            match call.message.method() {
                Some("tools/call" | "prompts/get") => {
                    ("arguments", Some("arguments"), &["params", "arguments"])
                }
                Some("completion/complete" | "resources/read" | "resources/subscribe") => {
                    ("params", None, &["params"])
                }
                _ => return Ok(Verdict::Continue),
            };
        let mode = self.modes.of(call.upstream).secrets_in_arguments;
        let params = call.message.params();
        let Some(value) = key.map_or(params, |k| params.and_then(|p| p.get(k))) else {
            return Ok(Verdict::Continue);
        };
        scan(
            call,
            mode,
            Part {
                guard: Self::NAME,
                controls: Self::CONTROLS,
                name,
                value,
                pointer,
                refused: "the request was refused: it contains credentials",
                logged: "credentials in a request's arguments",
            },
        )
    }
}

sync_guard!(ArgumentSecretsGuard);

/// Credentials in a client's answers to server-initiated requests (stage `SecretsInArgs`):
/// the result of `sampling/createMessage` (text the client's model wrote for the server),
/// `elicitation/create` (what the user typed into the server's form) and `roots/list`, and
/// the same answers carried in a 2026-07-28 retry's `inputResponses`.
///
/// A server that asks the client's model for a completion, or the user for a form, learns
/// whatever the answer holds. The specification forbids servers to ask for sensitive data
/// through a form, and a completion has no reason to carry a key, so the default is `redact`:
/// the answer still reaches the server, without the credential.
pub struct AnswerSecretsGuard {
    modes: ContentModes,
}

impl AnswerSecretsGuard {
    /// Guard name.
    pub const NAME: &'static str = "secrets_in_answers";
    /// Controls.
    pub const CONTROLS: &'static [&'static str] = &["SAMP-2", "DATA-5", "DATA-1"];

    /// Under `modes` (their `secrets_in_answers`).
    pub fn new(modes: ContentModes) -> Self {
        Self { modes }
    }

    fn check_sync(&self, call: &Call<'_>) -> Result<Verdict, GuardError> {
        if call.direction != Direction::ToUpstream {
            return Ok(Verdict::Continue);
        }
        if call.message.method().is_some() {
            // A 2026-07-28 client answers a server's input requests in the retry of its
            // request (`inputResponses`), which reaches a modern upstream as it is.
            let Some(answers) = call.message.params().and_then(|p| p.get("inputResponses")) else {
                return Ok(Verdict::Continue);
            };
            return scan(
                call,
                self.modes.of(call.upstream).secrets_in_answers,
                Part {
                    guard: Self::NAME,
                    controls: Self::CONTROLS,
                    name: "inputResponses",
                    value: answers,
                    pointer: &["params", "inputResponses"],
                    refused: "the request was refused: its answers to the server contain credentials",
                    logged: "credentials in a client's answers to the server's input requests",
                },
            );
        }
        // A response toward the upstream answers a request the upstream sent.
        let (Some(result), Some(method)) = (call.message.result(), call.request_method) else {
            return Ok(Verdict::Continue);
        };
        let mode = self.modes.of(call.upstream).secrets_in_answers;
        let logged = format!("credentials in a client's answer to {method}");
        scan(
            call,
            mode,
            Part {
                guard: Self::NAME,
                controls: Self::CONTROLS,
                name: "result",
                value: result,
                pointer: &["result"],
                refused: "the answer was withheld from the server: it contains credentials",
                logged: &logged,
            },
        )
    }
}

sync_guard!(AnswerSecretsGuard);

/// The part of a message one of the guards scans.
struct Part<'a> {
    guard: &'static str,
    controls: &'static [&'static str],
    /// How findings name it (`arguments/body`).
    name: &'static str,
    value: &'a serde_json::Value,
    /// Where it sits in the message, for the rewrite.
    pointer: &'static [&'static str],
    /// The refusal's message (never the value).
    refused: &'static str,
    logged: &'a str,
}

/// The verdict on the credentials in `part` under `mode`.
fn scan(call: &Call<'_>, mode: Mode, part: Part<'_>) -> Result<Verdict, GuardError> {
    if mode == Mode::Off {
        return Ok(Verdict::Continue);
    }
    // Every string: what a client sends has no binary payload the gateway may skip (a member
    // named `blob` or an image's `data` is whatever the model or the user put there).
    let found = scan_json_with(part.value, SECRETS);
    if found.is_empty() {
        return Ok(Verdict::Continue);
    }
    // Kinds and pointers only: never the value.
    let detail = found
        .iter()
        .map(|f| format!("{} at {}{}", f.redacted.kind, part.name, f.pointer))
        .collect::<Vec<_>>()
        .join("; ");
    let upstream = call.upstream.unwrap_or("");
    tracing::warn!(upstream, found = %detail, mode = ?mode, "{}", part.logged);
    match mode {
        Mode::Off => Ok(Verdict::Continue),
        Mode::Report => Ok(Verdict::Report(Report {
            detail,
            controls: part.controls,
        })),
        Mode::Block => Ok(Verdict::Deny(Denial {
            guard: part.guard,
            code: ErrorCode::Denied,
            message: part.refused.into(),
            detail,
            controls: part.controls,
            retry_after: None,
        })),
        Mode::Redact => {
            let mut value = call.message.value().clone();
            let mut at = Some(&mut value);
            for key in part.pointer {
                at = at.and_then(|v| v.get_mut(*key));
            }
            if let Some(v) = at {
                redact_json_with(v, SECRETS);
            }
            Verdict::rewrite(part.guard, value)
        }
    }
}

#[cfg(test)]
mod tests;
