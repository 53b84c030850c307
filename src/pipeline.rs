//! The MCP Streamable HTTP endpoint (`/mcp`, `/servers/<name>/mcp`): one HTTP request
//! through named phases over one per-request context, each phase in its own file.
//!
//! ```text
//!  transport::server ──> Pipeline::handle (transport::reply::Handler)
//!    admit      Host, client address, OAuth metadata paths, endpoint, Origin,
//!               version header, credentials, virtual server admission, request rate
//!    ├─ GET / DELETE ───────────> streams    a session's GET stream, resume, end
//!    └─ POST  admit::media, batch limit, parse (jsonrpc::Frame, once)
//!         ├─ stateless (2026-07-28) ──┐   _meta, headers, server/discover, listen
//!         ├─ initialize ──> answer    │
//!         ├─ batch ──> each element ──┤
//!         └─ request (a session's) ───┴──> route
//!              route      method -> answered here (answer) or routed by name / URI
//!              authorize  roles, rate limits, quotas, guard (catalog, arguments),
//!                         calls in flight                         -> Result<_, Reject>
//!              rewrite    id, name, progress token, masked arguments, era _meta, headers
//!              call       upstream session, breaker, timeout, retry, cancel
//!              relay      answers and messages back, ids translated, result screened
//!              record     metrics, trace, audit: once per routed call
//!    reject::rescue       every refusal of a JSON-RPC request becomes its error here
//! ```
//!
//! `context` holds what the phases share: the worker's [`Ctx`] and a request's
//! `Call`. Phase files import `context` and lower modules, never this one;
//! this file only strings the phases together. Every failure becomes an HTTP status and a
//! JSON-RPC error with a stable code (see `jsonrpc::codes` and README.md); nothing here
//! panics or passes upstream error text through.

pub mod admit;
pub mod answer;
pub mod authorize;
pub mod batch;
pub mod call;
pub mod context;
pub mod listen;
pub mod record;
pub mod reject;
pub mod relay;
pub mod rewrite;
pub mod route;
pub mod stateless;
pub mod streams;

use std::{net::IpAddr, rc::Rc, sync::Arc};

use bytes::Bytes;

pub use self::context::Ctx;
use self::{
    admit::Admitted,
    context::{Answer, Call},
    relay::Outcome,
    streams::Sse,
};
use crate::{
    jsonrpc::{Code, Frame, Kind, Message},
    mcp::version,
    observe::trace::TraceParent,
    registry::Snapshot,
    session::Session,
    state::Shared,
    transport::{
        http::RequestHead,
        reply::{Body, Busy, Handler, ServerConf},
    },
};

/// What the pipeline answers one HTTP request with.
pub type Reply = crate::transport::reply::Reply<Sse, Box<batch::Batch>>;

/// One worker's pipeline, as the HTTP server sees it: cloned per connection.
#[derive(Clone)]
pub struct Pipeline(Rc<Ctx>);

impl Pipeline {
    /// The pipeline of worker `index`.
    pub fn new(shared: Arc<Shared>, index: u16) -> Self {
        Pipeline(Ctx::new(shared, index))
    }

    /// Its worker context.
    pub fn ctx(&self) -> &Rc<Ctx> {
        &self.0
    }

    /// Serves one HTTP request whose body has been read.
    async fn serve(
        &self,
        req: &RequestHead,
        body: Bytes,
        peer: IpAddr,
        cert: Option<&str>,
    ) -> Reply {
        let ctx = &self.0;
        let a = match admit::admit(ctx, req, peer, cert).await {
            Ok(a) => a,
            Err(r) => return r.widen(),
        };
        match (req.method_bytes(), a.stateless) {
            (b"POST", true) => stateless::post(ctx, req, body, &a).await.widen(),
            (b"GET" | b"DELETE", true) => stateless::method_not_allowed().widen(),
            (b"POST", false) => post(ctx, req, body, &a).await,
            (b"GET", false) => streams::get(ctx, req, &a).widen(),
            (b"DELETE", false) => streams::delete(ctx, req, &a).widen(),
            _ => {
                let mut r = Reply::error(405, Code::BadHttpRequest, "Method not allowed");
                r.headers
                    .push(("Allow", Bytes::from_static(b"GET, POST, DELETE")));
                r
            }
        }
    }
}

