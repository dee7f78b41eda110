//! Where the third-party test dependencies are. Missing dependencies are a loud failure that
//! says how to install them: a test that needs a real server never silently skips.

use std::path::PathBuf;

/// The `.test-deps` directory (`WARDEN_TEST_DEPS`, default `<repo>/.test-deps`).
pub fn root() -> PathBuf {
    std::env::var_os("WARDEN_TEST_DEPS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".test-deps"))
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn existing(p: PathBuf) -> PathBuf {
    assert!(
        p.exists(),
        "test dependency {} is missing: run scripts/test-deps.sh",
        p.display()
    );
    p
}

/// Node.js 22.
pub fn node() -> PathBuf {
    existing(root().join("node22/bin/node"))
}

/// The pinned npm packages.
pub fn node_modules() -> PathBuf {
    existing(root().join("npm/node_modules"))
}

/// `@modelcontextprotocol/server-everything` entry point.
pub fn server_everything() -> PathBuf {
    existing(node_modules().join("@modelcontextprotocol/server-everything/dist/index.js"))
}

/// The conformance suite's CLI entry point.
pub fn conformance() -> PathBuf {
    existing(node_modules().join("@modelcontextprotocol/conformance/dist/index.js"))
}

/// Python of the venv holding the `mcp` SDK.
pub fn python() -> PathBuf {
    existing(root().join("venv/bin/python"))
}

/// A fixture file under `crates/warden-test/fixtures/`.
pub fn fixture(rel: &str) -> PathBuf {
    existing(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(rel),
    )
}

/// The Node preload that pins `listen()` to 127.0.0.1 (from the shared bench kit, else ours).
pub fn loopback_shim() -> PathBuf {
    let shared = repo().join("../shared/bench/shims/loopback.cjs");
    if shared.exists() {
        return shared;
    }
    fixture("loopback.cjs")
}
