//! `[alerts]` -> the alert engine the gateway taps its audit log with (see `docs/alerts.md`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use warden_alerts::{Alerts, LogSink, Secret, Sinks, WebhookSink};
use warden_config::Config;
use warden_config::env::EnvSource;

/// How long a stopping gateway waits for queued alerts to reach the sinks: long enough for a
/// webhook attempt, short enough that a dead receiver does not hold up a shutdown.
pub(crate) const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts the alert engine when `[alerts]` is enabled: resolves the webhook secret, opens the
/// alert log file (relative paths are in `data_dir`) and starts the sink thread. Fails, and
/// with it the gateway, when a sink cannot be set up: configured alerting never silently
/// does nothing.
pub(crate) fn start(
    config: &Config,
    data_dir: &Path,
    env: &dyn EnvSource,
) -> anyhow::Result<Option<Arc<Alerts>>> {
    let a = &config.alerts;
    if !a.enabled {
        return Ok(None);
    }
    let log = if a.log.enabled {
        let file = a.log.file.as_ref().map(|f| data_dir.join(f));
        Some(LogSink::open(file.as_deref()).context("alerts.log.file")?)
    } else {
        None
    };
    let webhook = match &a.webhook {
        None => None,
        Some(w) => {
            let secret = match &w.secret {
                None => None,
                Some(r) => {
                    let value = crate::upstreams::resolve(r, env, "alerts.webhook.secret")?;
                    if value.is_empty() {
                        bail!("alerts.webhook.secret: the secret is empty");
                    }
                    Some(Secret::new(value.into_bytes()))
                }
            };
            Some(WebhookSink::new(w, secret).context("alerts.webhook")?)
        }
    };
    if log.is_none() && webhook.is_none() {
        tracing::warn!("alerts enabled with no sink ([alerts.log] enabled = false, no webhook)");
    }
    let alerts = Alerts::start(a, &config.audit.sensitive_tools, Sinks { log, webhook })
        .context("cannot start the alert engine")?;
    tracing::info!(
        webhook = a.webhook.as_ref().and_then(|w| w.url.host_str()),
        "alerts enabled"
    );
    Ok(Some(Arc::new(alerts)))
}
