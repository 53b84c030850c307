//! The whole gateway in one process with no socket, for benchmarks: one worker's
//! [`Pipeline`] serving an in-memory client connection, and calling an in-memory MCP server
//! through the HTTP upstream code ([`MemoryUpstream`], parked in the worker's pool as a
//! [`Conn::Memory`](crate::upstream::pool::Conn)).
//!
//! A [`Harness`] call runs what a worker runs for a `tools/call` on an established
//! connection: the request's bytes are read by `transport::server`, go through every phase,
//! are written to the upstream as an HTTP request, the upstream's HTTP answer is read and
//! relayed, and the client's answer is written. Only the sockets are missing (and with them
//! the kernel's share of a call). The in-memory server answers from pre-built bytes, so its
//! own share is small; [`MemoryUpstream::answer`] is benchmarked alone to say how small.
//!
//! Compiled for tests and with the `bench` feature (`benches/call.rs`, `benches/alloc.rs`);
//! it never runs in the gateway.

use std::{
    cell::{Cell, RefCell},
    future::poll_fn,
    io,
    rc::Rc,
    sync::Arc,
    task::{Poll, Waker},
};

use anyhow::{anyhow, bail, Context as _};
use bytes::{Bytes, BytesMut};
use memchr::memmem;

use crate::{
    config::{Config, Overrides, Transport},
    mcp::UpstreamCatalog,
    net::Stream,
    pipeline::Pipeline,
    registry,
    state::Shared,
    transport::server,
    upstream::{self, pool::Conn, stdio::Supervisor},
};

/// The runtime a harness runs on: monoio's epoll driver with timers (no IO is done, so the
/// driver only serves the timers the gateway arms).
pub type Runtime = monoio::Runtime<monoio::time::TimeDriver<monoio::LegacyDriver>>;

/// A runtime for [`Harness`].
pub fn runtime() -> io::Result<Runtime> {
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
}

/// What a harness's calls carry.
#[derive(Clone, Debug)]
pub struct Options {
    /// Speak MCP 2026-07-28 (no session; `_meta` and routing headers on every request)
    /// rather than the legacy era on an initialized session.
    pub stateless: bool,
    /// Length of the `text` argument, bytes.
    pub payload_bytes: usize,
    /// Length of the text the server answers with, bytes.
    pub result_bytes: usize,
    /// Extra lines for `[gateway]` (e.g. `metrics = false`).
    pub gateway: String,
}

impl Default for Options {
    /// W1: 1 KiB each way, legacy era, metrics on.
    fn default() -> Self {
        Self {
            stateless: false,
            payload_bytes: 1024,
            result_bytes: 1024,
            gateway: String::new(),
        }
    }
}

/// One worker's gateway with an in-memory client connection and an in-memory upstream.
pub struct Harness {
    client: Client,
    /// A `tools/call` request, head and body, as the client sends it each time.
    call: Bytes,
    /// Requests the in-memory server has answered.
    served: Rc<Cell<u64>>,
    // Kept alive: the gateway's messages to its control plane go here, unread.
    _control: flume::Receiver<crate::state::ControlMsg>,
    _pipeline: Pipeline,
}

/// The name of the benchmark upstream, and its one tool's.
const UPSTREAM: &str = "fx";
const TOOL: &str = "echo";
/// The revision the legacy client speaks.
const LEGACY_VERSION: &str = "2025-06-18";

impl Harness {
    /// Builds the gateway (config, shared state, one worker's pipeline, the snapshot with
    /// the in-memory server's catalog) and connects the client; in the legacy era the client
    /// initializes its session first. Then makes one call, which sets up what later calls
    /// reuse. Must run inside a [`runtime`].
    pub async fn start(opts: &Options) -> anyhow::Result<Harness> {
        let toml = format!(
            "[gateway]\nlisten = \"127.0.0.1:0\"\nworkers = 1\nidle_timeout_ms = 600000\n{}\n\n\
             [[upstream]]\nname = \"{UPSTREAM}\"\ntransport = \"http\"\nurl = \"http://127.0.0.1:9/mcp\"\n",
            opts.gateway
        );
        let config = Arc::new(Config::parse(&toml, "bench", &Overrides::default())?);
        let (tx, control) = flume::unbounded();
        let shared = Arc::new(Shared::new(config.clone(), tx)?);
        let pipeline = Pipeline::new(shared.clone(), 0);
        let cfg = config
            .upstreams
            .first()
            .ok_or_else(|| anyhow!("no upstream"))?;
        let Transport::Http { addr, .. } = &cfg.transport else {
            bail!("the bench upstream is not HTTP");
        };
        // A plain upstream's connections are pooled under its address: the in-memory one
        // is found there by every call (and put back after it), so no socket is ever dialed.
        let served = Rc::new(Cell::new(0));
        let server = MemoryUpstream::new(opts.result_bytes, served.clone());
        pipeline
            .ctx()
            .caller
            .pool
            .put(addr, Conn::Memory(Box::new(server)), BytesMut::new(), 0);
        publish(&shared, cfg, &config)?;
        let client = Client::connect(&shared, &pipeline)?;
        let session = if opts.stateless {
            None
        } else {
            Some(client.initialize().await?)
        };
        let call = call_request(opts, session.as_deref());
        let h = Harness {
            client,
            call,
            served,
            _control: control,
            _pipeline: pipeline,
        };
        // The first call opens the upstream session it runs on (and for a 2026-07-28
        // client, learns the upstream's era): the harness starts in the steady state.
        h.call().await.context("the first call")?;
        Ok(h)
    }

