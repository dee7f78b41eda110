//! `mcp-warden secrets set|check|delete|audit-key keyring:SERVICE/USER`: entries of the OS
//! keyring that `keyring:` references in `warden.toml` name (upstream `env`, HTTP headers, the
//! audit key).
//!
//! A secret is read from standard input (never from the command line, where `ps` and shell
//! history would see it) and is never printed. `audit-key` generates a fresh audit key into
//! the keyring and prints only its public fingerprint.

use std::io::{Read as _, Write as _};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use warden_config::ValueRef;

/// Largest secret read from standard input.
const MAX_SECRET_BYTES: u64 = 64 * 1024;

/// `mcp-warden secrets`.
#[derive(Debug, Args)]
pub(crate) struct SecretsArgs {
    #[command(subcommand)]
    pub(crate) command: SecretsCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum SecretsCommand {
    /// Stores the secret read from standard input (one trailing newline removed).
    Set {
        /// The entry, as `warden.toml` names it: `keyring:SERVICE/USER`.
        reference: String,
    },
    /// Exits 0 when the entry exists and is readable, 1 otherwise. Prints no secret.
    Check {
        /// `keyring:SERVICE/USER`.
        reference: String,
    },
    /// Removes the entry.
    Delete {
        /// `keyring:SERVICE/USER`.
        reference: String,
    },
    /// Generates a fresh audit key into the entry (for `[audit] key = "keyring:..."`).
    AuditKey {
        /// `keyring:SERVICE/USER`.
        reference: String,
        /// Replace an existing entry (the log's chain then needs the old key to verify).
        #[arg(long)]
        force: bool,
    },
}

fn entry(reference: &str) -> anyhow::Result<(String, String)> {
    match reference.parse::<ValueRef>() {
        Ok(ValueRef::Keyring { service, user }) => Ok((service, user)),
        Ok(_) => bail!("expected keyring:SERVICE/USER, got {reference:?}"),
        Err(e) => Err(e.into()),
    }
}

fn say(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("cannot write to stdout")
}

/// Runs `secrets`.
pub(crate) fn secrets(args: SecretsArgs) -> anyhow::Result<ExitCode> {
    crate::logging::init("warn", None)?;
    match args.command {
        SecretsCommand::Set { reference } => {
            let (service, user) = entry(&reference)?;
            let mut bytes = Vec::new();
            std::io::stdin()
                .take(MAX_SECRET_BYTES + 1)
                .read_to_end(&mut bytes)
                .context("cannot read the secret from standard input")?;
            if bytes.len() as u64 > MAX_SECRET_BYTES {
                bail!("the secret is longer than {MAX_SECRET_BYTES} bytes");
            }
            let text = String::from_utf8(bytes).context("the secret is not UTF-8 text")?;
            let secret = text
                .strip_suffix("\r\n")
                .or_else(|| text.strip_suffix('\n'))
                .unwrap_or(&text);
            crate::keyring::set(&service, &user, secret)?;
            say(&format!("stored {reference}\n"))?;
        }
        SecretsCommand::Check { reference } => {
            let (service, user) = entry(&reference)?;
            return match crate::keyring::get(&service, &user) {
                Ok(_) => {
                    say(&format!("{reference} is set\n"))?;
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    say(&format!("{e}\n"))?;
                    Ok(ExitCode::from(1))
                }
            };
        }
        SecretsCommand::Delete { reference } => {
            let (service, user) = entry(&reference)?;
            if crate::keyring::delete(&service, &user)? {
                say(&format!("deleted {reference}\n"))?;
            } else {
                say(&format!("{reference} does not exist\n"))?;
            }
        }
        SecretsCommand::AuditKey { reference, force } => {
            let (service, user) = entry(&reference)?;
            if !force && crate::keyring::get(&service, &user).is_ok() {
                bail!(
                    "{reference} already holds a value; pass --force to replace it (records written with the old key then verify only with it)"
                );
            }
            let text = warden_audit::AuditKeys::generate_text()?;
            let keys = warden_audit::AuditKeys::from_text(&text, &reference)?;
            crate::keyring::set(&service, &user, &text)?;
            say(&format!(
                "stored a new audit key in {reference}; public key {}\nset [audit] key = \"{reference}\" in warden.toml\n",
                keys.public_key().fingerprint()
            ))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
