//! Configuration -> upstream definitions, resolving `env:` and `file:` references.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use warden_config::env::EnvSource;
use warden_config::{
    Config, Era, LifecycleConfig, RestartPolicy, UnhealthyAction, UpstreamConfig,
    UpstreamTransport, ValueRef,
};
use warden_proto::Limits;
use warden_session::{EraPreference, LifecyclePolicy, Transport, UpstreamDef};
use warden_upstream::{HttpSpec, StderrBudget, StdioSpec};

/// Captured stderr per line: bounds what a chatty or hostile server can put in our logs.
const STDERR_LINE_CAP: usize = 4096;
/// Time to open a TCP (and TLS) connection to a remote upstream.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Message limits of a configuration.
pub(crate) fn limits(config: &Config) -> Limits {
    Limits {
        max_message_bytes: config.limits.max_message_bytes.get(),
        max_depth: config.limits.max_depth.get(),
    }
}

fn era(e: Era) -> EraPreference {
    match e {
        Era::Auto => EraPreference::Auto,
        Era::Legacy => EraPreference::Legacy,
        Era::Modern => EraPreference::Modern,
    }
}

/// The supervision policy of `[upstreams.<name>.lifecycle]` (docs/lifecycle.md).
fn lifecycle(l: &LifecycleConfig) -> LifecyclePolicy {
    LifecyclePolicy {
        restart: l.restart == RestartPolicy::OnFailure,
        backoff_initial: l.backoff_initial,
        backoff_max: l.backoff_max,
        backoff_jitter: f64::from(l.backoff_jitter_permille) / 1000.0,
        max_restarts: l.max_restarts,
        restart_window: l.restart_window,
        down_retry: l.down_retry,
        health_interval: l.health_interval,
        health_timeout: l.health_timeout,
        health_failures: l.health_failures,
        on_unhealthy: match l.on_unhealthy {
            UnhealthyAction::Restart => warden_session::Unhealthy::Restart,
            UnhealthyAction::MarkDown => warden_session::Unhealthy::MarkDown,
        },
    }
}

/// The stderr budget of `[upstreams.<name>.lifecycle]`.
fn stderr_budget(l: &LifecycleConfig) -> Option<StderrBudget> {
    l.stderr_budget.map(|bytes| StderrBudget {
        bytes,
        window: l.stderr_window,
    })
}

/// The stderr budget of `run` (no upstream table): the defaults.
fn default_stderr_budget() -> Option<StderrBudget> {
    stderr_budget(&LifecycleConfig::default())
}

/// Resolves a value reference. Errors name the upstream and key, never the value.
pub(crate) fn resolve(value: &ValueRef, env: &dyn EnvSource, what: &str) -> anyhow::Result<String> {
    match value {
        ValueRef::Literal(v) => Ok(v.clone()),
        ValueRef::Env(name) => env
            .var(name)
            .with_context(|| format!("{what}: environment variable {name:?} is not set")),
        ValueRef::File(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("{what}: cannot read {}", path.display()))?;
            Ok(text.trim_end_matches(['\n', '\r']).to_owned())
        }
        // Read here, in the gateway, before the upstream is spawned (servers cannot reach the
        // keyring: their seccomp filter denies keyctl).
        ValueRef::Keyring { service, user } => {
            crate::keyring::get(service, user).with_context(|| what.to_owned())
        }
    }
}

/// The definition of one configured upstream.
pub(crate) fn from_config(
    config: &Config,
    upstream: &UpstreamConfig,
    env: &dyn EnvSource,
) -> anyhow::Result<UpstreamDef> {
    let limits = limits(config);
    let transport = match &upstream.transport {
        UpstreamTransport::Stdio(s) => {
            let mut vars = Vec::with_capacity(s.env.len());
            for (k, v) in &s.env {
                vars.push((
                    k.clone(),
                    resolve(v, env, &format!("upstreams.{}.env.{k}", upstream.name))?,
                ));
            }
            // The sandbox (on by default) and an environment built from an allow-list.
            let prepared = crate::sandbox::prepare(
                &upstream.name,
                &config.sandbox_of(s),
                &s.command,
                &s.args,
                s.cwd.as_deref(),
                vars,
                env,
            )?;
            Transport::Stdio(StdioSpec {
                name: upstream.name.clone(),
                program: s.command.clone(),
                args: s.args.clone(),
                env: prepared.env,
                env_clear: true,
                cwd: s.cwd.clone(),
                limits,
                shutdown_grace: s.shutdown_grace,
                stderr_cap: STDERR_LINE_CAP,
                stderr_budget: stderr_budget(&upstream.lifecycle),
                max_call_duration: Some(upstream.lifecycle.max_call_duration),
                sandbox: prepared.sandbox,
            })
        }
        UpstreamTransport::Http(h) => {
            let mut headers = Vec::with_capacity(h.headers.len());
            for (k, v) in &h.headers {
                headers.push((
                    k.clone(),
                    resolve(v, env, &format!("upstreams.{}.headers.{k}", upstream.name))?,
                ));
            }
            Transport::Http(HttpSpec {
                name: upstream.name.clone(),
                url: h.url.clone(),
                headers,
                limits,
                request_timeout: upstream.request_timeout,
                connect_timeout: CONNECT_TIMEOUT,
                max_call_duration: Some(upstream.lifecycle.max_call_duration),
                tls: tls_options(
                    h.ca_file.as_deref(),
                    h.client_identity
                        .as_ref()
                        .map(|t| (t.cert.as_path(), t.key.as_path())),
                    &format!("upstreams.{}.ca_file", upstream.name),
                    &format!("upstreams.{}.client_cert", upstream.name),
                )?,
            })
        }
    };
    Ok(UpstreamDef {
        name: upstream.name.clone(),
        transport,
        era: era(upstream.era),
        request_timeout: upstream.request_timeout,
        startup_timeout: upstream.startup_timeout,
        namespace: upstream.namespace,
        lifecycle: lifecycle(&upstream.lifecycle),
    })
}

