//! Secret detection: cloud and SaaS credentials (the gitleaks rule set), private keys, JWTs,
//! wallet keys and seed phrases, and generic high-entropy assignments.
//!
//! [`scan`] returns every [`Detection`] with the exact byte span of the secret (not of the
//! surrounding `key = ` context), so redaction keeps the context readable. Detections may
//! overlap; [`crate::redact`] merges them.
//!
//! Work is linear in the input: every detector is gated by a literal prefilter (keywords,
//! `-----BEGIN`, `eyJ`, runs of mnemonic words) and runs automata or single passes over bounded
//! windows around the prefilter hits.

use std::ops::Range;
use std::sync::LazyLock;

use crate::finding::{Finding, Location, Severity};

pub mod generic;
pub mod gitleaks;
pub mod keys;
mod reach;

pub use gitleaks::{RuleInfo, SkippedRule, translate};

/// What kind of sensitive data a detection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DataClass {
    /// A credential: whoever reads it can act as its owner.
    Secret,
    /// Personal data: identifies or locates a person, or pays for things.
    Pii,
}

/// One piece of sensitive data found in a text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Detection {
    /// Short kind used in redaction markers and `redact --format json`, e.g. `aws-access-token`.
    pub kind: &'static str,
    /// Stable rule id, e.g. `secret.aws-access-token` or `pii.credit-card`.
    pub rule: &'static str,
    /// Secret or personal data.
    pub class: DataClass,
    /// How bad a leak is.
    pub severity: Severity,
    /// Byte span of the sensitive value in the scanned text (on UTF-8 boundaries).
    pub span: Range<usize>,
    /// Specificity: when spans overlap, the kind of the most specific detection names the
    /// merged redaction. Validated formats (checksums, decoded structure) rank highest,
    /// generic entropy rules lowest.
    pub specificity: u8,
}

impl Detection {
    /// Converts to the shared [`Finding`] type for a given field. The evidence names the kind and
    /// length only: never any byte of the value.
    pub fn to_finding(&self, field: &str) -> Finding {
        Finding {
            rule: self.rule,
            severity: self.severity,
            location: Location {
                field: field.to_owned(),
                span: self.span.clone(),
            },
            evidence: format!("{} ({} bytes)", self.kind, self.span.len()),
        }
    }
}

/// Specificity of a gitleaks rule for a named service.
pub(crate) const SPECIFIC: u8 = 3;
/// Specificity of a format verified by a checksum or by decoding.
pub(crate) const VERIFIED: u8 = 4;
/// Specificity of keyword-plus-entropy rules.
pub(crate) const GENERIC: u8 = 1;

static GITLEAKS: LazyLock<gitleaks::Gitleaks> =
    LazyLock::new(|| gitleaks::Gitleaks::with_extra_keywords(generic::KEYWORDS));

/// Parses the rule set now rather than on first use, and builds the regexes of the rules whose
/// keywords are common words (the generic ones), so the first scanned message is not slower
/// than the others. The other rules' regexes are built when their keywords first occur (a
/// millisecond or less each): most of them never run, and built they would hold about 27 MB.
pub fn warm_up() {
    LazyLock::force(&GITLEAKS).build_common();
    keys::warm_up();
    generic::warm_up();
}

/// gitleaks rules that are not used on content, with the reason.
pub fn skipped_rules() -> &'static [SkippedRule] {
    GITLEAKS.skipped()
}

/// Number of gitleaks rules in use.
pub fn active_rule_count() -> usize {
    GITLEAKS.active()
}

/// The upstream description of the gitleaks rule `id`, if it is in use.
pub fn rule_description(id: &str) -> Option<&'static str> {
    GITLEAKS.description(id)
}

/// The gitleaks rules in use, as the engine runs them.
pub fn rules() -> Vec<RuleInfo> {
    GITLEAKS.infos()
}

/// Ids of the gitleaks rules in use.
pub fn active_rule_ids() -> Vec<&'static str> {
    GITLEAKS.active_ids().collect()
}

/// Every secret in `text`, sorted by start offset. Spans may overlap.
pub fn scan(text: &str) -> Vec<Detection> {
    // One keyword pass serves the gitleaks rules and the generic detectors.
    let (matches, generic_hits) = GITLEAKS.scan(text);
    let mut out: Vec<Detection> = matches
        .into_iter()
        .map(|m| Detection {
            kind: m.id,
            rule: m.rule,
            class: DataClass::Secret,
            severity: if m.generic {
                Severity::Medium
            } else {
                Severity::High
            },
            span: m.span,
            specificity: if m.generic { GENERIC } else { SPECIFIC },
        })
        .collect();
    keys::scan(text, &mut out);
    generic::scan(text, &generic_hits, &mut out);
    out.sort_by(|a, b| (a.span.start, a.span.end, a.kind).cmp(&(b.span.start, b.span.end, b.kind)));
    out.dedup_by(|a, b| a.span == b.span && a.kind == b.kind);
    out
}

#[cfg(test)]
mod tests;
