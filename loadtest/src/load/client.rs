//! One load connection: a TCP connection carrying one MCP session over Streamable HTTP.
//!
//! `setup` connects and runs `initialize` + `notifications/initialized`; `request` sends one
//! request and reads the whole answer (JSON, or an event stream read to its end so that the
//! connection can be reused) and judges it. Any failure that leaves the connection in an
//! unknown state closes it; the next request reopens it and keeps the session. It never
//! retries a request and never records anything: the caller does.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use monoio::{io::AsyncWriteRentExt, net::TcpStream};

use crate::{
    http::{self, ContentType, ReadBuf, ReadError},
    mcp::{self, BadAnswer, Bodies, Op, Verdict},
    stats::ErrorKind,
};

/// Initial read buffer per connection, bytes (it grows for larger answers).
const READ_BUF: usize = 16 * 1024;

/// Where the load goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Address connected to.
    pub addr: SocketAddr,
    /// `Host` header value.
    pub host: String,
    /// Request path, e.g. `/mcp`.
    pub path: String,
    /// `Accept` header value of every request.
    pub accept: &'static str,
    /// Extra header lines (`Name: value\r\n` each) on every request, e.g. credentials.
    pub extra_headers: String,
    /// Speak MCP 2026-07-28: no `initialize`, the version header on every request.
    pub stateless: bool,
}

/// The `Accept` value the spec asks clients to send.
pub const ACCEPT_BOTH: &str = "application/json, text/event-stream";
/// The `Accept` value that asks for event-stream answers only.
pub const ACCEPT_SSE: &str = "text/event-stream";

impl Target {
    /// Parses `http://host[:port][/path]` (port 80 and path `/` by default) and resolves it.
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(format!("{url}: no host"));
        }
        let with_port = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| !p.contains(']'))
        {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let addr = std::net::ToSocketAddrs::to_socket_addrs(&with_port)
            .map_err(|e| format!("{url}: {e}"))?
            .next()
            .ok_or_else(|| format!("{url}: host has no address"))?;
        Ok(Target {
            addr,
            host: authority.to_string(),
            path: path.to_string(),
            accept: ACCEPT_BOTH,
            extra_headers: String::new(),
            stateless: false,
        })
    }
}

/// What one request produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Ok, or why not.
    pub result: Result<(), ErrorKind>,
    /// Request bytes written.
    pub sent: usize,
    /// Response bytes read (0 when no complete answer arrived).
    pub received: usize,
}

/// One connection and its MCP session.
pub struct Client {
    target: Arc<Target>,
    stream: Option<TcpStream>,
    rb: ReadBuf,
    scratch: Vec<u8>,
    out: Vec<u8>,
    /// Request head up to the per-request headers and `Content-Length`.
    head: Vec<u8>,
    session: Option<String>,
    next_id: u64,
}

impl Client {
    /// A client for `target`, not connected yet.
    pub fn new(target: Arc<Target>) -> Self {
        Client {
            target,
            stream: None,
            rb: ReadBuf::with_capacity(READ_BUF),
            scratch: Vec::new(),
            out: Vec::with_capacity(4096),
            head: Vec::new(),
            session: None,
            next_id: 1,
        }
    }

    /// The session id the server gave, if any (a stateless server gives none).
    pub fn session(&self) -> Option<&str> {
        self.session.as_deref()
    }

    /// Connects and opens the MCP session, each exchange bounded by `timeout`. In the
    /// stateless era there is no session: it only connects.
    pub async fn setup(&mut self, timeout: Duration) -> Result<(), ErrorKind> {
        if self.target.stateless {
            self.head = self.head_prefix(None, Some(mcp::STATELESS_VERSION));
            return match monoio::time::timeout(timeout, self.connect()).await {
                Ok(r) => r,
                Err(_) => Err(ErrorKind::Timeout),
            };
        }
        self.head = self.head_prefix(None, None);
        // initialize
        let body = mcp::initialize_body();
        self.prepare(&body);
        let session = match monoio::time::timeout(timeout, self.roundtrip(0, Op::List, true)).await
        {
            Ok(Ok((Verdict::Ok, _, session))) => session,
            Ok(Ok((Verdict::RpcError(code), _, _))) => return Err(ErrorKind::Rpc(code)),
            Ok(Ok(_)) => return Err(ErrorKind::NoSession),
            Ok(Err(kind)) => return Err(kind),
            Err(_) => {
                self.disconnect();
                return Err(ErrorKind::Timeout);
            }
        };
        self.session = session;
        self.head = self.head_prefix(self.session.as_deref(), Some(mcp::PROTOCOL_VERSION));
        // notifications/initialized: 202 and no body.
        self.prepare(mcp::INITIALIZED);
        match monoio::time::timeout(timeout, self.notify()).await {
            Ok(r) => r,
            Err(_) => {
                self.disconnect();
                Err(ErrorKind::Timeout)
            }
        }
    }

    /// Sends request `op` and judges its answer, all within `timeout`.
    pub async fn request(&mut self, op: Op, bodies: &Bodies, timeout: Duration) -> Outcome {
        let id = self.next_id;
        self.next_id += 1;
        self.out.clear();
        self.out.extend_from_slice(&self.head);
        self.out.extend_from_slice(bodies.headers(op));
        self.out.extend_from_slice(b"Content-Length: ");
        mcp::push_u64(&mut self.out, bodies.len(op, id) as u64);
        self.out.extend_from_slice(b"\r\n\r\n");
        bodies.write(op, id, &mut self.out);
        let sent = self.out.len();
        let (result, received) = match monoio::time::timeout(timeout, self.roundtrip(id, op, false))
            .await
        {
            Ok(Ok((Verdict::Ok, received, _))) => (Ok(()), received),
            Ok(Ok((Verdict::RpcError(code), received, _))) => (Err(ErrorKind::Rpc(code)), received),
            Ok(Ok((Verdict::ToolError, received, _))) => (Err(ErrorKind::ToolError), received),
            Ok(Err(kind)) => (Err(kind), 0),
            Err(_) => {
                self.disconnect();
                (Err(ErrorKind::Timeout), 0)
            }
        };
        Outcome {
            result,
            sent,
            received,
        }
    }