/// A POST of the legacy eras: one message or a batch, on the session it names.
async fn post(ctx: &Rc<Ctx>, req: &RequestHead, body: Bytes, a: &Admitted) -> Reply {
    let answer = match admit::media(req) {
        Ok(m) => m,
        Err(r) => return r.widen(),
    };
    let trace = admit::trace_parent(ctx, req);
    let g = &ctx.shared.config.gateway;
    if batch::over_limit(&body, g.max_batch_items) {
        return batch::too_many(&ctx.shared.limits, g.max_batch_items).widen();
    }
    let parsed = ctx
        .caller
        .parser
        .borrow_mut()
        .parse_within(body, g.max_json_depth);
    let (server, principal) = (a.server.as_deref(), &a.principal);
    // A frame is matched where it is, by reference: moving one is a 320-byte copy.
    match parsed {
        Err(e) => {
            tracing::debug!(error = %e, "bad JSON-RPC body");
            Reply::json(400, reject::malformed(&e))
        }
        Ok(Message::Single(ref f))
            if f.kind() == Kind::Request && f.method().as_deref() == Some("initialize") =>
        {
            answer::initialize(ctx, f, &a.snap, answer, (server, principal)).widen()
        }
        Ok(Message::Single(ref f)) => {
            let sess = match admit::session(ctx, req, server, principal) {
                Ok((_, s)) => s,
                // A 2026-07-28 request that lacks its version header lands here, with no
                // session: say what is missing (-32020) rather than "no session".
                Err(r) => {
                    return stateless::version_header_missing(f, req)
                        .unwrap_or(r)
                        .widen()
                }
            };
            single(ctx, f, &a.snap, &sess, (answer, trace)).await
        }
        Ok(Message::Batch(items)) => {
            let sess = match admit::session(ctx, req, server, principal) {
                Ok((_, s)) => s,
                Err(r) => return r.widen(),
            };
            if !version::batches_allowed(sess.version) {
                return Reply::error(
                    400,
                    Code::InvalidRequest,
                    "Bad Request: batches are not supported in this protocol version",
                );
            }
            let run = batch::Batch::new(
                ctx.clone(),
                a.snap.clone(),
                sess,
                principal.clone(),
                trace,
                items,
            );
            batch_reply(run).await
        }
    }
}

/// One message of a session: a request is routed (and answered as JSON or a stream); a
/// notification or an answer to an upstream's request is delivered (202).
async fn single(
    ctx: &Rc<Ctx>,
    f: &Frame,
    snap: &Snapshot,
    sess: &Arc<Session>,
    (answer, trace): (Answer, Option<TraceParent>),
) -> Reply {
    match f.kind() {
        Kind::Request => {
            let id = f.id_raw().unwrap_or_else(|| Bytes::from_static(b"null"));
            let call = Call {
                f,
                id: &id,
                snap,
                sess,
                answer,
                trace,
            };
            match route::request(ctx, &call).await {
                Outcome::Done(b) => answer::reply_with(answer, b).widen(),
                Outcome::Pieces(p) => answer::reply_pieces(answer, p).widen(),
                Outcome::Streaming(relay, first) => {
                    Reply::events(Sse::call(&ctx.shared, relay, first))
                }
            }
        }
        Kind::Notification => {
            answer::notification(f, sess).await;
            Reply::empty(202)
        }
        Kind::Response => {
            answer::client_answer(ctx, f, sess).await;
            Reply::empty(202)
        }
    }
}

/// A batch runs up to its first answer: one of notifications and answers only is 202 with
/// no body. The rest runs while the array is written out.
async fn batch_reply(mut run: batch::Batch) -> Reply {
    // Boxed: the element's call is a large future, kept out of this one (which every
    // request's reply is).
    match Box::pin(run.next()).await {
        None => Reply::empty(202),
        Some(first) => Reply {
            status: 200,
            headers: vec![],
            body: Body::Array(Box::new(run), first),
        },
    }
}

impl Handler for Pipeline {
    type Events = Sse;
    type Array = Box<batch::Batch>;

    fn handle(
        &self,
        req: &RequestHead,
        body: Bytes,
        peer: IpAddr,
        cert: Option<&str>,
    ) -> impl std::future::Future<Output = Reply> {
        self.serve(req, body, peer, cert)
    }

    fn conf(&self) -> ServerConf {
        let g = &self.0.shared.config.gateway;
        ServerConf {
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

    fn busy(&self) -> Busy {
        self.0.busy.enter()
    }
}
