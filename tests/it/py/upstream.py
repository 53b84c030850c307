"""Fixture MCP server for mcpgw integration tests, built on the official SDK's MCPServer.

Usage:
    python upstream.py --name NAME --transport stdio
    python upstream.py --name NAME --transport http [--port PORT] [--certfile PEM --keyfile PEM] [--log-level LEVEL]
                       [--only-2026] [--fail-initialize N]

HTTP mode serves Streamable HTTP at http://127.0.0.1:PORT/mcp (the SDK default path, stateful
sessions; the SDK's server speaks both eras). --only-2026 makes it a server of MCP 2026-07-28
alone: `initialize` is refused (HTTP 400, -32022 unsupported protocol version) and so are GET
and DELETE (405). --fail-initialize N answers the first N `initialize` requests HTTP 503 (a
server restarting). With --port 0 (the default) the OS picks a free port; once the server accepts
connections exactly one line `LISTENING <port>` is printed to stderr (flushed). The same line is
printed for an explicit --port too, so tests can always wait for it.

NAME is woven into every answer so a test can tell which upstream answered:
  tools      echo(text) -> "NAME:text", add(a, b) -> a+b, whoami() -> NAME,
             auth_header() -> the Authorization header of the HTTP request (HTTP only),
             header(name) -> that header of the HTTP request, '' without one (HTTP only),
             requests_seen() -> JSON list of [method, Authorization header] of the last 1000
             HTTP requests this server received (every POST, GET and DELETE; HTTP only),
             flood(count, size) -> `count` progress notifications of `size` bytes, at once,
             slow(seconds) -> "done" after an asyncio sleep (cancel_count() -> how many
             slow calls were cancelled), crash() -> os._exit(3),
             fail() -> isError result "fail tool of NAME failed on purpose"
  resources  fixture://NAME/info ("info from NAME"),
             template fixture://NAME/item/{item_id} ("item <item_id> from NAME")
  prompts    greet(who) -> one user message "Hello <who> from NAME"
  completion greet/who completes from ["alice", "albert", "bob", NAME] by prefix

Client-feature tools (need a session that can carry server-to-client messages):
  progress(steps, delay=0.05)  `steps` progress notifications (progress=i, total=steps,
                               message "step i"; only if the call carried a progressToken),
                               `delay` s apart -> "done <steps>"
  slow_progress(seconds)       a progress notification every 0.2 s (progress=i, no total,
                               message "tick i") for `seconds` -> "finished"
  region(region)               "region <region>"; its inputSchema marks region `x-mcp-header: Region`
  ask_llm(prompt)              sampling/createMessage (one user text message, maxTokens 50)
                               -> "llm said: <reply text>"
  ask_user(question)           elicitation/create, form mode, one required string field `answer`
                               -> "user said: <answer>" | "user declined" | "user cancelled"
  list_roots(standalone=false) roots/list -> the root URIs joined with ","
  log(message, level="info")   notifications/message (logger NAME, data = message) unless the
                               session's logging/setLevel is above `level` -> "logged"
  add_tool(name)               registers tool `name` (-> "dynamic <name>") and sends
                               notifications/tools/list_changed to the calling session
                               -> "added <name>" ("exists <name>", no notification, if the
                               server already has a tool of that name)
  redefine(name, description)  sets tool `name`'s description (any tool, server-wide) and sends
                               notifications/tools/list_changed to the calling session
                               -> "redefined <name>" ("no tool <name>" if there is none)
  bump()                       counter += 1, notifications/resources/updated for
                               fixture://NAME/counter to every session subscribed to it
                               -> the new value as text
  A failed server-to-client request (client lacks the capability, answers with an error)
  gives an isError result "... failed: <code> <message>".
  resource   fixture://NAME/counter (text = counter value; starts at 0, shared by all sessions)
  resources/subscribe and resources/unsubscribe (unknown URI: -32602 like resources/read),
  logging/setLevel (per session; default: every level is sent).
  Capabilities: tools.listChanged true, resources.subscribe true, logging {}.

Routing over Streamable HTTP (see WIRE.md): progress, log messages, sampling, elicitation and
roots/list go on the tools/call POST's SSE stream; tools/list_changed and resources/updated go
on the session's standalone GET stream (dropped if none is open). list_roots(standalone=true)
uses the SDK's plain `session.list_roots()`, which goes on the GET stream instead.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import socket
import sys
import time
import warnings
from typing import Annotated, Any, get_args

from mcp import MCPError
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import NotificationOptions
from mcp.server.mcpserver import Context, MCPServer, Resolve, Sample
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp.shared.message import ServerMessageMetadata
from mcp_types import (
    INVALID_PARAMS,
    Completion,
    EmptyResult,
    ListRootsRequest,
    ListRootsResult,
    LoggingLevel,
    PromptReference,
    CreateMessageResult,
    SamplingMessage,
    SetLevelRequestParams,
    SubscribeRequestParams,
    TextContent,
    UnsubscribeRequestParams,
)
from pydantic import BaseModel, Field

# Logging, sampling, roots and resources/subscribe are deprecated for 2026-07-28; the fixture
# serves the 2025 (handshake) era where they are current. Keep stderr free of the warnings.
warnings.filterwarnings("ignore", category=MCPDeprecationWarning)

SERVER_VERSION = "0.1.0"

LOG_LEVELS: tuple[str, ...] = get_args(LoggingLevel)  # severity ascending (RFC 5424 order)
PROGRESS_INTERVAL = 0.2


class Answer(BaseModel):
    answer: str


def session_key(rc: ServerRequestContext[Any, Any]) -> str:
    """Identifies the client session a request belongs to: the `mcp-session-id` header over
    Streamable HTTP; over stdio the process serves exactly one session."""
    headers = getattr(rc.request, "headers", None)
    sid = headers.get("mcp-session-id") if headers is not None else None
    return sid or "stdio"


def _sample_prompt(prompt: str) -> Sample:
    """Resolver of `ask_llm_resolved`: sample the client's LLM with the tool's prompt."""
    return Sample(
        [SamplingMessage(role="user", content=TextContent(type="text", text=prompt))],
        max_tokens=50,
    )


def failed(what: str, e: MCPError) -> ToolError:
    return ToolError(f"{what} failed: {e.code} {e.message}")


def build_server(name: str, log_level: str) -> MCPServer:
    server = MCPServer(name=name, version=SERVER_VERSION, log_level=log_level)
    # MCPServer has no public hook for these methods or for the listChanged flags: use its
    # low-level Server (the SDK's own in-process Client reaches it the same way).
    low = server._lowlevel_server  # pyright: ignore[reportPrivateUsage]
    counter_uri = f"fixture://{name}/counter"
    counter = 0
    # uri -> session key -> the ServerSession of the subscribe request; its standalone channel
    # (the session's GET stream over HTTP) outlives that request.
    subscribers: dict[str, dict[str, Any]] = {}
    # session key -> minimum level set by logging/setLevel
    log_levels: dict[str, str] = {}

    @server.tool(description="Echo the text back, prefixed with the server name.")
    def echo(text: str) -> str:
        return f"{name}:{text}"

    @server.tool(description="Add two integers.")
    def add(a: int, b: int) -> int:
        return a + b

    @server.tool(description="Return the server name.")
    def whoami() -> str:
        return name

    cancelled = {"count": 0}

    @server.tool(description="Sleep for the given number of seconds, then return 'done'.")
    async def slow(seconds: float) -> str:
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            # notifications/cancelled reached this server and cancelled the call.
            cancelled["count"] += 1
            raise
        return "done"

    @server.tool(description="How many `slow` calls were cancelled by the client so far.")
    def cancel_count() -> str:
        return str(cancelled["count"])

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

    @server.resource(counter_uri, name="counter", mime_type="text/plain")
    def counter_resource() -> str:
        return str(counter)

    @server.tool(description="Send `steps` progress notifications, `delay` seconds apart.")
    async def progress(steps: int, ctx: Context, delay: float = 0.05) -> str:
        for i in range(1, steps + 1):
            await ctx.report_progress(i, steps, f"step {i}")
            if i < steps:
                await asyncio.sleep(delay)
        return f"done {steps}"

    @server.tool(description="The Authorization header this server received with the call ('' without one).")
    def auth_header(ctx: Context) -> str:
        headers = getattr(ctx.request_context.request, "headers", None)
        return headers.get("authorization", "") if headers is not None else ""

    @server.tool(description="[method, Authorization] of the last 1000 HTTP requests, as JSON.")
    def requests_seen() -> str:
        return json.dumps(list(SEEN))

    @server.tool(description="The request header `name` this server received with the call ('' without one).")
    def header(name: str, ctx: Context) -> str:
        headers = getattr(ctx.request_context.request, "headers", None)
        return headers.get(name, "") if headers is not None else ""

    @server.tool(description="What this call told the server of its client, as JSON: protocol version and capabilities.")
    def client_view(ctx: Context) -> str:
        caps = ctx.client_capabilities
        return json.dumps(
            {
                "version": ctx.protocol_version,
                "capabilities": caps.model_dump(by_alias=True, mode="json", exclude_none=True) if caps else None,
            },
            sort_keys=True,
        )

    @server.tool(description="Send `count` progress notifications with a `size`-byte message each, at once.")
    async def flood(count: int, size: int, ctx: Context) -> str:
        text = "x" * size
        for i in range(1, count + 1):
            await ctx.report_progress(i, count, text)
        return f"flooded {count}"

    @server.tool(description="Send a progress notification every 0.2 s for `seconds`, then return 'finished'.")
    async def slow_progress(seconds: float, ctx: Context) -> str:
        deadline = time.monotonic() + seconds
        i = 0
        while (remaining := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(PROGRESS_INTERVAL, remaining))
            i += 1
            await ctx.report_progress(i, None, f"tick {i}")
        return "finished"

    @server.tool(description="Echo `region`, which 2026-07-28 clients also send as the Mcp-Param-Region header.")
    def region(region: Annotated[str, Field(json_schema_extra={"x-mcp-header": "Region"})]) -> str:
        return f"region {region}"

    @server.tool(description="Ask the client's LLM (sampling/createMessage).")
    async def ask_llm(prompt: str, ctx: Context) -> str:
        try:
            result = await ctx.session.create_message(
                messages=[SamplingMessage(role="user", content=TextContent(type="text", text=prompt))],
                max_tokens=50,
                related_request_id=ctx.request_context.request_id,
            )
        except MCPError as e:
            raise failed("sampling", e) from e
        blocks = result.content if isinstance(result.content, list) else [result.content]
        text = "".join(b.text for b in blocks if isinstance(b, TextContent))
        return f"llm said: {text}"

    @server.tool(
        description="Ask the client's LLM through a resolver: a sampling request mid-call on a "
        "legacy session, an input-required result in MCP 2026-07-28."
    )
    async def ask_llm_resolved(prompt: str, reply: Annotated[CreateMessageResult, Resolve(_sample_prompt)]) -> str:
        blocks = reply.content if isinstance(reply.content, list) else [reply.content]
        text = "".join(b.text for b in blocks if isinstance(b, TextContent))
        return f"llm said: {text}"

    @server.tool(description="Ask the user a question (elicitation/create, form mode, field 'answer').")
    async def ask_user(question: str, ctx: Context) -> str:
        try:
            result = await ctx.elicit(question, Answer)
        except MCPError as e:
            raise failed("elicitation", e) from e
        if result.action == "accept":
            return f"user said: {result.data.answer}"
        return "user declined" if result.action == "decline" else "user cancelled"

    @server.tool(description="List the client's roots (roots/list); URIs joined with ','.")
    async def list_roots(ctx: Context, standalone: bool = False) -> str:
        try:
            if standalone:
                # SDK default: no related request, so the standalone channel (GET stream).
                result = await ctx.session.list_roots()
            else:
                result = await ctx.session.send_request(
                    ListRootsRequest(),
                    ListRootsResult,
                    metadata=ServerMessageMetadata(related_request_id=ctx.request_context.request_id),
                )
        except MCPError as e:
            raise failed("roots/list", e) from e
        return ",".join(str(r.uri) for r in result.roots)

    @server.tool(description="Send a log message (notifications/message) at `level`.")
    async def log(message: str, ctx: Context, level: str = "info") -> str:
        if level not in LOG_LEVELS:
            raise ToolError(f"unknown level {level!r}; one of {', '.join(LOG_LEVELS)}")
        minimum = log_levels.get(session_key(ctx.request_context))
        if minimum is None or LOG_LEVELS.index(level) >= LOG_LEVELS.index(minimum):
            await ctx.log(level, message, logger_name=name)  # type: ignore[arg-type]
        return "logged"

    @server.tool(description="Register a new tool `name` at runtime and send tools/list_changed.")
    async def add_tool(name: str, ctx: Context) -> str:
        tool_name = name
        if any(t.name == tool_name for t in await server.list_tools()):
            return f"exists {tool_name}"

        def dynamic() -> str:
            return f"dynamic {tool_name}"

        server.add_tool(dynamic, name=tool_name, description=f"Dynamic tool added at runtime: {tool_name}.")
        await ctx.session.send_tool_list_changed()
        return f"added {tool_name}"

    @server.tool(description="Change tool `name`'s description at runtime and send tools/list_changed.")
    async def redefine(name: str, description: str, ctx: Context) -> str:
        tool = server._tool_manager.get_tool(name)  # pyright: ignore[reportPrivateUsage]
        if tool is None:
            return f"no tool {name}"
        tool.description = description
        await ctx.session.send_tool_list_changed()
        return f"redefined {name}"

    @server.tool(description="Increment the counter and notify subscribers of fixture://NAME/counter.")
    async def bump(ctx: Context) -> str:
        nonlocal counter
        counter += 1
        for session in list(subscribers.get(counter_uri, {}).values()):
            try:
                await session.send_resource_updated(counter_uri)
            except Exception as e:  # a gone session must not fail the tool
                print(f"upstream.py: resources/updated not sent: {e!r}", file=sys.stderr, flush=True)
        # 2026-07-28 subscribers listen (subscriptions/listen) instead.
        await ctx.notify_resource_updated(counter_uri)
        return str(counter)

    async def on_subscribe(ctx: ServerRequestContext[Any, Any], params: SubscribeRequestParams) -> EmptyResult:
        uri = str(params.uri)
        try:
            await server.read_resource(uri)
        except ResourceError as e:
            raise MCPError(code=INVALID_PARAMS, message=str(e), data={"uri": uri}) from e
        subscribers.setdefault(uri, {})[session_key(ctx)] = ctx.session
        return EmptyResult()

    async def on_unsubscribe(ctx: ServerRequestContext[Any, Any], params: UnsubscribeRequestParams) -> EmptyResult:
        subscribers.get(str(params.uri), {}).pop(session_key(ctx), None)
        return EmptyResult()

    async def on_set_level(ctx: ServerRequestContext[Any, Any], params: SetLevelRequestParams) -> EmptyResult:
        log_levels[session_key(ctx)] = params.level
        return EmptyResult()

    # Registering the handlers is what advertises resources.subscribe and logging.
    low.add_request_handler("resources/subscribe", SubscribeRequestParams, on_subscribe)
    low.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, on_unsubscribe)
    low.add_request_handler("logging/setLevel", SetLevelRequestParams, on_set_level)

    # Advertise tools.listChanged (both transports build the initialize result from this).
    base_options = low.create_initialization_options

    def initialization_options(
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> Any:
        return base_options(
            notification_options or NotificationOptions(tools_changed=True), experimental_capabilities, extensions
        )

    low.create_initialization_options = initialization_options  # type: ignore[method-assign]

    candidates = ["alice", "albert", "bob", name]

    @server.completion()
    async def complete(ref: Any, argument: Any, context: Any) -> Completion | None:
        if isinstance(ref, PromptReference) and ref.name == "greet" and argument.name == "who":
            values = [c for c in candidates if c.startswith(argument.value)]
            return Completion(values=values, total=len(values), has_more=False)
        return None

    return server


# [method, Authorization] of the HTTP requests received, newest last (see requests_seen).
SEEN: collections.deque[tuple[str, str]] = collections.deque(maxlen=1000)


def recording(app: Any) -> Any:
    """ASGI middleware: records each HTTP request's method and Authorization header."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            auth = next(
                (v.decode("latin-1") for k, v in scope.get("headers", []) if k.lower() == b"authorization"),
                "",
            )
            SEEN.append((scope["method"], auth))
        await app(scope, receive, send)

    return wrapped


