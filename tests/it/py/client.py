"""Drive an MCP server (the mcpgw gateway, or an upstream directly) with the official SDK client.

Usage:
    python client.py [--timeout SECONDS] URL SCENARIO [ARGS...]

Connects with `mcp.Client(URL, mode="legacy")` over Streamable HTTP (initialize handshake),
runs one scenario and prints ONE JSON document on stdout. Exit code 0 means the scenario ran;
assertions are left to the caller. A JSON-RPC error answered by the server (the SDK raises
`mcp.MCPError`) is printed as {"error": {"code": c, "message": m[, "data": d]}} with exit 0.
Anything else (connection refused, handshake failure, timeout, ...) exits non-zero with the
traceback on stderr. The whole run is bounded by --timeout (default 30 s): exit code 124.

Scenarios:
    tour [TOOL]                 server info, protocol version, capabilities, every tool /
                                resource / template / prompt (all pages); input schema of TOOL
    call TOOL JSON_ARGS         {"is_error", "text": [...], "structured"}
    read URI                    {"contents": [{"uri", "text"}]}
    prompt NAME JSON_ARGS       {"messages": [{"role", "text"}]}
    complete_prompt NAME ARG VALUE   {"values": [...]}
    many N [TOOL]               N sequential tools/call of TOOL (default: first tool whose name
                                ends with "echo"), argument {"text": "<i>"}; {"ok", "failed", ...}
    script JSON_STEPS           several of the above in ONE session: a JSON list of
                                [scenario, arg, ...] (JSON arguments may be given as objects);
                                {"steps": [result, ...]} in order
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from mcp import Client, MCPError
from mcp_types import PromptReference

MAX_PAGES = 1000


def error_obj(e: MCPError) -> dict[str, Any]:
    err: dict[str, Any] = {"code": e.code, "message": e.message}
    if e.data is not None:
        err["data"] = e.data
    return {"error": err}


def content_text(block: Any) -> str | None:
    return getattr(block, "text", None) if getattr(block, "type", None) == "text" else None


async def paginate(fetch: Callable[[str | None], Awaitable[Any]], field: str) -> tuple[list[Any], int]:
    items: list[Any] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = await fetch(cursor)
        pages += 1
        items.extend(getattr(page, field))
        cursor = page.next_cursor
        if not cursor:
            return items, pages
        if pages >= MAX_PAGES:
            raise RuntimeError(f"pagination of {field} did not end after {MAX_PAGES} pages")


async def tour(client: Client, args: list[str]) -> dict[str, Any]:
    info = client.server_info
    caps = client.server_capabilities
    tools, tool_pages = await paginate(lambda c: client.list_tools(cursor=c), "tools")
    resources, _ = await paginate(lambda c: client.list_resources(cursor=c), "resources")
    templates, _ = await paginate(lambda c: client.list_resource_templates(cursor=c), "resource_templates")
    prompts, _ = await paginate(lambda c: client.list_prompts(cursor=c), "prompts")
    out: dict[str, Any] = {
        "server_info": {"name": info.name, "version": info.version} if info is not None else None,
        "protocol_version": client.protocol_version,
        "capabilities": caps.model_dump(by_alias=True, exclude_none=True, mode="json"),
        "instructions": client.instructions,
        "tools": [t.name for t in tools],
        "tool_pages": tool_pages,
        "resources": [str(r.uri) for r in resources],
        "resource_templates": [t.uri_template for t in templates],
        "prompts": [p.name for p in prompts],
    }
    if args:
        wanted = args[0]
        match = next((t for t in tools if t.name == wanted), None)
        out["input_schema"] = match.input_schema if match is not None else None
    return out


async def call(client: Client, args: list[str]) -> dict[str, Any]:
    if len(args) < 1:
        raise SystemExit("call needs TOOL [JSON_ARGS]")
    arguments = json.loads(args[1]) if len(args) > 1 else {}
    try:
        result = await client.call_tool(args[0], arguments)
    except MCPError as e:
        return error_obj(e)
    return {
        "is_error": bool(result.is_error),
        "text": [t for t in (content_text(b) for b in result.content) if t is not None],
        "structured": result.structured_content,
    }


async def read(client: Client, args: list[str]) -> dict[str, Any]:
    if len(args) != 1:
        raise SystemExit("read needs URI")
    try:
        result = await client.read_resource(args[0])
    except MCPError as e:
        return error_obj(e)
    return {"contents": [{"uri": str(c.uri), "text": getattr(c, "text", None)} for c in result.contents]}


async def prompt(client: Client, args: list[str]) -> dict[str, Any]:
    if len(args) < 1:
        raise SystemExit("prompt needs NAME [JSON_ARGS]")
    arguments = json.loads(args[1]) if len(args) > 1 else None
    try:
        result = await client.get_prompt(args[0], arguments)
    except MCPError as e:
        return error_obj(e)
    return {"messages": [{"role": m.role, "text": content_text(m.content)} for m in result.messages]}


async def complete_prompt(client: Client, args: list[str]) -> dict[str, Any]:
    if len(args) != 3:
        raise SystemExit("complete_prompt needs NAME ARG VALUE")
    try:
        result = await client.complete(PromptReference(name=args[0]), {"name": args[1], "value": args[2]})
    except MCPError as e:
        return error_obj(e)
    return {"values": list(result.completion.values)}


async def many(client: Client, args: list[str]) -> dict[str, Any]:
    if len(args) < 1:
        raise SystemExit("many needs N [TOOL]")
    n = int(args[0])
    if len(args) > 1:
        tool = args[1]
    else:
        tools, _ = await paginate(lambda c: client.list_tools(cursor=c), "tools")
        tool = next((t.name for t in tools if t.name.endswith("echo")), None)
        if tool is None:
            return {"ok": 0, "failed": n, "tool": None, "first_error": "no tool named *echo"}
    ok = 0
    failed = 0
    first_error: Any = None
    for i in range(n):
        text = str(i)
        try:
            result = await client.call_tool(tool, {"text": text})
        except MCPError as e:
            failed += 1
            first_error = first_error or error_obj(e)["error"]
            continue
        texts = [t for t in (content_text(b) for b in result.content) if t is not None]
        if not result.is_error and texts and texts[0].endswith(":" + text):
            ok += 1
        else:
            failed += 1
            first_error = first_error or {"is_error": result.is_error, "text": texts}
    return {"ok": ok, "failed": failed, "tool": tool, "first_error": first_error}


async def script(client: Client, args: list[str]) -> dict[str, Any]:
    if len(args) != 1:
        raise SystemExit("script needs one JSON list of steps")
    results = []
    for step in json.loads(args[0]):
        name, *rest = step
        if name == "script":
            raise SystemExit("script steps cannot nest")
        step_args = [a if isinstance(a, str) else json.dumps(a) for a in rest]
        results.append(await SCENARIOS[name](client, step_args))
    return {"steps": results}


SCENARIOS: dict[str, Callable[[Client, list[str]], Awaitable[dict[str, Any]]]] = {
    "script": script,
    "tour": tour,
    "call": call,
    "read": read,
    "prompt": prompt,
    "complete_prompt": complete_prompt,
    "many": many,
}


async def run(url: str, scenario: str, args: list[str], timeout: float) -> dict[str, Any]:
    fn = SCENARIOS[scenario]
    with anyio.fail_after(timeout):
        # cache=None: every list call must reach the server under test.
        # No per-request read timeout: the SDK would report it as an MCPError (printed as a
        # JSON-RPC error object), which would hide a hung gateway; fail_after covers it.
        async with Client(url, mode="legacy", cache=None) as client:
            return await fn(client, args)


def _watchdog_fired() -> None:
    print("client.py: watchdog fired, the SDK did not stop after the timeout", file=sys.stderr, flush=True)
    os._exit(124)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timeout", type=float, default=30.0, help="overall limit in seconds (default 30)")
    parser.add_argument("url")
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("args", nargs=argparse.REMAINDER)
    ns = parser.parse_args()
    # Backstop in case cancellation itself gets stuck (e.g. in transport cleanup).
    watchdog = threading.Timer(ns.timeout + 10, _watchdog_fired)
    watchdog.daemon = True
    watchdog.start()
    try:
        out = anyio.run(run, ns.url, ns.scenario, ns.args, ns.timeout)
    except TimeoutError:
        traceback.print_exc()
        print(f"client.py: scenario {ns.scenario!r} timed out after {ns.timeout}s", file=sys.stderr)
        return 124
    except Exception:
        traceback.print_exc()
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
