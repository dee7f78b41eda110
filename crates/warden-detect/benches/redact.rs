//! Throughput of the secret scanner and of redaction on 1 MiB of text.
//!
//! Two inputs, both deterministic:
//! - `1mib_text`: tool-result-like text (logs, JSON records, Markdown, code, prose in several
//!   languages) with a hard negative (hash, UUID, git SHA, base64, placeholder) every 10 lines
//!   and a planted secret or personal datum every 100 lines;
//! - `1mib_keyword_dense`: a stress input where every line mentions keys, tokens or passwords
//!   (a hard negative built around a secret-like name every third line, a planted value every
//!   40 lines), so the keyword prefilters fire everywhere.
#![allow(missing_docs)]

#[path = "../tests/common/planted.rs"]
mod planted;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::StdRng;

const MIB: usize = 1024 * 1024;

/// Ordinary tool-result lines without secret-like names.
const TYPICAL: &[&str] = &[
    "2024-05-01T12:00:03.114Z INFO  http: GET /v1/orders?page=3 200 41ms bytes=18234",
    "{\"id\": 48213, \"status\": \"shipped\", \"items\": 3, \"total\": 129.90, \"currency\": \"EUR\"}",
    "| 2024-04-30 | Berlin | 17 | 12.5% | on track |",
    "fn parse_header(line: &str) -> Option<(&str, &str)> { line.split_once(':') }",
    "Die Lieferung erfolgt voraussichtlich am Donnerstag zwischen 9 und 12 Uhr.",
    "El informe trimestral muestra un crecimiento del 8 % en ventas online.",
    "会议纪要：下周二上午十点评审设计文档，请提前阅读。",
    "    at com.example.billing.InvoiceService.render(InvoiceService.java:214)",
    "- [x] migrate the staging database to the new cluster (done 2024-04-28)",
    "Found 3 files matching \"*.rs\" in src/commands (1.2 ms).",
];

fn text(dense: bool) -> String {
    let mut rng = StdRng::seed_from_u64(42);
    let generators = planted::generators();
    let (secret_every, negative_every) = if dense { (40, 3) } else { (100, 10) };
    let mut out = String::with_capacity(MIB + 4096);
    let mut line = 0usize;
    while out.len() < MIB {
        line += 1;
        if line.is_multiple_of(secret_every) {
            let secret = generators[line / secret_every % generators.len()](&mut rng);
            out.push_str(&planted::plant(&mut rng, &secret).text);
        } else if line.is_multiple_of(negative_every) {
            out.push_str(&planted::hard_negative(&mut rng).1);
        } else if dense {
            out.push_str(planted::FILLER[line % planted::FILLER.len()]);
        } else {
            out.push_str(TYPICAL[line % TYPICAL.len()]);
        }
        out.push('\n');
    }
    let mut end = MIB;
    while !out.is_char_boundary(end) {
        end -= 1;
    }
    out.truncate(end);
    out
}

fn benches(c: &mut Criterion) {
    warden_detect::secrets::warm_up();
    warden_detect::pii::warm_up();
    let mut group = c.benchmark_group("redact");
    group.sample_size(20);
    for (name, input) in [
        ("1mib_text", text(false)),
        ("1mib_keyword_dense", text(true)),
    ] {
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_function(name, |b| b.iter(|| warden_detect::redact::redact(&input)));
        group.bench_function(format!("{name}_secrets_only"), |b| {
            b.iter(|| warden_detect::secrets::scan(&input))
        });
        group.bench_function(format!("{name}_pii_only"), |b| {
            b.iter(|| warden_detect::pii::scan(&input))
        });
    }
    group.finish();
}

criterion_group!(redact_benches, benches);
criterion_main!(redact_benches);
