"""Fixture MCP server for mcpgw integration tests, built on the official SDK's MCPServer.

Usage:
    python upstream.py --name NAME --transport stdio
    python upstream.py --name NAME --transport http [--port PORT] [--log-level LEVEL]

HTTP mode serves Streamable HTTP at http://127.0.0.1:PORT/mcp (the SDK default path, stateful
sessions). With --port 0 (the default) the OS picks a free port; once the server accepts
connections exactly one line `LISTENING <port>` is printed to stderr (flushed). The same line is
printed for an explicit --port too, so tests can always wait for it.

NAME is woven into every answer so a test can tell which upstream answered:
  tools      echo(text) -> "NAME:text", add(a, b) -> a+b, whoami() -> NAME,
             slow(seconds) -> "done" after an asyncio sleep, crash() -> os._exit(3),
             fail() -> isError result "fail tool of NAME failed on purpose"
  resources  fixture://NAME/info ("info from NAME"),
             template fixture://NAME/item/{item_id} ("item <item_id> from NAME")
  prompts    greet(who) -> one user message "Hello <who> from NAME"
  completion greet/who completes from ["alice", "albert", "bob", NAME] by prefix
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import Completion, PromptReference

SERVER_VERSION = "0.1.0"


def build_server(name: str, log_level: str) -> MCPServer:
    server = MCPServer(name=name, version=SERVER_VERSION, log_level=log_level)

    @server.tool(description="Echo the text back, prefixed with the server name.")
    def echo(text: str) -> str:
        return f"{name}:{text}"

    @server.tool(description="Add two integers.")
    def add(a: int, b: int) -> int:
        return a + b

    @server.tool(description="Return the server name.")
    def whoami() -> str:
        return name

    @server.tool(description="Sleep for the given number of seconds, then return 'done'.")
    async def slow(seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "done"

    @server.tool(description="Kill the server process immediately (exit code 3).")
    def crash() -> str:
        sys.stderr.flush()
        os._exit(3)

    @server.tool(description="Always fails with a tool error.")
    def fail() -> str:
        # ToolError: the message reaches the client (any other exception is masked by the SDK
        # as "Error executing tool fail").
        raise ToolError(f"fail tool of {name} failed on purpose")

    @server.resource(f"fixture://{name}/info", name="info", mime_type="text/plain")
    def info() -> str:
        return f"info from {name}"

    @server.resource(f"fixture://{name}/item/{{item_id}}", name="item", mime_type="text/plain")
    def item(item_id: str) -> str:
        return f"item {item_id} from {name}"

    @server.prompt(description="Greet someone.")
    def greet(who: str) -> str:
        return f"Hello {who} from {name}"

    candidates = ["alice", "albert", "bob", name]

    @server.completion()
    async def complete(ref: Any, argument: Any, context: Any) -> Completion | None:
        if isinstance(ref, PromptReference) and ref.name == "greet" and argument.name == "who":
            values = [c for c in candidates if c.startswith(argument.value)]
            return Completion(values=values, total=len(values), has_more=False)
        return None

    return server


async def serve_http(server: MCPServer, port: int, log_level: str) -> None:
    import uvicorn

    app = server.streamable_http_app(host="127.0.0.1")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    sock.setblocking(False)
    bound_port = sock.getsockname()[1]

    config = uvicorn.Config(app, log_level=log_level.lower(), lifespan="on")
    uv = uvicorn.Server(config)
    task = asyncio.create_task(uv.serve(sockets=[sock]))
    while not uv.started:
        if task.done():
            await task  # startup failed: surface the exception
            raise SystemExit("uvicorn exited before it started")
        await asyncio.sleep(0.01)
    print(f"LISTENING {bound_port}", file=sys.stderr, flush=True)
    await task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True)
    parser.add_argument("--transport", choices=["stdio", "http"], required=True)
    parser.add_argument("--port", type=int, default=0, help="http only; 0 = pick a free port (default)")
    parser.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"])
    args = parser.parse_args()

    server = build_server(args.name, args.log_level)
    if args.transport == "stdio":
        server.run("stdio")
    else:
        asyncio.run(serve_http(server, args.port, args.log_level))


if __name__ == "__main__":
    main()
