//! `[audit]`: the tamper-evident audit log (see `docs/audit.md`).
//!
//! The log's location is the top-level `audit_log` (or `--audit-log`); its keys live in the
//! data directory unless `key_file` names another file. Keys are never written in this file:
//! `key_file` is a path, and the file it names is created with mode 0600 on first use.

use std::num::{NonZeroU64, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{ConfigErrorKind, FieldPath};
use crate::raw::RawDuration;
use crate::validate::Validator;

/// Longest a batched record may stay unsynced: bounds what a power loss can take.
pub const DEFAULT_AUDIT_SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// Default `linger`: records that no response waits for are written in batches at most this
/// far apart, instead of waking the writer once per record.
pub const DEFAULT_AUDIT_LINGER: Duration = Duration::from_millis(5);
/// Records the writer queue holds: a few seconds of a busy gateway's traffic.
pub const DEFAULT_AUDIT_QUEUE: NonZeroUsize = NonZeroUsize::new(4096).expect("non-zero");
/// Largest queue accepted: bounds memory.
pub const MAX_AUDIT_QUEUE: u64 = 1 << 20;
/// How long a durable record waits for room and then for the disk before the full-queue
/// policy applies: a stuck disk must not hang calls forever.
pub const DEFAULT_AUDIT_DURABLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Size at which the log rotates: keeps each file quick to verify and copy.
pub const DEFAULT_AUDIT_ROTATE_BYTES: NonZeroU64 =
    NonZeroU64::new(64 * 1024 * 1024).expect("non-zero");
/// Records between signed checkpoints.
pub const DEFAULT_AUDIT_CHECKPOINT_EVERY: u64 = 1000;
/// Longest time between signed checkpoints while records arrive.
pub const DEFAULT_AUDIT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60);

/// `[audit]` as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct RawAudit {
    /// `enabled`.
    pub enabled: Option<bool>,
    /// `flush`: `decisions`, `always` or `batched`.
    pub flush: Option<AuditFlush>,
    /// `sync_interval`.
    pub sync_interval: Option<RawDuration>,
    /// `linger`.
    pub linger: Option<RawDuration>,
    /// `queue`.
    pub queue: Option<u64>,
    /// `on_full`: `fail_closed` or `fail_open`.
    pub on_full: Option<AuditOnFull>,
    /// `durable_timeout`.
    pub durable_timeout: Option<RawDuration>,
    /// `capture`: `digest` or `full`.
    pub capture: Option<AuditCapture>,
    /// `sensitive_tools`.
    pub sensitive_tools: Option<Vec<String>>,
    /// `rotate_bytes`.
    pub rotate_bytes: Option<u64>,
    /// `rotate_age`.
    pub rotate_age: Option<RawDuration>,
    /// `checkpoint_every`.
    pub checkpoint_every: Option<u64>,
    /// `checkpoint_interval`.
    pub checkpoint_interval: Option<RawDuration>,
    /// `key_file`.
    pub key_file: Option<PathBuf>,
    /// `key`: a `keyring:SERVICE/USER` reference to the key (instead of a key file).
    pub key: Option<crate::ValueRef>,
}

/// When audit records reach the disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditFlush {
    /// Denials, holds, failed authentications and sensitive tools are synced before the client
    /// hears the outcome; the rest within `sync_interval`.
    #[default]
    Decisions,
    /// Every call is synced before its response.
    Always,
    /// Everything within `sync_interval`; nothing waits.
    Batched,
}

/// What a full audit queue does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOnFull {
    /// Refuse the call the record describes: nothing happens unaudited.
    #[default]
    FailClosed,
    /// Drop the record, count it, and write the count when there is room.
    FailOpen,
}

/// How arguments and results are recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditCapture {
    /// Size and keyed digest (data minimisation).
    #[default]
    Digest,
    /// The value too, with secrets redacted.
    Full,
}

