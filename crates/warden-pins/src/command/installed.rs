//! The version of a launcher's package already installed on this machine, read offline.
//!
//! Only what is cheap and certain is read, never the network: for `npx` (and `npm exec`), the
//! `package.json` of the package in the project's `node_modules` or in npx's own cache
//! (`<npm cache>/_npx/<key>/node_modules/<name>/package.json`, where `<key>` is what npm
//! derives from the requested specs: the first 16 hex digits of SHA-512 over the specs,
//! sorted and joined by newlines). Other launchers report nothing: their caches are keyed by
//! resolution results that cannot be recomputed offline, and an exact requested version is
//! then the best statement of what runs.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha512};

use super::spec::{Launcher, PackageSpec, Pinning};

/// Largest `package.json` read: a manifest is a few kilobytes.
const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;

/// Where to look: the upstream's working directory and the npm cache directory.
#[derive(Debug, Clone, Default)]
pub struct Locations {
    /// The directory the server runs in (its project's `node_modules` is searched first).
    pub cwd: Option<PathBuf>,
    /// npm's cache directory (`$npm_config_cache`, else `$HOME/.npm`).
    pub npm_cache: Option<PathBuf>,
}

/// The npx cache key of a set of package specs, as npm computes it.
///
/// ```
/// let key = warden_pins::command::installed::npx_cache_key(&["cowsay@1.6.0"]);
/// assert_eq!(key.len(), 16);
/// ```
pub fn npx_cache_key(specs: &[&str]) -> String {
    let mut sorted: Vec<&str> = specs.to_vec();
    sorted.sort_unstable();
    let digest = Sha512::digest(sorted.join("\n").as_bytes());
    let mut out = String::with_capacity(16);
    for b in &digest[..8] {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The installed version of every package of one command, in order (`None` where unknown).
pub fn installed_versions(packages: &[PackageSpec], at: &Locations) -> Vec<Option<String>> {
    let npx_specs: Vec<&str> = packages
        .iter()
        .filter(|p| p.launcher == Launcher::Npx && p.pinning != Pinning::Local)
        .map(|p| p.raw.as_str())
        .collect();
    let npx_dir = at
        .npm_cache
        .as_ref()
        .filter(|_| !npx_specs.is_empty())
        .map(|cache| cache.join("_npx").join(npx_cache_key(&npx_specs)));
    packages
        .iter()
        .map(|p| {
            if p.launcher != Launcher::Npx || p.pinning == Pinning::Local || !is_npm_name(&p.name) {
                return None;
            }
            let local = at.cwd.as_ref().map(|c| c.join("node_modules"));
            let cached = npx_dir.as_ref().map(|d| d.join("node_modules"));
            // npx runs the project's copy when there is one, else its cached install.
            local
                .into_iter()
                .chain(cached)
                .find_map(|modules| manifest_version(&modules.join(&p.name).join("package.json")))
        })
        .collect()
}

/// A registry package name: `name` or `@scope/name`, no path tricks.
fn is_npm_name(name: &str) -> bool {
    let body = name.strip_prefix('@').unwrap_or(name);
    let parts: Vec<&str> = body.split('/').collect();
    let ok = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~'))
    };
    match (name.starts_with('@'), parts.as_slice()) {
        (true, [scope, n]) => ok(scope) && ok(n),
        (false, [n]) => ok(n),
        _ => false,
    }
}

/// The `version` of a `package.json`, if it is readable and has one.
fn manifest_version(path: &Path) -> Option<String> {
    let file = std::fs::File::open(path).ok()?;
    let mut bytes = Vec::new();
    file.take(MAX_MANIFEST_BYTES).read_to_end(&mut bytes).ok()?;
    let manifest: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let version = manifest.get("version")?.as_str()?;
    // A version is short and printable: anything else is not recorded.
    (version.len() <= 256 && version.chars().all(|c| c.is_ascii_graphic()))
        .then(|| version.to_owned())
}
