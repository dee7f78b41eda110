//! Upstream supervision: restart with backoff and a crash-loop limit, health checks, mark-down
//! and mark-up, and the audit records of each (`docs/lifecycle.md`).
//!
//! One task per upstream watches its current connection, off the request path. The request
//! path reads the connection through an [`ArcSwap`] (no lock) and the down flag with one atomic
//! load; nothing here is awaited by a client's call.
//!
//! - `serve` (namespaced): a dead stdio child is started again after an exponential backoff
//!   with jitter and handshaken again (era detection included); more than
//!   [`Policy::max_restarts`] restarts within [`Policy::restart_window`] marks it down: its
//!   calls fail at once with an "unavailable" error, lists leave it out, and every session is
//!   told `notifications/tools/list_changed`. Health checks (`ping` to a legacy upstream,
//!   `server/discover` to a modern one) that fail [`Policy::health_failures`] times in a row
//!   restart the upstream or mark it down, and a later success marks it up again.
//! - `run` (transparent): the client's own `initialize` reached the upstream, so a new process
//!   would not know the session the client believes it has. The gateway does not restart it:
//!   [`Gateway::upstream_lost`] resolves and `run` exits with an error, for the host to restart
//!   the whole server as it would without the gateway.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use warden_audit::Event;
use warden_proto::mcp::Era;
use warden_upstream::{Connection, UpstreamError};

use crate::bridge;
use crate::gateway::{Gateway, Transport, UpstreamState, exchange, notification, request};

/// Default [`Policy::backoff_initial`].
pub const DEFAULT_BACKOFF_INITIAL: Duration = Duration::from_secs(1);
/// Default [`Policy::backoff_max`].
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Default [`Policy::max_restarts`].
pub const DEFAULT_MAX_RESTARTS: u32 = 5;
/// Default [`Policy::restart_window`].
pub const DEFAULT_RESTART_WINDOW: Duration = Duration::from_secs(300);
/// Default [`Policy::down_retry`].
pub const DEFAULT_DOWN_RETRY: Duration = Duration::from_secs(600);
/// Default [`Policy::health_interval`].
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(30);
/// Default [`Policy::health_timeout`].
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`Policy::health_failures`].
pub const DEFAULT_HEALTH_FAILURES: u32 = 3;
/// Longest excerpt of an error kept in an audit record's detail.
const DETAIL_CAP: usize = 200;

/// What the gateway does with an upstream that keeps failing its health checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unhealthy {
    /// Restart it (counted against the crash-loop limit).
    #[default]
    Restart,
    /// Mark it down, keep checking, mark it up when a check succeeds.
    MarkDown,
}

/// How one upstream is supervised in `serve` (see the module documentation).
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Restart a dead upstream (false: mark it down at once).
    pub restart: bool,
    /// First restart delay; doubled for every restart already in the window.
    pub backoff_initial: Duration,
    /// Longest restart delay.
    pub backoff_max: Duration,
    /// Fraction of the delay (0 to 1) drawn at random and added or removed.
    pub backoff_jitter: f64,
    /// Restarts allowed within `restart_window`; the next failure marks the upstream down.
    pub max_restarts: u32,
    /// The crash-loop window.
    pub restart_window: Duration,
    /// How long a crash-looping upstream stays down before one more attempt (`None`: until
    /// the gateway restarts).
    pub down_retry: Option<Duration>,
    /// Time between health checks (`None`: no checks).
    pub health_interval: Option<Duration>,
    /// Longest wait for a health check's answer.
    pub health_timeout: Duration,
    /// Consecutive failed checks that make an upstream unhealthy.
    pub health_failures: u32,
    /// What happens to an unhealthy upstream.
    pub on_unhealthy: Unhealthy,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            restart: true,
            backoff_initial: DEFAULT_BACKOFF_INITIAL,
            backoff_max: DEFAULT_BACKOFF_MAX,
            backoff_jitter: 0.2,
            max_restarts: DEFAULT_MAX_RESTARTS,
            restart_window: DEFAULT_RESTART_WINDOW,
            down_retry: Some(DEFAULT_DOWN_RETRY),
            health_interval: Some(DEFAULT_HEALTH_INTERVAL),
            health_timeout: DEFAULT_HEALTH_TIMEOUT,
            health_failures: DEFAULT_HEALTH_FAILURES,
            on_unhealthy: Unhealthy::Restart,
        }
    }
}

