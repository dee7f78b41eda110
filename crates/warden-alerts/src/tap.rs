//! [`Alerts`]: the audit tap that runs the rules and feeds the sink thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use warden_audit::{AuditRecord, AuditTap};
use warden_config::AlertsConfig;

use crate::alert::Alert;
use crate::engine::Engine;
use crate::error::AlertsError;
use crate::sink::Sinks;

/// Least time between two "alert dropped" log lines: a full queue is one line, not a flood.
const DROP_LOG_INTERVAL: Duration = Duration::from_secs(10);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its state whole (the engine's tables are updated entry by
    // entry), so a panic elsewhere does not make it unusable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The alert engine as an audit tap. Register it on `AuditOptions::taps`; keep a handle to
/// [`Alerts::close`] it after the audit log closes, so the last alerts reach the sinks.
pub struct Alerts {
    engine: Mutex<Engine>,
    queue: Mutex<Option<mpsc::Sender<Alert>>>,
    done: Mutex<Option<oneshot::Receiver<()>>>,
    fired: AtomicU64,
    dropped: AtomicU64,
    delivered: std::sync::Arc<AtomicU64>,
    last_drop_log: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Alerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alerts")
            .field("fired", &self.fired())
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl Alerts {
    /// Starts the sink thread and returns the tap. `audit_sensitive` is `[audit]
    /// sensitive_tools` (the sequence rule's default sensitive tools).
    pub fn start(
        config: &AlertsConfig,
        audit_sensitive: &[String],
        sinks: Sinks,
    ) -> Result<Self, AlertsError> {
        let (tx, rx) = mpsc::channel(config.queue.get());
        let (done_tx, done_rx) = oneshot::channel();
        let delivered = std::sync::Arc::new(AtomicU64::new(0));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(AlertsError::Thread)?;
        let count = delivered.clone();
        std::thread::Builder::new()
            .name("warden-alerts".into())
            .spawn(move || {
                runtime.block_on(deliver_all(rx, sinks, count));
                let _ = done_tx.send(());
            })
            .map_err(AlertsError::Thread)?;
        Ok(Self {
            engine: Mutex::new(Engine::new(config, audit_sensitive)),
            queue: Mutex::new(Some(tx)),
            done: Mutex::new(Some(done_rx)),
            fired: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            delivered,
            last_drop_log: Mutex::new(None),
        })
    }

    /// Alerts fired so far.
    pub fn fired(&self) -> u64 {
        self.fired.load(Ordering::Relaxed)
    }

    /// Alerts dropped so far because the sink queue was full (or closed).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Alerts every sink accepted so far.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Stops taking alerts and waits up to `timeout` for the sinks to deliver the queued ones.
    /// Returns false when they did not finish in time (the rest is abandoned with the thread).
    pub async fn close(&self, timeout: Duration) -> bool {
        drop(lock(&self.queue).take());
        let Some(done) = lock(&self.done).take() else {
            return true;
        };
        let finished = tokio::time::timeout(timeout, done).await.is_ok();
        if !finished {
            tracing::warn!(
                timeout_ms = timeout.as_millis() as u64,
                "alert sinks did not finish in time"
            );
        }
        finished
    }

    fn drop_alert(&self, alert: &Alert) {
        let total = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        let now = Instant::now();
        let mut last = lock(&self.last_drop_log);
        if last.is_none_or(|l| now.duration_since(l) >= DROP_LOG_INTERVAL) {
            *last = Some(now);
            tracing::error!(
                rule = alert.rule,
                dropped = total,
                "alert dropped: the alert sinks are behind"
            );
        }
    }

    /// Evaluates `records` and queues what fires, without ever waiting for the sinks.
    pub fn observe(&self, records: &[AuditRecord]) {
        let mut fired = Vec::new();
        {
            let mut engine = lock(&self.engine);
            for r in records {
                engine.observe(r, &mut fired);
            }
        }
        if fired.is_empty() {
            return;
        }
        let queue = lock(&self.queue).clone();
        for alert in fired {
            self.fired.fetch_add(1, Ordering::Relaxed);
            let Some(q) = &queue else {
                self.drop_alert(&alert);
                continue;
            };
            if let Err(e) = q.try_send(alert) {
                let alert = match e {
                    mpsc::error::TrySendError::Full(a) | mpsc::error::TrySendError::Closed(a) => a,
                };
                self.drop_alert(&alert);
            }
        }
    }
}

impl AuditTap for Alerts {
    fn records(&self, records: &[AuditRecord], _written: bool) {
        // A record whose write failed still describes what happened: rules see it too.
        self.observe(records);
    }
}

async fn deliver_all(
    mut rx: mpsc::Receiver<Alert>,
    mut sinks: Sinks,
    delivered: std::sync::Arc<AtomicU64>,
) {
    while let Some(alert) = rx.recv().await {
        if sinks.deliver(&alert).await {
            delivered.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests;
