//! `mcp-warden run`: stdio client <-> one upstream (a stdio child or a remote HTTP server).

use std::process::ExitCode;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use warden_downstream::StdioOptions;
use warden_session::{EraPreference, Gateway, GatewayOptions};

use crate::cli::{EraArg, RunArgs};
use crate::upstreams;

type Input = Box<dyn tokio::io::AsyncRead + Unpin + Send>;
type Output = Box<dyn tokio::io::AsyncWrite + Unpin + Send>;

/// The client's stdin and stdout. When they are pipes or sockets (desktop clients connect one
/// or the other: Node's `child_process` hands a socketpair per stdio slot), they are read and
/// written non-blocking on the runtime itself; tokio's `stdin()`/`stdout()` hand every read and
/// write to a blocking-pool thread, which costs a thread hop per message (about 13 µs of a
/// round trip, docs/performance.md) and a read that cannot be cancelled. Anything else (a
/// terminal, a file) uses the portable path.
fn client_pipes() -> (Input, Output) {
    use std::os::fd::AsFd;
    use tokio::net::unix::pipe;
    let input: Input = match on_runtime(std::io::stdin().as_fd(), pipe::Receiver::from_owned_fd) {
        Some(Ok(pipe)) => Box::new(pipe),
        Some(Err(socket)) => Box::new(socket),
        None => Box::new(tokio::io::stdin()),
    };
    let output: Output = match on_runtime(std::io::stdout().as_fd(), pipe::Sender::from_owned_fd) {
        Some(Ok(pipe)) => Box::new(pipe),
        Some(Err(socket)) => Box::new(socket),
        None => Box::new(tokio::io::stdout()),
    };
    (input, output)
}

/// `fd` read or written on the runtime: as a pipe (`as_pipe`), else as a socket; `None` for
/// anything else.
fn on_runtime<P>(
    fd: std::os::fd::BorrowedFd<'_>,
    as_pipe: impl FnOnce(std::os::fd::OwnedFd) -> std::io::Result<P>,
) -> Option<Result<P, tokio::net::UnixStream>> {
    let owned = fd.try_clone_to_owned().ok()?;
    match owned.try_clone().and_then(as_pipe) {
        Ok(pipe) => Some(Ok(pipe)),
        Err(_) => socket(owned).map(Err),
    }
}

/// `fd` as a non-blocking socket on the runtime, when it is a socket.
fn socket(fd: std::os::fd::OwnedFd) -> Option<tokio::net::UnixStream> {
    use std::os::unix::fs::FileTypeExt as _;
    let file = std::fs::File::from(fd);
    if !file.metadata().ok()?.file_type().is_socket() {
        return None;
    }
    let stream = std::os::unix::net::UnixStream::from(std::os::fd::OwnedFd::from(file));
    stream.set_nonblocking(true).ok()?;
    tokio::net::UnixStream::from_std(stream).ok()
}

