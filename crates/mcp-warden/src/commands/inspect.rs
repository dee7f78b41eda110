//! `mcp-warden inspect FILE|-`: offline analysis of tool definitions (poisoning, Unicode
//! tricks, look-alike names), and `mcp-warden inspect --text FILE|-`: analysis of text as a
//! tool result (indirect prompt injection, hidden content, secrets and personal data).
//!
//! Input for definitions: a JSON array of MCP tool objects, a `tools/list` result
//! (`{"tools": [...]}`, also inside a JSON-RPC response), or JSON Lines with one tool per
//! line. Output per `DESIGN.md`: a table for people, or with `--format json` an array with one
//! `{"name","verdict","findings":[{"rule","severity","location","evidence"}]}` per input tool,
//! same order (for `--text`: one `{"verdict","findings"}`). Exit 1 when a finding reaches
//! `--fail-on`, 2 on unreadable input.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use serde::Serialize;
use serde_json::Value;
use warden_detect::text::display_safe;
use warden_detect::{Finding, Severity, TextKind, Verdict};

/// Largest input read, so a mistaken `inspect /dev/zero` ends with an error, not out of memory.
const MAX_INPUT_BYTES: u64 = 256 * 1024 * 1024;

/// Output format of `inspect`.
#[derive(Debug, Clone, Copy, Default, ValueEnum, PartialEq, Eq)]
pub(crate) enum InspectFormat {
    /// A table for people.
    #[default]
    Table,
    /// JSON as specified in DESIGN.md.
    Json,
}

/// A severity threshold on the command line.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub(crate) enum SeverityArg {
    /// Any finding.
    Info,
    /// Low and above.
    Low,
    /// Medium and above.
    Medium,
    /// High and above.
    High,
    /// Critical only.
    Critical,
}

impl From<SeverityArg> for Severity {
    fn from(s: SeverityArg) -> Self {
        match s {
            SeverityArg::Info => Severity::Info,
            SeverityArg::Low => Severity::Low,
            SeverityArg::Medium => Severity::Medium,
            SeverityArg::High => Severity::High,
            SeverityArg::Critical => Severity::Critical,
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// Tool definitions (or, with `--text`, the text) to analyse: a file, or `-` for standard
    /// input.
    #[arg(value_name = "FILE|-")]
    pub(crate) input: PathBuf,
    /// Analyse the input as text returned by a tool (indirect injection, secrets).
    #[arg(long)]
    pub(crate) text: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub(crate) format: InspectFormat,
    /// Exit with status 1 when a finding has at least this severity.
    #[arg(long, value_enum, value_name = "SEVERITY")]
    pub(crate) fail_on: Option<SeverityArg>,
}

/// One analysed tool in the JSON output.
#[derive(Debug, Serialize)]
struct ToolReport {
    name: Option<String>,
    verdict: Verdict,
    findings: Vec<Finding>,
}

/// The analysed text in the JSON output.
#[derive(Debug, Serialize)]
struct TextReport {
    verdict: Verdict,
    findings: Vec<Finding>,
}

/// Runs the command.
pub(crate) fn inspect(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let input = read_input(&args.input)?;
    let (out, worst) = if args.text {
        let report = analyze_text(&input);
        let worst = report.findings.iter().map(|f| f.severity).max();
        (render_text(&report, args.format)?, worst)
    } else {
        let tools = parse_tools(&input).with_context(|| {
            format!(
                "cannot read tool definitions from `{}`",
                args.input.display()
            )
        })?;
        let reports = analyze_tools(&tools);
        let worst = reports
            .iter()
            .flat_map(|r| r.findings.iter().map(|f| f.severity))
            .max();
        (render_tools(&reports, args.format)?, worst)
    };
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")?;
    let failed = match (args.fail_on, worst) {
        (Some(threshold), Some(worst)) => worst >= Severity::from(threshold),
        _ => false,
    };
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn read_input(path: &std::path::Path) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .lock()
            .take(MAX_INPUT_BYTES + 1)
            .read_to_end(&mut bytes)
            .context("cannot read standard input")?;
    } else {
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_INPUT_BYTES + 1).read_to_end(&mut bytes))
            .with_context(|| format!("cannot read `{}`", path.display()))?;
    }
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        anyhow::bail!("input is larger than {MAX_INPUT_BYTES} bytes");
    }
    String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "input is not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })
}

