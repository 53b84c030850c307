//! The HTTP/1.1 server loop for one client connection.
//!
//! Reads a request head (within `header_timeout` of its first byte; an idle keep-alive
//! connection is closed after `idle_timeout`), then its body (`Content-Length` or chunked,
//! capped at `max_body_bytes`, with `100 Continue` when asked), hands it to the MCP endpoint
//! and writes the reply before reading the next request, so pipelined requests are answered
//! in order. A malformed or oversized request gets its status (400, 408, 413, 431, 501) with
//! a JSON-RPC error body, a log line with the reason, and the connection is closed: after a
//! framing error the byte stream cannot be trusted. Streamed replies (SSE, a batch's array
//! of answers) are written chunked as they come.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use monoio::{io::AsyncWriteRent, net::TcpStream};

use super::{
    http::{self as codec, BodyKind, ChunkedDecoder, Limits, RequestHead},
    reply::{ArraySource, Body, EventSource, Handler, Reply, SseOut},
};
use crate::{
    jsonrpc::Code,
    limits::{ConnPermit, Limit},
    net::{
        tls::{ServerTls, TlsStream},
        Segments, Stream,
    },
    runtime::sys::recycle::Recycled,
};

/// Serves one connection until it closes, errs, idles out or the gateway stops; `permit`
/// holds its place under the connection limits until then.
///
/// Generic over the stream: plain TCP is served by direct `TcpStream` calls (no box, no
/// dynamic dispatch), TLS by [`TlsStream`]'s.
pub async fn serve<S: Stream, H: Handler>(
    mut conn: S,
    h: H,
    permit: ConnPermit,
    peer: std::net::IpAddr,
) {
    let _permit = permit;
    serve_requests(&mut conn, &h, peer).await;
    conn.close().await;
}

/// [`serve`] on a TLS listener: the handshake first, within `header_timeout_ms`. A failed
/// one is logged (debug) and counted (`mcpgw_tls_handshake_failures_total`).
pub async fn serve_tls<H: Handler>(
    conn: TcpStream,
    tls: ServerTls,
    h: H,
    permit: ConnPermit,
    peer: std::net::IpAddr,
) {
    let timeout = h.conf().header_timeout;
    let stream: TlsStream = match monoio::time::timeout(timeout, tls.accept(conn)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            h.limits().tls_handshake_failed();
            tracing::debug!(client = %peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            h.limits().tls_handshake_failed();
            tracing::debug!(client = %peer, "TLS handshake not completed in time");
            return;
        }
    };
    serve(stream, h, permit, peer).await;
}

async fn serve_requests<S: Stream, H: Handler>(conn: &mut S, h: &H, peer: std::net::IpAddr) {
    let g = h.conf();
    let limits = Limits {
        max_header_bytes: g.max_header_bytes,
        max_body_bytes: g.max_body_bytes,
    };
    // Allocated when the first bytes arrive (see `read_head`): a connection that sends
    // nothing costs no buffer.
    let mut buf = BytesMut::new();
    loop {
        if h.stopping() && buf.is_empty() {
            return;
        }
        let head = match read_head(conn, &mut buf, &limits, g.idle_timeout, g.header_timeout).await
        {
            Ok(Some(h)) => h,
            Ok(None) => return,
            Err(reply) => {
                // Boxed: a refusal is rare, and this future stays small without its state.
                let _ = Box::pin(write_reply(conn, reply, false, h)).await;
                return;
            }
        };
        let _ = buf.split_to(head.head_len);
        // The rest of the request (its body, the handling, the answer) is one future on the
        // heap: its state machine is large (8-12 KiB), and a connection waiting for its next
        // request should not carry it, since idle connections cost memory; this loop's own
        // state is the head read. Its room is one an earlier request's future left on this
        // worker (`Recycled`: an allocation aligned as this one is costs ~800 instructions),
        // and it is built there: built on the stack and moved, all of it would be copied on
        // each request (measured: 8.5k instructions of `memcpy` per call under callgrind).
        let rest = Recycled::new(|| exchange(conn, &mut buf, head, &limits, h, peer));
        if !rest.await {
            return;
        }
    }
}

