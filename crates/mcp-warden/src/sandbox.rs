//! The sandbox of stdio upstreams: `[sandbox]` settings -> a `warden_sandbox` plan, the probe
//! of what this machine enforces (run once), and the hidden launcher entry point
//! (`mcp-warden __sandbox-exec`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};
use tracing::{debug, info, warn};
use warden_config::env::EnvSource;
use warden_config::{SandboxConfig, SandboxNetwork};
use warden_sandbox::launcher::LAUNCHER_ARG;
use warden_sandbox::plan::DEFAULT_ENV_ALLOW;
use warden_sandbox::{Availability, Network, ResourceLimits, Sandbox, Settings};

/// Runs the launcher when the binary was started as `mcp-warden __sandbox-exec ...`.
pub(crate) fn launcher_main() -> Option<ExitCode> {
    let mut args = std::env::args_os().skip(1);
    if args.next()? != LAUNCHER_ARG {
        return None;
    }
    let rest: Vec<OsString> = args.collect();
    let code = warden_sandbox::launcher::main(&rest);
    Some(ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX)))
}

mod probe_cache;

/// The data directory, where the probe's result is cached (set once at start-up).
static PROBE_CACHE_DIR: OnceLock<PathBuf> = OnceLock::new();

/// Whether [`availability`] came from the cache.
static FROM_CACHE: AtomicBool = AtomicBool::new(false);

/// Caches the probe's result in `data_dir` (see `probe_cache`). Without this call every
/// process probes.
pub(crate) fn cache_probe_in(data_dir: &Path) {
    let _ = PROBE_CACHE_DIR.set(data_dir.to_owned());
}

/// The gateway's upstream exit hook: when the launcher reports that it could not build a
/// sandbox (exit status 125), a cached probe result is forgotten, so that the next start
/// probes again (the machine may have changed in a way the cache key does not capture).
pub(crate) fn exit_hook() -> warden_session::gateway::ExitHook {
    std::sync::Arc::new(|upstream: &str, code: Option<i32>| {
        if code == Some(warden_sandbox::launcher::EXIT_SETUP_FAILED)
            && FROM_CACHE.load(Ordering::Relaxed)
            && let Some(dir) = PROBE_CACHE_DIR.get()
        {
            warn!(
                upstream,
                "the sandbox could not be built; the cached probe result is dropped and the next start probes again"
            );
            probe_cache::forget(dir);
        }
    })
}

/// What this machine enforces, probed once per gateway process with the real launcher (or
/// read from the cache of an earlier probe in the same context).
pub(crate) fn availability() -> &'static Availability {
    static AVAILABILITY: OnceLock<Availability> = OnceLock::new();
    AVAILABILITY.get_or_init(|| {
        let exe = match std::env::current_exe() {
            Ok(exe) => exe,
            Err(error) => {
                warn!(%error, "cannot locate the gateway binary for the sandbox launcher; treating every sandbox control as unavailable");
                return Availability::none("the sandbox probe could not run");
            }
        };
        let tmp = std::env::temp_dir();
        let cache = PROBE_CACHE_DIR
            .get()
            .and_then(|dir| Some((dir, probe_cache::fingerprint(&exe, &tmp)?)));
        if let Some((dir, fingerprint)) = &cache
            && let Some(cached) = probe_cache::load(dir, fingerprint)
        {
            FROM_CACHE.store(true, Ordering::Relaxed);
            debug!(file = %dir.join(probe_cache::FILE_NAME).display(), "sandbox availability from the probe cache");
            return cached;
        }
        match warden_sandbox::probe(&exe, &tmp) {
            Ok(availability) => {
                if let Some((dir, fingerprint)) = &cache
                    && let Err(error) = probe_cache::store(dir, fingerprint, &availability)
                {
                    debug!(%error, "cannot cache the sandbox probe's result");
                }
                availability
            }
            Err(error) => {
                warn!(error = %format!("{:#}", anyhow::Error::from(error)), "sandbox probe failed; treating every sandbox control as unavailable");
                Availability::none("the sandbox probe could not run")
            }
        }
    })
}

