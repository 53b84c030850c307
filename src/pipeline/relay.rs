//! Phase: relay. One forwarded call's upstream messages back to the client, ids translated.
//!
//! A [`Relay`] reads the upstream's messages for one request and turns each into what the
//! client must see: the response with the client's id put back; progress with the client's
//! token put back (the upstream saw the gateway id as the token); requests from the upstream
//! (sampling, elicitation, roots) with a fresh gateway id, recorded in the session so the
//! client's answer goes back to the upstream that asked, with the upstream's own id. The
//! call's deadline restarts on every progress notification, up to the upstream's `max_call`.
//!
//! Dropping a relay frees everything it registered (the in-flight entry, unanswered
//! upstream requests); a stdio call dropped early is cancelled at the child.
//!
//! Never routes or authorizes: it relays for the call it was given, and records its end once.

use std::{rc::Rc, sync::Arc};

use bytes::Bytes;
use futures_channel::oneshot;
use futures_util::future::{select, Either};

use super::{
    authorize::{screen_json, Scope},
    context::Ctx,
    record,
    reject::{rescue, Blocked, Reject},
};
use crate::{
    error::{Error, ErrorKind},
    guard::policy::{Direction, Screened},
    jsonrpc::{Code, Kind, Pieces},
    registry::names,
    session::{PendingRequest, Session},
    state::{Parked, ParkedInput},
    text::Decimal,
    upstream::{Call, OnSession, Upstream},
};

/// What came of one routed request.
pub enum Outcome {
    /// The answer.
    Done(Bytes),
    /// The answer in pieces (a list's page between its envelope's head and tail).
    Pieces(crate::jsonrpc::Pieces),
    /// A stream: the relay, and its first message.
    Streaming(Box<Relay>, Bytes),
}

/// A call the upstream began: its stream, the session it runs on, its id, and how the
/// breaker let it through.
pub struct Begun {
    /// The upstream's stream of messages for it.
    pub call: Call,
    /// The upstream session it runs on.
    pub on: OnSession,
    /// The gateway id it was sent with.
    pub gid: u64,
    /// How the upstream's breaker let it through (its outcome is recorded there).
    pub pass: crate::resilience::Pass,
}

/// What a relay relays for: the client's side of the call.
pub struct Spec {
    /// The client's session.
    pub session: Arc<Session>,
    /// The upstream.
    pub upstream: Arc<Upstream>,
    /// The client's id of the call.
    pub client_id: Bytes,
    /// The client's progress token, if it gave one.
    pub client_token: Option<Bytes>,
    /// Whether messages other than the response can reach the client.
    pub can_push: bool,
    /// Metrics label: the tool or prompt name, else the method.
    pub target: Arc<str>,
    /// How long to wait for the upstream (restarted by progress).
    pub timeout: std::time::Duration,
    /// The call's in-flight entry and its cancellation.
    pub in_flight: (crate::session::InFlightEntry, oneshot::Receiver<()>),
    /// Size of the client's request, bytes.
    pub request_bytes: usize,
    /// When routing began.
    pub began: monoio::time::Instant,
    /// Time already spent waiting on the upstream.
    pub upstream_wait: std::time::Duration,
    /// When the relay starts (the clock read that also ended `upstream_wait`).
    pub started: monoio::time::Instant,
    /// The arguments sent upstream, when the audit log records them.
    pub audit_arguments: Option<Box<serde_json::value::RawValue>>,
    /// How the result is screened.
    pub screen: ScreenOf,
    /// The gateway's span of this call, if traced.
    pub trace: Option<crate::observe::trace::CallTrace>,
    /// A 2026-07-28 client's result members (see [`Relay`]).
    pub stateless: Option<&'static [u8]>,
    /// A 2026-07-28 client's `_meta` log level.
    pub log_level: Option<u8>,
    /// The upstream speaks 2026-07-28.
    pub upstream_stateless: bool,
    /// The request as first sent upstream (to ask again with a legacy client's input).
    pub sent: Option<Bytes>,
}

/// What the relay produced next.
pub enum Event {
    /// A notification or request for the client (already translated).
    Message(Bytes),
    /// The response (or the gateway's error in its place); the relay is done. A large
    /// result is in pieces: the upstream's bytes after its id are not copied.
    Final(Pieces),
    /// The client cancelled the request: no response follows.
    Cancelled,
}

