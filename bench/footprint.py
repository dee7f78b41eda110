#!/usr/bin/env python3
"""Start-up time and idle memory of mcp-warden, next to the direct upstream (Python stdlib only).

  python3 bench/footprint.py --warden target/release/mcp-warden --driver target/mcpbench/release/mcpbench \
      [--runs 40] [--cpus 1] [--out bench/results/footprint-<stamp>.json]

Start-up (`run`): time from spawning the process to the `initialize` response on its stdout,
for `mcpbench echo-stdio` alone and for `mcp-warden run -- mcpbench echo-stdio`, alternated,
`--runs` times each. The gateway's own start-up is the paired difference (same upstream, same
client, back to back), so the upstream's own start is excluded.

Start-up (`serve`): time from spawning `mcp-warden serve` (one HTTP upstream, already running)
to the first `initialize` answered on /mcp; this includes the upstream handshake the gateway
does at start (server/discover probe, then initialize).

Memory: VmRSS and VmHWM of the gateway process only (not its child) from /proc/<pid>/status:
idle after start-up and after a short load, for `run` (stdio child) and `serve` (one HTTP
upstream; one stdio child upstream).

Every process is started in its own process group and stopped with killpg(2) on that group.
Servers listen on 127.0.0.1 only.
"""
import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

INIT = (b'{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18",'
        b'"capabilities":{},"clientInfo":{"name":"footprint","version":"1"}}}\n')
INITIALIZED = b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n'


def call(i):
    return ('{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"echo","arguments":'
            '{"message":"hello"}}}\n' % i).encode()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def pinned(argv, cpus):
    return (["taskset", "-c", cpus] + argv) if cpus else argv


def stop(p, grace=3.0):
    """Stops a process group this script started."""
    if p.stdin:
        try:
            p.stdin.close()
        except OSError:
            pass
    try:
        p.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=grace)
        except ProcessLookupError:
            pass
    try:
        os.killpg(p.pid, signal.SIGKILL)  # leftovers of the group (the gateway's child)
    except (ProcessLookupError, PermissionError):
        pass


def spawn_stdio(argv, cpus):
    return subprocess.Popen(pinned(argv, cpus), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, start_new_session=True, bufsize=0)


def read_response(p, want_id, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        line = p.stdout.readline()
        if not line:
            raise RuntimeError("EOF before response %d" % want_id)
        try:
            m = json.loads(line)
        except ValueError:
            continue
        if m.get("id") == want_id and "method" not in m:
            return m
    raise RuntimeError("timeout waiting for response %d" % want_id)


def time_stdio_init(argv, cpus):
    t0 = time.perf_counter()
    p = spawn_stdio(argv, cpus)
    try:
        p.stdin.write(INIT)
        read_response(p, 0)
        return (time.perf_counter() - t0) * 1000.0
    finally:
        stop(p)


def status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads"):
                out[k] = int(v.split()[0]) if k != "Threads" else int(v.strip())
    return out


def gateway_pid(p, cpus):
    # With taskset the spawned process execs the gateway, so the pid is the gateway's.
    return p.pid


def summary(xs):
    xs = sorted(xs)
    q = lambda f: xs[min(len(xs) - 1, int(f * len(xs)))]
    return {"n": len(xs), "median": round(statistics.median(xs), 2), "p10": round(q(0.1), 2),
            "p90": round(q(0.9), 2), "min": round(xs[0], 2), "max": round(xs[-1], 2)}


def wait_port(port, timeout, proc):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.001)
    return False


def http_initialize(port, timeout=10.0):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request("POST", "/mcp", body=INIT.strip(), headers={
        "Content-Type": "application/json", "Accept": "application/json, text/event-stream"})
    r = c.getresponse()
    body = r.read()
    c.close()
    if r.status != 200 or b'"result"' not in body:
        raise RuntimeError("initialize through serve failed: %d %r" % (r.status, body[:200]))


