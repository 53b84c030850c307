"""Conformance fixture upstream for mcpgw, built on the official Python SDK's low-level `Server`.

It implements every tool, resource, prompt and behaviour that the active server scenarios of
`@modelcontextprotocol/conformance` 0.1.16 expect, and those the 0.2.0-alpha.12 suite needs for
`--requirements 2026-07-28` (see SCENARIOS.md beside this file), plus the pending ones
(json-schema-2020-12, server-sse-polling, http-custom-header-server-validation) and a few
extras for gateway tests. The SDK server is dual-era: legacy sessions (initialize,
Mcp-Session-Id) and stateless 2026-07-28 requests on the same endpoint.

Usage:
    python fixture.py [--transport http] [--port PORT] [--no-event-store] [--retry-ms MS]
    python fixture.py --transport stdio

HTTP mode serves Streamable HTTP (stateful sessions) at http://127.0.0.1:PORT/mcp. With --port 0
(the default) the OS picks a free port; once the server accepts connections exactly one line
`LISTENING <port>` is printed to stderr (flushed), also for an explicit port. DNS rebinding
protection is on (the SDK's default for a loopback host): a Host/Origin other than
127.0.0.1 / localhost / [::1] gets HTTP 4xx.

By default an in-memory event store (bounded, --event-store-size events) makes SSE streams
resumable: every POST SSE stream starts with a priming event (an `id:` and empty data, plus
`retry:` when --retry-ms is given) for clients speaking 2025-11-25, and a client can reconnect
with GET + Last-Event-ID. --no-event-store turns that off.

Fixtures (names and values as the suite expects them):
  tools      test_simple_text, test_image_content, test_audio_content, test_embedded_resource,
             test_multiple_content_types, test_tool_with_logging, test_error_handling,
             test_tool_with_progress, test_sampling(prompt), test_elicitation(message),
             test_elicitation_sep1034_defaults, test_elicitation_sep1330_enums,
             json_schema_2020_12_tool (SEP-1613 and SEP-2106 keywords), test_reconnection
  2026-07-28 test_input_required_result_{elicitation, sampling, list_roots, request_state,
             multiple_inputs, multi_round, tampered_state, capabilities}: ask the client
               (elicitation / sampling / roots/list) through Dialogue: mid-call on a legacy
               session, an input_required result (with a sealed requestState) on a 2026-07-28
               request; -32021 when the client lacks the capability they need
             test_missing_capability (-32021 without `sampling`), test_streaming_elicitation,
             test_logging_tool (server-stateless's diagnostic tools),
             test_x_mcp_header(region): `x-mcp-header: Region` (Mcp-Param-Region, checked by the SDK)
  extras     test_long_running_operation(steps, step_seconds): progress every step, cancellable
             test_client_capabilities: the capabilities the request (2026-07-28) or its session
               (legacy) declared, as JSON, and the era
             test_notify_resource_updated(uri): notifications/resources/updated to every
               session subscribed to uri (on their GET streams)
             test_toggle_dynamic_tool: adds/removes test_dynamic_tool and sends
               notifications/tools/list_changed to every session (and every listen stream)
             test_trigger_tool_change, test_trigger_prompt_change: the 2026-07-28 suite's
               hooks (the first is the toggle; the second toggles test_dynamic_prompt)
  resources  test://static-text, test://static-binary, test://watched-resource (subscribable),
             template test://template/{id}/data
  prompts    test_simple_prompt, test_prompt_with_arguments(arg1, arg2),
             test_prompt_with_embedded_resource(resourceUri), test_prompt_with_image,
             test_input_required_result_prompt (asks for context first, like the tools above)
  other      logging/setLevel (per session; log notifications below the level are dropped; the
               level is "warning" until the session sets one, or --default-log-level),
             completion/complete for test_prompt_with_arguments and the template's {id},
             resources/subscribe + unsubscribe (per session), ping, subscriptions/listen
             (2026-07-28), requestState sealing (the SDK's RequestStateBoundary, a key per
             process: a modified or foreign requestState is answered -32602).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextvars
import io
import itertools
import json
import re
import socket
import struct
import sys
import warnings
import wave
import zlib
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from typing import Any

import mcp_types as types
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.request_state import RequestStateBoundary, RequestStateSecurity
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, PromptsListChanged, ToolsListChanged
from mcp.shared.message import ServerMessageMetadata
from mcp.server.streamable_http import EventCallback, EventId, EventMessage, EventStore, StreamId
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp_types.jsonrpc import INVALID_PARAMS, MISSING_REQUIRED_CLIENT_CAPABILITY
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

# Logging, sampling and resources/subscribe are deprecated for 2026-07-28 but are exactly what the
# 2025-era conformance scenarios exercise: keep stderr quiet about it.
warnings.filterwarnings("ignore", category=MCPDeprecationWarning)

SERVER_NAME = "mcpgw-conformance-fixture"
SERVER_VERSION = "0.1.0"
RESOURCE_NOT_FOUND = -32002  # the spec's error code for an unknown resource URI

LOG_LEVELS = ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"]
# Until a session sends logging/setLevel only warning and above is sent. The tools-call-with-logging
# scenario logs at info after setting "debug", so through a gateway it passes only when the
# client's logging/setLevel reached the same upstream session as the tool call.
DEFAULT_LOG_LEVEL = "warning"


# ---------------------------------------------------------------------------------------------
# Small binary payloads, generated here so that nothing is copied in.


def _png_1x1_red() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 1x1, 8-bit, truecolour
    pixels = zlib.compress(b"\x00\xff\x00\x00")  # filter byte 0, then one red RGB pixel
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def _wav_short_silence() -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(8000)
        w.writeframes(b"\x80" * 800)  # 0.1 s of 8-bit silence
    return buf.getvalue()


PNG_B64 = base64.b64encode(_png_1x1_red()).decode("ascii")
WAV_B64 = base64.b64encode(_wav_short_silence()).decode("ascii")


# ---------------------------------------------------------------------------------------------
# Resumability: a bounded in-memory event store.


# The SDK hands one event store to every session and uses the JSON-RPC request id as the stream
# id, so stream ids repeat across sessions (every client has a request 1). To replay only the
# session's own events, each event is stamped with the HTTP session it was stored for: an ASGI
# wrapper puts a per-request holder in a context variable (filled from the request's
# Mcp-Session-Id, or from the response header for the opening initialize request); the session's
# message router task is started while serving that opening request and inherits its context.
_OWNER: contextvars.ContextVar[dict[str, str | None] | None] = contextvars.ContextVar("fixture_owner", default=None)


def _same_owner(a: dict[str, str | None] | None, b: dict[str, str | None] | None) -> bool:
    return a is b or (a is not None and b is not None and a["sid"] is not None and a["sid"] == b["sid"])


class SessionOwnerASGI:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sid = next((v.decode("latin-1") for k, v in scope["headers"] if k.lower() == b"mcp-session-id"), None)
        owner: dict[str, str | None] = {"sid": sid}

        async def send_and_learn(message: Any) -> None:
            if owner["sid"] is None and message["type"] == "http.response.start":
                for key, value in message.get("headers", []):
                    if key.lower() == b"mcp-session-id":
                        owner["sid"] = value.decode("latin-1")
            await send(message)

        token = _OWNER.set(owner)
        try:
            await self.app(scope, receive, send_and_learn)
        finally:
            _OWNER.reset(token)


class MemoryEventStore(EventStore):
    """Keeps the last `max_events` SSE events of all sessions; ids are `<stream>:<seq>`."""

    def __init__(self, max_events: int) -> None:
        self._events: deque[tuple[EventId, Any, StreamId, types.JSONRPCMessage | None]] = deque(maxlen=max_events)
        self._seq = itertools.count(1)

    async def store_event(self, stream_id: StreamId, message: types.JSONRPCMessage | None) -> EventId:
        event_id = f"{stream_id}:{next(self._seq)}"
        self._events.append((event_id, _OWNER.get(), stream_id, message))
        return event_id

    async def replay_events_after(self, last_event_id: EventId, send_callback: EventCallback) -> StreamId | None:
        events = list(self._events)
        index = next((i for i, event in enumerate(events) if event[0] == last_event_id), None)
        if index is None:
            return None
        _, owner, stream_id, _ = events[index]
        if not _same_owner(owner, _OWNER.get()):
            return None  # another session's event id
        for event_id, other, sid, message in events[index + 1 :]:
            if sid == stream_id and message is not None and _same_owner(other, owner):
                await send_callback(EventMessage(message, event_id))
        return stream_id


# ---------------------------------------------------------------------------------------------
# Per-session state (log level, subscriptions) and the sessions seen, for broadcasts.


class SessionState:
    def __init__(self, log_level: str) -> None:
        self.log_level = log_level
        self.subscriptions: set[str] = set()
        self.session: Any = None  # the latest ServerSession proxy; its standalone channel is per connection


MAX_SESSIONS = 1000  # state of the least recently used sessions beyond this is forgotten


class Fixture:
    def __init__(self) -> None:
        self.sessions: OrderedDict[str, SessionState] = OrderedDict()
        self.dynamic_tool_enabled = False
        self.dynamic_prompt_enabled = False
        self.watched_updates = 0
        self.default_log_level = DEFAULT_LOG_LEVEL

    def state(self, ctx: Any) -> SessionState:
        request = getattr(ctx, "request", None)
        headers = getattr(request, "headers", None)
        key = headers.get("mcp-session-id") if headers is not None else None
        if key is None:
            key = "stdio" if request is None else "no-session"
        st = self.sessions.get(key)
        if st is None:
            st = self.sessions[key] = SessionState(self.default_log_level)
            while len(self.sessions) > MAX_SESSIONS:
                self.sessions.popitem(last=False)
        else:
            self.sessions.move_to_end(key)
        st.session = ctx.session
        return st

    async def log(self, ctx: Any, level: str, message: str) -> None:
        # A 2026-07-28 request names its level in `_meta` (the SDK drops what is below it);
        # a legacy session has the level of its logging/setLevel.
        if not _modern(ctx) and LOG_LEVELS.index(level) < LOG_LEVELS.index(self.state(ctx).log_level):
            return
        await ctx.session.send_log_message(level, message, logger="fixture", related_request_id=ctx.request_id)


FIX = Fixture()


def text(value: str) -> types.TextContent:
    return types.TextContent(type="text", text=value)


def image() -> types.ImageContent:
    return types.ImageContent(type="image", data=PNG_B64, mime_type="image/png")


def require(args: dict[str, Any], name: str) -> Any:
    if name not in args or args[name] is None:
        raise MCPError(code=INVALID_PARAMS, message=f"missing required argument: {name}")
    return args[name]


# ---------------------------------------------------------------------------------------------
# Tools

NO_ARGS: dict[str, Any] = {"type": "object", "properties": {}}

ToolFn = Callable[[Any, dict[str, Any]], Awaitable[types.CallToolResult]]
TOOLS: dict[str, tuple[types.Tool, ToolFn]] = {}


def tool(name: str, description: str, input_schema: dict[str, Any] | None = None) -> Callable[[ToolFn], ToolFn]:
    def register(fn: ToolFn) -> ToolFn:
        spec = types.Tool(name=name, description=description, input_schema=input_schema or NO_ARGS)
        TOOLS[name] = (spec, fn)
        return fn

    return register


def result(*content: Any, is_error: bool = False) -> types.CallToolResult:
    return types.CallToolResult(content=list(content), is_error=is_error)


@tool("test_simple_text", "Returns a simple text response.")
async def _simple_text(ctx: Any, args: dict[str, Any]) -> types.CallToolResult:
    return result(text("This is a simple text response for testing."))


@tool("test_image_content", "Returns a 1x1 red PNG image.")
async def _image_content(ctx: Any, args: dict[str, Any]) -> types.CallToolResult:
    return result(image())


@tool("test_audio_content", "Returns a short WAV audio clip.")
async def _audio_content(ctx: Any, args: dict[str, Any]) -> types.CallToolResult:
    return result(types.AudioContent(type="audio", data=WAV_B64, mime_type="audio/wav"))


@tool("test_embedded_resource", "Returns an embedded text resource.")
async def _embedded_resource(ctx: Any, args: dict[str, Any]) -> types.CallToolResult:
    res = types.TextResourceContents(
        uri="test://embedded-resource", mime_type="text/plain", text="This is an embedded resource content."
    )
    return result(types.EmbeddedResource(type="resource", resource=res))


@tool("test_multiple_content_types", "Returns text, image and embedded resource content together.")
async def _multiple_content_types(ctx: Any, args: dict[str, Any]) -> types.CallToolResult:
    res = types.TextResourceContents(
        uri="test://mixed-content-resource",
        mime_type="application/json",
        text=json.dumps({"test": "data", "value": 123}, separators=(",", ":")),
    )
    return result(text("Multiple content types test:"), image(), types.EmbeddedResource(type="resource", resource=res))


@tool("test_tool_with_logging", "Sends three info log notifications while it runs.")
async def _tool_with_logging(ctx: Any, args: dict[str, Any]) -> types.CallToolResult:
    await FIX.log(ctx, "info", "Tool execution started")
    await asyncio.sleep(0.05)
    await FIX.log(ctx, "info", "Tool processing data")
    await asyncio.sleep(0.05)
    await FIX.log(ctx, "info", "Tool execution completed")
    return result(text("Tool with logging executed successfully"))


@tool("test_error_handling", "Always returns a tool error (isError: true).")
async def _error_handling(ctx: Any, args: dict[str, Any]) -> types.CallToolResult:
    return result(text("This tool intentionally returns an error for testing"), is_error=True)


@tool("test_tool_with_progress", "Reports progress 0, 50, 100 of 100 when the request has a progressToken.")
async def _tool_with_progress(ctx: Any, args: dict[str, Any]) -> types.CallToolResult:
    for step, progress in enumerate((0, 50, 100)):
        if step:
            await asyncio.sleep(0.05)
        await ctx.session.report_progress(progress, 100, f"step {step + 1} of 3")
    return result(text("Tool with progress executed successfully"))


def _modern(ctx: Any) -> bool:
    return getattr(ctx, "protocol_version", None) in MODERN_PROTOCOL_VERSIONS


class NeedInput(Exception):
    """A 2026-07-28 request needs the client's input: answered with an input-required result."""

    def __init__(self, requests: dict[str, Any], state: str | None = None) -> None:
        super().__init__(", ".join(requests))
        self.result = types.InputRequiredResult(input_requests=requests, request_state=state)