/// How to start one stdio upstream.
pub(crate) struct Prepared {
    /// The sandbox, unless disabled by configuration.
    pub(crate) sandbox: Option<Sandbox>,
    /// The child's whole environment (allow-list plus configured values). Holds secrets.
    pub(crate) env: Vec<(String, String)>,
}

fn settings(config: &SandboxConfig) -> Settings {
    let mut env_allow: Vec<String> = DEFAULT_ENV_ALLOW.iter().map(|s| (*s).to_owned()).collect();
    env_allow.extend(config.inherit_env.iter().cloned());
    Settings {
        network: match config.network {
            SandboxNetwork::None => Network::None,
            SandboxNetwork::Loopback => Network::Loopback,
            SandboxNetwork::Full => Network::Full,
            // With the egress proxy's socket set by the caller (`egress_proxy`).
            SandboxNetwork::AllowList => Network::Loopback,
        },
        read: config.read.clone(),
        write: config.write.clone(),
        env_allow,
        limits: ResourceLimits {
            memory: config.memory,
            address_space: config.address_space,
            cpu_seconds: config.cpu_time.map(|d| d.as_secs().max(1)),
            open_files: config.open_files,
            processes: config.processes,
            file_size: config.file_size,
        },
        tmp_bytes: config.tmp_size,
        allow_unix_sockets: config.unix_sockets,
        egress_proxy: None,
    }
}

/// Plans the sandbox and environment of upstream `name`. Every control the machine cannot
/// enforce is logged by name (or refused with `require = true`); a disabled sandbox is
/// logged as a warning every time the upstream is prepared.
pub(crate) fn prepare(
    name: &str,
    config: &SandboxConfig,
    program: &str,
    args: &[String],
    cwd: Option<&Path>,
    vars: Vec<(String, String)>,
    env: &dyn EnvSource,
) -> anyhow::Result<Prepared> {
    let gateway_cwd = std::env::current_dir().context("reading the working directory")?;
    let launcher = std::env::current_exe().context("locating the gateway binary")?;
    let lookup = |key: &str| env.var(key);
    let command = warden_sandbox::Command {
        program,
        args,
        cwd,
        gateway_cwd: &gateway_cwd,
        gateway_env: &lookup,
        env: vars,
    };
    let availability = if config.enabled {
        availability().clone()
    } else {
        Availability::none("sandbox disabled")
    };
    let mut settings = settings(config);
    if config.enabled && config.network == SandboxNetwork::AllowList {
        settings.egress_proxy = Some(crate::egress::socket_for(name, &config.network_allow)?);
    }
    let planned = warden_sandbox::plan(
        &settings,
        &availability,
        &launcher,
        &std::env::temp_dir(),
        &command,
    )
    .with_context(|| format!("upstream `{name}`"))?;
    if !config.enabled {
        warn!(
            upstream = %name,
            "sandbox disabled by configuration: the server runs unconfined, with the gateway's user, filesystem and network"
        );
        return Ok(Prepared {
            sandbox: None,
            env: planned.env,
        });
    }
    if !planned.degraded.is_empty() {
        let names: Vec<&str> = planned
            .degraded
            .iter()
            .map(|d| d.control.as_str())
            .collect();
        if config.require {
            bail!(
                "upstream `{name}`: sandbox controls unavailable on this machine: {} (sandbox.require = true)",
                names.join(", ")
            );
        }
        for degraded in &planned.degraded {
            warn!(upstream = %name, control = %degraded.control, reason = %degraded.reason, "sandbox control unavailable; the server runs without it");
        }
    }
    let profile = &planned.sandbox.profile;
    info!(
        upstream = %name,
        program = %profile.program.display(),
        namespaces = profile.namespaces,
        network = profile.network.as_str(),
        egress_proxy = profile.egress_proxy.is_some(),
        landlock = profile.filesystem.is_some(),
        seccomp = profile.seccomp.is_some(),
        pids_cgroup = profile.cgroup_pids,
        memory_cgroup = profile.cgroup_memory,
        "stdio upstream sandboxed"
    );
    Ok(Prepared {
        sandbox: Some(planned.sandbox),
        env: planned.env,
    })
}