/// The validated `[audit]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// Whether the gateway writes an audit log (default true).
    pub enabled: bool,
    /// Flush policy.
    pub flush: AuditFlush,
    /// Longest time a batched record stays unsynced.
    pub sync_interval: Duration,
    /// How long records nobody waits for may gather in memory before they are written.
    pub linger: Duration,
    /// Queue capacity.
    pub queue: NonZeroUsize,
    /// Full-queue policy.
    pub on_full: AuditOnFull,
    /// Wait bound for durable records.
    pub durable_timeout: Duration,
    /// Argument and result capture.
    pub capture: AuditCapture,
    /// Tool-name patterns (`*` wildcards, matched against the name the client uses) whose
    /// calls are synced before their response.
    pub sensitive_tools: Vec<String>,
    /// Rotation size.
    pub rotate_bytes: NonZeroU64,
    /// Rotation age (none by default).
    pub rotate_age: Option<Duration>,
    /// Records between checkpoints (0: by time only).
    pub checkpoint_every: u64,
    /// Longest time between checkpoints.
    pub checkpoint_interval: Duration,
    /// The key file; `None` means `audit.key` in the data directory.
    pub key_file: Option<PathBuf>,
    /// The key in the OS keyring (a [`crate::ValueRef::Keyring`]), used instead of a key
    /// file: the entry holds the key file's text (`mcp-warden secrets audit-key` creates it).
    pub key: Option<crate::ValueRef>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            flush: AuditFlush::default(),
            sync_interval: DEFAULT_AUDIT_SYNC_INTERVAL,
            linger: DEFAULT_AUDIT_LINGER,
            queue: DEFAULT_AUDIT_QUEUE,
            on_full: AuditOnFull::default(),
            durable_timeout: DEFAULT_AUDIT_DURABLE_TIMEOUT,
            capture: AuditCapture::default(),
            sensitive_tools: Vec::new(),
            rotate_bytes: DEFAULT_AUDIT_ROTATE_BYTES,
            rotate_age: None,
            checkpoint_every: DEFAULT_AUDIT_CHECKPOINT_EVERY,
            checkpoint_interval: DEFAULT_AUDIT_CHECKPOINT_INTERVAL,
            key_file: None,
            key: None,
        }
    }
}