_MISSING = object()
STATE_TAG = "mcpgw-fixture/1"  # marks the requestState plaintexts this fixture minted


class Dialogue:
    """Asks the client things during one request, in the request's own era.

    Legacy: each question is a request to the client on the call's stream, answered while the
    call stays open. 2026-07-28: the questions not answered yet become one input-required result
    (NeedInput); the answers given so far travel in `requestState` (JSON, sealed and verified by
    the SDK's RequestStateBoundary, so a handler only sees plaintext this fixture minted), the
    new ones in the retry's `inputResponses`. Unknown extra keys in `inputResponses` are ignored.
    Handlers written this way run the same in both eras.
    """

    def __init__(self, ctx: Any, *, require_state: bool = False) -> None:
        self.ctx = ctx
        self.modern = _modern(ctx)
        self.answers: dict[str, Any] = {}
        self.had_state = False
        self.responses: dict[str, Any] = {}
        if not self.modern:
            return
        params = ctx.params or {}
        raw = params.get("inputResponses")
        if raw is not None and not isinstance(raw, dict):
            raise MCPError(code=INVALID_PARAMS, message="inputResponses must be an object")
        state = params.get("requestState")
        if isinstance(state, str):
            try:
                decoded = json.loads(state)
                if decoded.get("tag") != STATE_TAG or not isinstance(decoded.get("answers"), dict):
                    raise ValueError(state)
            except (ValueError, AttributeError):
                raise MCPError(code=INVALID_PARAMS, message="requestState was not minted by this server") from None
            self.answers = decoded["answers"]
            self.had_state = True
        # A tool that insists on the state round trip treats a retry without it as a fresh start.
        if raw and (self.had_state or not require_state):
            self.responses = raw

    def state(self) -> str:
        return json.dumps({"tag": STATE_TAG, "answers": self.answers}, separators=(",", ":"))

    async def ask(self, key: str, request: Any, answer_type: Any) -> Any:
        return (await self.ask_all({key: (request, answer_type)}))[key]

    async def ask_all(self, questions: dict[str, tuple[Any, Any]]) -> dict[str, Any]:
        """Ask every question (key -> (request, answer type)); returns key -> typed answer."""
        out: dict[str, Any] = {}
        if not self.modern:
            meta = ServerMessageMetadata(related_request_id=self.ctx.request_id)
            for key, (request, answer_type) in questions.items():
                out[key] = await self.ctx.session.send_request(request, answer_type, metadata=meta)
            return out
        missing: dict[str, Any] = {}
        for key, (request, answer_type) in questions.items():
            raw = self.answers.get(key, self.responses.get(key, _MISSING))
            if raw is _MISSING:
                missing[key] = request
                continue
            try:
                out[key] = answer_type.model_validate(raw)
            except ValidationError:
                raise MCPError(
                    code=INVALID_PARAMS, message=f"inputResponses[{key!r}] is not a valid {request.method} result"
                ) from None
            self.answers[key] = raw
        if missing:
            raise NeedInput(missing, self.state())
        return out


