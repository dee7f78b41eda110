//! One module per subcommand.

pub(crate) mod alerts;
pub(crate) mod audit;
pub(crate) mod check;
pub(crate) mod content;
pub(crate) mod guards;
pub(crate) mod inspect;
pub(crate) mod keys;
pub(crate) mod metrics;
pub(crate) mod pins;
pub(crate) mod pipeline;
pub(crate) mod redact;
pub(crate) mod run;
pub(crate) mod scan;
pub(crate) mod secrets;
pub(crate) mod serve;
pub(crate) mod trace;
pub(crate) mod wrap;

use std::process::ExitCode;

use anyhow::Context;
use warden_config::Config;
use warden_config::env::{EnvSource, ProcessEnv};

use crate::cli::{Cli, Command, Common};

/// Runs the chosen subcommand.
pub(crate) fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => run::run(args),
        Command::Scan(args) => scan::scan(args),
        Command::Check(args) => check::check(args),
        Command::Wrap(args) => wrap::wrap(args, false),
        Command::Unwrap(args) => wrap::wrap(args, true),
        Command::Serve(args) => serve::serve(args),
        Command::Audit(args) => audit::audit(args),
        Command::Keys(args) => keys::keys(args),
        Command::Pins(args) => pins::pins(args),
        Command::Secrets(args) => secrets::secrets(args),
        Command::Redact(args) => redact::redact(args),
        Command::Inspect(args) => inspect::inspect(args),
    }
}

/// What every gateway command resolves before it starts.
pub(crate) struct Prepared {
    pub(crate) config: Config,
}

/// Loads the configuration (flag, then `MCP_WARDEN_CONFIG`, else the zero-config default) and
/// sets up logging.
pub(crate) fn prepare(
    common: &Common,
    default_filter: &str,
    require_config: bool,
) -> anyhow::Result<Prepared> {
    let env = ProcessEnv;
    let path = warden_config::resolve_config_path(common.config.as_deref(), &env);
    let config = match &path {
        Some(p) => Config::load(p).map_err(|errors| anyhow::anyhow!("{errors}"))?,
        None if require_config => anyhow::bail!(
            "a configuration file is required: pass --config FILE or set MCP_WARDEN_CONFIG"
        ),
        None => Config::default(),
    };
    let filter = common
        .log_level
        .clone()
        .or_else(|| config.resolve_log_filter(&env))
        .unwrap_or_else(|| default_filter.to_owned());
    crate::logging::init(&filter, common.log_file.as_deref())?;
    let data_dir = config
        .resolve_data_dir(common.data_dir.as_deref(), &env)
        .ok();
    if let Some(dir) = &data_dir {
        crate::sandbox::cache_probe_in(dir);
    }
    let audit_log = data_dir
        .as_deref()
        .map(|d| config.resolve_audit_log(common.audit_log.as_deref(), d, &env));
    // The data directory and audit log locations are resolved (and reported) now; the pin
    // store and the audit writer that use them are not part of this build yet.
    tracing::debug!(
        config = ?path,
        data_dir = ?data_dir,
        audit_log = ?audit_log,
        "configuration loaded"
    );
    Ok(Prepared { config })
}

/// The process environment, for resolving `env:` references.
pub(crate) fn env() -> impl EnvSource {
    ProcessEnv
}

/// Waits for SIGINT or SIGTERM.
pub(crate) async fn termination() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot install a SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("cannot listen for SIGINT")?,
        _ = term.recv() => {}
    }
    Ok(())
}