impl Validator<'_> {
    /// Validates `[audit]`.
    pub(crate) fn audit(&mut self, path: &FieldPath, raw: RawAudit) -> AuditConfig {
        let d = AuditConfig::default();
        let queue = match raw.queue {
            None => d.queue,
            Some(n) => match usize::try_from(n).ok().and_then(NonZeroUsize::new) {
                Some(q) if n <= MAX_AUDIT_QUEUE => q,
                _ => {
                    self.report(
                        path.key("queue"),
                        ConfigErrorKind::OutOfRange {
                            value: n,
                            min: 1,
                            max: MAX_AUDIT_QUEUE,
                        },
                    );
                    d.queue
                }
            },
        };
        let rotate_bytes = match raw.rotate_bytes {
            None => d.rotate_bytes,
            Some(n) if n >= 4096 => NonZeroU64::new(n).unwrap_or(d.rotate_bytes),
            Some(n) => {
                self.report(
                    path.key("rotate_bytes"),
                    ConfigErrorKind::OutOfRange {
                        value: n,
                        min: 4096,
                        max: u64::MAX,
                    },
                );
                d.rotate_bytes
            }
        };
        let mut sensitive_tools = Vec::new();
        for (i, p) in raw
            .sensitive_tools
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            if p.is_empty() {
                self.report(path.key("sensitive_tools").index(i), ConfigErrorKind::Empty);
            } else {
                sensitive_tools.push(p);
            }
        }
        let key_file = match raw.key_file {
            Some(p) if p.as_os_str().is_empty() => {
                self.report(path.key("key_file"), ConfigErrorKind::Empty);
                None
            }
            other => other,
        };
        let key = match raw.key {
            // Keys never come from the configuration text, and a key file has its own key.
            Some(crate::ValueRef::Keyring { .. }) if key_file.is_some() => {
                self.report(
                    path.key("key"),
                    ConfigErrorKind::Invalid {
                        reason: "set either key or key_file, not both".into(),
                    },
                );
                None
            }
            Some(k @ crate::ValueRef::Keyring { .. }) => Some(k),
            Some(_) => {
                self.report(
                    path.key("key"),
                    ConfigErrorKind::Invalid {
                        reason: "the audit key comes from the OS keyring (keyring:SERVICE/USER) or from key_file, never from this file".into(),
                    },
                );
                None
            }
            None => None,
        };
        AuditConfig {
            enabled: raw.enabled.unwrap_or(d.enabled),
            flush: raw.flush.unwrap_or(d.flush),
            sync_interval: self.duration(
                path.key("sync_interval"),
                raw.sync_interval,
                d.sync_interval,
            ),
            linger: self.duration_allowing_zero(path.key("linger"), raw.linger, d.linger),
            queue,
            on_full: raw.on_full.unwrap_or(d.on_full),
            durable_timeout: self.duration(
                path.key("durable_timeout"),
                raw.durable_timeout,
                d.durable_timeout,
            ),
            capture: raw.capture.unwrap_or(d.capture),
            sensitive_tools,
            rotate_bytes,
            rotate_age: raw
                .rotate_age
                .map(|r| self.duration(path.key("rotate_age"), Some(r), Duration::MAX)),
            checkpoint_every: raw.checkpoint_every.unwrap_or(d.checkpoint_every),
            checkpoint_interval: self.duration(
                path.key("checkpoint_interval"),
                raw.checkpoint_interval,
                d.checkpoint_interval,
            ),
            key_file,
            key,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    #[test]
    fn audit_is_on_by_default_with_the_documented_policy() {
        let c = Config::parse("", "warden.toml").unwrap();
        assert!(c.audit.enabled);
        assert_eq!(c.audit.flush, AuditFlush::Decisions);
        assert_eq!(c.audit.on_full, AuditOnFull::FailClosed);
        assert_eq!(c.audit.capture, AuditCapture::Digest);
    }

    #[test]
    fn parses_every_key() {
        let c = Config::parse(
            r#"
[audit]
enabled = true
flush = "always"
sync_interval = "250ms"
linger = "0s"
queue = 128
on_full = "fail_open"
durable_timeout = "2s"
capture = "full"
sensitive_tools = ["fs__write_*"]
rotate_bytes = 1048576
rotate_age = "1day"
checkpoint_every = 10
checkpoint_interval = "30s"
key_file = "keys/audit.key"
"#,
            "warden.toml",
        )
        .unwrap();
        let a = c.audit;
        assert_eq!(a.flush, AuditFlush::Always);
        assert_eq!(a.sync_interval, Duration::from_millis(250));
        assert_eq!(a.linger, Duration::ZERO);
        assert_eq!(a.queue.get(), 128);
        assert_eq!(a.on_full, AuditOnFull::FailOpen);
        assert_eq!(a.capture, AuditCapture::Full);
        assert_eq!(a.sensitive_tools, ["fs__write_*"]);
        assert_eq!(a.rotate_bytes.get(), 1048576);
        assert_eq!(a.rotate_age, Some(Duration::from_secs(86400)));
        assert_eq!(a.checkpoint_every, 10);
        assert_eq!(a.key_file, Some(PathBuf::from("keys/audit.key")));
    }

    #[test]
    fn the_key_comes_from_the_keyring_never_from_the_text() {
        let c = Config::parse(
            "[audit]\nkey = \"keyring:mcp-warden/audit\"\n",
            "warden.toml",
        )
        .unwrap();
        assert_eq!(
            c.audit.key,
            Some(crate::ValueRef::Keyring {
                service: "mcp-warden".into(),
                user: "audit".into()
            })
        );
        for (text, line) in [
            (
                "[audit]\nkey = \"6d6173746572\"\n",
                "warden.toml:2: audit.key: the audit key comes from the OS keyring",
            ),
            (
                "[audit]\nkey = \"env:AUDIT_KEY\"\n",
                "warden.toml:2: audit.key: the audit key comes from the OS keyring",
            ),
            (
                "[audit]\nkey_file = \"k\"\nkey = \"keyring:s/u\"\n",
                "warden.toml:3: audit.key: set either key or key_file",
            ),
        ] {
            let errors = Config::parse(text, "warden.toml").unwrap_err().to_string();
            assert!(errors.contains(line), "{errors}");
            // The rejected value is never repeated.
            assert!(!errors.contains("6d6173746572"), "{errors}");
        }
    }

    #[test]
    fn reports_bad_values_with_their_line() {
        let errors = Config::parse(
            "[audit]\nqueue = 0\nflush = \"sometimes\"\nrotate_bytes = 10\nkey = \"x\"\n",
            "warden.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(errors.contains("warden.toml:2: audit.queue"), "{errors}");
        assert!(errors.contains("warden.toml:3: audit.flush"), "{errors}");
        assert!(
            errors.contains("warden.toml:4: audit.rotate_bytes"),
            "{errors}"
        );
        assert!(errors.contains("warden.toml:5: audit"), "{errors}");
    }
}