async def ask_client(ctx: Any, key: str, request: Any, answer_type: Any) -> Any:
    """Ask the client one thing mid-call, in the request's own era (see Dialogue)."""
    return await Dialogue(ctx).ask(key, request, answer_type)


def require_capability(ctx: Any, capability: str) -> None:
    """-32021 (MissingRequiredClientCapability) unless the client declared `capability`."""
    if not _client_has(ctx, capability):
        raise MCPError(
            code=MISSING_REQUIRED_CLIENT_CAPABILITY,
            message=f"This request needs the client capability '{capability}'",
            data={"requiredCapabilities": {capability: {}}},
        )


def _client_has(ctx: Any, capability: str) -> bool:
    caps = ctx.session.client_capabilities
    return caps is not None and getattr(caps, capability, None) is not None


@tool(
    "test_sampling",
    "Asks the client's LLM (sampling/createMessage) to answer the prompt.",
    {
        "type": "object",
        "properties": {"prompt": {"type": "string", "description": "The prompt to send to the LLM"}},
        "required": ["prompt"],
    },
)
async def _sampling(ctx: Any, args: dict[str, Any]) -> types.CallToolResult:
    prompt = require(args, "prompt")
    if not _client_has(ctx, "sampling"):
        return result(text("The client does not support sampling"), is_error=True)
    request = types.CreateMessageRequest(
        params=types.CreateMessageRequestParams(
            messages=[types.SamplingMessage(role="user", content=text(str(prompt)))], max_tokens=100
        )
    )
    answer = await ask_client(ctx, "sampling", request, types.CreateMessageResult)
    content = answer.content
    answer_text = getattr(content, "text", None) or json.dumps(content.model_dump(mode="json", by_alias=True))
    return result(text(f"LLM response: {answer_text}"))


