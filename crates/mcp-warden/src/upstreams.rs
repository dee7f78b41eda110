//! Configuration -> upstream definitions, resolving `env:` and `file:` references.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use warden_config::env::EnvSource;
use warden_config::{Config, Era, UpstreamConfig, UpstreamTransport, ValueRef};
use warden_proto::Limits;
use warden_session::{EraPreference, Transport, UpstreamDef};
use warden_upstream::{HttpSpec, StdioSpec};

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
            sandbox: prepared.sandbox,
        }),
        era: pref,
        request_timeout: config.http.request_timeout,
        startup_timeout: warden_config::DEFAULT_STARTUP_TIMEOUT,
        namespace: true,
    })
}

/// The upstream of `run --url URL`.
pub(crate) fn from_url(
    config: &Config,
    url: &url::Url,
    headers: &[String],
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
        }),
        era: pref,
        request_timeout: config.http.request_timeout,
        startup_timeout: warden_config::DEFAULT_STARTUP_TIMEOUT,
        namespace: true,
    })
}