impl Policy {
    /// The delay before restart number `n` (0-based) within the window, without jitter:
    /// `backoff_initial * 2^n`, at most `backoff_max`.
    pub fn backoff(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX);
        self.backoff_initial
            .checked_mul(factor)
            .unwrap_or(self.backoff_max)
            .min(self.backoff_max)
    }

    /// [`Policy::backoff`] with `jitter` (a draw from -1 to 1) applied, never below zero nor
    /// above `backoff_max`.
    pub fn jittered(&self, n: u32, jitter: f64) -> Duration {
        let base = self.backoff(n).as_secs_f64();
        let spread = base * self.backoff_jitter.clamp(0.0, 1.0) * jitter.clamp(-1.0, 1.0);
        Duration::from_secs_f64((base + spread).max(0.0)).min(self.backoff_max)
    }
}

/// The supervision state of one upstream, read by the request path.
pub(crate) struct Life {
    /// Marked down: calls fail at once, lists leave the upstream out.
    down: AtomicBool,
    pub(crate) policy: Policy,
    /// How to reach it again.
    transport: Transport,
    /// Cancelled when the upstream of a transparent gateway is gone for good.
    lost: CancellationToken,
    /// Woken when a dual-era stdio upstream starts its second process (for legacy clients),
    /// so the supervisor watches it too.
    legacy: tokio::sync::Notify,
}

impl Life {
    pub(crate) fn new(policy: Policy, transport: Transport) -> Life {
        Life {
            down: AtomicBool::new(false),
            policy,
            transport,
            lost: CancellationToken::new(),
            legacy: tokio::sync::Notify::new(),
        }
    }

    /// A second process for legacy clients was started (or given up on).
    pub(crate) fn legacy_started(&self) {
        self.legacy.notify_one();
    }

    /// Whether the upstream is marked down (one atomic load).
    pub(crate) fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }
}

/// The current connection of an upstream; replaced when the upstream restarts.
pub(crate) type CurrentConn = ArcSwap<Connection>;

pub(crate) fn current(conn: Connection) -> CurrentConn {
    ArcSwap::from_pointee(conn)
}

impl UpstreamState {
    /// The upstream's current shared connection (a reference-count increment; no lock).
    pub(crate) fn conn(&self) -> Connection {
        Connection::clone(&self.conn.load())
    }
}

impl Gateway {
    /// Resolves when the upstream of a transparent gateway (`run`) exited on its own; the
    /// gateway does not restart it (see the module documentation). Returns the upstream's
    /// name. Never resolves for a namespaced gateway.
    pub async fn upstream_lost(&self) -> String {
        let waits = self.upstreams.iter().map(|u| {
            let name = u.name.clone();
            let lost = u.life.lost.clone();
            Box::pin(async move {
                lost.cancelled().await;
                name
            })
        });
        let waits: Vec<_> = waits.collect();
        if waits.is_empty() {
            return std::future::pending().await;
        }
        futures::future::select_all(waits).await.0
    }

    /// Names of the upstreams currently marked down.
    pub fn upstreams_down(&self) -> Vec<String> {
        self.upstreams
            .iter()
            .filter(|u| u.life.is_down())
            .map(|u| u.name.clone())
            .collect()
    }

    fn audit_upstream(&self, upstream: &str, action: &str, pid: Option<u32>, detail: String) {
        self.audit_upstream_exit(upstream, action, pid, None, detail);
    }

    fn audit_upstream_exit(
        &self,
        upstream: &str,
        action: &str,
        pid: Option<u32>,
        exit_code: Option<i32>,
        detail: String,
    ) {
        let Some(log) = &self.opts.audit else { return };
        let event = Event::Upstream {
            upstream: upstream.to_owned(),
            action: action.to_owned(),
            pid,
            exit_code,
            detail: (!detail.is_empty()).then_some(detail),
        };
        if let Err(e) = log.record(event) {
            tracing::error!(upstream, action, error = %e, "upstream event could not be audited");
        }
    }

