//! HTTP/1.1 framing shared by the three binaries: a read buffer that monoio fills in place,
//! request and response heads (parsed with `httparse`) and body framing (Content-Length,
//! chunked).
//!
//! It sits under the load generator's client, the fixture's server loop and the floor proxy.
//! It never looks inside a body (MCP lives in `mcp` and `fixture`) and never copies bytes it
//! does not have to: bodies stay in the read buffer unless they are chunked and a caller asks
//! for them de-chunked.

use std::{io, ops::Range};

use monoio::{
    buf::{IoBuf, IoBufMut},
    io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt},
};

#[cfg(test)]
mod tests;

/// Headers parsed per message at most; a message with more is malformed.
pub const MAX_HEADERS: usize = 32;
/// Largest head accepted, bytes (request line or status line plus headers).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Free room made before each read, bytes.
const MIN_READ: usize = 16 * 1024;
/// Longest chunk-size or trailer line accepted, bytes.
const MAX_LINE: usize = 1024;

/// A message that is not the HTTP/1.1 this crate speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// httparse rejected the head, or a header value is unusable.
    #[error("malformed HTTP head: {0}")]
    Malformed(&'static str),
    /// The head is larger than [`MAX_HEAD_BYTES`] or has more than [`MAX_HEADERS`] headers.
    #[error("HTTP head too large")]
    HeadTooLarge,
    /// A chunked body broke the chunk grammar.
    #[error("malformed chunked body")]
    BadChunk,
    /// A framing this crate does not implement (a Transfer-Encoding other than chunked).
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
}

/// Why a whole message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The socket failed.
    #[error("io: {0}")]
    Io(#[from] io::Error),
    /// The peer closed the connection before the message was complete.
    #[error("connection closed mid-message")]
    Closed,
    /// The bytes are not valid HTTP/1.1.
    #[error(transparent)]
    Http(#[from] HttpError),
}

// === impl ReadBuf ===

/// A growable read buffer: unconsumed bytes are `data()`, reads append after them.
///
/// monoio reads into a buffer from its start, so [`ReadBuf::fill`] hands the kernel the spare
/// capacity as a `slice_mut(len..capacity)` and takes the `Vec` back afterwards. If a read is
/// cancelled (a timeout dropped it) the buffer is gone with it and `ReadBuf` is empty: callers
/// drop the connection in that case anyway.
#[derive(Debug, Default)]
pub struct ReadBuf {
    buf: Vec<u8>,
    start: usize,
}

impl ReadBuf {
    /// An empty buffer with `capacity` bytes reserved.
    pub fn with_capacity(capacity: usize) -> Self {
        ReadBuf {
            buf: Vec::with_capacity(capacity),
            start: 0,
        }
    }

    /// The bytes read and not yet consumed.
    pub fn data(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or(&[])
    }

    /// Drops the first `n` unconsumed bytes (`n` is capped at what is there).
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.buf.len());
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }

    /// Drops everything (after a connection is closed).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.start = 0;
    }

    /// Reads once, appending; returns the bytes read (0 = the peer closed).
    pub async fn fill<R: AsyncReadRent>(&mut self, io: &mut R) -> io::Result<usize> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        if self.buf.capacity() - self.buf.len() < MIN_READ {
            self.buf.reserve(MIN_READ);
        }
        let buf = std::mem::take(&mut self.buf);
        let (len, cap) = (buf.len(), buf.capacity());
        let (res, slice) = io.read(buf.slice_mut(len..cap)).await;
        self.buf = slice.into_inner();
        res
    }

    /// Reads until at least `n` bytes are unconsumed.
    pub async fn fill_to<R: AsyncReadRent>(
        &mut self,
        io: &mut R,
        n: usize,
    ) -> Result<(), ReadError> {
        while self.data().len() < n {
            if self.buf.capacity() < n {
                self.buf.reserve(n - self.data().len());
            }
            if self.fill(io).await? == 0 {
                return Err(ReadError::Closed);
            }
        }
        Ok(())
    }

    /// Writes the first `n` unconsumed bytes to `io` without copying them. Nothing is
    /// consumed (the caller consumes once it no longer needs them, e.g. after a retry).
    pub async fn write_front<W: AsyncWriteRent>(&mut self, io: &mut W, n: usize) -> io::Result<()> {
        let start = self.start;
        let end = (start + n).min(self.buf.len());
        let buf = std::mem::take(&mut self.buf);
        let (res, slice) = io.write_all(buf.slice(start..end)).await;
        self.buf = slice.into_inner();
        res.map(|_| ())
    }
}

