//! The MCP Streamable HTTP endpoint (`/mcp`): what the gateway does with one HTTP request.
//!
//! Checks run in a fixed order: `Host`, path, `Origin`, method, protocol-version header, media
//! types, body, session. Then a JSON-RPC request is answered from the snapshot (initialize,
//! ping, the list methods) or routed to the upstream that owns the tool, prompt or resource,
//! with only its id, name and progress token spliced. A routed call answers as JSON when the
//! upstream's first message is the response, and switches to an SSE stream when progress or
//! upstream requests come first (and the client accepts SSE). Every failure becomes an HTTP
//! status and a JSON-RPC error with a stable code (see `jsonrpc::codes` and README.md);
//! nothing here panics or passes upstream error text through.
//!
//! A `Front` belongs to one worker; it holds that worker's upstream caller and parser.
//! Requests of the stateless era (MCP 2026-07-28) take their own path: see [`stateless`].

pub mod batch;
pub mod listen;
pub mod relay;
pub mod stateless;
pub mod streams;

use std::{borrow::Cow, net::IpAddr, rc::Rc, sync::Arc};

use bytes::{Bytes, BytesMut};

use self::{
    relay::{Event, Relay},
    streams::Sse,
};
use crate::{
    auth::{
        policy::{Grant, Principal},
        RateStage,
    },
    error::{Error, ErrorKind},
    guard::policy::{Direction, Policy as GuardPolicy, Screen, Screened},
    jsonrpc::{
        codes::{error_body_data, result_body},
        error_body, Code, Frame, FrameError, Kind, Message, Span,
    },
    limits::Limit,
    mcp::{
        era,
        version::{self, log_rank},
        Hello, CLIENT_INFO,
    },
    observe::trace::TraceParent,
    registry::{self, names, Snapshot, Target, View},
    session::{Session, SessionId},
    state::Shared,
    transport::{http::RequestHead, reply::Body},
    upstream::{Caller, Link, OnSession, SessionMode, Upstream, UpstreamRef},
};

/// The endpoint path.
pub const MCP_PATH: &str = "/mcp";

/// What the pipeline answers one HTTP request with.
pub type Reply = crate::transport::reply::Reply<streams::Sse, Box<batch::Batch>>;

/// How the client wants the answer to a POST.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// JSON, and SSE when messages must come before the response.
    Either,
    /// JSON only.
    Json,
    /// SSE only.
    Sse,
}

/// How a call is screened on its way: its screen (for the result too) and the masked
/// `arguments` to send instead of the client's.
#[derive(Default)]
struct Guarding {
    screen: Option<Arc<Screen>>,
    arguments: Option<(Span, Vec<u8>)>,
}

/// What came of one request.
enum Outcome {
    Done(Bytes),
    Streaming(Box<Relay>, Bytes),
}

/// One worker's MCP endpoint.
pub struct Front {
    shared: Arc<Shared>,
    caller: Caller,
    metrics: Arc<crate::observe::metrics::WorkerMetrics>,
    /// Requests being handled or answered on this worker.
    busy: crate::transport::reply::InProgress,
    /// Lists filtered by role set, for the snapshot generation they were built from.
    granted: std::cell::RefCell<(u64, GrantedLists)>,
}

/// Filtered lists by (view, role set).
type GrantedLists =
    std::collections::HashMap<(Option<String>, Vec<String>), Rc<[registry::Pages; 4]>>;

impl Front {
    /// The endpoint for worker `index`.
    pub fn new(shared: Arc<Shared>, index: u16) -> Rc<Self> {
        let metrics = shared.metrics.worker_with(
            shared.config.gateway.metrics_max_labels,
            shared.config.gateway.metrics_max_principals,
            shared.config.gateway.metrics,
        );
        Rc::new(Self {
            shared,
            caller: Caller::new(index),
            metrics,
            busy: Default::default(),
            granted: Default::default(),
        })
    }

    /// Shared state.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Requests in progress on this worker.
    pub fn in_progress(&self) -> usize {
        self.busy.get()
    }

    /// This worker's metrics.
    pub fn metrics(&self) -> &crate::observe::metrics::WorkerMetrics {
        &self.metrics
    }

    /// This worker's upstream caller.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// Handles one HTTP request whose body has been read; `peer` is the TCP peer's address,
    /// `cert` the identity its verified TLS client certificate names (mTLS).
    pub async fn handle(
        self: &Rc<Self>,
        req: &RequestHead,
        body: Bytes,
        peer: IpAddr,
        cert: Option<&str>,
    ) -> Reply {
        // DNS rebinding: a page on a foreign name that resolves to this address sends that
        // name, with or without an Origin.
        let g = &self.shared.config.gateway;
        if !crate::transport::http::host_allowed(
            crate::transport::http::request_host(req),
            g.listen.ip().is_loopback(),
            &g.allowed_hosts,
        ) {
            tracing::info!(host = ?req.header_str("host"), "request for a foreign Host refused");
            return Reply::error(403, Code::BadHttpRequest, "Forbidden: Host not allowed");
        }
        // A guard, not a clone: no shared reference count touched per request.
        let auth = self.shared.auth.load();
        let client = client_address(req, peer, &auth);
        if !auth.ip.allows(client) {
            return forbidden_address(client);
        }
        if let Some(o) = &auth.oauth {
            if o.paths.contains(&req.path) {
                return match req.method.as_str() {
                    "GET" | "HEAD" => Reply::json(200, o.document.clone()),
                    _ => Reply::error(405, Code::BadHttpRequest, "Method not allowed"),
                };
            }
        }
        // `/mcp`, or `/servers/<name>/mcp` for a virtual server that exists.
        let server = if req.path == MCP_PATH {
            None
        } else {
            match req
                .path
                .strip_prefix("/servers/")
                .and_then(|r| r.strip_suffix(MCP_PATH))
            {
                Some(name) if self.shared.snapshot.load().servers.contains_key(name) => {
                    Some(name.to_string())
                }
                _ => return Reply::error(404, Code::BadHttpRequest, "Not found"),
            }
        };
        let server = server.as_deref();
        if let Some(rules) = server.and_then(|s| auth.server_ip.get(s)) {
            if !rules.allows(client) {
                return forbidden_address(client);
            }
        }
        if !self.origin_allowed(req.header("origin")) {
            tracing::info!(origin = ?req.header_str("origin"), "request from a foreign Origin refused");
            return Reply::error(403, Code::BadHttpRequest, "Forbidden: Origin not allowed");
        }
        // Read once below to choose the era: a repeated one is refused, never "first wins".
        if req.header_values("mcp-protocol-version").nth(1).is_some() {
            return Reply::error(
                400,
                Code::HeaderMismatch,
                "Header mismatch: MCP-Protocol-Version is repeated",
            );
        }
        // A header naming no legacy revision selects the stateless era (2026-07-28), where
        // unknown versions are refused after the body's `_meta` is read.
        let stateless = req
            .header("mcp-protocol-version")
            .is_some_and(version::is_stateless);
        // A virtual server may let anonymous clients in with its own roles, and may admit
        // only some roles.
        let server_auth = server.and_then(|s| auth.servers.get(s));
        let server_anonymous = server_auth.and_then(|s| s.anonymous.clone());
        let authed = auth.authenticate_with_cert(req, cert).await;
        let principal = match (authed, server_anonymous) {
            (Ok(p), Some(a)) if p.method == crate::auth::policy::Method::Anonymous => a,
            (Ok(p), _) => p,
            (Err(crate::auth::Denied::Missing), Some(a)) => a,
            (Err(denied), _) => {
                let why = match denied {
                    crate::auth::Denied::Missing => "credentials required",
                    crate::auth::Denied::Invalid(why) => why,
                };
                tracing::info!(client = %client, reason = why, "request not authenticated");
                if let Some(a) = &self.shared.audit {
                    a.record(serde_json::json!({
                        "event": "denied", "reason": why, "client": client.to_string(),
                    }));
                }
                let mut r = Reply::error(401, Code::Unauthorized, &format!("Unauthorized: {why}"));
                r.headers.push(("WWW-Authenticate", auth.challenge()));
                return r;
            }
        };
        if server_auth.is_some_and(|sa| !sa.admits(&principal)) {
            tracing::info!(principal = %principal.name, server = ?server, "principal not admitted to this server");
            return Reply::error(
                403,
                Code::Forbidden,
                "Forbidden: this principal may not use this server",
            );
        }
        if req.method == "POST" && !auth.rates.is_empty() {
            let now = self.shared.now_ns();
            if let Err(wait) =
                auth.rate_check(&self.shared.rates, RateStage::Request, &principal, "", now)
            {
                self.shared.limits.hit(Limit::RateLimit);
                tracing::debug!(principal = %principal.name, "request rate limited");
                let mut r = Reply::error(
                    429,
                    Code::RateLimited,
                    "Too Many Requests: rate limit exceeded",
                );
                r.headers.push(("Retry-After", retry_after(wait)));
                return r;
            }
        }
        drop(auth);
        match req.method.as_str() {
            "POST" if stateless => self.post_stateless(req, body, server, &principal).await,
            "GET" | "DELETE" if stateless => stateless::method_not_allowed(),
            "POST" => self.post(req, body, server, &principal).await,
            "GET" => self.get(req, server, &principal),
            "DELETE" => self.delete(req, server, &principal),
            _ => {
                let mut r = Reply::error(405, Code::BadHttpRequest, "Method not allowed");
                r.headers
                    .push(("Allow", Bytes::from_static(b"GET, POST, DELETE")));
                r
            }
        }
    }

