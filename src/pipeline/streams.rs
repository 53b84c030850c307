//! Phase: streams. What a client reads over time: the GET stream of a session, the rest of
//! a POST stream it resumes (`Last-Event-ID`), a call answered as SSE, and the end of a
//! session (DELETE). The sources here feed `transport::server`, which only writes what they
//! give. A call whose client went away is relayed on into its replay buffer (detached).
//!
//! Never routes, authorizes or rewrites a request: those are done before a stream opens.

use std::{rc::Rc, sync::Arc, time::Duration};

use bytes::Bytes;
use futures_util::future::{select, Either};

use super::{
    admit::{self, accepts, Admitted},
    context::{select_first, Ctx},
    relay::{Event, Relay},
};
use crate::{
    jsonrpc::{Code, Kind},
    registry::names,
    session::{self, Inbox, Outbox, Replay, Session},
    state::Shared,
    transport::{
        http::RequestHead,
        reply::{EventSource, Never, Reply, SseOut, Widen},
    },
    upstream::{Upstream, UpstreamSession},
};

/// A reply of the pipeline that may stream SSE (and never a batch's array).
pub type Streamed = Reply<Sse, Never>;

/// A streamed SSE body of the pipeline.
pub enum Sse {
    /// A session's GET stream, or a `subscriptions/listen` stream.
    Open(Box<OpenStream>),
    /// The rest of an earlier POST stream.
    Resume(ResumeStream),
    /// A call answered as SSE.
    Call(Box<CallStream>),
}

impl Sse {
    /// The stream of a call whose first message is `first`.
    pub fn call(shared: &Shared, relay: Box<Relay>, first: Bytes) -> Self {
        Sse::Call(Box::new(CallStream::new(shared, relay, first)))
    }
}

impl Widen<Sse> for Sse {
    fn widen(self) -> Sse {
        self
    }
}

impl EventSource for Sse {
    fn keep_alive(&self) -> bool {
        // A GET stream ends only with the session, the gateway or the client.
        !matches!(self, Sse::Open(_))
    }

    fn ready(&self) -> bool {
        matches!(self, Sse::Call(c) if c.first.is_some())
    }

    async fn next(&mut self, out: &mut SseOut<'_>) -> bool {
        match self {
            Sse::Open(s) => s.next(out).await,
            Sse::Resume(s) => s.next(out).await,
            Sse::Call(s) => Box::pin(s.next(out)).await,
        }
    }

    fn broken(self) {
        if let Sse::Call(s) = self {
            s.broken();
        }
    }
}

/// A server-to-client SSE stream fed by an inbox, open until `ended` disconnects (the
/// session ended) or the inbox is replaced by a newer GET; keep-alive comments in between.
pub struct OpenStream {
    /// Messages for the client.
    pub inbox: Inbox,
    /// Disconnects when the session ends.
    pub ended: flume::Receiver<()>,
    /// Held while the stream is open; upstream stream readers stop when it drops.
    pub alive: flume::Sender<()>,
    /// The GET stream's replay buffer (not the session: holding it would keep the session,
    /// and so this stream, alive after the client ended it).
    pub replay: Option<Arc<Replay>>,
    /// Events of the GET stream after this sequence number are sent first
    /// (`Last-Event-ID: 0-<seq>`).
    pub resume_after: Option<u64>,
    /// The last event when the gateway ends the stream (drain, or `ended`): a listen
    /// stream's result. `None` for GET streams.
    pub farewell: Option<Bytes>,
    /// For shutdown and the keep-alive interval.
    pub shared: Arc<Shared>,
    /// Quiet time counted toward the next keep-alive.
    pub since: Duration,
}

