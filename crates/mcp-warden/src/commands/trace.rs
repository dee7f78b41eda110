//! `[tracing]` -> the trace propagator of the gateway and the audit tap exporting its spans
//! (see `docs/tracing.md`).

use std::sync::Arc;

use anyhow::Context as _;
use warden_audit::AuditTap;
use warden_config::Config;
use warden_config::env::EnvSource;
use warden_trace::otlp::Resource;
use warden_trace::{ExportOptions, Propagator, Sampler, TraceExporter};

/// The propagator for [`warden_session::GatewayOptions::trace`], when tracing is on and the
/// gateway audits (spans come from the audit records; validation refuses one without the
/// other, and a log that is not open means no span could be completed).
pub(crate) fn propagator(config: &Config, audited: bool) -> Option<Propagator> {
    let t = config.tracing.as_ref()?;
    audited.then(|| Propagator::new(Sampler::ratio(t.sample_ratio.get())))
}

/// The exporting audit tap, when tracing is on. Header references are resolved here, once;
/// an unresolvable one stops startup (a gateway configured to trace never runs untraced).
pub(crate) fn taps(config: &Config, env: &dyn EnvSource) -> anyhow::Result<Vec<Arc<dyn AuditTap>>> {
    let Some(t) = &config.tracing else {
        return Ok(Vec::new());
    };
    let mut headers = Vec::with_capacity(t.headers.len());
    for (name, value) in &t.headers {
        let what = format!("tracing.headers.{name}");
        headers.push((name.clone(), crate::upstreams::resolve(value, env, &what)?));
    }
    let exporter = TraceExporter::start(ExportOptions {
        endpoint: t.endpoint.clone(),
        headers,
        resource: Resource {
            service_name: t.service_name.clone(),
            service_version: env!("CARGO_PKG_VERSION").to_owned(),
        },
        timeout: t.timeout,
        interval: t.export_interval,
        queue: t.queue.get(),
        max_batch: t.max_batch.get(),
        tls: warden_http::TlsOptions {
            extra_roots: match &t.ca_file {
                Some(path) => warden_http::read_ca_file(path)
                    .map_err(|e| anyhow::anyhow!("tracing.ca_file: {e}"))?,
                None => Vec::new(),
            },
            identity: None,
        },
    })
    .context("cannot start trace export")?;
    tracing::info!(endpoint = %t.endpoint, "trace export on");
    Ok(vec![Arc::new(exporter)])
}
