//! The sandbox of stdio upstreams: `[sandbox]` settings -> a `warden_sandbox` plan, the probe
//! of what this machine enforces (run once), and the hidden launcher entry point
//! (`mcp-warden __sandbox-exec`).

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;
use std::sync::OnceLock;

use anyhow::{Context, bail};
use tracing::{info, warn};
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

/// What this machine enforces, probed once per gateway process with the real launcher.
pub(crate) fn availability() -> &'static Availability {
    static AVAILABILITY: OnceLock<Availability> = OnceLock::new();
    AVAILABILITY.get_or_init(|| {
        let probed = std::env::current_exe()
            .context("locating the gateway binary for the sandbox launcher")
            .and_then(|exe| {
                warden_sandbox::probe(&exe, &std::env::temp_dir()).map_err(anyhow::Error::from)
            });
        match probed {
            Ok(availability) => availability,
            Err(error) => {
                warn!(error = %format!("{error:#}"), "sandbox probe failed; treating every sandbox control as unavailable");
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
