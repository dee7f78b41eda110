//! What a fired rule hands to the sinks.

use serde::Serialize;

/// Longest identifying field (principal, session, remote, upstream, tool) in an alert, in
/// characters: principals named by a refused credential are chosen by the client.
pub(crate) const MAX_FIELD_CHARS: usize = 128;
/// Longest `detail` in an alert, in characters.
pub(crate) const MAX_DETAIL_CHARS: usize = 256;

/// One alert: which rule fired, for whom, how often, and a short summary for people.
///
/// Every field comes from audit records, which never hold credentials or content (arguments
/// and results appear there only as digests); identifying fields are truncated and stripped
/// of control characters, so an alert can be forwarded and logged as is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// Unique id of this alert within the gateway's run (receivers can deduplicate retries).
    pub id: String,
    /// Stable rule id (`auth_failures`, `denials`, ...).
    pub rule: &'static str,
    /// `low`, `medium`, `high` or `critical`.
    pub severity: &'static str,
    /// When the rule fired: the time of the record that completed it (RFC 3339, UTC).
    pub ts: String,
    /// Time of the first event counted (RFC 3339, UTC).
    pub first_ts: String,
    /// One line for people.
    pub summary: String,
    /// The principal concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// The session concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// The upstream concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// The remote address concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// The tool (or prompt, or resource) concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// Events counted.
    pub count: u64,
    /// The rule's window, in seconds.
    pub window_secs: u64,
    /// Events of the same rule and key seen during the previous cooldown and not alerted.
    pub suppressed: u64,
    /// Checklist controls concerned: the rule's own, then those of the guard decision.
    pub controls: Vec<String>,
    /// The audit detail of the last event (a guard's reason, an authentication failure kind).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// `s` cut to `max` characters, with control characters replaced: safe in a log line, a
/// summary or a chat message.
pub(crate) fn clean(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .take(max)
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect();
    if s.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

/// [`clean`] for identifying fields.
pub(crate) fn field(s: &str) -> String {
    clean(s, MAX_FIELD_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_truncates_and_strips_control_characters() {
        assert_eq!(clean("a\nb\u{1b}[31m", 10), "a\u{fffd}b\u{fffd}[31m");
        assert_eq!(clean("abcdef", 3), "abc…");
        assert_eq!(clean("abc", 3), "abc");
        assert_eq!(
            field(&"x".repeat(1000)).chars().count(),
            MAX_FIELD_CHARS + 1
        );
    }
}
