//! `mcpgw-fixture`: a fast MCP Streamable HTTP server, the upstream of load tests, built so
//! that it is never the bottleneck.
//!
//! One monoio runtime and `SO_REUSEPORT` listener per thread; HTTP/1.1 keep-alive on `/mcp`.
//! Requests are parsed once with serde_json into a small typed envelope whose `params` stay
//! raw; answers are written straight into the output buffer, `tools/list` pages are
//! serialized at start, and echo splices the `text` argument back as the bytes it came in.
//! It accepts any session id (or none) and keeps no state per session: it is a fixture, not
//! a reference server.

use std::{
    borrow::Cow,
    cell::Cell,
    net::SocketAddr,
    rc::Rc,
    sync::Arc,
    time::{Duration, SystemTime},
};

use monoio::{io::AsyncWriteRentExt, net::TcpStream};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::{
    http::{self, BodyLen, Chunked, HttpError, Method, ReadBuf},
    mcp::push_u64,
    rt::{self, Driver},
};

#[cfg(test)]
mod tests;

/// Protocol revisions accepted in `initialize`; any other request gets the last one.
pub const VERSIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
/// The revision `--dual-era` speaks besides those.
pub const MODERN_VERSION: &str = "2026-07-28";
/// The `_meta` key that marks a request of that revision.
const MODERN_ENVELOPE_KEY: &str = "io.modelcontextprotocol/protocolVersion";
/// The one resource.
pub const RESOURCE_URI: &str = "fixture://static/1";
/// Its text.
pub const RESOURCE_TEXT: &str = "static fixture resource 1";
/// Largest request body accepted, bytes.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// A fast MCP Streamable HTTP server for load tests: an `echo` tool of configurable result
/// size and delay, N synthetic tools for list benchmarks, one static resource.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "mcpgw-fixture", version)]
pub struct Args {
    /// Address to listen on. Port 0 picks a free port; the port is printed on stderr as
    /// `LISTENING <port>` once every thread is bound.
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub listen: SocketAddr,

    /// Server threads, each with its own runtime and SO_REUSEPORT listener.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,

    /// IO driver: io_uring (COOP_TASKRUN + SINGLE_ISSUER + DEFER_TASKRUN) or epoll.
    #[arg(long, value_enum, default_value_t = Driver::Uring)]
    pub driver: Driver,

    /// Issue no Mcp-Session-Id in answers to initialize (a stateless server).
    #[arg(long)]
    pub stateless: bool,

    /// Speak MCP 2026-07-28 too (a server of both eras): answer `server/discover` (offering
    /// 2026-07-28), and give the results of requests that carry that revision's `_meta`
    /// envelope a `resultType`.
    #[arg(long)]
    pub dual_era: bool,

    /// Synthetic tools listed after echo: tool_00001, tool_00002, ... (calling one answers
    /// "ok").
    #[arg(long, default_value_t = 0)]
    pub tools: usize,

    /// Tools per tools/list page (cursor = page number); 0 puts all tools on one page.
    #[arg(long, default_value_t = 0)]
    pub page_size: usize,

    /// Delay before answering each tools/call, milliseconds.
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u64,

    /// Answer every request as a one-event text/event-stream (chunked), as the official
    /// Python SDK does; otherwise application/json (SSE also when Accept lacks JSON).
    #[arg(long)]
    pub sse: bool,
}

/// Runs the fixture until the process is killed.
pub fn run(args: Args) -> anyhow::Result<()> {
    let servers = start(&args)?;
    eprintln!("LISTENING {}", servers.addr.port());
    servers.join();
    Ok(())
}

/// Starts the server threads; returns once all are bound.
pub fn start(args: &Args) -> anyhow::Result<rt::Servers> {
    let catalog = Arc::new(Catalog::new(args));
    let seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    rt::serve_threads(
        "mcpgw-fixture",
        args.listen,
        args.threads,
        args.driver,
        move |i| Fixture {
            catalog: catalog.clone(),
            session_prefix: format!("{seed:016x}{i:04x}"),
            sessions: Cell::new(0),
        },
    )
}

// === impl Catalog ===

