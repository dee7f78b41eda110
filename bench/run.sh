#!/usr/bin/env bash
# Benchmarks mcp-warden against direct connections with the shared MCP benchmark harness.
#
#   bench/run.sh [--reps N] [--quick] [--only a,b] [--no-wait] [--skip-build] [--skip-footprint]
#
# 1. builds `mcp-warden` (cargo build --release) and the harness driver `mcpbench` with its
#    target directory under target/mcpbench/ (nothing is written into the harness);
# 2. waits (bounded) for a quiet machine: 1-minute load below $BENCH_MAX_LOAD (0.7) for at most
#    $BENCH_WAIT_SECS (1200) seconds, then runs anyway and says so;
# 3. runs bench/targets.json twice with the shared runner: pinned to one CPU (--cpus 1; latency
#    = CPU work per round trip, no cross-CPU wake-ups) and unpinned (multi-core throughput);
# 4. measures start-up time and idle memory (bench/footprint.py).
#
# Results: bench/results/<stamp>-{pinned,unpinned}.json + .md tables, runner logs in
# bench/results/<stamp>-logs/, footprint in bench/results/<stamp>-footprint.json. The harness
# is found at $MCPBENCH_DIR (default ../shared/bench next to this repository).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MCPBENCH_DIR="${MCPBENCH_DIR:-$(cd "$ROOT/../shared/bench" 2>/dev/null && pwd || true)}"
REPS=5
QUICK=()
ONLY=()
WAIT=1
BUILD=1
FOOTPRINT=1
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) REPS="$2"; shift 2 ;;
    --quick) QUICK=(--quick); shift ;;
    --only) ONLY=(--only "$2"); shift 2 ;;
    --no-wait) WAIT=0; shift ;;
    --skip-build) BUILD=0; shift ;;
    --skip-footprint) FOOTPRINT=0; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
if [ -z "$MCPBENCH_DIR" ] || [ ! -f "$MCPBENCH_DIR/run.py" ]; then
  echo "run.sh: the harness was not found; set MCPBENCH_DIR to the directory holding run.py" >&2
  exit 2
fi

DRIVER_TARGET="$ROOT/target/mcpbench"
if [ "$BUILD" = 1 ]; then
  (cd "$ROOT" && cargo build --release -p mcp-warden)
  # --locked: never rewrite the harness's Cargo.lock; the target dir keeps build output here.
  CARGO_TARGET_DIR="$DRIVER_TARGET" cargo build --release --locked --manifest-path "$MCPBENCH_DIR/Cargo.toml"
fi
DRIVER="$DRIVER_TARGET/release/mcpbench"
# A private copy of the binary: a concurrent `cargo build --release` cannot swap it mid-run.
mkdir -p "$ROOT/target/bench"
cp "$ROOT/target/release/mcp-warden" "$ROOT/target/bench/mcp-warden"
export MCP_WARDEN="${MCP_WARDEN:-$ROOT/target/bench/mcp-warden}"
export MCP_WARDEN_BENCH="$ROOT/bench"
export MCPBENCH_DIR

MAX_LOAD="${BENCH_MAX_LOAD:-0.7}"
WAIT_SECS="${BENCH_WAIT_SECS:-1200}"
load1() { cut -d' ' -f1 /proc/loadavg; }
if [ "$WAIT" = 1 ]; then
  waited=0
  until awk -v l="$(load1)" -v m="$MAX_LOAD" 'BEGIN { exit !(l < m) }'; do
    if [ "$waited" -ge "$WAIT_SECS" ]; then
      echo "run.sh: load is still $(load1) after ${WAIT_SECS}s; running anyway (figures are noisier)" >&2
      break
    fi
    echo "run.sh: load $(load1) >= $MAX_LOAD; waiting (${waited}s of ${WAIT_SECS}s)" >&2
    sleep 30
    waited=$((waited + 30))
  done
fi

RESULTS="$ROOT/bench/results"
mkdir -p "$RESULTS"
STAMP="$(date +%Y%m%d-%H%M%S)"
{
  echo "when: $STAMP"
  echo "host: $(uname -srm), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "load before: $(cat /proc/loadavg)"
  echo "mcp-warden: $MCP_WARDEN ($(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)$(cd "$ROOT" && git diff --quiet 2>/dev/null || echo ', with uncommitted changes'))"
} | tee "$RESULTS/$STAMP-env.txt"

run() { # label, extra runner options
  local label="$1"; shift
  echo "== $label run" >&2
  python3 "$ROOT/bench/runner.py" --driver "$DRIVER" --targets "$ROOT/bench/targets.json" \
    --reps "$REPS" --out "$RESULTS/$STAMP-$label.json" "${QUICK[@]}" "${ONLY[@]}" "$@" \
    | tee "$RESULTS/$STAMP-$label.md"
}
run pinned --cpus 1
run unpinned
if [ "$FOOTPRINT" = 1 ]; then
  python3 "$ROOT/bench/footprint.py" --warden "$MCP_WARDEN" --driver "$DRIVER" \
    --out "$RESULTS/$STAMP-footprint.json" | tee "$RESULTS/$STAMP-footprint.md"
fi

python3 "$ROOT/bench/report.py" "$RESULTS/$STAMP" | tee "$RESULTS/$STAMP-targets.md"
echo "results: bench/results/$STAMP-*" >&2