// === heads ===

/// How the body of a message is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLen {
    /// Exactly this many bytes (Content-Length, or 0 where the status has no body).
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the peer closes the connection (a response with neither header).
    UntilClose,
}

/// The media type of a response body, as far as MCP cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentType {
    /// `application/json`.
    Json,
    /// `text/event-stream`.
    EventStream,
    /// Anything else, or none.
    Other,
}

/// A parsed response head. Ranges index the buffer the head was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// Status code.
    pub status: u16,
    /// Length of the head including the blank line, bytes.
    pub len: usize,
    /// Body framing.
    pub body: BodyLen,
    /// Media type of the body.
    pub content_type: ContentType,
    /// Where the `Mcp-Session-Id` value is, if the header is present.
    pub session_id: Option<Range<usize>>,
    /// The server will close the connection after this response.
    pub close: bool,
}

/// Request method, as far as these servers care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// POST.
    Post,
    /// GET.
    Get,
    /// DELETE.
    Delete,
    /// Anything else.
    Other,
}

/// A parsed request head. Ranges index the buffer the head was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// Method.
    pub method: Method,
    /// Where the request target (path) is.
    pub path: Range<usize>,
    /// Length of the head including the blank line, bytes.
    pub len: usize,
    /// Body framing (`Length(0)` when the request has no body).
    pub body: BodyLen,
    /// The client asked to close the connection after this exchange (or spoke HTTP/1.0).
    pub close: bool,
    /// `Accept` allows `application/json` (or is absent, or allows anything).
    pub accepts_json: bool,
}

/// Parses a response head at the start of `data`; `Ok(None)` means more bytes are needed.
pub fn parse_response_head(data: &[u8]) -> Result<Option<ResponseHead>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut headers);
    let len = match res.parse(data) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return incomplete(data),
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadTooLarge),
        Err(_) => return Err(HttpError::Malformed("response head")),
    };
    let status = res.code.ok_or(HttpError::Malformed("status"))?;
    let mut framing = Framing::new(res.version == Some(0));
    let mut content_type = ContentType::Other;
    let mut session_id = None;
    for h in res.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-type") {
            content_type = media_type(h.value);
        } else if h.name.eq_ignore_ascii_case("mcp-session-id") {
            session_id = Some(range_in(data, h.value));
        } else {
            framing.header(h)?;
        }
    }
    // 1xx, 204 and 304 never have a body, whatever the headers say.
    let no_body = status < 200 || status == 204 || status == 304;
    let body = if no_body {
        BodyLen::Length(0)
    } else {
        framing.body_len(BodyLen::UntilClose)
    };
    Ok(Some(ResponseHead {
        status,
        len,
        body,
        content_type,
        session_id,
        close: framing.close,
    }))
}

/// Parses a request head at the start of `data`; `Ok(None)` means more bytes are needed.
pub fn parse_request_head(data: &[u8]) -> Result<Option<RequestHead>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(data) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return incomplete(data),
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadTooLarge),
        Err(_) => return Err(HttpError::Malformed("request head")),
    };
    let method = match req.method {
        Some("POST") => Method::Post,
        Some("GET") => Method::Get,
        Some("DELETE") => Method::Delete,
        _ => Method::Other,
    };
    let path = range_in(data, req.path.unwrap_or("").as_bytes());
    let mut framing = Framing::new(req.version == Some(0));
    let mut accepts_json = true;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("accept") {
            accepts_json = accept_allows_json(h.value);
        } else {
            framing.header(h)?;
        }
    }
    Ok(Some(RequestHead {
        method,
        path,
        len,
        body: framing.body_len(BodyLen::Length(0)),
        close: framing.close,
        accepts_json,
    }))
}

fn incomplete<T>(data: &[u8]) -> Result<Option<T>, HttpError> {
    if data.len() > MAX_HEAD_BYTES {
        Err(HttpError::HeadTooLarge)
    } else {
        Ok(None)
    }
}

/// The framing headers common to requests and responses.
struct Framing {
    length: Option<usize>,
    chunked: bool,
    close: bool,
}

impl Framing {
    fn new(http10: bool) -> Self {
        Framing {
            length: None,
            chunked: false,
            close: http10,
        }
    }

