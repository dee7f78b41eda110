//! `cargo test` in `fuzz/`: every target over its seed corpus and a fixed number of seeded
//! mutations, on the stable toolchain. A regression check, not a fuzzing campaign (that is
//! `cargo fuzz run` or the `replay` binary; see docs/fuzzing.md).

use std::path::PathBuf;

use warden_fuzz::TARGETS;
use warden_fuzz::mutate::{Rng, dictionary, mutate};

const MUTATIONS: usize = 3000;

fn corpus(name: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(name);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

#[test]
fn every_target_holds_on_its_corpus_and_seeded_mutations() {
    for (name, target) in TARGETS {
        let seeds = corpus(name);
        assert!(!seeds.is_empty(), "{name}: empty corpus");
        for s in &seeds {
            target(s);
        }
        let mut rng = Rng::new(0x5eed);
        let mut current = vec![];
        for _ in 0..MUTATIONS {
            if current.is_empty() || rng.one_in(3) {
                current = seeds[rng.below(seeds.len())].clone();
            }
            mutate(&mut rng, &mut current, &seeds, dictionary(name), 4096);
            target(&current);
        }
    }
}