@tool(
    "test_elicitation",
    "Asks the user (elicitation/create) for a username and an email address.",
    {
        "type": "object",
        "properties": {"message": {"type": "string", "description": "The message to show the user"}},
        "required": ["message"],
    },
)
async def _elicitation(ctx: Any, args: dict[str, Any]) -> types.CallToolResult:
    message = require(args, "message")
    if not _client_has(ctx, "elicitation"):
        return result(text("The client does not support elicitation"), is_error=True)
    schema = {
        "type": "object",
        "properties": {
            "username": {"type": "string", "description": "User's response"},
            "email": {"type": "string", "description": "User's email address"},
        },
        "required": ["username", "email"],
    }
    answer = await _elicit(ctx, str(message), schema)
    return result(text(f"User response: action={answer.action}, content={json.dumps(answer.content)}"))


async def _elicit(ctx: Any, message: str, schema: dict[str, Any]) -> types.ElicitResult:
    request = types.ElicitRequest(params=types.ElicitRequestFormParams(message=message, requested_schema=schema))
    return await ask_client(ctx, "elicitation", request, types.ElicitResult)


async def _elicit_and_report(ctx: Any, message: str, schema: dict[str, Any]) -> types.CallToolResult:
    if not _client_has(ctx, "elicitation"):
        return result(text("The client does not support elicitation"), is_error=True)
    answer = await _elicit(ctx, message, schema)
    return result(text(f"Elicitation completed: action={answer.action}, content={json.dumps(answer.content)}"))


@tool("test_elicitation_sep1034_defaults", "Elicitation whose schema has a default for every primitive type.")
async def _elicitation_defaults(ctx: Any, args: dict[str, Any]) -> types.CallToolResult:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "User name", "default": "John Doe"},
            "age": {"type": "integer", "description": "User age", "default": 30},
            "score": {"type": "number", "description": "User score", "default": 95.5},
            "status": {
                "type": "string",
                "description": "User status",
                "enum": ["active", "inactive", "pending"],
                "default": "active",
            },
            "verified": {"type": "boolean", "description": "Verification status", "default": True},
        },
        "required": [],
    }
    return await _elicit_and_report(ctx, "Please review your profile; the defaults are prefilled", schema)


@tool("test_elicitation_sep1330_enums", "Elicitation whose schema uses all five enum shapes.")
async def _elicitation_enums(ctx: Any, args: dict[str, Any]) -> types.CallToolResult:
    schema = {
        "type": "object",
        "properties": {
            "untitledSingle": {
                "type": "string",
                "description": "Pick one (untitled)",
                "enum": ["option1", "option2", "option3"],
            },
            "titledSingle": {
                "type": "string",
                "description": "Pick one (titled)",
                "oneOf": [
                    {"const": "value1", "title": "First Option"},
                    {"const": "value2", "title": "Second Option"},
                    {"const": "value3", "title": "Third Option"},
                ],
            },
            "legacyEnum": {
                "type": "string",
                "description": "Pick one (legacy enumNames)",
                "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"],
            },
            "untitledMulti": {
                "type": "array",
                "description": "Pick several (untitled)",
                "items": {"type": "string", "enum": ["option1", "option2", "option3"]},
            },
            "titledMulti": {
                "type": "array",
                "description": "Pick several (titled)",
                "items": {
                    "anyOf": [
                        {"const": "value1", "title": "First Choice"},
                        {"const": "value2", "title": "Second Choice"},
                        {"const": "value3", "title": "Third Choice"},
                    ]
                },
            },
        },
        "required": [],
    }
    return await _elicit_and_report(ctx, "Please make your choices", schema)


# The 0.1.16 suite checks $schema, $defs.address and additionalProperties: false; the 0.2.x suite
# also wants SEP-2106 vocabulary kept: $anchor in $defs.address, allOf with a nested anyOf, and
# if/then/else (a phone when contactMethod is "phone", else an email).
@tool(
    "json_schema_2020_12_tool",
    "Tool with JSON Schema 2020-12 features",
    {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {
            "address": {
                "$anchor": "addressDef",
                "type": "object",
                "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
            }
        },
        "properties": {
            "name": {"type": "string"},
            "address": {"$ref": "#/$defs/address"},
            "contactMethod": {"type": "string", "enum": ["phone", "email"]},
            "phone": {"type": "string"},
            "email": {"type": "string"},
        },
        "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
        "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
        "then": {"required": ["phone"]},
        "else": {"required": ["email"]},
        "additionalProperties": False,
    },
)
async def _json_schema_2020_12(ctx: Any, args: dict[str, Any]) -> types.CallToolResult:
    return result(text(f"Received: {json.dumps(args, sort_keys=True)}"))


