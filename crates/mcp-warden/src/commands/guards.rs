//! The request guards (`[policy]`, `[rate_limit]`, `[arguments]`) installed into the pipeline
//! `serve` and `run` build.

use anyhow::Context;
use warden_config::Config;
use warden_guard::Pipeline;

use crate::cli::Common;

/// Installs the request guards the configuration asks for into `pipeline`. Relative policy
/// files are read from the configuration file's directory.
pub(crate) fn install(
    pipeline: Pipeline,
    common: &Common,
    config: &Config,
) -> anyhow::Result<Pipeline> {
    let path = warden_config::resolve_config_path(common.config.as_deref(), &super::env());
    let base = path
        .as_deref()
        .and_then(std::path::Path::parent)
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    let guards =
        warden_policy::build(config, &base, None).context("cannot build the request guards")?;
    for (stage, guard) in &guards {
        tracing::debug!(stage = ?stage, guard = guard.name(), "request guard installed");
    }
    Ok(warden_policy::install(pipeline, guards))
}
