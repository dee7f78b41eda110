//! Throughput of the secret scanner and of redaction on 1 MiB of tool-result-like text.
//!
//! The text mixes prose in several languages (which mentions keys, tokens and passwords, so the
//! keyword prefilters fire), logs, JSON and code, with hard negatives (hashes, UUIDs, git SHAs,
//! base64) on most lines and a planted secret or personal datum every ~40 lines.
#![allow(missing_docs)]

#[path = "../tests/common/planted.rs"]
mod planted;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::StdRng;

const MIB: usize = 1024 * 1024;

fn text(with_secrets: bool) -> String {
    let mut rng = StdRng::seed_from_u64(42);
    let generators = planted::generators();
    let mut out = String::with_capacity(MIB + 4096);
    let mut line = 0usize;
    while out.len() < MIB {
        line += 1;
        if with_secrets && line % 40 == 0 {
            let secret = generators[line / 40 % generators.len()](&mut rng);
            out.push_str(&planted::plant(&mut rng, &secret).text);
        } else if line % 3 == 0 {
            out.push_str(&planted::hard_negative(&mut rng).1);
        } else {
            out.push_str(planted::FILLER[line % planted::FILLER.len()]);
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
    let dirty = text(true);
    let clean = text(false);
    let mut group = c.benchmark_group("redact");
    group.sample_size(20);
    group.throughput(Throughput::Bytes(dirty.len() as u64));
    group.bench_function("1mib_text", |b| {
        b.iter(|| warden_detect::redact::redact(&dirty))
    });
    group.bench_function("1mib_text_secrets_only", |b| {
        b.iter(|| warden_detect::secrets::scan(&dirty))
    });
    group.bench_function("1mib_text_pii_only", |b| {
        b.iter(|| warden_detect::pii::scan(&dirty))
    });
    group.bench_function("1mib_text_without_secrets", |b| {
        b.iter(|| warden_detect::redact::redact(&clean))
    });
    group.finish();
}

criterion_group!(redact_benches, benches);
criterion_main!(redact_benches);