    fn header(&mut self, h: &httparse::Header<'_>) -> Result<(), HttpError> {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .ok_or(HttpError::Malformed("content-length"))?;
            if self.length.is_some_and(|m| m != n) {
                return Err(HttpError::Malformed("conflicting content-length"));
            }
            self.length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Only `chunked` alone is implemented; anything else cannot be delimited.
            if trim(h.value).eq_ignore_ascii_case(b"chunked") {
                self.chunked = true;
            } else {
                return Err(HttpError::Unsupported("transfer-encoding"));
            }
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = trim(token);
                if token.eq_ignore_ascii_case(b"close") {
                    self.close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    self.close = false;
                }
            }
        }
        Ok(())
    }

    /// Chunked wins over Content-Length (RFC 9112 6.3).
    fn body_len(&self, otherwise: BodyLen) -> BodyLen {
        if self.chunked {
            BodyLen::Chunked
        } else if let Some(n) = self.length {
            BodyLen::Length(n)
        } else {
            otherwise
        }
    }
}

fn media_type(value: &[u8]) -> ContentType {
    let essence = trim(value.split(|&b| b == b';').next().unwrap_or(b""));
    if essence.eq_ignore_ascii_case(b"application/json") {
        ContentType::Json
    } else if essence.eq_ignore_ascii_case(b"text/event-stream") {
        ContentType::EventStream
    } else {
        ContentType::Other
    }
}

fn accept_allows_json(value: &[u8]) -> bool {
    value.split(|&b| b == b',').any(|item| {
        let essence = trim(item.split(|&b| b == b';').next().unwrap_or(b""));
        essence.eq_ignore_ascii_case(b"application/json")
            || essence == b"*/*"
            || essence.eq_ignore_ascii_case(b"application/*")
    })
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// The position of `part` (a sub-slice handed out by httparse) inside `whole`.
fn range_in(whole: &[u8], part: &[u8]) -> Range<usize> {
    let start = (part.as_ptr() as usize).saturating_sub(whole.as_ptr() as usize);
    let start = start.min(whole.len());
    start..(start + part.len()).min(whole.len())
}

// === impl Chunked ===

/// Incremental decoder of a chunked body: feed it bytes as they arrive.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Chunked {
    state: ChunkState,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Expecting a chunk-size line.
    #[default]
    Size,
    /// Inside chunk data; this many bytes are left.
    Data(u64),
    /// Expecting the CRLF after chunk data.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one.
    Trailer,
    /// The body is complete.
    Done,
}

impl Chunked {
    /// True once the last chunk and the trailer section have been consumed.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Consumes what it can of `input` and returns how many bytes it consumed. Chunk data is
    /// appended to `out` when given (`None` only checks the framing, as a proxy does). Bytes
    /// after the end of the body are never consumed.
    pub fn feed(
        &mut self,
        input: &[u8],
        mut out: Option<&mut Vec<u8>>,
    ) -> Result<usize, HttpError> {
        let mut pos = 0;
        loop {
            let rest = &input[pos..];
            match self.state {
                ChunkState::Done => return Ok(pos),
                ChunkState::Size => match httparse::parse_chunk_size(rest) {
                    Ok(httparse::Status::Complete((n, size))) => {
                        pos += n;
                        self.state = if size == 0 {
                            ChunkState::Trailer
                        } else {
                            ChunkState::Data(size)
                        };
                    }
                    Ok(httparse::Status::Partial) if rest.len() <= MAX_LINE => return Ok(pos),
                    _ => return Err(HttpError::BadChunk),
                },
                ChunkState::Data(left) => {
                    let take = rest.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    if let Some(out) = out.as_deref_mut() {
                        out.extend_from_slice(&rest[..take]);
                    }
                    pos += take;
                    let left = left - take as u64;
                    if left > 0 {
                        self.state = ChunkState::Data(left);
                        return Ok(pos);
                    }
                    self.state = ChunkState::DataEnd;
                }
                ChunkState::DataEnd => match rest {
                    [b'\r', b'\n', ..] => {
                        pos += 2;
                        self.state = ChunkState::Size;
                    }
                    [] | [b'\r'] => return Ok(pos),
                    _ => return Err(HttpError::BadChunk),
                },
                ChunkState::Trailer => match memchr_newline(rest) {
                    Some(nl) => {
                        let line = &rest[..nl];
                        pos += nl + 1;
                        if line.is_empty() || line == b"\r" {
                            self.state = ChunkState::Done;
                        }
                    }
                    None if rest.len() <= MAX_LINE => return Ok(pos),
                    None => return Err(HttpError::BadChunk),
                },
            }
        }
    }
}

