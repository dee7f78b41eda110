//! `[upstreams.<name>.lifecycle]`: how the gateway supervises one upstream (restart with
//! backoff and a crash-loop limit, health checks, the maximum call duration, the stderr budget):
//! raw serde type, validated type and their validation. See `docs/lifecycle.md`.
//!
//! Every key is optional; the defaults below apply to every upstream without the table.

use std::time::Duration;

use serde::Deserialize;

use crate::error::{ConfigErrorKind, FieldPath};
use crate::raw::RawDuration;
use crate::sandbox::{SizeError, parse_size};
use crate::validate::Validator;

/// Default `backoff_initial`: a crash caused by a passing condition (a port, a lock) usually
/// clears within a second.
pub const DEFAULT_BACKOFF_INITIAL: Duration = Duration::from_secs(1);
/// Default `backoff_max`: the longest an upstream stays away between two restarts.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Default `backoff_jitter`: spreads the restarts of upstreams that failed together.
pub const DEFAULT_BACKOFF_JITTER: f64 = 0.2;
/// Default `max_restarts`: more restarts than this within `restart_window` is a crash loop.
pub const DEFAULT_MAX_RESTARTS: u32 = 5;
/// Default `restart_window`.
pub const DEFAULT_RESTART_WINDOW: Duration = Duration::from_secs(300);
/// Default `down_retry`: a crash-looping upstream is tried again this long after it was
/// marked down (the condition may have been fixed meanwhile).
pub const DEFAULT_DOWN_RETRY: Duration = Duration::from_secs(600);
/// Default `health_interval`: cheap (one `ping` or `server/discover`), frequent enough that a
/// hung server is found within a couple of minutes.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(30);
/// Default `health_timeout`.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `health_failures`: one lost answer on a loaded machine is not a dead server.
pub const DEFAULT_HEALTH_FAILURES: u32 = 3;
/// Default `max_call_duration`: long builds and searches fit; a call that never ends does not.
pub const DEFAULT_MAX_CALL_DURATION: Duration = Duration::from_secs(3600);
/// Default `stderr_budget` per `stderr_window`: a few hundred lines of diagnostics.
pub const DEFAULT_STDERR_BUDGET: u64 = 64 * 1024;
/// Default `stderr_window`.
pub const DEFAULT_STDERR_WINDOW: Duration = Duration::from_secs(60);
/// Largest `max_restarts` and `health_failures`.
const MAX_COUNT: u64 = 1000;

/// `[upstreams.<name>.lifecycle]` as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct RawLifecycle {
    /// `restart`: `on_failure` or `never`.
    pub restart: Option<String>,
    /// `backoff_initial`.
    pub backoff_initial: Option<RawDuration>,
    /// `backoff_max`.
    pub backoff_max: Option<RawDuration>,
    /// `backoff_jitter`: a fraction from 0 to 1.
    pub backoff_jitter: Option<f64>,
    /// `max_restarts`.
    pub max_restarts: Option<u64>,
    /// `restart_window`.
    pub restart_window: Option<RawDuration>,
    /// `down_retry`; `"0s"` never retries.
    pub down_retry: Option<RawDuration>,
    /// `health_interval`; `"0s"` turns health checks off.
    pub health_interval: Option<RawDuration>,
    /// `health_timeout`.
    pub health_timeout: Option<RawDuration>,
    /// `health_failures`.
    pub health_failures: Option<u64>,
    /// `on_unhealthy`: `restart` or `mark_down`.
    pub on_unhealthy: Option<String>,
    /// `max_call_duration`.
    pub max_call_duration: Option<RawDuration>,
    /// `stderr_budget`: a size or `"unlimited"` (stdio only).
    pub stderr_budget: Option<String>,
    /// `stderr_window` (stdio only).
    pub stderr_window: Option<RawDuration>,
}

/// What the gateway does when an upstream dies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum RestartPolicy {
    /// Start it again after a backoff, until the crash-loop limit marks it down.
    #[default]
    OnFailure,
    /// Mark it down at once.
    Never,
}

