//! Sans-IO HTTP/1.1 codec (RFC 9112) for the gateway's front end and for its
//! client connections to upstream MCP servers.
//!
//! This module turns bytes into message heads and chunked bodies, and message
//! heads and chunks into bytes. It sits below the connection drivers: they own
//! the sockets and the buffers, hand the bytes they read to
//! [`parse_request_head`], [`parse_response_head`] and [`ChunkedDecoder`], and
//! write what [`write_response_head`], [`write_request_head`], [`write_chunk`]
//! and [`write_last_chunk`] produce.
//!
//! Head parsing is done by `httparse`; this module adds the framing rules on
//! top (Content-Length / Transfer-Encoding validation against request
//! smuggling, persistence, `Expect: 100-continue`) and the size limits.
//!
//! It never performs I/O, never allocates without a bound derived from
//! [`Limits`] or the caller's input, never panics on any input, never decodes
//! content codings (gzip etc.), and never writes a header line that contains
//! CR, LF or NUL.

use std::fmt::Write as _;

use bytes::{Buf, Bytes, BytesMut};

use crate::text::bytes_equal;

/// Maximum number of header fields accepted in one message head; a head with
/// more is rejected with [`HeadError::TooLarge`].
pub const MAX_HEADERS: usize = 64;

/// Maximum length in bytes of one chunk-size line or one trailer line,
/// including its CRLF. Longer lines are [`BodyError::Malformed`].
pub const MAX_CHUNK_LINE: usize = 4 * 1024;

/// Maximum total size in bytes of the trailer section of a chunked body
/// (all trailer lines including their CRLFs). Larger sections are
/// [`BodyError::Malformed`].
pub const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// Interim response sent to a client that asked for `Expect: 100-continue`.
pub const CONTINUE_100: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Size limits applied while parsing. Both values are in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum size of a message head (start line, header lines and the empty
    /// line that ends them). Default 16 KiB.
    pub max_header_bytes: usize,
    /// Maximum size of a decoded message body. A declared Content-Length
    /// above it is [`HeadError::BodyTooLarge`]; chunked bodies are checked by
    /// [`ChunkedDecoder`] when constructed with this value. Default 4 MiB.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 16 * 1024,
            max_body_bytes: 4 * 1024 * 1024,
        }
    }
}

/// The header fields of a parsed message: one copy of the head (field names lowercased in
/// it, carved from the thread's arena), followed in the same buffer by where each field's
/// name and value lie in it; nothing per field, and small enough (64 bytes) that a head
/// moves without a call to `memcpy`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fields {
    /// The head's copy, then per field (name start, name end, value start, value end) as
    /// four little-endian `u32`s, in the order received.
    raw: Bytes,
    /// Where the spans start in `raw` (the head copy's length).
    spans: u32,
    /// Number of fields.
    n: u8,
    /// For each of [`KNOWN`], 1 + the index of its first field (0: none), so that the
    /// gateway's own lookups do not walk the fields.
    first: [u8; KNOWN.len()],
    /// Bit `i`: [`KNOWN`]`[i]` appears more than once.
    repeated: u32,
}

/// Bytes per field of [`Fields`]' spans.
const SPAN_BYTES: usize = 16;

/// The field names the gateway looks up, indexed once per head. The first eight are the
/// [`SINGLETON_HEADERS`].
const KNOWN: [&str; 17] = [
    "host",
    "authorization",
    "x-api-key",
    "origin",
    "mcp-session-id",
    "last-event-id",
    "content-type",
    "content-length",
    "transfer-encoding",
    "connection",
    "expect",
    "accept",
    "mcp-protocol-version",
    "mcp-method",
    "mcp-name",
    "traceparent",
    "x-forwarded-for",
];

/// `content-length`'s index in [`KNOWN`].
const CONTENT_LENGTH: usize = 7;

/// The index of a lowercase field name in [`KNOWN`]: a switch on the length and the first
/// byte, then one comparison. Inlined so that a lookup by a literal name folds to a
/// constant.
#[inline(always)]
fn known(name: &[u8]) -> Option<usize> {
    Some(match (name.len(), name.first().copied().unwrap_or(0)) {
        (4, b'h') if name == b"host" => 0,
        (13, b'a') if name == b"authorization" => 1,
        (9, b'x') if name == b"x-api-key" => 2,
        (6, b'o') if name == b"origin" => 3,
        (14, b'm') if name == b"mcp-session-id" => 4,
        (13, b'l') if name == b"last-event-id" => 5,
        (12, b'c') if name == b"content-type" => 6,
        (14, b'c') if name == b"content-length" => 7,
        (17, b't') if name == b"transfer-encoding" => 8,
        (10, b'c') if name == b"connection" => 9,
        (6, b'e') if name == b"expect" => 10,
        (6, b'a') if name == b"accept" => 11,
        (20, b'm') if name == b"mcp-protocol-version" => 12,
        (10, b'm') if name == b"mcp-method" => 13,
        (8, b'm') if name == b"mcp-name" => 14,
        (11, b't') if name == b"traceparent" => 15,
        (15, b'x') if name == b"x-forwarded-for" => 16,
        _ => return None,
    })
}

/// One header field, borrowed from its [`Fields`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    /// Field name, ASCII-lowercased. Always a valid RFC 9110 token (so ASCII).
    pub name: &'a [u8],
    /// Field value as received, without leading/trailing whitespace (as
    /// trimmed by `httparse`). May contain non-UTF-8 bytes (obs-text) but
    /// never CR, LF or NUL.
    pub value: &'a [u8],
}

impl Fields {
    /// Number of fields.
    pub fn len(&self) -> usize {
        usize::from(self.n)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The fields in the order received.
    pub fn iter(&self) -> impl Iterator<Item = Field<'_>> {
        (0..self.len()).filter_map(|i| self.field(i))
    }

    /// The field at `i`.
    #[inline]
    fn field(&self, i: usize) -> Option<Field<'_>> {
        if i >= self.len() {
            return None;
        }
        let at = self.spans as usize + i * SPAN_BYTES;
        let s: &[u8; SPAN_BYTES] = self.raw.get(at..at + SPAN_BYTES)?.try_into().ok()?;
        let word = |k: usize| {
            u32::from_le_bytes([s[4 * k], s[4 * k + 1], s[4 * k + 2], s[4 * k + 3]]) as usize
        };
        let head = self.raw.get(..self.spans as usize)?;
        Some(Field {
            name: head.get(word(0)..word(1))?,
            value: head.get(word(2)..word(3))?,
        })
    }

    /// The value of the first field named `name`: through the index for a [`KNOWN`] name,
    /// else by walking the fields (ASCII case-insensitive).
    #[inline(always)]
    fn first_value(&self, name: &str) -> Option<&[u8]> {
        match known(name.as_bytes()) {
            Some(k) => {
                let i = usize::from(*self.first.get(k)?).checked_sub(1)?;
                self.field(i).map(|f| f.value)
            }
            None => self
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name.as_bytes()))
                .map(|h| h.value),
        }
    }

    /// The value of the field whose name is `KNOWN[k]`, when there is exactly one.
    #[inline]
    fn sole(&self, k: usize) -> Option<&[u8]> {
        let i = usize::from(*self.first.get(k)?).checked_sub(1)?;
        if self.repeated & (1 << k) != 0 {
            return None;
        }
        self.field(i).map(|f| f.value)
    }

    /// The values of every field named `name`, in order; a [`KNOWN`] name's walk starts at
    /// its first field, and ends there unless the name is repeated.
    #[inline(always)]
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        let all = self.len();
        let (start, end) = match known(name.as_bytes()) {
            Some(k) => match self.first.get(k).copied().unwrap_or(0) {
                0 => (all, all),
                i if self.repeated & (1 << k) == 0 => (usize::from(i) - 1, usize::from(i)),
                i => (usize::from(i) - 1, all),
            },
            None => (0, all),
        };
        (start..end)
            .filter_map(|i| self.field(i))
            .filter(move |h| h.name.eq_ignore_ascii_case(name.as_bytes()))
            .map(|h| h.value)
    }

    /// The head's bytes at `span` (a span this head's parse recorded).
    #[inline]
    fn bytes_at(&self, span: [u32; 2]) -> &[u8] {
        self.raw
            .get(span[0] as usize..span[1] as usize)
            .unwrap_or_default()
    }

    /// The head's text at `span` (empty if it is not UTF-8).
    fn text(&self, span: [u32; 2]) -> &str {
        std::str::from_utf8(self.bytes_at(span)).unwrap_or_default()
    }
}

/// How the body of a message is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body bytes follow the head. Also used for `Content-Length: 0`.
    Empty,
    /// Exactly this many body bytes follow the head. Always `> 0` and
    /// `<= Limits::max_body_bytes`.
    Length(u64),
    /// The body uses the chunked transfer coding; decode it with
    /// [`ChunkedDecoder`].
    Chunked,
    /// The body extends until the peer closes the connection. Only produced
    /// for responses; the connection is then never kept alive.
    UntilClose,
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// Where the method, the target and the path lie in the head's copy.
    line: [[u32; 2]; 3],
    /// HTTP minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Header fields in the order received.
    pub headers: Fields,
    /// Body framing; never [`BodyKind::UntilClose`] for a request.
    pub body: BodyKind,
    /// Whether the connection may be reused after this request/response
    /// exchange, per the version default and the `Connection` header.
    pub keep_alive: bool,
    /// Whether the client sent `Expect: 100-continue` in an HTTP/1.1 request
    /// (the expectation is ignored for HTTP/1.0, as RFC 9110 requires).
    pub expect_continue: bool,
    /// Number of bytes the head occupies at the start of the parsed buffer;
    /// the body (if any) starts at this offset.
    pub head_len: usize,
}

impl RequestHead {
    /// Request method, case preserved (methods are case-sensitive).
    pub fn method(&self) -> &str {
        self.headers.text(self.line[0])
    }

    /// [`RequestHead::method`] as bytes (no UTF-8 check: for comparing).
    #[inline]
    pub fn method_bytes(&self) -> &[u8] {
        self.headers.bytes_at(self.line[0])
    }

    /// Request target exactly as sent (origin-form, absolute-form, `*`, ...).
    pub fn target(&self) -> &str {
        self.headers.text(self.line[1])
    }

    /// [`RequestHead::path`] as bytes (no UTF-8 check: for comparing).
    #[inline]
    pub fn path_bytes(&self) -> &[u8] {
        match self.line[2] {
            [0, 0] => b"/",
            span => self.headers.bytes_at(span),
        }
    }

    /// The target without its `?query`. For an absolute-form target
    /// (`http://host/p?q`) this is only the path part (`/p`, or `/` when the
    /// URI has no path).
    pub fn path(&self) -> &str {
        match self.line[2] {
            // An absolute-form target without a path.
            [0, 0] => "/",
            span => self.headers.text(span),
        }
    }

