//! The one place the guard pipeline of `run` and `serve` is assembled; `check` reads its
//! posture from the same assembly.

use warden_config::Config;
use warden_guard::Pipeline;

use crate::cli::Common;

/// The upstream(s) the pipeline guards, as the command sees them.
pub(crate) enum Shape<'a> {
    /// `run`: one upstream, names unchanged; pins keyed by `pin_id`.
    Run {
        /// The gateway's name for the upstream.
        name: &'a str,
        /// Pin identity derived from the command line or URL.
        pin_id: String,
    },
    /// `serve`: every enabled upstream of the configuration.
    Serve,
}

/// Pinning, request guards and content guards, in pipeline order (the stages order them; the
/// installation order only matters within one stage).
pub(crate) async fn build(
    common: &Common,
    config: &Config,
    shape: Shape<'_>,
) -> anyhow::Result<Pipeline> {
    let (pin_targets, content_targets, transparent) = match shape {
        Shape::Run { name, pin_id } => (
            vec![super::pins::PinTarget {
                name: name.to_owned(),
                pin_id,
                mode: config.pinning,
                namespace: false,
            }],
            vec![super::content::ContentTarget {
                name: name.to_owned(),
                config: config.content,
                namespace: false,
            }],
            true,
        ),
        Shape::Serve => (
            config
                .upstreams
                .iter()
                .filter(|u| u.enabled)
                .map(|u| super::pins::PinTarget {
                    name: u.name.clone(),
                    pin_id: u.name.clone(),
                    mode: config.pinning_of(u),
                    namespace: u.namespace,
                })
                .collect(),
            super::content::serve_targets(config),
            false,
        ),
    };
    let pipeline = super::pins::install(
        Pipeline::passthrough(),
        common,
        config,
        pin_targets,
        transparent,
    )
    .await?;
    let pipeline = super::guards::install(pipeline, common, config)?;
    Ok(super::content::install(pipeline, config, content_targets))
}
