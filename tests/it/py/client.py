"""Drive an MCP server (the mcpgw gateway, or an upstream directly) with the official SDK client.

Usage:
    python client.py [--timeout SECONDS] [--mode legacy|auto|2026-07-28] [--header 'Name: value']...
                     [--cafile PEM [--certfile PEM --keyfile PEM]] URL SCENARIO [ARGS...]

Connects with `mcp.Client(URL, mode="legacy")` over Streamable HTTP (initialize handshake;
--mode auto probes `server/discover` first and speaks 2026-07-28 statelessly when the server
does, --mode 2026-07-28 does so without probing), runs one scenario and prints ONE JSON document on stdout. Exit code 0 means the scenario ran;
assertions are left to the caller. A JSON-RPC error answered by the server (the SDK raises
`mcp.MCPError`) is printed as {"error": {"code": c, "message": m[, "data": d]}} with exit 0.
Anything else (connection refused, handshake failure, timeout, ...) exits non-zero with the
traceback on stderr. The whole run is bounded by --timeout (default 30 s): exit code 124.

For an https:// URL, --cafile names the CA (PEM) that signed the server's certificate (default:
the system's trust store), and --certfile/--keyfile a client certificate for mTLS.

Scenarios:
    tour [TOOL]                 server info, protocol version, capabilities, every tool /
                                resource / template / prompt (all pages); input schema of TOOL
    call TOOL JSON_ARGS         {"is_error", "text": [...], "structured"}
    read URI                    {"contents": [{"uri", "text"}]}
    prompt NAME JSON_ARGS       {"messages": [{"role", "text"}]}
    complete_prompt NAME ARG VALUE   {"values": [...]}
    many N [TOOL]               N sequential tools/call of TOOL (default: first tool whose name
                                ends with "echo"), argument {"text": "<i>"}; {"ok", "failed", ...}
    call_progress TOOL [JSON_ARGS]   like call, plus "progress": [[progress, total, message], ...]
                                as the progress_callback saw them (whole numbers as integers)
    set_level LEVEL             logging/setLevel (LEVEL: debug ... emergency, checked by the SDK);
                                {"ok": true} or the error object
    subscribe URI               resources/subscribe; {"ok": true} or the error object
    unsubscribe URI             resources/unsubscribe; {"ok": true} or the error object
    notifications [WAIT_SECONDS]  sleeps WAIT_SECONDS (default 0.5), then {"notifications":
                                [{"method", "params"}, ...], "logs": [{"level", "data", "logger"}]}
                                recorded so far in this session, and clears both lists
    cancel TOOL JSON_ARGS AFTER_SECONDS  starts tools/call in a task, cancels the task after
                                AFTER_SECONDS (the SDK then sends notifications/cancelled);
                                {"cancelled": true, "elapsed": s}, or if the call ended first
                                {"cancelled": false, "elapsed": s, "result": <call output>}
    list_tools                  {"tools": [names]} (all pages, fetched fresh)
    script JSON_STEPS           several of the above in ONE session: a JSON list of
                                [scenario, arg, ...] (JSON arguments may be given as objects);
                                {"steps": [result, ...]} in order

The client always declares sampling, elicitation (form, url) and roots (listChanged) and
answers them: sampling -> assistant text "sampled:<text of the last user message>", model
"fixture-model"; elicitation -> accept {"answer": "42"}; roots/list -> file:///tmp/root-a,
file:///tmp/root-b. Every server notification (progress and log messages included) is recorded
for `notifications`; notifications/message also goes to "logs". notifications/cancelled is
applied by the SDK and never recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Awaitable, Callable
from typing import Any, get_args

import anyio
import anyio.lowlevel
from mcp import Client, MCPError
from mcp.client.session import ClientRequestContext, IncomingMessage
from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client
from mcp.shared._httpx_utils import MCP_DEFAULT_SSE_READ_TIMEOUT, MCP_DEFAULT_TIMEOUT
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp_types import (
    CreateMessageRequestParams,
    CreateMessageResult,
    ElicitRequestParams,
    ElicitResult,
    ListRootsResult,
    LoggingLevel,
    LoggingMessageNotificationParams,
    PromptReference,
    Root,
    TextContent,
)

# set_logging_level / subscribe_resource are deprecated for 2026-07-28 (legacy mode is used).
warnings.filterwarnings("ignore", category=MCPDeprecationWarning)

MAX_PAGES = 1000
ROOTS = ["file:///tmp/root-a", "file:///tmp/root-b"]


class Recorder:
    """What the server sent outside responses, for the `notifications` scenario."""

    def __init__(self) -> None:
        self.notifications: list[dict[str, Any]] = []
        self.logs: list[dict[str, Any]] = []

    async def sampling(self, context: ClientRequestContext, params: CreateMessageRequestParams) -> CreateMessageResult:
        text = ""
        for message in reversed(params.messages):
            if message.role == "user":
                text = "".join(b.text for b in message.content_as_list if isinstance(b, TextContent))
                break
        return CreateMessageResult(
            role="assistant",
            content=TextContent(type="text", text=f"sampled:{text}"),
            model="fixture-model",
            stop_reason="endTurn",
        )

    async def elicitation(self, context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        return ElicitResult(action="accept", content={"answer": "42"})

    async def list_roots(self, context: ClientRequestContext) -> ListRootsResult:
        return ListRootsResult(roots=[Root(uri=u, name=u.rsplit("/", 1)[-1]) for u in ROOTS])

    async def logging(self, params: LoggingMessageNotificationParams) -> None:
        self.logs.append({"level": params.level, "data": params.data, "logger": params.logger})

    async def message(self, message: IncomingMessage) -> None:
        if isinstance(message, Exception):
            # What the SDK's default message handler does with transport exceptions.
            await anyio.lowlevel.checkpoint()
            return
        wire = message.model_dump(by_alias=True, mode="json", exclude_none=True)
        self.notifications.append({"method": wire["method"], "params": wire.get("params")})


RECORDER = Recorder()


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


def plain_number(x: float | None) -> float | int | None:
    return int(x) if isinstance(x, float) and x.is_integer() else x


def call_output(result: Any) -> dict[str, Any]:
    return {
        "is_error": bool(result.is_error),
        "text": [t for t in (content_text(b) for b in result.content) if t is not None],
        "structured": result.structured_content,
    }


async def call_progress(client: Client, args: list[str]) -> dict[str, Any]:
    if len(args) < 1:
        raise SystemExit("call_progress needs TOOL [JSON_ARGS]")
    arguments = json.loads(args[1]) if len(args) > 1 else {}
    seen: list[list[Any]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append([plain_number(progress), plain_number(total), message])

    try:
        result = await client.call_tool(args[0], arguments, progress_callback=on_progress)
    except MCPError as e:
        return {**error_obj(e), "progress": seen}
    # The SDK runs each progress callback in its own task: let the last ones finish.
    for _ in range(10):
        await anyio.lowlevel.checkpoint()
    return {**call_output(result), "progress": seen}


async def set_level(client: Client, args: list[str]) -> dict[str, Any]:
    if len(args) != 1 or args[0] not in get_args(LoggingLevel):
        # The SDK validates the level itself before sending anything.
        raise SystemExit(f"set_level needs LEVEL, one of {', '.join(get_args(LoggingLevel))}")
    try:
        await client.set_logging_level(args[0])  # type: ignore[arg-type]
    except MCPError as e:
        return error_obj(e)
    return {"ok": True}


async def subscribe(client: Client, args: list[str]) -> dict[str, Any]:
    if len(args) != 1:
        raise SystemExit("subscribe needs URI")
    try:
        await client.subscribe_resource(args[0])
    except MCPError as e:
        return error_obj(e)
    return {"ok": True}


async def unsubscribe(client: Client, args: list[str]) -> dict[str, Any]:
    if len(args) != 1:
        raise SystemExit("unsubscribe needs URI")
    try:
        await client.unsubscribe_resource(args[0])
    except MCPError as e:
        return error_obj(e)
    return {"ok": True}


async def notifications(client: Client, args: list[str]) -> dict[str, Any]:
    if len(args) > 1:
        raise SystemExit("notifications takes [WAIT_SECONDS]")
    await anyio.sleep(float(args[0]) if args else 0.5)
    out = {"notifications": RECORDER.notifications, "logs": RECORDER.logs}
    RECORDER.notifications, RECORDER.logs = [], []
    return out


async def cancel(client: Client, args: list[str]) -> dict[str, Any]:
    if len(args) != 3:
        raise SystemExit("cancel needs TOOL JSON_ARGS AFTER_SECONDS")
    tool, arguments, after = args[0], json.loads(args[1]), float(args[2])
    finished: dict[str, Any] = {}
    start = time.monotonic()
    async with anyio.create_task_group() as tg:

        async def run_call() -> None:
            try:
                finished["result"] = call_output(await client.call_tool(tool, arguments))
            except MCPError as e:
                finished["result"] = error_obj(e)

        tg.start_soon(run_call)
        with anyio.move_on_after(after):
            while "result" not in finished:
                await anyio.sleep(0.01)
        # Cancelling the task makes the SDK send notifications/cancelled for the request id
        # (shielded, before the cancellation finishes unwinding).
        tg.cancel_scope.cancel()
    elapsed = round(time.monotonic() - start, 3)
    if "result" in finished:
        return {"cancelled": False, "elapsed": elapsed, "result": finished["result"]}
    return {"cancelled": True, "elapsed": elapsed}


async def list_tools(client: Client, args: list[str]) -> dict[str, Any]:
    if args:
        raise SystemExit("list_tools takes no arguments")
    try:
        tools, _ = await paginate(lambda c: client.list_tools(cursor=c), "tools")
    except MCPError as e:
        return error_obj(e)
    return {"tools": [t.name for t in tools]}


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
    "call_progress": call_progress,
    "set_level": set_level,
    "subscribe": subscribe,
    "unsubscribe": unsubscribe,
    "notifications": notifications,
    "cancel": cancel,
    "list_tools": list_tools,
}


def tls_client(headers: dict[str, str], tls: ssl.SSLContext) -> Any:
    """The SDK's HTTP client (same timeouts) verifying the server with `tls`."""
    import httpx2

    timeout = httpx2.Timeout(MCP_DEFAULT_TIMEOUT, read=MCP_DEFAULT_SSE_READ_TIMEOUT)
    return httpx2.AsyncClient(headers=headers, timeout=timeout, verify=tls)


