//! The MCP Streamable HTTP endpoint (`/mcp`): what the gateway does with one HTTP request.
//!
//! Checks run in a fixed order: path, `Origin`, method, protocol-version header, media
//! types, body, session. Then a JSON-RPC request is answered from the snapshot (initialize,
//! ping, the list methods) or routed to the upstream that owns the tool, prompt or resource,
//! with only its id and name spliced. Every failure becomes an HTTP status and a JSON-RPC
//! error with a stable code (see `jsonrpc::codes` and README.md); nothing here panics or
//! passes upstream error text through.
//!
//! A `Front` belongs to one worker; it holds that worker's upstream caller and parser.

use std::{borrow::Cow, rc::Rc, sync::Arc};

use bytes::{BufMut, Bytes, BytesMut};

use crate::{
    control::Shared,
    jsonrpc::{codes::result_body, error_body, Code, Frame, FrameError, Kind, Message},
    registry::{self, names, Snapshot, Target},
    session::{self, Session, SessionId},
    transport::http::RequestHead,
    upstream::{Caller, UpstreamRef},
};

/// The endpoint path.
pub const MCP_PATH: &str = "/mcp";

/// What to send back for one HTTP request.
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(&'static str, Bytes)>,
    /// The body.
    pub body: ReplyBody,
}

/// A reply body.
pub enum ReplyBody {
    /// No body.
    Empty,
    /// A whole body of this content type.
    Full(&'static str, Bytes),
    /// A server-to-client SSE stream (`GET /mcp`), open until this receiver disconnects
    /// (the session ended).
    Stream(flume::Receiver<()>),
}

impl Reply {
    fn json(status: u16, body: Bytes) -> Self {
        Reply {
            status,
            headers: vec![],
            body: ReplyBody::Full("application/json", body),
        }
    }

    /// An HTTP-level error with a JSON-RPC error body (`id` null).
    pub fn error(status: u16, code: Code, message: &str) -> Self {
        Reply::json(status, error_body(None, code, message))
    }

    fn empty(status: u16) -> Self {
        Reply {
            status,
            headers: vec![],
            body: ReplyBody::Empty,
        }
    }
}

/// How the client wants the answer to a POST.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Answer {
    Json,
    Sse,
}

/// One worker's MCP endpoint.
pub struct Front {
    shared: Arc<Shared>,
    caller: Caller,
}

impl Front {
    /// The endpoint for worker `index`.
    pub fn new(shared: Arc<Shared>, index: u16) -> Rc<Self> {
        Rc::new(Self {
            shared,
            caller: Caller::new(index),
        })
    }

