#!/usr/bin/env python3
"""Open N MCP sessions against a Streamable HTTP endpoint, leave them idle, report the
server's resident memory (VmRSS from /proc/PID/status) before and after.

Each session is `initialize` (the answer carries `Mcp-Session-Id`), then
`notifications/initialized` (answered 202), optionally one `tools/call` (so that a gateway
with per-client upstream sessions holds one upstream session for it too). Nothing else.

Two ways to hold the sessions:
  reuse (default)  a few keep-alive connections set up all sessions one after another and
                   are closed at the end: the sessions stay in the server's session map with
                   no connection. An MCP session is not tied to a connection.
  hold             every session gets its own TCP connection, left open and idle after
                   setup (the client that keeps its connection). Source addresses rotate over
                   --source-ips so that more than one ephemeral port range is available.

Standard library only; blocking sockets (the setup is sequential per connection, which is
fast enough: about 10-20k requests/s on loopback).

Output: one JSON object on stdout (and in --out).
"""

import argparse
import json
import os
import resource
import socket
import sys
import time
from urllib.parse import urlparse

PROTOCOL = "2025-06-18"


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


class Conn:
    """One blocking keep-alive HTTP/1.1 connection."""

    def __init__(self, host, port, path, source=None):
        self.host, self.port, self.path = host, port, path
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.settimeout(5.0)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if source:
            self.sock.bind((source, 0))
        self.sock.connect((host, port))
        self.buf = b""

    def request(self, body, session=None):
        head = [
            f"POST {self.path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            "Content-Type: application/json",
            "Accept: application/json, text/event-stream",
            f"Content-Length: {len(body)}",
        ]
        if session:
            head.append(f"Mcp-Session-Id: {session}")
            head.append(f"MCP-Protocol-Version: {PROTOCOL}")
        self.sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        return self._response()

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed by server")
        self.buf += chunk

    def _response(self):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        if "content-length" in headers:
            n = int(headers["content-length"])
            while len(self.buf) < n:
                self._fill()
            body, self.buf = self.buf[:n], self.buf[n:]
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                while b"\r\n" not in self.buf:
                    self._fill()
                size_line, self.buf = self.buf.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                while len(self.buf) < size + 2:
                    self._fill()
                body += self.buf[:size]
                self.buf = self.buf[size + 2 :]
                if size == 0:
                    break
        else:
            body = b""
        return status, headers, body

    def close(self):
        self.sock.close()


def init_body(i):
    return json.dumps(
        {
            "jsonrpc": "2.0",
            "id": i,
            "method": "initialize",
            "params": {
                "protocolVersion": PROTOCOL,
                "capabilities": {},
                "clientInfo": {"name": "perf-idle-sessions", "version": "1"},
            },
        },
        separators=(",", ":"),
    ).encode()


INITIALIZED = b'{"jsonrpc":"2.0","method":"notifications/initialized"}'


def call_body(tool):
    return json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": tool, "arguments": {"text": "x" * 64}},
        },
        separators=(",", ":"),
    ).encode()


def open_session(conn, i, call):
    status, headers, _ = conn.request(init_body(i))
    sid = headers.get("mcp-session-id")
    if status != 200 or not sid:
        raise RuntimeError(f"initialize: HTTP {status}, session {sid!r}")
    status, _, _ = conn.request(INITIALIZED, sid)
    if status not in (200, 202):
        raise RuntimeError(f"notifications/initialized: HTTP {status}")
    if call:
        status, _, body = conn.request(call, sid)
        if status != 200 or b'"result"' not in body:
            raise RuntimeError(f"tools/call: HTTP {status} {body[:200]!r}")
    return sid


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="MCP endpoint, http://HOST:PORT/PATH")
    ap.add_argument("--pid", type=int, required=True, help="server process whose VmRSS is read")
    ap.add_argument("--sessions", type=int, required=True)
    ap.add_argument("--mode", choices=["reuse", "hold"], default="reuse")
    ap.add_argument("--connections", type=int, default=4, help="reuse mode: keep-alive connections used in turn")
    ap.add_argument("--source-ips", default="127.0.0.1", help="hold mode: comma-separated local addresses to bind")
    ap.add_argument("--call", metavar="TOOL", help="also call TOOL once per session (text of 64 bytes)")
    ap.add_argument("--settle", type=float, default=2.0, help="seconds to wait before reading RSS after setup")
    ap.add_argument("--label", default="")
    ap.add_argument("--out")
    a = ap.parse_args()

    if a.mode == "hold":
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if a.sessions > soft - 64:
            print(json.dumps({"label": a.label, "mode": a.mode, "sessions_asked": a.sessions,
                              "error": f"hold mode needs one descriptor per session; RLIMIT_NOFILE is {soft}"}))
            return 2
    u = urlparse(a.url)
    host, port, path = u.hostname, u.port or 80, u.path or "/"
    call = call_body(a.call) if a.call else None

    time.sleep(0.5)
    before = rss_kib(a.pid)
    fds_before = fds(a.pid)
    t0 = time.monotonic()
    ok = errors = 0
    first_error = None
    held = []
    if a.mode == "reuse":
        conns = [Conn(host, port, path) for _ in range(a.connections)]
        for i in range(a.sessions):
            c = conns[i % len(conns)]
            try:
                open_session(c, i + 1, call)
                ok += 1
            except Exception as e:  # noqa: BLE001 - counted and reported
                errors += 1
                first_error = first_error or repr(e)
                if errors >= 100:
                    break
                conns[i % len(conns)] = Conn(host, port, path)
        for c in conns:
            c.close()
    else:
        ips = a.source_ips.split(",")
        for i in range(a.sessions):
            try:
                c = Conn(host, port, path, ips[i % len(ips)])
                open_session(c, i + 1, call)
                held.append(c)
                ok += 1
            except Exception as e:  # noqa: BLE001
                errors += 1
                first_error = first_error or repr(e)
                if errors >= 100:
                    break
    setup_s = time.monotonic() - t0
    time.sleep(a.settle)
    after = rss_kib(a.pid)
    fds_after = fds(a.pid)
    out = {
        "label": a.label,
        "mode": a.mode,
        "sessions_asked": a.sessions,
        "sessions_ok": ok,
        "errors": errors,
        "first_error": first_error,
        "call": a.call,
        "setup_s": round(setup_s, 2),
        "rss_before_kib": before,
        "rss_after_kib": after,
        "rss_delta_kib": after - before,
        "bytes_per_session": round((after - before) * 1024 / ok, 1) if ok else None,
        "server_fds_before": fds_before,
        "server_fds_after": fds_after,
    }
    for c in held:
        c.close()
    text = json.dumps(out)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")
    return 0 if errors == 0 else 3


if __name__ == "__main__":
    sys.exit(main())
