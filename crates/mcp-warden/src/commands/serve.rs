//! `mcp-warden serve`: one Streamable HTTP endpoint in front of the configured upstreams.

use std::process::ExitCode;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use warden_config::Config;
use warden_downstream::{HttpOptions, TlsFiles};
use warden_session::{Gateway, GatewayOptions};

use crate::cli::ServeArgs;
use crate::upstreams;

/// HTTP options from the configuration.
pub(crate) fn http_options(config: &Config, listen: std::net::SocketAddr) -> HttpOptions {
    let mut o = HttpOptions::new(listen);
    o.allowed_hosts = config.allowed_hosts.clone();
    o.allowed_origins = config.allowed_origins.clone();
    o.cors_origins = config.cors_origins.clone();
    o.max_body_bytes = config.limits.max_body_bytes.get();
    o.limits = upstreams::limits(config);
    o.header_read_timeout = config.http.header_read_timeout;
    o.sse_keepalive = config.http.sse_keepalive;
    o.sse_replay_buffer = config.http.sse_replay_buffer;
    o.max_streams_per_session = config.http.max_streams_per_session.get();
    o.tls = config.http.tls.as_ref().map(|t| TlsFiles {
        cert: t.cert.clone(),
        key: t.key.clone(),
    });
    o
}

pub(crate) fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let prepared = super::prepare(&args.common, "info", true)?;
    let config = prepared.config;
    let listen = args.listen.unwrap_or(config.listen);
    if !listen.ip().is_loopback() && !config.auth.is_enabled() {
        // Without an authentication method ([auth]), a non-loopback address would expose every
        // upstream to the network. Only an explicit, loudly logged opt-out allows it.
        if !config.insecure_allow_unauthenticated_non_loopback {
            anyhow::bail!(
                "refusing to serve on non-loopback address {listen} without authentication; \
                 configure [auth] (issuer or api_keys) or set \
                 insecure_allow_unauthenticated_non_loopback = true to accept the risk"
            );
        }
        tracing::warn!(%listen, "serving WITHOUT AUTHENTICATION on a non-loopback address (insecure_allow_unauthenticated_non_loopback = true)");
    }
    if !config.cors_origins.patterns().is_empty() && !config.auth.is_enabled() {
        // Only this machine's origins are accepted then (the configuration refuses others).
        tracing::warn!(
            origins = %config.cors_origins.patterns().iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
            "browser pages of these origins may call every tool without authentication (cors_origins without [auth])"
        );
    }
    let mut defs = upstreams::all(&config, &super::env())?;
    // Command pins (RUN-3): what each stdio command runs is read now, checked before spawns.
    let data_dir = config
        .resolve_data_dir(args.common.data_dir.as_deref(), &super::env())
        .ok();
    let command_targets =
        crate::command_pins::for_config(&config, data_dir.as_deref(), &super::env())?;
    let metrics = super::metrics::GatewayMetrics::from_config(&config, config.metrics.listen)?;
    let mut http = http_options(&config, listen);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let options = GatewayOptions {
            transparent: false,
            session_idle: config.http.session_idle_timeout,
            session_max_lifetime: config.http.session_max_lifetime,
            max_sessions: config.http.max_sessions.get(),
            ..GatewayOptions::default()
        };
        let audit = super::audit::GatewayAudit::open_for_gateway(
            &args.common,
            &config,
            "serve",
            metrics.as_ref(),
        )?;
        let identities: std::collections::HashMap<String, _> = command_targets
            .iter()
            .map(|t| (t.name.clone(), t.identity))
            .collect();
        let verdicts = crate::command_pins::verify(
            data_dir.as_deref(),
            command_targets,
            audit.log().as_ref(),
        )
        .await?;
        for (name, message) in &verdicts.refused {
            // Like an upstream that fails to start: served without it, loudly.
            tracing::error!(upstream = %name, reason = %message, "upstream not started: its command changed since it was pinned");
            defs.retain(|d| &d.name != name);
        }
        // Each sandbox runs only the file that was checked (RUN-3).
        for def in &mut defs {
            if let (Some(identity), warden_session::Transport::Stdio(spec)) =
                (identities.get(&def.name), &mut def.transport)
            {
                spec.set_program_identity(*identity);
            }
        }
        // The metrics listener before the upstreams: a port in use stops startup early.
        let metrics_shutdown = CancellationToken::new();
        let _stop_metrics = metrics_shutdown.clone().drop_guard();
        if let Some(m) = &metrics {
            m.start(audit.log(), metrics_shutdown.clone()).await?;
        }
        let options = GatewayOptions {
            audit: audit.log(),
            trace: super::trace::propagator(&config, audit.log().is_some()),
            prelaunch: crate::command_pins::Recheck::for_config(
                &config,
                data_dir.as_deref(),
                audit.log(),
            ),
            on_exit: Some(crate::sandbox::exit_hook()),
            ..options
        };
        let pipeline =
            super::pipeline::build(&args.common, &config, super::pipeline::Shape::Serve).await?;
        // Authentication before the gateway starts its upstreams: a bad [auth] stops startup.
        let auth_shutdown = CancellationToken::new();
        let _stop_auth = auth_shutdown.clone().drop_guard();
        http.auth =
            crate::auth::http_auth(&config, data_dir.as_deref(), &super::env(), &auth_shutdown)
                .await?;
        let pipeline = audit.observe(pipeline);
        http.audit = audit.log();
        let gateway = Gateway::start(defs, pipeline, options)
            .await
            .context("cannot start the gateway")?;
        audit.started(&gateway);
        let server = warden_downstream::bind_http(gateway.clone(), http)
            .await
            .context("cannot listen")?;
        tracing::info!(addr = %server.local_addr(), upstreams = config.upstreams.len(), "serving MCP at /mcp");
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = super::termination().await {
                tracing::error!(error = %e, "signal handling failed");
            }
            stop.cancel();
        });
        let result = server.run(shutdown).await;
        gateway.shutdown().await;
        audit.close().await;
        result.context("http server failed")?;
        Ok(ExitCode::SUCCESS)
    })
}