    /// One `tools/call` through the gateway: the request written, the answer read whole.
    /// Fails unless the answer is a 200 with a result.
    pub async fn call(&self) -> anyhow::Result<()> {
        // The answer's prefix says whether it is a result (the gateway writes `"result"`
        // before the content); read no further, so checking costs little.
        let bad = self
            .client
            .exchange_with(&self.call, |status, body| {
                let head = &body[..body.len().min(64)];
                (status != 200 || memmem::find(head, b"\"result\"").is_none()).then(|| {
                    format!(
                        "call answered {status}: {}",
                        String::from_utf8_lossy(&body[..body.len().min(512)])
                    )
                })
            })
            .await?;
        match bad {
            Some(why) => bail!(why),
            None => Ok(()),
        }
    }

    /// Requests the in-memory server has answered so far (every call makes one).
    pub fn served(&self) -> u64 {
        self.served.get()
    }
}

/// Publishes a snapshot with the in-memory server's catalog (what the control plane would
/// build after fetching it).
fn publish(shared: &Shared, cfg: &crate::config::Upstream, config: &Config) -> anyhow::Result<()> {
    let supervisor = Supervisor::new(Arc::new(|_: &str, _| {}));
    let up = upstream::build(cfg, &supervisor);
    let tool = serde_json::json!({
        "name": TOOL,
        "description": "Answers with text",
        "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}},
    });
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("tools".into(), serde_json::json!({}));
    let catalog = UpstreamCatalog {
        capabilities,
        tools: vec![tool],
        ..Default::default()
    };
    let g = &config.gateway;
    let layout = registry::Layout {
        servers: &config.servers,
        disabled: &config.disabled_tools,
        separator: &g.separator,
        page_size: g.page_size,
        auth: config.auth.clone(),
    };
    let snap = registry::build(
        1,
        vec![up],
        &[Some(catalog)],
        &layout,
        registry::Guarded {
            policy: config.guard.clone(),
            report: Default::default(),
        },
    );
    if snap.tools.is_empty() {
        bail!("the bench catalog has no tool");
    }
    shared.snapshot.store(Arc::new(snap));
    Ok(())
}

/// The bytes of the client's `tools/call` (id 1 each time: the calls never overlap).
fn call_request(opts: &Options, session: Option<&str>) -> Bytes {
    let tool = format!("{UPSTREAM}__{TOOL}");
    let mut params = serde_json::json!({
        "name": tool,
        "arguments": {"text": "x".repeat(opts.payload_bytes), "result_bytes": opts.result_bytes},
    });
    let mut head = String::from(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\n",
    );
    match session {
        Some(id) => {
            head.push_str(&format!(
                "Mcp-Session-Id: {id}\r\nMCP-Protocol-Version: {LEGACY_VERSION}\r\n"
            ));
        }
        None => {
            let v = crate::mcp::version::STATELESS_VERSION;
            params["_meta"] = serde_json::json!({
                "io.modelcontextprotocol/protocolVersion": v,
                "io.modelcontextprotocol/clientCapabilities": {},
                "io.modelcontextprotocol/clientInfo": {"name": "mcpgw-bench", "version": "1"},
            });
            head.push_str(&format!(
                "MCP-Protocol-Version: {v}\r\nMcp-Method: tools/call\r\nMcp-Name: {tool}\r\n"
            ));
        }
    }
    let body =
        serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params})
            .to_string();
    head.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    Bytes::from(head)
}

// === the client's connection ===

/// Both directions of an in-memory connection, and who waits on each.
#[derive(Default)]
struct Wire {
    to_server: BytesMut,
    server: Option<Waker>,
    to_client: BytesMut,
    client: Option<Waker>,
    /// The client hung up.
    closed: bool,
}