impl OpenStream {
    async fn next(&mut self, out: &mut SseOut<'_>) -> bool {
        if let (Some(replay), Some(after)) = (&self.replay, self.resume_after.take()) {
            for (seq, m) in replay.after(after).0 {
                out.event(Some(&format!("0-{seq}")), &m);
            }
            if !out.is_empty() {
                return true;
            }
        }
        let every = self.shared.config.gateway.sse_keepalive;
        // Shutdown is noticed at least this often; messages and session end at once.
        let tick = every.min(Duration::from_secs(1));
        loop {
            let woke = monoio::time::timeout(
                tick,
                select(
                    Box::pin(self.inbox.recv()),
                    Box::pin(self.ended.recv_async()),
                ),
            )
            .await;
            match woke {
                Ok(Either::Left((Ok(m), _))) => {
                    let id = self
                        .replay
                        .as_ref()
                        .map(|r| format!("0-{}", r.push(m.clone())));
                    out.event(id.as_deref(), &m);
                    return true;
                }
                // Inbox replaced (newer GET) or session gone: end this stream.
                Ok(Either::Left((Err(_), _))) | Ok(Either::Right(_)) => {
                    if let Some(f) = &self.farewell {
                        out.event(None, f);
                    }
                    return false;
                }
                // Draining: a last event says why and when to reconnect (to another instance
                // behind the same address, or this one restarted), then the stream ends.
                Err(_) if self.shared.stopping() => {
                    if let Some(f) = &self.farewell {
                        out.event(None, f);
                    }
                    out.comment_and_retry("shutting down", 1000);
                    return false;
                }
                Err(_) => {
                    self.since += tick;
                    if self.since >= every {
                        self.since = Duration::ZERO;
                        out.comment("keep-alive");
                        return true;
                    }
                }
            }
        }
    }
}

/// The events of POST stream `stream` after `after`, following it until it completes.
pub struct ResumeStream {
    /// Its buffer.
    pub replay: Arc<Replay>,
    /// Its number.
    pub stream: u32,
    /// Send events after this one.
    pub after: u64,
    changed: Option<flume::Receiver<()>>,
}

impl ResumeStream {
    async fn next(&mut self, out: &mut SseOut<'_>) -> bool {
        let changed = self
            .changed
            .get_or_insert_with(|| self.replay.changed())
            .clone();
        loop {
            let (events, done) = self.replay.after(self.after);
            for (seq, m) in &events {
                out.event(Some(&format!("{}-{seq}", self.stream)), m);
                self.after = *seq;
            }
            if done {
                return false;
            }
            if !out.is_empty() {
                return true;
            }
            if changed.recv_async().await.is_err() {
                return false;
            }
        }
    }
}

/// A call answered as an SSE stream: its first message, then the relay's events until the
/// response. With a replay buffer (`sse_replay_events`), events carry ids and a client that
/// goes away mid-call can resume; with `sse_poll_ms`, the response ends early and the call
/// goes on into the buffer.
pub struct CallStream {
    relay: Option<Box<Relay>>,
    first: Option<Bytes>,
    stream: u32,
    replay: Option<Arc<Replay>>,
    keep: Duration,
    poll: Option<Duration>,
    started: monoio::time::Instant,
    finished: bool,
}

impl CallStream {
    fn new(shared: &Shared, relay: Box<Relay>, first: Bytes) -> Self {
        let g = &shared.config.gateway;
        let (stream, replay) = if g.sse_replay_events > 0 {
            let (n, r) = relay
                .session()
                .open_stream(g.sse_replay_events, g.sse_buffer_bytes);
            (n, Some(r))
        } else {
            (0, None)
        };
        CallStream {
            relay: Some(relay),
            first: Some(first),
            stream,
            replay,
            keep: g.sse_replay,
            poll: g.sse_poll,
            started: monoio::time::Instant::now(),
            finished: false,
        }
    }

    fn event(&self, out: &mut SseOut<'_>, m: Bytes) {
        let id = self
            .replay
            .as_ref()
            .map(|r| format!("{}-{}", self.stream, r.push(m.clone())));
        out.event(id.as_deref(), &m);
    }

