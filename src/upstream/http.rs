//! Streamable HTTP upstreams (client side of MCP 2025-03-26 .. 2025-11-25).
//!
//! The gateway holds one upstream session per upstream (created by the control plane at
//! start, re-created by whichever worker first sees it expire: a 404 is answered by one
//! `initialize` and one retry). Connections are kept alive in a per-worker [`Pool`]; a
//! pooled connection that turns out closed is replaced once, before any byte of the answer.
//! Answers come as JSON or as an SSE stream; for a stream the gateway reads events until the
//! response to its request arrives, then drains the rest so the connection can be reused.

use std::{cell::RefCell, collections::HashMap, sync::Arc, time::Duration};

use arc_swap::ArcSwapOption;
use bytes::{Bytes, BytesMut};
use monoio::{
    buf::IoBufMut,
    io::{AsyncReadRent, AsyncWriteRentExt},
    net::TcpStream,
};

use super::{initialize_body, Caller, INITIALIZED};
use crate::{
    error::{Error, ErrorKind, Result},
    jsonrpc::Kind,
    transport::{
        http::{self as codec, BodyKind, ChunkedDecoder, Limits, ResponseHead},
        sse::SseDecoder,
    },
};

/// Largest upstream answer the gateway accepts, bytes.
const MAX_ANSWER: usize = 64 << 20;
/// How long to wait for the rest of an SSE stream after the response arrived.
const DRAIN_WAIT: Duration = Duration::from_millis(500);

/// The negotiated upstream session.
#[derive(Debug)]
pub struct UpstreamSession {
    /// `Mcp-Session-Id` the upstream issued (a stateless server issues none).
    pub id: Option<String>,
    /// Negotiated protocol version.
    pub version: String,
    /// `capabilities` from the upstream's `initialize` answer.
    pub capabilities: serde_json::Map<String, serde_json::Value>,
}

/// An HTTP upstream's address and session.
pub struct HttpUpstream {
    name: String,
    addr: String,
    host: String,
    path: String,
    headers: Vec<(String, String)>,
    connect_timeout: Duration,
    session: ArcSwapOption<UpstreamSession>,
}

/// Per-worker idle connections, by upstream address.
#[derive(Default)]
pub struct Pool {
    idle: RefCell<HashMap<String, Vec<TcpStream>>>,
}

/// Most idle connections kept per address and worker.
const MAX_IDLE: usize = 64;

impl Pool {
    fn take(&self, addr: &str) -> Option<TcpStream> {
        self.idle.borrow_mut().get_mut(addr).and_then(Vec::pop)
    }

    fn put(&self, addr: &str, conn: TcpStream) {
        let mut idle = self.idle.borrow_mut();
        let v = idle.entry(addr.to_string()).or_default();
        if v.len() < MAX_IDLE {
            v.push(conn);
        }
    }
}

/// What came back for one POST.
enum Answer {
    /// 202 or an empty body: accepted, nothing to say.
    Accepted,
    /// The response message.
    Message(Bytes),
}

impl HttpUpstream {
    /// An upstream at `addr` (connect) / `host` (Host header) / `path`.
    pub fn new(
        name: String,
        addr: String,
        host: String,
        path: String,
        headers: Vec<(String, String)>,
        connect_timeout: Duration,
    ) -> Self {
        Self {
            name,
            addr,
            host,
            path,
            headers,
            connect_timeout,
            session: ArcSwapOption::empty(),
        }
    }

    /// The current session, if one was negotiated.
    pub fn session(&self) -> Option<Arc<UpstreamSession>> {
        self.session.load_full()
    }

    /// Runs `initialize` + `notifications/initialized` and installs the new session.
    pub async fn initialize(&self, caller: &Caller) -> Result<Arc<UpstreamSession>> {
        let id = caller.ids.next();
        let (answer, session_id) = self
            .post(caller, initialize_body(id), Some(id), None)
            .await?;
        let Answer::Message(raw) = answer else {
            return Err(self.err(ErrorKind::UpstreamProtocol, "initialize got no answer"));
        };
        let frame = caller.parser.borrow_mut().parse_one(raw).map_err(|e| {
            self.err(ErrorKind::UpstreamProtocol, "initialize answer")
                .with_source(e)
        })?;
        if frame.kind() != Kind::Response || frame.is_error() {
            return Err(self.err(ErrorKind::UpstreamUnavailable, "initialize refused"));
        }
        let result = frame
            .result_raw()
            .and_then(|r| serde_json::from_slice::<serde_json::Value>(r).ok())
            .unwrap_or_default();
        let version = result
            .get("protocolVersion")
            .and_then(|v| v.as_str())
            .unwrap_or(super::UPSTREAM_PROTOCOL_VERSION)
            .to_string();
        let capabilities = result
            .get("capabilities")
            .and_then(|c| c.as_object())
            .cloned()
            .unwrap_or_default();
        let session = Arc::new(UpstreamSession {
            id: session_id,
            version,
            capabilities,
        });
        self.post(
            caller,
            Bytes::from_static(INITIALIZED),
            None,
            Some(&session),
        )
        .await?;
        self.session.store(Some(session.clone()));
        tracing::info!(upstream = %self.name, version = %session.version, "upstream session initialized");
        Ok(session)
    }

