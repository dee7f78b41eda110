//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// A security gateway for the Model Context Protocol.
#[derive(Debug, Parser)]
#[command(name = "mcp-warden", version, about, long_about = None)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Stdio gateway around one MCP server: `mcp-warden run -- CMD ARGS...` or
    /// `mcp-warden run --url URL`. Stdout is the protocol; logs go to stderr.
    Run(RunArgs),
    /// Streamable HTTP gateway in front of the upstreams of a configuration file.
    Serve(ServeArgs),
}

/// Options every gateway command accepts, overriding the configuration file.
#[derive(Debug, Args)]
pub(crate) struct Common {
    /// Configuration file (env: MCP_WARDEN_CONFIG).
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Directory for pins, keys, approvals and the embedded store (env: MCP_WARDEN_DATA_DIR).
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Audit log file (env: MCP_WARDEN_AUDIT_LOG).
    #[arg(long, value_name = "PATH")]
    pub(crate) audit_log: Option<PathBuf>,
    /// Log filter, e.g. `info` or `warden_session=debug` (env: MCP_WARDEN_LOG).
    #[arg(long, value_name = "FILTER")]
    pub(crate) log_level: Option<String>,
    /// Write logs to this file instead of stderr.
    #[arg(long, value_name = "FILE")]
    pub(crate) log_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub(crate) enum EraArg {
    /// Probe with `server/discover`, fall back to `initialize`.
    Auto,
    /// Initialize-based revisions only (2025-11-25 and earlier).
    Legacy,
    /// Stateless revisions only (2026-07-28).
    Modern,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub(crate) common: Common,
    /// Remote Streamable HTTP server to connect to instead of starting a command.
    #[arg(long, value_name = "URL", conflicts_with = "command")]
    pub(crate) url: Option<url::Url>,
    /// Header sent to the remote server, `NAME: VALUE` or `NAME: env:VAR` (repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE", requires = "url")]
    pub(crate) headers: Vec<String>,
    /// Protocol era of the server.
    #[arg(long, value_enum, default_value_t = EraArg::Auto)]
    pub(crate) era: EraArg,
    /// The server command and its arguments, after `--`.
    #[arg(last = true, value_name = "CMD")]
    pub(crate) command: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    pub(crate) common: Common,
    /// Address to listen on, overriding `listen` in the configuration.
    #[arg(long, value_name = "ADDR")]
    pub(crate) listen: Option<std::net::SocketAddr>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_takes_the_command_after_double_dash() {
        let cli =
            Cli::try_parse_from(["mcp-warden", "run", "--", "npx", "-y", "pkg", "--flag"]).unwrap();
        let Command::Run(args) = cli.command else {
            panic!()
        };
        assert_eq!(args.command, ["npx", "-y", "pkg", "--flag"]);
    }

    #[test]
    fn run_rejects_url_and_command_together() {
        assert!(
            Cli::try_parse_from([
                "mcp-warden",
                "run",
                "--url",
                "http://127.0.0.1:1/mcp",
                "--",
                "x"
            ])
            .is_err()
        );
    }

    #[test]
    fn common_options_are_accepted_by_run_and_serve() {
        for cmd in ["run", "serve"] {
            let cli = Cli::try_parse_from([
                "mcp-warden",
                cmd,
                "--config",
                "w.toml",
                "--data-dir",
                "/d",
                "--audit-log",
                "/a.jsonl",
            ])
            .unwrap();
            let common = match cli.command {
                Command::Run(a) => a.common,
                Command::Serve(a) => a.common,
            };
            assert_eq!(common.data_dir.as_deref(), Some(std::path::Path::new("/d")));
            assert_eq!(
                common.audit_log.as_deref(),
                Some(std::path::Path::new("/a.jsonl"))
            );
        }
    }
}
