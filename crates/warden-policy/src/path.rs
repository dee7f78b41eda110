//! Path arguments against allow-listed roots.
//!
//! A path is refused when it contains a `..` component (whatever it would resolve to: with
//! symlinks, `a/../b` need not be `b`), a NUL byte, or when its canonical form (every symlink
//! of its longest existing prefix resolved) is not inside a root. Relative paths are taken
//! relative to the first root. Canonicalisation happens in the gateway's view of the file
//! system, which is the upstream's view only when both run on the same host without a
//! different mount namespace.

use std::path::{Component, Path, PathBuf};

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathDenial {
    /// The path contains `..`.
    #[error("path contains a parent-directory component")]
    Traversal,
    /// The path contains a NUL byte.
    #[error("path contains a NUL byte")]
    Nul,
    /// The path starts with `~`, which servers expand to a home directory.
    #[error("path is relative to a home directory")]
    HomeRelative,
    /// The path is empty.
    #[error("path is empty")]
    Empty,
    /// The canonical path lies outside every root.
    #[error("path is outside the allowed directories")]
    OutsideRoots,
}

/// The lexical checks that need no file system: NUL, empty, `..`.
pub fn lexical_check(path: &str) -> Result<(), PathDenial> {
    if path.is_empty() {
        return Err(PathDenial::Empty);
    }
    if path.contains('\0') {
        return Err(PathDenial::Nul);
    }
    if path.starts_with('~') {
        return Err(PathDenial::HomeRelative);
    }
    // Both separators: an upstream on another OS, or a server that normalises `\`, would
    // read `..\` as traversal.
    if path.split(['/', '\\']).any(|part| part == "..")
        || Path::new(path)
            .components()
            .any(|c| c == Component::ParentDir)
    {
        return Err(PathDenial::Traversal);
    }
    Ok(())
}

/// Canonicalises `path` (relative to `roots[0]` when relative): the longest existing prefix is
/// resolved by the file system (symlinks included); the rest, which does not exist, is
/// appended as written. Runs blocking file-system calls: call from a blocking context.
pub fn canonical(path: &str, roots: &[PathBuf]) -> Result<PathBuf, PathDenial> {
    lexical_check(path)?;
    let p = Path::new(path);
    let joined = match (p.is_absolute(), roots.first()) {
        (true, _) => p.to_path_buf(),
        (false, Some(root)) => root.join(p),
        (false, None) => return Err(PathDenial::OutsideRoots),
    };
    let mut existing = joined.as_path();
    let mut rest: Vec<&std::ffi::OsStr> = vec![];
    loop {
        match std::fs::canonicalize(existing) {
            Ok(mut base) => {
                for part in rest.iter().rev() {
                    base.push(part);
                }
                return Ok(base);
            }
            Err(_) => {
                let (Some(parent), Some(name)) = (existing.parent(), existing.file_name()) else {
                    return Err(PathDenial::OutsideRoots);
                };
                rest.push(name);
                existing = parent;
            }
        }
    }
}

/// Checks `path` against `roots` (themselves canonical).
pub fn check(path: &str, roots: &[PathBuf]) -> Result<PathBuf, PathDenial> {
    let canonical = canonical(path, roots)?;
    if roots.iter().any(|r| canonical.starts_with(r)) {
        Ok(canonical)
    } else {
        Err(PathDenial::OutsideRoots)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn roots(dir: &Path) -> Vec<PathBuf> {
        vec![std::fs::canonicalize(dir).unwrap()]
    }

    #[test]
    fn accepts_paths_inside_a_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "x").unwrap();
        let r = roots(dir.path());
        assert!(check(&dir.path().join("a.txt").to_string_lossy(), &r).is_ok());
        assert!(check("a.txt", &r).is_ok());
        // A file that does not exist yet (a write target) inside a root.
        assert!(check("new/dir/b.txt", &r).is_ok());
    }

    #[test]
    fn refuses_traversal_and_outside_paths() {
        let dir = tempfile::tempdir().unwrap();
        let r = roots(dir.path());
        let inside = dir.path().join("x/../../etc/passwd");
        assert_eq!(
            check(&inside.to_string_lossy(), &r),
            Err(PathDenial::Traversal)
        );
        assert_eq!(check("..\\secret", &r), Err(PathDenial::Traversal));
        assert_eq!(check("/etc/passwd", &r), Err(PathDenial::OutsideRoots));
        assert_eq!(check("a\0b", &r), Err(PathDenial::Nul));
        assert_eq!(check("", &r), Err(PathDenial::Empty));
        assert_eq!(check("~/.ssh/id_rsa", &r), Err(PathDenial::HomeRelative));
    }

    #[test]
    fn refuses_a_symlink_that_leaves_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
        let r = roots(dir.path());
        assert_eq!(check("link/secret", &r), Err(PathDenial::OutsideRoots));
        assert_eq!(check("link/not-yet", &r), Err(PathDenial::OutsideRoots));
    }

    #[test]
    fn a_root_prefix_is_not_a_root() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::create_dir(dir.path().join("data-other")).unwrap();
        let r = roots(&data);
        let sibling = dir.path().join("data-other/f");
        assert_eq!(
            check(&sibling.to_string_lossy(), &r),
            Err(PathDenial::OutsideRoots)
        );
    }

    proptest! {
        // Whatever a client writes, an accepted path is inside the root after resolution.
        #[test]
        fn accepted_paths_stay_inside(parts in proptest::collection::vec("(\\.\\.|\\.|[a-c]{1,2}|/|link)", 0..8)) {
            let dir = tempfile::tempdir().unwrap();
            let outside = tempfile::tempdir().unwrap();
            std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
            std::fs::create_dir(dir.path().join("a")).unwrap();
            let r = roots(dir.path());
            let path = parts.join("/");
            if let Ok(c) = check(&path, &r) {
                prop_assert!(c.starts_with(&r[0]));
                prop_assert!(!path.split('/').any(|p| p == ".."));
                // The resolved path of the existing prefix agrees with the file system.
                let mut probe = c.clone();
                while !probe.exists() {
                    prop_assert!(probe.pop());
                }
                prop_assert!(std::fs::canonicalize(&probe).unwrap().starts_with(&r[0]));
            }
        }
    }
}