    /// Sends a request whose id is `id`; answers 404 (session expired) with one
    /// re-`initialize` and one retry.
    pub(super) async fn request(&self, caller: &Caller, id: u64, body: Bytes) -> Result<Bytes> {
        let session = match self.session() {
            Some(s) => s,
            None => self.initialize(caller).await?,
        };
        let answer = match self
            .post(caller, body.clone(), Some(id), Some(&session))
            .await
        {
            Err(e) if e.kind == ErrorKind::UpstreamSessionExpired => {
                tracing::info!(upstream = %self.name, "upstream session expired; initializing again");
                let fresh = self.initialize(caller).await?;
                self.post(caller, body, Some(id), Some(&fresh)).await?.0
            }
            other => other?.0,
        };
        match answer {
            Answer::Message(m) => Ok(m),
            Answer::Accepted => Err(self.err(
                ErrorKind::UpstreamProtocol,
                "request got 202 without an answer",
            )),
        }
    }

    /// Sends a notification.
    pub(super) async fn notify(&self, caller: &Caller, body: Bytes) -> Result<()> {
        let session = match self.session() {
            Some(s) => s,
            None => self.initialize(caller).await?,
        };
        self.post(caller, body, None, Some(&session))
            .await
            .map(|_| ())
    }

    fn err(&self, kind: ErrorKind, what: &str) -> Error {
        Error::new(kind, format!("upstream {}: {what}", self.name))
    }

    /// One POST, on a pooled connection when there is one (replaced once if it was closed).
    async fn post(
        &self,
        caller: &Caller,
        body: Bytes,
        want_id: Option<u64>,
        session: Option<&UpstreamSession>,
    ) -> Result<(Answer, Option<String>)> {
        let mut req = BytesMut::with_capacity(512 + body.len());
        let mut headers: Vec<(&str, &[u8])> = vec![
            ("Content-Type", b"application/json"),
            ("Accept", b"application/json, text/event-stream"),
        ];
        if let Some(s) = session {
            if let Some(id) = &s.id {
                headers.push(("Mcp-Session-Id", id.as_bytes()));
            }
            headers.push(("MCP-Protocol-Version", s.version.as_bytes()));
        }
        for (k, v) in &self.headers {
            headers.push((k.as_str(), v.as_bytes()));
        }
        codec::write_request_head(
            &mut req,
            "POST",
            &self.path,
            &self.host,
            &headers,
            body.len(),
        );
        req.extend_from_slice(&body);
        let req = req.freeze();

        if let Some(conn) = caller.pool.take(&self.addr) {
            match self.exchange(caller, conn, req.clone(), want_id).await {
                Ok(r) => return Ok(r),
                Err(Stale::Before) => {} // closed while idle: try a fresh connection
                Err(Stale::Failed(e)) => return Err(e),
            }
        }
        let conn = self.connect().await?;
        self.exchange(caller, conn, req, want_id)
            .await
            .map_err(|e| match e {
                Stale::Before => self.err(
                    ErrorKind::UpstreamUnavailable,
                    "connection closed before an answer",
                ),
                Stale::Failed(e) => e,
            })
    }

    async fn connect(&self) -> Result<TcpStream> {
        match monoio::time::timeout(self.connect_timeout, TcpStream::connect(self.addr.as_str()))
            .await
        {
            Ok(Ok(c)) => {
                let _ = c.set_nodelay(true);
                Ok(c)
            }
            Ok(Err(e)) => Err(self
                .err(ErrorKind::UpstreamUnavailable, "connect")
                .with_source(e)),
            Err(_) => Err(self.err(ErrorKind::UpstreamUnavailable, "connect timed out")),
        }
    }