    /// Tells every session that the tool list changed (an upstream went down or came back).
    fn announce_tools_changed(&self) {
        let note = notification("notifications/tools/list_changed", None);
        for (session, _) in self.unsolicited_targets("notifications/tools/list_changed", None) {
            // A notification: one a client is not reading is simply dropped.
            let _ = session.push_unsolicited(note.clone());
        }
    }
}

/// Starts the supervisor of every upstream (and the tasks that read each connection's
/// unsolicited messages and stderr reports).
pub(crate) fn start(gateway: &Arc<Gateway>) {
    for u in &gateway.upstreams {
        let supervisor = Supervisor {
            gateway: Arc::downgrade(gateway),
            up: u.clone(),
            shutdown: gateway.shutdown.clone(),
            transparent: gateway.opts.transparent,
            audit: gateway.opts.audit.is_some(),
            restarts: VecDeque::new(),
            tasks: Vec::new(),
        };
        tokio::spawn(supervisor.run());
    }
}

/// Why a connection is being replaced.
enum Ending {
    /// The process exited (or the connection closed) on its own.
    Died,
    /// Health checks failed.
    Unhealthy,
    /// The second process of a dual-era stdio upstream exited: the whole upstream restarts
    /// (its accounting, backoff and crash-loop limit are the upstream's).
    LegacyDied(Connection),
    /// The gateway is shutting down (or gone).
    Shutdown,
}

struct Supervisor {
    gateway: std::sync::Weak<Gateway>,
    up: Arc<UpstreamState>,
    shutdown: CancellationToken,
    transparent: bool,
    audit: bool,
    /// When each restart within the window happened.
    restarts: VecDeque<Instant>,
    /// The pumps of the current connection; aborted when it is replaced.
    tasks: Vec<AbortOnDropHandle<()>>,
}

impl Supervisor {
    async fn run(mut self) {
        let mut conn = self.up.conn();
        self.attach(&conn);
        loop {
            match self.watch(&conn).await {
                Ending::Shutdown => return,
                Ending::Died => {
                    // Usually a no-op; a server that closed its stdout but still runs is
                    // stopped here, never left beside its successor.
                    conn.shutdown().await;
                    self.record_exit(&conn);
                }
                Ending::Unhealthy => {
                    // Stop it for good (close stdin, SIGTERM, SIGKILL) before the next one.
                    conn.shutdown().await;
                    self.record_exit(&conn);
                }
                Ending::LegacyDied(legacy) => {
                    self.record_exit(&legacy);
                    conn.shutdown().await;
                    self.record_exit(&conn);
                }
            }
            if self.transparent {
                // `run`: the client's session lived in that process; see the module docs.
                tracing::error!(upstream = %self.up.name, "the upstream exited; the gateway stops so that its host can restart it");
                self.up.life.lost.cancel();
                return;
            }
            match self.replace().await {
                Some(next) => conn = next,
                None => return,
            }
        }
    }

    fn gateway(&self) -> Option<Arc<Gateway>> {
        self.gateway.upgrade()
    }

    /// Waits until the connection dies, fails its health checks, or the gateway stops.
    async fn watch(&self, conn: &Connection) -> Ending {
        let policy = &self.up.life.policy;
        let interval = policy
            .health_interval
            .filter(|_| !self.transparent)
            .unwrap_or(Duration::MAX);
        let mut failures = 0u32;
        loop {
            let next_check = deadline_after(interval);
            let legacy = self.legacy_conn();
            tokio::select! {
                () = self.shutdown.cancelled() => return Ending::Shutdown,
                _ = conn.closed() => {
                    return if self.shutdown.is_cancelled() { Ending::Shutdown } else { Ending::Died };
                }
                _ = closed(legacy.as_ref()) => {
                    return match legacy {
                        Some(l) if !self.shutdown.is_cancelled() => Ending::LegacyDied(l),
                        _ => Ending::Shutdown,
                    };
                }
                // A second process appeared: watch it from now on.
                () = self.up.life.legacy.notified() => continue,
                () = tokio::time::sleep_until(next_check) => {}
            }
            let Some(result) = self.check(conn).await else {
                continue;
            };
            match result {
                Ok(()) => {
                    failures = 0;
                    if self.up.life.is_down() {
                        self.mark_up(conn.pid(), "health check answered");
                    }
                }
                Err(error) => {
                    failures += 1;
                    let Some(g) = self.gateway() else {
                        return Ending::Shutdown;
                    };
                    tracing::warn!(upstream = %self.up.name, failures, error = %error, "upstream health check failed");
                    g.audit_upstream(
                        &self.up.name,
                        "health_failed",
                        conn.pid(),
                        format!(
                            "{} (failure {failures} of {})",
                            excerpt(&error.to_string()),
                            policy.health_failures
                        ),
                    );
                    if failures < policy.health_failures {
                        continue;
                    }
                    failures = 0;
                    match policy.on_unhealthy {
                        Unhealthy::Restart => return Ending::Unhealthy,
                        Unhealthy::MarkDown if !self.up.life.is_down() => {
                            self.mark_down(conn.pid(), "health checks failed");
                        }
                        Unhealthy::MarkDown => {}
                    }
                }
            }
        }
    }

