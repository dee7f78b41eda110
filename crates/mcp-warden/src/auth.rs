//! Builds the HTTP face's authenticator from `[auth]`: resolves the introspection secret,
//! loads API keys and keeps them refreshed.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use warden_auth::{ApiKeyVerifier, Authenticator, Secret};
use warden_config::Config;
use warden_config::env::EnvSource;
use warden_downstream::http::HttpAuth;

use crate::commands::keys;
use crate::upstreams;

/// The authenticator for `serve`, or `None` when `[auth]` configures no method. API keys are
/// loaded before this returns (a store that cannot be read stops startup) and re-read every
/// `api_key_refresh` until `shutdown`.
pub(crate) async fn http_auth(
    config: &Config,
    data_dir: Option<&Path>,
    env: &dyn EnvSource,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<HttpAuth>> {
    let auth = &config.auth;
    if !auth.is_enabled() {
        return Ok(None);
    }
    let secret = match auth.oauth.as_ref().and_then(|o| o.introspection.as_ref()) {
        Some(introspection) => Some(Secret::new(upstreams::resolve(
            &introspection.client_secret,
            env,
            "auth.introspection.client_secret",
        )?)),
        None => None,
    };
    let verifier = match &auth.api_keys {
        None => None,
        Some(settings) => {
            let data_dir = data_dir.context(
                "api keys need a data directory: pass --data-dir, set MCP_WARDEN_DATA_DIR or data_dir",
            )?;
            let verifier = Arc::new(keys::verifier(data_dir)?);
            let count = verifier
                .refresh()
                .await
                .context("cannot read the api key store")?;
            tracing::info!(keys = count, "api keys loaded");
            tokio::spawn(refresh_keys(
                Arc::clone(&verifier),
                settings.refresh,
                shutdown.clone(),
            ));
            Some(verifier)
        }
    };
    let authenticator =
        Authenticator::new(auth, secret, verifier).context("cannot set up authentication")?;
    Ok(Some(HttpAuth(Arc::new(authenticator))))
}

async fn refresh_keys(
    verifier: Arc<ApiKeyVerifier>,
    every: std::time::Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        if let Err(error) = verifier.refresh().await {
            // A store held by `mcp-warden keys` is the usual cause; the snapshot stays.
            tracing::debug!(error = %error, "api key refresh skipped");
        }
    }
    // Last-used times recorded since the last refresh.
    let _ = verifier.refresh().await;
}
