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

use std::{rc::Rc, sync::Arc, time::Duration};

use bytes::{Bytes, BytesMut};
use monoio::{io::AsyncWriteRent, net::TcpStream};

use super::http::{self as codec, BodyKind, ChunkedDecoder, Limits, RequestHead};
use crate::{
    jsonrpc::Code,
    limits::{ConnPermit, Limit},
    net::{
        tls::{ServerTls, TlsStream},
        Stream,
    },
    pipeline::relay::Event,
    pipeline::{Front, Reply, ReplyBody},
    session::{Replay, Session},
};
use futures_util::future::{select, Either};

/// Serves one connection until it closes, errs, idles out or the gateway stops; `permit`
/// holds its place under the connection limits until then.
///
/// Generic over the stream: plain TCP is served by direct `TcpStream` calls (no box, no
/// dynamic dispatch), TLS by [`TlsStream`]'s.
pub async fn serve<S: Stream>(
    mut conn: S,
    front: Rc<Front>,
    permit: ConnPermit,
    peer: std::net::IpAddr,
) {
    let _permit = permit;
    serve_requests(&mut conn, &front, peer).await;
    conn.close().await;
}

/// [`serve`] on a TLS listener: the handshake first, within `header_timeout_ms`. A failed
/// one is logged (debug) and counted (`mcpgw_tls_handshake_failures_total`).
pub async fn serve_tls(
    conn: TcpStream,
    tls: ServerTls,
    front: Rc<Front>,
    permit: ConnPermit,
    peer: std::net::IpAddr,
) {
    let timeout = front.shared().config.gateway.header_timeout;
    let stream: TlsStream = match monoio::time::timeout(timeout, tls.accept(conn)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            front.shared().limits.tls_handshake_failed();
            tracing::debug!(client = %peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            front.shared().limits.tls_handshake_failed();
            tracing::debug!(client = %peer, "TLS handshake not completed in time");
            return;
        }
    };
    serve(stream, front, permit, peer).await;
}

async fn serve_requests<S: Stream>(conn: &mut S, front: &Rc<Front>, peer: std::net::IpAddr) {
    let shared = front.shared().clone();
    let g = &shared.config.gateway;
    let limits = Limits {
        max_header_bytes: g.max_header_bytes,
        max_body_bytes: g.max_body_bytes,
    };
    // Allocated when the first bytes arrive (see `read_head`): a connection that sends
    // nothing costs no buffer.
    let mut buf = BytesMut::new();
    loop {
        if front.shared().stopping() && buf.is_empty() {
            return;
        }
        let head = match read_head(conn, &mut buf, &limits, g.idle_timeout, g.header_timeout).await
        {
            Ok(Some(h)) => h,
            Ok(None) => return,
            Err(reply) => {
                let _ = write_reply(conn, reply, false, front).await;
                return;
            }
        };
        let _ = buf.split_to(head.head_len);
        let body = match read_body(conn, &mut buf, &head, &limits, g.idle_timeout, front).await {
            Ok(b) => b,
            Err(reply) => {
                let _ = write_reply(conn, reply, false, front).await;
                return;
            }
        };
        let keep_alive = head.keep_alive && !front.shared().stopping();
        // Counted from here until the answer is written: a drain waits for these.
        let _busy = front.busy();
        // Boxed: their state machines are large, and a connection waiting for its next
        // request should not carry them (idle connections cost memory, not these futures).
        let reply = Box::pin(front.handle(&head, body, peer, conn.peer_identity())).await;
        if Box::pin(write_reply(conn, reply, keep_alive, front))
            .await
            .is_err()
            || !keep_alive
        {
            return;
        }
    }
}