/// Every enabled upstream of a configuration.
pub(crate) fn all(config: &Config, env: &dyn EnvSource) -> anyhow::Result<Vec<UpstreamDef>> {
    config
        .upstreams
        .iter()
        .filter(|u| u.enabled)
        .map(|u| from_config(config, u, env))
        .collect()
}

/// The upstream of `run -- CMD ARGS...`.
pub(crate) fn from_command(
    config: &Config,
    command: &[String],
    pref: EraPreference,
) -> anyhow::Result<UpstreamDef> {
    let Some((program, args)) = command.split_first() else {
        bail!("run needs a server command after `--` or --url");
    };
    let name = Path::new(program)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "server".into());
    // The sandbox of `[sandbox]` (on by default) and an environment built from an allow-list.
    let prepared = crate::sandbox::prepare(
        &name,
        &config.sandbox,
        program,
        args,
        None,
        Vec::new(),
        &crate::commands::env(),
    )?;
    Ok(UpstreamDef {
        name: name.clone(),
        transport: Transport::Stdio(StdioSpec {
            name,
            program: program.clone(),
            args: args.to_vec(),
            env: prepared.env,
            env_clear: true,
            cwd: None,
            limits: limits(config),
            shutdown_grace: warden_config::DEFAULT_SHUTDOWN_GRACE,
            stderr_cap: STDERR_LINE_CAP,
            stderr_budget: default_stderr_budget(),
            max_call_duration: Some(warden_config::DEFAULT_MAX_CALL_DURATION),
            sandbox: prepared.sandbox,
        }),
        era: pref,
        request_timeout: config.http.request_timeout,
        startup_timeout: warden_config::DEFAULT_STARTUP_TIMEOUT,
        namespace: true,
        // `run` never restarts its upstream (docs/lifecycle.md).
        lifecycle: LifecyclePolicy::default(),
    })
}

/// The TLS options of an HTTP upstream: `ca_file`'s certificates as extra roots, and a client
/// certificate with its key. Errors name the field (`ca_field`, `identity_field`).
fn tls_options(
    ca_file: Option<&std::path::Path>,
    client_identity: Option<(&std::path::Path, &std::path::Path)>,
    ca_field: &str,
    identity_field: &str,
) -> anyhow::Result<warden_http::TlsOptions> {
    let mut tls = warden_http::TlsOptions::trusting(ca_file)
        .map_err(|e| anyhow::anyhow!("{ca_field}: {e}"))?;
    tls.identity = match client_identity {
        Some((cert, key)) => Some(std::sync::Arc::new(
            warden_http::ClientIdentity::read(cert, key)
                .map_err(|e| anyhow::anyhow!("{identity_field}: {e}"))?,
        )),
        None => None,
    };
    Ok(tls)
}

/// The upstream of `run --url URL`.
pub(crate) fn from_url(
    config: &Config,
    url: &url::Url,
    headers: &[String],
    ca_file: Option<&std::path::Path>,
    client_identity: Option<(&std::path::Path, &std::path::Path)>,
    pref: EraPreference,
    env: &dyn EnvSource,
) -> anyhow::Result<UpstreamDef> {
    if !matches!(url.scheme(), "http" | "https") {
        bail!(
            "--url: unsupported scheme {:?}; expected http or https",
            url.scheme()
        );
    }
    let mut resolved = Vec::with_capacity(headers.len());
    for h in headers {
        let Some((name, value)) = h.split_once(':') else {
            bail!("--header {h:?}: expected `NAME: VALUE`");
        };
        let name = name.trim().to_owned();
        let value: ValueRef = value
            .trim()
            .parse()
            .with_context(|| format!("--header {name}"))?;
        resolved.push((
            name.clone(),
            resolve(&value, env, &format!("--header {name}"))?,
        ));
    }
    let name = url.host_str().unwrap_or("remote").to_owned();
    Ok(UpstreamDef {
        name: name.clone(),
        transport: Transport::Http(HttpSpec {
            name,
            url: url.clone(),
            headers: resolved,
            limits: limits(config),
            request_timeout: config.http.request_timeout,
            connect_timeout: CONNECT_TIMEOUT,
            max_call_duration: Some(warden_config::DEFAULT_MAX_CALL_DURATION),
            tls: tls_options(ca_file, client_identity, "--ca-file", "--client-cert")?,
        }),
        era: pref,
        request_timeout: config.http.request_timeout,
        startup_timeout: warden_config::DEFAULT_STARTUP_TIMEOUT,
        namespace: true,
        // `run` never restarts its upstream (docs/lifecycle.md).
        lifecycle: LifecyclePolicy::default(),
    })
}
