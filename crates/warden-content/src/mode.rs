//! What each content guard does, per upstream.

use warden_proto::fast_map::FastMap;

pub use crate::hidden::HiddenTagsMode;

/// What a content guard does with what it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Nothing: the guard does not run.
    Off,
    /// Log (and audit) findings; forward unchanged.
    #[default]
    Report,
    /// Replace what was found (markers for secrets, a notice for injected text).
    Redact,
    /// Refuse the item (definitions are withheld, results become an error).
    Block,
}

/// What the sanitizer does with terminal escapes and invisible characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SanitizeMode {
    /// Leave them.
    Off,
    /// Remove them.
    #[default]
    Strip,
    /// Replace each with a visible `⟦U+XXXX⟧` (terminal escapes with `⟦ESC⟧`).
    Visible,
}

/// The modes of every content guard, for one upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Modes {
    /// Definitions (tools, prompts, instructions): off, report or block.
    pub poisoning: Mode,
    /// Injection in results and server-initiated messages.
    pub injection: Mode,
    /// Credentials in results and server-initiated messages.
    pub secrets: Mode,
    /// Personal data in results and server-initiated messages.
    pub pii: Mode,
    /// Credentials in the arguments a client sends with `tools/call`.
    pub secrets_in_arguments: Mode,
    /// Credentials in a client's answers to server-initiated requests (sampling, elicitation,
    /// roots).
    pub secrets_in_answers: Mode,
    /// Terminal escapes and invisible characters.
    pub sanitize: SanitizeMode,
    /// Hidden tags (`<SECRET>`) and HTML comments in content (not in definitions).
    pub hidden_tags: HiddenTagsMode,
}

impl Default for Modes {
    /// The zero-config posture: poisoned definitions blocked, injections reported, secrets
    /// redacted, personal data reported (many tools legitimately return names and emails),
    /// escapes and invisible characters stripped, hidden tags and comments made visible.
    fn default() -> Self {
        Modes {
            poisoning: Mode::Block,
            injection: Mode::Report,
            secrets: Mode::Redact,
            pii: Mode::Report,
            secrets_in_arguments: Mode::Report,
            secrets_in_answers: Mode::Redact,
            sanitize: SanitizeMode::Strip,
            hidden_tags: HiddenTagsMode::Visible,
        }
    }
}

/// Modes per upstream (keyed by the gateway's upstream name) with a default for the rest.
#[derive(Debug, Clone, Default)]
pub struct ContentModes {
    /// For upstreams without their own.
    pub default: Modes,
    /// Per upstream.
    pub upstreams: FastMap<String, Modes>,
}

impl ContentModes {
    /// The modes in force for `upstream`.
    pub fn of(&self, upstream: Option<&str>) -> Modes {
        upstream
            .and_then(|u| self.upstreams.get(u))
            .copied()
            .unwrap_or(self.default)
    }

    /// True when some upstream uses `pick`'s guard at all.
    pub fn any(&self, pick: impl Fn(&Modes) -> bool) -> bool {
        pick(&self.default) || self.upstreams.values().any(pick)
    }
}