/// One call being relayed.
pub struct Relay {
    ctx: Rc<Ctx>,
    call: Option<Call>,
    session: Arc<Session>,
    upstream: Arc<Upstream>,
    on: OnSession,
    client_id: Bytes,
    gid: u64,
    gid_text: Decimal,
    client_token: Option<Bytes>,
    cancel: Option<oneshot::Receiver<()>>,
    /// Its in-flight entry, removed when the relay drops.
    _entry: crate::session::InFlightEntry,
    /// How the upstream's breaker let this call through (its outcome is recorded there).
    breaker_pass: crate::resilience::Pass,
    /// The gateway's span of this call (exported when the relay ends), if traced.
    trace: Option<crate::observe::trace::CallTrace>,
    /// How the result is screened, with the policy that holds the screener.
    screen: ScreenOf,
    /// Whether messages other than the response can reach the client; when not, upstream
    /// requests are refused on the client's behalf and notifications dropped.
    can_push: bool,
    requests: Vec<u64>,
    started: monoio::time::Instant,
    /// When the gateway began routing the call (its metrics' start).
    began: monoio::time::Instant,
    /// Time spent waiting on the upstream so far.
    upstream_wait: std::time::Duration,
    deadline: monoio::time::Instant,
    done: bool,
    /// Metrics label: the tool or prompt name, else the method.
    target: Arc<str>,
    /// How long to wait for the upstream (restarted by progress).
    timeout: std::time::Duration,
    /// How the call ended, once it has.
    outcome: Option<Metric>,
    /// Size of the client's request, bytes (audit).
    request_bytes: usize,
    /// The arguments sent upstream, when the audit log records them.
    audit_arguments: Option<Box<serde_json::value::RawValue>>,
    /// Size of the answer sent back, bytes (audit).
    response_bytes: usize,
    /// Set when the client speaks MCP 2026-07-28 (to a legacy upstream): the members its
    /// results gain (`resultType`, and caching hints for reads); only progress notifications
    /// reach it, and upstream requests are refused.
    stateless: Option<&'static [u8]>,
    /// The upstream speaks 2026-07-28 (to a legacy client: its input-required results
    /// become requests to the client).
    upstream_stateless: bool,
    /// The request as first sent upstream, kept to ask again with the client's input (a
    /// legacy client's call to a 2026-07-28 upstream).
    sent: Option<Bytes>,
    /// Input the upstream asked for, being gathered from the client.
    input: Option<InputWait>,
    /// Messages for the client waiting their turn (the requests of one input round).
    queued: std::collections::VecDeque<Bytes>,
    /// The progress token the upstream was given (the first request's id: retries with
    /// input get new ids but keep it).
    token_text: Decimal,
    /// Input rounds answered so far.
    rounds_done: u32,
    /// A 2026-07-28 client's `_meta` log level (`mcp::version::log_rank`): log messages at or
    /// above it reach the client; none without it.
    log_level: Option<u8>,
}

impl Relay {
    /// A log message of a call whose results are screened, screened like its result:
    /// masked, or dropped where the result would be refused (a notification has no error
    /// to carry). Other calls' log messages pass as they are.
    fn screen_log(&self, frame: &crate::jsonrpc::Frame) -> Option<Event> {
        let Some((sc, policy)) = self.screen.as_ref() else {
            return Some(Event::Message(frame.bytes().clone()));
        };
        let Some(ps) = frame.param_span() else {
            return Some(Event::Message(frame.bytes().clone()));
        };
        let raw = frame.raw_at(ps)?;
        match screen_json(&self.ctx, sc, policy, raw, Direction::Result, &self.scope()) {
            Screened::Pass => Some(Event::Message(frame.bytes().clone())),
            Screened::Replace(masked) => Some(Event::Message(frame.splice(&mut [(ps, &masked)]))),
            Screened::Block(_) => None,
        }
    }
}

/// How a call's result is screened: its screen, with the policy that holds the screener.
pub type ScreenOf = Option<(
    Arc<crate::guard::policy::Screen>,
    Arc<crate::guard::policy::Policy>,
)>;

/// How a final response is made the client's: screened under `screen` (with the policy
/// that holds the screener) for `scope`, and for a 2026-07-28 client (`members`) given the
/// members a legacy result lacks.
struct Finish<'a> {
    screen: Option<&'a (
        Arc<crate::guard::policy::Screen>,
        Arc<crate::guard::policy::Policy>,
    )>,
    scope: Scope<'a>,
    members: Option<&'static [u8]>,
}

/// The client's copy of an upstream's final response `frame` (its id at `id_span`): the
/// client's id in place, the result screened when the call's results are (masked, or
/// refused with -32016), and the members of [`Finish`]. Used by the relay and by parked
/// calls alike, so neither path skips a guard. A large result with only its id to change
/// is not copied ([`Frame::splice_front`](crate::jsonrpc::Frame::splice_front)).
fn final_answer(
    ctx: &Ctx,
    frame: &crate::jsonrpc::Frame,
    id_span: crate::jsonrpc::Span,
    client_id: &[u8],
    how: &Finish<'_>,
) -> Pieces {
    let members = how.members;
    let at = members.and_then(|_| crate::mcp::era::legacy_result_insert(frame));
    let screened = how.screen.and_then(|(sc, policy)| {
        let raw = frame.result_raw()?;
        Some(screen_json(
            ctx,
            sc,
            policy,
            raw,
            Direction::Result,
            &how.scope,
        ))
    });
    let whole = match (screened, frame.result_span()) {
        (Some(Screened::Block(kinds)), _) => rescue(
            Some(client_id),
            Reject::Blocked(Blocked::Screen(Direction::Result, kinds)),
        ),
        (Some(Screened::Replace(masked)), Some(rs)) => {
            // Masking changes strings only: the object opens where it did.
            let masked = match (at, members) {
                (Some(at), Some(m)) => {
                    let cut = at.start.saturating_sub(rs.start) as usize;
                    let mut v = Vec::with_capacity(masked.len() + m.len());
                    v.extend_from_slice(masked.get(..cut).unwrap_or_default());
                    v.extend_from_slice(m);
                    v.extend_from_slice(masked.get(cut..).unwrap_or_default());
                    v
                }
                _ => masked,
            };
            frame.splice(&mut [(id_span, client_id), (rs, &masked)])
        }
        _ => match (at, members) {
            (Some(at), Some(m)) => return frame.splice_front(&mut [(id_span, client_id), (at, m)]),
            // Errors stay whole: a stateless client's error answers are read for their code.
            _ if frame.is_error() => frame.splice(&mut [(id_span, client_id)]),
            _ => return frame.splice_front(&mut [(id_span, client_id)]),
        },
    };
    Pieces::whole(whole)
}

