#!/usr/bin/env python3
"""MCP server (official Python SDK `mcp`, `MCPServer`) that sends server-to-client traffic on
request: used by mcp-warden's request-guard tests to prove that the policy drops what a
principal may not see (resource updates, sampling, elicitation) before the client sees it.

Usage:
    server_traffic.py stdio --calls-file FILE

Resources: docs://public/readme, docs://secret/plan (`resources/subscribe` and
`resources/unsubscribe` are accepted).
Tools (each call appends `<tool> <json arguments>` to --calls-file, then answers):
    touch(uri)        sends notifications/resources/updated for `uri` (unrelated to the call,
                      on the connection), answers `touched <uri>`
    ask_model(prompt) sends sampling/createMessage, answers `sampled: <text>` or
                      `refused: <error message>`
    ask_user(message) sends elicitation/create, answers `elicited: <json content>` or
                      `refused: <error message>`

Only protocol messages are written to stdout; it exits when stdin closes.
"""

import argparse
import asyncio
import json
import sys
import warnings

import mcp_types as types
from mcp.server.mcpserver import Context, MCPServer

warnings.simplefilter("ignore")

mcp = MCPServer("warden-server-traffic-fixture", version="1.0.0", log_level="WARNING")
CALLS_FILE = ""


def _log(tool: str, **arguments) -> None:
    with open(CALLS_FILE, "a", encoding="utf-8") as f:
        f.write(f"{tool} {json.dumps(arguments, sort_keys=True)}\n")


@mcp.resource("docs://public/readme", name="readme", description="Public.", mime_type="text/plain")
def readme() -> str:
    return "public"


@mcp.resource("docs://secret/plan", name="plan", description="Secret.", mime_type="text/plain")
def plan() -> str:
    return "secret"


async def _subscription(ctx, params) -> types.EmptyResult:
    """resources/subscribe and resources/unsubscribe: accepted (and recorded)."""
    return types.EmptyResult()


mcp._lowlevel_server.add_request_handler("resources/subscribe", types.SubscribeRequestParams, _subscription)
mcp._lowlevel_server.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, _subscription)


@mcp.tool(description="Send notifications/resources/updated for `uri`.", structured_output=False)
async def touch(uri: str, ctx: Context) -> str:
    _log("touch", uri=uri)
    await ctx.session.send_resource_updated(uri)
    return f"touched {uri}"


@mcp.tool(description="Ask the client's model (sampling).", structured_output=False)
async def ask_model(prompt: str, ctx: Context) -> str:
    _log("ask_model", prompt=prompt)
    try:
        result = await ctx.session.create_message(
            [types.SamplingMessage(role="user", content=types.TextContent(type="text", text=prompt))],
            max_tokens=10,
            related_request_id=ctx.request_id,
        )
    except Exception as e:  # the gateway's refusal arrives as an MCPError
        return f"refused: {e}"
    return f"sampled: {result.content.text}"


@mcp.tool(description="Ask the client's user (elicitation).", structured_output=False)
async def ask_user(message: str, ctx: Context) -> str:
    _log("ask_user", message=message)
    try:
        result = await ctx.session.elicit(
            message,
            {"type": "object", "properties": {"name": {"type": "string"}}},
            related_request_id=ctx.request_id,
        )
    except Exception as e:
        return f"refused: {e}"
    return f"elicited: {json.dumps(result.content, sort_keys=True)}"


def main() -> int:
    global CALLS_FILE
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("transport", choices=["stdio"])
    p.add_argument("--calls-file", required=True)
    args = p.parse_args()
    CALLS_FILE = args.calls_file
    try:
        asyncio.run(mcp.run_stdio_async())
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