    /// Value of the first header named `name` (ASCII case-insensitive), if any.
    #[inline]
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        find_header(&self.headers, name)
    }

    /// Value of the first header named `name` (ASCII case-insensitive), if
    /// present and valid UTF-8.
    #[inline]
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Values of every header named `name` (ASCII case-insensitive), in order.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        header_values(&self.headers, name)
    }

    /// The value of the header named `name` when it appears at most once (`Ok(None)`: not
    /// at all); `Err` when it appears more than once. Through the head's index for a name
    /// it keeps (see `KNOWN`), else by walking the fields.
    #[inline(always)]
    pub fn single<'a>(&'a self, name: &'a str) -> Result<Option<&'a [u8]>, Repeated> {
        let h = &self.headers;
        match known(name.as_bytes()) {
            Some(k) if h.repeated & (1 << k) != 0 => Err(Repeated),
            Some(k) => Ok(h.sole(k)),
            None => {
                let mut values = h.values(name);
                match (values.next(), values.next()) {
                    (_, Some(_)) => Err(Repeated),
                    (v, None) => Ok(v),
                }
            }
        }
    }
}

/// A header that was to appear at most once appears more than once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repeated;

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// Status code, three digits (100..=999).
    pub status: u16,
    /// HTTP minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Header fields in the order received.
    pub headers: Fields,
    /// Body framing. [`BodyKind::Empty`] for responses to HEAD and for 1xx,
    /// 204 and 304 responses, whatever their headers say.
    pub body: BodyKind,
    /// Whether the connection may be reused after this response. Always
    /// false when `body` is [`BodyKind::UntilClose`].
    pub keep_alive: bool,
    /// Number of bytes the head occupies at the start of the parsed buffer.
    pub head_len: usize,
}

impl ResponseHead {
    /// Value of the first header named `name` (ASCII case-insensitive), if any.
    #[inline]
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        find_header(&self.headers, name)
    }

    /// Value of the first header named `name` (ASCII case-insensitive), if
    /// present and valid UTF-8.
    #[inline]
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Values of every header named `name` (ASCII case-insensitive), in order.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        header_values(&self.headers, name)
    }
}

/// Why a message head was rejected. After any of these the connection's
/// framing is unknown: answer (for requests) and close.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// The head exceeds `max_header_bytes` or has more than [`MAX_HEADERS`]
    /// header fields (431).
    #[error("message head too large")]
    TooLarge,
    /// The head is not valid HTTP/1.x or has invalid/ambiguous framing (400).
    /// The string is a short reason for the log, never for the peer.
    #[error("malformed message head: {0}")]
    Malformed(&'static str),
    /// The declared Content-Length exceeds `max_body_bytes` (413).
    #[error("declared body too large")]
    BodyTooLarge,
    /// Transfer-Encoding is something other than exactly `chunked` (501).
    #[error("unsupported transfer encoding")]
    UnsupportedTransferEncoding,
}

impl HeadError {
    /// The HTTP status code to answer a request that failed this way:
    /// 431, 400, 413 or 501.
    pub fn status(&self) -> u16 {
        match self {
            HeadError::TooLarge => 431,
            HeadError::Malformed(_) => 400,
            HeadError::BodyTooLarge => 413,
            HeadError::UnsupportedTransferEncoding => 501,
        }
    }
}

#[inline(always)]
fn find_header<'a>(headers: &'a Fields, name: &str) -> Option<&'a [u8]> {
    headers.first_value(name)
}

fn header_values<'a>(headers: &'a Fields, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
    headers.values(name)
}

fn httparse_reason(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid token",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "invalid HTTP version",
    }
}