    fn origin_allowed(&self, origin: Option<&[u8]>) -> bool {
        let Some(o) = origin.and_then(|o| std::str::from_utf8(o).ok()) else {
            return origin.is_none();
        };
        let o = o.trim().to_ascii_lowercase();
        let allowed = &self.shared.config.gateway.allowed_origins;
        if allowed.iter().any(|a| a == "*" || *a == o) {
            return true;
        }
        // Loopback origins (any port) are allowed: they are the local user's own pages.
        let host = o
            .strip_prefix("http://")
            .or_else(|| o.strip_prefix("https://"))
            .unwrap_or("");
        let host = if let Some(rest) = host.strip_prefix('[') {
            rest.split(']').next().unwrap_or("")
        } else {
            host.split(':').next().unwrap_or("")
        };
        matches!(host, "localhost" | "127.0.0.1" | "::1")
    }

    /// The session named by the request: Err is the reply to send instead.
    fn session(
        &self,
        req: &RequestHead,
        server: Option<&str>,
        principal: &Arc<Principal>,
    ) -> Result<(SessionId, Arc<Session>), Reply> {
        let Some(raw) = req.header("mcp-session-id") else {
            return Err(Reply::error(
                400,
                Code::SessionRequired,
                "Bad Request: Mcp-Session-Id header is required",
            ));
        };
        // A session is usable only on the endpoint that created it: an id from a virtual
        // server is unknown elsewhere, and the other way round.
        // And only by the principal that opened it: a leaked id alone is of no use.
        let found = SessionId::parse(raw)
            .and_then(|id| Some((self.shared.sessions.get(&id)?, id)))
            .filter(|(s, _)| s.server.as_deref() == server)
            .filter(|(s, _)| s.principal.load().credential == principal.credential);
        match found {
            Some((s, id)) => {
                s.touch(self.shared.now_ms());
                if !Arc::ptr_eq(&s.principal.load(), principal) {
                    s.principal.store(principal.clone());
                }
                Ok((id, s))
            }
            None => Err(Reply::error(
                404,
                Code::SessionNotFound,
                "Session not found",
            )),
        }
    }

    async fn post(
        self: &Rc<Self>,
        req: &RequestHead,
        body: Bytes,
        server: Option<&str>,
        principal: &Arc<Principal>,
    ) -> Reply {
        let answer = match media(req) {
            Ok(a) => a,
            Err(r) => return r,
        };
        let trace = self.trace_parent(req);
        let max_batch = self.shared.config.gateway.max_batch_items;
        if batch::over_limit(&body, max_batch) {
            return batch::too_many(&self.shared.limits, max_batch);
        }
        let message = match self
            .caller
            .parser
            .borrow_mut()
            .parse_within(body, self.shared.config.gateway.max_json_depth)
        {
            Ok(m) => m,
            Err(e) => return frame_error_reply(&e),
        };
        let snap = self.shared.snapshot.load_full();
        match message {
            Message::Single(f)
                if f.kind() == Kind::Request && f.method().as_deref() == Some("initialize") =>
            {
                self.initialize(&f, &snap, answer, server, principal)
            }
            Message::Single(f) => {
                let (_, sess) = match self.session(req, server, principal) {
                    Ok(s) => s,
                    // A 2026-07-28 request that lacks its version header lands here, with
                    // no session: say what is missing (-32020) rather than "no session".
                    Err(r) => return stateless::version_header_missing(&f, req).unwrap_or(r),
                };
                match f.kind() {
                    Kind::Request => match self.request(&f, &snap, &sess, answer, trace).await {
                        Outcome::Done(b) => reply_with(answer, b),
                        Outcome::Streaming(relay, first) => {
                            Reply::events(Sse::call(&self.shared, relay, first))
                        }
                    },
                    Kind::Notification => {
                        self.notification(&f, &sess).await;
                        Reply::empty(202)
                    }
                    Kind::Response => {
                        self.client_answer(&f, &sess).await;
                        Reply::empty(202)
                    }
                }
            }
            Message::Batch(items) => {
                let (_, sess) = match self.session(req, server, principal) {
                    Ok(s) => s,
                    Err(r) => return r,
                };
                if !version::batches_allowed(sess.version) {
                    return Reply::error(
                        400,
                        Code::InvalidRequest,
                        "Bad Request: batches are not supported in this protocol version",
                    );
                }
                let mut run =
                    batch::Batch::new(self.clone(), snap, sess, principal.clone(), trace, items);
                // Run up to the first answer: a batch of notifications and answers only is
                // 202 with no body. The rest is run while the array is written out.
                // Boxed: the element's call is a large future, kept out of this one (which
                // every request's reply is).
                match Box::pin(run.next()).await {
                    None => Reply::empty(202),
                    Some(first) => Reply {
                        status: 200,
                        headers: vec![],
                        body: Body::Array(Box::new(run), first),
                    },
                }
            }
        }
    }

    /// The client's W3C trace context, read only when spans are exported.
    fn trace_parent(&self, req: &RequestHead) -> Option<TraceParent> {
        self.shared
            .tracing
            .as_ref()
            .and(req.header_str("traceparent"))
            .and_then(TraceParent::parse)
    }

