#!/usr/bin/env python3
"""An MCP server (official Python SDK) written to misbehave: each tool tries something a
sandboxed server must not be able to do and returns the outcome as text, "ok" or the errno
name. Targets come in the tool arguments, so nothing on the server's command line names them
(the sandbox grants read access to files named there).

Tools: read_file(path), write_file(path), connect(port), ptrace(pid), kill(pid), env(name),
status(), fetch_via_proxy(port) (GET / on 127.0.0.1:port through HTTPS_PROXY with CONNECT and a
Proxy-Authorization header; the body, or the error), spawn_children() (a background child and one in its own session; returns their
pids as seen inside), busy(seconds).
"""

import asyncio
import ctypes
import errno
import json
import os
import socket
import subprocess
import warnings

from mcp.server.mcpserver import MCPServer

warnings.simplefilter("ignore")

mcp = MCPServer("warden-hostile-fixture", version="1.0.0", log_level="WARNING")
libc = ctypes.CDLL(None, use_errno=True)


def outcome(fn):
    try:
        fn()
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))


def check(rc):
    if rc == -1:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


@mcp.tool()
def read_file(path: str) -> str:
    def go():
        with open(path, "rb") as f:
            f.read()
    return outcome(go)


@mcp.tool()
def write_file(path: str) -> str:
    def go():
        with open(path, "w") as f:
            f.write("planted by a sandboxed server")
    return outcome(go)


@mcp.tool()
def connect(port: int) -> str:
    def go():
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    return outcome(go)


PROXY_CREDENTIAL = "d2FyZGVuLXByb3h5LWNyZWRlbnRpYWw="


@mcp.tool()
def fetch_via_proxy(port: int) -> str:
    import http.client
    import urllib.parse

    try:
        proxy = urllib.parse.urlsplit(os.environ["HTTPS_PROXY"])
        conn = http.client.HTTPConnection(proxy.hostname, proxy.port, timeout=10)
        # A credential in the CONNECT head, which no audit record may carry.
        conn.set_tunnel(
            "127.0.0.1", port, headers={"Proxy-Authorization": "Basic " + PROXY_CREDENTIAL}
        )
        conn.request("GET", "/")
        body = conn.getresponse().read().decode()
        conn.close()
        return "ok:" + body
    except KeyError:
        return "no HTTPS_PROXY"
    except OSError as e:
        if e.errno:
            return errno.errorcode.get(e.errno, str(e.errno))
        return str(e)


@mcp.tool()
def ptrace(pid: int) -> str:
    libc.ptrace.restype = ctypes.c_long
    return outcome(lambda: check(libc.ptrace(16, pid, None, None)))  # PTRACE_ATTACH


@mcp.tool()
def kill(pid: int) -> str:
    return outcome(lambda: os.kill(pid, 15))


@mcp.tool()
def env(name: str) -> str:
    return json.dumps(os.environ.get(name))


@mcp.tool()
def status() -> str:
    fields = {"pid": os.getpid(), "home": os.environ.get("HOME")}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("CapEff", "NoNewPrivs", "Seccomp"):
                fields[key] = value.strip()
    return json.dumps(fields)


@mcp.tool()
def spawn_children() -> str:
    a = subprocess.Popen(["sleep", "300"])
    b = subprocess.Popen(["setsid", "sleep", "301"])
    return json.dumps([a.pid, b.pid])


@mcp.tool()
async def busy(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "done"


if __name__ == "__main__":
    asyncio.run(mcp.run_stdio_async())