/// What every thread answers from; built once at start, read-only after.
#[derive(Debug)]
pub struct Catalog {
    /// `result` of each tools/list page.
    pages: Vec<String>,
    tools: usize,
    stateless: bool,
    dual_era: bool,
    sse: bool,
    delay: Duration,
}

const ECHO_TOOL: &str = r#"{"name":"echo","description":"Returns `text`, or a text of `result_bytes` bytes when given.","inputSchema":{"type":"object","properties":{"text":{"type":"string"},"result_bytes":{"type":"integer","minimum":0}},"required":["text"]}}"#;

impl Catalog {
    /// Builds the catalog of `args` (pre-serializing the tools/list pages).
    pub fn new(args: &Args) -> Catalog {
        let mut tools = Vec::with_capacity(args.tools + 1);
        tools.push(ECHO_TOOL.to_string());
        for i in 1..=args.tools {
            tools.push(format!(
                r#"{{"name":"{}","description":"Synthetic tool {i}","inputSchema":{{"type":"object","properties":{{"x":{{"type":"string"}}}}}}}}"#,
                synthetic_name(i)
            ));
        }
        let per_page = if args.page_size == 0 {
            tools.len()
        } else {
            args.page_size
        };
        let chunks: Vec<&[String]> = tools.chunks(per_page).collect();
        let pages = chunks
            .iter()
            .enumerate()
            .map(|(i, chunk)| {
                let mut page = String::from(r#"{"tools":["#);
                page.push_str(&chunk.join(","));
                page.push(']');
                if i + 1 < chunks.len() {
                    page.push_str(&format!(r#","nextCursor":"{}""#, i + 1));
                }
                page.push('}');
                page
            })
            .collect();
        Catalog {
            pages,
            tools: args.tools,
            stateless: args.stateless,
            dual_era: args.dual_era,
            sse: args.sse,
            delay: Duration::from_millis(args.delay_ms),
        }
    }
}

/// Name of synthetic tool `i` (1-based).
pub fn synthetic_name(i: usize) -> String {
    format!("tool_{i:05}")
}

// === handling one message ===

/// What to send back for one POSTed body. The JSON message (if any) is in the output vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// 200 with the JSON-RPC message.
    Message {
        /// Attach a new `Mcp-Session-Id` (answer to initialize on a stateful server).
        new_session: bool,
        /// Wait `--delay-ms` first (tools/call).
        delay: bool,
    },
    /// 202 Accepted, no body (a notification or a client's response).
    Accepted,
    /// This HTTP status with the JSON-RPC error message (`id: null`).
    Status(u16),
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    jsonrpc: Option<Cow<'a, str>>,
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow)]
    params: Option<&'a RawValue>,
    #[serde(borrow)]
    result: Option<&'a RawValue>,
    #[serde(borrow)]
    error: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct InitializeParams<'a> {
    #[serde(borrow, rename = "protocolVersion")]
    protocol_version: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ListParams<'a> {
    #[serde(borrow)]
    cursor: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct CallParams<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow)]
    arguments: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct EchoArgs<'a> {
    #[serde(borrow)]
    text: Option<&'a RawValue>,
    result_bytes: Option<usize>,
}

#[derive(Deserialize)]
struct ReadParams<'a> {
    #[serde(borrow)]
    uri: Cow<'a, str>,
}

