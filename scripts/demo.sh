#!/usr/bin/env bash
# The main job on a fresh machine, with zero configuration: builds mcp-warden, installs the
# pinned reference server (@modelcontextprotocol/server-everything) and the official Python
# MCP SDK (scripts/test-deps.sh), then wraps the server with `mcp-warden run` and drives a real
# session through it with the SDK's client, printing what the client saw.
#
# Usage: scripts/demo.sh            (stdio: client -> mcp-warden run -> server)
#        scripts/demo.sh --serve    (HTTP: client -> mcp-warden serve -> server, namespaced)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo build --release --quiet --bin mcp-warden
scripts/test-deps.sh >/dev/null
# shellcheck disable=SC1091
source .test-deps/env.sh

BIN="$PWD/target/release/mcp-warden"
CLIENT="$WARDEN_PYTHON crates/warden-test/fixtures/python/client.py"
ARGS=crates/warden-test/fixtures/everything-args.json

if [[ "${1:-}" == "--serve" ]]; then
  port=$("$WARDEN_PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  dir=$(mktemp -d)
  cat >"$dir/warden.toml" <<TOML
listen = "127.0.0.1:$port"
[upstreams.everything]
command = "$WARDEN_NODE22"
args = ["$WARDEN_SERVER_EVERYTHING", "stdio"]
TOML
  "$BIN" serve --config "$dir/warden.toml" --data-dir "$dir" &
  pid=$!
  trap 'kill "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  $CLIENT --http "http://127.0.0.1:$port/mcp" --args "$ARGS" --strip-prefix everything__
else
  $CLIENT --stdio "$BIN run -- $WARDEN_NODE22 $WARDEN_SERVER_EVERYTHING stdio" --args "$ARGS"
fi