def start_serve(warden, config_text, port, cpus, logf):
    cfg = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    cfg.write(config_text)
    cfg.close()
    t0 = time.perf_counter()
    p = subprocess.Popen(pinned([warden, "serve", "--config", cfg.name], cpus), stdin=subprocess.DEVNULL,
                         stdout=logf, stderr=logf, start_new_session=True)
    return p, t0, cfg.name


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--warden", required=True)
    ap.add_argument("--driver", required=True, help="mcpbench binary (echo upstreams and load driver)")
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--cpus", help="pin everything to these CPUs (taskset -c)")
    ap.add_argument("--out")
    args = ap.parse_args()
    warden, drv = os.path.abspath(args.warden), os.path.abspath(args.driver)
    res = {"when": time.strftime("%Y%m%d-%H%M%S"), "cpus": args.cpus, "load_before": os.getloadavg()[0],
           "warden": warden}
    log = open(os.devnull, "wb")

    # --- start-up of `run` (paired with the direct upstream) ---
    direct, through, diff = [], [], []
    for i in range(args.runs + 3):
        a = time_stdio_init([drv, "echo-stdio"], args.cpus)
        b = time_stdio_init([warden, "run", "--", drv, "echo-stdio"], args.cpus)
        if i >= 3:  # the first runs warm the page cache
            direct.append(a)
            through.append(b)
            diff.append(b - a)
    res["run_startup_ms"] = {"direct": summary(direct), "warden": summary(through), "added": summary(diff)}

    # --- idle memory of `run` ---
    p = spawn_stdio([warden, "run", "--", drv, "echo-stdio"], args.cpus)
    try:
        p.stdin.write(INIT)
        read_response(p, 0)
        p.stdin.write(INITIALIZED)
        time.sleep(0.5)
        idle = status(gateway_pid(p, args.cpus))
        for i in range(1, 2001):
            p.stdin.write(call(i))
            read_response(p, i)
        time.sleep(0.2)
        loaded = status(gateway_pid(p, args.cpus))
        res["run_memory_kb"] = {"idle": idle, "after_2000_calls": loaded}
    finally:
        stop(p)

    # --- `serve`: one HTTP upstream (echo-http) ---
    up_port = free_port()
    up = subprocess.Popen(pinned([drv, "echo-http", "--host", "127.0.0.1", "--port", str(up_port)], args.cpus),
                          stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    try:
        if not wait_port(up_port, 10, up):
            sys.exit("echo-http did not start")
        http_cfg = ('listen = "127.0.0.1:%%d"\n[upstreams.echo]\nurl = "http://127.0.0.1:%d/mcp"\nnamespace = false\n'
                    % up_port)
        ready, first = [], []
        for i in range(max(5, args.runs // 2) + 2):
            port = free_port()
            p, t0, cfg = start_serve(warden, http_cfg % port, port, args.cpus, log)
            try:
                if not wait_port(port, 20, p):
                    sys.exit("serve did not start (config %s)" % cfg)
                t_ready = time.perf_counter()
                http_initialize(port)
                t_first = time.perf_counter()
                if i >= 2:
                    ready.append((t_ready - t0) * 1000.0)
                    first.append((t_first - t0) * 1000.0)
            finally:
                stop(p)
                os.unlink(cfg)
        res["serve_startup_ms"] = {"to_listening": summary(ready), "to_first_initialize": summary(first)}

        port = free_port()
        p, _, cfg = start_serve(warden, http_cfg % port, port, args.cpus, log)
        try:
            wait_port(port, 20, p)
            time.sleep(1.0)
            idle = status(p.pid)
            subprocess.run(pinned([drv, "http", "--url", "http://127.0.0.1:%d/mcp" % port, "--n", "2000",
                                   "--warmup", "100", "--conc", "1,8", "--requests", "10000", "--max-secs", "20"],
                                  args.cpus), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
            time.sleep(0.5)
            loaded = status(p.pid)
            res["serve_http_upstream_memory_kb"] = {"idle": idle, "after_load": loaded}
        finally:
            stop(p)
            os.unlink(cfg)
    finally:
        stop(up)

    # --- `serve`: one stdio child upstream (gateway process only) ---
    stdio_cfg = ('listen = "127.0.0.1:%%d"\n[upstreams.echo]\ncommand = "%s"\nargs = ["echo-stdio"]\nnamespace = false\n'
                 % drv)
    port = free_port()
    p, _, cfg = start_serve(warden, stdio_cfg % port, port, args.cpus, log)
    try:
        wait_port(port, 20, p)
        time.sleep(1.0)
        res["serve_stdio_upstream_memory_kb"] = {"idle": status(p.pid)}
    finally:
        stop(p)
        os.unlink(cfg)

    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                   "footprint-%s.json" % res["when"])
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(res, f, indent=1)
    s = res["run_startup_ms"]
    print("\nstart-up, run (spawn -> initialize response, ms; %d runs each, paired):" % args.runs)
    print("| | median | p10 | p90 |\n|---|---|---|---|")
    for k in ("direct", "warden", "added"):
        print("| %s | %.2f | %.2f | %.2f |" % (k, s[k]["median"], s[k]["p10"], s[k]["p90"]))
    s = res["serve_startup_ms"]
    print("\nstart-up, serve with one running HTTP upstream (ms): listening %.2f (p90 %.2f), first initialize %.2f (p90 %.2f)"
          % (s["to_listening"]["median"], s["to_listening"]["p90"], s["to_first_initialize"]["median"],
             s["to_first_initialize"]["p90"]))
    print("\nmemory of the gateway process (VmRSS / VmHWM, MiB):")
    for name, key in (("run, stdio child", "run_memory_kb"), ("serve, HTTP upstream", "serve_http_upstream_memory_kb"),
                      ("serve, stdio child", "serve_stdio_upstream_memory_kb")):
        for phase, st in res[key].items():
            print("  %-22s %-18s RSS %6.2f  HWM %6.2f  threads %d" % (name, phase, st["VmRSS"] / 1024.0,
                                                                     st["VmHWM"] / 1024.0, st["Threads"]))
    print("\nresults: %s" % os.path.relpath(out))


if __name__ == "__main__":
    main()
