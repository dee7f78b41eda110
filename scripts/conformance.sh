#!/usr/bin/env bash
# Runs the pinned official MCP conformance suite (@modelcontextprotocol/conformance
# 0.2.0-alpha.12, installed by scripts/test-deps.sh) with Node 22 against a running
# Streamable HTTP MCP endpoint, and exits with the suite's status.
#
# Usage: scripts/conformance.sh URL REQUIREMENTS OUTDIR [EXPECTED_FAILURES_YAML] [-- EXTRA_ARGS...]
#   URL           e.g. http://127.0.0.1:3000/mcp (use a loopback address: the
#                 dns-rebinding-protection scenario needs a localhost URL)
#   REQUIREMENTS  spec revision whose frozen scenario set is run: 2025-11-25 or 2026-07-28
#   OUTDIR        results: <OUTDIR>/server-<scenario>-<timestamp>/checks.json per scenario,
#                 <OUTDIR>/conformance.log (console output), <OUTDIR>/summary.json
#   EXPECTED_FAILURES_YAML  optional baseline (tests/conformance/expected-failures-*.yaml);
#                 with it the exit status is 0 iff every failing SCORED scenario/check is
#                 listed and no listed entry passes (stale entries fail the run too).
#                 Pass "" to give EXTRA_ARGS without a baseline.
#   EXTRA_ARGS    passed to `conformance server` (e.g. --verbose)
#
# Without a baseline the status is the suite's --requirements verdict: 1 if any scored
# scenario has a FAILURE check (WARNINGs and not_scored scenarios do not count).
# Environment: WARDEN_TEST_DEPS (default <repo>/.test-deps),
#   WARDEN_CONFORMANCE_SCENARIO_TIMEOUT_MS (per scenario, default 30000),
#   WARDEN_CONFORMANCE_TIMEOUT_S (whole run, default 1800).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEPS="${WARDEN_TEST_DEPS:-$REPO/.test-deps}"
NODE="$DEPS/node22/bin/node"
CONFORMANCE="$DEPS/npm/node_modules/@modelcontextprotocol/conformance/dist/index.js"

usage() { sed -n '2,24p' "$0" >&2; exit 2; }
[[ $# -ge 3 ]] || usage
URL="$1" REV="$2" OUT="$3"
shift 3
BASELINE=""
if [[ $# -gt 0 && $1 != "--" ]]; then BASELINE="$1"; shift; fi
if [[ $# -gt 0 && $1 == "--" ]]; then shift; fi
EXTRA=("$@")

[[ -x $NODE && -f $CONFORMANCE ]] || { echo "conformance.sh: missing $NODE or $CONFORMANCE; run scripts/test-deps.sh" >&2; exit 2; }
case "$REV" in 2025-11-25|2026-07-28) ;; *) echo "conformance.sh: REQUIREMENTS must be 2025-11-25 or 2026-07-28" >&2; exit 2 ;; esac
if [[ -n $BASELINE ]]; then
  [[ -f $BASELINE ]] || { echo "conformance.sh: baseline $BASELINE not found" >&2; exit 2; }
  BASELINE="$(cd "$(dirname "$BASELINE")" && pwd)/$(basename "$BASELINE")"
fi

mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
args=(server --url "$URL" --requirements "$REV" -o "$OUT"
      --timeout "${WARDEN_CONFORMANCE_SCENARIO_TIMEOUT_MS:-30000}")
[[ -n $BASELINE ]] && args+=(--expected-failures "$BASELINE")
args+=("${EXTRA[@]}")

# Node 22 first on PATH for anything the suite spawns; no colour codes in the log.
set +e
PATH="$(dirname "$NODE"):$PATH" NO_COLOR=1 FORCE_COLOR=0 \
  timeout --kill-after=10 "${WARDEN_CONFORMANCE_TIMEOUT_S:-1800}" "$NODE" "$CONFORMANCE" "${args[@]}" \
  2>&1 | tee "$OUT/conformance.log"
status=${PIPESTATUS[0]}
set -e

# summary.json: per-scenario check counts from the checks.json files of this run.
"$NODE" - "$OUT" "$REV" "$URL" "$status" "$CONFORMANCE" <<'EOF' || true
const fs = require('fs'), path = require('path');
const [out, rev, url, status, conf] = process.argv.slice(2);
const req = fs.readFileSync(path.join(path.dirname(conf), '..', 'requirements', `${rev}.yaml`), 'utf8');
const scored = new Set();
let section = '';
for (const line of req.split('\n')) {
  if (/^\S/.test(line)) section = line.replace(/:.*$/, '');
  const m = /^  - ([\w/.-]+)\s*$/.exec(line);
  if (m && section === 'server') scored.add(m[1]);
}
const latest = new Map();
for (const d of fs.readdirSync(out)) {
  const m = /^server-(.+)-(\d{4}-\d{2}-\d{2}T[\d-]+Z)$/.exec(d);
  const f = path.join(out, d, 'checks.json');
  if (!m || !fs.existsSync(f)) continue;
  const prev = latest.get(m[1]);
  if (!prev || prev.stamp < m[2]) latest.set(m[1], { stamp: m[2], file: f });
}
const scenarios = {};
const total = { passed: 0, failed: 0, warnings: 0, scored_passed: 0, scored_failed: 0, scored_warnings: 0 };
for (const [name, { file }] of [...latest].sort()) {
  const checks = JSON.parse(fs.readFileSync(file, 'utf8'));
  const n = (s) => checks.filter((c) => c.status === s).length;
  const s = { scored: scored.has(name), passed: n('SUCCESS'), failed: n('FAILURE'), warnings: n('WARNING'),
    skipped: n('SKIPPED'), info: n('INFO'),
    failing_checks: checks.filter((c) => c.status === 'FAILURE' || c.status === 'WARNING').map((c) => `${c.status} ${c.id}`) };
  scenarios[name] = s;
  total.passed += s.passed; total.failed += s.failed; total.warnings += s.warnings;
  if (s.scored) { total.scored_passed += s.passed; total.scored_failed += s.failed; total.scored_warnings += s.warnings; }
}
// Scenarios that threw before writing checks.json ("Failed to run scenario") only
// appear in the console summary; count them from there.
let log = '';
try { log = fs.readFileSync(path.join(out, 'conformance.log'), 'utf8'); } catch {}
for (const m of log.matchAll(/^[\u2713\u2717] (\S+): (\d+) passed, (\d+) failed$/gmu)) {
  const [, name, p, f] = m;
  if (scenarios[name]) continue;
  const s = { scored: scored.has(name), passed: Number(p), failed: Number(f), warnings: 0, skipped: 0, info: 0,
    failing_checks: Number(f) > 0 ? ['FAILURE (scenario failed to run; no checks.json, see conformance.log)'] : [] };
  scenarios[name] = s;
  total.passed += s.passed; total.failed += s.failed;
  if (s.scored) { total.scored_passed += s.passed; total.scored_failed += s.failed; }
}
const summary = { url, requirements: rev, exit_status: Number(status), total, scenarios };
fs.writeFileSync(path.join(out, 'summary.json'), JSON.stringify(summary, null, 2) + '\n');
console.log(`conformance.sh: ${rev} ${url}: checks passed ${total.passed}, failed ${total.failed}, warnings ${total.warnings} ` +
  `(scored scenarios: ${total.scored_passed}/${total.scored_failed}/${total.scored_warnings}); exit ${status}; ${out}/summary.json`);
EOF
exit "$status"