/// One request after its head: its body read, the request handled, its answer written.
/// Whether the connection serves another.
async fn exchange<S: Stream, H: Handler>(
    conn: &mut S,
    buf: &mut BytesMut,
    head: RequestHead,
    limits: &Limits,
    h: &H,
    peer: std::net::IpAddr,
) -> bool {
    let body = match read_body(conn, buf, &head, limits, h.conf().idle_timeout, h).await {
        Ok(b) => b,
        Err(reply) => {
            let _ = write_reply(conn, reply, false, h).await;
            return false;
        }
    };
    let keep_alive = head.keep_alive && !h.stopping();
    // Counted from here until the answer is written: a drain waits for these.
    let _busy = h.busy();
    let cert = conn.peer_identity();
    let reply = h.handle(&head, body, peer, cert).await;
    write_reply(conn, reply, keep_alive, h).await.is_ok() && keep_alive
}

/// Answers a connection over a connection limit: 503 (worker full) or 429 (too many from
/// this address), `Retry-After: 1`, then closes. The client's request, if it sent one, is
/// read and discarded for up to a second first so that the close does not reset the
/// connection before the answer is read; past 64 such closes at once they are immediate.
pub async fn refuse_connection<H: Handler>(mut conn: TcpStream, limit: Limit, h: H) {
    thread_local! {
        static LINGERING: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }
    let (status, message) = match limit {
        Limit::ConnectionsPerIp => (
            429,
            "Too Many Requests: connection limit per client address reached (max_connections_per_ip)",
        ),
        _ => (
            503,
            "Service Unavailable: connection limit reached (max_connections)",
        ),
    };
    tracing::debug!(status, limit = limit.label(), "connection refused");
    let body = crate::jsonrpc::error_body(None, Code::LimitReached, message);
    let mut out = BytesMut::with_capacity(256 + body.len());
    codec::write_response_head(
        &mut out,
        status,
        &[("Retry-After", b"1"), ("Content-Type", b"application/json")],
        Some(body.len()),
        false,
    );
    out.extend_from_slice(&body);
    if send(&mut conn, out.freeze(), &h).await.is_err() {
        return;
    }
    if LINGERING.get() >= 64 {
        return;
    }
    LINGERING.set(LINGERING.get() + 1);
    let _ = conn.shutdown().await;
    let deadline = monoio::time::Instant::now() + Duration::from_secs(1);
    let mut buf = BytesMut::with_capacity(4096);
    let mut total = 0usize;
    while total < 64 << 10 {
        buf.clear();
        match monoio::time::timeout_at(deadline, conn.read_more(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => total += n,
            _ => break,
        }
    }
    LINGERING.set(LINGERING.get().saturating_sub(1));
}

fn refuse<E, A>(status: u16, why: &str) -> Reply<E, A> {
    tracing::info!(status, reason = why, "request refused");
    let message = match status {
        408 => "Request Timeout",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented: Transfer-Encoding",
        _ => "Bad Request: malformed HTTP request",
    };
    Reply::error(status, Code::BadHttpRequest, message)
}

/// Small batch answers are gathered up to this many bytes before a write; a larger answer
/// is written as it is, without a copy.
const BATCH_FLUSH: usize = 16 << 10;

/// Room left past a body when the read buffer grows for it (see `read_body`).
const BODY_SLACK: usize = 8 << 10;

/// How long a keep-alive connection keeps its read buffer while waiting for its next request.
/// Short: a busy client's next request comes within it, and a burst of connections that go
/// quiet does not leave a buffer per connection behind for long (at 1 s, 10,000 clients
/// connecting within 2 s held ~5,000 buffers at once, which stayed resident once freed).
/// A client whose requests come further apart pays one readiness wait per request.
const HOT: Duration = Duration::from_millis(100);

/// `Ok(None)`: the client closed (or idled out) between requests.
async fn read_head<S: Stream, E, A>(
    conn: &mut S,
    buf: &mut BytesMut,
    limits: &Limits,
    idle: Duration,
    header_timeout: Duration,
) -> Result<Option<RequestHead>, Reply<E, A>> {
    if buf.is_empty() {
        // A busy connection reads its next request straight into the buffer it has. One
        // that stays quiet longer than HOT gives its buffer back (the cancelled read takes
        // it) and waits for readability without one, so idle keep-alive connections hold no
        // buffer memory.
        let started = monoio::time::Instant::now();
        if buf.capacity() > 0 {
            let read = {
                let read = std::pin::pin!(conn.read_more(buf));
                let hot = std::pin::pin!(monoio::time::sleep_until(started + HOT.min(idle)));
                crate::runtime::timed(read, hot).await
            };
            match read {
                Some(Ok(0)) | Some(Err(_)) => return Ok(None),
                Some(Ok(_)) => {}
                None => *buf = BytesMut::new(),
            }
        }
        if buf.is_empty() {
            let left = idle.saturating_sub(started.elapsed());
            match monoio::time::timeout(left, conn.readable()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return Ok(None),
            }
            match monoio::time::timeout(header_timeout, conn.read_more(buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return Ok(None),
                Ok(Ok(_)) => {}
                Err(_) => return Err(refuse(408, "request head not received in time")),
            }
        }
    }
    // From the first read that left the head incomplete (a whole head, the usual case,
    // reads no clock).
    let mut deadline = None;
    loop {
        match codec::parse_request_head(buf, limits) {
            Ok(Some(h)) => return Ok(Some(h)),
            Ok(None) => {}
            Err(e) => return Err(refuse(e.status(), &format!("{e:?}"))),
        }
        let until = *deadline.get_or_insert_with(|| monoio::time::Instant::now() + header_timeout);
        match monoio::time::timeout_at(until, conn.read_more(buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(None),
            Ok(Ok(_)) => {}
            Err(_) => return Err(refuse(408, "request head not received in time")),
        }
    }
}

async fn read_body<S: Stream, H: Handler>(
    conn: &mut S,
    buf: &mut BytesMut,
    head: &RequestHead,
    limits: &Limits,
    timeout: Duration,
    h: &H,
) -> Result<Bytes, Reply<H::Events, H::Array>> {
    let wants_continue = head.expect_continue && buf.is_empty();
    match head.body {
        BodyKind::Empty | BodyKind::UntilClose => Ok(Bytes::new()),
        BodyKind::Length(n) => {
            let n = usize::try_from(n).map_err(|_| refuse(413, "body too large"))?;
            if n > limits.max_body_bytes {
                return Err(refuse(413, "Content-Length over the limit"));
            }
            if wants_continue && n > 0 {
                send_continue(conn, h).await?;
            }
            let deadline = monoio::time::Instant::now() + timeout;
            while buf.len() < n {
                if buf.capacity() - buf.len() < n - buf.len() {
                    // Room for the body and, past it, the next request's head: a client
                    // sending bodies of one size then fits each request in the buffer the
                    // last one left (reclaimed once its body is dropped), instead of growing
                    // it by the head's size and copying the body read so far, every time.
                    buf.reserve(n - buf.len() + BODY_SLACK);
                }
                match monoio::time::timeout_at(deadline, conn.read_more(buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => {
                        return Err(refuse(400, "connection closed mid-body"))
                    }
                    Ok(Ok(_)) => {}
                    Err(_) => return Err(refuse(408, "body not received in time")),
                }
            }
            Ok(buf.split_to(n).freeze())
        }
        BodyKind::Chunked => {
            if wants_continue {
                send_continue(conn, h).await?;
            }
            let mut dec = ChunkedDecoder::new(limits.max_body_bytes);
            let mut out = BytesMut::new();
            let deadline = monoio::time::Instant::now() + timeout;
            loop {
                match dec.decode(buf, &mut out) {
                    Ok(true) => return Ok(out.freeze()),
                    Ok(false) => {}
                    Err(codec::BodyError::TooLarge) => {
                        return Err(refuse(413, "chunked body over the limit"))
                    }
                    Err(codec::BodyError::Malformed(why)) => return Err(refuse(400, why)),
                }
                match monoio::time::timeout_at(deadline, conn.read_more(buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => {
                        return Err(refuse(
                            400,
                            "connection closed mid-body (truncated chunked body)",
                        ))
                    }
                    Ok(Ok(_)) => {}
                    Err(_) => return Err(refuse(408, "body not received in time")),
                }
            }
        }
    }
}

async fn send_continue<S: Stream, H: Handler>(
    conn: &mut S,
    h: &H,
) -> Result<(), Reply<H::Events, H::Array>> {
    let r = send(conn, Bytes::from_static(codec::CONTINUE_100), h).await;
    r.map(|_| ())
        .map_err(|_| refuse(400, "cannot write 100 Continue"))
}

async fn write_reply<S: Stream, H: Handler>(
    conn: &mut S,
    reply: Reply<H::Events, H::Array>,
    keep_alive: bool,
    h: &H,
) -> std::io::Result<()> {
    let fields = reply.headers.iter().map(|(k, v)| (*k, &v[..]));
    match reply.body {
        Body::Empty => {
            let head = crate::arena::build(256, |out| {
                codec::write_response_fields(out, reply.status, fields, Some(0), keep_alive)
            });
            send(conn, head, h).await
        }
        Body::Full(ct, body) => {
            let fields = fields.chain([("Content-Type", ct.as_bytes())]);
            let head = crate::arena::build(256, |out| {
                codec::write_response_fields(
                    out,
                    reply.status,
                    fields,
                    Some(body.len()),
                    keep_alive,
                )
            });
            // Head and body in one write, the body not copied.
            let mut parts = Segments::default();
            parts.push(head);
            parts.push(body);
            if written_now(conn, &mut parts)? {
                return Ok(());
            }
            send_segments(conn, parts, h).await
        }
        Body::JsonPieces(pieces) => {
            let fields = fields.chain([("Content-Type", &b"application/json"[..])]);
            let len = Some(pieces.len());
            let head = crate::arena::build(256, |out| {
                codec::write_response_fields(out, reply.status, fields, len, keep_alive)
            });
            // One write; the pieces are not joined (a list's page is the snapshot's own).
            let mut parts = Segments::default();
            parts.push(head);
            parts.push(pieces.head);
            parts.push(pieces.body);
            parts.push(Bytes::from_static(pieces.tail));
            if written_now(conn, &mut parts)? {
                return Ok(());
            }
            send_segments(conn, parts, h).await
        }
        Body::Events(source) => {
            let mut out = BytesMut::with_capacity(256);
            let fields = fields.chain([
                ("Content-Type", &b"text/event-stream"[..]),
                ("Cache-Control", b"no-cache"),
            ]);
            let keep_alive = keep_alive && source.keep_alive();
            codec::write_response_fields(&mut out, reply.status, fields, None, keep_alive);
            write_events(conn, source, out, h).await
        }
        Body::Array(items, first) => {
            let mut out = BytesMut::with_capacity(256);
            let fields = fields.chain([("Content-Type", &b"application/json"[..])]);
            codec::write_response_fields(&mut out, reply.status, fields, None, keep_alive);
            write_array(conn, items, first, out, h).await
        }
    }
}

/// Writes an SSE body as its source gives events (the head, already in `out`, goes at once
/// or with the first ones when they are ready), then the last chunk. A failed write tells the source the client is gone.
async fn write_events<S: Stream, H: Handler>(
    conn: &mut S,
    mut source: H::Events,
    mut out: BytesMut,
    h: &H,
) -> std::io::Result<()> {
    if !source.ready() {
        send(conn, std::mem::take(&mut out).freeze(), h).await?;
    }
    loop {
        let more = source.next(&mut SseOut(&mut out)).await;
        if !more {
            codec::write_last_chunk(&mut out);
        }
        if !out.is_empty() {
            if let Err(e) = send(conn, std::mem::take(&mut out).freeze(), h).await {
                source.broken();
                return Err(e);
            }
        }
        if !more {
            return Ok(());
        }
    }
}

/// Writes a JSON array (its head already in `out`) chunked while its elements are made, so only one answer (plus up to
/// BATCH_FLUSH bytes of small ones) is held at a time. A client that goes away ends it: the
/// remaining elements are not made.
async fn write_array<S: Stream, H: Handler>(
    conn: &mut S,
    mut items: H::Array,
    first: Bytes,
    mut out: BytesMut,
    h: &H,
) -> std::io::Result<()> {
    codec::write_chunk(&mut out, b"[");
    let mut next = Some(first);
    let mut comma = false;
    while let Some(answer) = next {
        if comma {
            codec::write_chunk(&mut out, b",");
        }
        comma = true;
        if answer.len() >= BATCH_FLUSH {
            // The chunk's size line goes with what is gathered; its data as it is.
            let _ = std::fmt::Write::write_fmt(&mut out, format_args!("{:x}\r\n", answer.len()));
            send(conn, std::mem::take(&mut out).freeze(), h).await?;
            send(conn, answer, h).await?;
            out.extend_from_slice(b"\r\n");
        } else {
            codec::write_chunk(&mut out, &answer);
            if out.len() >= BATCH_FLUSH {
                send(conn, std::mem::take(&mut out).freeze(), h).await?;
            }
        }
        // Boxed: an element's call is a large future; inline, it would make every
        // reply's future (boxed per request) as large.
        next = Box::pin(items.next()).await;
    }
    codec::write_chunk(&mut out, b"]");
    codec::write_last_chunk(&mut out);
    send(conn, out.freeze(), h).await
}

/// Writes all of `buf`; fails with `TimedOut` (and counts it) when the client has not taken
/// it within `write_timeout_ms`: a client that stops reading cannot hold a task, its
/// buffers and whatever it waits on forever.
async fn send<S: Stream, H: Handler>(conn: &mut S, buf: Bytes, h: &H) -> std::io::Result<()> {
    within_write_timeout(conn.write_all(buf), h).await
}

/// Gives the socket what of `parts` it takes at once ([`Stream::write_now`]) and drops that
/// from `parts`; whether all was taken. Callers try it before [`send_segments`]: a reply
/// written whole then makes none of that one's futures.
fn written_now<S: Stream>(conn: &mut S, parts: &mut Segments) -> std::io::Result<bool> {
    let taken = conn.write_now(parts)?;
    parts.advance(taken);
    Ok(parts.is_empty())
}

/// [`send`] for parts written as one. Callers first try [`written_now`]: these futures are
/// large (a write, monoio's timer) and were moved at every level.
async fn send_segments<S: Stream, H: Handler>(
    conn: &mut S,
    parts: Segments,
    h: &H,
) -> std::io::Result<()> {
    within_write_timeout(conn.write_segments(parts), h).await
}

async fn within_write_timeout<H: Handler>(
    write: impl std::future::Future<Output = std::io::Result<()>>,
    h: &H,
) -> std::io::Result<()> {
    match monoio::time::timeout(h.conf().write_timeout, write).await {
        Ok(r) => r,
        Err(_) => {
            h.limits().hit(crate::limits::Limit::SlowReader);
            tracing::info!("client read nothing within write_timeout_ms: disconnected");
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "client does not read",
            ))
        }
    }
}