/// What the gateway does with an upstream that fails `health_failures` checks in a row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum UnhealthyAction {
    /// Restart it (counted against the crash-loop limit).
    #[default]
    Restart,
    /// Mark it down, keep checking, and mark it up when a check succeeds again.
    MarkDown,
}

/// One upstream's lifecycle, every default filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleConfig {
    /// `restart`.
    pub restart: RestartPolicy,
    /// First restart delay; doubled after every restart in the window.
    pub backoff_initial: Duration,
    /// Longest restart delay.
    pub backoff_max: Duration,
    /// Part of the delay drawn at random and added or removed, in thousandths (0 to 1000).
    pub backoff_jitter_permille: u16,
    /// Restarts allowed within `restart_window`; one more marks the upstream down.
    pub max_restarts: u32,
    /// The crash-loop window.
    pub restart_window: Duration,
    /// How long a crash-looping upstream stays down before one more attempt; `None`: for ever.
    pub down_retry: Option<Duration>,
    /// Time between health checks; `None`: no health checks.
    pub health_interval: Option<Duration>,
    /// Longest wait for a health check's answer.
    pub health_timeout: Duration,
    /// Consecutive failed checks that make an upstream unhealthy.
    pub health_failures: u32,
    /// What happens to an unhealthy upstream.
    pub on_unhealthy: UnhealthyAction,
    /// Longest a `tools/call` may run in total, progress or not.
    pub max_call_duration: Duration,
    /// Stderr bytes logged per window (stdio); `None`: unlimited.
    pub stderr_budget: Option<u64>,
    /// The stderr window.
    pub stderr_window: Duration,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        Self {
            restart: RestartPolicy::OnFailure,
            backoff_initial: DEFAULT_BACKOFF_INITIAL,
            backoff_max: DEFAULT_BACKOFF_MAX,
            backoff_jitter_permille: permille(DEFAULT_BACKOFF_JITTER),
            max_restarts: DEFAULT_MAX_RESTARTS,
            restart_window: DEFAULT_RESTART_WINDOW,
            down_retry: Some(DEFAULT_DOWN_RETRY),
            health_interval: Some(DEFAULT_HEALTH_INTERVAL),
            health_timeout: DEFAULT_HEALTH_TIMEOUT,
            health_failures: DEFAULT_HEALTH_FAILURES,
            on_unhealthy: UnhealthyAction::Restart,
            max_call_duration: DEFAULT_MAX_CALL_DURATION,
            stderr_budget: Some(DEFAULT_STDERR_BUDGET),
            stderr_window: DEFAULT_STDERR_WINDOW,
        }
    }
}

/// `0.2` -> `200`; the caller checked the range 0 to 1.
fn permille(fraction: f64) -> u16 {
    // In range and rounded: the cast cannot truncate.
    (fraction * 1000.0).round().clamp(0.0, 1000.0) as u16
}