@tool("test_reconnection", "Closes its SSE stream mid-call; the result arrives after the client reconnects.")
async def _reconnection(ctx: Any, args: dict[str, Any]) -> types.CallToolResult:
    if ctx.close_sse_stream is not None:  # only with an event store and a 2025-11-25+ client
        await asyncio.sleep(0.05)
        await ctx.close_sse_stream()
        await asyncio.sleep(0.3)
    return result(text("Reconnection test completed successfully"))


# The 2026-07-28 suite's fixtures (0.2.0-alpha.12). Every question goes through Dialogue, so the
# same tool asks mid-call on a legacy session and answers input_required on a 2026-07-28 request.


def _elicitation_request(message: str, field: str, field_type: str) -> types.ElicitRequest:
    schema = {"type": "object", "properties": {field: {"type": field_type}}, "required": [field]}
    return types.ElicitRequest(params=types.ElicitRequestFormParams(message=message, requested_schema=schema))


def _sampling_request(prompt: str, max_tokens: int) -> types.CreateMessageRequest:
    return types.CreateMessageRequest(
        params=types.CreateMessageRequestParams(
            messages=[types.SamplingMessage(role="user", content=text(prompt))], max_tokens=max_tokens
        )
    )


def _roots_request() -> types.ListRootsRequest:
    return types.ListRootsRequest()


def _accepted(answer: types.ElicitResult, field: str) -> str:
    content = answer.content or {}
    return str(content.get(field)) if answer.action == "accept" and field in content else f"<{answer.action}>"


def _sampled_text(answer: types.CreateMessageResult) -> str:
    content = answer.content
    return getattr(content, "text", None) or json.dumps(content.model_dump(mode="json", by_alias=True))


def _root_uris(answer: types.ListRootsResult) -> str:
    return ", ".join(str(root.uri) for root in answer.roots) or "(none)"


@tool("test_input_required_result_elicitation", "Asks for the user's name (elicitation, key user_name), then greets.")
async def _ir_elicitation(ctx: Any, args: dict[str, Any]) -> types.CallToolResult:
    require_capability(ctx, "elicitation")
    answer = await Dialogue(ctx).ask(
        "user_name", _elicitation_request("What is your name?", "name", "string"), types.ElicitResult
    )
    return result(text(f"Hello, {_accepted(answer, 'name')}!"))


@tool("test_input_required_result_sampling", "Asks the client's LLM (sampling, key capital_question) a question.")
async def _ir_sampling(ctx: Any, args: dict[str, Any]) -> types.CallToolResult:
    require_capability(ctx, "sampling")
    answer = await Dialogue(ctx).ask(
        "capital_question", _sampling_request("What is the capital of France?", 100), types.CreateMessageResult
    )
    return result(text(f"LLM answered: {_sampled_text(answer)}"))


@tool("test_input_required_result_list_roots", "Asks the client for its roots (roots/list, key client_roots).")
async def _ir_list_roots(ctx: Any, args: dict[str, Any]) -> types.CallToolResult:
    require_capability(ctx, "roots")
    answer = await Dialogue(ctx).ask("client_roots", _roots_request(), types.ListRootsResult)
    return result(text(f"Client roots: {_root_uris(answer)}"))


async def _confirm_with_state(ctx: Any) -> types.CallToolResult:
    require_capability(ctx, "elicitation")
    dialogue = Dialogue(ctx, require_state=True)
    answer = await dialogue.ask("confirm", _elicitation_request("Please confirm", "ok", "boolean"), types.ElicitResult)
    how = "requestState verified" if dialogue.had_state else "answered mid-call on the legacy session"
    return result(text(f"state-ok: ok={_accepted(answer, 'ok')} ({how})"))


@tool(
    "test_input_required_result_request_state",
    "Asks for a confirmation (elicitation, key confirm) and needs its requestState echoed; says state-ok.",
)
async def _ir_request_state(ctx: Any, args: dict[str, Any]) -> types.CallToolResult:
    return await _confirm_with_state(ctx)


@tool(
    "test_input_required_result_tampered_state",
    "Like test_input_required_result_request_state; a modified requestState is rejected with -32602.",
)
async def _ir_tampered_state(ctx: Any, args: dict[str, Any]) -> types.CallToolResult:
    return await _confirm_with_state(ctx)


@tool(
    "test_input_required_result_multiple_inputs",
    "Asks three things at once: elicitation (user_name), sampling (greeting), roots/list (client_roots).",
)
async def _ir_multiple_inputs(ctx: Any, args: dict[str, Any]) -> types.CallToolResult:
    for capability in ("elicitation", "sampling", "roots"):
        require_capability(ctx, capability)
    answers = await Dialogue(ctx).ask_all(
        {
            "user_name": (_elicitation_request("What is your name?", "name", "string"), types.ElicitResult),
            "greeting": (_sampling_request("Generate a greeting", 50), types.CreateMessageResult),
            "client_roots": (_roots_request(), types.ListRootsResult),
        }
    )
    name = _accepted(answers["user_name"], "name")
    greeting = _sampled_text(answers["greeting"])
    return result(text(f"name={name}; greeting={greeting}; roots={_root_uris(answers['client_roots'])}"))


@tool(
    "test_input_required_result_multi_round",
    "Two rounds of elicitation (step1: name, then step2: favourite colour); requestState changes per round.",
)
async def _ir_multi_round(ctx: Any, args: dict[str, Any]) -> types.CallToolResult:
    require_capability(ctx, "elicitation")
    dialogue = Dialogue(ctx)
    first = await dialogue.ask(
        "step1", _elicitation_request("Step 1: What is your name?", "name", "string"), types.ElicitResult
    )
    second = await dialogue.ask(
        "step2", _elicitation_request("Step 2: What is your favorite color?", "color", "string"), types.ElicitResult
    )
    return result(text(f"{_accepted(first, 'name')} likes {_accepted(second, 'color')}"))