    /// The second process of a dual-era stdio upstream, when it runs. Never waits: while the
    /// slot is locked the process is being started, and [`Life::legacy_started`] follows.
    fn legacy_conn(&self) -> Option<Connection> {
        self.up.stdio_spec.as_ref()?;
        match self.up.legacy_desc.try_lock().ok()?.as_ref() {
            Some(Some((_, c))) => Some(c.clone()),
            _ => None,
        }
    }

    /// One health check: `ping` to a legacy upstream, `server/discover` to a modern one. Any
    /// answer counts, an error response included: the server is reading and writing. `None`
    /// while the handshake has not happened (there is nothing to check yet).
    async fn check(&self, conn: &Connection) -> Option<Result<(), UpstreamError>> {
        let era = self.up.known_desc().map(|d| d.era)?;
        let probe = match era {
            Era::Legacy => request("ping", json!({})),
            Era::Modern => request("server/discover", bridge::discover_params()),
        };
        let timeout = self.up.life.policy.health_timeout;
        Some(exchange(conn, probe, timeout).await.map(|_| ()))
    }

    /// Records how the connection ended.
    fn record_exit(&self, conn: &Connection) {
        let Some(g) = self.gateway() else { return };
        let status = conn.exit_status();
        let (code, detail) = match status {
            Some(s) => exit_detail(s),
            None => (None, "connection closed".to_owned()),
        };
        tracing::warn!(upstream = %self.up.name, pid = ?conn.pid(), exit_code = ?code, detail = %detail, "upstream exited");
        if let Some(on_exit) = &g.opts.on_exit {
            on_exit(&self.up.name, code);
        }
        g.audit_upstream_exit(&self.up.name, "exited", conn.pid(), code, detail);
    }

    /// Starts a new connection after the backoff, handshakes it and swaps it in; marks the
    /// upstream down on a crash loop. `None` when the gateway stops first.
    async fn replace(&mut self) -> Option<Connection> {
        self.forget_handshake().await;
        let mut attempt_failed_detail = None::<String>;
        loop {
            let policy = self.up.life.policy.clone();
            self.prune_restarts(policy.restart_window);
            let exhausted = !policy.restart
                || self.restarts.len()
                    >= usize::try_from(policy.max_restarts).unwrap_or(usize::MAX);
            if exhausted {
                let reason = match (&attempt_failed_detail, policy.restart) {
                    (_, false) => "restart = \"never\"".to_owned(),
                    (Some(d), true) => format!(
                        "{} restarts within {}s; last: {d}",
                        self.restarts.len(),
                        policy.restart_window.as_secs()
                    ),
                    (None, true) => format!(
                        "{} restarts within {}s",
                        self.restarts.len(),
                        policy.restart_window.as_secs()
                    ),
                };
                if !self.up.life.is_down() {
                    self.mark_down(None, &reason);
                }
                let retry = policy.down_retry?;
                tokio::select! {
                    () = self.shutdown.cancelled() => return None,
                    () = tokio::time::sleep(retry) => {}
                }
                // A fresh window: one more attempt, then the limit applies again.
                self.restarts.clear();
            } else {
                let n = u32::try_from(self.restarts.len()).unwrap_or(u32::MAX);
                let delay = policy.jittered(n, rand::random_range(-1.0..=1.0));
                tracing::info!(upstream = %self.up.name, delay_ms = delay.as_millis() as u64, attempt = n + 1, "restarting the upstream after a backoff");
                tokio::select! {
                    () = self.shutdown.cancelled() => return None,
                    () = tokio::time::sleep(delay) => {}
                }
            }
            self.restarts.push_back(Instant::now());
            match self.start_once().await {
                Ok(conn) => return Some(conn),
                Err(detail) => {
                    if self.shutdown.is_cancelled() {
                        return None;
                    }
                    attempt_failed_detail = Some(detail);
                }
            }
        }
    }