/// Validates `[upstreams.<name>.lifecycle]` (`stdio`: whether the upstream has a `command`;
/// the stderr keys apply only then).
pub(crate) fn upstream(
    v: &mut Validator<'_>,
    path: &FieldPath,
    raw: RawLifecycle,
    stdio: bool,
) -> LifecycleConfig {
    let d = LifecycleConfig::default();
    let restart = match raw.restart.as_deref() {
        None => d.restart,
        Some("on_failure") => RestartPolicy::OnFailure,
        Some("never") => RestartPolicy::Never,
        Some(other) => {
            v.report(
                path.key("restart"),
                ConfigErrorKind::Invalid {
                    reason: format!(
                        "unknown restart policy {other:?}; expected \"on_failure\" or \"never\""
                    ),
                },
            );
            d.restart
        }
    };
    let on_unhealthy = match raw.on_unhealthy.as_deref() {
        None => d.on_unhealthy,
        Some("restart") => UnhealthyAction::Restart,
        Some("mark_down") => UnhealthyAction::MarkDown,
        Some(other) => {
            v.report(
                path.key("on_unhealthy"),
                ConfigErrorKind::Invalid {
                    reason: format!(
                        "unknown action {other:?}; expected \"restart\" or \"mark_down\""
                    ),
                },
            );
            d.on_unhealthy
        }
    };
    let backoff_initial = v.duration(
        path.key("backoff_initial"),
        raw.backoff_initial,
        d.backoff_initial,
    );
    let backoff_max = v.duration(path.key("backoff_max"), raw.backoff_max, d.backoff_max);
    if backoff_max < backoff_initial {
        v.report(
            path.key("backoff_max"),
            ConfigErrorKind::Invalid {
                reason: "backoff_max must not be shorter than backoff_initial".to_owned(),
            },
        );
    }
    let backoff_jitter_permille = match raw.backoff_jitter {
        None => d.backoff_jitter_permille,
        Some(j) if (0.0..=1.0).contains(&j) => permille(j),
        Some(j) => {
            v.report(
                path.key("backoff_jitter"),
                ConfigErrorKind::Invalid {
                    reason: format!("jitter {j} is out of range; expected 0 to 1"),
                },
            );
            d.backoff_jitter_permille
        }
    };
    let count = |v: &mut Validator<'_>, key: &str, value: Option<u64>, default: u32| match value {
        None => default,
        Some(n) if (1..=MAX_COUNT).contains(&n) => {
            u32::try_from(n).expect("at most MAX_COUNT, which fits in u32")
        }
        Some(n) => {
            v.report(
                path.key(key),
                ConfigErrorKind::OutOfRange {
                    value: n,
                    min: 1,
                    max: MAX_COUNT,
                },
            );
            default
        }
    };
    let max_restarts = count(v, "max_restarts", raw.max_restarts, d.max_restarts);
    let health_failures = count(v, "health_failures", raw.health_failures, d.health_failures);
    let restart_window = v.duration(
        path.key("restart_window"),
        raw.restart_window,
        d.restart_window,
    );
    let optional =
        |v: &mut Validator<'_>, key: &str, raw: Option<RawDuration>, default: Option<Duration>| {
            let value =
                v.duration_allowing_zero(path.key(key), raw, default.unwrap_or(Duration::ZERO));
            (!value.is_zero()).then_some(value)
        };
    let down_retry = optional(v, "down_retry", raw.down_retry, d.down_retry);
    let health_interval = optional(v, "health_interval", raw.health_interval, d.health_interval);
    let health_timeout = v.duration(
        path.key("health_timeout"),
        raw.health_timeout,
        d.health_timeout,
    );
    let max_call_duration = v.duration(
        path.key("max_call_duration"),
        raw.max_call_duration,
        d.max_call_duration,
    );
    if !stdio {
        for (key, present) in [
            ("stderr_budget", raw.stderr_budget.is_some()),
            ("stderr_window", raw.stderr_window.is_some()),
        ] {
            if present {
                v.report(
                    path.key(key),
                    ConfigErrorKind::Invalid {
                        reason: "applies only to stdio upstreams (with `command`)".to_owned(),
                    },
                );
            }
        }
    }
    let stderr_budget = match raw.stderr_budget {
        None => d.stderr_budget,
        Some(value) => match parse_size(&value) {
            Ok(bytes) => bytes,
            Err(SizeError) => {
                v.report(
                    path.key("stderr_budget"),
                    ConfigErrorKind::Invalid {
                        reason: format!(
                            "invalid size {value:?}; expected a positive number of bytes with an optional unit (KiB, MiB, GiB, TiB) or \"unlimited\""
                        ),
                    },
                );
                d.stderr_budget
            }
        },
    };
    let stderr_window = v.duration(
        path.key("stderr_window"),
        raw.stderr_window,
        d.stderr_window,
    );
    LifecycleConfig {
        restart,
        backoff_initial,
        backoff_max,
        backoff_jitter_permille,
        max_restarts,
        restart_window,
        down_retry,
        health_interval,
        health_timeout,
        health_failures,
        on_unhealthy,
        max_call_duration,
        stderr_budget,
        stderr_window,
    }
}

#[cfg(test)]
mod tests;
