//! Phase: call. A routed request goes to its upstream: the upstream session it runs on
//! (created on first use, renewed when the upstream forgot it), the breaker, the timeout,
//! retries of what is safe to send again within the retry budget, the client's
//! cancellation, and then the relay that reads the answer.
//!
//! Never decides whether the request may go (authorize did) nor what it says (rewrite did).

use std::{cell::Cell, rc::Rc, sync::Arc, time::Duration};

use bytes::Bytes;
use futures_channel::oneshot;
use monoio::time::Instant;

use super::{
    authorize,
    context::{select_first, Answer, Call, Ctx},
    record,
    reject::{invalid, rescue, Reject},
    relay::{metric_of, Begun, Event, Outcome, Relay, Spec},
    rewrite::{self, Eras, Rewritten, Routed},
    streams,
};
use crate::{
    error::{Error, ErrorKind},
    guard::policy::Direction,
    jsonrpc::Code,
    observe::trace::{CallTrace, TraceParent},
    session::Session,
    text::Decimal,
    upstream::{connector::Want, OnSession, Sending, SessionMode, Upstream, UpstreamSession},
};

/// What is known of a routed call from when it is admitted to its upstream, for its record.
struct Tracked {
    /// Tool or prompt name, else the method.
    target: Arc<str>,
    /// The upstream's own tool name, for per-tool timeouts.
    original: Option<String>,
    /// The arguments as sent upstream, for an audit log that records them.
    audit_args: Option<Box<serde_json::value::RawValue>>,
    /// When routing began.
    began: Instant,
    /// When the gateway started waiting on the upstream (session set-up, sending,
    /// retries): from there on the call's time counts as the upstream's.
    upstream_began: Cell<Option<Instant>>,
    /// The gateway's span of this call, when spans are exported and the call is sampled.
    trace: Option<CallTrace>,
}

impl Tracked {
    fn new(ctx: &Ctx, call: &Call<'_>, upstream: &Upstream, routed: &Routed) -> Self {
        let f = call.f;
        let method = f.method().unwrap_or_default();
        let target: Arc<str> = match (&*method, &routed.exposed) {
            // The snapshot's name: the one the request named, found by it.
            ("tools/call" | "prompts/get", Some(name)) => name.clone(),
            ("tools/call" | "prompts/get", None) => f
                .param("name")
                .and_then(|s| f.str_at(s))
                .map_or_else(|| method.as_ref().into(), |n| n.as_ref().into()),
            _ => method.as_ref().into(),
        };
        let original = (method == "tools/call" && !upstream.tool_timeouts.is_empty())
            .then(|| {
                routed
                    .rename
                    .as_ref()
                    .and_then(|(_, json)| serde_json::from_slice(json).ok())
            })
            .flatten();
        let trace = ctx.shared.tracing.as_ref().and_then(|t| {
            let from_meta = || {
                let m = f.param("_meta")?;
                TraceParent::parse(&f.str_at(f.member(m, "traceparent")?)?)
            };
            t.begin(call.trace.or_else(from_meta))
        });
        Tracked {
            target,
            original,
            audit_args: audit_arguments(ctx, call, routed),
            began: Instant::now(),
            upstream_began: Cell::new(None),
            trace,
        }
    }

    /// Time spent waiting on the upstream so far.
    fn waited(&self) -> Duration {
        self.upstream_began
            .get()
            .map_or(Duration::ZERO, |t| t.elapsed())
    }

    /// Records a call that failed before its relay began; the refusal to answer with.
    fn failed(&self, ctx: &Ctx, call: &Call<'_>, upstream: &Upstream, e: &Error) -> Reject {
        tracing::warn!(upstream = %upstream.name, error = %e, "upstream call failed");
        record::ended(
            ctx,
            record::Ended {
                target: self.target.clone(),
                upstream: &upstream.name,
                sess: call.sess,
                outcome: metric_of(e),
                total: self.began.elapsed(),
                upstream_wait: self.waited(),
                bytes: (call.bytes().len(), 0),
                trace: self.trace.as_ref(),
                arguments: self.audit_args.clone(),
            },
        );
        Reject::upstream(e)
    }
}