/// One round of an input-required result being answered by a legacy client.
struct InputWait {
    /// The client's answers, by input key (sent by `answer::client_answer`).
    rx: flume::Receiver<(String, Bytes)>,
    /// Keys still unanswered, with whether each is an elicitation.
    left: Vec<(String, bool)>,
    /// `"key":result` members gathered so far.
    responses: Vec<u8>,
    /// The `requestState` to echo (raw JSON), if the upstream gave one.
    state: Option<Bytes>,
    /// Rounds so far.
    round: u32,
}

/// Most input rounds one call may take (as the SDK clients allow).
const MAX_INPUT_ROUNDS: u32 = 10;

/// The prefix of the gateway's park tokens (`requestState` values it gives out).
pub const PARK_PREFIX: &str = "mcpgw-parked:";

use crate::observe::metrics::Outcome as Metric;

/// Whether a result is MCP 2026-07-28's `"resultType":"input_required"`.
fn needs_input(frame: &crate::jsonrpc::Frame) -> bool {
    frame
        .result_span()
        .and_then(|rs| frame.member(rs, "resultType"))
        .and_then(|s| frame.raw_at(s))
        == Some(&b"\"input_required\""[..])
}

/// The metrics outcome of a gateway error.
pub fn metric_of(e: &Error) -> Metric {
    match e.kind {
        ErrorKind::UpstreamTimeout => Metric::Timeout,
        ErrorKind::CircuitOpen => Metric::CircuitOpen,
        _ => Metric::Unavailable,
    }
}

impl Relay {
    /// The relay of call `begun`, for the client's side `spec`; it keeps the call's
    /// in-flight entry until it ends.
    pub fn new(ctx: Rc<Ctx>, begun: Begun, spec: Spec) -> Self {
        let now = spec.started;
        let (entry, cancel) = spec.in_flight;
        Self {
            ctx,
            call: Some(begun.call),
            session: spec.session,
            upstream: spec.upstream,
            on: begun.on,
            client_id: spec.client_id,
            gid: begun.gid,
            gid_text: Decimal::new(begun.gid),
            client_token: spec.client_token,
            cancel: Some(cancel),
            _entry: entry,
            breaker_pass: begun.pass,
            trace: spec.trace,
            screen: spec.screen,
            can_push: spec.can_push,
            requests: Vec::new(),
            started: now,
            began: spec.began,
            upstream_wait: spec.upstream_wait,
            deadline: now + spec.timeout,
            done: false,
            target: spec.target,
            timeout: spec.timeout,
            outcome: None,
            request_bytes: spec.request_bytes,
            audit_arguments: spec.audit_arguments,
            response_bytes: 0,
            stateless: spec.stateless,
            upstream_stateless: spec.upstream_stateless,
            sent: spec.sent,
            input: None,
            queued: std::collections::VecDeque::new(),
            token_text: Decimal::new(begun.gid),
            rounds_done: 0,
            log_level: spec.log_level,
        }
    }

