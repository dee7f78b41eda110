//! What every analysis reports: a rule, a severity, where, and short evidence.

use std::fmt;
use std::ops::Range;

use serde::Serialize;

/// How bad a finding is. Ordered: `Info < Low < Medium < High < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing, never acted on.
    Info,
    /// Suspicious in some contexts.
    Low,
    /// Likely abuse; reported, and redacted where redaction applies.
    Medium,
    /// Abuse; blocked where blocking is configured.
    High,
    /// Unambiguous attack or live credential.
    Critical,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        })
    }
}

/// Where a finding is: which field of which definition (or which text) and the byte span in it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Location {
    /// A path into the analysed value, e.g. `tools[3].inputSchema.properties.path.description`,
    /// or `text` for plain text.
    pub field: String,
    /// Byte span inside that field's string value (UTF-8 offsets into the original string).
    pub span: Range<usize>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}..{}]", self.field, self.span.start, self.span.end)
    }
}

/// One detection.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Finding {
    /// Stable rule identifier, e.g. `poison.hidden-instructions` or `secret.aws-access-key`.
    pub rule: &'static str,
    /// How bad it is.
    pub severity: Severity,
    /// Where it is.
    pub location: Location,
    /// Short evidence for a human, never the full secret: secrets are shown masked.
    pub evidence: String,
}

impl Finding {
    /// The order findings are reported in: by position in the text, the most severe first at
    /// one position, then by rule.
    pub fn text_order(a: &Finding, b: &Finding) -> std::cmp::Ordering {
        a.location
            .span
            .start
            .cmp(&b.location.span.start)
            .then(b.severity.cmp(&a.severity))
            .then(a.rule.cmp(b.rule))
    }
}

/// The overall decision for one analysed item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Nothing at or above the warn threshold.
    Pass,
    /// Findings worth a human look.
    Warn,
    /// Findings severe enough to withhold the item.
    Block,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "pass",
            Verdict::Warn => "warn",
            Verdict::Block => "block",
        })
    }
}

impl Verdict {
    /// The default mapping: `High` and above block, `Medium` warns, below passes.
    pub fn from_findings(findings: &[Finding]) -> Self {
        match findings.iter().map(|f| f.severity).max() {
            Some(s) if s >= Severity::High => Verdict::Block,
            Some(Severity::Medium) => Verdict::Warn,
            _ => Verdict::Pass,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(severity: Severity) -> Finding {
        Finding {
            rule: "test.rule",
            severity,
            location: Location {
                field: "text".into(),
                span: 0..1,
            },
            evidence: String::new(),
        }
    }

    #[test]
    fn verdict_follows_the_worst_finding() {
        assert_eq!(Verdict::from_findings(&[]), Verdict::Pass);
        assert_eq!(
            Verdict::from_findings(&[finding(Severity::Low)]),
            Verdict::Pass
        );
        assert_eq!(
            Verdict::from_findings(&[finding(Severity::Low), finding(Severity::Medium)]),
            Verdict::Warn
        );
        assert_eq!(
            Verdict::from_findings(&[finding(Severity::Medium), finding(Severity::Critical)]),
            Verdict::Block
        );
    }
}