/// The gateway's end of the client connection.
pub struct FrontConn(Rc<RefCell<Wire>>);

impl Stream for FrontConn {
    async fn read_more(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        poll_fn(|cx| {
            let mut w = self.0.borrow_mut();
            if !w.to_server.is_empty() {
                let n = w.to_server.len();
                buf.extend_from_slice(&w.to_server);
                w.to_server.clear();
                return Poll::Ready(Ok(n));
            }
            if w.closed {
                return Poll::Ready(Ok(0));
            }
            w.server = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    async fn readable(&mut self) -> io::Result<()> {
        poll_fn(|cx| {
            let mut w = self.0.borrow_mut();
            if !w.to_server.is_empty() || w.closed {
                return Poll::Ready(Ok(()));
            }
            w.server = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    async fn write_all(&mut self, buf: Bytes) -> io::Result<()> {
        let mut w = self.0.borrow_mut();
        w.to_client.extend_from_slice(&buf);
        if let Some(k) = w.client.take() {
            k.wake();
        }
        Ok(())
    }

    // As a socket with room: takes the whole reply at once.
    fn write_now(&mut self, parts: &crate::net::Segments) -> io::Result<usize> {
        let mut w = self.0.borrow_mut();
        for p in parts.iter() {
            w.to_client.extend_from_slice(p);
        }
        if let Some(k) = w.client.take() {
            k.wake();
        }
        Ok(parts.len())
    }

    // As a socket's writev: all parts arrive together.
    async fn write_segments(&mut self, parts: crate::net::Segments) -> io::Result<()> {
        let mut w = self.0.borrow_mut();
        for p in parts.iter() {
            w.to_client.extend_from_slice(p);
        }
        if let Some(k) = w.client.take() {
            k.wake();
        }
        Ok(())
    }

    async fn close(&mut self) {}

    fn peer_identity(&self) -> Option<&str> {
        None
    }
}

/// The client's end: writes requests, reads whole answers (with `Content-Length`).
struct Client(Rc<RefCell<Wire>>);

impl Drop for Client {
    fn drop(&mut self) {
        let mut w = self.0.borrow_mut();
        w.closed = true;
        if let Some(k) = w.server.take() {
            k.wake();
        }
    }
}

impl Client {
    /// A connection served by `pipeline` as a worker serves an accepted one.
    fn connect(shared: &Arc<Shared>, pipeline: &Pipeline) -> anyhow::Result<Client> {
        let wire = Rc::new(RefCell::new(Wire::default()));
        let ip = std::net::IpAddr::from([127, 0, 0, 1]);
        let permit = shared
            .limits
            .admit(ip, &Rc::new(Cell::new(0)))
            .map_err(|l| anyhow!("connection refused: {}", l.label()))?;
        monoio::spawn(server::serve(
            FrontConn(wire.clone()),
            pipeline.clone(),
            permit,
            ip,
        ));
        Ok(Client(wire))
    }

    /// Initializes a legacy session; its id.
    async fn initialize(&self) -> anyhow::Result<String> {
        let body = serde_json::json!({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": LEGACY_VERSION, "capabilities": {},
                       "clientInfo": {"name": "mcpgw-bench", "version": "1"}},
        })
        .to_string();
        let req = format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let (status, session, answer) = self.exchange(Bytes::from(req)).await?;
        let session = session.ok_or_else(|| {
            anyhow!(
                "initialize answered {status} without a session: {}",
                String::from_utf8_lossy(&answer)
            )
        })?;
        let body = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        let req = format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nMcp-Session-Id: {session}\r\n\
             MCP-Protocol-Version: {LEGACY_VERSION}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let (status, _, _) = self.exchange(Bytes::from(req)).await?;
        if status != 202 {
            bail!("notifications/initialized answered {status}");
        }
        Ok(session)
    }

    /// Writes one request and reads its answer: status, `Mcp-Session-Id` (only when the
    /// answer has one), body.
    async fn exchange(&self, req: Bytes) -> anyhow::Result<(u16, Option<String>, Bytes)> {
        self.send(&req);
        poll_fn(|cx| {
            self.poll_answer(cx, |status, session, body| {
                (
                    status,
                    session.map(|s| String::from_utf8_lossy(s).into_owned()),
                    Bytes::copy_from_slice(body),
                )
            })
        })
        .await
    }

    /// Writes one request and reads its answer, passing status and body to `check`;
    /// allocates nothing (the answer is read in place).
    async fn exchange_with<T>(
        &self,
        req: &[u8],
        check: impl Fn(u16, &[u8]) -> T,
    ) -> anyhow::Result<T> {
        self.send(req);
        poll_fn(|cx| self.poll_answer(cx, |status, _, body| check(status, body))).await
    }

    fn send(&self, req: &[u8]) {
        let mut w = self.0.borrow_mut();
        w.to_server.extend_from_slice(req);
        if let Some(k) = w.server.take() {
            k.wake();
        }
    }

    /// Ready with `f` of the first whole answer (which is then consumed), if it has come.
    fn poll_answer<T>(
        &self,
        cx: &mut std::task::Context<'_>,
        f: impl FnOnce(u16, Option<&[u8]>, &[u8]) -> T,
    ) -> Poll<anyhow::Result<T>> {
        let mut w = self.0.borrow_mut();
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        let head_len = match resp.parse(&w.to_client) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                w.client = Some(cx.waker().clone());
                return Poll::Pending;
            }
            Err(e) => return Poll::Ready(Err(anyhow!("the gateway's answer head: {e}"))),
        };
        let (mut len, mut session) = (None, None);
        for h in resp.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                len = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.parse::<usize>().ok());
            } else if h.name.eq_ignore_ascii_case("mcp-session-id") {
                session = Some(h.value);
            }
        }
        let status = resp.code.unwrap_or(0);
        let Some(len) = len else {
            return Poll::Ready(Err(anyhow!(
                "the gateway answered {status} without Content-Length"
            )));
        };
        let Some(body) = w.to_client.get(head_len..head_len + len) else {
            w.client = Some(cx.waker().clone());
            return Poll::Pending;
        };
        let out = f(status, session, body);
        bytes::Buf::advance(&mut w.to_client, head_len + len);
        Poll::Ready(Ok(out))
    }
}

