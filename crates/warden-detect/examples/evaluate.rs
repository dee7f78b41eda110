//! Runs the poisoning, injection and Unicode analyses over the public evaluation corpus and
//! the development data, and writes precision, recall and false-positive rate per dataset
//! and per technique to a Markdown report.
//!
//! ```sh
//! cargo run --release -p warden-detect --example evaluate -- [CORPUS_DIR] [--out REPORT] [--verbose]
//! ```
//! `CORPUS_DIR` defaults to `../shared/corpus` relative to the repository root, `REPORT` to
//! `docs/detection-report.md`. An item counts as detected when its verdict is `warn` or
//! `block` (a finding of severity medium or above); the report also gives the `block`
//! figures.
#![expect(clippy::print_stdout, reason = "an evaluation tool prints its summary")]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;
use warden_detect::{
    Context, Finding, Severity, TextKind, Verdict, analyze_json_text, analyze_text, analyze_tool,
    analyze_tools,
};

#[derive(Default, Clone, Copy)]
struct Counts {
    tp: usize,
    fn_: usize,
    fp: usize,
    tn: usize,
    tp_block: usize,
    fp_block: usize,
}

impl Counts {
    fn add(&mut self, malicious: bool, v: Verdict) {
        let hit = v >= Verdict::Warn;
        let block = v == Verdict::Block;
        match (malicious, hit) {
            (true, true) => self.tp += 1,
            (true, false) => self.fn_ += 1,
            (false, true) => self.fp += 1,
            (false, false) => self.tn += 1,
        }
        if block {
            if malicious {
                self.tp_block += 1;
            } else {
                self.fp_block += 1;
            }
        }
    }
    fn merge(&mut self, o: &Counts) {
        self.tp += o.tp;
        self.fn_ += o.fn_;
        self.fp += o.fp;
        self.tn += o.tn;
        self.tp_block += o.tp_block;
        self.fp_block += o.fp_block;
    }
    fn n(&self) -> usize {
        self.tp + self.fn_ + self.fp + self.tn
    }
}

fn pct(a: usize, b: usize) -> String {
    if b == 0 {
        "–".into()
    } else {
        format!("{:.1}%", 100.0 * a as f64 / b as f64)
    }
}

struct Item {
    id: String,
    technique: String,
    malicious: bool,
    verdict: Verdict,
    rules: Vec<&'static str>,
}