/// Tool objects from a JSON array, a `tools/list` result (bare or in a JSON-RPC response),
/// a single tool object, or JSON Lines.
fn parse_tools(input: &str) -> anyhow::Result<Vec<Value>> {
    match serde_json::from_str::<Value>(input) {
        Ok(Value::Array(tools)) => Ok(tools),
        Ok(Value::Object(map)) => {
            let list = map
                .get("tools")
                .or_else(|| map.get("result").and_then(|r| r.get("tools")));
            match list {
                Some(Value::Array(tools)) => Ok(tools.clone()),
                Some(_) => anyhow::bail!("`tools` is not an array"),
                None if map.contains_key("name") => Ok(vec![Value::Object(map)]),
                None => anyhow::bail!(
                    "expected a JSON array of tools, a tools/list result or JSON Lines of tools"
                ),
            }
        }
        Ok(_) => anyhow::bail!(
            "expected a JSON array of tools, a tools/list result or JSON Lines of tools"
        ),
        Err(whole) => {
            let mut tools = Vec::new();
            for (n, line) in input.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let v: Value = serde_json::from_str(line).map_err(|e| {
                    if tools.is_empty() && n == 0 {
                        anyhow::anyhow!("not JSON: {whole}")
                    } else {
                        anyhow::anyhow!("line {}: not a JSON tool: {e}", n + 1)
                    }
                })?;
                tools.push(v);
            }
            if tools.is_empty() {
                anyhow::bail!("no tools in the input");
            }
            Ok(tools)
        }
    }
}

fn analyze_tools(tools: &[Value]) -> Vec<ToolReport> {
    warden_detect::analyze_tools(tools)
        .into_iter()
        .zip(tools)
        .map(|(findings, tool)| ToolReport {
            name: tool.get("name").and_then(Value::as_str).map(str::to_owned),
            verdict: Verdict::from_findings(&findings),
            findings,
        })
        .collect()
}

fn analyze_text(text: &str) -> TextReport {
    let mut findings = warden_detect::analyze_text(text, TextKind::ToolResult);
    findings.extend(warden_detect::redact::findings(text, "text"));
    findings.sort_by(warden_detect::Finding::text_order);
    TextReport {
        verdict: Verdict::from_findings(&findings),
        findings,
    }
}

fn render_tools(reports: &[ToolReport], format: InspectFormat) -> anyhow::Result<String> {
    Ok(match format {
        InspectFormat::Json => {
            let mut s =
                serde_json::to_string_pretty(reports).context("cannot encode the report")?;
            s.push('\n');
            s
        }
        InspectFormat::Table => {
            let mut rows = Vec::new();
            for r in reports {
                let name = r
                    .name
                    .as_deref()
                    .map_or_else(|| "(no name)".to_owned(), |n| display_safe(n, 40));
                if r.findings.is_empty() {
                    rows.push([
                        name.clone(),
                        r.verdict.to_string(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                        String::new(),
                    ]);
                }
                for f in &r.findings {
                    rows.push([
                        name.clone(),
                        r.verdict.to_string(),
                        f.severity.to_string(),
                        f.rule.to_owned(),
                        display_safe(&f.location.to_string(), 60),
                        display_safe(&f.evidence, 100),
                    ]);
                }
            }
            let blocked = reports
                .iter()
                .filter(|r| r.verdict == Verdict::Block)
                .count();
            let warned = reports
                .iter()
                .filter(|r| r.verdict == Verdict::Warn)
                .count();
            let mut s = table(
                &[
                    "TOOL", "VERDICT", "SEVERITY", "RULE", "LOCATION", "EVIDENCE",
                ],
                &rows,
            );
            s.push_str(&format!(
                "\n{} tools: {blocked} block, {warned} warn, {} pass\n",
                reports.len(),
                reports.len() - blocked - warned
            ));
            s
        }
    })
}

fn render_text(report: &TextReport, format: InspectFormat) -> anyhow::Result<String> {
    Ok(match format {
        InspectFormat::Json => {
            let mut s = serde_json::to_string_pretty(report).context("cannot encode the report")?;
            s.push('\n');
            s
        }
        InspectFormat::Table => {
            let rows: Vec<[String; 6]> = report
                .findings
                .iter()
                .map(|f| {
                    [
                        report.verdict.to_string(),
                        f.severity.to_string(),
                        f.rule.to_owned(),
                        display_safe(&f.location.to_string(), 60),
                        display_safe(&f.evidence, 100),
                        String::new(),
                    ]
                })
                .collect();
            let mut s = if rows.is_empty() {
                String::new()
            } else {
                table(
                    &["VERDICT", "SEVERITY", "RULE", "LOCATION", "EVIDENCE", ""],
                    &rows,
                )
            };
            s.push_str(&format!(
                "verdict: {}, {} findings\n",
                report.verdict,
                report.findings.len()
            ));
            s
        }
    })
}

/// Left-aligned columns, two spaces apart; the last column is not padded.
fn table(header: &[&str; 6], rows: &[[String; 6]]) -> String {
    let mut widths = header.map(|h| h.chars().count());
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let last = cells.iter().rposition(|c| !c.is_empty()).unwrap_or(0);
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate().take(last + 1) {
            l.push_str(c);
            if i < last {
                l.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        l.push('\n');
        l
    };
    let mut s = line(header.to_vec());
    for r in rows {
        s.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    s
}

#[cfg(test)]
mod tests;