// === the in-memory MCP server ===

/// An MCP server (legacy era, one tool) behind an in-memory HTTP/1.1 connection: each
/// request written to it is answered at once from pre-built bytes, the answer read back
/// by the gateway's next reads.
pub struct MemoryUpstream {
    /// Written by the gateway, not yet a whole request.
    input: BytesMut,
    /// Answers not yet read by the gateway.
    output: BytesMut,
    /// A `tools/call` answer around its id: `prefix + id + suffix`.
    call: (Bytes, Bytes),
    method: memmem::Finder<'static>,
    id: memmem::Finder<'static>,
    served: Rc<Cell<u64>>,
}

impl MemoryUpstream {
    /// A server whose tool answers with `result_bytes` of text; `served` counts requests.
    pub fn new(result_bytes: usize, served: Rc<Cell<u64>>) -> Self {
        let result =
            serde_json::json!({"content": [{"type": "text", "text": "r".repeat(result_bytes)}]})
                .to_string();
        Self {
            input: BytesMut::new(),
            output: BytesMut::new(),
            call: (
                Bytes::from_static(br#"{"jsonrpc":"2.0","id":"#),
                Bytes::from(format!(r#","result":{result}}}"#)),
            ),
            method: memmem::Finder::new(b"\"method\":\"").into_owned(),
            id: memmem::Finder::new(b"\"id\":").into_owned(),
            served,
        }
    }

    /// Answers every whole request in `input` (allocating nothing: the harness's own
    /// allocations would count as the gateway's).
    fn serve(&mut self) -> io::Result<()> {
        let mut input = std::mem::take(&mut self.input);
        let res = loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut headers);
            let head_len = match req.parse(&input) {
                Ok(httparse::Status::Complete(n)) => n,
                Ok(httparse::Status::Partial) => break Ok(()),
                Err(e) => break Err(io::Error::other(format!("bad request head: {e}"))),
            };
            let len = req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok())
                .unwrap_or(0);
            let Some(body) = input.get(head_len..head_len + len) else {
                break Ok(());
            };
            let verb = match req.method {
                Some("POST") => "POST",
                Some("DELETE") => "DELETE",
                _ => "GET",
            };
            self.answer(verb, body);
            self.served.set(self.served.get() + 1);
            bytes::Buf::advance(&mut input, head_len + len);
        };
        self.input = input;
        res
    }