@tool(
    "test_input_required_result_capabilities",
    "Asks only what the client can answer: elicitation, sampling and roots/list as declared.",
)
async def _ir_capabilities(ctx: Any, args: dict[str, Any]) -> types.CallToolResult:
    questions: dict[str, tuple[Any, Any]] = {}
    if _client_has(ctx, "elicitation"):
        questions["user_name"] = (_elicitation_request("What is your name?", "name", "string"), types.ElicitResult)
    if _client_has(ctx, "sampling"):
        questions["greeting"] = (_sampling_request("Generate a greeting", 50), types.CreateMessageResult)
    if _client_has(ctx, "roots"):
        questions["client_roots"] = (_roots_request(), types.ListRootsResult)
    if not questions:
        return result(text("The client declared none of elicitation, sampling, roots: nothing to ask"))
    answers = await Dialogue(ctx).ask_all(questions)
    return result(text(f"Answered: {', '.join(sorted(answers))}"))


@tool("test_missing_capability", "Needs the client's sampling capability: -32021 when it was not declared.")
async def _missing_capability(ctx: Any, args: dict[str, Any]) -> types.CallToolResult:
    require_capability(ctx, "sampling")
    answer = await Dialogue(ctx).ask("sampling", _sampling_request("Say hello", 20), types.CreateMessageResult)
    return result(text(f"LLM response: {_sampled_text(answer)}"))


@tool(
    "test_streaming_elicitation",
    "Asks the user (elicitation): input_required on a 2026-07-28 request, never a request on its stream.",
)
async def _streaming_elicitation(ctx: Any, args: dict[str, Any]) -> types.CallToolResult:
    require_capability(ctx, "elicitation")
    answer = await Dialogue(ctx).ask(
        "user_input", _elicitation_request("Please enter a value", "value", "string"), types.ElicitResult
    )
    return result(text(f"Elicitation completed: value={_accepted(answer, 'value')}"))


@tool(
    "test_logging_tool",
    "Logs three info messages: sent only at the request's _meta log level (2026-07-28) or the session's level.",
)
async def _logging_tool(ctx: Any, args: dict[str, Any]) -> types.CallToolResult:
    return await _tool_with_logging(ctx, args)


@tool(
    "test_x_mcp_header",
    "Echoes its region argument, which clients mirror into the Mcp-Param-Region header.",
    {
        "type": "object",
        "properties": {
            "region": {"type": "string", "description": "A region name", "x-mcp-header": "Region"},
        },
        "required": ["region"],
    },
)
async def _x_mcp_header(ctx: Any, args: dict[str, Any]) -> types.CallToolResult:
    return result(text(f"region={require(args, 'region')}"))


# Extras for gateway tests (no conformance scenario uses them).


@tool(
    "test_long_running_operation",
    "Reports progress after each step; cancellable with notifications/cancelled.",
    {
        "type": "object",
        "properties": {
            "steps": {"type": "integer", "description": "Number of steps (default 5)"},
            "step_seconds": {"type": "number", "description": "Seconds per step (default 0.2)"},
        },
    },
)
async def _long_running(ctx: Any, args: dict[str, Any]) -> types.CallToolResult:
    steps = int(args.get("steps", 5))
    step_seconds = float(args.get("step_seconds", 0.2))
    for step in range(1, steps + 1):
        await asyncio.sleep(step_seconds)
        await ctx.session.report_progress(step, steps, f"step {step} of {steps}")
    return result(text(f"Long running operation completed: {steps} steps"))


@tool(
    "test_notify_resource_updated",
    "Sends notifications/resources/updated for uri to every session subscribed to it.",
    {
        "type": "object",
        "properties": {"uri": {"type": "string", "description": "Resource URI (default test://watched-resource)"}},
    },
)
async def _notify_resource_updated(ctx: Any, args: dict[str, Any]) -> types.CallToolResult:
    uri = str(args.get("uri") or "test://watched-resource")
    FIX.state(ctx)
    if uri == "test://watched-resource":
        FIX.watched_updates += 1
    notified = 0
    for st in list(FIX.sessions.values()):
        if uri in st.subscriptions and st.session is not None:
            await st.session.send_resource_updated(uri)
            notified += 1
    return result(text(f"notified {notified} subscriber(s) of {uri}"))


@tool("test_client_capabilities", "Returns the client capabilities this request (or its session) declared, as JSON.")
async def _client_capabilities(ctx: Any, args: dict[str, Any]) -> types.CallToolResult:
    caps = ctx.session.client_capabilities
    declared = caps.model_dump(mode="json", by_alias=True, exclude_none=True) if caps is not None else None
    era = "2026-07-28" if _modern(ctx) else "legacy"
    return result(text(json.dumps({"era": era, "clientCapabilities": declared}, sort_keys=True)))


# 2026-07-28 clients hear of list changes on their subscriptions/listen streams.
LISTEN_BUS = InMemorySubscriptionBus()


@tool("test_toggle_dynamic_tool", "Adds or removes test_dynamic_tool and sends notifications/tools/list_changed.")
async def _toggle_dynamic_tool(ctx: Any, args: dict[str, Any]) -> types.CallToolResult:
    FIX.state(ctx)
    FIX.dynamic_tool_enabled = not FIX.dynamic_tool_enabled
    for st in list(FIX.sessions.values()):
        if st.session is not None:
            await st.session.send_tool_list_changed()
    await LISTEN_BUS.publish(ToolsListChanged())
    return result(text(f"test_dynamic_tool {'added' if FIX.dynamic_tool_enabled else 'removed'}"))


@tool("test_trigger_tool_change", "Adds or removes test_dynamic_tool and sends notifications/tools/list_changed.")
async def _trigger_tool_change(ctx: Any, args: dict[str, Any]) -> types.CallToolResult:
    return await _toggle_dynamic_tool(ctx, args)