async def run(
    url: str,
    scenario: str,
    args: list[str],
    timeout: float,
    headers: dict[str, str],
    tls: ssl.SSLContext | None = None,
    mode: str = "legacy",
) -> dict[str, Any]:
    fn = SCENARIOS[scenario]
    # Extra request headers (credentials) ride on the SDK's own HTTP client.
    server: Any = url
    if tls is not None:
        server = streamable_http_client(url, http_client=tls_client(headers, tls))
    elif headers:
        server = streamable_http_client(url, http_client=create_mcp_http_client(headers=headers))
    with anyio.fail_after(timeout):
        # cache=None: every list call must reach the server under test.
        # No per-request read timeout: the SDK would report it as an MCPError (printed as a
        # JSON-RPC error object), which would hide a hung gateway; fail_after covers it.
        async with Client(
            server,
            mode=mode,
            cache=None,
            sampling_callback=RECORDER.sampling,
            elicitation_callback=RECORDER.elicitation,
            list_roots_callback=RECORDER.list_roots,
            logging_callback=RECORDER.logging,
            message_handler=RECORDER.message,
        ) as client:
            return await fn(client, args)


def _watchdog_fired() -> None:
    print("client.py: watchdog fired, the SDK did not stop after the timeout", file=sys.stderr, flush=True)
    os._exit(124)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timeout", type=float, default=30.0, help="overall limit in seconds (default 30)")
    parser.add_argument("--header", action="append", default=[], help="extra request header 'Name: value'")
    parser.add_argument("--mode", default="legacy", choices=["legacy", "auto", "2026-07-28"], help="the SDK client's era")
    parser.add_argument("--cafile", help="https: CA certificates (PEM) that sign the server's certificate")
    parser.add_argument("--certfile", help="https: client certificate (PEM) for mTLS; needs --cafile and --keyfile")
    parser.add_argument("--keyfile", help="https: the client certificate's private key (PEM)")
    parser.add_argument("url")
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("args", nargs=argparse.REMAINDER)
    ns = parser.parse_args()
    # Backstop in case cancellation itself gets stuck (e.g. in transport cleanup).
    watchdog = threading.Timer(ns.timeout + 10, _watchdog_fired)
    watchdog.daemon = True
    watchdog.start()
    try:
        headers = dict(h.split(":", 1) for h in ns.header)
        headers = {k.strip(): v.strip() for k, v in headers.items()}
        tls = None
        if ns.cafile:
            tls = ssl.create_default_context(cafile=ns.cafile)
            if ns.certfile:
                tls.load_cert_chain(ns.certfile, ns.keyfile)
        out = anyio.run(run, ns.url, ns.scenario, ns.args, ns.timeout, headers, tls, ns.mode)
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
