//! SARIF 2.1.0 output: one run, the rules that fired with their metadata, one result per
//! finding located at the configuration file and line it is about.

use serde_json::{Value, json};
use warden_detect::Severity;

use crate::checks::{RULES, ScanFinding};

/// SARIF `level` for a severity.
pub fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Info => "note",
    }
}

/// A file path as a SARIF artifact URI (`file://` for absolute paths).
fn uri(path: &str) -> String {
    let p = path.replace('\\', "/");
    let encoded: String = p
        .chars()
        .map(|c| match c {
            ' ' => "%20".to_owned(),
            '#' => "%23".to_owned(),
            '?' => "%3F".to_owned(),
            '%' => "%25".to_owned(),
            c => c.to_string(),
        })
        .collect();
    if encoded.starts_with('/') {
        format!("file://{encoded}")
    } else if encoded.as_bytes().get(1) == Some(&b':') {
        format!("file:///{encoded}")
    } else {
        encoded
    }
}

/// Extra rule metadata for findings produced outside this crate (the detection engine's rule
/// ids), so every result has a rule.
#[derive(Debug, Clone)]
pub struct ExtraRule {
    /// Rule id.
    pub id: String,
    /// Description.
    pub summary: String,
}

/// The SARIF log for `findings`.
pub fn to_sarif(findings: &[ScanFinding], version: &str, extra: &[ExtraRule]) -> Value {
    let mut rules: Vec<Value> = Vec::new();
    let mut ids: Vec<String> = Vec::new();
    let mut fired: Vec<&str> = findings.iter().map(|f| f.rule).collect();
    fired.sort_unstable();
    fired.dedup();
    for id in fired {
        let (summary, controls, severity) = match RULES.iter().find(|r| r.id == id) {
            Some(r) => (r.summary.to_owned(), r.controls.to_vec(), r.severity),
            None => (
                extra
                    .iter()
                    .find(|e| e.id == id)
                    .map_or_else(|| id.to_owned(), |e| e.summary.clone()),
                vec![],
                Severity::Medium,
            ),
        };
        ids.push(id.to_owned());
        rules.push(json!({
            "id": id,
            "name": id.replace(['.', '-'], "_"),
            "shortDescription": {"text": summary},
            "defaultConfiguration": {"level": level(severity)},
            "properties": {"tags": ["security", "mcp"], "controls": controls},
        }));
    }
    let results: Vec<Value> = findings
        .iter()
        .map(|f| {
            let index = ids.iter().position(|i| i == f.rule).unwrap_or(0);
            json!({
                "ruleId": f.rule,
                "ruleIndex": index,
                "level": level(f.severity),
                "message": {"text": format!("{}: {} ({})", f.server, f.message, f.evidence)},
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": {"uri": uri(&f.file)},
                        "region": {"startLine": f.line.max(1)},
                    },
                    "logicalLocations": [{"name": f.server, "kind": "object"}],
                }],
                "properties": {"client": f.client.name(), "severity": f.severity.to_string()},
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "mcp-warden",
                "version": version,
                "informationUri": "https://github.com/mcp-warden/mcp-warden",
                "rules": rules,
            }},
            "results": results,
        }],
    })
}