@tool("test_trigger_prompt_change", "Adds or removes test_dynamic_prompt and sends notifications/prompts/list_changed.")
async def _trigger_prompt_change(ctx: Any, args: dict[str, Any]) -> types.CallToolResult:
    FIX.state(ctx)
    FIX.dynamic_prompt_enabled = not FIX.dynamic_prompt_enabled
    for st in list(FIX.sessions.values()):
        if st.session is not None:
            await st.session.send_prompt_list_changed()
    await LISTEN_BUS.publish(PromptsListChanged())
    return result(text(f"test_dynamic_prompt {'added' if FIX.dynamic_prompt_enabled else 'removed'}"))


DYNAMIC_TOOL = types.Tool(name="test_dynamic_tool", description="Present while toggled on.", input_schema=NO_ARGS)


async def _dynamic_tool(ctx: Any, args: dict[str, Any]) -> types.CallToolResult:
    return result(text("dynamic tool called"))


async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
    FIX.state(ctx)
    tools = [spec for spec, _ in TOOLS.values()]
    if FIX.dynamic_tool_enabled:
        tools.append(DYNAMIC_TOOL)
    return types.ListToolsResult(tools=tools)


async def call_tool(
    ctx: Any, params: types.CallToolRequestParams
) -> types.CallToolResult | types.InputRequiredResult:
    FIX.state(ctx)
    args = dict(params.arguments or {})
    if params.name == DYNAMIC_TOOL.name and FIX.dynamic_tool_enabled:
        return await _dynamic_tool(ctx, args)
    entry = TOOLS.get(params.name)
    if entry is None:
        raise MCPError(code=INVALID_PARAMS, message=f"Unknown tool: {params.name}")
    try:
        return await entry[1](ctx, args)
    except NeedInput as need:
        return need.result


# ---------------------------------------------------------------------------------------------
# Resources

STATIC_RESOURCES = [
    types.Resource(
        uri="test://static-text",
        name="static-text",
        description="A static text resource",
        mime_type="text/plain",
    ),
    types.Resource(
        uri="test://static-binary",
        name="static-binary",
        description="A static binary resource (1x1 PNG)",
        mime_type="image/png",
    ),
    types.Resource(
        uri="test://watched-resource",
        name="watched-resource",
        description="A resource that supports subscriptions",
        mime_type="text/plain",
    ),
]
TEMPLATE = types.ResourceTemplate(
    uri_template="test://template/{id}/data",
    name="template-data",
    description="Data for an id, substituted from the URI",
    mime_type="application/json",
)
TEMPLATE_RE = re.compile(r"^test://template/([^/]+)/data$")


def read(uri: str) -> types.TextResourceContents | types.BlobResourceContents:
    if uri == "test://static-text":
        return types.TextResourceContents(
            uri=uri, mime_type="text/plain", text="This is the content of the static text resource."
        )
    if uri == "test://static-binary":
        return types.BlobResourceContents(uri=uri, mime_type="image/png", blob=PNG_B64)
    if uri == "test://watched-resource":
        return types.TextResourceContents(
            uri=uri, mime_type="text/plain", text=f"Watched resource, updated {FIX.watched_updates} time(s)."
        )
    m = TEMPLATE_RE.match(uri)
    if m:
        ident = m.group(1)
        body = {"id": ident, "templateTest": True, "data": f"Data for ID: {ident}"}
        return types.TextResourceContents(uri=uri, mime_type="application/json", text=json.dumps(body))
    raise MCPError(code=RESOURCE_NOT_FOUND, message="Resource not found", data={"uri": uri})


async def list_resources(ctx: Any, params: Any) -> types.ListResourcesResult:
    FIX.state(ctx)
    return types.ListResourcesResult(resources=STATIC_RESOURCES)


async def list_resource_templates(ctx: Any, params: Any) -> types.ListResourceTemplatesResult:
    FIX.state(ctx)
    return types.ListResourceTemplatesResult(resource_templates=[TEMPLATE])