async def _read_body(receive: Any) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def _replaying(body: bytes, receive: Any) -> Any:
    replayed = False

    async def replay() -> Any:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _is_initialize(body: bytes) -> bool:
    try:
        request = json.loads(body)
    except ValueError:
        return False
    return isinstance(request, dict) and request.get("method") == "initialize"


def failing_initialize(app: Any, count: int) -> Any:
    """ASGI middleware: the first `count` initialize requests get HTTP 503."""
    left = count

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        nonlocal left
        if scope["type"] != "http" or scope["method"] != "POST" or left <= 0:
            await app(scope, receive, send)
            return
        body = await _read_body(receive)
        if _is_initialize(body):
            left -= 1
            await send({"type": "http.response.start", "status": 503, "headers": [(b"retry-after", b"1")]})
            await send({"type": "http.response.body", "body": b""})
            return
        await app(scope, _replaying(body, receive), send)

    return wrapped


def only_2026(app: Any) -> Any:
    """ASGI middleware: a server of MCP 2026-07-28 alone (no handshake, no GET stream)."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        if scope["method"] in ("GET", "DELETE"):
            await send({"type": "http.response.start", "status": 405, "headers": [(b"allow", b"POST")]})
            await send({"type": "http.response.body", "body": b""})
            return
        body = await _read_body(receive)
        if _is_initialize(body):
            error = {
                "jsonrpc": "2.0",
                "id": json.loads(body).get("id"),
                "error": {
                    "code": -32022,
                    "message": "this server speaks MCP 2026-07-28 only",
                    "data": {"supported": ["2026-07-28"]},
                },
            }
            out = json.dumps(error).encode()
            await send(
                {"type": "http.response.start", "status": 400, "headers": [(b"content-type", b"application/json")]}
            )
            await send({"type": "http.response.body", "body": out})
            return
        await app(scope, _replaying(body, receive), send)

    return wrapped


async def serve_http(
    server: MCPServer,
    port: int,
    log_level: str,
    certfile: str | None = None,
    keyfile: str | None = None,
    only_modern: bool = False,
    fail_initialize: int = 0,
) -> None:
    import uvicorn

    app = server.streamable_http_app(host="127.0.0.1")
    if fail_initialize:
        app = failing_initialize(app, fail_initialize)
    app = recording(only_2026(app) if only_modern else app)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    sock.setblocking(False)
    bound_port = sock.getsockname()[1]

    # --certfile/--keyfile: serve https (uvicorn's TLS); otherwise plain http.
    config = uvicorn.Config(
        app, log_level=log_level.lower(), lifespan="on", ssl_certfile=certfile, ssl_keyfile=keyfile
    )
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
    parser.add_argument("--certfile", help="http only: serve https with this certificate chain (PEM)")
    parser.add_argument("--keyfile", help="http only: the private key (PEM) of --certfile")
    parser.add_argument("--only-2026", action="store_true", help="http only: refuse initialize, GET and DELETE")
    parser.add_argument("--fail-initialize", type=int, default=0, help="http only: 503 to the first N initialize")
    parser.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"])
    args = parser.parse_args()

    server = build_server(args.name, args.log_level)
    if args.transport == "stdio":
        server.run("stdio")
    else:
        asyncio.run(
            serve_http(
                server, args.port, args.log_level, args.certfile, args.keyfile, args.only_2026, args.fail_initialize
            )
        )


if __name__ == "__main__":
    main()