/// Handles one POSTed body, writing the JSON message (if any) to `out`.
pub fn handle(cat: &Catalog, body: &[u8], out: &mut Vec<u8>) -> Reply {
    out.clear();
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        error(
            out,
            None,
            -32600,
            "Invalid Request: batches are not supported",
        );
        return Reply::Status(400);
    }
    let env: Envelope<'_> = match serde_json::from_slice(body) {
        Ok(e) => e,
        Err(e) if e.is_data() => {
            error(out, None, -32600, "Invalid Request");
            return Reply::Status(400);
        }
        Err(_) => {
            error(out, None, -32700, "Parse error");
            return Reply::Status(400);
        }
    };
    if env.jsonrpc.as_deref() != Some("2.0") {
        error(
            out,
            None,
            -32600,
            "Invalid Request: jsonrpc must be \"2.0\"",
        );
        return Reply::Status(400);
    }
    let Some(method) = env.method else {
        // A client's response to a server request; this server sends none, so just accept.
        if env.id.is_some() && (env.result.is_some() || env.error.is_some()) {
            return Reply::Accepted;
        }
        error(out, None, -32600, "Invalid Request: no method");
        return Reply::Status(400);
    };
    let Some(id) = env.id else {
        return Reply::Accepted; // notification
    };
    let params = env.params.map(RawValue::get).unwrap_or("{}");
    // A 2026-07-28 request (the envelope in `_meta`): its result says its type.
    let modern = cat.dual_era && params.contains(MODERN_ENVELOPE_KEY);
    let result_open: &[u8] = if modern {
        br#","result":{"resultType":"complete","#
    } else {
        br#","result":{"#
    };
    let ok = |out: &mut Vec<u8>, result: &[u8]| {
        begin(out, Some(id));
        match result.strip_prefix(b"{") {
            Some(members) if members != b"}" => {
                out.extend_from_slice(result_open);
                out.extend_from_slice(members);
            }
            _ => {
                out.extend_from_slice(b",\"result\":");
                out.extend_from_slice(result);
            }
        }
        out.push(b'}');
    };
    let message = Reply::Message {
        new_session: false,
        delay: false,
    };
    match &*method {
        "initialize" => {
            let asked = serde_json::from_str::<InitializeParams<'_>>(params)
                .ok()
                .and_then(|p| p.protocol_version);
            let version = asked
                .as_deref()
                .and_then(|v| VERSIONS.iter().find(|&&s| s == v))
                .unwrap_or(&VERSIONS[VERSIONS.len() - 1]);
            let result = format!(
                r#"{{"protocolVersion":"{version}","capabilities":{{"tools":{{"listChanged":false}},"resources":{{"subscribe":false,"listChanged":false}},"prompts":{{"listChanged":false}}}},"serverInfo":{{"name":"mcpgw-fixture","version":"{}"}}}}"#,
                env!("CARGO_PKG_VERSION")
            );
            ok(out, result.as_bytes());
            Reply::Message {
                new_session: !cat.stateless,
                delay: false,
            }
        }
        "server/discover" if cat.dual_era => {
            let result = format!(
                r#"{{"supportedVersions":["{MODERN_VERSION}"],"capabilities":{{"tools":{{"listChanged":false}},"resources":{{"subscribe":false,"listChanged":false}},"prompts":{{"listChanged":false}}}},"_meta":{{"io.modelcontextprotocol/serverInfo":{{"name":"mcpgw-fixture","version":"{}"}}}}}}"#,
                env!("CARGO_PKG_VERSION")
            );
            ok(out, result.as_bytes());
            message
        }
        "ping" | "logging/setLevel" => {
            ok(out, b"{}");
            message
        }
        "tools/list" => {
            let cursor = match serde_json::from_str::<ListParams<'_>>(params) {
                Ok(p) => p.cursor,
                Err(_) => return invalid_params(out, id, "Invalid params"),
            };
            let page = match cursor.as_deref().map(str::parse::<usize>) {
                None => 0,
                Some(Ok(n)) if n < cat.pages.len() => n,
                Some(_) => return invalid_params(out, id, "Invalid params: bad cursor"),
            };
            ok(out, cat.pages[page].as_bytes());
            message
        }
        "tools/call" => {
            let Ok(call) = serde_json::from_str::<CallParams<'_>>(params) else {
                return invalid_params(out, id, "Invalid params");
            };
            if call.name == "echo" {
                let args = call.arguments.map(RawValue::get).unwrap_or("{}");
                let Ok(args) = serde_json::from_str::<EchoArgs<'_>>(args) else {
                    return invalid_params(
                        out,
                        id,
                        "Invalid params: echo takes text and result_bytes",
                    );
                };
                begin(out, Some(id));
                out.extend_from_slice(result_open);
                out.extend_from_slice(br#""content":[{"type":"text","text":"#);
                match (args.result_bytes, args.text) {
                    (Some(n), _) => {
                        out.push(b'"');
                        out.resize(out.len() + n, b'x');
                        out.push(b'"');
                    }
                    // Already a JSON string literal: splice it back as it came in.
                    (None, Some(t)) if t.get().starts_with('"') => {
                        out.extend_from_slice(t.get().as_bytes())
                    }
                    (None, Some(_)) => {
                        return invalid_params(out, id, "Invalid params: text must be a string")
                    }
                    (None, None) => out.extend_from_slice(b"\"\""),
                }
                out.extend_from_slice(b"}]}}");
            } else if is_synthetic(&call.name, cat.tools) {
                ok(out, br#"{"content":[{"type":"text","text":"ok"}]}"#);
            } else {
                return invalid_params(out, id, "Unknown tool");
            }
            Reply::Message {
                new_session: false,
                delay: true,
            }
        }
        "resources/list" => {
            let result = format!(
                r#"{{"resources":[{{"uri":"{RESOURCE_URI}","name":"static-1","mimeType":"text/plain"}}]}}"#
            );
            ok(out, result.as_bytes());
            message
        }
        "resources/templates/list" => {
            ok(out, br#"{"resourceTemplates":[]}"#);
            message
        }
        "resources/read" => match serde_json::from_str::<ReadParams<'_>>(params) {
            Ok(p) if p.uri == RESOURCE_URI => {
                let result = format!(
                    r#"{{"contents":[{{"uri":"{RESOURCE_URI}","mimeType":"text/plain","text":"{RESOURCE_TEXT}"}}]}}"#
                );
                ok(out, result.as_bytes());
                message
            }
            Ok(_) => {
                out.clear();
                error(out, Some(id), -32002, "Resource not found");
                message
            }
            Err(_) => invalid_params(out, id, "Invalid params"),
        },
        "prompts/list" => {
            ok(out, br#"{"prompts":[]}"#);
            message
        }
        _ => {
            error(out, Some(id), -32601, "Method not found");
            message
        }
    }
}

