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

#[path = "common/inputs.rs"]
mod inputs;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn benches(c: &mut Criterion) {
    warden_detect::secrets::warm_up();
    warden_detect::pii::warm_up();
    let mut group = c.benchmark_group("redact");
    group.sample_size(20);
    for (name, input) in [
        ("1mib_text", inputs::redact_text(false)),
        ("1mib_keyword_dense", inputs::redact_text(true)),
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
