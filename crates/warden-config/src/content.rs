//! Content guard settings: `[content]` (the default of every upstream, and the setting of
//! `mcp-warden run`) and `[upstreams.<name>.content]` (per upstream; keys not given there fall
//! back to `[content]`).
//!
//! ```toml
//! [content]
//! poisoning = "block"    # definitions: off | report | block
//! injection = "report"   # results: off | report | redact | block
//! secrets = "redact"     # results: off | report | redact | block
//! pii = "report"         # results: off | report | redact | block
//! secrets_in_arguments = "report" # tools/call arguments: off | report | redact | block
//! secrets_in_answers = "redact"   # a client's answers to sampling, elicitation, roots requests
//! sanitize = "strip"     # off | strip | visible
//! hidden_tags = "visible" # results: report | visible | strip (`<SECRET>`, `<!-- -->`)
//! ```

use serde::Deserialize;

/// What a content guard does with what it finds in results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContentMode {
    /// The guard does not run.
    Off,
    /// Log and audit findings; forward unchanged.
    Report,
    /// Replace what was found.
    Redact,
    /// Refuse the result.
    Block,
}

/// What the poisoning analysis does with a definition that fails it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DefinitionMode {
    /// The analysis does not run.
    Off,
    /// Log and audit findings; list the definition anyway.
    Report,
    /// Withhold the definition from lists and refuse calls to it.
    Block,
}

/// What the sanitizer does with terminal escapes and invisible characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SanitizeSetting {
    /// Leave them.
    Off,
    /// Remove them.
    Strip,
    /// Replace each with a visible marker.
    Visible,
}

/// What the sanitizer does with hidden tags (`<SECRET>`, `<IMPORTANT>`) and HTML comments in
/// results and server-initiated messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HiddenTagsSetting {
    /// Leave them (the injection guard reports them).
    Report,
    /// Rewrite their `<` `>` to `‹` `›` so any renderer shows them as text.
    Visible,
    /// Remove each comment and tag block with its content.
    Strip,
}

/// `[content]` or `[upstreams.<name>.content]` as written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct RawContent {
    /// `poisoning`.
    pub poisoning: Option<DefinitionMode>,
    /// `injection`.
    pub injection: Option<ContentMode>,
    /// `secrets`.
    pub secrets: Option<ContentMode>,
    /// `pii`.
    pub pii: Option<ContentMode>,
    /// `secrets_in_arguments`.
    pub secrets_in_arguments: Option<ContentMode>,
    /// `secrets_in_answers`.
    pub secrets_in_answers: Option<ContentMode>,
    /// `sanitize`.
    pub sanitize: Option<SanitizeSetting>,
    /// `hidden_tags`.
    pub hidden_tags: Option<HiddenTagsSetting>,
}

/// The content guard settings in force for one upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentConfig {
    /// Poisoning analysis of tool and prompt definitions and server instructions.
    pub poisoning: DefinitionMode,
    /// Indirect prompt injection in results and server-initiated messages.
    pub injection: ContentMode,
    /// Credentials in results and server-initiated messages.
    pub secrets: ContentMode,
    /// Personal data in results and server-initiated messages.
    pub pii: ContentMode,
    /// Credentials in the arguments a client sends with `tools/call`.
    pub secrets_in_arguments: ContentMode,
    /// Credentials in a client's answers to the server's own requests (`sampling/createMessage`,
    /// `elicitation/create`, `roots/list`).
    pub secrets_in_answers: ContentMode,
    /// Terminal escapes and invisible characters.
    pub sanitize: SanitizeSetting,
    /// Hidden tags and HTML comments in results and server-initiated messages.
    pub hidden_tags: HiddenTagsSetting,
}

