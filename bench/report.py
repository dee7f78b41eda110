#!/usr/bin/env python3
"""Checks the figures of one bench/run.sh run against the performance targets (docs/performance.md).

  python3 bench/report.py bench/results/<stamp>      # reads <stamp>-pinned.json, -unpinned.json, -footprint.json

Every ratio is against the direct connection measured in the same run (per repetition, then the
median over repetitions, as the shared runner computes it).
"""
import json
import os
import sys


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except OSError:
        return None


def vs(run, target, base):
    if not run:
        return {}
    return run["summary"].get(target, {}).get("vs", {}).get(base, {})


def med(run, target, key):
    if not run:
        return None
    return run["summary"].get(target, {}).get("median", {}).get(key)


def row(rows, what, run, value, unit, limit, ok, note="", judged=True):
    """One line; `judged=False` for figures shown for context only (latency of unpinned runs,
    which on a VM mostly measures cross-CPU wake-ups, see the harness README)."""
    if value is None:
        rows.append("| %s | %s | - | %s | not measured | %s |" % (what, run, limit, note))
        return
    verdict = ("pass" if ok(value) else "**FAIL**") if judged else "(info)"
    rows.append("| %s | %s | %s%s | %s | %s | %s |" % (what, run, fmt(value), unit, limit, verdict, note))


def fmt(x):
    return "%.3f" % x if abs(x) < 10 else "%.1f" % x


def main():
    stem = sys.argv[1] if len(sys.argv) > 1 else sys.exit(__doc__)
    pinned, unpinned = load(stem + "-pinned.json"), load(stem + "-unpinned.json")
    fp = load(stem + "-footprint.json")
    rows = ["| target | run | measured | limit | result | note |", "|---|---|---|---|---|---|"]
    for run, name in ((pinned, "pinned"), (unpinned, "unpinned")):
        v = vs(run, "warden-stdio", "direct-stdio-rs")
        row(rows, "stdio `run`: added p50 per tools/call", name, v.get("p50_delta_us"), " us", "<= 30 us",
            lambda x: x <= 30, "x%.2f of direct" % v["p50_ratio"] if v.get("p50_ratio") else "",
            judged=name == "pinned")
        row(rows, "stdio `run`: added p99", name, v.get("p99_delta_us"), " us", "<= 150 us", lambda x: x <= 150,
            "x%.2f of direct" % v["p99_ratio"] if v.get("p99_ratio") else "", judged=name == "pinned")
        row(rows, "stdio `run`: pipelined rps vs direct", name, v.get("pipe_rps_ratio"), "", ">= 0.5",
            lambda x: x >= 0.5, "%s vs %s rps" % (fmt(med(run, "warden-stdio", "pipe_rps") or 0),
                                                 fmt(med(run, "direct-stdio-rs", "pipe_rps") or 0)))
    for run, name in ((pinned, "pinned"), (unpinned, "unpinned")):
        v = vs(run, "warden-http", "direct-http-rs")
        c1 = None
        if med(run, "warden-http", "p50_c1") is not None and med(run, "direct-http-rs", "p50_c1") is not None:
            c1 = med(run, "warden-http", "p50_c1") - med(run, "direct-http-rs", "p50_c1")
        row(rows, "HTTP `serve`: added p50, sequential (concurrency 1)", name, v.get("p50_delta_us"), " us",
            "<= 60 us", lambda x: x <= 60, "x%.2f of direct" % v["p50_ratio"] if v.get("p50_ratio") else "",
            judged=name == "pinned")
        row(rows, "HTTP `serve`: added p50 in the c=1 phase (medians)", name, c1, " us", "<= 60 us",
            lambda x: x <= 60, judged=name == "pinned")
        row(rows, "HTTP `serve`: rps at concurrency 8 vs direct", name, v.get("rps_c8_ratio"), "", ">= 0.5",
            lambda x: x >= 0.5, "%s vs %s rps" % (fmt(med(run, "warden-http", "rps_c8") or 0),
                                                 fmt(med(run, "direct-http-rs", "rps_c8") or 0)))
    if fp:
        for key, what in (("run_memory_kb", "idle RSS, `run` (stdio child)"),
                          ("serve_http_upstream_memory_kb", "idle RSS, `serve` (one HTTP upstream)"),
                          ("serve_stdio_upstream_memory_kb", "idle RSS, `serve` (one stdio child)")):
            kb = fp[key]["idle"]["VmRSS"]
            row(rows, what, "footprint", kb / 1024.0, " MiB", "< 20 MB", lambda x: x * 1.048576 < 20,
                "gateway process only")
        s = fp["run_startup_ms"]["added"]
        row(rows, "start-up to first forwarded message, `run` (added, median)", "footprint", s["median"], " ms",
            "< 20 ms", lambda x: x < 20, "p90 %.2f ms; direct upstream alone %.2f ms" % (
                s["p90"], fp["run_startup_ms"]["direct"]["median"]))
    print("\n".join(rows))


if __name__ == "__main__":
    main()