    /// Leaves as a client that is done: ends its session (`DELETE`; what the server answers
    /// is not judged) and closes the connection. `setup` makes a new client.
    pub async fn leave(&mut self, timeout: Duration) {
        if let Some(session) = self.session.take() {
            let mut head = format!(
                "DELETE {} HTTP/1.1\r\nHost: {}\r\nMcp-Session-Id: {session}\r\nMCP-Protocol-Version: {}\r\n",
                self.target.path,
                self.target.host,
                mcp::PROTOCOL_VERSION
            );
            head.push_str(&self.target.extra_headers);
            head.push_str("Content-Length: 0\r\n\r\n");
            self.out.clear();
            self.out.extend_from_slice(head.as_bytes());
            let _ = monoio::time::timeout(timeout, self.exchange(false)).await;
        }
        self.disconnect();
        self.next_id = 1;
    }

    /// Closes the connection (the session is kept for the next one).
    pub fn disconnect(&mut self) {
        self.stream = None;
        self.rb.clear();
    }

    fn head_prefix(&self, session: Option<&str>, version: Option<&str>) -> Vec<u8> {
        let mut h = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nAccept: {}\r\n",
            self.target.path, self.target.host, self.target.accept
        );
        if let Some(v) = version {
            h.push_str("MCP-Protocol-Version: ");
            h.push_str(v);
            h.push_str("\r\n");
        }
        if let Some(s) = session {
            h.push_str("Mcp-Session-Id: ");
            h.push_str(s);
            h.push_str("\r\n");
        }
        h.push_str(&self.target.extra_headers);
        h.into_bytes()
    }

    fn prepare(&mut self, body: &[u8]) {
        self.out.clear();
        self.out.extend_from_slice(&self.head);
        self.out.extend_from_slice(b"Content-Length: ");
        mcp::push_u64(&mut self.out, body.len() as u64);
        self.out.extend_from_slice(b"\r\n\r\n");
        self.out.extend_from_slice(body);
    }

    async fn connect(&mut self) -> Result<(), ErrorKind> {
        if self.stream.is_none() {
            let s = TcpStream::connect_addr(self.target.addr)
                .await
                .map_err(|_| ErrorKind::Connect)?;
            let _ = s.set_nodelay(true);
            self.rb.clear();
            self.stream = Some(s);
        }
        Ok(())
    }

    /// Writes `self.out`, reads one response and returns the verdict for `id`, the wire bytes
    /// read and (if asked) the session id header.
    async fn roundtrip(
        &mut self,
        id: u64,
        op: Op,
        want_session: bool,
    ) -> Result<(Verdict, usize, Option<String>), ErrorKind> {
        let res = self.exchange(want_session).await;
        let resp = match res {
            Ok(r) => r,
            Err(kind) => {
                self.disconnect();
                return Err(kind);
            }
        };
        let body = resp.body(&self.rb, &self.scratch);
        let judged = if resp.head.status != 200 {
            Err(ErrorKind::Http(resp.head.status))
        } else {
            match resp.head.content_type {
                ContentType::Json => mcp::check_json(body, id, op).map_err(ErrorKind::Answer),
                ContentType::EventStream => mcp::check_sse(body, id, op).map_err(ErrorKind::Answer),
                ContentType::Other => Err(ErrorKind::ContentType),
            }
        };
        self.rb.consume(resp.pending);
        let close = resp.head.close;
        if close || judged == Err(ErrorKind::Answer(BadAnswer::WrongId)) {
            // An answer for another id means the stream is out of step: start over.
            self.disconnect();
        }
        judged.map(|v| (v, resp.wire_len, resp.session_id))
    }

    /// Sends `self.out` (a notification) and expects 202 Accepted.
    async fn notify(&mut self) -> Result<(), ErrorKind> {
        let resp = match self.exchange(false).await {
            Ok(r) => r,
            Err(kind) => {
                self.disconnect();
                return Err(kind);
            }
        };
        self.rb.consume(resp.pending);
        if resp.head.close {
            self.disconnect();
        }
        match resp.head.status {
            202 => Ok(()),
            s => Err(ErrorKind::Http(s)),
        }
    }

    async fn exchange(&mut self, want_session: bool) -> Result<http::Response, ErrorKind> {
        self.connect().await?;
        let Some(stream) = self.stream.as_mut() else {
            return Err(ErrorKind::Connect);
        };
        let out = std::mem::take(&mut self.out);
        let (res, out) = stream.write_all(out).await;
        self.out = out;
        res.map_err(|e| io_kind(&e))?;
        http::read_response(stream, &mut self.rb, &mut self.scratch, want_session)
            .await
            .map_err(|e| match e {
                ReadError::Io(e) => io_kind(&e),
                ReadError::Closed => ErrorKind::Closed,
                ReadError::Http(_) => ErrorKind::Http1,
            })
    }
}

fn io_kind(e: &std::io::Error) -> ErrorKind {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionReset | K::BrokenPipe | K::UnexpectedEof | K::ConnectionAborted => {
            ErrorKind::Closed
        }
        _ => ErrorKind::Io,
    }
}
