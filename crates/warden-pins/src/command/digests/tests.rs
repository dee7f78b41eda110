use std::time::Duration;

use super::*;
use crate::command::digest_file;

/// A cache that remembers files however recently they changed (a test cannot age a file's
/// `ctime`).
fn eager(dir: &Path) -> DigestCache {
    let mut cache = DigestCache::open(dir);
    cache.settle_ns = 0;
    cache
}

fn digest(cache: &mut DigestCache, path: &Path) -> (String, Source) {
    let (d, source) = cache.digest(path).unwrap();
    assert_eq!(
        d,
        digest_file(path).unwrap(),
        "the cache must give what hashing gives"
    );
    (d.sha256, source)
}

#[test]
fn remembers_a_settled_file_across_opens_and_uses_it_while_its_identity_holds() {
    let data = tempfile::tempdir().unwrap();
    let bin = tempfile::tempdir().unwrap();
    let exe = bin.path().join("server");
    std::fs::write(&exe, b"#!/bin/sh\necho one\n").unwrap();
    let mut cache = eager(data.path());
    let (first, source) = digest(&mut cache, &exe);
    assert_eq!(source, Source::Hashed);
    assert_eq!(
        digest(&mut cache, &exe),
        (first.clone(), Source::Remembered)
    );
    cache.save().unwrap();
    let mut reopened = eager(data.path());
    assert_eq!(digest(&mut reopened, &exe), (first, Source::Remembered));
    let mode = std::fs::metadata(data.path().join(FILE_NAME))
        .unwrap()
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
}

#[test]
fn a_change_of_bytes_is_hashed_again_even_with_the_same_size_and_modification_time() {
    let data = tempfile::tempdir().unwrap();
    let exe = data.path().join("server");
    std::fs::write(&exe, b"AAAA").unwrap();
    let mut cache = eager(data.path());
    let (before, _) = digest(&mut cache, &exe);
    assert_eq!(digest(&mut cache, &exe).1, Source::Remembered);
    let mtime = std::fs::metadata(&exe).unwrap().modified().unwrap();
    // The ctime tick must move on: the kernel's timestamps come from a coarse clock.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&exe, b"BBBB").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&exe)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    assert_eq!(std::fs::metadata(&exe).unwrap().modified().unwrap(), mtime);
    let (after, source) = digest(&mut cache, &exe);
    assert_ne!(after, before);
    assert_eq!(source, Source::Hashed);
}

#[test]
fn a_file_replaced_by_rename_is_hashed_again() {
    let data = tempfile::tempdir().unwrap();
    let exe = data.path().join("server");
    std::fs::write(&exe, b"one").unwrap();
    let mut cache = eager(data.path());
    let (before, _) = digest(&mut cache, &exe);
    let staged = data.path().join("staged");
    std::fs::write(&staged, b"two").unwrap();
    let mtime = std::fs::metadata(&exe).unwrap().modified().unwrap();
    std::fs::File::options()
        .write(true)
        .open(&staged)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    std::fs::rename(&staged, &exe).unwrap();
    let (after, source) = digest(&mut cache, &exe);
    assert_ne!(after, before);
    assert_eq!(source, Source::Hashed);
}

#[test]
fn a_file_changed_moments_ago_is_not_remembered() {
    let data = tempfile::tempdir().unwrap();
    let exe = data.path().join("server");
    std::fs::write(&exe, b"fresh").unwrap();
    let mut cache = DigestCache::open(data.path());
    assert_eq!(digest(&mut cache, &exe).1, Source::HashedNotRemembered);
    assert_eq!(digest(&mut cache, &exe).1, Source::HashedNotRemembered);
    cache.save().unwrap();
    assert!(!data.path().join(FILE_NAME).exists(), "nothing to save");
}

#[test]
fn an_entry_whose_file_is_hashed_without_being_remembered_is_dropped() {
    let data = tempfile::tempdir().unwrap();
    let exe = data.path().join("server");
    std::fs::write(&exe, b"one").unwrap();
    let mut cache = eager(data.path());
    digest(&mut cache, &exe);
    cache.save().unwrap();
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&exe, b"two").unwrap();
    let mut strict = DigestCache::open(data.path());
    assert_eq!(digest(&mut strict, &exe).1, Source::HashedNotRemembered);
    strict.save().unwrap();
    let stored: Stored =
        serde_json::from_slice(&std::fs::read(data.path().join(FILE_NAME)).unwrap()).unwrap();
    assert!(stored.files.is_empty());
}

