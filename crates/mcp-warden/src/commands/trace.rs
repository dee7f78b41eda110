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
        tls: warden_http::TlsOptions::trusting(t.ca_file.as_deref())
            .map_err(|e| anyhow::anyhow!("tracing.ca_file: {e}"))?,
    })
    .context("cannot start trace export")?;
    tracing::info!(endpoint = %t.endpoint, "trace export on");
    Ok(vec![Arc::new(exporter)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unusable_ca_file_stops_start_up_naming_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let text = format!(
            "[tracing]\nendpoint = \"http://127.0.0.1:4318\"\nca_file = {}\n",
            serde_json::to_string(&junk.display().to_string()).unwrap()
        );
        let config = Config::parse(&text, "warden.toml").unwrap();
        let env = warden_config::env::MapEnv::default();
        let error = match taps(&config, &env) {
            Ok(_) => panic!("an unusable ca_file must stop start-up"),
            Err(e) => format!("{e:#}"),
        };
        assert!(error.contains("tracing.ca_file: "), "{error}");
        assert!(error.contains(&junk.display().to_string()), "{error}");
    }
}
