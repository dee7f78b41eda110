//! Command pinning settings: `command_pinning = "off" | "report" | "block"`, at the top level
//! (the default of every stdio upstream, and the setting of `mcp-warden run`) and per upstream.
//! Unset, it follows `pinning`: zero configuration pins commands and blocks a changed one.

use crate::pinning::PinningMode;

impl crate::Config {
    /// The command pinning mode in force for `upstream`: its own `command_pinning`, else the
    /// top-level `command_pinning`, else its tool-definition pinning mode
    /// ([`crate::Config::pinning_of`]).
    pub fn command_pinning_of(&self, upstream: &crate::UpstreamConfig) -> PinningMode {
        upstream
            .command_pinning
            .or(self.command_pinning)
            .unwrap_or_else(|| self.pinning_of(upstream))
    }

    /// The command pinning mode of `mcp-warden run`: `command_pinning`, else `pinning`.
    pub fn run_command_pinning(&self) -> PinningMode {
        self.command_pinning.unwrap_or(self.pinning)
    }
}

#[cfg(test)]
mod tests {
    use crate::{Config, PinningMode};

    #[test]
    fn follows_its_own_then_the_top_level_then_tool_pinning() {
        let config = Config::parse(
            "pinning = \"report\"\n\
             [upstreams.a]\ncommand = \"a\"\n\
             [upstreams.b]\ncommand = \"b\"\ncommand_pinning = \"off\"\n\
             [upstreams.c]\ncommand = \"c\"\npinning = \"block\"\n",
            "warden.toml",
        )
        .unwrap();
        let [a, b, c] = config.upstreams.as_slice() else {
            panic!("three upstreams")
        };
        assert_eq!(config.command_pinning_of(a), PinningMode::Report);
        assert_eq!(config.command_pinning_of(b), PinningMode::Off);
        assert_eq!(config.command_pinning_of(c), PinningMode::Block);
        assert_eq!(config.run_command_pinning(), PinningMode::Report);

        let config = Config::parse(
            "command_pinning = \"report\"\n[upstreams.a]\ncommand = \"a\"\n",
            "warden.toml",
        )
        .unwrap();
        assert_eq!(config.pinning, PinningMode::Block);
        assert_eq!(
            config.command_pinning_of(&config.upstreams[0]),
            PinningMode::Report
        );
        assert_eq!(config.run_command_pinning(), PinningMode::Report);
        assert_eq!(Config::default().run_command_pinning(), PinningMode::Block);
    }

    #[test]
    fn a_bad_mode_names_file_line_and_field() {
        let errors = Config::parse(
            "[upstreams.a]\ncommand = \"a\"\ncommand_pinning = \"warn\"\n",
            "warden.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            errors.starts_with("warden.toml:3: upstreams.a.command_pinning: invalid value"),
            "{errors}"
        );
    }
}