    /// One restart: spawn (or reconnect), swap in, handshake. On failure the new connection is
    /// shut down and the reason returned.
    async fn start_once(&mut self) -> Result<Connection, String> {
        let name = self.up.name.clone();
        let mut identity = None;
        if matches!(self.up.life.transport, Transport::Stdio(_))
            && let Some(p) = self.gateway().and_then(|g| g.opts.prelaunch.clone())
        {
            match p.check(&name).await {
                Ok(checked) => identity = checked,
                Err(reason) => {
                    // The check audits its own refusal (a changed command is reported before
                    // it runs).
                    tracing::error!(upstream = %name, %reason, "upstream not restarted");
                    return Err(excerpt(&reason));
                }
            }
        }
        let conn = match &self.up.life.transport {
            Transport::Stdio(spec) => {
                Connection::spawn_stdio(crate::gateway::checked_spec(spec, identity)).await
            }
            Transport::Http(spec) => Connection::http(spec.clone()),
        };
        let conn = match conn {
            Ok(c) => c,
            Err(e) => {
                let detail = excerpt(&error_chain(&e));
                if let Some(g) = self.gateway() {
                    g.audit_upstream(&name, "start_failed", None, detail.clone());
                }
                return Err(detail);
            }
        };
        if self.shutdown.is_cancelled() {
            conn.shutdown().await;
            return Err("the gateway is shutting down".to_owned());
        }
        // Swapped in before the handshake: calls that arrive meanwhile wait for the same
        // handshake (the description's lock) instead of failing on the dead connection.
        self.tasks.clear();
        self.up.conn.store(Arc::new(conn.clone()));
        self.attach(&conn);
        let handshake = tokio::select! {
            () = self.shutdown.cancelled() => {
                conn.shutdown().await;
                return Err("the gateway is shutting down".to_owned());
            }
            h = self.up.describe() => h,
        };
        if let Err(e) = handshake {
            let detail = excerpt(&e.to_string());
            tracing::warn!(upstream = %name, error = %e, "restarted upstream did not complete its handshake");
            if let Some(g) = self.gateway() {
                g.audit_upstream(&name, "handshake_failed", conn.pid(), detail.clone());
            }
            conn.shutdown().await;
            self.record_exit(&conn);
            return Err(detail);
        }
        tracing::info!(upstream = %name, pid = ?conn.pid(), "upstream restarted");
        if let Some(g) = self.gateway() {
            g.audit_upstream(
                &name,
                "restarted",
                conn.pid(),
                format!("restart {} within the window", self.restarts.len()),
            );
        }
        if self.up.life.is_down() {
            self.mark_up(conn.pid(), "restarted");
        }
        Ok(conn)
    }

    /// Forgets what the upstream's previous process said about itself, and stops the second
    /// process of a dual-era stdio upstream: both belong to the old instance.
    async fn forget_handshake(&self) {
        self.up.set_desc(&mut *self.up.desc.lock().await, None);
        let legacy = self.up.legacy_desc.lock().await.take();
        if let Some(Some((_, c))) = legacy
            && self.up.stdio_spec.is_some()
        {
            c.shutdown().await;
        }
    }

