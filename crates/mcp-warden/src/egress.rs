//! The egress proxies of upstreams with `network = { allow = [..] }`: one
//! `warden_egress::Proxy` per upstream, on a Unix socket in a directory private to the
//! gateway's user, served by a small runtime of its own (off the request path, alive for the
//! whole gateway process, so restarts of the upstream find it). See `docs/sandbox.md`.
//!
//! Every decision of a proxy becomes an `upstream` audit record (`egress_allowed`,
//! `egress_refused`) in the log the gateway registered with [`audit_to`]; the record names
//! the requested `host:port` and the reason, never the request's headers (the proxy does not
//! hand them out).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, RwLock};

use anyhow::Context;
use tracing::{info, warn};
use warden_audit::{AuditLog, Event};
use warden_config::egress_allow::AllowList;
use warden_egress::{Decision, Limits, Proxy, ProxyHandle};

/// `upstream` audit action of a tunnel the proxy opened.
pub(crate) const ACTION_ALLOWED: &str = "egress_allowed";
/// `upstream` audit action of a connection the proxy refused.
pub(crate) const ACTION_REFUSED: &str = "egress_refused";

/// The audit log the proxies' decisions go to. Proxies start while upstreams are prepared,
/// which can be before the gateway opens its log: they read this at each decision.
static AUDIT: RwLock<Option<AuditLog>> = RwLock::new(None);

/// Sends the decisions of every egress proxy of this process to `log` (none: to no log).
pub(crate) fn audit_to(log: Option<AuditLog>) {
    match AUDIT.write() {
        Ok(mut slot) => *slot = log,
        Err(poisoned) => *poisoned.into_inner() = log,
    }
}

/// The audit record of one decision of `upstream`'s proxy.
fn decision_event(upstream: &str, decision: &Decision) -> Event {
    let (action, detail) = match decision {
        Decision::Allowed {
            host,
            port,
            address,
        } => (
            ACTION_ALLOWED,
            format!("{}: tunnel opened to {address}", authority(host, *port)),
        ),
        Decision::Refused { host, port, reason } => {
            let detail = match (host, port) {
                (Some(host), Some(port)) => {
                    format!("{}: {}", authority(host, *port), reason.as_str())
                }
                _ => reason.as_str().to_owned(),
            };
            (ACTION_REFUSED, detail)
        }
    };
    Event::Upstream {
        upstream: upstream.to_owned(),
        action: action.to_owned(),
        pid: None,
        exit_code: None,
        detail: Some(detail),
    }
}

/// `host:port`, with an IPv6 literal in brackets.
fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Refusal records one proxy writes per second at most. A server looping on refused CONNECTs
/// must not fill the audit queue (with `on_full = "fail_closed"` that would refuse every call
/// of every client): past this, refusals are counted and summed up in one record.
const REFUSALS_PER_SECOND: u32 = 20;

/// One proxy's refusal-record budget.
#[derive(Debug)]
pub(crate) struct RefusalBudget {
    window: tokio::time::Instant,
    written: u32,
    suppressed: u64,
}

impl RefusalBudget {
    fn new() -> Self {
        Self {
            window: tokio::time::Instant::now(),
            written: 0,
            suppressed: 0,
        }
    }

    /// Whether a refusal at `now` gets a record of its own, and how many refusals since the
    /// last one went unrecorded (to be written first).
    fn admit(&mut self, now: tokio::time::Instant) -> (bool, u64) {
        if now.duration_since(self.window) >= std::time::Duration::from_secs(1) {
            self.window = now;
            self.written = 0;
        }
        if self.written >= REFUSALS_PER_SECOND {
            self.suppressed += 1;
            return (false, 0);
        }
        self.written += 1;
        (true, std::mem::take(&mut self.suppressed))
    }
}