pub(crate) fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let prepared = super::prepare(&args.common, "info", false)?;
    let config = prepared.config;
    let pref = match args.era {
        EraArg::Auto => EraPreference::Auto,
        EraArg::Legacy => EraPreference::Legacy,
        EraArg::Modern => EraPreference::Modern,
    };
    let mut def = match &args.url {
        Some(url) => upstreams::from_url(
            &config,
            url,
            &args.headers,
            args.ca_file.as_deref(),
            args.client_cert.as_deref().zip(args.client_key.as_deref()),
            pref,
            &super::env(),
        )?,
        None => upstreams::from_command(&config, &args.command, pref)?,
    };
    let data_dir = config
        .resolve_data_dir(args.common.data_dir.as_deref(), &super::env())
        .ok();
    // Command pin (RUN-3): what the command runs is read now and checked before the spawn.
    let command_pin = match &args.url {
        Some(_) => None,
        None => crate::command_pins::for_run(
            &config,
            &def.name,
            &args.command,
            data_dir.as_deref(),
            &super::env(),
        )?,
    };
    let limits = upstreams::limits(&config);
    let metrics = super::metrics::GatewayMetrics::from_config(&config, args.metrics)?;
    // One client, one upstream: a single-threaded runtime keeps every hop on one CPU, which
    // is what a round trip through the gateway costs least on.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let outcome = runtime.block_on(async move {
        let options = GatewayOptions {
            transparent: true,
            ..GatewayOptions::default()
        };
        let audit = super::audit::GatewayAudit::open_for_gateway(
            &args.common,
            &config,
            "run",
            metrics.as_ref(),
        )?;
        let mut prelaunch = None;
        if let Some(target) = command_pin {
            prelaunch = crate::command_pins::Recheck::for_run(
                &target,
                &args.command,
                data_dir.as_deref(),
                audit.log(),
            );
            let identity = target.identity;
            let verdicts =
                crate::command_pins::verify(data_dir.as_deref(), vec![target], audit.log().as_ref())
                    .await?;
            if let Some((_, message)) = verdicts.refused.into_iter().next() {
                audit.close().await;
                anyhow::bail!(message);
            }
            // The sandbox runs only the file that was checked (RUN-3).
            if let warden_session::Transport::Stdio(spec) = &mut def.transport {
                spec.set_program_identity(identity);
            }
        }
        let metrics_shutdown = tokio_util::sync::CancellationToken::new();
        let _stop_metrics = metrics_shutdown.clone().drop_guard();
        if let Some(m) = &metrics {
            m.start(audit.log(), metrics_shutdown.clone()).await?;
        }
        let options = GatewayOptions {
            audit: audit.log(),
            trace: super::trace::propagator(&config, audit.log().is_some()),
            prelaunch,
            on_exit: Some(crate::sandbox::exit_hook()),
            ..options
        };
        // Pins of a `run` server are keyed by its command line or URL (docs/pinning.md).
        let shape = super::pipeline::Shape::Run {
            name: &def.name,
            pin_id: super::pins::run_pin_id(&def.name, &args.command, args.url.as_ref()),
        };
        let pipeline = super::pipeline::build(&args.common, &config, shape).await?;
        let pipeline = audit.observe(pipeline);
        let gateway = Gateway::start(vec![def], pipeline, options)
            .await
            .context("cannot start the upstream server")?;
        audit.started(&gateway);
        tracing::info!(pids = ?gateway.upstream_pids(), "upstream started");
        let (input, output) = client_pipes();
        let stop_reading = CancellationToken::new();
        let serve = warden_downstream::stdio::serve_stdio_with(
            gateway.clone(),
            input,
            output,
            StdioOptions::new(limits).with_queue_of(&config.limits),
            stop_reading.clone(),
        );
        tokio::pin!(serve);
        let served = tokio::select! {
            r = &mut serve => r.map_err(anyhow::Error::from),
            r = super::termination() => r,
            // The upstream exited on its own: `run` does not restart it (the client's session
            // lived in it; docs/lifecycle.md), so exit non-zero for the host to restart us,
            // once the calls in flight have been answered with their errors (bounded by the
            // drain timeout).
            name = gateway.upstream_lost() => {
                stop_reading.cancel();
                // Bounded by the drain timeout; a signal meanwhile ends the wait too.
                tokio::select! {
                    _ = &mut serve => {}
                    _ = super::termination() => {}
                }
                Err(anyhow::anyhow!("upstream `{name}` exited; stopping so that the host can restart the server"))
            }
        };
        // Client gone (stdin closed) or a signal: shut the upstream down as the specification
        // says (close its stdin, wait, SIGTERM, SIGKILL), then exit.
        gateway.shutdown().await;
        audit.close().await;
        served?;
        Ok(ExitCode::SUCCESS)
    });
    // The upstream is shut down and the audit closed: nothing is left to wait for but a
    // blocking read of the client's stdin (a terminal, or a host that keeps it open and
    // silent), which cannot be cancelled and would keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    outcome
}