    async fn exchange(
        &self,
        caller: &Caller,
        mut conn: TcpStream,
        req: Bytes,
        want_id: Option<u64>,
    ) -> std::result::Result<(Answer, Option<String>), Stale> {
        let (res, _) = conn.write_all(req).await;
        if res.is_err() {
            return Err(Stale::Before);
        }
        let limits = Limits {
            max_header_bytes: 64 << 10,
            max_body_bytes: MAX_ANSWER,
        };
        let mut buf = BytesMut::with_capacity(16 << 10);
        let head = loop {
            match codec::parse_response_head(&buf, "POST", &limits) {
                Ok(Some(h)) => break h,
                Ok(None) => {}
                Err(e) => {
                    return Err(Stale::Failed(
                        self.err(ErrorKind::UpstreamProtocol, "bad response head")
                            .with_source(e),
                    ))
                }
            }
            let first = buf.is_empty();
            match read_more(&mut conn, &mut buf).await {
                Ok(0) | Err(_) if first => return Err(Stale::Before),
                Ok(0) => {
                    return Err(Stale::Failed(
                        self.err(ErrorKind::UpstreamUnavailable, "closed mid-answer"),
                    ))
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(Stale::Failed(
                        self.err(ErrorKind::UpstreamUnavailable, "read")
                            .with_source(e),
                    ))
                }
            }
        };
        let _ = buf.split_to(head.head_len);
        let session_id = head.header_str("mcp-session-id").map(str::to_string);
        let mut body = Body::new(&head, buf);
        let status = head.status;
        if status == 404 && want_id.is_some() {
            return Err(Stale::Failed(
                self.err(ErrorKind::UpstreamSessionExpired, "404"),
            ));
        }
        if !(200..300).contains(&status) {
            tracing::warn!(upstream = %self.name, status, "upstream answered with an HTTP error");
            let kind = if status >= 500 || status == 429 {
                ErrorKind::UpstreamUnavailable
            } else {
                ErrorKind::UpstreamProtocol
            };
            return Err(Stale::Failed(self.err(kind, &format!("HTTP {status}"))));
        }
        let sse = head.header_str("content-type").is_some_and(|c| {
            c.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
        });
        let answer = if status == 202 || matches!(head.body, BodyKind::Empty) {
            Answer::Accepted
        } else if sse {
            let Some(want) = want_id else {
                // A stream in answer to a notification: nothing to wait for.
                return Ok((Answer::Accepted, session_id));
            };
            let msg = self
                .read_sse_answer(caller, &mut conn, &mut body, want)
                .await
                .map_err(Stale::Failed)?;
            // Drain the end of the stream so the connection can be reused.
            let drained = monoio::time::timeout(DRAIN_WAIT, body.drain(&mut conn)).await;
            if !matches!(drained, Ok(Ok(()))) || !head.keep_alive {
                return Ok((Answer::Message(msg), session_id));
            }
            caller.pool.put(&self.addr, conn);
            return Ok((Answer::Message(msg), session_id));
        } else {
            let all = body
                .read_all(&mut conn)
                .await
                .map_err(|e| Stale::Failed(self.body_err(e)))?;
            if all.iter().all(u8::is_ascii_whitespace) {
                Answer::Accepted
            } else {
                Answer::Message(all)
            }
        };
        if head.keep_alive && body.finished() {
            caller.pool.put(&self.addr, conn);
        }
        Ok((answer, session_id))
    }

    fn body_err(&self, e: BodyFault) -> Error {
        match e {
            BodyFault::Io(e) => self
                .err(ErrorKind::UpstreamUnavailable, "reading the answer")
                .with_source(e),
            BodyFault::Closed => self.err(ErrorKind::UpstreamUnavailable, "closed mid-answer"),
            BodyFault::Bad(what) => self.err(ErrorKind::UpstreamProtocol, what),
        }
    }