    fn initialize(
        &self,
        f: &Frame,
        snap: &Snapshot,
        answer: Answer,
        server: Option<&str>,
        principal: &Arc<Principal>,
    ) -> Reply {
        let id = f.id_raw().unwrap_or_else(|| Bytes::from_static(b"null"));
        let requested = f
            .param("protocolVersion")
            .and_then(|s| f.str_at(s).map(Cow::into_owned));
        let version = version::negotiate(requested.as_deref());
        let raw = |key: &str, default: &'static [u8]| {
            f.param(key)
                .and_then(|s| f.raw_at(s))
                .filter(|r| r.first() == Some(&b'{'))
                .map_or(Bytes::from_static(default), Bytes::copy_from_slice)
        };
        if self.shared.sessions.len() >= self.shared.config.gateway.max_sessions {
            self.shared.limits.hit(Limit::Sessions);
            tracing::info!("session limit reached: initialize refused");
            let mut r = Reply::json(
                503,
                error_body(
                    Some(&id),
                    Code::LimitReached,
                    "Service Unavailable: session limit reached (max_sessions)",
                ),
            );
            r.headers.push(("Retry-After", Bytes::from_static(b"1")));
            return r;
        }
        let hello = Hello {
            capabilities: raw("capabilities", b"{}"),
            client_info: raw("clientInfo", CLIENT_INFO.as_bytes()),
        };
        let sid = match self.shared.sessions.create(
            version,
            hello,
            server.map(str::to_string),
            principal.clone(),
            self.shared.now_ms(),
        ) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot create a session id");
                return Reply::json(
                    500,
                    error_body(Some(&id), Code::InternalError, "Internal error"),
                );
            }
        };
        let result = format!(
            r#"{{"protocolVersion":"{version}","capabilities":{caps},"serverInfo":{SERVER_INFO},"instructions":{ins}}}"#,
            caps = String::from_utf8_lossy(&snap.capabilities),
            ins = instructions(snap),
        );
        tracing::debug!(session = ?sid, version, "session created");
        let mut r = reply_with(answer, result_body(&id, result.as_bytes()));
        r.headers.push((
            "Mcp-Session-Id",
            Bytes::copy_from_slice(sid.as_str().as_bytes()),
        ));
        r
    }

    /// A client notification: cancellations reach the relay of the request; the rest ends
    /// here (`initialized`, `roots/list_changed` have no upstream to go to yet).
    async fn notification(&self, f: &Frame, sess: &Session) {
        match f.method().as_deref() {
            Some("notifications/cancelled") => {
                let Some(id) = f.param("requestId").and_then(|s| f.raw_at(s)) else {
                    return;
                };
                let entry = sess.in_flight.with(id, |e| e.cancel.take()).flatten();
                match entry {
                    Some(tx) => {
                        let _ = tx.send(());
                    }
                    None => tracing::debug!("cancellation of a request not in flight"),
                }
            }
            m => tracing::debug!(method = ?m, "client notification accepted"),
        }
    }

    /// A client's answer to a request an upstream made: back to that upstream, with the
    /// upstream's own id.
    async fn client_answer(&self, f: &Frame, sess: &Session) {
        let rid = f
            .id_raw()
            .and_then(|r| std::str::from_utf8(&r).ok()?.parse::<u64>().ok());
        let Some(pending) = rid.and_then(|r| sess.server_requests.remove(&r)) else {
            tracing::debug!("client answered a request that is not pending");
            return;
        };
        if let Some((tx, key)) = &pending.to_relay {
            // An answer to an input request of a 2026-07-28 upstream: its call gathers them.
            let _ = tx.send((key.clone(), f.bytes().clone()));
            return;
        }
        let Some(span) = f.id_span() else { return };
        let body = f.splice(&mut [(span, &pending.original_id)]);
        if let Err(e) = self.caller.send(&pending.upstream, &pending.on, body).await {
            tracing::warn!(upstream = %pending.upstream.name, error = %e, "could not deliver the client's answer");
        }
    }

    /// Answers one request.
    async fn request(
        self: &Rc<Self>,
        f: &Frame,
        snap: &Snapshot,
        sess: &Arc<Session>,
        answer: Answer,
        trace: Option<TraceParent>,
    ) -> Outcome {
        let id = f.id_raw().unwrap_or_else(|| Bytes::from_static(b"null"));
        let Some(method) = f.method() else {
            return Outcome::Done(error_body(
                Some(&id),
                Code::InvalidRequest,
                "Invalid Request",
            ));
        };
        let done = Outcome::Done;
        // A virtual server removed by a reload leaves its sessions with nothing to serve.
        let Some(view) = snap.view(sess.server.as_deref()) else {
            return done(error_body(
                Some(&id),
                Code::SessionNotFound,
                "Session not found",
            ));
        };
        let principal = sess.principal.load();
        let grant = &principal.grant;
        let lists = |i: usize, all: &registry::Pages| -> Bytes {
            if grant.is_everything() {
                list(f, &id, all)
            } else {
                list(
                    f,
                    &id,
                    &self.granted_lists(snap, sess.server.as_deref(), grant)[i],
                )
            }
        };
        match &*method {
            "ping" => done(result_body(&id, b"{}")),
            "tools/list" => done(lists(0, view.tools_pages)),
            "prompts/list" => done(lists(1, view.prompts_pages)),
            "resources/list" => done(lists(2, view.resources_pages)),
            "resources/templates/list" => done(lists(3, view.templates_pages)),
            "tools/call" => {
                self.by_name(f, &id, snap, view, sess, view.tools, "tool", answer, trace)
                    .await
            }
            "prompts/get" => {
                self.by_name(
                    f,
                    &id,
                    snap,
                    view,
                    sess,
                    view.prompts,
                    "prompt",
                    answer,
                    trace,
                )
                .await
            }
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                let Some(span) = f.param("uri") else {
                    return done(error_body(
                        Some(&id),
                        Code::InvalidParams,
                        "Invalid params: uri is required",
                    ));
                };
                let uri = f.str_at(span);
                if let Some(u) = uri.as_deref().filter(|u| !grant.resource(u)) {
                    return self.denied(sess, &id, "resource", u);
                }
                let Some((up, orig)) = uri.as_deref().and_then(|u| route_uri(snap, view, u)) else {
                    if sess.stateless {
                        // 2026-07-28: invalid params, naming the URI.
                        let data = serde_json::json!({ "uri": uri.as_deref() }).to_string();
                        return done(error_body_data(
                            Some(&id),
                            Code::InvalidParams,
                            "Resource not found",
                            data.as_bytes(),
                        ));
                    }
                    return done(error_body(
                        Some(&id),
                        Code::ResourceNotFound,
                        "Resource not found",
                    ));
                };
                if method != "resources/read" {
                    if let Some(answer) = self.shared_subscription(&method, snap, sess, up, &orig) {
                        return done(result_body(&id, answer));
                    }
                }
                let read = method == "resources/read";
                self.forward(
                    f,
                    &id,
                    snap,
                    sess,
                    up,
                    Some((span, orig)),
                    answer,
                    read,
                    trace,
                    Guarding::default(),
                )
                .await
            }
            "completion/complete" => self.complete(f, &id, snap, view, sess, answer, trace).await,
            "logging/setLevel" => done(self.set_level(f, &id, snap, sess).await),
            _ => done(error_body(
                Some(&id),
                Code::MethodNotFound,
                "Method not found",
            )),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn by_name(
        self: &Rc<Self>,
        f: &Frame,
        id: &[u8],
        snap: &Snapshot,
        view: View<'_>,
        sess: &Arc<Session>,
        map: &std::collections::HashMap<String, Target>,
        what: &str,
        answer: Answer,
        trace: Option<TraceParent>,
    ) -> Outcome {
        let Some(span) = f.param("name") else {
            return Outcome::Done(error_body(
                Some(id),
                Code::InvalidParams,
                "Invalid params: name is required",
            ));
        };
        let name = f.str_at(span);
        // A name that is not a string names nothing: invalid params, whatever the roles.
        if name.is_none() {
            return Outcome::Done(error_body(
                Some(id),
                Code::InvalidParams,
                "Invalid params: name must be a string",
            ));
        }
        if let Some(n) = name.as_deref() {
            let principal = sess.principal.load();
            let allowed = if what == "tool" {
                principal.grant.tool(n)
            } else {
                principal.grant.prompt(n)
            };
            if !allowed {
                return self.denied(sess, id, what, n);
            }
            if what == "tool" {
                if let Some(out) = self.rate_limited(RateStage::Tool, &principal, n, id) {
                    return out;
                }
            }
        }
        let target = name.as_deref().and_then(|n| map.get(n));
        if what == "tool" && (target.is_some() || view.unprefixed.is_some()) {
            let n = name.as_deref().unwrap_or("");
            if let Some(out) = self.over_quota(&sess.principal.load(), n, id) {
                return out;
            }
        }
        match (target, view.unprefixed) {
            (Some(t), _) => {
                let rename = Some((span, t.name_json.to_vec()));
                let guarding = match self.guard_arguments(
                    f,
                    snap,
                    sess,
                    t.screen.as_ref(),
                    t.upstream,
                    name.as_deref(),
                ) {
                    Ok(g) => g,
                    Err(kinds) => return self.guard_refused(id, Direction::Arguments, &kinds),
                };
                self.forward(
                    f,
                    id,
                    snap,
                    sess,
                    t.upstream,
                    rename,
                    answer,
                    t.retry_safe,
                    trace,
                    guarding,
                )
                .await
            }
            // A name no upstream lists goes, unchanged, to the one unprefixed upstream when
            // there is one: it answers in its own way, as it would without the gateway.
            (None, Some(up)) => {
                // Screened like a listed tool of that upstream would be.
                let screen = (what == "tool" && snap.guard.screens_calls())
                    .then(|| {
                        let u = snap.upstream(up)?;
                        snap.guard
                            .screen(&u.name, name.as_deref()?, sess.server.as_deref())
                    })
                    .flatten();
                let guarding =
                    match self.guard_arguments(f, snap, sess, screen.as_ref(), up, name.as_deref())
                    {
                        Ok(g) => g,
                        Err(kinds) => return self.guard_refused(id, Direction::Arguments, &kinds),
                    };
                self.forward(f, id, snap, sess, up, None, answer, false, trace, guarding)
                    .await
            }
            (None, None) => {
                let msg = if what == "tool" {
                    "Unknown tool"
                } else {
                    "Unknown prompt"
                };
                Outcome::Done(error_body(Some(id), Code::InvalidParams, msg))
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn complete(
        self: &Rc<Self>,
        f: &Frame,
        id: &[u8],
        snap: &Snapshot,
        view: View<'_>,
        sess: &Arc<Session>,
        answer: Answer,
        trace: Option<TraceParent>,
    ) -> Outcome {
        let err = |c, m| Outcome::Done(error_body(Some(id), c, m));
        let Some(r) = f.param("ref") else {
            return err(Code::InvalidParams, "Invalid params: ref is required");
        };
        let kind = f
            .member(r, "type")
            .and_then(|s| f.str_at(s).map(Cow::into_owned));
        match kind.as_deref() {
            Some("ref/prompt") => {
                let Some(span) = f.member(r, "name") else {
                    return err(Code::InvalidParams, "Invalid params: ref.name is required");
                };
                let name = f.str_at(span);
                if let Some(n) = name
                    .as_deref()
                    .filter(|n| !sess.principal.load().grant.prompt(n))
                {
                    return self.denied(sess, id, "prompt", n);
                }
                match name.and_then(|n| view.prompts.get(&*n).cloned()) {
                    Some(t) => {
                        self.forward(
                            f,
                            id,
                            snap,
                            sess,
                            t.upstream,
                            Some((span, t.name_json.to_vec())),
                            answer,
                            true,
                            trace,
                            Guarding::default(),
                        )
                        .await
                    }
                    None => err(Code::InvalidParams, "Unknown prompt"),
                }
            }
            Some("ref/resource") => {
                let Some(span) = f.member(r, "uri") else {
                    return err(Code::InvalidParams, "Invalid params: ref.uri is required");
                };
                let uri = f.str_at(span);
                if let Some(u) = uri
                    .as_deref()
                    .filter(|u| !sess.principal.load().grant.resource(u))
                {
                    return self.denied(sess, id, "resource", u);
                }
                match uri.and_then(|u| route_uri(snap, view, &u)) {
                    Some((up, orig)) => {
                        self.forward(
                            f,
                            id,
                            snap,
                            sess,
                            up,
                            Some((span, orig)),
                            answer,
                            true,
                            trace,
                            Guarding::default(),
                        )
                        .await
                    }
                    None => err(Code::ResourceNotFound, "Resource not found"),
                }
            }
            _ => err(Code::InvalidParams, "Invalid params: unknown ref type"),
        }
    }

    /// Subscriptions through a shared upstream session are the gateway's to keep: the
    /// upstream sees one subscriber (the gateway) per URI, so only the first subscribe and the
    /// last unsubscribe go to it. Returns the answer when the upstream need not be asked.
    fn shared_subscription(
        &self,
        method: &str,
        snap: &Snapshot,
        sess: &Session,
        up: UpstreamRef,
        orig_json: &[u8],
    ) -> Option<&'static [u8]> {
        let upstream = snap.upstream(up)?;
        // A 2026-07-28 upstream has no subscribe: the gateway's listen stream to it names the
        // resources subscribed (and is opened again when they change).
        let stateless = matches!(&upstream.link, Link::Http(h) if h.is_stateless());
        if upstream.mode != SessionMode::Shared && !stateless {
            return None;
        }
        let uri: String = serde_json::from_slice(orig_json).ok()?;
        let key = crate::state::subscription_key(&upstream.name, &uri);
        let subs = &self.shared.subscriptions;
        if stateless {
            let was = self.shared.subscribed_uris(&upstream.name);
            if method == "resources/subscribe" {
                let mut e = subs.entry(key).or_default();
                if !e.contains(&sess.id) {
                    e.push(sess.id.clone());
                }
            } else {
                if let Some(mut e) = subs.get_mut(&key) {
                    e.retain(|s| *s != sess.id);
                }
                subs.remove_if(&key, |_, v| v.is_empty());
            }
            if self.shared.subscribed_uris(&upstream.name) != was {
                self.shared.subscriptions_changed(&upstream.name);
            }
            return Some(b"{}");
        }
        if method == "resources/subscribe" {
            let listened = self.shared.listeners.subscribed(&key);
            let mut e = subs.entry(key).or_default();
            let first = e.is_empty() && !listened;
            if !e.contains(&sess.id) {
                e.push(sess.id.clone());
            }
            (!first).then_some(b"{}")
        } else {
            let last = match subs.get_mut(&key) {
                Some(mut e) => {
                    e.retain(|s| *s != sess.id);
                    e.is_empty()
                }
                None => return Some(b"{}"),
            };
            if last {
                // A listen stream (2026-07-28) may still want it: keep the upstream's. And
                // a session that subscribed meanwhile keeps its entry.
                let listened = self.shared.listeners.subscribed(&key);
                if subs.remove_if(&key, |_, v| v.is_empty()).is_none() {
                    return Some(b"{}");
                }
                if listened {
                    Some(b"{}")
                } else {
                    None
                }
            } else {
                Some(b"{}")
            }
        }
    }

    /// `logging/setLevel`: remembered for the session and sent to each of its own upstream
    /// sessions that offer logging. Shared upstream sessions are not told (the level would
    /// change for every client).
    async fn set_level(
        self: &Rc<Self>,
        f: &Frame,
        id: &[u8],
        snap: &Snapshot,
        sess: &Arc<Session>,
    ) -> Bytes {
        let Some(level) = f
            .param("level")
            .and_then(|s| f.str_at(s))
            .map(Cow::into_owned)
        else {
            return error_body(
                Some(id),
                Code::InvalidParams,
                "Invalid params: level is required",
            );
        };
        if log_rank(&level).is_none() {
            return error_body(
                Some(id),
                Code::InvalidParams,
                "Invalid params: unknown level",
            );
        }
        sess.log_level.store(Some(Arc::new(level.clone())));
        for up in &snap.upstreams {
            if up.mode != SessionMode::PerClient {
                continue;
            }
            if let Some(us) = sess.upstreams.get(&up.name) {
                self.apply_level(up, &us, &level).await;
            }
        }
        result_body(id, b"{}")
    }

    async fn apply_level(
        &self,
        up: &Upstream,
        us: &Arc<crate::upstream::UpstreamSession>,
        level: &str,
    ) {
        if !us.capabilities.contains_key("logging") {
            return;
        }
        let gid = self.caller.ids.next();
        let body = crate::upstream::request_body(
            gid,
            "logging/setLevel",
            &format!(r#"{{"level":"{level}"}}"#),
        );
        let on = OnSession::Http(us.clone());
        match self.caller.start(up, &on, gid, body).await {
            Ok(mut call) => {
                let _ = monoio::time::timeout(up.call_timeout, call.next()).await;
                call.finish(&self.caller).await;
            }
            Err(e) => tracing::debug!(upstream = %up.name, error = %e, "setLevel not delivered"),
        }
    }

    /// The upstream session `sess`'s calls to `up` run on (created on first use);
    /// `expired`: the one the upstream no longer knows, to be replaced; `modern`: a
    /// 2026-07-28 client's request to a dual-era upstream, which goes in that era.
    async fn upstream_session(
        self: &Rc<Self>,
        sess: &Arc<Session>,
        up: &Upstream,
        expired: Option<&OnSession>,
        modern: bool,
    ) -> crate::error::Result<OnSession> {
        let Link::Http(h) = &up.link else {
            return Ok(OnSession::Stdio);
        };
        if modern {
            return Ok(OnSession::Http(h.ensure_modern(&self.caller).await?));
        }
        let expired = match expired {
            Some(OnSession::Http(e)) => Some(e),
            _ => None,
        };
        // A stateless (2026-07-28) request has no session of its own to keep upstream
        // sessions in: a legacy upstream's per-client sessions are then one per set of
        // declared capabilities (so the upstream knows what it may ask), kept by the
        // upstream.
        if sess.stateless && up.mode == SessionMode::PerClient && !h.is_stateless() {
            let s = h
                .for_capabilities(&self.caller, &sess.hello.capabilities, expired)
                .await?;
            return Ok(OnSession::Http(s));
        }
        if up.mode == SessionMode::Shared || sess.stateless || h.is_stateless() {
            return Ok(OnSession::Http(if expired.is_some() {
                h.reinit_shared(&self.caller).await?
            } else {
                h.ensure_shared(&self.caller).await?
            }));
        }
        if expired.is_none() {
            if let Some(us) = sess.upstreams.get(&up.name) {
                return Ok(OnSession::Http(us));
            }
        }
        let us = h.initialize(&self.caller, &sess.hello).await?;
        // Concurrent calls may each have initialized one: the first in stays (calls may be
        // running on it) and the others are ended unused. Only the expired one is replaced.
        let (current, replaced) =
            sess.upstreams
                .insert_unless(up.name.clone(), us.clone(), |cur| {
                    !expired.is_some_and(|e| Arc::ptr_eq(cur, e))
                });
        if !Arc::ptr_eq(&current, &us) {
            self.delete_upstream_sessions(vec![(up.name.clone(), us)]);
            return Ok(OnSession::Http(current));
        }
        if let Some(old) = replaced {
            self.delete_upstream_sessions(vec![(up.name.clone(), old)]);
        }
        // A GET stream is open: relay this upstream session's own stream into it too.
        if let Some(o) = sess.outbox.load_full() {
            if let Some(u) = self
                .shared
                .snapshot
                .load()
                .by_name
                .get(&*up.name)
                .and_then(|r| self.shared.snapshot.load().upstream(*r).cloned())
            {
                self.listen_upstream(u, us.clone(), o);
            }
        }
        if let Some(level) = sess.log_level.load_full() {
            self.apply_level(up, &us, &level).await;
        }
        Ok(OnSession::Http(us))
    }

    /// Sends `f` to upstream `up` with a fresh id, the name (or URI) at `rename` replaced and
    /// its progress token replaced by the gateway id, and relays the answer.
    #[allow(clippy::too_many_arguments)]
    async fn forward(
        self: &Rc<Self>,
        f: &Frame,
        id: &[u8],
        snap: &Snapshot,
        sess: &Arc<Session>,
        up: UpstreamRef,
        rename: Option<(Span, Vec<u8>)>,
        answer: Answer,
        retry_safe: bool,
        trace: Option<TraceParent>,
        guarding: Guarding,
    ) -> Outcome {
        let Some(upstream) = snap.upstream(up).cloned() else {
            return Outcome::Done(error_body(Some(id), Code::InternalError, "Internal error"));
        };
        if snap.is_blocked(up) {
            return Outcome::Done(error_body(
                Some(id),
                Code::GuardBlocked,
                "Blocked by guardrail: this upstream's catalog failed the guard's scan",
            ));
        }
        if let Some(out) = self.rate_limited(
            RateStage::Upstream,
            &sess.principal.load(),
            &upstream.name,
            id,
        ) {
            return out;
        }
        if sess.in_flight.len() >= self.shared.config.gateway.max_in_flight_per_session {
            self.shared.limits.hit(Limit::InFlight);
            return Outcome::Done(error_body(
                Some(id),
                Code::LimitReached,
                "Too many calls in flight for this session (max_in_flight_per_session)",
            ));
        }
        let Some(id_span) = f.id_span() else {
            return Outcome::Done(error_body(
                Some(id),
                Code::InvalidRequest,
                "Invalid Request",
            ));
        };
        let token = f.param("_meta").and_then(|m| f.member(m, "progressToken"));
        let client_token = token.and_then(|t| f.raw_at(t)).map(Bytes::copy_from_slice);
        let method = f.method().map(|m| m.into_owned()).unwrap_or_default();
        let target = match method.as_str() {
            "tools/call" | "prompts/get" => f
                .param("name")
                .and_then(|s| f.str_at(s))
                .map_or(method.clone(), |n| n.into_owned()),
            _ => method.clone(),
        };
        // The arguments as sent upstream, for an audit log that records them.
        let audit_args: Option<Box<serde_json::value::RawValue>> = self
            .shared
            .audit
            .as_ref()
            .filter(|a| a.wants_arguments())
            .and_then(|_| {
                let raw = match &guarding.arguments {
                    Some((_, masked)) => masked.as_slice(),
                    None => f.param("arguments").and_then(|s| f.raw_at(s))?,
                };
                // Audit logs live long: secrets in them are masked whatever the screening.
                let raw = crate::guard::policy::mask_secrets(&snap.guard.screener, raw)?;
                serde_json::value::RawValue::from_string(String::from_utf8(raw).ok()?).ok()
            });
        let began = monoio::time::Instant::now();
        // When the gateway started waiting on the upstream (session set-up, sending,
        // retries): from there on the call's time counts as the upstream's.
        let upstream_began: std::cell::Cell<Option<monoio::time::Instant>> = Default::default();
        let waited = || {
            upstream_began
                .get()
                .map_or(std::time::Duration::ZERO, |t| t.elapsed())
        };
        // The upstream's own tool name, for per-tool timeouts.
        let original: Option<String> = (method == "tools/call"
            && !upstream.tool_timeouts.is_empty())
        .then(|| {
            rename
                .as_ref()
                .and_then(|(_, json)| serde_json::from_slice(json).ok())
        })
        .flatten();
        // The gateway's span of this call, when spans are exported and the call is sampled.
        let call_trace = self.shared.tracing.as_ref().and_then(|t| {
            let from_meta = || {
                let m = f.param("_meta")?;
                TraceParent::parse(&f.str_at(f.member(m, "traceparent")?)?)
            };
            t.begin(trace.or_else(from_meta))
        });
        let fail = |e: &Error| {
            tracing::warn!(upstream = %upstream.name, error = %e, "upstream call failed");
            let us = u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX);
            let outcome = relay::metric_of(e);
            self.metrics.record(&crate::observe::metrics::Sample {
                target: &target,
                upstream: &upstream.name,
                principal: &sess.principal.load().name,
                outcome,
                total_us: us,
                upstream_us: u64::try_from(waited().as_micros()).unwrap_or(u64::MAX),
                bytes: (f.bytes().len(), 0),
            });
            if let (Some(t), Some(tracing)) = (&call_trace, &self.shared.tracing) {
                tracing.finish(
                    t,
                    &crate::observe::trace::CallEnd {
                        name: &target,
                        upstream: &upstream.name,
                        outcome: outcome.label(),
                        session: sess.id.as_str().get(..8).unwrap_or(""),
                        principal: &sess.principal.load().name,
                        bytes: (f.bytes().len(), 0),
                    },
                );
            }
            if let Some(a) = &self.shared.audit {
                a.record_call(crate::observe::audit::CallRecord {
                    session: crate::observe::audit::SessionTag::of(sess.id.as_str()),
                    principal: sess.principal.load().name.clone(),
                    arguments: audit_args.clone(),
                    target: target.as_str().into(),
                    upstream: upstream.name.clone(),
                    outcome: outcome.label(),
                    latency_us: us,
                    request_bytes: f.bytes().len(),
                    response_bytes: 0,
                });
            }
            let (code, msg) = e.to_jsonrpc();
            Outcome::Done(error_body(Some(id), code, msg))
        };

        let gid = self.caller.ids.next();
        let gid_text = gid.to_string();
        let mut edits: Vec<(Span, &[u8])> = vec![(id_span, gid_text.as_bytes())];
        if let Some((span, with)) = &rename {
            edits.push((*span, with));
        }
        if let Some(t) = token {
            edits.push((t, gid_text.as_bytes()));
        }
        if let Some((span, masked)) = &guarding.arguments {
            edits.push((*span, masked));
        }
        // A stateless client's `_meta` says what a legacy upstream must not see (its
        // version, capabilities, client info): those members go. A 2026-07-28 upstream gets
        // them as they are (and a legacy client's requests get the envelope on their way
        // out, in `upstream::http`).
        // A dual-era upstream is spoken to in the client's era: nothing to translate.
        let modern = matches!(&upstream.link, Link::Http(h) if sess.stateless && h.is_dual());
        let upstream_stateless =
            modern || matches!(&upstream.link, Link::Http(h) if h.is_stateless());
        let (strip, emptied) = match f
            .param("_meta")
            .filter(|_| sess.stateless && !upstream_stateless)
        {
            Some(meta) => f.removals(meta, era::is_envelope_key),
            None => (Vec::new(), false),
        };
        edits.extend(strip.into_iter().map(|s| (s, &b""[..])));
        // `_meta` gains the gateway's traceparent (replacing the client's own) and, for a
        // legacy client's request to a 2026-07-28 upstream, the envelope built from what the
        // client said in `initialize`.
        let tp_header = call_trace.as_ref().map(|t| t.traceparent());
        let mut added = String::new();
        let mut replaced_tp = None;
        if let Some(tp) = tp_header.as_deref() {
            match f.param("_meta").and_then(|m| f.member(m, "traceparent")) {
                Some(old) => replaced_tp = Some((old, format!("\"{tp}\"").into_bytes())),
                None => added = format!("\"traceparent\":\"{tp}\""),
            }
        }
        if upstream_stateless && !sess.stateless {
            if !added.is_empty() {
                added.push(',');
            }
            added.push_str(&era::envelope(&sess.hello));
            // The level a legacy client set (`logging/setLevel`) is, in this era, each
            // request's own.
            if let Some(level) = sess.log_level.load_full() {
                added.push_str(&format!(r#","{}":"{level}""#, era::META_LOG_LEVEL));
            }
        }
        let meta_edit = (!added.is_empty())
            .then(|| era::meta_insert(f, &added, emptied))
            .flatten();
        for (span, with) in replaced_tp.iter().chain(&meta_edit) {
            edits.push((*span, with));
        }
        let body = f.splice(&mut edits);
        // The routing headers of a 2026-07-28 upstream, from what was parsed already (when
        // the arguments were masked, the upstream's copy is read from the body instead).
        let routing = match &upstream.link {
            Link::Http(h) if upstream_stateless && guarding.arguments.is_none() => {
                // Only the methods that name something in `Mcp-Name` (completion/complete
                // names a prompt or resource in `ref`, which gets no header).
                let named = era::named_param(&method);
                let name: Option<Cow<'_, str>> = match (named, &rename) {
                    (None, _) => None,
                    (Some(_), Some((_, json))) => crate::jsonrpc::frame::json_str(json),
                    (Some(p), None) => f.param(p).and_then(|s| f.str_at(s)),
                };
                Some(era::routing_of(f, &method, name.as_deref(), |t| {
                    h.param_headers_of(t)
                }))
            }
            _ => None,
        };
        // Kept to ask again with a legacy client's input, should a 2026-07-28 upstream need
        // some (a reference count, only then).
        let body_sent = (upstream_stateless && !sess.stateless).then(|| body.clone());

        // In flight (and cancellable) from here: an upstream that answers JSON sends its
        // response head only with the answer, so `start` may last the whole call.
        let client_id = Bytes::copy_from_slice(id);
        let (entry, mut cancel) = sess.register_call(client_id.clone(), gid);
        let sent_on = std::cell::RefCell::new(None);
        // Without a valid OAuth token nothing can be sent: fail now (-32003). Retries and
        // the breaker are for failures of the upstream itself.
        if let Link::Http(h) = &upstream.link {
            if let Err(e) = h.check_credential() {
                return fail(&e);
            }
        }
        let policy = upstream.breaker_policy;
        let Some(pass) = upstream.breaker.allow(&policy, self.shared.now_ms()) else {
            return fail(&Error::new(
                ErrorKind::CircuitOpen,
                format!("{}: circuit open", upstream.name),
            ));
        };
        // Tells the breaker how a call that never got a relay ended.
        let broke = |ok: bool| {
            upstream
                .breaker
                .record(&policy, pass, ok, self.shared.now_ms())
        };
        upstream.budget.deposit(upstream.retry.budget_percent);
        upstream_began.set(Some(monoio::time::Instant::now()));
        let mut attempt = 0u32;
        let (on, call) = loop {
            let start = async {
                let on = self.upstream_session(sess, &upstream, None, modern).await?;
                *sent_on.borrow_mut() = Some(on.clone());
                // The gateway's span as the upstream's parent, also as an HTTP header.
                let how = crate::upstream::Sending {
                    traceparent: tp_header.as_deref(),
                    routing: routing.as_ref(),
                    own: false,
                };
                match self
                    .caller
                    .start_with(&upstream, &on, gid, body.clone(), &how)
                    .await
                {
                    Err(e) if e.kind == ErrorKind::UpstreamSessionExpired => {
                        tracing::info!(upstream = %upstream.name, "upstream session expired; initializing again");
                        let on = self
                            .upstream_session(sess, &upstream, Some(&on), modern)
                            .await?;
                        *sent_on.borrow_mut() = Some(on.clone());
                        let call = self
                            .caller
                            .start_with(&upstream, &on, gid, body.clone(), &how)
                            .await?;
                        Ok((on, call))
                    }
                    Err(e) => Err(e),
                    Ok(call) => Ok((on, call)),
                }
            };
            let started = monoio::time::timeout(upstream.timeout_for(original.as_deref()), start);
            // Only a cancellation that fires counts (a client reusing the id replaces the
            // entry).
            let fired = async {
                if (&mut cancel).await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            let e = match select_first(started, fired).await {
                Some(Ok(Ok(x))) => break x,
                Some(Ok(Err(e))) => e,
                Some(Err(_)) => {
                    broke(false);
                    if let Some(on) = sent_on.borrow().as_ref() {
                        self.caller.timed_out(&upstream, on);
                    }
                    return fail(&Error::new(
                        ErrorKind::UpstreamTimeout,
                        format!("{}: no answer", upstream.name),
                    ));
                }
                None => {
                    // Cancelled before the upstream's answer began: the request is abandoned
                    // (its connection closed) and the upstream told, as for a running call.
                    broke(true);
                    if let Some(on) = sent_on.take() {
                        self.tell_cancelled(&upstream, on, gid);
                    }
                    return Outcome::Done(error_body(
                        Some(id),
                        Code::RequestCancelled,
                        "Request cancelled",
                    ));
                }
            };
            // Retry only what is safe to send again, within the attempts and the budget.
            let safe = e.kind == ErrorKind::UpstreamUnavailable && (e.unsent || retry_safe);
            if !safe || attempt >= upstream.retry.retries || !upstream.budget.withdraw() {
                broke(false);
                return fail(&e);
            }
            attempt += 1;
            upstream
                .retries_total
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let wait =
                crate::resilience::backoff(&upstream.retry, attempt, crate::resilience::jitter());
            tracing::debug!(upstream = %upstream.name, attempt, ?wait, error = %e, "retrying");
            let fired = async {
                if (&mut cancel).await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            if select_first(monoio::time::sleep(wait), fired)
                .await
                .is_none()
            {
                broke(true);
                return Outcome::Done(error_body(
                    Some(id),
                    Code::RequestCancelled,
                    "Request cancelled",
                ));
            }
        };
        let can_push = answer != Answer::Json || sess.outbox.load().is_some();
        let mut relay = Relay::new(
            self.clone(),
            call,
            sess.clone(),
            upstream,
            on,
            client_id,
            gid,
            client_token,
            can_push,
            &target,
            original,
            (entry, cancel),
        );
        relay.request_bytes = f.bytes().len();
        relay.timed_from(began, waited());
        relay.audit_arguments = audit_args;
        relay.screen = guarding
            .screen
            .filter(|s| s.covers(Direction::Result))
            .map(|s| (s, snap.guard.clone()));
        relay.breaker_pass = pass;
        relay.trace = call_trace;
        relay.stateless = sess
            .stateless
            .then(|| era::result_members(f.method().as_deref()));
        // 2026-07-28: log messages only at or above the request's own level, if it set one.
        relay.log_level = sess.request_log_level;
        relay.upstream_stateless = upstream_stateless;
        relay.sent = body_sent;
        match relay.next().await {
            Event::Final(b) => Outcome::Done(b),
            Event::Cancelled => Outcome::Done(error_body(
                Some(id),
                Code::RequestCancelled,
                "Request cancelled",
            )),
            Event::Message(m) if answer != Answer::Json => Outcome::Streaming(Box::new(relay), m),
            Event::Message(m) => {
                self.push(sess, m);
                Outcome::Done(self.finish_pushing(sess, &mut relay).await)
            }
        }
    }

    /// Screens a `tools/call`'s `arguments` under `screen` (if any): the [`Guarding`] to
    /// forward with (masked arguments, the screen for the result), or the kinds found that
    /// a policy blocks.
    fn guard_arguments(
        &self,
        f: &Frame,
        snap: &Snapshot,
        sess: &Session,
        screen: Option<&Arc<Screen>>,
        up: UpstreamRef,
        name: Option<&str>,
    ) -> Result<Guarding, Vec<&'static str>> {
        let Some(sc) = screen else {
            return Ok(Guarding::default());
        };
        let mut g = Guarding {
            screen: Some(sc.clone()),
            arguments: None,
        };
        let Some(span) = f
            .param("arguments")
            .filter(|_| sc.covers(Direction::Arguments))
        else {
            return Ok(g);
        };
        let raw = f.raw_at(span).unwrap_or_default();
        let upstream = snap.upstream(up).map_or("", |u| &*u.name);
        match self.screen(
            sc,
            &snap.guard,
            raw,
            Direction::Arguments,
            sess,
            name.unwrap_or(""),
            upstream,
        ) {
            Screened::Pass => Ok(g),
            Screened::Replace(masked) => {
                g.arguments = Some((span, masked));
                Ok(g)
            }
            Screened::Block(kinds) => Err(kinds),
        }
    }

    /// Screens `json` (a call's `arguments` or `result`) under `sc`; counts every finding
    /// (`mcpgw_guard_screen_hits_total`), logs and audits them (kinds only, never values).
    #[allow(clippy::too_many_arguments)]
    pub fn screen(
        &self,
        sc: &Screen,
        policy: &GuardPolicy,
        json: &[u8],
        dir: Direction,
        sess: &Session,
        target: &str,
        upstream: &str,
    ) -> Screened {
        let mut hits = Vec::new();
        let out = sc.apply(&policy.screener, json, dir, &mut hits);
        if hits.is_empty() {
            return out;
        }
        for h in &hits {
            self.shared.guard.screen_hit(
                h.kind.label(),
                dir.as_str(),
                sc.verdict(h.kind.class()).as_str(),
            );
        }
        let kinds = crate::guard::policy::kinds(&hits);
        let action = match &out {
            Screened::Pass => "flag",
            Screened::Replace(_) => "mask",
            Screened::Block(_) => "block",
        };
        let principal = sess.principal.load();
        // Masking is the policy doing its work, maybe on every call: counted and audited,
        // logged at debug. A refusal, or a finding only flagged, is worth a warning.
        if matches!(out, Screened::Replace(_)) {
            tracing::debug!(target, upstream, principal = %principal.name, direction = dir.as_str(), ?kinds, action, "guard: screening masked sensitive content");
        } else {
            tracing::warn!(target, upstream, principal = %principal.name, direction = dir.as_str(), ?kinds, action, "guard: screening found sensitive content");
        }
        if let Some(a) = &self.shared.audit {
            a.record(serde_json::json!({
                "event": "guard_screen",
                "direction": dir.as_str(),
                "target": target,
                "upstream": upstream,
                "session": sess.id.as_str().get(..8),
                "principal": &*principal.name,
                "kinds": kinds,
                "action": action,
            }));
        }
        out
    }

    /// The answer to a call a guard refused.
    fn guard_refused(&self, id: &[u8], dir: Direction, kinds: &[&str]) -> Outcome {
        Outcome::Done(error_body(
            Some(id),
            Code::GuardBlocked,
            &crate::guard::policy::blocked_message(dir, kinds),
        ))
    }

    /// A JSON-RPC error when a `[[rate_limit]]` of `stage` refuses this call now.
    fn rate_limited(
        &self,
        stage: RateStage,
        principal: &Principal,
        name: &str,
        id: &[u8],
    ) -> Option<Outcome> {
        let auth = self.shared.auth.load();
        if auth.rates.is_empty() {
            return None;
        }
        let wait = auth
            .rate_check(
                &self.shared.rates,
                stage,
                principal,
                name,
                self.shared.now_ns(),
            )
            .err()?;
        self.shared.limits.hit(Limit::RateLimit);
        tracing::debug!(principal = %principal.name, name, "call rate limited");
        Some(Outcome::Done(error_body(
            Some(id),
            Code::RateLimited,
            &format!(
                "Rate limit exceeded for {name}: retry after {} ms",
                wait.as_millis().max(1)
            ),
        )))
    }

    /// A JSON-RPC error when a `[[quota]]` has no call left for this one (counted otherwise).
    fn over_quota(&self, principal: &Principal, tool: &str, id: &[u8]) -> Option<Outcome> {
        let auth = self.shared.auth.load();
        if auth.quotas.is_empty() {
            return None;
        }
        let now = self.shared.unix_secs();
        let over = auth
            .quota_check(&self.shared.quotas, principal, tool, now)
            .err()?;
        self.shared.limits.hit(Limit::Quota);
        tracing::debug!(principal = %principal.name, tool, "call over quota");
        let window = match over.window {
            crate::ratelimit::Window::Day => "day",
            crate::ratelimit::Window::Month => "month",
        };
        let scope = if over.team { "team" } else { "principal" };
        Some(Outcome::Done(error_body(
            Some(id),
            Code::RateLimited,
            &format!(
                "Quota exceeded: {} tool calls per {window} for this {scope}; resets at {} (in {} s)",
                over.limit,
                crate::ratelimit::utc_rfc3339(over.resets_at),
                over.resets_at.saturating_sub(now).max(1)
            ),
        )))
    }

    /// A request for something outside the principal's roles: a stable error, logged and
    /// audited.
    fn denied(&self, sess: &Session, id: &[u8], what: &str, name: &str) -> Outcome {
        let principal = sess.principal.load();
        tracing::info!(principal = %principal.name, what, name, "denied by role");
        if let Some(a) = &self.shared.audit {
            a.record(serde_json::json!({
                "event": "denied",
                "reason": "role",
                "principal": &*principal.name,
                "method": principal.method.label(),
                "session": sess.id.as_str().get(..8),
                "kind": what,
                "target": name,
            }));
        }
        Outcome::Done(error_body(
            Some(id),
            Code::Forbidden,
            &format!("Forbidden: this {what} is not allowed for this principal"),
        ))
    }

    /// The four lists (tools, prompts, resources, templates) of view `server` with only what
    /// `grant` allows, built from the snapshot's pages once per worker, snapshot and role set.
    fn granted_lists(
        &self,
        snap: &Snapshot,
        server: Option<&str>,
        grant: &Grant,
    ) -> Rc<[registry::Pages; 4]> {
        let key = (server.map(str::to_string), grant.roles.clone());
        let mut cache = self.granted.borrow_mut();
        if cache.0 != snap.generation {
            *cache = (snap.generation, Default::default());
        }
        if let Some(p) = cache.1.get(&key) {
            return p.clone();
        }
        let Some(view) = snap.view(server) else {
            return Rc::new(Default::default());
        };
        let size = self.shared.config.gateway.page_size;
        // An item is kept when the string at `key` is one `allows` grants.
        let keep = |key: &'static str, allows: fn(&Grant, &str) -> bool| {
            move |v: &serde_json::Value| {
                v.get(key)
                    .and_then(serde_json::Value::as_str)
                    .is_some_and(|s| allows(grant, s))
            }
        };
        let filtered = Rc::new([
            registry::filter_pages(view.tools_pages, "tools", size, keep("name", Grant::tool)),
            registry::filter_pages(
                view.prompts_pages,
                "prompts",
                size,
                keep("name", Grant::prompt),
            ),
            registry::filter_pages(
                view.resources_pages,
                "resources",
                size,
                keep("uri", Grant::resource),
            ),
            registry::filter_pages(
                view.templates_pages,
                "resourceTemplates",
                size,
                keep("uriTemplate", Grant::resource),
            ),
        ]);
        cache.1.insert(key, filtered.clone());
        filtered
    }

    /// Tells upstream `up` (in the background) that call `gid` was cancelled.
    fn tell_cancelled(self: &Rc<Self>, up: &Arc<Upstream>, on: OnSession, gid: u64) {
        if !matches!(up.link, Link::Http(_)) {
            return; // a stdio call dropped early is cancelled at the child already
        }
        let (front, up) = (self.clone(), up.clone());
        monoio::spawn(async move {
            let body = Bytes::from(format!(
                r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":{gid},"reason":"cancelled by the client"}}}}"#
            ));
            if let Err(e) = front.caller.send(&up, &on, body).await {
                tracing::debug!(upstream = %up.name, error = %e, "could not forward a cancellation");
            }
        });
    }

    /// Sends a message to the session's GET stream, if it has one (dropped otherwise).
    fn push(&self, sess: &Session, m: Bytes) {
        if let Some(o) = sess.outbox.load_full() {
            if !o.offer(m, &self.shared.limits) {
                tracing::debug!("GET stream full or closed: message dropped");
            }
        }
    }

    /// Runs a relay to its end, pushing its messages to the GET stream; returns the response.
    async fn finish_pushing(&self, sess: &Session, relay: &mut Relay) -> Bytes {
        loop {
            match relay.next().await {
                Event::Message(m) => self.push(sess, m),
                Event::Final(b) => return b,
                Event::Cancelled => {
                    return error_body(None, Code::RequestCancelled, "Request cancelled")
                }
            }
        }
    }

    /// Tells every session with an open GET stream which of its lists changed; `lists`
    /// gives them for a view (`None`: `/mcp`, else a virtual server's name).
    pub fn broadcast(shared: &Shared, lists: impl Fn(Option<&str>) -> Vec<&'static str>) {
        let mut by_view: std::collections::HashMap<Option<String>, Vec<&'static str>> =
            Default::default();
        for s in shared.sessions.all() {
            let Some(o) = s.outbox.load_full() else {
                continue;
            };
            let methods = by_view
                .entry(s.server.clone())
                .or_insert_with(|| lists(s.server.as_deref()));
            for m in methods.iter() {
                o.offer(
                    Bytes::from(format!(r#"{{"jsonrpc":"2.0","method":"{m}"}}"#)),
                    &shared.limits,
                );
            }
        }
        shared.listeners.broadcast(shared, &lists);
    }
}

/// The client's address: the TCP peer, or, when the peer is a trusted proxy, the last
/// address in `X-Forwarded-For` that is not itself a trusted proxy.
fn client_address(req: &RequestHead, peer: IpAddr, auth: &crate::auth::Auth) -> IpAddr {
    if !auth.proxies.lists(peer) {
        return peer;
    }
    let Some(xff) = req.header_str("x-forwarded-for") else {
        return peer;
    };
    xff.rsplit(',')
        .filter_map(|a| a.trim().parse::<IpAddr>().ok())
        .find(|a| !auth.proxies.lists(*a))
        .unwrap_or(peer)
}

/// `Retry-After` in whole seconds, at least 1.
fn retry_after(wait: std::time::Duration) -> Bytes {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    Bytes::from(secs.max(1).to_string())
}

fn forbidden_address(client: IpAddr) -> Reply {
    tracing::info!(client = %client, "client address refused by ip_allow/ip_deny");
    Reply::error(
        403,
        Code::Forbidden,
        "Forbidden: client address not allowed",
    )
}

/// Waits for whichever of two futures finishes first; `None` when it is the second.
async fn select_first<A: std::future::Future, B: std::future::Future>(
    a: A,
    b: B,
) -> Option<A::Output> {
    match futures_util::future::select(Box::pin(a), Box::pin(b)).await {
        futures_util::future::Either::Left((x, _)) => Some(x),
        futures_util::future::Either::Right(_) => None,
    }
}

/// (upstream, original URI as a JSON string token) for an exposed or plain URI.
/// A URI outside a virtual server's bundle is not found there.
fn route_uri(snap: &Snapshot, view: View<'_>, uri: &str) -> Option<(UpstreamRef, Vec<u8>)> {
    if !view.uri_allowed(uri) {
        return None;
    }
    let (up, orig) = match names::split_uri(uri) {
        Some((name, orig)) if snap.by_name.contains_key(name) => (*snap.by_name.get(name)?, orig),
        _ => (
            *view.plain_uris?.get(uri).or(view.unprefixed.as_ref())?,
            uri,
        ),
    };
    Some((up, serde_json::to_vec(orig).ok()?))
}

fn list(f: &Frame, id: &[u8], pages: &registry::Pages) -> Bytes {
    let page = match f.param("cursor") {
        None => Some(0),
        Some(c) => f.str_at(c).and_then(|c| registry::page_of(&c)),
    };
    match page.and_then(|p| pages.0.get(p)) {
        Some(body) => result_body(id, body),
        None => error_body(
            Some(id),
            Code::InvalidParams,
            "Invalid params: unknown cursor",
        ),
    }
}

/// The gateway's `serverInfo` (`initialize`) and `_meta` serverInfo (2026-07-28).
const SERVER_INFO: &str = concat!(
    r#"{"name":"mcpgw","title":"mcpgw MCP gateway","version":""#,
    env!("CARGO_PKG_VERSION"),
    r#""}"#
);

/// The `instructions` the gateway gives clients (a JSON string).
fn instructions(snap: &Snapshot) -> String {
    serde_json::Value::String(format!(
        "One endpoint for many MCP servers: tool and prompt names are <server>{}<name>.",
        snap.separator
    ))
    .to_string()
}

/// How a POST may be answered (its `Accept`), once its `Content-Type` is JSON.
fn media(req: &RequestHead) -> Result<Answer, Reply> {
    let ct = req.header_str("content-type").unwrap_or("");
    if !ct
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("application/json")
    {
        return Err(Reply::error(
            415,
            Code::BadHttpRequest,
            "Unsupported Media Type: Content-Type must be application/json",
        ));
    }
    match (
        accepts(req, "application/json"),
        accepts(req, "text/event-stream"),
    ) {
        (true, true) => Ok(Answer::Either),
        (true, false) => Ok(Answer::Json),
        (false, true) => Ok(Answer::Sse),
        (false, false) => Err(Reply::error(
            406,
            Code::BadHttpRequest,
            "Not Acceptable: Accept must include application/json or text/event-stream",
        )),
    }
}

fn accepts(req: &RequestHead, media: &str) -> bool {
    let Some(a) = req.header_str("accept") else {
        return media == "application/json";
    };
    a.split(',').any(|part| {
        let m = part
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        m == media || m == "*/*" && media == "application/json"
    })
}

fn reply_with(answer: Answer, body: Bytes) -> Reply {
    match answer {
        Answer::Json | Answer::Either => Reply::json(200, body),
        Answer::Sse => {
            let mut out = BytesMut::with_capacity(body.len() + 32);
            crate::transport::sse::write_event(&mut out, None, Some("message"), &body);
            Reply {
                status: 200,
                headers: vec![("Cache-Control", Bytes::from_static(b"no-cache"))],
                body: Body::Full("text/event-stream", out.freeze()),
            }
        }
    }
}

fn frame_error_body(e: &FrameError) -> Bytes {
    match e {
        FrameError::Parse(_) => error_body(None, Code::ParseError, "Parse error"),
        FrameError::Invalid { reason, id } => error_body(
            id.as_deref(),
            Code::InvalidRequest,
            &format!("Invalid Request: {reason}"),
        ),
    }
}

fn frame_error_reply(e: &FrameError) -> Reply {
    tracing::debug!(error = %e, "bad JSON-RPC body");
    Reply::json(400, frame_error_body(e))
}

/// The pipeline as the HTTP server sees it: one per worker, cloned per connection.
#[derive(Clone)]
pub struct Pipeline(pub Rc<Front>);

impl crate::transport::reply::Handler for Pipeline {
    type Events = Sse;
    type Array = Box<batch::Batch>;

    fn handle(
        &self,
        req: &RequestHead,
        body: Bytes,
        peer: IpAddr,
        cert: Option<&str>,
    ) -> impl std::future::Future<Output = Reply> {
        self.0.handle(req, body, peer, cert)
    }

    fn conf(&self) -> crate::transport::reply::ServerConf {
        let g = &self.0.shared.config.gateway;
        crate::transport::reply::ServerConf {
            max_header_bytes: g.max_header_bytes,
            max_body_bytes: g.max_body_bytes,
            header_timeout: g.header_timeout,
            idle_timeout: g.idle_timeout,
            write_timeout: g.write_timeout,
        }
    }

    fn limits(&self) -> &crate::limits::Limits {
        &self.0.shared.limits
    }

    fn stopping(&self) -> bool {
        self.0.shared.stopping()
    }

    fn busy(&self) -> crate::transport::reply::Busy {
        self.0.busy.enter()
    }
}