/// The arguments as sent upstream, for an audit log that records them; secrets in them are
/// masked whatever the screening (audit logs live long).
fn audit_arguments(
    ctx: &Ctx,
    call: &Call<'_>,
    routed: &Routed,
) -> Option<Box<serde_json::value::RawValue>> {
    ctx.shared.audit.as_ref().filter(|a| a.wants_arguments())?;
    let raw = match &routed.guarding.arguments {
        Some((_, masked)) => masked.as_slice(),
        None => call.f.param("arguments").and_then(|s| call.f.raw_at(s))?,
    };
    let raw = crate::guard::policy::mask_secrets(&call.snap.guard.screener, raw)?;
    serde_json::value::RawValue::from_string(String::from_utf8(raw).ok()?).ok()
}

/// How the attempts at starting a call ended without a call.
enum Stop {
    Failed(Error),
    Cancelled,
}

/// Sends `call`'s request to the upstream `routed` names, with a fresh id, the name (or
/// URI) put back and its progress token replaced by the gateway id, and relays the answer.
pub async fn forward(ctx: &Rc<Ctx>, call: &Call<'_>, routed: Routed) -> Result<Outcome, Reject> {
    let upstream = authorize::upstream(ctx, call, routed.up)?;
    if call.f.id_span().is_none() {
        return Err(invalid(Code::InvalidRequest, "Invalid Request"));
    }
    let tracked = Tracked::new(ctx, call, &upstream, &routed);
    let eras = Eras::of(call, &upstream);
    let gid = ctx.caller.ids.next();
    let tp = tracked.trace.as_ref().map(|t| t.traceparent());
    let sent = rewrite::request(
        call,
        &upstream,
        &routed,
        eras,
        Decimal::new(gid).as_str(),
        tp.as_deref(),
    );
    // In flight (and cancellable) from here: an upstream that answers JSON sends its
    // response head only with the answer, so `start` may last the whole call.
    // A slice of the request (a reference count), not a copy.
    let client_id = call
        .f
        .id_raw()
        .unwrap_or_else(|| Bytes::copy_from_slice(call.id));
    let (entry, mut cancel) = call.sess.register_call(client_id.clone(), gid);
    let held = Held { client_id, entry };
    // Without a valid OAuth token nothing can be sent: fail now (-32003). Retries and the
    // breaker are for failures of the upstream itself.
    if let Err(e) = upstream.check_credential() {
        return Err(tracked.failed(ctx, call, &upstream, &e));
    }
    let how = Sending {
        traceparent: tp.as_deref(),
        routing: sent.routing.as_ref(),
        own: false,
    };
    let attempt = Attempt {
        ctx,
        sess: call.sess,
        upstream: &upstream,
        body: &sent.body,
        how,
        gid,
        modern: eras.modern,
        timeout: upstream.timeout_for(tracked.original.as_deref()),
        retry_safe: routed.retry_safe,
    };
    let begun = match attempt.run(&mut cancel, &tracked.upstream_began).await {
        Ok(b) => b,
        Err(Stop::Failed(e)) => return Err(tracked.failed(ctx, call, &upstream, &e)),
        Err(Stop::Cancelled) => return Err(Reject::Cancelled),
    };
    let spec = spec(call, upstream, routed, eras, sent, tracked, (held, cancel));
    // The relay runs to its first event here, in this future (a helper taking it by value
    // moved its 688 bytes three times): the answer, or the first message of a stream
    // (which a client that takes JSON only gets on its GET stream, if it has one).
    let mut relay = Relay::new(ctx.clone(), begun, spec);
    Ok(match relay.next().await {
        Event::Final(p) if p.is_whole() => Outcome::Done(p.into_bytes()),
        Event::Final(p) => Outcome::Pieces(p),
        Event::Cancelled => Outcome::Done(rescue(Some(call.id), Reject::Cancelled)),
        Event::Message(m) if call.answer != Answer::Json => Outcome::Streaming(Box::new(relay), m),
        Event::Message(m) => {
            push(ctx, call.sess, m);
            Outcome::Done(Box::pin(finish_pushing(ctx, call.sess, &mut relay)).await)
        }
    })
}

/// A call's place among the session's calls in flight.
struct Held {
    /// The client's id of the call.
    client_id: Bytes,
    /// Its in-flight entry, removed when the relay drops.
    entry: crate::session::InFlightEntry,
}