    async fn read_sse_answer(
        &self,
        caller: &Caller,
        conn: &mut TcpStream,
        body: &mut Body,
        want: u64,
    ) -> Result<Bytes> {
        let mut dec = SseDecoder::new(MAX_ANSWER);
        let want = want.to_string();
        loop {
            let chunk = body.next_chunk(conn).await.map_err(|e| self.body_err(e))?;
            let Some(chunk) = chunk else {
                return Err(self.err(
                    ErrorKind::UpstreamUnavailable,
                    "stream ended without an answer",
                ));
            };
            let events = dec
                .feed(&chunk)
                .map_err(|_| self.err(ErrorKind::UpstreamProtocol, "SSE event too large"))?;
            for ev in events {
                if ev.data.is_empty() {
                    continue;
                }
                let frame = match caller.parser.borrow_mut().parse_one(ev.data.clone()) {
                    Ok(f) => f,
                    Err(e) => {
                        tracing::warn!(upstream = %self.name, error = %e, "invalid message on an upstream stream");
                        continue;
                    }
                };
                match frame.kind() {
                    Kind::Response if frame.id_raw().as_deref() == Some(want.as_bytes()) => {
                        return Ok(ev.data)
                    }
                    // TODO(core): relay notifications and server requests (session-semantics issue).
                    _ => {
                        tracing::debug!(upstream = %self.name, method = ?frame.method(), "upstream message during a call not relayed")
                    }
                }
            }
        }
    }
}

/// Why an exchange failed: before any answer byte (a stale pooled connection) or after.
enum Stale {
    Before,
    Failed(Error),
}

enum BodyFault {
    Io(std::io::Error),
    Closed,
    Bad(&'static str),
}

/// Reads a response body in its framing, chunk by chunk.
struct Body {
    kind: BodyKind,
    buf: BytesMut,
    remaining: u64,
    chunked: Option<ChunkedDecoder>,
    done: bool,
}

impl Body {
    fn new(head: &ResponseHead, buf: BytesMut) -> Self {
        let (remaining, chunked, done) = match head.body {
            BodyKind::Empty => (0, None, true),
            BodyKind::Length(n) => (n, None, n == 0),
            BodyKind::Chunked => (0, Some(ChunkedDecoder::new(MAX_ANSWER)), false),
            BodyKind::UntilClose => (u64::MAX, None, false),
        };
        Self {
            kind: head.body,
            buf,
            remaining,
            chunked,
            done,
        }
    }

    fn finished(&self) -> bool {
        self.done && !matches!(self.kind, BodyKind::UntilClose)
    }

    /// The next piece of decoded body; `None` at its end.
    async fn next_chunk(
        &mut self,
        conn: &mut TcpStream,
    ) -> std::result::Result<Option<Bytes>, BodyFault> {
        loop {
            if self.done {
                return Ok(None);
            }
            if let Some(dec) = self.chunked.as_mut() {
                let mut out = BytesMut::new();
                let end = dec
                    .decode(&mut self.buf, &mut out)
                    .map_err(|_| BodyFault::Bad("bad chunked body"))?;
                self.done = end;
                if !out.is_empty() {
                    return Ok(Some(out.freeze()));
                }
                if end {
                    return Ok(None);
                }
            } else if !self.buf.is_empty() {
                let take = (self.buf.len() as u64).min(self.remaining) as usize;
                self.remaining -= take as u64;
                let piece = self.buf.split_to(take).freeze();
                if self.remaining == 0 {
                    self.done = true;
                }
                return Ok(Some(piece));
            }
            match read_more(conn, &mut self.buf).await {
                Ok(0) if matches!(self.kind, BodyKind::UntilClose) => {
                    self.done = true;
                    return Ok(None);
                }
                Ok(0) => return Err(BodyFault::Closed),
                Ok(_) => {}
                Err(e) => return Err(BodyFault::Io(e)),
            }
        }
    }

    async fn read_all(&mut self, conn: &mut TcpStream) -> std::result::Result<Bytes, BodyFault> {
        let mut all = BytesMut::new();
        while let Some(c) = self.next_chunk(conn).await? {
            if all.len() + c.len() > MAX_ANSWER {
                return Err(BodyFault::Bad("answer too large"));
            }
            if all.is_empty() {
                all = BytesMut::from(&c[..]);
            } else {
                all.extend_from_slice(&c);
            }
        }
        Ok(all.freeze())
    }

    async fn drain(&mut self, conn: &mut TcpStream) -> std::result::Result<(), BodyFault> {
        while self.next_chunk(conn).await?.is_some() {}
        Ok(())
    }
}

/// Reads more bytes into `buf`, after the bytes it holds; returns how many (0 at EOF).
///
/// monoio reads into a buffer from its start, so the read goes into the spare capacity
/// through a `SliceMut` that begins at the current length.
pub(crate) async fn read_more(conn: &mut TcpStream, buf: &mut BytesMut) -> std::io::Result<usize> {
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(16 << 10);
    }
    let owned = std::mem::take(buf);
    let (len, cap) = (owned.len(), owned.capacity());
    let (res, slice) = conn.read(owned.slice_mut(len..cap)).await;
    *buf = slice.into_inner();
    res
}