    /// Whose content this call's screening is about.
    fn scope(&self) -> Scope<'_> {
        Scope {
            sess: &self.session,
            target: &self.target,
            upstream: &self.upstream.name,
        }
    }

    /// How this call's final response is made the client's.
    fn finish_how(&self) -> Finish<'_> {
        Finish {
            screen: self.screen.as_ref(),
            scope: self.scope(),
            members: self.stateless,
        }
    }

    fn fail(&mut self, e: &Error) -> Event {
        tracing::warn!(upstream = %self.upstream.name, error = %e, "upstream call failed");
        self.done = true;
        self.outcome = Some(metric_of(e));
        Event::Final(Pieces::whole(rescue(
            Some(&self.client_id),
            Reject::upstream(e),
        )))
    }

    /// The session this call belongs to.
    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// The next event; call until `Final` or `Cancelled`.
    pub async fn next(&mut self) -> Event {
        loop {
            if let Some(m) = self.queued.pop_front() {
                return Event::Message(m);
            }
            if self.done {
                return Event::Cancelled;
            }
            if self.input.is_some() {
                // Boxed, as every path a plain call does not take: the relay's future stays
                // the size of the common path's.
                if let Some(ev) = Box::pin(self.gather_input()).await {
                    return ev;
                }
                continue;
            }
            let Some(call) = self.call.as_mut() else {
                return Event::Cancelled;
            };
            let hard_stop = self.started + self.upstream.max_call;
            let until = self.deadline.min(hard_stop);
            let waiting = monoio::time::Instant::now();
            let got = {
                let next = std::pin::pin!(call.next());
                let sleep = std::pin::pin!(monoio::time::sleep_until(until));
                let mut wait = std::pin::pin!(crate::runtime::timed(next, sleep));
                match self.cancel.as_mut() {
                    Some(c) => match select(wait.as_mut(), c).await {
                        Either::Left((r, _)) => Ok(r.ok_or(())),
                        Either::Right((fired, _)) => Err(fired.is_ok()),
                    },
                    None => Ok(wait.await.ok_or(())),
                }
            };
            self.upstream_wait += waiting.elapsed();
            let got = match got {
                Ok(g) => g,
                Err(fired) => {
                    self.cancel = None;
                    if fired {
                        return Box::pin(self.cancelled()).await;
                    }
                    // The in-flight entry went away without firing: keep waiting.
                    continue;
                }
            };
            let msg = match got {
                Err(_) => {
                    call.timed_out();
                    Box::pin(self.tell_upstream_cancelled("timeout")).await;
                    let e = Error::new(
                        ErrorKind::UpstreamTimeout,
                        format!(
                            "{}: no answer within {:?}",
                            self.upstream.name, self.timeout
                        ),
                    );
                    return self.fail(&e);
                }
                Ok(Err(e)) => return self.fail(&e),
                Ok(Ok(None)) => {
                    let e = Error::new(
                        ErrorKind::UpstreamUnavailable,
                        format!("{}: stream ended without an answer", self.upstream.name),
                    );
                    return self.fail(&e);
                }
                Ok(Ok(Some(m))) => m,
            };
            if let Some(ev) = self.translate(msg).await {
                if let Event::Final(_) = ev {
                    self.done = true;
                    // A whole answer frees its connection now; the rest of an upstream's
                    // stream is read (to reuse its connection) after the answer goes out,
                    // off the client's clock.
                    let ctx = &self.ctx;
                    if let Some(call) = self.call.take().and_then(|c| c.finish_now(&ctx.caller)) {
                        let ctx = ctx.clone();
                        monoio::spawn(async move { call.finish(&ctx.caller).await });
                    }
                }
                return ev;
            }
        }
    }

    async fn cancelled(&mut self) -> Event {
        self.done = true;
        self.outcome = Some(Metric::Cancelled);
        self.tell_upstream_cancelled("cancelled by the client")
            .await;
        self.call = None;
        Event::Cancelled
    }

    async fn tell_upstream_cancelled(&mut self, reason: &str) {
        if matches!(self.call, Some(Call::Stdio(_))) {
            // Dropping a stdio call tells the child (see `StdioCall`).
            self.call = None;
            return;
        }
        let body = Bytes::from(format!(
            r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":{},"reason":{}}}}}"#,
            self.gid,
            serde_json::to_string(reason).unwrap_or_else(|_| "\"\"".into())
        ));
        self.call = None;
        if let Err(e) = self.ctx.caller.send(&self.upstream, &self.on, body).await {
            tracing::debug!(upstream = %self.upstream.name, error = %e, "could not forward a cancellation");
        }
    }

    /// Turns an input-required result into requests to the (legacy) client, queued on this
    /// call's stream; the answers are gathered by [`Relay::gather_input`]. `Err` says why it
    /// cannot be done.
    fn ask_client(&mut self, frame: &crate::jsonrpc::Frame) -> Result<Option<Event>, String> {
        let round = self.rounds_done + 1;
        if round > MAX_INPUT_ROUNDS {
            return Err(format!(
                "{}: still asking for input after {MAX_INPUT_ROUNDS} rounds",
                self.upstream.name
            ));
        }
        let result: serde_json::Map<String, serde_json::Value> = frame
            .result_raw()
            .and_then(|r| serde_json::from_slice(r).ok())
            .ok_or_else(|| format!("{}: invalid input-required result", self.upstream.name))?;
        let state = result
            .get("requestState")
            .map(|v| Bytes::from(v.to_string()));
        let (tx, rx) = flume::unbounded();
        let mut left = Vec::new();
        if let Some(serde_json::Value::Object(reqs)) = result.get("inputRequests") {
            for (key, req) in reqs {
                let method = req.get("method").and_then(|m| m.as_str()).unwrap_or("");
                if !matches!(
                    method,
                    "sampling/createMessage" | "elicitation/create" | "roots/list"
                ) {
                    return Err(format!(
                        "{}: input request {key:?} has method {method:?}",
                        self.upstream.name
                    ));
                }
                let rid = self.ctx.caller.ids.next();
                let params = req.get("params").cloned().unwrap_or(serde_json::json!({}));
                let body = serde_json::json!({
                    "jsonrpc": "2.0", "id": rid, "method": method, "params": params,
                });
                self.session.server_requests.insert(
                    rid,
                    PendingRequest {
                        upstream: self.upstream.clone(),
                        on: self.on.clone(),
                        original_id: Bytes::new(),
                        to_relay: Some((tx.clone(), key.clone())),
                    },
                );
                self.requests.push(rid);
                self.queued.push_back(Bytes::from(body.to_string()));
                left.push((key.clone(), method == "elicitation/create"));
            }
        }
        // This round's upstream request is answered: its stream can go.
        let ctx = &self.ctx;
        if let Some(call) = self.call.take().and_then(|c| c.finish_now(&ctx.caller)) {
            let ctx = ctx.clone();
            monoio::spawn(async move { call.finish(&ctx.caller).await });
        }
        self.input = Some(InputWait {
            rx,
            left,
            responses: Vec::new(),
            state,
            round,
        });
        self.deadline = monoio::time::Instant::now() + self.timeout;
        Ok(self.queued.pop_front().map(Event::Message))
    }

    /// Waits for the client's answers to this round's input requests; once all are in,
    /// asks the upstream again (same request, new id, `inputResponses` and the echoed
    /// `requestState`). An event only when the call ends here.
    async fn gather_input(&mut self) -> Option<Event> {
        loop {
            let rx = match self.input.as_ref() {
                Some(w) if !w.left.is_empty() => w.rx.clone(),
                Some(_) => break,
                None => return None,
            };
            let got = {
                let mut recv =
                    std::pin::pin!(monoio::time::timeout_at(self.deadline, rx.recv_async()));
                match self.cancel.as_mut() {
                    Some(c) => match select(recv.as_mut(), c).await {
                        Either::Left((r, _)) => Ok(r),
                        Either::Right((fired, _)) => Err(fired.is_ok()),
                    },
                    None => Ok(recv.await),
                }
            };
            let (key, answer) = match got {
                Ok(Ok(Ok(a))) => a,
                Ok(_) => {
                    let e = Error::new(
                        ErrorKind::UpstreamTimeout,
                        format!(
                            "{}: the client did not give the input asked for",
                            self.upstream.name
                        ),
                    );
                    return Some(self.fail(&e));
                }
                Err(fired) => {
                    self.cancel = None;
                    if fired {
                        return Some(self.cancelled().await);
                    }
                    continue;
                }
            };
            let parsed: serde_json::Value =
                serde_json::from_slice(&answer).unwrap_or(serde_json::Value::Null);
            let w = self.input.as_mut()?;
            let Some(i) = w.left.iter().position(|(k, _)| *k == key) else {
                continue;
            };
            let (_, elicitation) = w.left.swap_remove(i);
            let result = match (parsed.get("result"), parsed.get("error")) {
                (Some(r), _) => r.to_string(),
                // No error slot in inputResponses: a refused elicitation is a cancel; the
                // others end the call.
                (None, Some(_)) if elicitation => r#"{"action":"cancel"}"#.into(),
                _ => {
                    let e = Error::new(
                        ErrorKind::UpstreamProtocol,
                        format!(
                            "{}: the client refused the input asked for",
                            self.upstream.name
                        ),
                    );
                    return Some(self.fail(&e));
                }
            };
            if !w.responses.is_empty() {
                w.responses.push(b',');
            }
            w.responses
                .extend_from_slice(serde_json::to_string(&key).unwrap_or_default().as_bytes());
            w.responses.push(b':');
            w.responses.extend_from_slice(result.as_bytes());
        }
        self.ask_upstream_again().await
    }

    /// Sends the first request again with this round's input.
    async fn ask_upstream_again(&mut self) -> Option<Event> {
        let (Some(sent), Some(w)) = (self.sent.clone(), self.input.as_ref()) else {
            return None;
        };
        let gid = self.ctx.caller.ids.next();
        let gid_text = Decimal::new(gid);
        let mut added = format!(
            r#""inputResponses":{{{}}}"#,
            String::from_utf8_lossy(&w.responses)
        );
        if let Some(state) = &w.state {
            added.push_str(r#","requestState":"#);
            added.push_str(&String::from_utf8_lossy(state));
        }
        let parsed = self.ctx.caller.parser.borrow_mut().parse_one(sent);
        let body = match parsed {
            Ok(f) => {
                let insert = f
                    .param_span()
                    .and_then(|p| crate::mcp::era::insert_point(f.raw_at(p)?, p));
                match (f.id_span(), insert) {
                    (Some(id), Some(at)) => {
                        added.push(',');
                        f.splice(&mut [(id, gid_text.as_bytes()), (at, added.as_bytes())])
                    }
                    _ => {
                        let e =
                            Error::new(ErrorKind::UpstreamProtocol, "request cannot carry input");
                        return Some(self.fail(&e));
                    }
                }
            }
            Err(_) => {
                let e = Error::new(ErrorKind::UpstreamProtocol, "request cannot carry input");
                return Some(self.fail(&e));
            }
        };
        match self
            .ctx
            .caller
            .start(&self.upstream, &self.on, gid, body)
            .await
        {
            Ok(call) => {
                self.call = Some(call);
                self.gid = gid;
                self.gid_text = gid_text;
                self.deadline = monoio::time::Instant::now() + self.timeout;
                // Out of the gathering state; the count stays for a next round.
                if let Some(w) = self.input.take() {
                    self.rounds_done = w.round;
                }
                None
            }
            Err(e) => Some(self.fail(&e)),
        }
    }

    /// A legacy upstream asks a 2026-07-28 client something mid-call: the call is parked
    /// (its upstream stream moves to a task on this worker) and the client gets an
    /// input-required result whose `requestState` names the parked call. `None` when the
    /// request cannot be put that way (the caller refuses it then).
    fn park(&mut self, frame: &crate::jsonrpc::Frame, original_id: &Bytes) -> Option<Event> {
        let method = frame.method()?.into_owned();
        if !matches!(
            method.as_str(),
            "sampling/createMessage" | "elicitation/create" | "roots/list"
        ) {
            return None;
        }
        let params = frame.params_raw().unwrap_or(b"{}");
        let token = park_token()?;
        let (tx, rx) = flume::bounded::<ParkedInput>(1);
        let principal = self.session.principal.load().credential.to_string();
        self.ctx.shared.parked.insert(
            token.clone(),
            Parked {
                tx,
                principal: principal.clone(),
            },
        );
        let call = self.call.take()?;
        let task = ParkedCall {
            ctx: self.ctx.clone(),
            upstream: self.upstream.clone(),
            on: self.on.clone(),
            gid_text: self.gid_text,
            members: self.stateless.unwrap_or(crate::mcp::era::RESULT_COMPLETE),
            timeout: self.timeout,
            token: token.clone(),
            principal,
            screen: self.screen.clone(),
            session: self.session.clone(),
            target: self.target.clone(),
        };
        monoio::spawn(task.run(call, rx, original_id.clone()));
        self.done = true;
        self.outcome = Some(Metric::Ok);
        let body = input_required(&self.client_id, &method, params, &token);
        self.response_bytes = body.len();
        Some(Event::Final(Pieces::whole(body)))
    }

    /// Translates one upstream message; `None` when it is not for the client.
    async fn translate(&mut self, msg: Bytes) -> Option<Event> {
        let frame = self.parse(msg)?;
        match frame.kind() {
            Kind::Response => self.response(&frame),
            Kind::Notification => self.notification(&frame),
            Kind::Request => Box::pin(self.request(&frame)).await,
        }
    }

    /// Parses an upstream message. An error answer with a null id on this call's own
    /// channel (one POST, or a stdio child with this call alone in flight) is this call's
    /// answer: it is read as one with the call's id.
    fn parse(&self, msg: Bytes) -> Option<crate::jsonrpc::Frame> {
        let parsed = self
            .ctx
            .caller
            .parser
            .borrow_mut()
            .parse_upstream(msg.clone());
        match parsed {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::warn!(upstream = %self.upstream.name, error = %e, "invalid message from upstream");
                let error = matches!(e, crate::jsonrpc::FrameError::Invalid { .. })
                    .then(|| crate::jsonrpc::null_id_error(&msg))
                    .flatten()?;
                let body = crate::jsonrpc::error_raw_body(self.gid_text.as_bytes(), error);
                self.ctx.caller.parser.borrow_mut().parse_one(body).ok()
            }
        }
    }

    /// The upstream's response: the call's answer when its id is the call's.
    fn response(&mut self, frame: &crate::jsonrpc::Frame) -> Option<Event> {
        if frame.id_bytes() != Some(self.gid_text.as_bytes()) {
            return None;
        }
        let span = frame.id_span()?;
        self.outcome = Some(if frame.is_error() {
            Metric::UpstreamError
        } else {
            Metric::Ok
        });
        if self.upstream_stateless && self.stateless.is_none() && needs_input(frame) {
            if self.can_push && self.sent.is_some() {
                return match self.ask_client(frame) {
                    Ok(ev) => ev,
                    Err(why) => Some(self.fail(&Error::new(ErrorKind::UpstreamProtocol, why))),
                };
            }
            self.outcome = Some(Metric::UpstreamError);
            let out = rescue(
                Some(&self.client_id),
                Reject::Upstream(
                    Code::UpstreamProtocol,
                    "The upstream needs input from the client (an MCP 2026-07-28 input-required result); the gateway does not relay that to clients of earlier revisions yet",
                ),
            );
            self.response_bytes = out.len();
            return Some(Event::Final(Pieces::whole(out)));
        }
        let out = final_answer(&self.ctx, frame, span, &self.client_id, &self.finish_how());
        self.response_bytes = out.len();
        Some(Event::Final(out))
    }

    /// An upstream notification during the call, as the client may see it.
    fn notification(&mut self, frame: &crate::jsonrpc::Frame) -> Option<Event> {
        let method = frame.method()?;
        if method.ends_with("/list_changed") {
            // The gateway refreshes its catalog and tells clients itself.
            self.ctx.shared.request_refresh();
            return None;
        }
        if self.stateless.is_some() && method == "notifications/message" {
            // 2026-07-28: only at or above the level the request asked for.
            let level = frame
                .param("level")
                .and_then(|s| frame.str_at(s))
                .and_then(|l| crate::mcp::version::log_rank(&l));
            return match (self.can_push, self.log_level, level) {
                (true, Some(min), Some(l)) if l >= min => self.screen_log(frame),
                _ => None,
            };
        }
        if !self.can_push || (self.stateless.is_some() && method != "notifications/progress") {
            // 2026-07-28: a request's stream carries its progress and log messages;
            // resource updates need a subscription (subscriptions/listen).
            return None;
        }
        match &*method {
            "notifications/progress" => {
                let span = frame.param("progressToken")?;
                if frame.raw_at(span) != Some(self.token_text.as_bytes()) {
                    return None;
                }
                // Progress shows the upstream is working: its deadline starts again.
                self.deadline = monoio::time::Instant::now() + self.timeout;
                let token = self.client_token.clone()?;
                Some(Event::Message(frame.splice(&mut [(span, &token)])))
            }
            "notifications/resources/updated" if self.upstream.prefix => {
                let span = frame.param("uri")?;
                let uri = frame.str_at(span)?;
                let exposed =
                    serde_json::to_vec(&names::expose_uri(&self.upstream.name, &uri)).ok()?;
                Some(Event::Message(frame.splice(&mut [(span, &exposed)])))
            }
            "notifications/message" => self.screen_log(frame),
            _ => Some(Event::Message(frame.bytes().clone())),
        }
    }

    /// An upstream request during the call (sampling, elicitation, roots): to the client
    /// with a fresh id, parked for a 2026-07-28 client, or refused when the client cannot
    /// take it.
    async fn request(&mut self, frame: &crate::jsonrpc::Frame) -> Option<Event> {
        let original_id = frame.id_raw()?;
        if self.stateless.is_some() {
            if let Some(ev) = self.park(frame, &original_id) {
                return Some(ev);
            }
        }
        if !self.can_push || self.stateless.is_some() {
            // A 2026-07-28 client takes no requests; translating them into an
            // input-required result is not done yet.
            let why = if self.stateless.is_some() {
                "The client speaks MCP 2026-07-28: the gateway does not relay requests to it"
            } else {
                "The client cannot receive requests on this call"
            };
            let refusal = rescue(
                Some(&original_id),
                Reject::Invalid(Code::MethodNotFound, why.into(), None),
            );
            let _ = self
                .ctx
                .caller
                .send(&self.upstream, &self.on, refusal)
                .await;
            return None;
        }
        let rid = self.ctx.caller.ids.next();
        self.session.server_requests.insert(
            rid,
            PendingRequest {
                upstream: self.upstream.clone(),
                on: self.on.clone(),
                original_id,
                to_relay: None,
            },
        );
        self.requests.push(rid);
        let span = frame.id_span()?;
        Some(Event::Message(
            frame.splice(&mut [(span, rid.to_string().as_bytes())]),
        ))
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // The breaker hears every call's end: answered (even with an error) is a success,
        // unreachable or timed out a failure. A call abandoned without an outcome tells it
        // nothing, but gives back the half-open probe if it was one.
        let (b, policy) = (&self.upstream.breaker, &self.upstream.breaker_policy);
        match self.outcome {
            Some(o) => {
                let ok = !matches!(o, Metric::Unavailable | Metric::Timeout);
                b.record(policy, self.breaker_pass, ok, self.ctx.shared.now_ms());
            }
            None if self.breaker_pass == crate::resilience::Pass::Probe => b.release_probe(),
            None => {}
        }
        if let Some(outcome) = self.outcome {
            record::ended(
                &self.ctx,
                record::Ended {
                    // The last use of the target: moved, not copied.
                    target: std::mem::take(&mut self.target),
                    upstream: &self.upstream.name,
                    sess: &self.session,
                    outcome,
                    total: self.began.elapsed(),
                    upstream_wait: self.upstream_wait,
                    bytes: (self.request_bytes, self.response_bytes),
                    trace: self.trace.as_ref(),
                    arguments: self.audit_arguments.take(),
                },
            );
        }
        for rid in self.requests.drain(..) {
            self.session.server_requests.remove(&rid);
        }
    }
}