/// What the relay of a started call needs to know.
fn spec(
    call: &Call<'_>,
    upstream: Arc<Upstream>,
    routed: Routed,
    eras: Eras,
    sent: Rewritten,
    tracked: Tracked,
    (held, cancel): (Held, oneshot::Receiver<()>),
) -> Spec {
    let f = call.f;
    let sess = call.sess;
    let now = Instant::now();
    let client_token = f
        .param("_meta")
        .and_then(|m| f.member(m, "progressToken"))
        .and_then(|t| f.raw_at(t))
        .map(Bytes::copy_from_slice);
    Spec {
        session: sess.clone(),
        timeout: upstream.timeout_for(tracked.original.as_deref()),
        upstream,
        client_id: held.client_id,
        client_token,
        can_push: call.answer != Answer::Json || sess.outbox.load().is_some(),
        target: tracked.target,
        in_flight: (held.entry, cancel),
        request_bytes: f.bytes().len(),
        began: tracked.began,
        upstream_wait: tracked
            .upstream_began
            .get()
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t)),
        started: now,
        audit_arguments: tracked.audit_args,
        screen: routed
            .guarding
            .screen
            .filter(|s| s.covers(Direction::Result))
            .map(|s| (s, call.snap.guard.clone())),
        trace: tracked.trace,
        stateless: sess
            .stateless
            .then(|| crate::mcp::era::result_members(f.method().as_deref())),
        // 2026-07-28: log messages only at or above the request's own level, if it set one.
        log_level: sess.request_log_level,
        upstream_stateless: eras.upstream_stateless,
        sent: sent.sent,
    }
}

/// The attempts at starting one call.
struct Attempt<'a> {
    ctx: &'a Rc<Ctx>,
    sess: &'a Arc<Session>,
    upstream: &'a Arc<Upstream>,
    body: &'a crate::net::Segments,
    how: Sending<'a>,
    gid: u64,
    modern: bool,
    timeout: Duration,
    retry_safe: bool,
}

impl Attempt<'_> {
    /// Starts the call through the breaker, within its timeout, retrying what is safe to
    /// send again within the attempts and the budget, until the client cancels.
    async fn run(
        &self,
        cancel: &mut oneshot::Receiver<()>,
        upstream_began: &Cell<Option<Instant>>,
    ) -> Result<Begun, Stop> {
        let (ctx, upstream) = (self.ctx, self.upstream);
        let policy = upstream.breaker_policy;
        let Some(pass) = upstream.breaker.allow(&policy, ctx.shared.now_ms()) else {
            return Err(Stop::Failed(Error::new(
                ErrorKind::CircuitOpen,
                format!("{}: circuit open", upstream.name),
            )));
        };
        // Tells the breaker how a call that never got a relay ended.
        let broke = |ok: bool| {
            upstream
                .breaker
                .record(&policy, pass, ok, ctx.shared.now_ms())
        };
        upstream.budget.deposit(upstream.retry.budget_percent);
        // Each attempt's timeout runs from its start: the first from now.
        let mut from = Instant::now();
        upstream_began.set(Some(from));
        let sent_on = std::cell::RefCell::new(None);
        let mut attempt = 0u32;
        loop {
            // Pinned where they are (no box, no copy through a helper's arguments).
            let first = {
                let start = std::pin::pin!(self.start(&sent_on));
                let sleep = std::pin::pin!(monoio::time::sleep_until(from + self.timeout));
                let started = std::pin::pin!(crate::runtime::timed(start, sleep));
                let cancelled = std::pin::pin!(fired(cancel));
                match futures_util::future::select(started, cancelled).await {
                    futures_util::future::Either::Left((x, _)) => Some(x.ok_or(())),
                    futures_util::future::Either::Right(_) => None,
                }
            };
            let e = match first {
                Some(Ok(Ok((on, call)))) => {
                    return Ok(Begun {
                        call,
                        on,
                        gid: self.gid,
                        pass,
                    })
                }
                Some(Ok(Err(e))) => e,
                Some(Err(_)) => {
                    broke(false);
                    if let Some(on) = sent_on.borrow().as_ref() {
                        ctx.caller.timed_out(upstream, on);
                    }
                    return Err(Stop::Failed(Error::new(
                        ErrorKind::UpstreamTimeout,
                        format!("{}: no answer", upstream.name),
                    )));
                }
                None => {
                    // Cancelled before the upstream's answer began: the request is abandoned
                    // (its connection closed) and the upstream told, as for a running call.
                    broke(true);
                    if let Some(on) = sent_on.take() {
                        tell_cancelled(ctx, upstream, on, self.gid);
                    }
                    return Err(Stop::Cancelled);
                }
            };
            // Retry only what is safe to send again, within the attempts and the budget.
            let safe = e.kind == ErrorKind::UpstreamUnavailable && (e.unsent || self.retry_safe);
            if !safe || attempt >= upstream.retry.retries || !upstream.budget.withdraw() {
                broke(false);
                return Err(Stop::Failed(e));
            }
            attempt += 1;
            upstream
                .retries_total
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let wait =
                crate::resilience::backoff(&upstream.retry, attempt, crate::resilience::jitter());
            tracing::debug!(upstream = %upstream.name, attempt, ?wait, error = %e, "retrying");
            if select_first(monoio::time::sleep(wait), fired(cancel))
                .await
                .is_none()
            {
                broke(true);
                return Err(Stop::Cancelled);
            }
            from = Instant::now();
        }
    }

    /// One attempt: the upstream session, then the request; a session the upstream no
    /// longer knows is initialized again once. `sent_on` is the session last sent on.
    async fn start(
        &self,
        sent_on: &std::cell::RefCell<Option<OnSession>>,
    ) -> crate::error::Result<(OnSession, crate::upstream::Call)> {
        let (ctx, upstream) = (self.ctx, self.upstream);
        let on = session_for(ctx, self.sess, upstream, None, self.modern).await?;
        *sent_on.borrow_mut() = Some(on.clone());
        let caller = &ctx.caller;
        match caller
            .start_with(upstream, &on, self.gid, self.body, &self.how)
            .await
        {
            Err(e) if e.kind == ErrorKind::UpstreamSessionExpired => {
                tracing::info!(upstream = %upstream.name, "upstream session expired; initializing again");
                Box::pin(self.again(on, sent_on)).await
            }
            Err(e) => Err(e),
            Ok(call) => Ok((on, call)),
        }
    }

    /// The upstream no longer knows session `expired`: a new one, and the request on it.
    async fn again(
        &self,
        expired: OnSession,
        sent_on: &std::cell::RefCell<Option<OnSession>>,
    ) -> crate::error::Result<(OnSession, crate::upstream::Call)> {
        let (ctx, upstream) = (self.ctx, self.upstream);
        let on = session_for(ctx, self.sess, upstream, Some(&expired), self.modern).await?;
        *sent_on.borrow_mut() = Some(on.clone());
        let call = ctx
            .caller
            .start_with(upstream, &on, self.gid, self.body, &self.how)
            .await?;
        Ok((on, call))
    }
}