    /// The call is over: its buffer is complete, and forgotten after `keep`.
    fn finish(&mut self) {
        self.finished = true;
        if let (Some(replay), Some(relay)) = (&self.replay, &self.relay) {
            replay.finish();
            retire(relay.session().clone(), self.stream, self.keep);
        }
    }

    async fn next(&mut self, out: &mut SseOut<'_>) -> bool {
        if let Some(m) = self.first.take() {
            self.event(out, m);
            return true;
        }
        if let (Some(poll), Some(replay)) = (self.poll, &self.replay) {
            if self.started.elapsed() >= poll {
                // End this response cleanly; the call goes on into the replay buffer and
                // the client resumes with Last-Event-ID after `retry` ms.
                out.retry(100);
                tracing::debug!(
                    stream = self.stream,
                    "call stream ended early (sse_poll_ms); the client resumes"
                );
                if let Some(relay) = self.relay.take() {
                    detach(relay, replay.clone(), self.keep);
                }
                self.finished = true;
                return false;
            }
        }
        let Some(relay) = self.relay.as_mut() else {
            return false;
        };
        match relay.next().await {
            Event::Message(m) => {
                self.event(out, m);
                true
            }
            Event::Final(b) => {
                self.event(out, b.into_bytes());
                self.finish();
                false
            }
            Event::Cancelled => {
                self.finish();
                false
            }
        }
    }

    /// The client went away mid-call: that is not a cancellation. The call is relayed on
    /// into the replay buffer so the client can resume with Last-Event-ID.
    fn broken(mut self) {
        if self.finished {
            return;
        }
        if let (Some(replay), Some(relay)) = (self.replay.take(), self.relay.take()) {
            detach(relay, replay, self.keep);
        }
    }
}

/// `GET`: the session's server-to-client stream, or the rest of a POST stream it resumes
/// (`Last-Event-ID: <stream>-<seq>`).
pub fn get(ctx: &Rc<Ctx>, req: &RequestHead, a: &Admitted) -> Streamed {
    if !ctx.shared.config.gateway.get_stream {
        let mut r = Reply::error(
            405,
            Code::BadHttpRequest,
            "Method not allowed: no server-to-client stream",
        );
        r.headers
            .push(("Allow", Bytes::from_static(b"POST, DELETE")));
        return r;
    }
    if !accepts(req, "text/event-stream") {
        return Reply::error(
            406,
            Code::BadHttpRequest,
            "Not Acceptable: GET needs Accept: text/event-stream",
        );
    }
    let sess = match admit::session(ctx, req, a.server.as_deref(), &a.principal) {
        Ok((_, s)) => s,
        Err(r) => return r.widen(),
    };
    let last = req.header_str("last-event-id").and_then(parse_event_id);
    let mut resume_after = None;
    if let Some((stream, seq)) = last {
        if stream != 0 {
            if let Some(replay) = sess.streams.get(&stream) {
                return Reply::events(Sse::Resume(ResumeStream {
                    replay,
                    stream,
                    after: seq,
                    changed: None,
                }));
            }
            // Unknown or expired: a fresh GET stream.
        } else {
            resume_after = Some(seq);
        }
    }
    let g = &ctx.shared.config.gateway;
    let (alive, alive_rx) = flume::bounded::<()>(1);
    let (outbox, inbox) = session::outbox(g.sse_buffer_bytes, alive_rx);
    let outbox = Arc::new(outbox);
    // A newer GET replaces an older one: the old stream's inbox loses its sender and ends.
    sess.outbox.store(Some(outbox.clone()));
    let snap = &a.snap;
    for (name, us) in sess.upstreams.entries() {
        if let Some(up) = snap.by_name.get(&*name).and_then(|r| snap.upstream(*r)) {
            listen_upstream(ctx, up.clone(), us, outbox.clone());
        }
    }
    Reply::events(Sse::Open(Box::new(OpenStream {
        inbox,
        ended: sess.ended(),
        alive,
        replay: match g.sse_replay_events {
            0 => None,
            cap => Some(sess.get_stream(cap, g.sse_buffer_bytes)),
        },
        resume_after,
        farewell: None,
        shared: ctx.shared.clone(),
        since: Duration::ZERO,
    })))
}

