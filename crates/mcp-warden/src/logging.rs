//! Logging setup: `tracing` to stderr (or a file), never to stdout.

use std::path::Path;

use anyhow::Context;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `filter` is an `EnvFilter` directive such as `info`.
pub(crate) fn init(filter: &str, file: Option<&Path>) -> anyhow::Result<()> {
    let filter =
        EnvFilter::try_new(filter).with_context(|| format!("invalid log filter {filter:?}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true);
    match file {
        Some(path) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open log file {}", path.display()))?;
            builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(f))
                .try_init()
                .map_err(|e| anyhow::anyhow!("logging already initialised: {e}"))?;
        }
        None => {
            builder
                .with_writer(std::io::stderr)
                .try_init()
                .map_err(|e| anyhow::anyhow!("logging already initialised: {e}"))?;
        }
    }
    Ok(())
}

/// Writes one line to stderr when logging could not be set up.
pub(crate) fn emergency(text: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{text}");
}