/// Parses the head of a request at the start of `buf`.
///
/// Returns `Ok(None)` when `buf` does not yet hold a complete head (then
/// `buf.len() < limits.max_header_bytes`), `Ok(Some(head))` when it does (the
/// body, if any, starts at `head.head_len`), and `Err(HeadError::TooLarge)`
/// once `buf` holds `max_header_bytes` bytes without a complete head. Bytes
/// beyond `max_header_bytes` are never looked at.
///
/// Framing rules (RFC 9112 §6): both Content-Length and Transfer-Encoding,
/// Transfer-Encoding in an HTTP/1.0 request, Content-Length values that are
/// not all-digits or that disagree (across repeated fields or within a
/// comma list) are [`HeadError::Malformed`]; Transfer-Encoding other than
/// exactly `chunked` is [`HeadError::UnsupportedTransferEncoding`]; a
/// Content-Length above `max_body_bytes` (or too large for `u64`) is
/// [`HeadError::BodyTooLarge`]; a request with neither has an empty body.
///
/// Hygiene (400, [`HeadError::Malformed`]): a line ending in a bare LF anywhere in the head,
/// a repeated [`SINGLETON_HEADERS`] field, an HTTP/1.1 request without `Host`.
pub fn parse_request_head(buf: &[u8], limits: &Limits) -> Result<Option<RequestHead>, HeadError> {
    let window = buf.get(..limits.max_header_bytes).unwrap_or(buf);
    // Left uninitialized: httparse writes the fields it finds (zeroing 64 slots cost more
    // than parsing a usual head's names).
    let mut slots = [std::mem::MaybeUninit::uninit(); MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let head_len = match req.parse_with_uninit_headers(window, &mut slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if window.len() >= limits.max_header_bytes {
                Err(HeadError::TooLarge)
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(e) => return Err(HeadError::Malformed(httparse_reason(e))),
    };
    let method = req.method.ok_or(HeadError::Malformed("missing method"))?;
    let target = req.path.ok_or(HeadError::Malformed("missing target"))?;
    let minor_version = req.version.ok_or(HeadError::Malformed("missing version"))?;
    // httparse accepts a bare LF as a line ending; RFC 9112 §2.2 lets a server refuse it,
    // and a peer that splits lines differently from an intermediary is a smuggling vector.
    if has_bare_lf(window.get(..head_len).unwrap_or_default()) {
        return Err(HeadError::Malformed("bare LF in the head"));
    }
    let head = window.get(..head_len).unwrap_or_default();
    let headers = convert_headers(req.headers, head)?;
    check_singletons(&headers, minor_version)?;
    let span = |s: &str| span_in(head, s.as_bytes()).ok_or(HeadError::TooLarge);
    let path = path_of(target);
    // An absolute-form target without a path has "/" for its path, which is not in the head.
    let line = [
        span(method)?,
        span(target)?,
        span_in(head, path.as_bytes()).unwrap_or([0, 0]),
    ];

    let has_cl = find_header(&headers, "content-length").is_some();
    let has_te = find_header(&headers, "transfer-encoding").is_some();
    let body = if has_cl && has_te {
        return Err(HeadError::Malformed(
            "both Content-Length and Transfer-Encoding",
        ));
    } else if has_te {
        if minor_version == 0 {
            return Err(HeadError::Malformed("Transfer-Encoding in HTTP/1.0"));
        }
        check_chunked(&headers)?;
        BodyKind::Chunked
    } else if has_cl {
        length_body(&headers, limits)?
    } else {
        BodyKind::Empty
    };

    let keep_alive = keep_alive(&headers, minor_version);
    let expect_continue = minor_version >= 1
        && header_values(&headers, "expect")
            .flat_map(list_elements)
            .any(|t| t.eq_ignore_ascii_case(b"100-continue"));

    Ok(Some(RequestHead {
        line,
        minor_version,
        headers,
        body,
        keep_alive,
        expect_continue,
        head_len,
    }))
}

/// Parses the head of a response at the start of `buf`, received in answer
/// to a request with method `request_method` (compared case-sensitively, as
/// methods are).
///
/// Same incremental contract and limits as [`parse_request_head`]. Responses
/// to `HEAD` and 1xx, 204 and 304 responses always have
/// [`BodyKind::Empty`] and their framing headers are not examined (a 1xx
/// head is returned like any other; the caller then parses the next head).
/// Otherwise the request rules apply (both Content-Length and
/// Transfer-Encoding is also rejected for responses, as RFC 9112 §6.3 allows),
/// and a response with neither has [`BodyKind::UntilClose`] and
/// `keep_alive == false`.
pub fn parse_response_head(
    buf: &[u8],
    request_method: &str,
    limits: &Limits,
) -> Result<Option<ResponseHead>, HeadError> {
    let window = buf.get(..limits.max_header_bytes).unwrap_or(buf);
    let mut slots = [std::mem::MaybeUninit::uninit(); MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let head_len = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, window, &mut slots)
    {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if window.len() >= limits.max_header_bytes {
                Err(HeadError::TooLarge)
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(e) => return Err(HeadError::Malformed(httparse_reason(e))),
    };
    let status = resp.code.ok_or(HeadError::Malformed("missing status"))?;
    if !(100..=999).contains(&status) {
        // httparse reads three digits, so `033` would be 33.
        return Err(HeadError::Malformed("status out of range"));
    }
    let minor_version = resp
        .version
        .ok_or(HeadError::Malformed("missing version"))?;
    let headers = convert_headers(resp.headers, window.get(..head_len).unwrap_or_default())?;

    let no_body =
        request_method == "HEAD" || (100..200).contains(&status) || status == 204 || status == 304;
    let has_cl = find_header(&headers, "content-length").is_some();
    let has_te = find_header(&headers, "transfer-encoding").is_some();
    let body = if no_body {
        BodyKind::Empty
    } else if has_cl && has_te {
        return Err(HeadError::Malformed(
            "both Content-Length and Transfer-Encoding",
        ));
    } else if has_te {
        if minor_version == 0 {
            return Err(HeadError::Malformed("Transfer-Encoding in HTTP/1.0"));
        }
        check_chunked(&headers)?;
        BodyKind::Chunked
    } else if has_cl {
        length_body(&headers, limits)?
    } else {
        BodyKind::UntilClose
    };
    let keep_alive = body != BodyKind::UntilClose && keep_alive(&headers, minor_version);

    Ok(Some(ResponseHead {
        status,
        minor_version,
        headers,
        body,
        keep_alive,
        head_len,
    }))
}

/// Request header fields that may appear at most once: the ones the gateway decides on
/// (whose "first wins" reading an intermediary may not share) and the framing ones. A
/// repeated one is [`HeadError::Malformed`]. `Mcp-Protocol-Version`, `Mcp-Method` and
/// `Mcp-Name` are not here: the MCP endpoint answers their repetition with its own code
/// (-32020).
pub const SINGLETON_HEADERS: &[&str] = KNOWN.as_slice().split_at(8).0;

/// Whether any LF in `head` lacks the CR before it.
fn has_bare_lf(head: &[u8]) -> bool {
    let bare =
        |i: usize| head.get(i) == Some(&b'\n') && (i == 0 || head.get(i - 1) != Some(&b'\r'));
    // Eight bytes at a time (a head's lines are short: a vector search per line costs more).
    // A word's flags mark every LF in it, and may mark a byte above one that is not: each
    // flagged byte is looked at.
    let mut words = head.chunks_exact(8);
    let mut at = 0;
    for w in &mut words {
        let mut flags = bytes_equal(w.try_into().map_or(0, u64::from_le_bytes), b'\n');
        while flags != 0 {
            if bare(at + (flags.trailing_zeros() / 8) as usize) {
                return true;
            }
            flags &= flags - 1;
        }
        at += 8;
    }
    (at..head.len()).any(bare)
}

/// Refuses a repeated [`SINGLETON_HEADERS`] field, and an HTTP/1.1 request without `Host`
/// (RFC 9112 §3.2), from the index [`convert_headers`] built.
fn check_singletons(headers: &Fields, minor_version: u8) -> Result<(), HeadError> {
    const SINGLETONS: u32 = (1 << SINGLETON_HEADERS.len()) - 1;
    if headers.repeated & SINGLETONS != 0 {
        return Err(HeadError::Malformed("repeated header field"));
    }
    if minor_version >= 1 && headers.first[0] == 0 {
        return Err(HeadError::Malformed("HTTP/1.1 request without Host"));
    }
    Ok(())
}

/// The host a request names: the authority of an absolute-form target, which overrides
/// `Host` (RFC 9112 3.2.2), else the `Host` header.
pub fn request_host(req: &RequestHead) -> Option<&[u8]> {
    let t = req.headers.bytes_at(req.line[1]);
    let scheme = [&b"http://"[..], b"https://"]
        .into_iter()
        .find(|s| t.get(..s.len()).is_some_and(|p| p.eq_ignore_ascii_case(s)));
    match scheme {
        Some(s) => {
            let rest = &t[s.len()..];
            let end = rest
                .iter()
                .position(|c| matches!(c, b'/' | b'?' | b'#'))
                .unwrap_or(rest.len());
            // Userinfo (`user@host`) is not part of the host.
            let authority = &rest[..end];
            Some(match memchr::memrchr(b'@', authority) {
                Some(at) => &authority[at + 1..],
                None => authority,
            })
        }
        None => req.header("host"),
    }
}

/// Whether a request carrying `Host: host` (`None`: no Host, possible only in HTTP/1.0) may
/// be served by a listener on a loopback address (`loopback`) or another one, given the
/// configured `allowed` names (lowercase, without port; `*` allows any).
///
/// Loopback names (`localhost`, `127.0.0.0/8` literals, `[::1]`, with any port) are always
/// allowed, and so are the `allowed` names. When `allowed` is empty a listener on a
/// non-loopback address allows any name (it is reached by names the gateway cannot know),
/// and a loopback one only loopback names: a browser page on a DNS name that resolves to
/// 127.0.0.1 (DNS rebinding) sends that name. No allocation.
pub fn host_allowed(host: Option<&[u8]>, loopback: bool, allowed: &[String]) -> bool {
    let Some(host) = host else {
        return true;
    };
    let Some(name) = host_name(host) else {
        return false;
    };
    if is_loopback_name(name) {
        return true;
    }
    if allowed.is_empty() {
        return !loopback;
    }
    allowed
        .iter()
        .any(|a| a == "*" || a.as_bytes().eq_ignore_ascii_case(name))
}

/// The name part of a `Host` value (`name`, `name:port`, `[v6]`, `[v6]:port`); `None` when
/// the port is not digits or the value is empty.
fn host_name(host: &[u8]) -> Option<&[u8]> {
    let (name, port) = if host.first() == Some(&b'[') {
        let close = memchr::memchr(b']', host)?;
        let (name, rest) = host.split_at(close + 1);
        match rest {
            [] => (name, &b""[..]),
            [b':', port @ ..] => (name, port),
            _ => return None,
        }
    } else {
        match memchr::memchr(b':', host) {
            Some(i) => (host.get(..i)?, host.get(i + 1..)?),
            None => (host, &b""[..]),
        }
    };
    (!name.is_empty() && port.iter().all(u8::is_ascii_digit)).then_some(name)
}

fn is_loopback_name(name: &[u8]) -> bool {
    if name == b"127.0.0.1" || name.eq_ignore_ascii_case(b"localhost") || name == b"[::1]" {
        return true;
    }
    std::str::from_utf8(name)
        .ok()
        .and_then(|s| s.parse::<std::net::Ipv4Addr>().ok())
        .is_some_and(|ip| ip.is_loopback())
}

/// Where `s`, a slice of `head`, lies in it (httparse's slices always do).
fn span_in(head: &[u8], s: &[u8]) -> Option<[u32; 2]> {
    let start = (s.as_ptr() as usize).checked_sub(head.as_ptr() as usize)?;
    let end = start.checked_add(s.len())?;
    if end > head.len() {
        return None;
    }
    Some([u32::try_from(start).ok()?, u32::try_from(end).ok()?])
}

/// The fields httparse found in `head` (the head's bytes, which its slices point into): one
/// copy of the head with the names lowercased in it, followed by the spans of names and
/// values.
fn convert_headers(raw: &[httparse::Header<'_>], head: &[u8]) -> Result<Fields, HeadError> {
    // MAX_HEADERS (64) fields at most, so the indexes and the count fit a byte.
    let n = u8::try_from(raw.len()).map_err(|_| HeadError::TooLarge)?;
    let spans = u32::try_from(head.len()).map_err(|_| HeadError::TooLarge)?;
    let mut first = [0u8; KNOWN.len()];
    let mut repeated = 0u32;
    let mut fault = false;
    let raw = crate::arena::build(head.len() + raw.len() * SPAN_BYTES, |copy| {
        copy.extend_from_slice(head);
        for (i, h) in raw.iter().enumerate() {
            let (Some([ns, ne]), value) = (span_in(head, h.name.as_bytes()), h.value) else {
                fault = true;
                return;
            };
            let [vs, ve] = match value {
                // httparse gives an empty value as a slice that may lie outside the head.
                [] => [ne, ne],
                v => match span_in(head, v) {
                    Some(s) => s,
                    None => {
                        fault = true;
                        return;
                    }
                },
            };
            let mut span = [0u8; SPAN_BYTES];
            for (k, w) in [ns, ne, vs, ve].into_iter().enumerate() {
                span[4 * k..4 * k + 4].copy_from_slice(&w.to_le_bytes());
            }
            copy.extend_from_slice(&span);
            let Some(name) = copy.get_mut(ns as usize..ne as usize) else {
                continue;
            };
            crate::text::ascii_lowercase(name);
            let Some(k) = known(name) else {
                continue;
            };
            match first.get_mut(k) {
                Some(slot @ 0) => *slot = u8::try_from(i + 1).unwrap_or(u8::MAX),
                Some(_) => repeated |= 1 << k,
                None => {}
            }
        }
    });
    if fault {
        return Err(HeadError::TooLarge);
    }
    Ok(Fields {
        raw,
        spans,
        n,
        first,
        repeated,
    })
}

/// Elements of a comma-separated header list, trimmed of optional whitespace,
/// with empty elements dropped (RFC 9110 §5.6.1).
fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Accepts only a Transfer-Encoding whose complete coding list (over all
/// Transfer-Encoding fields) is exactly `chunked`.
fn check_chunked(headers: &Fields) -> Result<(), HeadError> {
    let mut codings = header_values(headers, "transfer-encoding").flat_map(list_elements);
    match (codings.next(), codings.next()) {
        (None, _) => Err(HeadError::Malformed("empty Transfer-Encoding")),
        (Some(c), None) if c.eq_ignore_ascii_case(b"chunked") => Ok(()),
        _ => Err(HeadError::UnsupportedTransferEncoding),
    }
}

/// Body kind for a message carrying Content-Length (at least one field).
fn length_body(headers: &Fields, limits: &Limits) -> Result<BodyKind, HeadError> {
    // The usual case: one field, one number of at most 18 digits (no overflow).
    if let Some(v) = headers.sole(CONTENT_LENGTH) {
        if !v.is_empty() && v.len() <= 18 && v.iter().all(u8::is_ascii_digit) {
            let n = v
                .iter()
                .fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0'));
            return length_kind(n, limits);
        }
    }
    let mut seen: Option<u64> = None;
    let mut overflow = false;
    for value in header_values(headers, "content-length") {
        for element in value.split(|&b| b == b',').map(trim_ows) {
            if element.is_empty() || !element.iter().all(u8::is_ascii_digit) {
                return Err(HeadError::Malformed("invalid Content-Length"));
            }
            let parsed = element.iter().try_fold(0u64, |acc, &d| {
                acc.checked_mul(10)?
                    .checked_add(u64::from(char::from(d).to_digit(10)?))
            });
            let n = match parsed {
                Some(n) => n,
                None => {
                    overflow = true;
                    u64::MAX
                }
            };
            match seen {
                Some(prev) if prev != n => {
                    return Err(HeadError::Malformed("conflicting Content-Length"));
                }
                _ => seen = Some(n),
            }
        }
    }
    let n = seen.ok_or(HeadError::Malformed("invalid Content-Length"))?;
    if overflow {
        return Err(HeadError::BodyTooLarge);
    }
    length_kind(n, limits)
}

/// The body of a message whose Content-Length is `n`.
fn length_kind(n: u64, limits: &Limits) -> Result<BodyKind, HeadError> {
    let max = u64::try_from(limits.max_body_bytes).unwrap_or(u64::MAX);
    match n {
        n if n > max => Err(HeadError::BodyTooLarge),
        0 => Ok(BodyKind::Empty),
        n => Ok(BodyKind::Length(n)),
    }
}

/// Persistence per RFC 9112 §9.3: `close` in any Connection field ends the
/// connection; otherwise HTTP/1.1 persists and HTTP/1.0 persists only with
/// `keep-alive`.
fn keep_alive(headers: &Fields, minor_version: u8) -> bool {
    let mut close = false;
    let mut keep = false;
    for token in header_values(headers, "connection").flat_map(list_elements) {
        if token.eq_ignore_ascii_case(b"close") {
            close = true;
        } else if token.eq_ignore_ascii_case(b"keep-alive") {
            keep = true;
        }
    }
    !close && (minor_version >= 1 || keep)
}

/// The path part of a request target: the query is removed, and for an
/// absolute-form target the scheme and authority are removed too.
fn path_of(target: &str) -> &str {
    // An origin-form target without a query, the usual case, is its own path.
    if target.starts_with('/') && memchr::memchr(b'?', target.as_bytes()).is_none() {
        return target;
    }
    let no_query = target.split_once('?').map_or(target, |(p, _)| p);
    let after_scheme = ["http://", "https://"].iter().find_map(|scheme| {
        let prefix = no_query.get(..scheme.len())?;
        if prefix.eq_ignore_ascii_case(scheme) {
            no_query.get(scheme.len()..)
        } else {
            None
        }
    });
    match after_scheme {
        Some(rest) => rest.find('/').and_then(|i| rest.get(i..)).unwrap_or("/"),
        None => no_query,
    }
}

/// Why a chunked body was rejected. The decoder stays in the failed state and
/// returns the same error from every later call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// The chunked framing is invalid (400). The string is for the log.
    #[error("malformed chunked body: {0}")]
    Malformed(&'static str),
    /// The decoded body would exceed the decoder's maximum (413).
    #[error("body too large")]
    TooLarge,
}

impl BodyError {
    /// The HTTP status code to answer a request that failed this way: 400 or 413.
    pub fn status(&self) -> u16 {
        match self {
            BodyError::Malformed(_) => 400,
            BodyError::TooLarge => 413,
        }
    }
}

/// Where a [`ChunkedDecoder`] is in the chunked body grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Waiting for a complete chunk-size line.
    SizeLine,
    /// Inside chunk data; this many bytes remain.
    Data(u64),
    /// After chunk data; expecting CR (`false`) or LF (`true`).
    DataEnd { seen_cr: bool },
    /// Waiting for a complete trailer line (or the final empty line).
    Trailer,
    /// Terminating chunk and trailer section consumed.
    Done,
    /// An error was returned; it is returned again.
    Failed(BodyError),
}

/// Incremental decoder for the chunked transfer coding (RFC 9112 §7.1), for
/// request and response bodies alike.
///
/// Chunk extensions are validated loosely (no control characters) and
/// dropped; trailer fields are validated loosely (must contain `:` and not be
/// folded) and dropped. Every line must end in CRLF. The total of declared
/// chunk sizes may not exceed the maximum given to [`ChunkedDecoder::new`].
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    /// Current position in the grammar.
    state: ChunkState,
    /// Maximum total of chunk sizes, in bytes.
    max_body: u64,
    /// Sum of the chunk sizes accepted so far; never above `max_body`.
    total: u64,
    /// Bytes of trailer section consumed so far; never above
    /// [`MAX_TRAILER_BYTES`].
    trailer_bytes: usize,
    /// Bytes at the front of the input already scanned for LF without
    /// finding one (avoids rescanning when input arrives byte by byte).
    scanned: usize,
}

impl ChunkedDecoder {
    /// A decoder for one chunked body whose decoded size may be at most
    /// `max_body` bytes.
    pub fn new(max_body: usize) -> Self {
        ChunkedDecoder {
            state: ChunkState::SizeLine,
            max_body: u64::try_from(max_body).unwrap_or(u64::MAX),
            total: 0,
            trailer_bytes: 0,
            scanned: 0,
        }
    }

    /// Total decoded body bytes announced so far (sum of chunk sizes seen).
    pub fn decoded_len(&self) -> u64 {
        self.total
    }

    /// Whether the whole body (including trailers) has been consumed.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Consumes as much of `input` as it can (advancing it) and appends the
    /// decoded data to `out`.
    ///
    /// Returns `Ok(true)` once the terminating chunk and the trailer section
    /// have been consumed; bytes after them stay in `input` (they belong to
    /// the next pipelined message), and later calls return `Ok(true)` without
    /// consuming anything. Returns `Ok(false)` when all of `input` that could
    /// be used was used and more is needed: an incomplete line is left in
    /// `input` (the caller appends to it and calls again). The caller must
    /// only append to `input` between calls.
    ///
    /// On error, data decoded earlier in the same call stays in `out`, and the
    /// decoder returns the same error forever after.
    pub fn decode(&mut self, input: &mut BytesMut, out: &mut BytesMut) -> Result<bool, BodyError> {
        match self.run(input, out) {
            Ok(done) => Ok(done),
            Err(e) => {
                self.state = ChunkState::Failed(e);
                Err(e)
            }
        }
    }

    fn run(&mut self, input: &mut BytesMut, out: &mut BytesMut) -> Result<bool, BodyError> {
        loop {
            match self.state {
                ChunkState::Failed(e) => return Err(e),
                ChunkState::Done => return Ok(true),
                ChunkState::SizeLine => {
                    let Some(line_len) = self.find_line(input, true)? else {
                        return Ok(false);
                    };
                    let line = input.split_to(line_len);
                    let size = parse_size_line(&line)?;
                    let remaining = self.max_body.saturating_sub(self.total);
                    if size > remaining {
                        return Err(BodyError::TooLarge);
                    }
                    self.total = self.total.saturating_add(size);
                    self.state = if size == 0 {
                        ChunkState::Trailer
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(remaining) => {
                    if input.is_empty() {
                        return Ok(false);
                    }
                    let take = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(input.len());
                    out.extend_from_slice(input.get(..take).unwrap_or_default());
                    input.advance(take);
                    let left = remaining.saturating_sub(take as u64);
                    self.state = if left == 0 {
                        ChunkState::DataEnd { seen_cr: false }
                    } else {
                        ChunkState::Data(left)
                    };
                }
                ChunkState::DataEnd { seen_cr } => {
                    let Some(&b) = input.first() else {
                        return Ok(false);
                    };
                    match (seen_cr, b) {
                        (false, b'\r') => self.state = ChunkState::DataEnd { seen_cr: true },
                        (true, b'\n') => self.state = ChunkState::SizeLine,
                        _ => return Err(BodyError::Malformed("missing CRLF after chunk data")),
                    }
                    input.advance(1);
                }
                ChunkState::Trailer => {
                    let Some(line_len) = self.find_line(input, false)? else {
                        return Ok(false);
                    };
                    self.trailer_bytes = self.trailer_bytes.saturating_add(line_len);
                    if self.trailer_bytes > MAX_TRAILER_BYTES {
                        return Err(BodyError::Malformed("trailer section too large"));
                    }
                    let line = input.split_to(line_len);
                    if line.len() <= 2 {
                        self.state = ChunkState::Done;
                    } else {
                        check_trailer_line(&line)?;
                    }
                }
            }
        }
    }

    /// Finds the end of the CRLF-terminated line at the front of `input`.
    /// Returns its length including the CRLF, `None` if incomplete, and an
    /// error for bare LF, over-long lines, or (for size lines) a size with
    /// more than 16 hex digits, detected as early as possible.
    fn find_line(&mut self, input: &BytesMut, size_line: bool) -> Result<Option<usize>, BodyError> {
        if self.scanned > input.len() {
            self.scanned = 0;
        }
        let from = self.scanned;
        let tail = input.get(from..).unwrap_or_default();
        match memchr::memchr(b'\n', tail) {
            Some(i) => {
                self.scanned = 0;
                let lf = from.saturating_add(i);
                let len = lf.saturating_add(1);
                if len > MAX_CHUNK_LINE {
                    return Err(BodyError::Malformed("line too long"));
                }
                // The same answer whatever the split: an over-long size is TooLarge whether
                // the line arrived whole or a digit at a time (found by fuzzing).
                if size_line && input.iter().take_while(|b| b.is_ascii_hexdigit()).count() > 16 {
                    return Err(BodyError::TooLarge);
                }
                if lf.checked_sub(1).and_then(|p| input.get(p)) != Some(&b'\r') {
                    return Err(BodyError::Malformed("bare LF"));
                }
                Ok(Some(len))
            }
            None => {
                self.scanned = input.len();
                if input.len() >= MAX_CHUNK_LINE {
                    return Err(BodyError::Malformed("line too long"));
                }
                if size_line && input.iter().take_while(|b| b.is_ascii_hexdigit()).count() > 16 {
                    return Err(BodyError::TooLarge);
                }
                Ok(None)
            }
        }
    }
}

/// Parses `chunk-size [ chunk-ext ] CRLF`; `line` includes the CRLF.
fn parse_size_line(line: &[u8]) -> Result<u64, BodyError> {
    let body = line
        .strip_suffix(b"\r\n")
        .ok_or(BodyError::Malformed("bare LF"))?;
    let digits = body.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(BodyError::Malformed("invalid chunk size"));
    }
    if digits > 16 {
        return Err(BodyError::TooLarge);
    }
    let (hex, rest) = body.split_at(digits);
    let mut size: u64 = 0;
    for &d in hex {
        let v = char::from(d)
            .to_digit(16)
            .ok_or(BodyError::Malformed("invalid chunk size"))?;
        size = (size << 4) | u64::from(v);
    }
    let rest = trim_ows(rest);
    match rest.first() {
        None => {}
        Some(b';') if rest.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) => {
            return Err(BodyError::Malformed("control character in chunk extension"));
        }
        Some(b';') => {}
        Some(_) => return Err(BodyError::Malformed("invalid chunk size")),
    }
    Ok(size)
}

/// Loose check of one trailer field line (including its CRLF).
fn check_trailer_line(line: &[u8]) -> Result<(), BodyError> {
    let body = line
        .strip_suffix(b"\r\n")
        .ok_or(BodyError::Malformed("bare LF"))?;
    match body.first() {
        Some(b' ' | b'\t') => return Err(BodyError::Malformed("folded trailer line")),
        Some(b':') | None => return Err(BodyError::Malformed("invalid trailer line")),
        Some(_) => {}
    }
    if !body.contains(&b':') {
        return Err(BodyError::Malformed("invalid trailer line"));
    }
    if body.iter().any(|&b| b == b'\r' || b == 0) {
        return Err(BodyError::Malformed("control character in trailer line"));
    }
    Ok(())
}

/// Standard reason phrase for `status`, or `""` for codes without one here
/// (an empty reason phrase is valid HTTP/1.1).
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// The bytes of an RFC 9110 token, one flag per byte value.
const TCHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        c += 1;
    }
    t
};

fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

/// Whether `value` holds a CR, an LF or a NUL. The values the gateway writes on every call
/// (a session id, a version, a trace context) are short: eight bytes at a time costs less
/// than setting up a vector search.
fn has_line_break(value: &[u8]) -> bool {
    if value.len() >= 64 {
        return memchr::memchr3(b'\r', b'\n', 0, value).is_some();
    }
    let mut words = value.chunks_exact(8);
    for w in &mut words {
        let x = w.try_into().map_or(0, u64::from_le_bytes);
        if bytes_equal(x, 0) | bytes_equal(x, b'\r') | bytes_equal(x, b'\n') != 0 {
            return true;
        }
    }
    words
        .remainder()
        .iter()
        .any(|&c| matches!(c, b'\r' | b'\n' | 0))
}

/// Whether `name: value` may be written as a header line: `name` must be a
/// non-empty RFC 9110 token and `value` must not contain CR, LF or NUL.
/// The writers in this module silently skip headers for which this is false.
pub fn is_writable_header(name: &str, value: &[u8]) -> bool {
    !name.is_empty() && name.bytes().all(is_tchar) && !has_line_break(value)
}

fn write_header(out: &mut BytesMut, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends an HTTP/1.1 status line and header section to `out`.
///
/// `headers` are written in order with their names as given, except that
/// headers failing [`is_writable_header`] (CR/LF/NUL in the value, or a name
/// that is not a token) are **skipped**, and `Content-Length`,
/// `Transfer-Encoding` and `Connection` given by the caller are skipped
/// because this function owns the framing: `body_len: Some(n)` writes
/// `Content-Length: n`, `None` writes `Transfer-Encoding: chunked` (follow
/// with [`write_chunk`]/[`write_last_chunk`]), and `!keep_alive` writes
/// `Connection: close`. For 1xx and 204 responses no Content-Length or
/// Transfer-Encoding is written, and for 304 neither is written either
/// (these responses never have a body). A `status` outside 100..=999 is
/// written as 500.
pub fn write_response_head(
    out: &mut BytesMut,
    status: u16,
    headers: &[(&str, &[u8])],
    body_len: Option<usize>,
    keep_alive: bool,
) {
    write_response_fields(out, status, headers.iter().copied(), body_len, keep_alive);
}

/// [`write_response_head`] with the header fields from an iterator (no list to build).
pub fn write_response_fields<'a>(
    out: &mut BytesMut,
    status: u16,
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    body_len: Option<usize>,
    keep_alive: bool,
) {
    let status = if (100..=999).contains(&status) {
        status
    } else {
        500
    };
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(crate::text::Decimal::new(u64::from(status)).as_bytes());
    out.extend_from_slice(b" ");
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        if !is_writable_header(name, value)
            || name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("connection")
        {
            continue;
        }
        write_header(out, name, value);
    }
    let bodyless = (100..200).contains(&status) || status == 204 || status == 304;
    if !bodyless {
        match body_len {
            Some(n) => {
                out.extend_from_slice(b"Content-Length: ");
                out.extend_from_slice(
                    crate::text::Decimal::new(u64::try_from(n).unwrap_or(u64::MAX)).as_bytes(),
                );
                out.extend_from_slice(b"\r\n");
            }
            None => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        }
    }
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends one chunk carrying `data` (hex size line, data, CRLF). Does
/// nothing for empty `data`, since an empty chunk would end the body.
pub fn write_chunk(out: &mut BytesMut, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let _ = write!(out, "{:x}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Appends the terminating zero-size chunk with an empty trailer section.
pub fn write_last_chunk(out: &mut BytesMut) {
    out.extend_from_slice(b"0\r\n\r\n");
}

/// Appends an HTTP/1.1 request line, `Host`, the given headers and
/// `Content-Length: body_len` (client side; the body follows unchunked).
///
/// Nothing written can split the request line or inject a header:
/// bytes of `path_and_query` that are not visible ASCII (controls, space,
/// DEL, non-ASCII) are percent-encoded and an empty path is written as `/`;
/// bytes of `method` that are not token characters and bytes of `host` that
/// are not visible ASCII are dropped (a method that ends up empty yields a
/// request the upstream will reject). Headers failing [`is_writable_header`]
/// are **skipped**, as are caller-given `Host`, `Content-Length` and
/// `Transfer-Encoding`, which this function owns.
pub fn write_request_head<'a>(
    out: &mut BytesMut,
    method: &str,
    path_and_query: &str,
    host: &str,
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    body_len: usize,
) {
    write_request_start(out, method, path_and_query, host);
    write_request_fields(out, headers);
    write_request_end(out, body_len);
}

/// The first part of [`write_request_head`]: the request line and `Host`.
pub fn write_request_start(out: &mut BytesMut, method: &str, path_and_query: &str, host: &str) {
    // Whole strings when they need nothing dropped or escaped (always, from the gateway's
    // own callers); byte by byte otherwise.
    if method.bytes().all(is_tchar) {
        out.extend_from_slice(method.as_bytes());
    } else {
        out.extend(method.bytes().filter(|&b| is_tchar(b)));
    }
    out.extend_from_slice(b" ");
    if path_and_query.is_empty() {
        out.extend_from_slice(b"/");
    }
    if path_and_query.bytes().all(|b| b.is_ascii_graphic()) {
        out.extend_from_slice(path_and_query.as_bytes());
    } else {
        for b in path_and_query.bytes() {
            if b.is_ascii_graphic() {
                out.extend_from_slice(&[b]);
            } else {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    if host.bytes().all(|b| b.is_ascii_graphic()) {
        out.extend_from_slice(host.as_bytes());
    } else {
        out.extend(host.bytes().filter(u8::is_ascii_graphic));
    }
    out.extend_from_slice(b"\r\n");
}

/// The middle part of [`write_request_head`]: header fields, with those it must not write
/// left out.
pub fn write_request_fields<'a>(
    out: &mut BytesMut,
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) {
    for (name, value) in headers {
        if !is_writable_header(name, value)
            || name.eq_ignore_ascii_case("host")
            || name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("transfer-encoding")
        {
            continue;
        }
        write_header(out, name, value);
    }
}

/// The last part of [`write_request_head`]: `Content-Length` and the blank line.
pub fn write_request_end(out: &mut BytesMut, body_len: usize) {
    out.extend_from_slice(b"Content-Length: ");
    out.extend_from_slice(
        crate::text::Decimal::new(u64::try_from(body_len).unwrap_or(u64::MAX)).as_bytes(),
    );
    out.extend_from_slice(b"\r\n\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_line_feeds_are_found_at_every_place() {
        let naive = |h: &[u8]| {
            h.iter()
                .enumerate()
                .any(|(i, &c)| c == b'\n' && (i == 0 || h[i - 1] != b'\r'))
        };
        for len in 0..40 {
            for at in 0..len {
                // A CRLF ending at `at`, a bare LF at `at`, and bytes next to LF's value.
                let mut crlf: Vec<u8> = (0..len)
                    .map(|i| [b'a', 0x0b, 0x09, 0x0a ^ 0x80][i % 4])
                    .collect();
                crlf.iter_mut().for_each(|c| {
                    if *c == 0x0a {
                        *c = b'x'
                    }
                });
                let mut bare = crlf.clone();
                bare[at] = b'\n';
                if at > 0 {
                    crlf[at - 1] = b'\r';
                }
                crlf[at] = b'\n';
                for h in [&crlf, &bare] {
                    assert_eq!(has_bare_lf(h), naive(h), "{h:?}");
                }
            }
        }
        // Two line feeds: a CRLF first, then a bare one (in one word or two).
        for len in 2..24 {
            for a in 1..len {
                for b in a + 1..len {
                    let mut h = vec![b'a'; len];
                    h[a - 1] = b'\r';
                    h[a] = b'\n';
                    h[b] = b'\n';
                    let fixed = b > a + 1 && h[b - 1] == b'\r';
                    assert_eq!(has_bare_lf(&h), !fixed, "{h:?}");
                    h[b - 1] = b'\r';
                    assert!(!has_bare_lf(&h) || b == a + 1, "{h:?}");
                }
            }
        }
        assert!(!has_bare_lf(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(has_bare_lf(b"GET / HTTP/1.1\r\nHost: a\n\r\n"));
    }

    #[test]
    fn line_breaks_are_found_at_every_place() {
        for len in 0..80 {
            let clean: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            assert!(!has_line_break(&clean), "{len}");
            assert!(is_writable_header("x-a", &clean));
            // Bytes that are near the flagged ones, and high bytes, pass.
            let near: Vec<u8> = (0..len)
                .map(|i| [0x0c, 0x0b, 0x0e, 0x8d, 0xff, 0x01][i % 6])
                .collect();
            assert!(!has_line_break(&near), "{near:?}");
            for at in 0..len {
                for bad in [b'\r', b'\n', 0] {
                    let mut v = clean.clone();
                    v[at] = bad;
                    assert!(has_line_break(&v), "{len} {at} {bad}");
                    assert!(!is_writable_header("x-a", &v));
                }
            }
        }
        assert!(!is_writable_header("a b", b"v"));
        assert!(!is_writable_header("", b"v"));
        assert!(is_writable_header("!#$%&'*+-.^_`|~09azAZ", b"v"));
        for c in [
            b'(', b')', b',', b'/', b':', b';', b'<', b'=', b'>', b'?', b'@', b'[', b'\\', b']',
            b'{', b'}', b'"', 0x7f, 0x80,
        ] {
            assert!(!is_tchar(c), "{c}");
        }
    }

    fn lim() -> Limits {
        Limits::default()
    }

    /// `s` with `Host: h` after its request line when it is HTTP/1.1 without one (the
    /// cases below are about other rules).
    fn with_host(s: &[u8]) -> Vec<u8> {
        let lower = s.to_ascii_lowercase();
        let has_host = lower.windows(7).any(|w| w == b"\r\nhost:");
        match memchr::memmem::find(s, b"HTTP/1.1\r\n") {
            Some(i) if !has_host => {
                let at = i + 10;
                let mut v = s[..at].to_vec();
                v.extend_from_slice(b"Host: h\r\n");
                v.extend_from_slice(&s[at..]);
                v
            }
            _ => s.to_vec(),
        }
    }

    fn req(s: &[u8]) -> RequestHead {
        let s = &with_host(s)[..];
        match parse_request_head(s, &lim()) {
            Ok(Some(h)) => h,
            other => panic!("expected a request head, got {other:?}"),
        }
    }

    fn req_err(s: &[u8]) -> HeadError {
        let s = &with_host(s)[..];
        match parse_request_head(s, &lim()) {
            Err(e) => e,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    fn resp(s: &[u8], method: &str) -> ResponseHead {
        match parse_response_head(s, method, &lim()) {
            Ok(Some(h)) => h,
            other => panic!("expected a response head, got {other:?}"),
        }
    }

    fn decode_all(
        dec: &mut ChunkedDecoder,
        input: &mut BytesMut,
    ) -> Result<(bool, BytesMut), BodyError> {
        let mut out = BytesMut::new();
        let done = dec.decode(input, &mut out)?;
        Ok((done, out))
    }

    #[test]
    fn simple_get() {
        let h = req(b"GET /mcp?session=1 HTTP/1.1\r\nHost: example.com\r\nAccept: text/event-stream\r\n\r\n");
        assert_eq!(h.method(), "GET");
        assert_eq!(h.target(), "/mcp?session=1");
        assert_eq!(h.path(), "/mcp");
        assert_eq!(h.minor_version, 1);
        assert_eq!(h.body, BodyKind::Empty);
        assert!(h.keep_alive);
        assert!(!h.expect_continue);
        assert_eq!(h.header_str("host"), Some("example.com"));
        assert_eq!(h.header("ACCEPT"), Some(&b"text/event-stream"[..]));
        assert_eq!(h.headers.len(), 2);
        let h2 = req(b"GET / HTTP/1.1\r\nX-Pad:  \t padded \t \r\n\r\n");
        assert_eq!(h2.header("x-pad"), Some(&b"padded"[..]));
        assert_eq!(h.headers.iter().next().map(|x| x.name), Some(&b"host"[..]));
        assert_eq!(h.header("missing"), None);
    }

    #[test]
    fn absolute_form_path() {
        let h = req(b"GET http://example.com/a/b?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n");
        assert_eq!(h.path(), "/a/b");
        assert_eq!(h.target(), "http://example.com/a/b?x=1");
        let h = req(b"OPTIONS HTTPS://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n");
        assert_eq!(h.path(), "/");
        let h = req(b"OPTIONS * HTTP/1.1\r\nHost: example.com\r\n\r\n");
        assert_eq!(h.path(), "*");
    }

    #[test]
    fn post_with_content_length() {
        let raw = b"POST /mcp HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"jsonrpc\":1}";
        let h = req(raw);
        assert_eq!(h.method(), "POST");
        assert_eq!(h.body, BodyKind::Length(13));
        assert_eq!(raw.get(h.head_len..), Some(&b"{\"jsonrpc\":1}"[..]));
        // Content-Length: 0 is an empty body.
        let h = req(b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(h.body, BodyKind::Empty);
        // Identical values in one field's list are accepted; a repeated field is not.
        let h = req(b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n");
        assert_eq!(h.body, BodyKind::Length(5));
        assert!(matches!(
            req_err(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"),
            HeadError::Malformed(_)
        ));
    }

    #[test]
    fn pipelined_requests() {
        let first = b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello";
        let second = b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n";
        let mut buf = first.to_vec();
        buf.extend_from_slice(second);
        let h1 = req(&buf);
        assert_eq!(h1.path(), "/a");
        assert_eq!(h1.head_len, first.len() - 5);
        assert_eq!(buf.get(h1.head_len..h1.head_len + 5), Some(&b"hello"[..]));
        let rest = buf.get(h1.head_len + 5..).unwrap_or_default();
        let h2 = req(rest);
        assert_eq!(h2.path(), "/b");
        assert_eq!(h2.head_len, second.len());
    }

    #[test]
    fn every_prefix_is_partial() {
        let raw: &[u8] = b"POST /mcp?x=1 HTTP/1.1\r\nHost: example.com\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n";
        for n in 0..raw.len() {
            let prefix = raw.get(..n).unwrap_or_default();
            assert_eq!(
                parse_request_head(prefix, &lim()),
                Ok(None),
                "prefix of {n} bytes"
            );
        }
        assert_eq!(req(raw).head_len, raw.len());
        let raw: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n";
        for n in 0..raw.len() {
            let prefix = raw.get(..n).unwrap_or_default();
            assert_eq!(
                parse_response_head(prefix, "GET", &lim()),
                Ok(None),
                "prefix of {n} bytes"
            );
        }
    }

    #[test]
    fn single_headers_are_told_from_repeated_ones() {
        let r = req(b"POST / HTTP/1.1\r\nHost: a\r\nMcp-Method: tools/call\r\nmcp-name: x\r\nMCP-Name: y\r\nX-One: 1\r\nX-Two: 2\r\nx-two: 3\r\n\r\n");
        // Names the index keeps...
        assert_eq!(r.single("mcp-method"), Ok(Some(&b"tools/call"[..])));
        assert_eq!(r.single("mcp-name"), Err(Repeated));
        assert_eq!(r.single("mcp-protocol-version"), Ok(None));
        // ... and others, found by walking the fields.
        assert_eq!(r.single("x-one"), Ok(Some(&b"1"[..])));
        assert_eq!(r.single("x-two"), Err(Repeated));
        assert_eq!(r.single("x-three"), Ok(None));
    }

    #[test]
    fn header_too_large() {
        let limits = Limits {
            max_header_bytes: 64,
            max_body_bytes: 1024,
        };
        let mut raw = b"GET / HTTP/1.1\r\nX-Long: ".to_vec();
        raw.extend(std::iter::repeat_n(b'a', 100));
        raw.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse_request_head(&raw, &limits), Err(HeadError::TooLarge));
        // Incomplete but below the limit: need more.
        assert_eq!(
            parse_request_head(raw.get(..63).unwrap_or_default(), &limits),
            Ok(None)
        );
        // Incomplete and at the limit: too large.
        assert_eq!(
            parse_request_head(raw.get(..64).unwrap_or_default(), &limits),
            Err(HeadError::TooLarge)
        );
        assert_eq!(HeadError::TooLarge.status(), 431);
        // Default limit: 16 KiB header value.
        let mut raw = b"GET / HTTP/1.1\r\nX-Long: ".to_vec();
        raw.extend(std::iter::repeat_n(b'a', 17 * 1024));
        assert_eq!(parse_request_head(&raw, &lim()), Err(HeadError::TooLarge));
        // A complete head that fits, followed by a large body, is fine.
        let mut raw = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n".to_vec();
        raw.extend(std::iter::repeat_n(b'a', 100));
        let limits = Limits {
            max_header_bytes: 64,
            max_body_bytes: 1024,
        };
        assert!(matches!(parse_request_head(&raw, &limits), Ok(Some(_))));
    }

    #[test]
    fn too_many_headers() {
        let build = |n: usize| {
            let mut raw = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
            for i in 1..n {
                raw.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
            }
            raw.extend_from_slice(b"\r\n");
            raw
        };
        assert_eq!(req(&build(64)).headers.len(), 64);
        assert_eq!(req_err(&build(65)), HeadError::TooLarge);
    }

    #[test]
    fn heads_move_without_memcpy() {
        // Moved a few times per request (returned, matched, captured by the request's
        // future): at most 128 bytes, the compiler moves them inline.
        assert!(std::mem::size_of::<Fields>() <= 64);
        assert!(
            std::mem::size_of::<RequestHead>() <= 128,
            "{}",
            std::mem::size_of::<RequestHead>()
        );
        assert!(
            std::mem::size_of::<ResponseHead>() <= 128,
            "{}",
            std::mem::size_of::<ResponseHead>()
        );
    }

    #[test]
    fn known_names_are_indexed_in_order() {
        assert_eq!(KNOWN[CONTENT_LENGTH], "content-length");
        for (i, name) in KNOWN.iter().enumerate() {
            assert_eq!(known(name.as_bytes()), Some(i), "{name}");
        }
        assert_eq!(
            SINGLETON_HEADERS,
            [
                "host",
                "authorization",
                "x-api-key",
                "origin",
                "mcp-session-id",
                "last-event-id",
                "content-type",
                "content-length"
            ]
        );
        assert_eq!(known(b"Host"), None, "the index holds lowercase names only");
    }

    #[test]
    fn lookups_through_the_index_and_without_it_agree() {
        let h = req(
            b"POST / HTTP/1.1\r\nAccept: a\r\nX-Other: 1\r\nCONNECTION: keep-alive\r\n\
            connection: x\r\nx-other: 2\r\nContent-Length: 3\r\n\r\nabc",
        );
        for name in [
            "accept",
            "Accept",
            "x-other",
            "X-OTHER",
            "connection",
            "Connection",
        ] {
            let walked: Vec<&[u8]> = h
                .headers
                .iter()
                .filter(|f| f.name.eq_ignore_ascii_case(name.as_bytes()))
                .map(|f| f.value)
                .collect();
            assert_eq!(h.header_values(name).collect::<Vec<_>>(), walked, "{name}");
            assert_eq!(h.header(name), walked.first().copied(), "{name}");
        }
        assert_eq!(h.header("connection"), Some(&b"keep-alive"[..]));
        assert_eq!(h.header("expect"), None);
        assert_eq!(h.header_values("mcp-name").count(), 0);
        assert_eq!(h.body, BodyKind::Length(3));
    }

    #[test]
    fn head_hygiene() {
        // Bare LF anywhere in the head: the request line, a field line, the end.
        for raw in [
            &b"GET / HTTP/1.1\nHost: h\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\n\n",
            b"GET / HTTP/1.1\nHost: h\n\n",
            b"\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
        ] {
            assert!(
                matches!(
                    parse_request_head(raw, &lim()),
                    Err(HeadError::Malformed(_))
                ),
                "{raw:?}"
            );
        }
        // A bare LF in the body is not the head's business.
        let h = req(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n\n\n");
        assert_eq!(h.body, BodyKind::Length(2));
        // HTTP/1.1 needs Host; HTTP/1.0 does not.
        assert_eq!(
            parse_request_head(b"GET / HTTP/1.1\r\nX: y\r\n\r\n", &lim()),
            Err(HeadError::Malformed("HTTP/1.1 request without Host"))
        );
        assert!(matches!(
            parse_request_head(b"GET / HTTP/1.0\r\n\r\n", &lim()),
            Ok(Some(_))
        ));
        // Each singleton at most once, whatever its case; others may repeat.
        for name in SINGLETON_HEADERS {
            let raw = format!(
                "GET / HTTP/1.1\r\nHost: h\r\n{name}: a\r\nX-Other: 1\r\n{}: b\r\n\r\n",
                name.to_ascii_uppercase()
            );
            let raw = raw.replacen("Host: h\r\nhost: a", "host: a", 1);
            assert_eq!(
                parse_request_head(raw.as_bytes(), &lim()),
                Err(HeadError::Malformed("repeated header field")),
                "{name}"
            );
        }
        let h = req(b"GET / HTTP/1.1\r\nHost: h\r\nAccept: a\r\nAccept: b\r\nMcp-Method: x\r\nMcp-Method: y\r\n\r\n");
        assert_eq!(h.header_values("accept").count(), 2);
        assert_eq!(h.header_values("mcp-method").count(), 2);
        // Responses are not held to the request rules.
        assert!(matches!(
            parse_response_head(b"HTTP/1.1 200 OK\nContent-Length: 0\n\n", "GET", &lim()),
            Ok(Some(_))
        ));
    }

    #[test]
    fn hosts() {
        let none: &[String] = &[];
        let some = ["mcp.example".to_string(), "[fe80::1]".to_string()];
        let any = ["*".to_string()];
        for h in [
            "localhost",
            "LocalHost:80",
            "127.0.0.1",
            "127.1.2.3:9",
            "[::1]",
            "[::1]:8080",
        ] {
            for (loopback, allowed) in [(true, none), (false, none), (true, &some[..])] {
                assert!(host_allowed(Some(h.as_bytes()), loopback, allowed), "{h}");
            }
        }
        for h in [
            "evil.example",
            "evil.example:80",
            "localhost.evil",
            "127.0.0.1.evil",
            "",
            ":80",
            "localhost:x",
            "[::1]x",
            "[::2]",
            "128.0.0.1",
        ] {
            assert!(!host_allowed(Some(h.as_bytes()), true, none), "{h}");
            assert!(!host_allowed(Some(h.as_bytes()), false, &some), "{h}");
        }
        assert!(host_allowed(Some(b"MCP.example:443"), true, &some));
        assert!(host_allowed(Some(b"[fe80::1]:443"), true, &some));
        assert!(!host_allowed(Some(b"sub.mcp.example"), false, &some));
        assert!(host_allowed(Some(b"evil.example"), false, none));
        assert!(host_allowed(Some(b"evil.example"), true, &any));
        assert!(host_allowed(None, true, none));
        // An absolute-form target's authority is the host judged, whatever Host says.
        let head = |target: &str| {
            parse_request_head(
                format!("POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes(),
                &Limits {
                    max_header_bytes: 1024,
                    max_body_bytes: 1024,
                },
            )
            .ok()
            .flatten()
            .expect("head")
        };
        let h = head("http://evil.example:8080/mcp");
        assert_eq!(request_host(&h), Some(&b"evil.example:8080"[..]));
        assert!(!host_allowed(request_host(&h), true, none));
        let h = head("HTTP://user@127.0.0.1/mcp?x");
        assert_eq!(request_host(&h), Some(&b"127.0.0.1"[..]));
        assert_eq!(request_host(&head("/mcp")), Some(&b"127.0.0.1"[..]));
    }

    #[test]
    fn cl_and_te_rejected() {
        let e =
            req_err(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(matches!(e, HeadError::Malformed(_)));
        assert_eq!(e.status(), 400);
        let e =
            req_err(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\ncontent-length: 5\r\n\r\n");
        assert!(matches!(e, HeadError::Malformed(_)));
        let e = parse_response_head(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET",
            &lim(),
        );
        assert!(matches!(e, Err(HeadError::Malformed(_))));
    }

    #[test]
    fn conflicting_content_length() {
        let e = req_err(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n");
        assert!(matches!(e, HeadError::Malformed(_)));
        let e = req_err(b"POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n");
        assert!(matches!(e, HeadError::Malformed(_)));
    }

    #[test]
    fn invalid_content_length() {
        for v in ["+5", "-1", "abc", "", "5 5", "0x10", "1.0", ",", "5,"] {
            let raw = format!("POST / HTTP/1.1\r\nContent-Length: {v}\r\n\r\n");
            let e = req_err(raw.as_bytes());
            assert!(matches!(e, HeadError::Malformed(_)), "{v:?} gave {e:?}");
        }
        // Syntactically valid but absurdly large: too large, not a panic.
        let e = req_err(b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n");
        assert_eq!(e, HeadError::BodyTooLarge);
        let unlimited = Limits {
            max_header_bytes: 1024,
            max_body_bytes: usize::MAX,
        };
        assert_eq!(
            parse_request_head(
                b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n",
                &unlimited
            ),
            Err(HeadError::BodyTooLarge)
        );
    }

    #[test]
    fn transfer_encoding() {
        let h = req(b"POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n");
        assert_eq!(h.body, BodyKind::Chunked);
        for te in [
            "gzip",
            "gzip, chunked",
            "chunked, gzip",
            "chunked, chunked",
            "identity",
        ] {
            let raw = format!("POST / HTTP/1.1\r\nTransfer-Encoding: {te}\r\n\r\n");
            assert_eq!(
                req_err(raw.as_bytes()),
                HeadError::UnsupportedTransferEncoding,
                "{te}"
            );
        }
        // Split across two fields counts as a list.
        let e = req_err(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        assert_eq!(e, HeadError::UnsupportedTransferEncoding);
        assert_eq!(e.status(), 501);
        for te in ["", ",", " , "] {
            let raw = format!("POST / HTTP/1.1\r\nTransfer-Encoding: {te}\r\n\r\n");
            assert!(
                matches!(req_err(raw.as_bytes()), HeadError::Malformed(_)),
                "{te:?}"
            );
        }
        let e = req_err(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(matches!(e, HeadError::Malformed(_)));
    }

    #[test]
    fn keep_alive_rules() {
        assert!(!req(b"GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(req(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        assert!(!req(b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n").keep_alive);
        assert_eq!(req(b"GET / HTTP/1.0\r\n\r\n").minor_version, 0);
        assert!(req(b"GET / HTTP/1.1\r\n\r\n").keep_alive);
        assert!(!req(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(!req(b"GET / HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n").keep_alive);
        assert!(
            !req(b"GET / HTTP/1.1\r\nConnection: upgrade\r\nConnection: CLOSE\r\n\r\n").keep_alive
        );
        assert!(req(b"GET / HTTP/1.1\r\nConnection: closed, x-close\r\n\r\n").keep_alive);
    }

    #[test]
    fn expect_continue() {
        let h = req(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-Continue\r\n\r\n");
        assert!(h.expect_continue);
        let h = req(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\n");
        assert!(!h.expect_continue);
        let h = req(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nExpect: 200-ok\r\n\r\n");
        assert!(!h.expect_continue);
        let h = req(b"POST / HTTP/1.0\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n");
        assert!(!h.expect_continue);
    }

    #[test]
    fn declared_body_too_large() {
        let limits = Limits {
            max_header_bytes: 1024,
            max_body_bytes: 10,
        };
        assert_eq!(
            parse_request_head(
                b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n",
                &limits
            ),
            Err(HeadError::BodyTooLarge)
        );
        assert!(matches!(
            parse_request_head(
                b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n",
                &limits
            ),
            Ok(Some(RequestHead {
                body: BodyKind::Length(10),
                ..
            }))
        ));
        assert_eq!(HeadError::BodyTooLarge.status(), 413);
    }

    #[test]
    fn garbage_is_malformed() {
        let cases: &[&[u8]] = &[
            b"\x00\x01\x02\x03\r\n\r\n",
            b"GET / HTTP/2.0\r\n\r\n",
            b"GET / FOO/1.1\r\n\r\n",
            b"G(ET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n",
            b"\xff\xfe\xfd\r\n\r\n",
        ];
        for c in cases {
            let e = req_err(c);
            assert!(matches!(e, HeadError::Malformed(_)), "{c:?} gave {e:?}");
        }
    }

    #[test]
    fn chunked_byte_at_a_time() {
        let raw: &[u8] = b"5;name=value\r\nhello\r\n7 ; ext\r\n, world\r\n1\r\n!\r\n0\r\nX-Trailer: yes\r\nX-Other: 1\r\n\r\nGET / HTTP/1.1\r\n";
        let mut dec = ChunkedDecoder::new(1024);
        let mut input = BytesMut::new();
        let mut out = BytesMut::new();
        let mut done = false;
        let mut fed = 0;
        for &b in raw {
            input.extend_from_slice(&[b]);
            fed += 1;
            if dec.decode(&mut input, &mut out) == Ok(true) {
                done = true;
                break;
            }
        }
        assert!(done);
        assert_eq!(&out[..], b"hello, world!");
        assert_eq!(dec.decoded_len(), 13);
        assert!(dec.is_done());
        // Completion was reported exactly at the end of the trailer section.
        assert_eq!(raw.get(fed..), Some(&b"GET / HTTP/1.1\r\n"[..]));
        assert!(input.is_empty());
    }

    #[test]
    fn chunked_leftover_stays() {
        let mut input = BytesMut::from(&b"3\r\nabc\r\n0\r\n\r\nPOST /next HTTP/1.1\r\n"[..]);
        let mut dec = ChunkedDecoder::new(1024);
        assert!(
            matches!(decode_all(&mut dec, &mut input), Ok((true, ref out)) if &out[..] == b"abc")
        );
        assert_eq!(&input[..], b"POST /next HTTP/1.1\r\n");
        // Further calls do not consume anything.
        assert!(matches!(decode_all(&mut dec, &mut input), Ok((true, ref out)) if out.is_empty()));
        assert_eq!(&input[..], b"POST /next HTTP/1.1\r\n");
    }

    #[test]
    fn chunked_truncated() {
        for raw in [
            &b"5\r\nhel"[..],
            b"5\r\nhello",
            b"5\r\nhello\r",
            b"5\r\nhello\r\n0\r\n",
            b"5",
            b"0\r\nX: y\r\n",
        ] {
            let mut input = BytesMut::from(raw);
            let mut dec = ChunkedDecoder::new(1024);
            assert!(
                matches!(decode_all(&mut dec, &mut input), Ok((false, _))),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn chunked_malformed() {
        let cases: &[&[u8]] = &[
            b"zz\r\n",
            b"\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloX\r\n",
            b"5\r\nhello\rX",
            b"5\r\nhello\n0\r\n\r\n",
            b"5 x\r\n",
            b"5;a\x01b\r\n",
            b"5;a\rb\r\n",
            b"0\r\nno colon\r\n\r\n",
            b"0\r\n folded: x\r\n\r\n",
            b"0\r\nX: y\n\r\n",
            b"-5\r\n",
            b"0\r\n\n",
            b"3\r\nabc\r\n\n",
            b"0x5\r\n",
        ];
        for c in cases {
            let mut input = BytesMut::from(*c);
            let mut dec = ChunkedDecoder::new(1024);
            let r = decode_all(&mut dec, &mut input);
            assert!(
                matches!(r, Err(BodyError::Malformed(_))),
                "{c:?} gave {r:?}"
            );
            // The error sticks.
            let mut more = BytesMut::from(&b"0\r\n\r\n"[..]);
            assert!(decode_all(&mut dec, &mut more).is_err());
        }
        // Over-long size line and over-long trailer line.
        let mut line = b"5;".to_vec();
        line.extend(std::iter::repeat_n(b'a', MAX_CHUNK_LINE));
        let mut input = BytesMut::from(&line[..]);
        let r = decode_all(&mut ChunkedDecoder::new(1024), &mut input);
        assert!(matches!(r, Err(BodyError::Malformed(_))));
        let mut trailer = b"0\r\nX: ".to_vec();
        trailer.extend(std::iter::repeat_n(b'a', MAX_CHUNK_LINE));
        trailer.extend_from_slice(b"\r\n\r\n");
        let mut input = BytesMut::from(&trailer[..]);
        let r = decode_all(&mut ChunkedDecoder::new(1024), &mut input);
        assert!(matches!(r, Err(BodyError::Malformed(_))));
        // Endless trailer lines are capped.
        let mut many = b"0\r\n".to_vec();
        for _ in 0..2000 {
            many.extend_from_slice(b"X-Pad: aaaaaaaaaaaaaaaa\r\n");
        }
        let mut input = BytesMut::from(&many[..]);
        let r = decode_all(&mut ChunkedDecoder::new(1024), &mut input);
        assert!(matches!(r, Err(BodyError::Malformed(_))));
    }

    #[test]
    fn chunked_overflow() {
        let mut input = BytesMut::from(&b"ffffffffffffffffff\r\n"[..]);
        let r = decode_all(&mut ChunkedDecoder::new(usize::MAX), &mut input);
        assert_eq!(r.map(|_| ()), Err(BodyError::TooLarge));
        // 17 digits, complete line: still too large even though the value is small.
        let mut input = BytesMut::from(&b"00000000000000001\r\n"[..]);
        let r = decode_all(&mut ChunkedDecoder::new(usize::MAX), &mut input);
        assert_eq!(r.map(|_| ()), Err(BodyError::TooLarge));
        // Detected before the line is complete.
        let mut input = BytesMut::from(&b"00000000000000001"[..]);
        let r = decode_all(&mut ChunkedDecoder::new(usize::MAX), &mut input);
        assert_eq!(r.map(|_| ()), Err(BodyError::TooLarge));
        // 16 digits is fine when the limit allows it.
        let mut input = BytesMut::from(&b"0000000000000003\r\nabc\r\n0\r\n\r\n"[..]);
        let r = decode_all(&mut ChunkedDecoder::new(usize::MAX), &mut input);
        assert!(matches!(r, Ok((true, _))));
        // Largest size that fits: too large for any realistic limit, no overflow.
        let mut input = BytesMut::from(&b"ffffffffffffffff\r\n"[..]);
        let r = decode_all(&mut ChunkedDecoder::new(1 << 30), &mut input);
        assert_eq!(r.map(|_| ()), Err(BodyError::TooLarge));
    }

    #[test]
    fn chunked_total_too_large() {
        let mut input = BytesMut::from(&b"6\r\nabcdef\r\n5\r\nghijk\r\n0\r\n\r\n"[..]);
        let mut dec = ChunkedDecoder::new(10);
        let mut out = BytesMut::new();
        assert_eq!(dec.decode(&mut input, &mut out), Err(BodyError::TooLarge));
        assert_eq!(&out[..], b"abcdef");
        assert_eq!(BodyError::TooLarge.status(), 413);
        // Exactly at the limit is fine.
        let mut input = BytesMut::from(&b"6\r\nabcdef\r\n4\r\nghij\r\n0\r\n\r\n"[..]);
        let r = decode_all(&mut ChunkedDecoder::new(10), &mut input);
        assert!(matches!(r, Ok((true, ref out)) if out.len() == 10));
    }

    #[test]
    fn response_heads() {
        let h = resp(
            b"HTTP/1.1 200 OK\r\nContent-Length: 42\r\nContent-Type: application/json\r\n\r\n",
            "POST",
        );
        assert_eq!(h.status, 200);
        assert_eq!(h.body, BodyKind::Length(42));
        assert!(h.keep_alive);
        assert_eq!(h.header_str("content-type"), Some("application/json"));

        let h = resp(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET",
        );
        assert_eq!(h.body, BodyKind::Chunked);
        assert!(h.keep_alive);

        let h = resp(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n",
            "GET",
        );
        assert_eq!(h.body, BodyKind::UntilClose);
        assert!(!h.keep_alive);

        let h = resp(b"HTTP/1.1 204 No Content\r\n\r\n", "DELETE");
        assert_eq!(h.body, BodyKind::Empty);
        assert!(h.keep_alive);

        let h = resp(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", "HEAD");
        assert_eq!(h.body, BodyKind::Empty);

        let h = resp(
            b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET",
        );
        assert_eq!(h.body, BodyKind::Empty);

        let h = resp(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n", "POST");
        assert_eq!(h.status, 100);
        assert_eq!(h.body, BodyKind::Empty);
        assert_eq!(h.head_len, CONTINUE_100.len());

        let h = resp(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n", "GET");
        assert!(!h.keep_alive);
        let h = resp(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n",
            "GET",
        );
        assert!(!h.keep_alive);

        let limits = Limits {
            max_header_bytes: 1024,
            max_body_bytes: 10,
        };
        assert_eq!(
            parse_response_head(
                b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n",
                "GET",
                &limits
            ),
            Err(HeadError::BodyTooLarge)
        );
        assert_eq!(
            parse_response_head(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                "GET",
                &lim()
            ),
            Err(HeadError::UnsupportedTransferEncoding)
        );
        assert!(matches!(
            parse_response_head(b"HTTP/1.1 2x0 OK\r\n\r\n", "GET", &lim()),
            Err(HeadError::Malformed(_))
        ));
    }

    #[test]
    fn response_round_trip() {
        let mut out = BytesMut::new();
        write_response_head(
            &mut out,
            200,
            &[
                ("Content-Type", b"application/json"),
                ("Mcp-Session-Id", b"abc"),
            ],
            Some(2),
            true,
        );
        out.extend_from_slice(b"{}");
        let h = resp(&out, "POST");
        assert_eq!(h.status, 200);
        assert_eq!(h.body, BodyKind::Length(2));
        assert!(h.keep_alive);
        assert_eq!(h.header_str("mcp-session-id"), Some("abc"));
        assert_eq!(out.get(h.head_len..), Some(&b"{}"[..]));
        assert!(out.starts_with(b"HTTP/1.1 200 OK\r\n"));

        let mut out = BytesMut::new();
        write_response_head(&mut out, 404, &[], Some(0), false);
        let h = resp(&out, "GET");
        assert_eq!(h.status, 404);
        assert_eq!(h.body, BodyKind::Empty);
        assert!(!h.keep_alive);
        assert!(out.starts_with(b"HTTP/1.1 404 Not Found\r\n"));

        let mut out = BytesMut::new();
        write_response_head(&mut out, 204, &[], Some(0), true);
        assert_eq!(&out[..], b"HTTP/1.1 204 No Content\r\n\r\n");
    }

    #[test]
    fn chunked_round_trip() {
        let mut out = BytesMut::new();
        write_response_head(
            &mut out,
            200,
            &[("Content-Type", b"text/event-stream")],
            None,
            true,
        );
        let head_len = out.len();
        let pieces: [&[u8]; 4] = [b"data: 1\n\n", b"", &[0u8; 300], b"\r\n0\r\n\r\n"];
        for p in pieces {
            write_chunk(&mut out, p);
        }
        write_last_chunk(&mut out);
        let h = resp(&out, "GET");
        assert_eq!(h.body, BodyKind::Chunked);
        assert_eq!(h.head_len, head_len);
        let mut input = BytesMut::from(out.get(head_len..).unwrap_or_default());
        let r = decode_all(&mut ChunkedDecoder::new(4096), &mut input);
        let expected: Vec<u8> = pieces.concat();
        assert!(matches!(r, Ok((true, ref body)) if body[..] == expected[..]));
        assert!(input.is_empty());
    }

    #[test]
    fn request_round_trip() {
        let mut out = BytesMut::new();
        write_request_head(
            &mut out,
            "POST",
            "/mcp?a=b",
            "upstream:8080",
            [
                ("Accept", &b"application/json, text/event-stream"[..]),
                ("Host", b"evil"),
            ],
            7,
        );
        out.extend_from_slice(b"{\"a\":1}");
        let h = req(&out);
        assert_eq!(h.method(), "POST");
        assert_eq!(h.target(), "/mcp?a=b");
        assert_eq!(h.header_str("host"), Some("upstream:8080"));
        assert_eq!(h.header_values("host").count(), 1);
        assert_eq!(h.body, BodyKind::Length(7));

        // Nothing can break the request line or Host.
        let mut out = BytesMut::new();
        write_request_head(&mut out, "GE T\r\n", "/a b\r\nX: y", "h\r\nX: z", [], 0);
        let h = req(&out);
        assert_eq!(h.method(), "GET");
        assert_eq!(h.target(), "/a%20b%0D%0AX:%20y");
        assert_eq!(h.header_str("host"), Some("hX:z"));
        assert_eq!(h.header("x"), None);
        assert_eq!(h.body, BodyKind::Empty);
    }

    #[test]
    fn crlf_injection_not_written() {
        let mut out = BytesMut::new();
        write_response_head(
            &mut out,
            200,
            &[
                ("X-Good", b"fine"),
                ("X-Bad", b"a\r\nSet-Cookie: evil"),
                ("X-Bad2", b"a\nb"),
                ("X-Bad3", b"a\rb"),
                ("Bad\r\nName", b"v"),
                ("Bad Name", b"v"),
                ("", b"v"),
                ("Content-Length", b"999"),
                ("Connection", b"keep-alive"),
            ],
            Some(0),
            true,
        );
        let text = String::from_utf8_lossy(&out);
        assert!(!text.contains("evil"));
        assert!(!text.contains("Bad"));
        assert!(!text.contains("999"));
        assert!(!text.contains("Connection"));
        assert!(text.contains("X-Good: fine\r\n"));
        let h = resp(&out, "GET");
        assert_eq!(h.headers.len(), 2);
        assert_eq!(h.body, BodyKind::Empty);

        let mut out = BytesMut::new();
        write_request_head(
            &mut out,
            "GET",
            "/",
            "h",
            [("X-Bad", &b"1\r\n\r\nGET /admin HTTP/1.1"[..])],
            0,
        );
        assert!(!String::from_utf8_lossy(&out).contains("admin"));
    }

    #[test]
    fn reasons() {
        for s in [
            100, 200, 202, 204, 400, 401, 403, 404, 405, 406, 408, 411, 413, 415, 429, 431, 500,
            501, 502, 503, 504,
        ] {
            assert!(!reason(s).is_empty(), "{s}");
        }
        assert_eq!(reason(799), "");
        let mut out = BytesMut::new();
        write_response_head(&mut out, 7, &[], Some(0), true);
        assert!(out.starts_with(b"HTTP/1.1 500 Internal Server Error\r\n"));
        let mut out = BytesMut::new();
        write_chunk(&mut out, b"");
        assert!(out.is_empty());
        write_chunk(&mut out, &[b'x'; 26]);
        assert!(out.starts_with(b"1a\r\n"));
        assert_eq!(CONTINUE_100, b"HTTP/1.1 100 Continue\r\n\r\n");
    }

    /// xorshift64 PRNG, deterministic.
    fn xorshift(state: &mut u64) -> u64 {
        let mut x = *state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *state = x;
        x
    }

    #[test]
    fn random_input_never_panics() {
        const ALPHABET: &[u8] = b"GETPOST /HTTP1.0:\r\n\r\n;0123456789abcdefABCDEF,chunked Content-Length Transfer-Encoding\x00\xff\t";
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let limits = Limits {
            max_header_bytes: 512,
            max_body_bytes: 256,
        };
        for i in 0..2000 {
            let len = (xorshift(&mut seed) % 300) as usize;
            let mut bytes = Vec::with_capacity(len);
            // Half the cases use raw bytes, half bytes drawn from an HTTP-ish alphabet.
            for _ in 0..len {
                let r = xorshift(&mut seed);
                let b = if i % 2 == 0 {
                    r as u8
                } else {
                    ALPHABET
                        .get((r as usize) % ALPHABET.len())
                        .copied()
                        .unwrap_or(b'x')
                };
                bytes.push(b);
            }
            // Some cases start with a valid prefix so the parser gets deeper.
            if i % 3 == 0 {
                let mut v = b"POST / HTTP/1.1\r\n".to_vec();
                v.extend_from_slice(&bytes);
                bytes = v;
            }
            let _ = parse_request_head(&bytes, &limits);
            let _ = parse_request_head(&bytes, &lim());
            let _ = parse_response_head(&bytes, "GET", &limits);
            let mut dec = ChunkedDecoder::new(256);
            let mut out = BytesMut::new();
            // Feed in random-sized pieces.
            let mut input = BytesMut::new();
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                let n = 1 + (xorshift(&mut seed) % 17) as usize;
                let (a, b) = rest.split_at(n.min(rest.len()));
                input.extend_from_slice(a);
                rest = b;
                if dec.decode(&mut input, &mut out).is_err() {
                    break;
                }
            }
            assert!(out.len() <= 256);
        }
    }
}