/// Records `decision` in the registered audit log, if any; false when the log refused it (a
/// fail-closed log whose queue is full, or a closed log), and the proxy then refuses the
/// tunnel. Runs on the connection's task: recording only queues the record for the writer.
/// Refusals are budgeted ([`REFUSALS_PER_SECOND`]); the connection is refused either way.
fn record(upstream: &str, decision: &Decision, budget: &Mutex<RefusalBudget>) -> bool {
    let log = match AUDIT.read() {
        Ok(slot) => slot.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    let Some(log) = log else { return true };
    if matches!(decision, Decision::Refused { .. }) {
        let (admitted, unrecorded) = match budget.lock() {
            Ok(mut b) => b.admit(tokio::time::Instant::now()),
            Err(poisoned) => poisoned.into_inner().admit(tokio::time::Instant::now()),
        };
        if !admitted {
            return true;
        }
        if unrecorded > 0 {
            let summary = Event::Upstream {
                upstream: upstream.to_owned(),
                action: ACTION_REFUSED.to_owned(),
                pid: None,
                exit_code: None,
                detail: Some(format!(
                    "{unrecorded} further refusals not recorded one by one (more than {REFUSALS_PER_SECOND} a second)"
                )),
            };
            if let Err(error) = log.record(summary) {
                warn!(upstream = %upstream, %error, "egress refusal summary not recorded");
            }
        }
    }
    match log.record(decision_event(upstream, decision)) {
        Ok(()) => true,
        Err(error) => {
            warn!(upstream = %upstream, %error, "egress decision not recorded");
            false
        }
    }
}

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
        let name = upstream.to_owned();
        let budget = Mutex::new(RefusalBudget::new());
        Proxy::new(upstream, allow.clone(), Limits::default())
            .on_decision_required(move |decision| record(&name, decision, &budget))
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

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use warden_egress::Refusal;

    use super::*;

    #[test]
    fn refusal_records_are_budgeted_per_second_and_the_rest_summed_up() {
        let start = tokio::time::Instant::now();
        let mut b = RefusalBudget::new();
        for _ in 0..REFUSALS_PER_SECOND {
            assert_eq!(b.admit(start), (true, 0));
        }
        // A flood within the same second: counted, not recorded.
        for _ in 0..1000 {
            assert_eq!(b.admit(start), (false, 0));
        }
        // The next second: recorded again, with the count of what was left out.
        let later = start + std::time::Duration::from_millis(1001);
        assert_eq!(b.admit(later), (true, 1000));
        assert_eq!(b.admit(later), (true, 0));
    }

    fn parts(event: Event) -> (String, String, String) {
        match event {
            Event::Upstream {
                upstream,
                action,
                detail,
                ..
            } => (upstream, action, detail.unwrap_or_default()),
            other => panic!("not an upstream record: {other:?}"),
        }
    }

    #[test]
    fn a_refusal_names_host_port_and_reason() {
        let refused = Decision::Refused {
            host: Some("example.com".into()),
            port: Some(443),
            reason: Refusal::NotAllowed,
        };
        assert_eq!(
            parts(decision_event("fetch", &refused)),
            (
                "fetch".into(),
                "egress_refused".into(),
                "example.com:443: target not on the allow-list".into()
            )
        );
    }

    #[test]
    fn a_refusal_before_the_target_was_read_names_only_the_reason() {
        let refused = Decision::Refused {
            host: None,
            port: None,
            reason: Refusal::NotConnect,
        };
        let (_, action, detail) = parts(decision_event("fetch", &refused));
        assert_eq!(action, "egress_refused");
        assert_eq!(detail, "method other than CONNECT");
    }

    #[test]
    fn an_allowed_tunnel_names_the_target_and_the_address() {
        let allowed = Decision::Allowed {
            host: "::1".into(),
            port: 8443,
            address: SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], 8443)),
        };
        let (_, action, detail) = parts(decision_event("fetch", &allowed));
        assert_eq!(action, "egress_allowed");
        assert_eq!(detail, "[::1]:8443: tunnel opened to [::1]:8443");
    }
}
