//! `mcp-warden run`: stdio client <-> one upstream (a stdio child or a remote HTTP server).

use std::process::ExitCode;

use anyhow::Context;
use warden_guard::Pipeline;
use warden_session::{EraPreference, Gateway, GatewayOptions};

use crate::cli::{EraArg, RunArgs};
use crate::upstreams;

pub(crate) fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let prepared = super::prepare(&args.common, "info", false)?;
    let config = prepared.config;
    let pref = match args.era {
        EraArg::Auto => EraPreference::Auto,
        EraArg::Legacy => EraPreference::Legacy,
        EraArg::Modern => EraPreference::Modern,
    };
    let def = match &args.url {
        Some(url) => upstreams::from_url(&config, url, &args.headers, pref, &super::env())?,
        None => upstreams::from_command(&config, &args.command, pref)?,
    };
    let limits = upstreams::limits(&config);
    // One client, one upstream: a single-threaded runtime keeps every hop on one CPU, which
    // is what a round trip through the gateway costs least on.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let options = GatewayOptions {
            transparent: true,
            ..GatewayOptions::default()
        };
        let gateway = Gateway::start(vec![def], Pipeline::passthrough(), options)
            .await
            .context("cannot start the upstream server")?;
        tracing::info!(pids = ?gateway.upstream_pids(), "upstream started");
        let served = tokio::select! {
            r = warden_downstream::stdio::serve_stdio(gateway.clone(), tokio::io::stdin(), tokio::io::stdout(), limits) => r.map_err(anyhow::Error::from),
            r = super::termination() => r,
        };
        // Client gone (stdin closed) or a signal: shut the upstream down as the specification
        // says (close its stdin, wait, SIGTERM, SIGKILL), then exit.
        gateway.shutdown().await;
        served?;
        Ok(ExitCode::SUCCESS)
    })
}
