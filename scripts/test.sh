#!/usr/bin/env bash
# The test command: installs the pinned test dependencies (idempotent), then runs every test of
# the workspace, including the interop and conformance tests that start real third-party
# servers and clients on 127.0.0.1.
#
# Usage: scripts/test.sh [extra cargo-nextest / cargo test arguments]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/test-deps.sh
# shellcheck disable=SC1091
source .test-deps/env.sh

if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
  # nextest does not run doctests.
  cargo test --workspace --doc
else
  cargo test --workspace --no-fail-fast "$@"
fi

# The fuzz targets' stable harness (its own workspace): every target over its seed corpus plus
# seeded mutations, so a parser regression fails here too. libFuzzer runs are in docs/fuzzing.md.
(cd fuzz && cargo test --quiet)