/// Answers a connection over a connection limit: 503 (worker full) or 429 (too many from
/// this address), `Retry-After: 1`, then closes. The client's request, if it sent one, is
/// read and discarded for up to a second first so that the close does not reset the
/// connection before the answer is read; past 64 such closes at once they are immediate.
pub async fn refuse_connection(mut conn: TcpStream, limit: Limit, front: Rc<Front>) {
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
    if send(&mut conn, out.freeze(), &front).await.is_err() {
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

fn refuse(status: u16, why: &str) -> Reply {
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

/// How long a keep-alive connection keeps its read buffer while waiting for its next request.
const HOT: Duration = Duration::from_secs(1);

/// `Ok(None)`: the client closed (or idled out) between requests.
async fn read_head<S: Stream>(
    conn: &mut S,
    buf: &mut BytesMut,
    limits: &Limits,
    idle: Duration,
    header_timeout: Duration,
) -> Result<Option<RequestHead>, Reply> {
    if buf.is_empty() {
        // A busy connection reads its next request straight into the buffer it has. One
        // that stays quiet longer than HOT gives its buffer back (the cancelled read takes
        // it) and waits for readability without one, so idle keep-alive connections hold no
        // buffer memory.
        let started = monoio::time::Instant::now();
        if buf.capacity() > 0 {
            match monoio::time::timeout(HOT.min(idle), conn.read_more(buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return Ok(None),
                Ok(Ok(_)) => {}
                Err(_) => *buf = BytesMut::new(),
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
    let deadline = monoio::time::Instant::now() + header_timeout;
    loop {
        match codec::parse_request_head(buf, limits) {
            Ok(Some(h)) => return Ok(Some(h)),
            Ok(None) => {}
            Err(e) => return Err(refuse(e.status(), &format!("{e:?}"))),
        }
        match monoio::time::timeout_at(deadline, conn.read_more(buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(None),
            Ok(Ok(_)) => {}
            Err(_) => return Err(refuse(408, "request head not received in time")),
        }
    }
}

async fn read_body<S: Stream>(
    conn: &mut S,
    buf: &mut BytesMut,
    head: &RequestHead,
    limits: &Limits,
    timeout: Duration,
    front: &Front,
) -> Result<Bytes, Reply> {
    let wants_continue = head.expect_continue && buf.is_empty();
    match head.body {
        BodyKind::Empty | BodyKind::UntilClose => Ok(Bytes::new()),
        BodyKind::Length(n) => {
            let n = usize::try_from(n).map_err(|_| refuse(413, "body too large"))?;
            if n > limits.max_body_bytes {
                return Err(refuse(413, "Content-Length over the limit"));
            }
            if wants_continue && n > 0 {
                send_continue(conn, front).await?;
            }
            let deadline = monoio::time::Instant::now() + timeout;
            while buf.len() < n {
                if buf.capacity() - buf.len() < n - buf.len() {
                    buf.reserve(n - buf.len());
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
                send_continue(conn, front).await?;
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

async fn send_continue<S: Stream>(conn: &mut S, front: &Front) -> Result<(), Reply> {
    let r = send(conn, Bytes::from_static(codec::CONTINUE_100), front).await;
    r.map(|_| ())
        .map_err(|_| refuse(400, "cannot write 100 Continue"))
}

async fn write_reply<S: Stream>(
    conn: &mut S,
    reply: Reply,
    keep_alive: bool,
    front: &Front,
) -> std::io::Result<()> {
    let mut out = BytesMut::with_capacity(256);
    let mut headers: Vec<(&str, &[u8])> = reply.headers.iter().map(|(k, v)| (*k, &v[..])).collect();
    match reply.body {
        ReplyBody::Empty => {
            codec::write_response_head(&mut out, reply.status, &headers, Some(0), keep_alive);
            let r = send(conn, out.freeze(), front).await;
            r.map(|_| ())
        }
        ReplyBody::Full(ct, body) => {
            headers.push(("Content-Type", ct.as_bytes()));
            codec::write_response_head(
                &mut out,
                reply.status,
                &headers,
                Some(body.len()),
                keep_alive,
            );
            if body.len() <= 16 << 10 {
                out.extend_from_slice(&body);
                let r = send(conn, out.freeze(), front).await;
                r.map(|_| ())
            } else {
                let r = send(conn, out.freeze(), front).await;
                r?;
                let r = send(conn, body, front).await;
                r.map(|_| ())
            }
        }
        ReplyBody::Stream {
            inbox,
            ended,
            alive,
            replay,
            resume_after,
            farewell,
        } => {
            headers.push(("Content-Type", b"text/event-stream"));
            headers.push(("Cache-Control", b"no-cache"));
            codec::write_response_head(&mut out, reply.status, &headers, None, false);
            let r = send(conn, out.freeze(), front).await;
            r?;
            let res = stream(conn, inbox, ended, replay, resume_after, farewell, front).await;
            drop(alive);
            res
        }
        ReplyBody::Resume {
            replay,
            stream,
            after,
        } => {
            headers.push(("Content-Type", b"text/event-stream"));
            headers.push(("Cache-Control", b"no-cache"));
            codec::write_response_head(&mut out, reply.status, &headers, None, keep_alive);
            let r = send(conn, out.freeze(), front).await;
            r?;
            resume(conn, &replay, stream, after, front).await
        }
        ReplyBody::Batch(mut batch, first) => {
            // Chunked: the array is written while its elements run, so only one answer
            // (plus up to BATCH_FLUSH bytes of small ones) is held at a time. A client that
            // goes away ends the batch: its remaining elements do not run.
            headers.push(("Content-Type", b"application/json"));
            codec::write_response_head(&mut out, reply.status, &headers, None, keep_alive);
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
                    let _ = std::fmt::Write::write_fmt(
                        &mut out,
                        format_args!("{:x}\r\n", answer.len()),
                    );
                    let r = send(conn, std::mem::take(&mut out).freeze(), front).await;
                    r?;
                    let r = send(conn, answer, front).await;
                    r?;
                    out.extend_from_slice(b"\r\n");
                } else {
                    codec::write_chunk(&mut out, &answer);
                    if out.len() >= BATCH_FLUSH {
                        let r = send(conn, std::mem::take(&mut out).freeze(), front).await;
                        r?;
                    }
                }
                // Boxed: an element's call is a large future; inline, it would make every
                // reply's future (boxed per request) as large.
                next = Box::pin(batch.next()).await;
            }
            codec::write_chunk(&mut out, b"]");
            codec::write_last_chunk(&mut out);
            let r = send(conn, out.freeze(), front).await;
            r.map(|_| ())
        }
        ReplyBody::Relay(mut relay, first) => {
            headers.push(("Content-Type", b"text/event-stream"));
            headers.push(("Cache-Control", b"no-cache"));
            codec::write_response_head(&mut out, reply.status, &headers, None, keep_alive);
            let g = &front.shared().config.gateway;
            let (keep, cap, poll) = (g.sse_replay, g.sse_replay_events, g.sse_poll);
            let started = monoio::time::Instant::now();
            let (stream, replay) = if cap > 0 {
                let (n, r) = relay.session().open_stream(cap, g.sse_buffer_bytes);
                (n, Some(r))
            } else {
                (0, None)
            };
            let mut ev = Some(first);
            let mut last = false;
            let mut head = Some(out);
            loop {
                let mut out = head.take().unwrap_or_default();
                if let Some(m) = ev.take() {
                    let id = replay
                        .as_ref()
                        .map(|r| format!("{stream}-{}", r.push(m.clone())));
                    write_event(&mut out, id.as_deref(), &m);
                }
                if last {
                    codec::write_last_chunk(&mut out);
                }
                let r = send(conn, out.freeze(), front).await;
                if let Err(e) = r {
                    // The client went away mid-call: that is not a cancellation. Keep
                    // relaying into the replay buffer so it can resume with Last-Event-ID.
                    if let Some(replay) = replay {
                        if last {
                            replay.finish();
                            retire(relay.session().clone(), stream, keep);
                        } else {
                            detach(relay, replay, keep);
                        }
                    }
                    return Err(e);
                }
                if last {
                    if let Some(replay) = replay {
                        replay.finish();
                        retire(relay.session().clone(), stream, keep);
                    }
                    return Ok(());
                }
                if let (Some(poll), Some(replay)) = (poll, &replay) {
                    if started.elapsed() >= poll {
                        // End this response cleanly; the call goes on into the replay buffer
                        // and the client resumes with Last-Event-ID after `retry` ms.
                        let mut out = BytesMut::new();
                        let mut ev = BytesMut::new();
                        super::sse::write_retry(&mut ev, 100);
                        codec::write_chunk(&mut out, &ev);
                        codec::write_last_chunk(&mut out);
                        tracing::debug!(
                            stream,
                            "call stream ended early (sse_poll_ms); the client resumes"
                        );
                        detach(relay, replay.clone(), keep);
                        let r = send(conn, out.freeze(), front).await;
                        return r.map(|_| ());
                    }
                }
                match relay.next().await {
                    Event::Message(m) => ev = Some(m),
                    Event::Final(b) => {
                        ev = Some(b);
                        last = true;
                    }
                    Event::Cancelled => last = true,
                }
            }
        }
    }
}

/// Keeps relaying a call whose client connection broke, into its replay buffer.
fn detach(mut relay: Box<crate::pipeline::relay::Relay>, replay: Arc<Replay>, keep: Duration) {
    monoio::spawn(async move {
        loop {
            match relay.next().await {
                Event::Message(m) => {
                    replay.push(m);
                }
                Event::Final(b) => {
                    replay.push(b);
                    break;
                }
                Event::Cancelled => break,
            }
        }
        replay.finish();
        let session = relay.session().clone();
        drop(relay);
        monoio::time::sleep(keep).await;
        session.streams.retain(|_, r| !Arc::ptr_eq(r, &replay));
    });
}

/// Forgets a finished stream's replay buffer after `keep`.
fn retire(session: Arc<Session>, stream: u32, keep: Duration) {
    monoio::spawn(async move {
        monoio::time::sleep(keep).await;
        session.streams.remove(&stream);
    });
}

/// Sends the events of POST stream `stream` after `after`, following it until it completes.
async fn resume<S: Stream>(
    conn: &mut S,
    replay: &Replay,
    stream: u32,
    mut after: u64,
    front: &Front,
) -> std::io::Result<()> {
    let changed = replay.changed();
    loop {
        let (events, done) = replay.after(after);
        let mut out = BytesMut::new();
        for (seq, m) in &events {
            write_event(&mut out, Some(&format!("{stream}-{seq}")), m);
            after = *seq;
        }
        if done {
            codec::write_last_chunk(&mut out);
        }
        if !out.is_empty() {
            let r = send(conn, out.freeze(), front).await;
            r?;
        }
        if done || changed.recv_async().await.is_err() {
            return Ok(());
        }
    }
}

/// Writes all of `buf`; fails with `TimedOut` (and counts it) when the client has not taken
/// it within `write_timeout_ms`: a client that stops reading cannot hold a task, its
/// buffers and whatever it waits on forever.
async fn send<S: Stream>(conn: &mut S, buf: Bytes, front: &Front) -> std::io::Result<()> {
    let shared = front.shared();
    match monoio::time::timeout(shared.config.gateway.write_timeout, conn.write_all(buf)).await {
        Ok(r) => r,
        Err(_) => {
            shared.limits.hit(crate::limits::Limit::SlowReader);
            tracing::info!("client read nothing within write_timeout_ms: disconnected");
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "client does not read",
            ))
        }
    }
}

/// Appends one SSE `message` event carrying `data` as a chunk.
fn write_event(out: &mut BytesMut, id: Option<&str>, data: &[u8]) {
    let mut ev = BytesMut::with_capacity(data.len() + 32);
    super::sse::write_event(&mut ev, id, Some("message"), data);
    codec::write_chunk(out, &ev);
}

/// Holds a GET stream open: messages from the session's inbox as SSE events, keep-alive
/// comments in between, until the session ends, the inbox is replaced by a newer GET, the
/// client goes away or the gateway stops.
async fn stream<S: Stream>(
    conn: &mut S,
    inbox: crate::session::Inbox,
    ended: flume::Receiver<()>,
    replay: Option<Arc<Replay>>,
    resume_after: Option<u64>,
    farewell: Option<Bytes>,
    front: &Front,
) -> std::io::Result<()> {
    let shared = front.shared();
    if let (Some(replay), Some(after)) = (&replay, resume_after) {
        let mut out = BytesMut::new();
        for (seq, m) in replay.after(after).0 {
            write_event(&mut out, Some(&format!("0-{seq}")), &m);
        }
        if !out.is_empty() {
            let r = send(conn, out.freeze(), front).await;
            r?;
        }
    }
    let every = shared.config.gateway.sse_keepalive;
    // Shutdown is noticed at least this often; messages and session end at once.
    let tick = every.min(Duration::from_secs(1));
    let mut since = Duration::ZERO;
    loop {
        let woke = monoio::time::timeout(
            tick,
            select(Box::pin(inbox.recv()), Box::pin(ended.recv_async())),
        )
        .await;
        let mut out = BytesMut::new();
        let mut last = false;
        match woke {
            Ok(Either::Left((Ok(m), _))) => {
                let id = replay.as_ref().map(|r| format!("0-{}", r.push(m.clone())));
                write_event(&mut out, id.as_deref(), &m);
            }
            // Inbox replaced (newer GET) or session gone: end this stream.
            Ok(Either::Left((Err(_), _))) | Ok(Either::Right(_)) => {
                if let Some(f) = &farewell {
                    write_event(&mut out, None, f);
                }
                last = true;
            }
            // Draining: a last event says why and when to reconnect (to another instance
            // behind the same address, or this one restarted), then the stream ends.
            Err(_) if shared.stopping() => {
                if let Some(f) = &farewell {
                    write_event(&mut out, None, f);
                }
                let mut ev = BytesMut::new();
                super::sse::write_comment(&mut ev, "shutting down");
                super::sse::write_retry(&mut ev, 1000);
                codec::write_chunk(&mut out, &ev);
                last = true;
            }
            Err(_) => {
                since += tick;
                if since < every {
                    continue;
                }
                since = Duration::ZERO;
                let mut ev = BytesMut::new();
                super::sse::write_comment(&mut ev, "keep-alive");
                codec::write_chunk(&mut out, &ev);
            }
        }
        if last {
            codec::write_last_chunk(&mut out);
        }
        let r = send(conn, out.freeze(), front).await;
        r?;
        if last {
            return Ok(());
        }
    }
}
