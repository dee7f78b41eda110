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
    /// Audits the MCP servers configured in this machine's clients (or in the given files):
    /// plaintext credentials, unpinned packages, plain HTTP, collisions, unrouted servers.
    Scan(crate::commands::scan::ScanArgs),
    /// Checklist posture of a configuration (without `--config`: of zero-config `run`), one
    /// row per control ID.
    Check(crate::commands::check::CheckArgs),
    /// Routes every server of a client's configuration through `mcp-warden run`.
    Wrap(crate::commands::wrap::WrapArgs),
    /// Restores what `wrap` changed, byte for byte.
    Unwrap(crate::commands::wrap::WrapArgs),
    /// The audit log: `verify [FILE]` (exit 0 intact, 1 naming the first bad record),
    /// `tail`, `search`.
    Audit(crate::commands::audit::AuditArgs),
    /// API keys for the HTTP face: create (shown once), list, revoke.
    Keys(KeysArgs),
    /// Tool-definition pins: list, diff, approve, revoke.
    Pins(crate::commands::pins::PinsArgs),
    /// Secrets in the OS keyring for `keyring:SERVICE/USER` references: set (from stdin),
    /// check, delete, audit-key.
    Secrets(crate::commands::secrets::SecretsArgs),
    /// Secrets and personal data redacted from text: `mcp-warden redact FILE|-`.
    Redact(crate::commands::redact::RedactArgs),
    /// Offline analysis of tool definitions (`inspect FILE|-`) or of a tool result
    /// (`inspect --text FILE|-`): poisoning, injection, Unicode tricks.
    Inspect(crate::commands::inspect::InspectArgs),
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
    /// PEM certificates to trust for the https server besides the built-in roots (an
    /// internal certificate authority).
    #[arg(long, value_name = "PEM", requires = "url")]
    pub(crate) ca_file: Option<std::path::PathBuf>,
    /// PEM certificate chain to present when the https server asks for one (mutual TLS).
    #[arg(long, value_name = "PEM", requires_all = ["url", "client_key"])]
    pub(crate) client_cert: Option<std::path::PathBuf>,
    /// PEM private key of `--client-cert`.
    #[arg(long, value_name = "PEM", requires = "client_cert")]
    pub(crate) client_key: Option<std::path::PathBuf>,
    /// Protocol era of the server.
    #[arg(long, value_enum, default_value_t = EraArg::Auto)]
    pub(crate) era: EraArg,
    /// Serve Prometheus metrics at http://ADDR/metrics (`[metrics] listen` applies to `serve` only).
    #[arg(long, value_name = "ADDR")]
    pub(crate) metrics: Option<std::net::SocketAddr>,
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

#[derive(Debug, Args)]
pub(crate) struct KeysArgs {
    #[command(flatten)]
    pub(crate) common: Common,
    #[command(subcommand)]
    pub(crate) action: KeysAction,
}

/// Output of the `keys` commands.
#[derive(Debug, Clone, Copy, Default, ValueEnum, PartialEq, Eq)]
pub(crate) enum OutputFormat {
    /// For people.
    #[default]
    Text,
    /// One JSON document.
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeysAction {
    /// Creates a key for a principal and prints it once.
    Create {
        /// The principal the key authenticates as (letters, digits, `.`, `_`, `-`, `@`, `:`).
        #[arg(long)]
        principal: String,
        /// A role granted to requests with this key (repeatable).
        #[arg(long = "role", value_name = "ROLE")]
        roles: Vec<String>,
        /// A label shown by `keys list`.
        #[arg(long)]
        label: Option<String>,
        /// Validity, such as `90d`; without it the key does not expire.
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<humantime::Duration>,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: OutputFormat,
    },
    /// Lists keys (never the keys themselves): id, principal, status, roles, times.
    List {
        /// Only this principal's keys.
        #[arg(long)]
        principal: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: OutputFormat,
    },
    /// Revokes a key by id; requests with it are refused from the next refresh of `serve`.
    Revoke {
        /// The key id (the 16 hex digits after `mwk_`, as shown by `keys list`).
        id: String,
    },
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
                Command::Keys(a) => a.common,
                _ => unreachable!("only run and serve are parsed here"),
            };
            assert_eq!(common.data_dir.as_deref(), Some(std::path::Path::new("/d")));
            assert_eq!(
                common.audit_log.as_deref(),
                Some(std::path::Path::new("/a.jsonl"))
            );
        }
    }
}