/// Relays a per-client upstream session's own stream (notifications not tied to a
/// request: resource updates, log messages) into a client's GET stream, until that
/// stream closes (`alive` disconnects) or the upstream ends it.
pub fn listen_upstream(
    ctx: &Rc<Ctx>,
    up: Arc<Upstream>,
    us: Arc<UpstreamSession>,
    outbox: Arc<Outbox>,
) {
    let ctx = ctx.clone();
    monoio::spawn(async move {
        let mut stream = match up.listen_session(&ctx.caller, &us, &[]).await {
            Ok(Some(s)) => s,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(upstream = %up.name, error = %e, "upstream GET stream not opened");
                return;
            }
        };
        loop {
            let next = select_first(stream.next(), outbox.alive.recv_async()).await;
            let Some(Ok(Some(m))) = next else { return };
            if let Some(out) = translate_unsolicited(&ctx, &up, m) {
                outbox.offer(out, &ctx.shared.limits);
            }
        }
    });
}

/// A message an upstream sent outside any call, as the client must see it.
fn translate_unsolicited(ctx: &Ctx, up: &Upstream, m: Bytes) -> Option<Bytes> {
    let frame = ctx.caller.parser.borrow_mut().parse_upstream(m).ok()?;
    if frame.kind() != Kind::Notification {
        // Upstream requests outside a call are not routed yet; the upstream times out.
        return None;
    }
    let method = frame.method()?;
    if method.ends_with("/list_changed") {
        ctx.shared.request_refresh();
        return None;
    }
    if method == "notifications/resources/updated" && up.prefix {
        let span = frame.param("uri")?;
        let uri = frame.str_at(span)?;
        let exposed = serde_json::to_vec(&names::expose_uri(&up.name, &uri)).ok()?;
        return Some(frame.splice(&mut [(span, &exposed)]));
    }
    Some(frame.bytes().clone())
}

/// `DELETE`: ends the session and, in the background, its own upstream sessions.
pub fn delete(ctx: &Rc<Ctx>, req: &RequestHead, a: &Admitted) -> Streamed {
    match admit::session(ctx, req, a.server.as_deref(), &a.principal) {
        Ok((id, _)) => {
            if let Some(s) = ctx.shared.sessions.remove(&id) {
                // The id maps must be empty by now: a leftover entry is a leak.
                tracing::debug!(
                    session = ?id,
                    in_flight = s.in_flight.len(),
                    server_requests = s.server_requests.len(),
                    "session ended by client"
                );
                let ups = s.upstreams.entries();
                if !ups.is_empty() {
                    end_upstream_sessions(ctx, ups);
                }
            }
            Reply::empty(200)
        }
        Err(r) => r.widen(),
    }
}

/// Ends upstream sessions (DELETE at each upstream, by upstream name), in the background.
pub fn end_upstream_sessions(ctx: &Rc<Ctx>, sessions: Vec<(Arc<str>, Arc<UpstreamSession>)>) {
    let ctx = ctx.clone();
    monoio::spawn(async move {
        let snap = ctx.shared.snapshot.load_full();
        for (name, us) in sessions {
            if let Some(up) = snap.by_name.get(&name).and_then(|r| snap.upstream(*r)) {
                up.end_session(&ctx.caller, &us).await;
            }
        }
    });
}

/// Keeps relaying a call whose client connection broke, into its replay buffer.
fn detach(mut relay: Box<Relay>, replay: Arc<Replay>, keep: Duration) {
    monoio::spawn(async move {
        loop {
            match relay.next().await {
                Event::Message(m) => {
                    replay.push(m);
                }
                Event::Final(b) => {
                    replay.push(b.into_bytes());
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

/// Parses an event id the gateway issued: `<stream>-<seq>`.
pub fn parse_event_id(s: &str) -> Option<(u32, u64)> {
    let (a, b) = s.trim().split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}