#[test]
fn symbolic_links_are_followed_and_keyed_by_their_target() {
    let data = tempfile::tempdir().unwrap();
    let a = data.path().join("a");
    let b = data.path().join("b");
    std::fs::write(&a, b"aaa").unwrap();
    std::fs::write(&b, b"bbb").unwrap();
    let link = data.path().join("server");
    std::os::unix::fs::symlink(&a, &link).unwrap();
    let mut cache = eager(data.path());
    let (via_a, _) = digest(&mut cache, &link);
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(&b, &link).unwrap();
    let (via_b, source) = digest(&mut cache, &link);
    assert_ne!(via_a, via_b);
    assert_eq!(source, Source::Hashed);
}

#[test]
fn an_unreadable_or_foreign_cache_is_treated_as_empty() {
    let data = tempfile::tempdir().unwrap();
    let exe = data.path().join("server");
    std::fs::write(&exe, b"x").unwrap();
    for junk in [&b"not json"[..], b"{\"files\":7}", b""] {
        std::fs::write(data.path().join(FILE_NAME), junk).unwrap();
        let mut cache = eager(data.path());
        assert_eq!(digest(&mut cache, &exe).1, Source::Hashed);
    }
}

#[test]
fn a_forged_entry_with_another_identity_is_not_used() {
    let data = tempfile::tempdir().unwrap();
    let exe = data.path().join("server");
    std::fs::write(&exe, b"real").unwrap();
    let mut cache = eager(data.path());
    let (real, _) = digest(&mut cache, &exe);
    cache.save().unwrap();
    // The entry's digest replaced, its identity shifted by one nanosecond of ctime.
    let path = data.path().join(FILE_NAME);
    let mut stored: Stored = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    for entry in stored.files.values_mut() {
        entry.sha256 = "sha256:forged".into();
        entry.identity.ctime_ns += 1;
    }
    std::fs::write(&path, serde_json::to_vec(&stored).unwrap()).unwrap();
    let mut reopened = eager(data.path());
    assert_eq!(digest(&mut reopened, &exe), (real, Source::Hashed));
}

#[test]
fn holds_at_most_max_entries_dropping_the_least_recently_hashed() {
    let data = tempfile::tempdir().unwrap();
    let mut cache = eager(data.path());
    let files: Vec<PathBuf> = (0..=MAX_ENTRIES)
        .map(|i| {
            let p = data.path().join(format!("f{i}"));
            std::fs::write(&p, i.to_string()).unwrap();
            p
        })
        .collect();
    for (i, f) in files.iter().enumerate() {
        let (d, _) = cache.digest(f).unwrap();
        // Distinct, ordered hashing times (the clock's second would tie them).
        let key = d.path;
        let entry = cache.stored.files.get_mut(&key).unwrap();
        entry.hashed_at = u64::try_from(i).unwrap();
        assert!(cache.stored.files.len() <= MAX_ENTRIES);
    }
    assert_eq!(cache.stored.files.len(), MAX_ENTRIES);
    let first = std::fs::canonicalize(&files[0]).unwrap();
    assert!(
        !cache
            .stored
            .files
            .contains_key(&first.display().to_string())
    );
    assert_eq!(
        cache.digest(&files[MAX_ENTRIES]).unwrap().1,
        Source::Remembered
    );
}

#[test]
fn the_test_filesystem_counts_as_local() {
    let data = tempfile::tempdir().unwrap();
    let exe = data.path().join("server");
    std::fs::write(&exe, b"x").unwrap();
    assert!(is_local(&File::open(&exe).unwrap()));
}

#[test]
fn concurrent_saves_leave_a_readable_cache() {
    let data = tempfile::tempdir().unwrap();
    let files: Vec<PathBuf> = (0..4)
        .map(|i| {
            let p = data.path().join(format!("f{i}"));
            std::fs::write(&p, i.to_string()).unwrap();
            p
        })
        .collect();
    std::thread::scope(|scope| {
        for f in &files {
            scope.spawn(|| {
                for _ in 0..50 {
                    let mut cache = eager(data.path());
                    cache.digest(f).unwrap();
                    cache.changed = true;
                    cache.save().unwrap();
                }
            });
        }
    });
    let bytes = std::fs::read(data.path().join(FILE_NAME)).unwrap();
    let stored: Stored = serde_json::from_slice(&bytes).unwrap();
    assert!(!stored.files.is_empty());
    let leftovers: Vec<_> = std::fs::read_dir(data.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