    fn prune_restarts(&mut self, window: Duration) {
        let now = Instant::now();
        while self
            .restarts
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            self.restarts.pop_front();
        }
    }

    fn mark_down(&self, pid: Option<u32>, reason: &str) {
        self.up.life.down.store(true, Ordering::Release);
        tracing::error!(upstream = %self.up.name, reason, "upstream marked down");
        if let Some(g) = self.gateway() {
            g.audit_upstream(&self.up.name, "marked_down", pid, reason.to_owned());
            g.announce_tools_changed();
        }
    }

    fn mark_up(&self, pid: Option<u32>, reason: &str) {
        self.up.life.down.store(false, Ordering::Release);
        tracing::info!(upstream = %self.up.name, reason, "upstream marked up");
        if let Some(g) = self.gateway() {
            g.audit_upstream(&self.up.name, "marked_up", pid, reason.to_owned());
            g.announce_tools_changed();
        }
    }

    /// Starts the tasks that serve a new connection: its unsolicited messages and, when the
    /// gateway audits, its stderr reports. They end with the connection or when it is replaced.
    fn attach(&mut self, conn: &Connection) {
        if let Some(rx) = conn.take_unsolicited() {
            let pump = tokio::spawn(crate::gateway::pump_unsolicited(
                self.gateway.clone(),
                self.up.clone(),
                conn.clone(),
                None,
                rx,
            ));
            self.tasks.push(AbortOnDropHandle::new(pump));
        }
        if self.audit
            && let Some(mut reports) = conn.take_stderr_reports()
        {
            let gateway = self.gateway.clone();
            let name = self.up.name.clone();
            let pid = conn.pid();
            let task = tokio::spawn(async move {
                while let Some(report) = reports.recv().await {
                    let Some(g) = gateway.upgrade() else { return };
                    g.audit_stderr(&name, pid, &report);
                }
            });
            self.tasks.push(AbortOnDropHandle::new(task));
        }
    }
}

impl Gateway {
    /// One `stderr` record: sizes and the keyed digest of what was logged, never the text (it
    /// may hold anything, secrets included).
    fn audit_stderr(
        &self,
        upstream: &str,
        pid: Option<u32>,
        report: &warden_upstream::StderrReport,
    ) {
        let Some(log) = &self.opts.audit else { return };
        let digest = log.content_bytes(&report.logged);
        let detail = format!(
            "{} bytes in {} lines over {} ms; {} bytes over budget not logged; logged {} bytes, hmac-sha256 {}",
            report.bytes,
            report.lines,
            report.window.as_millis(),
            report.over_budget,
            digest.bytes,
            digest.hmac
        );
        self.audit_upstream(upstream, "stderr", pid, detail);
    }
}

/// Resolves when `conn` is gone; never without one.
async fn closed(conn: Option<&Connection>) {
    match conn {
        Some(c) => {
            c.closed().await;
        }
        None => std::future::pending().await,
    }
}

/// Exit code, or the signal in words.
fn exit_detail(status: std::process::ExitStatus) -> (Option<i32>, String) {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => (Some(code), format!("exited with code {code}")),
        (None, Some(signal)) => (None, format!("killed by signal {signal}")),
        (None, None) => (None, status.to_string()),
    }
}

/// An error with its sources, for a log line or an audit detail.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// At most [`DETAIL_CAP`] bytes of `text`, cut on a character boundary.
fn excerpt(text: &str) -> String {
    if text.len() <= DETAIL_CAP {
        return text.to_owned();
    }
    let mut end = DETAIL_CAP;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

fn deadline_after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let p = Policy {
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
            ..Policy::default()
        };
        let got: Vec<u128> = (0..6).map(|n| p.backoff(n).as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(p.backoff(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_within_its_fraction_and_the_maximum() {
        let p = Policy {
            backoff_initial: Duration::from_millis(1000),
            backoff_max: Duration::from_millis(1100),
            backoff_jitter: 0.2,
            ..Policy::default()
        };
        assert_eq!(p.jittered(0, -1.0), Duration::from_millis(800));
        assert_eq!(p.jittered(0, 0.0), Duration::from_millis(1000));
        // +20% would be 1200 ms: capped at the maximum.
        assert_eq!(p.jittered(0, 1.0), Duration::from_millis(1100));
        // Out-of-range draws and fractions are clamped, never negative.
        let wild = Policy {
            backoff_jitter: 7.0,
            ..p.clone()
        };
        assert_eq!(wild.jittered(0, -9.0), Duration::ZERO);
    }

    #[test]
    fn excerpt_cuts_on_a_character_boundary() {
        let long = "é".repeat(DETAIL_CAP);
        let cut = excerpt(&long);
        assert!(cut.len() <= DETAIL_CAP + 3);
        assert!(cut.ends_with("..."));
        assert_eq!(excerpt("short"), "short");
    }
}