fn memchr_newline(s: &[u8]) -> Option<usize> {
    s.iter().position(|&b| b == b'\n')
}

// === whole messages ===

/// Where a read response's body is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyAt {
    /// In the read buffer at this range of `data()`; consume `Response::wire_len` afterwards.
    Buf(Range<usize>),
    /// De-chunked into the caller's scratch vector; the read buffer is already consumed.
    Scratch,
}

/// A response read completely off the wire.
#[derive(Debug, Clone)]
pub struct Response {
    /// The head. Its ranges index `data()` of the read buffer **only while `body` is `Buf`**.
    pub head: ResponseHead,
    /// The `Mcp-Session-Id` value, if present.
    pub session_id: Option<String>,
    /// Where the body is.
    pub body: BodyAt,
    /// Bytes on the wire (head and framed body).
    pub wire_len: usize,
    /// Bytes still to consume from the read buffer once the body has been used.
    pub pending: usize,
}

impl Response {
    /// The body bytes.
    pub fn body<'a>(&self, rb: &'a ReadBuf, scratch: &'a [u8]) -> &'a [u8] {
        match &self.body {
            BodyAt::Buf(r) => rb.data().get(r.clone()).unwrap_or(&[]),
            BodyAt::Scratch => scratch,
        }
    }
}

/// Reads one whole response from `io`. A chunked body is de-chunked into `scratch` (cleared
/// first); other bodies stay in `rb`. The caller consumes `pending` bytes of `rb` when done
/// with the body. `want_session` copies the `Mcp-Session-Id` value out.
pub async fn read_response<R: AsyncReadRent>(
    io: &mut R,
    rb: &mut ReadBuf,
    scratch: &mut Vec<u8>,
    want_session: bool,
) -> Result<Response, ReadError> {
    let head = loop {
        if let Some(head) = parse_response_head(rb.data())? {
            break head;
        }
        if rb.fill(io).await? == 0 {
            return Err(ReadError::Closed);
        }
    };
    let session_id = match (&head.session_id, want_session) {
        (Some(r), true) => rb
            .data()
            .get(r.clone())
            .map(|v| String::from_utf8_lossy(v).into_owned()),
        _ => None,
    };
    match head.body {
        BodyLen::Length(n) => {
            let total = head.len + n;
            rb.fill_to(io, total).await?;
            Ok(Response {
                body: BodyAt::Buf(head.len..total),
                head,
                session_id,
                wire_len: total,
                pending: total,
            })
        }
        BodyLen::Chunked => {
            scratch.clear();
            rb.consume(head.len);
            let mut wire_len = head.len;
            let mut dec = Chunked::default();
            loop {
                let n = dec.feed(rb.data(), Some(scratch))?;
                rb.consume(n);
                wire_len += n;
                if dec.is_done() {
                    break;
                }
                if rb.fill(io).await? == 0 {
                    return Err(ReadError::Closed);
                }
            }
            Ok(Response {
                head,
                session_id,
                body: BodyAt::Scratch,
                wire_len,
                pending: 0,
            })
        }
        BodyLen::UntilClose => {
            while rb.fill(io).await? > 0 {}
            let total = rb.data().len();
            Ok(Response {
                body: BodyAt::Buf(head.len..total),
                head: ResponseHead {
                    close: true,
                    ..head
                },
                session_id,
                wire_len: total,
                pending: total,
            })
        }
    }
}

/// The wire length of the message whose head (`head_len` bytes, framed by `body`) starts
/// `data`, or `None` if `data` does not hold all of it yet. `chunked` carries the decoder
/// state between calls (start with `Chunked::default()` and `*scanned = 0`).
pub fn framed_len(
    data: &[u8],
    head_len: usize,
    body: BodyLen,
    chunked: &mut Chunked,
    scanned: &mut usize,
) -> Result<Option<usize>, HttpError> {
    match body {
        BodyLen::Length(n) => Ok((data.len() >= head_len + n).then_some(head_len + n)),
        BodyLen::Chunked => {
            let from = head_len + *scanned;
            let rest = data.get(from..).unwrap_or(&[]);
            *scanned += chunked.feed(rest, None)?;
            Ok(chunked.is_done().then_some(head_len + *scanned))
        }
        BodyLen::UntilClose => Ok(None),
    }
}
