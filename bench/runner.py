#!/usr/bin/env python3
"""Runs the shared mcpbench runner (run.py of the harness) without writing into the harness.

The shared runner keeps its results and logs under its own directory and builds its driver
there. The harness is read-only for this project, so this wrapper loads run.py unchanged and
only redirects its output directory to bench/results/ of this repository; placeholders that
point into the harness ({BENCH}, {UPSTREAM_STDIO}) still resolve to the harness. The driver
must be given with --driver (bench/run.sh builds it under target/mcpbench/).

  MCPBENCH_DIR=/path/to/shared/bench python3 bench/runner.py --driver PATH --targets bench/targets.json [run.py options]
"""
import os
import shlex
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.abspath(os.environ.get("MCPBENCH_DIR", os.path.join(HERE, "..", "..", "shared", "bench")))


def main():
    if "--driver" not in sys.argv:
        sys.exit("runner.py: pass --driver (the shared runner would otherwise build inside the harness)")
    path = os.path.join(SHARED, "run.py")
    with open(path) as f:
        code = compile(f.read(), path, "exec")
    ns = {"__name__": "mcpbench_run", "__file__": path}
    exec(code, ns)
    ns["BENCH"] = HERE  # only used for results/ and logs once --driver and --targets are given
    run_target = ns["run_target"]

    def run_target_in_harness(t, v, *rest):
        v = dict(v)
        v["BENCH"] = SHARED
        v["UPSTREAM_STDIO"] = "%s %s" % (shlex.quote(sys.executable), os.path.join(SHARED, "upstream", "echo_stdio.py"))
        return run_target(t, v, *rest)

    ns["run_target"] = run_target_in_harness
    ns["main"]()


if __name__ == "__main__":
    main()
