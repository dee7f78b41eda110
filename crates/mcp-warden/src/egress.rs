//! The egress proxies of upstreams with `network = { allow = [..] }`: one
//! `warden_egress::Proxy` per upstream, on a Unix socket in a directory private to the
//! gateway's user, served by a small runtime of its own (off the request path, alive for the
//! whole gateway process, so restarts of the upstream find it). See `docs/sandbox.md`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use anyhow::Context;
use tracing::info;
use warden_config::egress_allow::AllowList;
use warden_egress::{Limits, Proxy, ProxyHandle};

/// Prefix of the proxies' directories in the system temporary directory.
const DIR_PREFIX: &str = "mcp-warden-egress-";

struct Proxies {
    runtime: tokio::runtime::Runtime,
    dir: PathBuf,
    running: HashMap<String, (AllowList, ProxyHandle)>,
    /// Number of the next socket (never reused).
    next: u64,
}

impl Drop for Proxies {
    fn drop(&mut self) {
        self.running.clear();
        let _ = std::fs::remove_dir(&self.dir);
    }
}

fn proxies() -> anyhow::Result<&'static Mutex<Proxies>> {
    static PROXIES: OnceLock<Mutex<Proxies>> = OnceLock::new();
    if let Some(proxies) = PROXIES.get() {
        return Ok(proxies);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("warden-egress")
        .enable_all()
        .build()
        .context("starting the egress proxy runtime")?;
    let dir = private_dir(&std::env::temp_dir())?;
    Ok(PROXIES.get_or_init(|| {
        Mutex::new(Proxies {
            runtime,
            dir,
            running: HashMap::new(),
            next: 0,
        })
    }))
}

/// `<tmp>/mcp-warden-egress-<pid>`, mode 0700, after removing those of gateways that are gone
/// (a SIGKILLed gateway leaves its directory behind).
fn private_dir(tmp: &Path) -> anyhow::Result<PathBuf> {
    if let Ok(entries) = std::fs::read_dir(tmp) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let pid = name
                .to_str()
                .and_then(|n| n.strip_prefix(DIR_PREFIX))
                .and_then(|pid| pid.parse::<u32>().ok());
            if let Some(pid) = pid
                && !Path::new(&format!("/proc/{pid}")).exists()
                && entry.file_type().is_ok_and(|t| t.is_dir())
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let dir = tmp.join(format!("{DIR_PREFIX}{}", std::process::id()));
    // create_dir fails on anything already there (a planted directory or symlink included).
    std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
        .create(&dir)
        .with_context(|| format!("creating the egress proxy directory `{}`", dir.display()))?;
    Ok(dir)
}

/// The socket of `upstream`'s proxy, started on first use (and restarted when its allow-list
/// changed).
pub(crate) fn socket_for(upstream: &str, allow: &AllowList) -> anyhow::Result<PathBuf> {
    let mut proxies = proxies()?
        .lock()
        .map_err(|_| anyhow::anyhow!("egress proxy registry poisoned"))?;
    if let Some((running_allow, handle)) = proxies.running.get(upstream)
        && running_allow == allow
    {
        return Ok(handle.path().to_owned());
    }
    // Upstream names are free text: the socket is named by a counter, not by name.
    proxies.running.remove(upstream);
    let path = proxies.dir.join(format!("{}.sock", proxies.next));
    proxies.next += 1;
    let handle = {
        let _entered = proxies.runtime.enter();
        Proxy::new(upstream, allow.clone(), Limits::default())
            .bind(&path)
            .with_context(|| format!("upstream `{upstream}`: starting its egress proxy"))?
    };
    let rules: Vec<String> = allow.rules().iter().map(ToString::to_string).collect();
    info!(upstream = %upstream, allow = %rules.join(", "), "egress proxy started");
    proxies
        .running
        .insert(upstream.to_owned(), (allow.clone(), handle));
    Ok(path)
}
