//! Throughput of the full poisoning / injection / Unicode analysis on one core.
//!
//! - `poisoning/description_text`: description-like prose (tool descriptions as real servers
//!   write them, with one poisoned paragraph), analysed as definition text.
//! - `poisoning/large_result_1mib`: a 1 MiB tool result (markdown, JSON, code, logs, several
//!   languages) analysed as content.
//! - `poisoning/result_path_1mib`, `poisoning/result_path_1mib_text`: everything a text result
//!   goes through (secret and PII redaction, then injection and Unicode analysis) on the 1 MiB
//!   result above and on the `redact/1mib_text` input.
//! - `poisoning/short_result`: a short tool result text (a sentence, different each time, as
//!   most results are), analysed as content: the fixed cost per string.
//! - `poisoning/analyze_tools_github_like`: 100 definitions with schemas, cross-tool checks
//!   included (throughput over the JSON size).
#![allow(missing_docs)]

#[path = "../tests/common/planted.rs"]
mod planted;

#[path = "common/inputs.rs"]
mod inputs;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use inputs::DESCRIPTION;
use std::hint::black_box;
use warden_detect::{TextKind, analyze_text, analyze_tools};

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("poisoning");
    warden_detect::secrets::warm_up();
    warden_detect::pii::warm_up();
    let description = inputs::description_text();
    g.throughput(Throughput::Bytes(description.len() as u64));
    g.bench_function("description_text", |b| {
        b.iter(|| analyze_text(black_box(&description), TextKind::ToolDescription))
    });

    let result = inputs::large_result();
    g.throughput(Throughput::Bytes(result.len() as u64));
    g.sample_size(20);
    g.bench_function("large_result_1mib", |b| {
        b.iter(|| analyze_text(black_box(&result), TextKind::ToolResult))
    });
    // Everything a text result goes through: redaction, then injection and Unicode analysis.
    g.bench_function("result_path_1mib", |b| {
        b.iter(|| inputs::result_path(black_box(&result)))
    });
    let typical = inputs::redact_text(false);
    g.throughput(Throughput::Bytes(typical.len() as u64));
    g.bench_function("result_path_1mib_text", |b| {
        b.iter(|| inputs::result_path(black_box(&typical)))
    });

    let shorts: Vec<String> = (0..1024)
        .map(|i| format!("Echo: request {i} finished in {} ms", i * 7 % 1000))
        .collect();
    let mut next = 0;
    g.throughput(Throughput::Elements(1));
    g.sample_size(100);
    g.bench_function("short_result", |b| {
        b.iter(|| {
            next = (next + 1) % shorts.len();
            analyze_text(black_box(&shorts[next]), TextKind::ToolResult)
        })
    });

    // The benchmark harness's echo result (`--payload 64`): a long run of one letter, which
    // is also valid base64.
    let echo = format!("Echo: {}", "x".repeat(64));
    g.bench_function("echo_result_64", |b| {
        b.iter(|| analyze_text(black_box(&echo), TextKind::ToolResult))
    });

    let tools: Vec<serde_json::Value> = (0..100)
        .map(|i| {
            serde_json::json!({
                "name": format!("tool_{i}_get_details"),
                "description": DESCRIPTION,
                "inputSchema": {"type": "object", "properties": {
                    "owner": {"type": "string", "description": "Repository owner"},
                    "method": {"type": "string", "enum": ["get_workflow", "get_workflow_run", "get_workflow_job"]},
                    "resource_id": {"type": "string", "description": "The unique identifier of the resource."}
                }},
                "annotations": {"readOnlyHint": true, "title": "Get details"}
            })
        })
        .collect();
    let bytes: usize = tools.iter().map(|t| t.to_string().len()).sum();
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("analyze_tools_github_like", |b| {
        b.iter(|| analyze_tools(black_box(&tools)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
