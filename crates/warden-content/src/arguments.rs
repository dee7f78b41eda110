//! Credentials in what a client sends: the arguments of `tools/call`.
//!
//! A model that read a key somewhere (a file, another server's result, the user's message) can
//! pass it to any tool, and the server of that tool may be someone else's. The results guards
//! look at what servers send; this one looks at what goes the other way, with the same
//! detector. The default is `report` (logged, audited, seen by the alert rules): a credential
//! in a call's arguments may be the call's purpose, and redacting or refusing it changes what
//! the call does. `redact` replaces each credential by its typed marker and forwards the call;
//! `block` refuses it before it reaches the upstream.

use warden_detect::redact::{RedactOptions, redact_tool_result, scan_tool_result};
use warden_guard::{Call, Denial, Direction, GuardError, Report, Verdict};
use warden_proto::ErrorCode;

use crate::mode::{ContentModes, Mode};

/// Credentials in `tools/call` arguments (stage `SecretsInArgs`).
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
        if call.direction != Direction::ToUpstream || call.message.method() != Some("tools/call") {
            return Ok(Verdict::Continue);
        }
        let upstream = call.upstream;
        let mode = self.modes.of(upstream).secrets_in_arguments;
        if mode == Mode::Off {
            return Ok(Verdict::Continue);
        }
        let Some(arguments) = call.message.params().and_then(|p| p.get("arguments")) else {
            return Ok(Verdict::Continue);
        };
        let found = scan_tool_result(arguments, SECRETS);
        if found.is_empty() {
            return Ok(Verdict::Continue);
        }
        // Kinds and pointers only: never the value.
        let detail = found
            .iter()
            .map(|f| format!("{} at arguments{}", f.redacted.kind, f.pointer))
            .collect::<Vec<_>>()
            .join("; ");
        tracing::warn!(upstream = upstream.unwrap_or(""), found = %detail, mode = ?mode, "credentials in a call's arguments");
        match mode {
            Mode::Off => Ok(Verdict::Continue),
            Mode::Report => Ok(Verdict::Report(Report {
                detail,
                controls: Self::CONTROLS,
            })),
            Mode::Block => Ok(Verdict::Deny(Denial {
                guard: Self::NAME,
                code: ErrorCode::Denied,
                message: "the call was refused: its arguments contain credentials".into(),
                detail,
                controls: Self::CONTROLS,
                retry_after: None,
            })),
            Mode::Redact => {
                let mut value = call.message.value().clone();
                if let Some(arguments) =
                    value.get_mut("params").and_then(|p| p.get_mut("arguments"))
                {
                    redact_tool_result(arguments, SECRETS);
                }
                Verdict::rewrite(Self::NAME, value)
            }
        }
    }
}

sync_guard!(ArgumentSecretsGuard);

#[cfg(test)]
mod tests;