impl Default for ContentConfig {
    /// Zero configuration: poisoned definitions withheld, injections reported, secrets redacted,
    /// personal data reported (many tools legitimately return names and addresses; set
    /// `pii = "redact"` to remove them), escapes and invisible characters stripped, hidden
    /// tags and HTML comments in results made visible (nothing is removed, nothing stays
    /// hidden from the user).
    fn default() -> Self {
        Self {
            poisoning: DefinitionMode::Block,
            injection: ContentMode::Report,
            secrets: ContentMode::Redact,
            pii: ContentMode::Report,
            // Reported, not changed: a credential in a call's arguments may be the call's
            // purpose (a login tool), and redacting or refusing it changes what the call does.
            secrets_in_arguments: ContentMode::Report,
            // Redacted: a completion the server asked the client's model for has no reason to
            // carry a key, and servers must not ask for sensitive data through a form.
            secrets_in_answers: ContentMode::Redact,
            sanitize: SanitizeSetting::Strip,
            hidden_tags: HiddenTagsSetting::Visible,
        }
    }
}

impl ContentConfig {
    /// `raw` over `self`: keys `raw` sets replace, the rest are kept.
    pub fn with(self, raw: &RawContent) -> Self {
        Self {
            poisoning: raw.poisoning.unwrap_or(self.poisoning),
            injection: raw.injection.unwrap_or(self.injection),
            secrets: raw.secrets.unwrap_or(self.secrets),
            pii: raw.pii.unwrap_or(self.pii),
            secrets_in_arguments: raw
                .secrets_in_arguments
                .unwrap_or(self.secrets_in_arguments),
            secrets_in_answers: raw.secrets_in_answers.unwrap_or(self.secrets_in_answers),
            sanitize: raw.sanitize.unwrap_or(self.sanitize),
            hidden_tags: raw.hidden_tags.unwrap_or(self.hidden_tags),
        }
    }
}

impl crate::Config {
    /// The content settings in force for `upstream`: its own `content` keys over `[content]`.
    pub fn content_of(&self, upstream: &crate::UpstreamConfig) -> ContentConfig {
        match &upstream.content {
            Some(raw) => self.content.with(raw),
            None => self.content,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Doc {
        content: RawContent,
    }

    #[test]
    fn parses_modes_and_merges_over_the_default() {
        let doc: Doc =
            toml::from_str("[content]\nsecrets = \"block\"\nsanitize = \"visible\"\nsecrets_in_arguments = \"redact\"").unwrap();
        let c = ContentConfig::default().with(&doc.content);
        assert_eq!(c.secrets, ContentMode::Block);
        assert_eq!(c.secrets_in_arguments, ContentMode::Redact);
        assert_eq!(
            ContentConfig::default().secrets_in_arguments,
            ContentMode::Report
        );
        assert_eq!(c.sanitize, SanitizeSetting::Visible);
        assert_eq!(
            c.poisoning,
            DefinitionMode::Block,
            "unset keys keep the default"
        );
    }

    #[test]
    fn rejects_unknown_modes_and_keys() {
        assert!(
            toml::from_str::<Doc>("[content]\npoisoning = \"redact\"").is_err(),
            "definitions are withheld, not redacted"
        );
        assert!(toml::from_str::<Doc>("[content]\nsecrets = \"hide\"").is_err());
        assert!(toml::from_str::<Doc>("[content]\nsecret = \"redact\"").is_err());
        assert!(toml::from_str::<Doc>("[content]\nhidden_tags = \"redact\"").is_err());
    }

    #[test]
    fn hidden_tags_default_to_visible_and_parse_every_mode() {
        assert_eq!(
            ContentConfig::default().hidden_tags,
            HiddenTagsSetting::Visible
        );
        for (text, want) in [
            ("report", HiddenTagsSetting::Report),
            ("visible", HiddenTagsSetting::Visible),
            ("strip", HiddenTagsSetting::Strip),
        ] {
            let doc: Doc = toml::from_str(&format!("[content]\nhidden_tags = \"{text}\"")).unwrap();
            assert_eq!(
                ContentConfig::default().with(&doc.content).hidden_tags,
                want
            );
        }
    }
}