    /// Shared state.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Handles one HTTP request whose body has been read.
    pub async fn handle(&self, req: &RequestHead, body: Bytes) -> Reply {
        if req.path != MCP_PATH {
            return Reply::error(404, Code::BadHttpRequest, "Not found");
        }
        if !self.origin_allowed(req.header("origin")) {
            tracing::info!(origin = ?req.header_str("origin"), "request from a foreign Origin refused");
            return Reply::error(403, Code::BadHttpRequest, "Forbidden: Origin not allowed");
        }
        if let Some(v) = req.header("mcp-protocol-version") {
            if !session::SUPPORTED_VERSIONS
                .iter()
                .any(|s| s.as_bytes() == v)
            {
                return Reply::error(
                    400,
                    Code::InvalidRequest,
                    "Bad Request: Unsupported protocol version",
                );
            }
        }
        match req.method.as_str() {
            "POST" => self.post(req, body).await,
            "GET" => self.get(req),
            "DELETE" => self.delete(req),
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
    fn session(&self, req: &RequestHead) -> Result<(SessionId, Arc<Session>), Reply> {
        let Some(raw) = req.header("mcp-session-id") else {
            return Err(Reply::error(
                400,
                Code::SessionRequired,
                "Bad Request: Mcp-Session-Id header is required",
            ));
        };
        let found = SessionId::parse(raw).and_then(|id| Some((self.shared.sessions.get(&id)?, id)));
        match found {
            Some((s, id)) => {
                s.touch(self.shared.now_ms());
                Ok((id, s))
            }
            None => Err(Reply::error(
                404,
                Code::SessionNotFound,
                "Session not found",
            )),
        }
    }

    fn get(&self, req: &RequestHead) -> Reply {
        if !self.shared.config.gateway.get_stream {
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
        match self.session(req) {
            Ok((_, session)) => Reply {
                status: 200,
                headers: vec![],
                body: ReplyBody::Stream(session.ended()),
            },
            Err(r) => r,
        }
    }

    fn delete(&self, req: &RequestHead) -> Reply {
        match self.session(req) {
            Ok((id, _)) => {
                self.shared.sessions.remove(&id);
                tracing::debug!(session = ?id, "session ended by client");
                Reply::empty(200)
            }
            Err(r) => r,
        }
    }

    async fn post(&self, req: &RequestHead, body: Bytes) -> Reply {
        let ct = req.header_str("content-type").unwrap_or("");
        if !ct
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("application/json")
        {
            return Reply::error(
                415,
                Code::BadHttpRequest,
                "Unsupported Media Type: Content-Type must be application/json",
            );
        }
        let answer = if accepts(req, "application/json") {
            Answer::Json
        } else if accepts(req, "text/event-stream") {
            Answer::Sse
        } else {
            return Reply::error(
                406,
                Code::BadHttpRequest,
                "Not Acceptable: Accept must include application/json or text/event-stream",
            );
        };
        let message = match self.caller.parser.borrow_mut().parse(body) {
            Ok(m) => m,
            Err(e) => return frame_error_reply(&e),
        };
        let snap = self.shared.snapshot.load_full();
        match message {
            Message::Single(f)
                if f.kind() == Kind::Request && f.method().as_deref() == Some("initialize") =>
            {
                self.initialize(&f, &snap, answer)
            }
            Message::Single(f) => {
                let (sid, sess) = match self.session(req) {
                    Ok(s) => s,
                    Err(r) => return r,
                };
                let _ = sid;
                match f.kind() {
                    Kind::Request => {
                        let out = self.request(&f, &snap, &sess).await;
                        reply_with(answer, out)
                    }
                    Kind::Notification | Kind::Response => {
                        self.notification(&f, &snap);
                        Reply::empty(202)
                    }
                }
            }
            Message::Batch(items) => {
                let (_, sess) = match self.session(req) {
                    Ok(s) => s,
                    Err(r) => return r,
                };
                if !session::batches_allowed(sess.version) {
                    return Reply::error(
                        400,
                        Code::InvalidRequest,
                        "Bad Request: batches are not supported in this protocol version",
                    );
                }
                let mut outs = Vec::new();
                for item in items {
                    match item {
                        Ok(f) if f.kind() == Kind::Request => {
                            if f.method().as_deref() == Some("initialize") {
                                outs.push(error_body(
                                    f.id_raw().as_deref(),
                                    Code::InvalidRequest,
                                    "initialize cannot be batched",
                                ));
                            } else {
                                outs.push(self.request(&f, &snap, &sess).await);
                            }
                        }
                        Ok(f) => self.notification(&f, &snap),
                        Err(e) => outs.push(frame_error_body(&e)),
                    }
                }
                if outs.is_empty() {
                    return Reply::empty(202);
                }
                let mut b = BytesMut::new();
                b.put_u8(b'[');
                for (i, o) in outs.iter().enumerate() {
                    if i > 0 {
                        b.put_u8(b',');
                    }
                    b.put_slice(o);
                }
                b.put_u8(b']');
                reply_with(answer, b.freeze())
            }
        }
    }

    fn initialize(&self, f: &Frame, snap: &Snapshot, answer: Answer) -> Reply {
        let id = f.id_raw().unwrap_or_else(|| Bytes::from_static(b"null"));
        let requested = f
            .param("protocolVersion")
            .and_then(|s| f.str_at(s).map(Cow::into_owned));
        let version = session::negotiate(requested.as_deref());
        let sid = match self.shared.sessions.create(version, self.shared.now_ms()) {
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
            r#"{{"protocolVersion":"{version}","capabilities":{caps},"serverInfo":{{"name":"mcpgw","title":"mcpgw MCP gateway","version":"{ver}"}},"instructions":"One endpoint for many MCP servers: tool and prompt names are <server>{sep}<name>."}}"#,
            caps = String::from_utf8_lossy(&snap.capabilities),
            ver = env!("CARGO_PKG_VERSION"),
            sep = snap.separator,
        );
        tracing::debug!(session = ?sid, version, "session created");
        let mut r = reply_with(answer, result_body(&id, result.as_bytes()));
        r.headers.push((
            "Mcp-Session-Id",
            Bytes::copy_from_slice(sid.as_str().as_bytes()),
        ));
        r
    }

    fn notification(&self, f: &Frame, _snap: &Snapshot) {
        // TODO(core): forward cancellations and client answers to upstream requests
        // (session-semantics issue); until then they end here.
        tracing::debug!(method = ?f.method(), kind = ?f.kind(), "client notification accepted");
    }

    /// Answers one request; always returns a complete JSON-RPC response.
    async fn request(&self, f: &Frame, snap: &Snapshot, _sess: &Session) -> Bytes {
        let id = f.id_raw().unwrap_or_else(|| Bytes::from_static(b"null"));
        let Some(method) = f.method() else {
            return error_body(Some(&id), Code::InvalidRequest, "Invalid Request");
        };
        match &*method {
            "ping" => result_body(&id, b"{}"),
            "tools/list" => list(f, &id, &snap.tools_pages),
            "prompts/list" => list(f, &id, &snap.prompts_pages),
            "resources/list" => list(f, &id, &snap.resources_pages),
            "resources/templates/list" => list(f, &id, &snap.templates_pages),
            "tools/call" => self.by_name(f, &id, snap, &snap.tools, "tool").await,
            "prompts/get" => self.by_name(f, &id, snap, &snap.prompts, "prompt").await,
            "resources/read" => self.by_uri(f, &id, snap).await,
            "completion/complete" => self.complete(f, &id, snap).await,
            _ => error_body(Some(&id), Code::MethodNotFound, "Method not found"),
        }
    }

    async fn by_name(
        &self,
        f: &Frame,
        id: &[u8],
        snap: &Snapshot,
        map: &std::collections::HashMap<String, Target>,
        what: &str,
    ) -> Bytes {
        let Some(span) = f.param("name") else {
            return error_body(
                Some(id),
                Code::InvalidParams,
                "Invalid params: name is required",
            );
        };
        let target = f.str_at(span).and_then(|n| map.get(&*n));
        let Some(t) = target else {
            let msg = match what {
                "tool" => "Unknown tool",
                _ => "Unknown prompt",
            };
            return error_body(Some(id), Code::InvalidParams, msg);
        };
        self.forward(f, id, snap, t.upstream, span, &t.name_json)
            .await
    }

    async fn by_uri(&self, f: &Frame, id: &[u8], snap: &Snapshot) -> Bytes {
        let Some(span) = f.param("uri") else {
            return error_body(
                Some(id),
                Code::InvalidParams,
                "Invalid params: uri is required",
            );
        };
        match f.str_at(span).and_then(|u| route_uri(snap, &u)) {
            Some((up, orig)) => self.forward(f, id, snap, up, span, &orig).await,
            None => error_body(Some(id), Code::ResourceNotFound, "Resource not found"),
        }
    }

    async fn complete(&self, f: &Frame, id: &[u8], snap: &Snapshot) -> Bytes {
        let Some(r) = f.param("ref") else {
            return error_body(
                Some(id),
                Code::InvalidParams,
                "Invalid params: ref is required",
            );
        };
        let kind = f
            .member(r, "type")
            .and_then(|s| f.str_at(s).map(Cow::into_owned));
        match kind.as_deref() {
            Some("ref/prompt") => {
                let Some(span) = f.member(r, "name") else {
                    return error_body(
                        Some(id),
                        Code::InvalidParams,
                        "Invalid params: ref.name is required",
                    );
                };
                match f.str_at(span).and_then(|n| snap.prompts.get(&*n).cloned()) {
                    Some(t) => {
                        self.forward(f, id, snap, t.upstream, span, &t.name_json)
                            .await
                    }
                    None => error_body(Some(id), Code::InvalidParams, "Unknown prompt"),
                }
            }
            Some("ref/resource") => {
                let Some(span) = f.member(r, "uri") else {
                    return error_body(
                        Some(id),
                        Code::InvalidParams,
                        "Invalid params: ref.uri is required",
                    );
                };
                match f.str_at(span).and_then(|u| route_uri(snap, &u)) {
                    Some((up, orig)) => self.forward(f, id, snap, up, span, &orig).await,
                    None => error_body(Some(id), Code::ResourceNotFound, "Resource not found"),
                }
            }
            _ => error_body(
                Some(id),
                Code::InvalidParams,
                "Invalid params: unknown ref type",
            ),
        }
    }

    /// Sends `f` to upstream `up` with a fresh id and `name_span` replaced by `name_json`,
    /// and returns its answer with the client's id put back.
    async fn forward(
        &self,
        f: &Frame,
        id: &[u8],
        snap: &Snapshot,
        up: UpstreamRef,
        name_span: crate::jsonrpc::Span,
        name_json: &[u8],
    ) -> Bytes {
        let Some(upstream) = snap.upstream(up) else {
            return error_body(Some(id), Code::InternalError, "Internal error");
        };
        let (Some(id_span), gid) = (f.id_span(), self.caller.ids.next()) else {
            return error_body(Some(id), Code::InvalidRequest, "Invalid Request");
        };
        let gid_text = gid.to_string();
        let body = f.splice(&mut [(id_span, gid_text.as_bytes()), (name_span, name_json)]);
        match self.caller.request(upstream, gid, body).await {
            Ok(resp) => match resp.id_span() {
                Some(s) => resp.splice(&mut [(s, id)]),
                None => error_body(
                    Some(id),
                    Code::UpstreamProtocol,
                    "Upstream sent an invalid answer",
                ),
            },
            Err(e) => {
                tracing::warn!(upstream = %upstream.name, error = %e, "upstream call failed");
                let (code, msg) = e.to_jsonrpc();
                error_body(Some(id), code, msg)
            }
        }
    }
}

/// (upstream, original URI as a JSON string token) for an exposed or plain URI.
fn route_uri(snap: &Snapshot, uri: &str) -> Option<(UpstreamRef, Vec<u8>)> {
    let (up, orig) = match names::split_uri(uri) {
        Some((name, orig)) => (*snap.by_name.get(name)?, orig),
        None => (*snap.plain_uris.get(uri)?, uri),
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
        Answer::Json => Reply::json(200, body),
        Answer::Sse => {
            let mut out = BytesMut::with_capacity(body.len() + 32);
            crate::transport::sse::write_event(&mut out, None, Some("message"), &body);
            Reply {
                status: 200,
                headers: vec![("Cache-Control", Bytes::from_static(b"no-cache"))],
                body: ReplyBody::Full("text/event-stream", out.freeze()),
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