async def read_resource(ctx: Any, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
    FIX.state(ctx)
    return types.ReadResourceResult(contents=[read(str(params.uri))])


async def subscribe(ctx: Any, params: types.SubscribeRequestParams) -> types.EmptyResult:
    uri = str(params.uri)
    read(uri)  # unknown URIs are an error
    FIX.state(ctx).subscriptions.add(uri)
    return types.EmptyResult()


async def unsubscribe(ctx: Any, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
    FIX.state(ctx).subscriptions.discard(str(params.uri))
    return types.EmptyResult()


# ---------------------------------------------------------------------------------------------
# Prompts


def _arg(name: str, description: str) -> types.PromptArgument:
    return types.PromptArgument(name=name, description=description, required=True)


PROMPTS = [
    types.Prompt(name="test_simple_prompt", description="A simple prompt without arguments"),
    types.Prompt(
        name="test_prompt_with_arguments",
        description="A prompt with two required arguments",
        arguments=[_arg("arg1", "First test argument"), _arg("arg2", "Second test argument")],
    ),
    types.Prompt(
        name="test_prompt_with_embedded_resource",
        description="A prompt that embeds a resource",
        arguments=[_arg("resourceUri", "URI of the resource to embed")],
    ),
    types.Prompt(name="test_prompt_with_image", description="A prompt with image content"),
    types.Prompt(
        name="test_input_required_result_prompt",
        description="Asks the user for context (elicitation, key user_context) before it is rendered",
    ),
]


def user(content: Any) -> types.PromptMessage:
    return types.PromptMessage(role="user", content=content)


DYNAMIC_PROMPT = types.Prompt(name="test_dynamic_prompt", description="Present while toggled on.")


async def list_prompts(ctx: Any, params: Any) -> types.ListPromptsResult:
    FIX.state(ctx)
    prompts = PROMPTS + [DYNAMIC_PROMPT] if FIX.dynamic_prompt_enabled else PROMPTS
    return types.ListPromptsResult(prompts=prompts)


async def get_prompt(
    ctx: Any, params: types.GetPromptRequestParams
) -> types.GetPromptResult | types.InputRequiredResult:
    FIX.state(ctx)
    try:
        return await _get_prompt(ctx, params)
    except NeedInput as need:
        return need.result


async def _get_prompt(ctx: Any, params: types.GetPromptRequestParams) -> types.GetPromptResult:
    args = dict(params.arguments or {})
    name = params.name
    if name == "test_simple_prompt":
        messages = [user(text("This is a simple prompt for testing."))]
    elif name == "test_prompt_with_arguments":
        arg1, arg2 = require(args, "arg1"), require(args, "arg2")
        messages = [user(text(f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"))]
    elif name == "test_prompt_with_embedded_resource":
        uri = require(args, "resourceUri")
        res = types.TextResourceContents(uri=uri, mime_type="text/plain", text="Embedded resource content for testing.")
        messages = [
            user(types.EmbeddedResource(type="resource", resource=res)),
            user(text("Please process the embedded resource above.")),
        ]
    elif name == "test_prompt_with_image":
        messages = [user(image()), user(text("Please analyze the image above."))]
    elif name == "test_input_required_result_prompt":
        require_capability(ctx, "elicitation")
        request = _elicitation_request("What context should the prompt use?", "context", "string")
        answer = await Dialogue(ctx).ask("user_context", request, types.ElicitResult)
        messages = [user(text(f"Answer with this context in mind: {_accepted(answer, 'context')}"))]
    elif name == DYNAMIC_PROMPT.name and FIX.dynamic_prompt_enabled:
        messages = [user(text("dynamic prompt"))]
    else:
        raise MCPError(code=INVALID_PARAMS, message=f"Unknown prompt: {name}")
    return types.GetPromptResult(messages=messages)


# ---------------------------------------------------------------------------------------------
# Completion and logging

PROMPT_COMPLETIONS = {
    ("test_prompt_with_arguments", "arg1"): ["paris", "park", "party", "test1", "testValue1"],
    ("test_prompt_with_arguments", "arg2"): ["world", "wonder", "test2", "testValue2"],
}
TEMPLATE_COMPLETIONS = {("test://template/{id}/data", "id"): ["123", "124", "456", "789"]}


async def complete(ctx: Any, params: types.CompleteRequestParams) -> types.CompleteResult:
    FIX.state(ctx)
    ref, argument = params.ref, params.argument
    if isinstance(ref, types.PromptReference):
        candidates = PROMPT_COMPLETIONS.get((ref.name, argument.name), [])
    else:
        candidates = TEMPLATE_COMPLETIONS.get((ref.uri, argument.name), [])
    values = [c for c in candidates if c.startswith(argument.value)]
    return types.CompleteResult(completion=types.Completion(values=values, total=len(values), has_more=False))


async def set_logging_level(ctx: Any, params: types.SetLevelRequestParams) -> types.EmptyResult:
    FIX.state(ctx).log_level = params.level
    return types.EmptyResult()


# ---------------------------------------------------------------------------------------------


class FixtureServer(Server):
    """Declares tools.listChanged and prompts.listChanged (the toggle and trigger tools send
    them) on every transport."""

    def create_initialization_options(self, notification_options: Any = None, *args: Any, **kwargs: Any) -> Any:
        options = notification_options or NotificationOptions(tools_changed=True, prompts_changed=True)
        return super().create_initialization_options(options, *args, **kwargs)


def build_server() -> Server:
    server = FixtureServer(
        SERVER_NAME,
        version=SERVER_VERSION,
        instructions="Fixture upstream for the MCP conformance suite's server scenarios.",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_list_resource_templates=list_resource_templates,
        on_read_resource=read_resource,
        on_subscribe_resource=subscribe,
        on_unsubscribe_resource=unsubscribe,
        on_list_prompts=list_prompts,
        on_get_prompt=get_prompt,
        on_completion=complete,
        on_set_logging_level=set_logging_level,
        on_subscriptions_listen=ListenHandler(LISTEN_BUS),
    )
    # Seals the requestState of input_required results (AES-GCM under a key of this process) and
    # verifies every echo before a handler runs: a modified one is answered -32602.
    server.middleware.append(RequestStateBoundary(RequestStateSecurity.ephemeral(), default_audience=SERVER_NAME))
    return server


async def serve_http(server: Server, args: argparse.Namespace) -> None:
    import uvicorn

    event_store = None if args.no_event_store else MemoryEventStore(args.event_store_size)
    app: Any = server.streamable_http_app(host="127.0.0.1", event_store=event_store, retry_interval=args.retry_ms)
    if event_store is not None:
        app = SessionOwnerASGI(app)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(128)
    sock.setblocking(False)
    bound_port = sock.getsockname()[1]

    config = uvicorn.Config(app, log_level=args.log_level.lower(), lifespan="on")
    uv = uvicorn.Server(config)
    task = asyncio.create_task(uv.serve(sockets=[sock]))
    while not uv.started:
        if task.done():
            await task  # startup failed: surface the exception
            raise SystemExit("uvicorn exited before it started")
        await asyncio.sleep(0.01)
    print(f"LISTENING {bound_port}", file=sys.stderr, flush=True)
    await task


async def serve_stdio(server: Server) -> None:
    from mcp.server.stdio import stdio_server

    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transport", choices=["stdio", "http"], default="http")
    parser.add_argument("--port", type=int, default=0, help="http only; 0 = pick a free port (default)")
    parser.add_argument("--no-event-store", action="store_true", help="http only; no resumability, no priming events")
    parser.add_argument("--event-store-size", type=int, default=10000, help="events kept for replay (default 10000)")
    parser.add_argument("--retry-ms", type=int, default=None, help="http only; SSE retry field in priming events")
    parser.add_argument(
        "--default-log-level", default=DEFAULT_LOG_LEVEL, choices=LOG_LEVELS, help="MCP log level of a new session"
    )
    parser.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"])
    args = parser.parse_args()

    FIX.default_log_level = args.default_log_level
    server = build_server()
    if args.transport == "stdio":
        asyncio.run(serve_stdio(server))
    else:
        asyncio.run(serve_http(server, args))


if __name__ == "__main__":
    main()
