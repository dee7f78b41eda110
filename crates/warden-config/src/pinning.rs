//! Tool-definition pinning settings: `pinning = "off" | "report" | "block"`, at the top level
//! (the default for every upstream, and the setting of `mcp-warden run`) and per upstream.

use std::fmt;

/// What tool-definition pinning does for an upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum PinningMode {
    /// No pinning: definitions are neither recorded nor checked.
    Off,
    /// Pin on first sight and record changes (`mcp-warden pins list|diff`), but hold nothing.
    Report,
    /// Pin on first sight; hold a changed, added or ambiguous definition (withheld from lists,
    /// calls refused) until `mcp-warden pins approve`. The default: zero configuration must
    /// already defend against a server that changes its tools after they were trusted.
    #[default]
    Block,
}

impl PinningMode {
    /// The name as written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Report => "report",
            Self::Block => "block",
        }
    }
}

impl fmt::Display for PinningMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for PinningMode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = PinningMode;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"off\", \"report\" or \"block\"")
            }

            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<PinningMode, E> {
                [PinningMode::Off, PinningMode::Report, PinningMode::Block]
                    .into_iter()
                    .find(|mode| mode.as_str() == value)
                    .ok_or_else(|| E::invalid_value(serde::de::Unexpected::Str(value), &self))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

impl crate::Config {
    /// The pinning mode in force for `upstream`: its own `pinning`, else the top-level one.
    pub fn pinning_of(&self, upstream: &crate::UpstreamConfig) -> PinningMode {
        upstream.pinning.unwrap_or(self.pinning)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Doc {
        pinning: PinningMode,
    }

    #[test]
    fn parses_the_three_modes_and_rejects_others() {
        for mode in [PinningMode::Off, PinningMode::Report, PinningMode::Block] {
            let doc: Doc = toml::from_str(&format!("pinning = \"{mode}\"")).unwrap();
            assert_eq!(doc.pinning, mode);
        }
        let err = toml::from_str::<Doc>("pinning = \"hold\"")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("\"off\", \"report\" or \"block\""), "{err}");
        assert_eq!(PinningMode::default(), PinningMode::Block);
    }

    #[test]
    fn upstreams_inherit_the_top_level_mode_unless_they_set_their_own() {
        let config = crate::Config::parse(
            "pinning = \"report\"\n[upstreams.a]\nurl = \"https://a.example/mcp\"\n\
             [upstreams.b]\nurl = \"https://b.example/mcp\"\npinning = \"off\"\n",
            "warden.toml",
        )
        .unwrap();
        assert_eq!(config.pinning, PinningMode::Report);
        let [a, b] = config.upstreams.as_slice() else {
            panic!("two upstreams")
        };
        assert_eq!(config.pinning_of(a), PinningMode::Report);
        assert_eq!(config.pinning_of(b), PinningMode::Off);
        let zero = crate::Config::default();
        assert_eq!(zero.pinning, PinningMode::Block);
    }

    #[test]
    fn a_bad_mode_names_file_line_and_field() {
        let errors = crate::Config::parse(
            "[upstreams.a]\nurl = \"https://a.example/mcp\"\npinning = \"hold\"\n",
            "warden.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            errors.starts_with("warden.toml:3: upstreams.a.pinning: invalid value"),
            "{errors}"
        );
    }
}