/// A fresh park token: the prefix and 128 random bits in hex.
fn park_token() -> Option<String> {
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b).ok()?;
    Some(format!("{PARK_PREFIX}{}", crate::text::hex(&b)))
}

/// An input-required result for `client_id` asking `method` with `params` (raw JSON).
fn input_required(client_id: &[u8], method: &str, params: &[u8], token: &str) -> Bytes {
    let result = format!(
        r#"{{"resultType":"input_required","inputRequests":{{"input":{{"method":{m},"params":{p}}}}},"requestState":{t}}}"#,
        m = serde_json::Value::String(method.into()),
        p = String::from_utf8_lossy(params),
        t = serde_json::Value::String(token.into()),
    );
    crate::jsonrpc::result_body(client_id, result.as_bytes())
}

/// A parked call's task: it holds the upstream's stream while the client answers, then
/// relays on until the upstream's answer or its next request.
struct ParkedCall {
    ctx: Rc<Ctx>,
    upstream: Arc<Upstream>,
    on: OnSession,
    gid_text: Decimal,
    members: &'static [u8],
    timeout: std::time::Duration,
    token: String,
    /// The principal that made the call (`Principal::key`).
    principal: String,
    /// How the final result is screened (as the relay would have).
    screen: ScreenOf,
    session: Arc<Session>,
    target: Arc<str>,
}

