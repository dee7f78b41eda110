//! `mcp-warden`: a security gateway for the Model Context Protocol.
//!
//! The binary parses the command line ([`cli`]), loads `warden.toml`, and runs one command
//! ([`commands`]). It is the only crate that uses `anyhow`; every other crate returns typed
//! errors. In `run` mode stdout is the protocol: nothing but MCP messages is ever written
//! there, and logs go to stderr or a file.
#![forbid(unsafe_code)]

mod auth;
mod cli;
mod command_pins;
mod commands;
mod egress;
mod keyring;
mod logging;
mod sandbox;
mod upstreams;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // `mcp-warden __sandbox-exec ...` is the sandbox launcher (hidden; started by the gateway
    // itself). Checked before anything else runs: the launcher forks, so no thread may exist.
    if let Some(code) = sandbox::launcher_main() {
        return code;
    }
    let cli = cli::Cli::parse();
    match commands::dispatch(cli) {
        Ok(code) => code,
        Err(err) => {
            // Logging may not be set up yet (a configuration error); stderr is always safe.
            let mut text = format!("mcp-warden: {err}");
            for cause in err.chain().skip(1) {
                text.push_str(&format!("\n  caused by: {cause}"));
            }
            logging::emergency(&text);
            ExitCode::from(2)
        }
    }
}