/// Resolves when the client's cancellation fires; never when its sender goes away (a client
/// reusing the id replaces the entry).
async fn fired(cancel: &mut oneshot::Receiver<()>) {
    if cancel.await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The upstream session `sess`'s calls to `up` run on (created on first use);
/// `expired`: the one the upstream no longer knows, to be replaced; `modern`: a
/// 2026-07-28 client's request to a dual-era upstream, which goes in that era.
pub async fn session_for(
    ctx: &Rc<Ctx>,
    sess: &Arc<Session>,
    up: &Upstream,
    expired: Option<&OnSession>,
    modern: bool,
) -> crate::error::Result<OnSession> {
    if !up.has_sessions() {
        return Ok(OnSession::Stdio);
    }
    if modern {
        return Ok(OnSession::Http(open(ctx, up, Want::Modern).await?));
    }
    let expired = match expired {
        Some(OnSession::Http(e)) => Some(e),
        _ => None,
    };
    // A stateless (2026-07-28) request has no session of its own to keep upstream sessions
    // in: a legacy upstream's per-client sessions are then one per set of declared
    // capabilities (so the upstream knows what it may ask), kept by the upstream.
    if sess.stateless && up.mode == SessionMode::PerClient && !up.is_stateless() {
        let want = Want::ForCapabilities(&sess.hello.capabilities, expired);
        return Ok(OnSession::Http(open(ctx, up, want).await?));
    }
    if up.mode == SessionMode::Shared || sess.stateless || up.is_stateless() {
        let want = Want::Shared {
            renew: expired.is_some(),
        };
        return Ok(OnSession::Http(open(ctx, up, want).await?));
    }
    if expired.is_none() {
        if let Some(us) = sess.upstreams.get(&up.name) {
            return Ok(OnSession::Http(us));
        }
    }
    let us = open(ctx, up, Want::New(&sess.hello)).await?;
    Ok(OnSession::Http(
        Box::pin(keep_client_session(ctx, sess, up, us, expired)).await,
    ))
}

/// The upstream session `want` names: the open one without IO when there is one, else
/// opened. The opening is rare and its future large: boxed, so that a call's future is the
/// size of the common path's.
async fn open(
    ctx: &Ctx,
    up: &Upstream,
    want: Want<'_>,
) -> crate::error::Result<Arc<UpstreamSession>> {
    match up.ready_session(&want) {
        Some(s) => Ok(s),
        None => Box::pin(up.open_session(&ctx.caller, want)).await,
    }
}

/// Keeps a new per-client upstream session in `sess`. Concurrent calls may each have
/// initialized one: the first in stays (calls may be running on it) and the others are
/// ended unused. Only the expired one is replaced. The session in use is returned.
async fn keep_client_session(
    ctx: &Rc<Ctx>,
    sess: &Arc<Session>,
    up: &Upstream,
    us: Arc<UpstreamSession>,
    expired: Option<&Arc<UpstreamSession>>,
) -> Arc<UpstreamSession> {
    let (current, replaced) = sess
        .upstreams
        .insert_unless(up.name.clone(), us.clone(), |cur| {
            !expired.is_some_and(|e| Arc::ptr_eq(cur, e))
        });
    if !Arc::ptr_eq(&current, &us) {
        streams::end_upstream_sessions(ctx, vec![(up.name.clone(), us)]);
        return current;
    }
    if let Some(old) = replaced {
        streams::end_upstream_sessions(ctx, vec![(up.name.clone(), old)]);
    }
    // A GET stream is open: relay this upstream session's own stream into it too.
    if let Some(o) = sess.outbox.load_full() {
        let snap = ctx.shared.snapshot.load();
        if let Some(u) = snap.by_name.get(&*up.name).and_then(|r| snap.upstream(*r)) {
            streams::listen_upstream(ctx, u.clone(), us.clone(), o);
        }
    }
    if let Some(level) = sess.log_level.load_full() {
        apply_level(ctx, up, &us, &level).await;
    }
    us
}

/// Sends `logging/setLevel` to upstream session `us` if it offers logging.
pub async fn apply_level(ctx: &Ctx, up: &Upstream, us: &Arc<UpstreamSession>, level: &str) {
    if !us.capabilities.contains_key("logging") {
        return;
    }
    let gid = ctx.caller.ids.next();
    let body = crate::upstream::request_body(
        gid,
        "logging/setLevel",
        &format!(r#"{{"level":"{level}"}}"#),
    );
    let on = OnSession::Http(us.clone());
    match ctx.caller.start(up, &on, gid, body).await {
        Ok(mut call) => {
            let _ = monoio::time::timeout(up.call_timeout, call.next()).await;
            call.finish(&ctx.caller).await;
        }
        Err(e) => tracing::debug!(upstream = %up.name, error = %e, "setLevel not delivered"),
    }
}

/// Tells upstream `up` (in the background) that call `gid` was cancelled.
pub fn tell_cancelled(ctx: &Rc<Ctx>, up: &Arc<Upstream>, on: OnSession, gid: u64) {
    if up.cancels_on_drop() {
        return; // a stdio call dropped early is cancelled at the child already
    }
    let (ctx, up) = (ctx.clone(), up.clone());
    monoio::spawn(async move {
        let body = Bytes::from(format!(
            r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":{gid},"reason":"cancelled by the client"}}}}"#
        ));
        if let Err(e) = ctx.caller.send(&up, &on, body).await {
            tracing::debug!(upstream = %up.name, error = %e, "could not forward a cancellation");
        }
    });
}

/// Sends a message to the session's GET stream, if it has one (dropped otherwise).
pub fn push(ctx: &Ctx, sess: &Session, m: Bytes) {
    if let Some(o) = sess.outbox.load_full() {
        if !o.offer(m, &ctx.shared.limits) {
            tracing::debug!("GET stream full or closed: message dropped");
        }
    }
}

/// Runs a relay to its end, pushing its messages to the GET stream; returns the response.
pub async fn finish_pushing(ctx: &Ctx, sess: &Session, relay: &mut Relay) -> Bytes {
    loop {
        match relay.next().await {
            Event::Message(m) => push(ctx, sess, m),
            Event::Final(p) => return p.into_bytes(),
            Event::Cancelled => return rescue(None, Reject::Cancelled),
        }
    }
}