/// What the upstream said after the client's input.
enum Next {
    /// Its answer.
    Answer(crate::jsonrpc::Frame),
    /// Another request.
    Asks(crate::jsonrpc::Frame),
    /// Nothing in time.
    Nothing,
}

impl ParkedCall {
    /// Waits for the retry with the client's answer to the upstream's request `pending`
    /// (its raw id), sends the answer, and relays on.
    async fn run(
        mut self,
        mut call: Call,
        mut rx: flume::Receiver<ParkedInput>,
        mut pending: Bytes,
    ) {
        loop {
            // The client's retry, or the end of the wait (the call is dropped).
            let input = monoio::time::timeout(self.timeout, rx.recv_async()).await;
            self.ctx.shared.parked.remove(&self.token);
            let Ok(Ok(input)) = input else {
                tracing::debug!(upstream = %self.upstream.name, "parked call not continued in time");
                return;
            };
            let response = format!(
                r#"{{"jsonrpc":"2.0","id":{},"result":{}}}"#,
                String::from_utf8_lossy(&pending),
                answer_of(&input.responses)
            );
            let sent = self
                .ctx
                .caller
                .send(&self.upstream, &self.on, Bytes::from(response));
            if let Err(e) = sent.await {
                let _ = input
                    .reply
                    .send(rescue(Some(&input.client_id), Reject::upstream(&e)));
                return;
            }
            match self.next(&mut call).await {
                Next::Answer(f) => {
                    let Some(span) = f.id_span() else { return };
                    let how = Finish {
                        screen: self.screen.as_ref(),
                        scope: Scope {
                            sess: &self.session,
                            target: &self.target,
                            upstream: &self.upstream.name,
                        },
                        members: Some(self.members),
                    };
                    let out = final_answer(&self.ctx, &f, span, &input.client_id, &how);
                    let _ = input.reply.send(out.into_bytes());
                    call.finish(&self.ctx.caller).await;
                    return;
                }
                Next::Asks(f) => match self.park_again(&f, &input) {
                    Some((id, next_rx)) => (pending, rx) = (id, next_rx),
                    None => return,
                },
                Next::Nothing => {
                    let e = Error::new(
                        ErrorKind::UpstreamUnavailable,
                        format!("{}: no answer after the client's input", self.upstream.name),
                    );
                    let _ = input
                        .reply
                        .send(rescue(Some(&input.client_id), Reject::upstream(&e)));
                    return;
                }
            }
        }
    }