    /// Appends the answer to one request (`verb`, JSON `body`) to `output`.
    pub fn answer(&mut self, verb: &str, body: &[u8]) {
        if verb != "POST" {
            let status = if verb == "DELETE" {
                "200 OK"
            } else {
                "405 Method Not Allowed"
            };
            self.head(status, 0, false);
            return;
        }
        let method = self
            .method
            .find(body)
            .and_then(|at| {
                let rest = &body[at + 10..];
                Some(&rest[..memchr::memchr(b'"', rest)?])
            })
            .unwrap_or(b"");
        let id = self.id.find(body).and_then(|at| {
            let rest = &body[at + 5..];
            Some(&rest[..memchr::memchr2(b',', b'}', rest)?])
        });
        let Some(id) = id else {
            // A notification.
            self.head("202 Accepted", 0, false);
            return;
        };
        let (prefix, suffix) = match method {
            b"tools/call" => (self.call.0.clone(), self.call.1.clone()),
            b"initialize" => (
                self.call.0.clone(),
                Bytes::from_static(
                    br#","result":{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"memory","version":"1"}}}"#,
                ),
            ),
            b"tools/list" => (
                self.call.0.clone(),
                Bytes::from_static(
                    br#","result":{"tools":[{"name":"echo","inputSchema":{"type":"object"}}]}}"#,
                ),
            ),
            b"ping" => (self.call.0.clone(), Bytes::from_static(br#","result":{}}"#)),
            _ => (
                self.call.0.clone(),
                Bytes::from_static(br#","error":{"code":-32601,"message":"Method not found"}}"#),
            ),
        };
        self.head(
            "200 OK",
            prefix.len() + id.len() + suffix.len(),
            method == b"initialize",
        );
        self.output.extend_from_slice(&prefix);
        self.output.extend_from_slice(id);
        self.output.extend_from_slice(&suffix);
    }

    /// Forgets the answers not yet read.
    pub fn clear(&mut self) {
        self.output.clear();
    }

    fn head(&mut self, status: &str, len: usize, session: bool) {
        let o = &mut self.output;
        o.extend_from_slice(b"HTTP/1.1 ");
        o.extend_from_slice(status.as_bytes());
        o.extend_from_slice(b"\r\nContent-Type: application/json\r\n");
        if session {
            o.extend_from_slice(b"Mcp-Session-Id: memory-session\r\n");
        }
        o.extend_from_slice(b"Content-Length: ");
        o.extend_from_slice(crate::text::Decimal::new(len as u64).as_bytes());
        o.extend_from_slice(b"\r\n\r\n");
    }
}

impl Stream for MemoryUpstream {
    async fn read_more(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        if self.output.is_empty() {
            // Every answer is ready when its request is written: a read that finds none
            // would wait forever on a socket. Fail it instead of hanging the bench.
            return Err(io::Error::other(
                "the in-memory upstream has nothing to read",
            ));
        }
        let n = self.output.len();
        buf.extend_from_slice(&self.output);
        self.output.clear();
        Ok(n)
    }

    async fn readable(&mut self) -> io::Result<()> {
        if self.output.is_empty() {
            return Err(io::Error::other(
                "the in-memory upstream has nothing to read",
            ));
        }
        Ok(())
    }

    async fn write_all(&mut self, buf: Bytes) -> io::Result<()> {
        self.input.extend_from_slice(&buf);
        self.serve()
    }

    // As a socket with room: takes the whole request at once.
    fn write_now(&mut self, parts: &crate::net::Segments) -> io::Result<usize> {
        for p in parts.iter() {
            self.input.extend_from_slice(p);
        }
        self.serve()?;
        Ok(parts.len())
    }

    // As a socket's writev: all parts arrive together.
    async fn write_segments(&mut self, parts: crate::net::Segments) -> io::Result<()> {
        for p in parts.iter() {
            self.input.extend_from_slice(p);
        }
        self.serve()
    }

    async fn close(&mut self) {}

    fn peer_identity(&self) -> Option<&str> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(opts: Options) {
        let mut rt = runtime().expect("runtime");
        rt.block_on(async {
            let h = Harness::start(&opts).await.expect("start");
            let before = h.served();
            for _ in 0..3 {
                h.call().await.expect("call");
            }
            // Each call reached the in-memory server once: nothing was answered by the
            // gateway alone, and no socket was dialed.
            assert_eq!(h.served() - before, 3);
        });
    }

    #[test]
    fn a_legacy_call_goes_through_the_whole_path() {
        run(Options::default());
    }

    #[test]
    fn a_stateless_call_goes_through_the_whole_path() {
        run(Options {
            stateless: true,
            ..Options::default()
        });
    }

    #[test]
    fn an_unknown_tool_fails_the_call() {
        let mut rt = runtime().expect("runtime");
        rt.block_on(async {
            let mut h = Harness::start(&Options::default()).await.expect("start");
            let s = String::from_utf8_lossy(&h.call).replace("fx__echo", "fx__nope");
            h.call = Bytes::from(s);
            assert!(h.call().await.is_err());
        });
    }
}
