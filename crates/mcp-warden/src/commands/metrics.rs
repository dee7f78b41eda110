//! The Prometheus `/metrics` listener of `serve` (`[metrics]`) and `run` (`--metrics`).
//!
//! The registry is an audit tap: it is handed to the audit log when the log opens, and the
//! listener starts once the log is open (its queue depth is read at each scrape).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use warden_audit::{AuditLog, AuditTap};
use warden_config::Config;
use warden_metrics::{Metrics, MetricsOptions, MetricsServer, ServerOptions};

/// Metrics of a running gateway: the registry, and where to serve it.
pub(crate) struct GatewayMetrics {
    metrics: Arc<Metrics>,
    listen: SocketAddr,
    bearer_token: Option<String>,
    queue_capacity: u64,
}

impl GatewayMetrics {
    /// Metrics served at `listen` with the rest of `[metrics]`; `None` when `listen` is.
    /// `serve` passes `[metrics] listen`; `run` passes only `--metrics ADDR`, because many
    /// `run` gateways often share one configuration file and could not all bind its port.
    pub(crate) fn from_config(
        config: &Config,
        listen: Option<SocketAddr>,
    ) -> anyhow::Result<Option<Self>> {
        let m = &config.metrics;
        let Some(listen) = listen else {
            return Ok(None);
        };
        // `[metrics] listen` was checked with the file; an address from the command line is
        // held to the same rules here.
        if !config.audit.enabled {
            anyhow::bail!(
                "metrics are derived from the audit record stream and need the audit log; \
                 remove [audit] enabled = false or do not ask for metrics"
            );
        }
        let bearer_token = match &m.bearer_token {
            Some(v) => Some(crate::upstreams::resolve(
                v,
                &super::env(),
                "[metrics] bearer_token",
            )?),
            None => None,
        };
        if !listen.ip().is_loopback() && bearer_token.is_none() && !m.insecure_allow_non_loopback {
            anyhow::bail!(
                "refusing to serve metrics on non-loopback address {listen} without a bearer \
                 token; set [metrics] bearer_token or insecure_allow_non_loopback = true"
            );
        }
        if !listen.ip().is_loopback() && bearer_token.is_none() {
            tracing::warn!(%listen, "serving metrics WITHOUT AUTHENTICATION on a non-loopback address ([metrics] insecure_allow_non_loopback = true)");
        }
        Ok(Some(Self {
            metrics: Arc::new(Metrics::new(MetricsOptions::new(
                m.max_label_values,
                env!("CARGO_PKG_VERSION"),
            ))),
            listen,
            bearer_token,
            queue_capacity: u64::try_from(config.audit.queue.get()).unwrap_or(u64::MAX),
        }))
    }

    /// The audit tap that feeds the registry.
    pub(crate) fn tap(&self) -> Arc<dyn AuditTap> {
        self.metrics.clone()
    }

    /// Binds the listener and serves it on the current runtime until `shutdown`. A bind
    /// failure stops startup: metrics that were asked for are not silently missing.
    pub(crate) async fn start(
        &self,
        audit: Option<AuditLog>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<SocketAddr> {
        let server = MetricsServer::bind(
            self.listen,
            self.metrics.clone(),
            ServerOptions {
                bearer_token: self.bearer_token.clone(),
                audit,
                audit_queue_capacity: Some(self.queue_capacity),
            },
        )
        .await
        .context("cannot start the metrics listener")?;
        let addr = server.local_addr();
        tokio::spawn(server.run(shutdown));
        tracing::info!(%addr, "serving metrics at /metrics");
        Ok(addr)
    }
}

/// The taps of `metrics`, for [`super::audit::GatewayAudit::open_for_gateway`].
pub(crate) fn taps(metrics: Option<&GatewayMetrics>) -> Vec<Arc<dyn AuditTap>> {
    metrics.map(GatewayMetrics::tap).into_iter().collect()
}