    /// Relays on until the upstream answers or asks again: progress is dropped (there is
    /// no stream to the client now).
    async fn next(&self, call: &mut Call) -> Next {
        loop {
            let Ok(Ok(Some(m))) = monoio::time::timeout(self.timeout, call.next()).await else {
                return Next::Nothing;
            };
            let Ok(f) = self.ctx.caller.parser.borrow_mut().parse_upstream(m) else {
                continue;
            };
            match f.kind() {
                Kind::Response if f.id_bytes() == Some(self.gid_text.as_bytes()) => {
                    return Next::Answer(f)
                }
                Kind::Request => return Next::Asks(f),
                _ => continue,
            }
        }
    }

    /// Another question: parked again under a new token, the client told; the pending
    /// request's id and the new wait.
    fn park_again(
        &mut self,
        f: &crate::jsonrpc::Frame,
        input: &ParkedInput,
    ) -> Option<(Bytes, flume::Receiver<ParkedInput>)> {
        let (Some(method), Some(id), Some(token)) =
            (f.method().map(|m| m.into_owned()), f.id_raw(), park_token())
        else {
            return None;
        };
        let (tx, next_rx) = flume::bounded::<ParkedInput>(1);
        self.ctx.shared.parked.insert(
            token.clone(),
            Parked {
                tx,
                principal: self.principal.clone(),
            },
        );
        let params = f.params_raw().unwrap_or(b"{}");
        let _ = input
            .reply
            .send(input_required(&input.client_id, &method, params, &token));
        self.token = token;
        Some((id, next_rx))
    }
}

/// The client's answer in `inputResponses` (its one entry), as raw JSON.
fn answer_of(responses: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(responses)
        .ok()
        .and_then(|m| m.get("input").cloned())
        .map_or_else(|| "{}".to_string(), |v| v.to_string())
}