fn read_jsonl(path: &Path) -> Vec<Value> {
    let Ok(text) = std::fs::read_to_string(path) else {
        println!("missing: {}", path.display());
        return Vec::new();
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn verdict(findings: &[Finding]) -> (Verdict, Vec<&'static str>) {
    let mut rules: Vec<&'static str> = findings
        .iter()
        .filter(|f| f.severity >= Severity::Medium)
        .map(|f| f.rule)
        .collect();
    rules.sort_unstable();
    rules.dedup();
    (Verdict::from_findings(findings), rules)
}

fn str_field<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

fn item(v: &Value, verdict_rules: (Verdict, Vec<&'static str>), technique: Option<&str>) -> Item {
    Item {
        id: str_field(v, "id").to_owned(),
        technique: technique.map(str::to_owned).unwrap_or_else(|| {
            v.get("attack_type")
                .and_then(Value::as_str)
                .unwrap_or("benign")
                .to_owned()
        }),
        malicious: str_field(v, "label") != "benign",
        verdict: verdict_rules.0,
        rules: verdict_rules.1,
    }
}

/// Everything after this line of the report is kept as it is by the next run.
const KEEP_MARKER: &str =
    "\n<!-- Sections below are written by other evaluations and kept as they are. -->\n\n";

/// Splices a payload into a carrier after its first paragraph (or first line).
fn splice(carrier: &str, payload: &str) -> String {
    let at = carrier
        .find("\n\n")
        .or_else(|| carrier.find('\n'))
        .unwrap_or(carrier.len());
    format!(
        "{}\n\n{}\n\n{}",
        &carrier[..at],
        payload,
        carrier[at..].trim_start()
    )
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut args = std::env::args().skip(1);
    let mut corpus: Option<PathBuf> = None;
    let mut out = root.join("docs/detection-report.md");
    let mut verbose = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--out" => out = args.next().map(PathBuf::from).unwrap_or(out),
            "--verbose" => verbose = true,
            _ => corpus = Some(PathBuf::from(a)),
        }
    }
    let corpus = corpus.unwrap_or_else(|| root.join("../shared/corpus"));
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");

    let mut datasets: Vec<(String, &'static str, Vec<Item>)> = Vec::new();

    // Benign real-server tools: alone and as one server's list (cross-tool checks).
    for (name, file) in [
        (
            "github-mcp-server-tools",
            "github-mcp-server-tools/tools.jsonl",
        ),
        ("playwright-mcp-tools", "playwright-mcp-tools/tools.jsonl"),
    ] {
        let rows = read_jsonl(&corpus.join(file));
        let tools: Vec<Value> = rows.iter().filter_map(|r| r.get("tool").cloned()).collect();
        let items = rows
            .iter()
            .map(|r| {
                item(
                    r,
                    verdict(&analyze_tool(&r["tool"], &Context::default())),
                    None,
                )
            })
            .collect();
        datasets.push((name.to_owned(), "tool", items));
        let together = analyze_tools(&tools);
        let items = rows
            .iter()
            .zip(together.iter())
            .map(|(r, f)| item(r, verdict(f), None))
            .collect();
        datasets.push((
            format!("{name} (as one list, cross-tool checks)"),
            "tool",
            items,
        ));
    }

    // MCP-SafetyBench: poisoned descriptions and injected results.
    let rows = read_jsonl(&corpus.join("mcp-safetybench/attacks.jsonl"));
    let mut tools = Vec::new();
    let mut results = Vec::new();
    for r in &rows {
        match str_field(r, "kind") {
            "tool_description" => tools.push(item(
                r,
                verdict(&analyze_tool(&r["tool"], &Context::default())),
                None,
            )),
            "tool_result" => results.push(item(r, verdict(&analyze_result(&r["text"])), None)),
            _ => {}
        }
    }
    datasets.push(("mcp-safetybench tool_description".into(), "tool", tools));
    datasets.push(("mcp-safetybench tool_result".into(), "result", results));

    // MSB: fragments appended to tool descriptions, results (malicious and benign), goals.
    let rows = read_jsonl(&corpus.join("msb/attacks.jsonl"));
    let mut frags = Vec::new();
    let mut msb_results = Vec::new();
    let mut goals = Vec::new();
    for r in &rows {
        let text = str_field(r, "text");
        match str_field(r, "kind") {
            "tool_description_fragment" => {
                let tool = serde_json::json!({
                    "name": "read_text_file",
                    "description": format!("Read the complete contents of a file as text.{text}"),
                    "inputSchema": {"type": "object", "properties": {"path": {"type": "string"}}}
                });
                frags.push(item(
                    r,
                    verdict(&analyze_tool(&tool, &Context::default())),
                    None,
                ));
            }
            "tool_result" => msb_results.push(item(r, verdict(&analyze_result(&r["text"])), None)),
            "injection_goal" => goals.push(item(
                r,
                verdict(&analyze_text(text, TextKind::ToolResult)),
                None,
            )),
            _ => {}
        }
    }
    datasets.push((
        "msb tool_description_fragment (appended to a description)".into(),
        "tool",
        frags,
    ));
    datasets.push(("msb tool_result".into(), "result", msb_results));
    datasets.push((
        "msb injection_goal (raw goal as a result)".into(),
        "result",
        goals,
    ));

    // Development data.
    let benign_results = read_jsonl(&data.join("benign_results.jsonl"));
    for (name, file, kind) in [
        (
            "dev benign_tools (hard negatives)",
            "benign_tools.jsonl",
            "tool",
        ),
        ("dev poisoned_tools", "poisoned_tools.jsonl", "tool"),
        (
            "dev benign_results (hard negatives)",
            "benign_results.jsonl",
            "result",
        ),
        ("dev injected_results", "injected_results.jsonl", "result"),
    ] {
        let rows = read_jsonl(&data.join(file));
        let items = rows
            .iter()
            .map(|r| {
                let v = if kind == "tool" {
                    verdict(&analyze_tool(&r["tool"], &Context::default()))
                } else {
                    verdict(&analyze_text(str_field(r, "text"), TextKind::ToolResult))
                };
                let technique = str_field(r, "attack_type");
                item(r, v, Some(technique))
            })
            .collect();
        datasets.push((name.to_owned(), kind, items));
    }

    // BIPIA payloads spliced into the benign carriers.
    let carriers: Vec<&str> = benign_results
        .iter()
        .map(|r| str_field(r, "text"))
        .collect();
    let rows = read_jsonl(&corpus.join("bipia/attacks.jsonl"));
    if !carriers.is_empty() {
        let mut by_split: BTreeMap<String, Vec<Item>> = BTreeMap::new();
        for (i, r) in rows.iter().enumerate() {
            let spliced = splice(carriers[i % carriers.len()], str_field(r, "text"));
            let split = r
                .pointer("/meta/split")
                .and_then(Value::as_str)
                .unwrap_or("all")
                .to_owned();
            let family = str_field(r, "attack_type")
                .split(':')
                .next()
                .unwrap_or("")
                .to_owned();
            by_split
                .entry(format!(
                    "bipia {family} spliced into dev benign results ({split})"
                ))
                .or_default()
                .push(item(
                    r,
                    verdict(&analyze_text(&spliced, TextKind::ToolResult)),
                    None,
                ));
        }
        for (k, v) in by_split {
            datasets.push((k, "result", v));
        }
    }

    let mut report = render(&datasets, verbose);
    // Other sections of the same report (the secrets evaluation) are written by other tools:
    // keep whatever follows the marker (or, in a report without it, the `## Secrets` section).
    report.push_str(KEEP_MARKER);
    if let Ok(old) = std::fs::read_to_string(&out) {
        let kept = old
            .find(KEEP_MARKER)
            .map(|i| &old[i + KEEP_MARKER.len()..])
            .or_else(|| old.find("\n## Secrets").map(|i| &old[i + 1..]));
        if let Some(kept) = kept {
            report.push_str(kept);
        }
    }
    if let Err(e) = std::fs::write(&out, &report) {
        println!("cannot write {}: {e}", out.display());
    }
    println!("{}", summary(&datasets));
}

/// A result is text, or structured content (analysed string by string).
fn analyze_result(v: &Value) -> Vec<Finding> {
    match v {
        Value::String(s) => analyze_text(s, TextKind::ToolResult),
        other => analyze_json_text(other, TextKind::ToolResult),
    }
}

fn counts(items: &[Item]) -> Counts {
    let mut c = Counts::default();
    for i in items {
        c.add(i.malicious, i.verdict);
    }
    c
}

fn summary(datasets: &[(String, &'static str, Vec<Item>)]) -> String {
    let mut s = String::new();
    for (name, _, items) in datasets {
        let c = counts(items);
        let _ = writeln!(
            s,
            "{name:70} n={:4} recall={:>6} fpr={:>6}",
            c.n(),
            pct(c.tp, c.tp + c.fn_),
            pct(c.fp, c.fp + c.tn)
        );
    }
    s
}

fn render(datasets: &[(String, &'static str, Vec<Item>)], verbose: bool) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Detection report: tool poisoning, prompt injection, Unicode tricks\n"
    );
    let _ = writeln!(
        s,
        "Generated by `cargo run --release -p warden-detect --example evaluate` (see `docs/detection.md`).\n\
         An item is *detected* when the engine's verdict is `warn` or `block` (a finding of severity\n\
         medium or above). *Block* columns count `block` verdicts only (high or critical).\n\
         Precision is computed per kind (tool definitions, results) against the benign items of the\n\
         same kind: the real-server tools plus the development hard negatives for tools, and the\n\
         development benign results plus MSB's benign results for results.\n\n\
         The development data (`dev ...` rows) was written alongside the rules and is optimistic\n\
         by construction; the public-corpus rows were measured, not tuned item by item. BIPIA rows\n\
         are BIPIA payloads spliced into the development benign results (carrier `i mod n`).\n"
    );
    // Pools per kind for precision.
    let mut benign_fp: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for (name, kind, items) in datasets {
        if name.contains("as one list") {
            continue;
        }
        let c = counts(items);
        let e = benign_fp.entry(kind).or_default();
        e.0 += c.fp;
        e.1 += c.fp + c.tn;
    }
    let _ = writeln!(s, "## Per dataset\n");
    let _ = writeln!(
        s,
        "| dataset | kind | items | malicious | detected (recall) | blocked | benign | false positives (FPR) | blocked benign | precision |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, kind, items) in datasets {
        let c = counts(items);
        let pool_fp = benign_fp.get(kind).map_or(0, |p| p.0);
        let precision = if c.tp + c.fn_ == 0 {
            "–".into()
        } else {
            pct(c.tp, c.tp + pool_fp)
        };
        let _ = writeln!(
            s,
            "| {name} | {kind} | {} | {} | {} ({}) | {} | {} | {} ({}) | {} | {precision} |",
            c.n(),
            c.tp + c.fn_,
            c.tp,
            pct(c.tp, c.tp + c.fn_),
            c.tp_block,
            c.fp + c.tn,
            c.fp,
            pct(c.fp, c.fp + c.tn),
            c.fp_block,
        );
    }
    // Tool poisoning headline.
    let mut poison = Counts::default();
    let mut benign_real = Counts::default();
    for (name, _, items) in datasets {
        let c = counts(items);
        if name.starts_with("mcp-safetybench tool_description")
            || name.starts_with("msb tool_description")
        {
            poison.merge(&c);
        }
        if (name == "github-mcp-server-tools" || name == "playwright-mcp-tools")
            && !name.contains("list")
        {
            benign_real.merge(&c);
        }
    }
    let _ = writeln!(s, "\n## Targets\n");
    let _ = writeln!(s, "| target | figure |\n|---|---|");
    let _ = writeln!(
        s,
        "| tool poisoning recall (public corpus: MCP-SafetyBench descriptions + MSB fragments), target >= 95% | {} ({} of {}) |",
        pct(poison.tp, poison.tp + poison.fn_),
        poison.tp,
        poison.tp + poison.fn_
    );
    let _ = writeln!(
        s,
        "| false positives on benign real-server tools (github-mcp-server, playwright-mcp), target <= 2% | {} ({} of {}) |",
        pct(benign_real.fp, benign_real.fp + benign_real.tn),
        benign_real.fp,
        benign_real.fp + benign_real.tn
    );

    let _ = writeln!(s, "\n## Per technique\n");
    let _ = writeln!(
        s,
        "| dataset | technique | items | detected | recall | blocked |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|");
    for (name, _, items) in datasets {
        if !items.iter().any(|i| i.malicious) {
            continue;
        }
        let mut by: BTreeMap<&str, Counts> = BTreeMap::new();
        for i in items.iter().filter(|i| i.malicious) {
            by.entry(&i.technique).or_default().add(true, i.verdict);
        }
        for (t, c) in by {
            let _ = writeln!(
                s,
                "| {name} | {t} | {} | {} | {} | {} |",
                c.n(),
                c.tp,
                pct(c.tp, c.n()),
                c.tp_block
            );
        }
    }
    let _ = writeln!(s, "\n## Rules behind the detections\n");
    let mut rule_counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (name, _, items) in datasets {
        if name.contains("as one list") {
            continue;
        }
        for i in items.iter().filter(|i| i.malicious) {
            for r in &i.rules {
                *rule_counts.entry(r).or_default() += 1;
            }
        }
    }
    let _ = writeln!(
        s,
        "| rule | malicious items where it fired (medium or above) |\n|---|---:|"
    );
    for (r, n) in rule_counts {
        let _ = writeln!(s, "| `{r}` | {n} |");
    }
    let _ = writeln!(s, "\n## Errors\n");
    let _ = writeln!(
        s,
        "False positives (benign items with a `warn` or `block` verdict) and misses, by id:\n"
    );
    for (name, _, items) in datasets {
        let fps: Vec<String> = items
            .iter()
            .filter(|i| !i.malicious && i.verdict >= Verdict::Warn)
            .map(|i| format!("`{}` ({})", i.id, i.rules.join(", ")))
            .collect();
        let misses: Vec<String> = items
            .iter()
            .filter(|i| i.malicious && i.verdict < Verdict::Warn)
            .map(|i| format!("`{}`", i.id))
            .collect();
        if !fps.is_empty() {
            let _ = writeln!(s, "- {name}, false positives: {}", fps.join("; "));
        }
        if !misses.is_empty() {
            let shown: Vec<String> = if verbose {
                misses.clone()
            } else {
                misses.iter().take(15).cloned().collect()
            };
            let more = if misses.len() > shown.len() {
                format!(" and {} more", misses.len() - shown.len())
            } else {
                String::new()
            };
            let _ = writeln!(s, "- {name}, misses: {}{more}", shown.join(", "));
        }
    }
    s
}