fn is_synthetic(name: &str, count: usize) -> bool {
    name.strip_prefix("tool_")
        .filter(|d| d.len() >= 5 && d.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|d| d.parse::<usize>().ok())
        .is_some_and(|i| i >= 1 && i <= count && synthetic_name(i) == name)
}

fn begin(out: &mut Vec<u8>, id: Option<&RawValue>) {
    out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    out.extend_from_slice(id.map_or("null", RawValue::get).as_bytes());
}

fn error(out: &mut Vec<u8>, id: Option<&RawValue>, code: i64, message: &str) {
    out.clear();
    begin(out, id);
    out.extend_from_slice(format!(r#","error":{{"code":{code},"message":"#).as_bytes());
    out.extend_from_slice(serde_json::Value::from(message).to_string().as_bytes());
    out.extend_from_slice(b"}}");
}

fn invalid_params(out: &mut Vec<u8>, id: &RawValue, message: &str) -> Reply {
    error(out, Some(id), -32602, message);
    Reply::Message {
        new_session: false,
        delay: false,
    }
}

// === impl Fixture (HTTP) ===

/// One thread's server: the shared catalog and a session-id counter.
pub struct Fixture {
    catalog: Arc<Catalog>,
    session_prefix: String,
    sessions: Cell<u64>,
}

impl rt::Handler for Fixture {
    async fn serve(self: Rc<Self>, mut conn: TcpStream) {
        let mut rb = ReadBuf::with_capacity(16 * 1024);
        let mut chunked_body = Vec::new();
        let mut message = Vec::with_capacity(4096);
        let mut out = Vec::with_capacity(4096);
        loop {
            let head = loop {
                match http::parse_request_head(rb.data()) {
                    Ok(Some(h)) => break h,
                    Ok(None) => match rb.fill(&mut conn).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    },
                    Err(e) => {
                        let status = match e {
                            HttpError::HeadTooLarge => 431,
                            HttpError::Unsupported(_) => 501,
                            _ => 400,
                        };
                        write_status(&mut out, status, None, true);
                        let _ = conn.write_all(out).await;
                        return;
                    }
                }
            };
            let path_ok = {
                let path = rb.data().get(head.path.clone()).unwrap_or(b"");
                path.split(|&b| b == b'?').next() == Some(b"/mcp")
            };
            // Read the body: Content-Length stays in the buffer, chunked is decoded.
            let (body_range, consumed) = match head.body {
                BodyLen::Length(n) if n > MAX_BODY => {
                    write_status(&mut out, 413, None, true);
                    let _ = conn.write_all(out).await;
                    return;
                }
                BodyLen::Length(n) => {
                    if rb.fill_to(&mut conn, head.len + n).await.is_err() {
                        return;
                    }
                    (Some(head.len..head.len + n), head.len + n)
                }
                BodyLen::Chunked | BodyLen::UntilClose => {
                    rb.consume(head.len);
                    chunked_body.clear();
                    let mut dec = Chunked::default();
                    loop {
                        match dec.feed(rb.data(), Some(&mut chunked_body)) {
                            Ok(n) => rb.consume(n),
                            Err(_) => return,
                        }
                        if dec.is_done() {
                            break;
                        }
                        if chunked_body.len() > MAX_BODY
                            || !matches!(rb.fill(&mut conn).await, Ok(1..))
                        {
                            return;
                        }
                    }
                    (None, 0)
                }
            };
            message.clear();
            let reply = match (head.method, path_ok) {
                (_, false) => Reply::Status(404),
                (Method::Post, true) => {
                    let body = match &body_range {
                        Some(r) => rb.data().get(r.clone()).unwrap_or(b""),
                        None => &chunked_body[..],
                    };
                    handle(&self.catalog, body, &mut message)
                }
                (Method::Delete, true) => Reply::Status(200),
                (_, true) => Reply::Status(405),
            };
            rb.consume(consumed);
            let sse = self.catalog.sse || !head.accepts_json;
            match reply {
                Reply::Message { new_session, delay } => {
                    let session = new_session.then(|| self.new_session());
                    write_message(&mut out, &message, session.as_deref(), sse);
                    if delay && !self.catalog.delay.is_zero() {
                        monoio::time::sleep(self.catalog.delay).await;
                    }
                }
                Reply::Accepted => write_status(&mut out, 202, None, false),
                Reply::Status(s) => write_status(&mut out, s, Some(&message), false),
            }
            let (res, buf) = conn.write_all(out).await;
            out = buf;
            if res.is_err() || head.close {
                return;
            }
        }
    }
}

impl Fixture {
    fn new_session(&self) -> String {
        let n = self.sessions.get() + 1;
        self.sessions.set(n);
        format!("{}{n:012x}", self.session_prefix)
    }
}

/// A 200 answer carrying `message`, as JSON or as one SSE event in a chunked body.
pub fn write_message(out: &mut Vec<u8>, message: &[u8], session: Option<&str>, sse: bool) {
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    if let Some(s) = session {
        out.extend_from_slice(b"Mcp-Session-Id: ");
        out.extend_from_slice(s.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if sse {
        const PREFIX: &[u8] = b"event: message\r\ndata: ";
        const SUFFIX: &[u8] = b"\r\n\r\n";
        out.extend_from_slice(
            b"Content-Type: text/event-stream\r\nCache-Control: no-cache\r\n\
              Transfer-Encoding: chunked\r\n\r\n",
        );
        let len = PREFIX.len() + message.len() + SUFFIX.len();
        out.extend_from_slice(format!("{len:x}\r\n").as_bytes());
        out.extend_from_slice(PREFIX);
        out.extend_from_slice(message);
        out.extend_from_slice(SUFFIX);
        out.extend_from_slice(b"\r\n0\r\n\r\n");
    } else {
        out.extend_from_slice(b"Content-Type: application/json\r\nContent-Length: ");
        push_u64(out, message.len() as u64);
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(message);
    }
}

/// A status with no body or a JSON-RPC error body; `close` announces that the connection
/// closes after it.
pub fn write_status(out: &mut Vec<u8>, status: u16, body: Option<&[u8]>, close: bool) {
    let reason = match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        _ => "Error",
    };
    out.clear();
    out.extend_from_slice(format!("HTTP/1.1 {status} {reason}\r\n").as_bytes());
    if status == 405 {
        out.extend_from_slice(b"Allow: POST, DELETE\r\n");
    }
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    let body = body.filter(|b| !b.is_empty());
    if body.is_some() {
        out.extend_from_slice(b"Content-Type: application/json\r\n");
    }
    out.extend_from_slice(b"Content-Length: ");
    push_u64(out, body.map_or(0, |b| b.len()) as u64);
    out.extend_from_slice(b"\r\n\r\n");
    if let Some(b) = body {
        out.extend_from_slice(b);
    }
}
