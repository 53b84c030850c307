//! Phase: stateless (MCP 2026-07-28). Requests without a session.
//!
//! A request whose `MCP-Protocol-Version` header names no legacy revision is served
//! statelessly, as the spec's dual-era servers do (and the official SDKs: the header alone
//! decides). Such a request carries its version and capabilities in `params._meta`; the
//! gateway checks them, and its HTTP headers against its body, in the SDKs' order:
//!
//! 1. `params._meta` holds `io.modelcontextprotocol/protocolVersion` (a string) and
//!    `io.modelcontextprotocol/clientCapabilities` (an object), else -32602;
//! 2. the `MCP-Protocol-Version`, `Mcp-Method` and (for `tools/call`, `prompts/get`,
//!    `resources/read`) `Mcp-Name` headers are present once each and say what the body says
//!    (`Mcp-Name` may be `=?base64?...?=`), else -32020;
//! 3. the version is one the gateway speaks (2026-07-28), else -32022 with `data.supported`.
//!
//! All three are HTTP 400; an unknown or removed method (`initialize`, `ping`,
//! `logging/setLevel`, `resources/subscribe`...) is HTTP 404 with -32601. `server/discover`
//! and the lists are answered from the snapshot; calls go to the upstreams on the gateway's
//! own upstream sessions (a stateless request has none of its own), with
//! `"resultType":"complete"` added to legacy upstreams' results. A legacy upstream's request
//! to the client mid-call (sampling, elicitation, roots) parks the call and answers
//! input-required (`relay::ParkedCall`); the client's retry continues it.
//! `subscriptions/listen` is served in `listen`. Log messages of a call reach the client at or
//! above its request's `_meta` log level (`io.modelcontextprotocol/logLevel`), none without.
//!
//! Never keeps a session for a request: what it needs travels in each request.

use std::{rc::Rc, sync::Arc};

use bytes::Bytes;

use super::{
    admit::{self, media, Admitted},
    answer::{reply_pieces, reply_with, SERVER_INFO},
    context::{Call, Ctx},
    reject::{self, rescue, NotFound, Reject},
    relay::Outcome,
    route,
    streams::{Sse, Streamed},
};
use crate::{
    auth::policy::Principal,
    jsonrpc::{Code, Frame, Kind, Message},
    mcp::{
        era::{
            argument_text, arguments_of, header_says, named_param, ParamHeaders, LIST_MEMBERS,
            META_CAPABILITIES, META_CLIENT_INFO, META_LOG_LEVEL, META_VERSION,
        },
        version::{log_rank, STATELESS_VERSION, SUPPORTED_VERSIONS},
        Hello, CLIENT_INFO,
    },
    registry::Snapshot,
    transport::{
        http::{Repeated, RequestHead},
        reply::{Reply, Whole},
    },
};

/// The answer to GET or DELETE in the stateless era: there is no session stream to open or
/// end.
pub fn method_not_allowed() -> Whole {
    let mut r = Reply::error(
        405,
        Code::BadHttpRequest,
        "Method not allowed: MCP 2026-07-28 requests are POSTs",
    );
    r.headers.push(("Allow", Bytes::from_static(b"POST")));
    r
}

/// The answer to a request without `MCP-Protocol-Version` and without a session whose
/// `params._meta` says 2026-07-28 (or later): that header is required in this era (-32020);
/// `None` for any other request.
pub fn version_header_missing(f: &Frame, req: &RequestHead) -> Option<Whole> {
    if req.header("mcp-protocol-version").is_some() || f.kind() != Kind::Request {
        return None;
    }
    f.param("_meta").and_then(|m| f.member(m, META_VERSION))?;
    let id = f.id_raw();
    Some(refuse(
        id.as_deref(),
        Code::HeaderMismatch,
        "Header mismatch: MCP-Protocol-Version is required with params._meta's protocolVersion",
    ))
}

/// Checks a stateless `tools/call`'s `Mcp-Param-*` headers against its arguments: each
/// declared one present exactly when its argument is, and saying the same (base64 form
/// decoded strictly), else -32020.
fn check_param_headers(
    req: &RequestHead,
    f: &Frame,
    id: &[u8],
    declared: &ParamHeaders,
) -> Result<(), Whole> {
    let arguments = arguments_of(f);
    for (path, token) in declared {
        let name = format!("mcp-param-{}", token.to_ascii_lowercase());
        let value = argument_text(&arguments, path);
        let why = match (req.single(&name), value) {
            (Err(Repeated), _) => "appears twice",
            (Ok(Some(h)), Some(v)) if header_says(h, &v) => continue,
            (Ok(Some(_)), Some(_)) => "differs from the argument",
            (Ok(Some(_)), None) => "is given but the argument is absent",
            (Ok(None), Some(_)) => "is required: the argument is given",
            (Ok(None), None) => continue,
        };
        return Err(refuse(
            Some(id),
            Code::HeaderMismatch,
            &format!("Header mismatch: Mcp-Param-{token} {why}"),
        ));
    }
    Ok(())
}

/// The HTTP status of an error answer on the stateless path (as the SDKs map them).
fn status_of(code: i64) -> u16 {
    match code {
        -32700 | -32600 | -32602 | -32020 | -32021 | -32022 => 400,
        -32601 => 404,
        _ => 200,
    }
}

/// The error code of an answer the gateway wrote with `error_body` for request `id`.
fn error_code(body: &[u8], id: &[u8]) -> Option<i64> {
    let rest = body.strip_prefix(b"{\"jsonrpc\":\"2.0\",\"id\":")?;
    let rest = rest.strip_prefix(id)?;
    let rest = rest.strip_prefix(b",\"error\":{\"code\":")?;
    let end = rest.iter().position(|b| *b == b',')?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

/// A refused stateless request: its error, at the status that code takes.
fn refuse(id: Option<&[u8]>, code: Code, message: &str) -> Whole {
    let refused = Reject::Invalid(code, message.to_string().into(), None);
    Reply::json(status_of(code.code().into()), rescue(id, refused))
}

/// The gateway's capabilities for `server/discover`: the snapshot's, without `logging`
/// (its `logging/setLevel` is gone in this revision; log messages follow each request's
/// `_meta` level instead). Tools, prompts and resources say `listChanged`: the gateway tells listen
/// streams itself when its catalog changes; `resources.subscribe` stays as the upstreams
/// say (a listen stream's `resourceSubscriptions` go to them).
fn discover_capabilities(snap: &Snapshot) -> String {
    let Ok(serde_json::Value::Object(mut caps)) =
        serde_json::from_slice::<serde_json::Value>(&snap.capabilities)
    else {
        return "{}".into();
    };
    caps.remove("logging");
    for (k, v) in caps.iter_mut() {
        if let serde_json::Value::Object(o) = v {
            if matches!(k.as_str(), "tools" | "prompts" | "resources") {
                o.insert("listChanged".into(), serde_json::Value::Bool(true));
            }
        }
    }
    serde_json::Value::Object(caps).to_string()
}

/// Which list changes (tools, prompts, resources) a listen stream can get: those whose
/// capability the gateway advertises.
fn list_changes(snap: &Snapshot) -> [bool; 3] {
    let caps: serde_json::Value = serde_json::from_slice(&snap.capabilities).unwrap_or_default();
    ["tools", "prompts", "resources"].map(|k| caps.get(k).is_some_and(|v| v.is_object()))
}

/// Serves one POST of the stateless era.
pub async fn post(ctx: &Rc<Ctx>, req: &RequestHead, body: Bytes, a: &Admitted) -> Streamed {
    let answer = match media(req) {
        Ok(m) => m,
        Err(r) => return r.widen(),
    };
    let g = &ctx.shared.config.gateway;
    if super::batch::over_limit(&body, g.max_batch_items) {
        return super::batch::too_many(&ctx.shared.limits, g.max_batch_items).widen();
    }
    let parsed = ctx
        .caller
        .parser
        .borrow_mut()
        .parse_within(body, g.max_json_depth);
    // By reference: moving a frame is a 320-byte copy.
    let f = match &parsed {
        Ok(Message::Single(f)) => f,
        Ok(Message::Batch(_)) => {
            return refuse(
                None,
                Code::InvalidRequest,
                "Invalid Request: batches are not part of MCP 2026-07-28",
            )
            .widen()
        }
        Err(e) => {
            tracing::debug!(error = %e, "bad JSON-RPC body");
            return Reply::json(400, reject::malformed(e));
        }
    };
    match f.kind() {
        // Notifications have nothing to do here (cancellation is closing the stream).
        Kind::Notification => return Reply::empty(202),
        Kind::Response => {
            return refuse(
                None,
                Code::InvalidRequest,
                "Invalid Request: MCP 2026-07-28 has no server-to-client requests to answer",
            )
            .widen()
        }
        Kind::Request => {}
    }
    let id = f.id_raw().unwrap_or_else(|| Bytes::from_static(b"null"));
    let Some(method) = f.method() else {
        return refuse(Some(&id), Code::InvalidRequest, "Invalid Request").widen();
    };
    let said = match check(req, f, &id, &method) {
        Ok(v) => v,
        Err(r) => return r.widen(),
    };
    if &*method == "tools/call" {
        if let Err(r) = check_declared_headers(req, f, &id, a) {
            return r.widen();
        }
    }
    // A retry carrying the answer to a question a legacy upstream asked mid-call: the
    // call is parked, waiting for it.
    let parked = named_param(&method)
        .and(f.param("requestState"))
        .and_then(|s| f.str_at(s))
        .filter(|t| t.starts_with(super::relay::PARK_PREFIX))
        .map(std::borrow::Cow::into_owned);
    if let Some(token) = parked {
        return continue_parked(ctx, f, &id, &token, (&a.principal, answer)).await;
    }
    let trace = admit::trace_parent(ctx, req);
    let asked = Asked {
        f,
        id: &id,
        method: &method,
        said,
        answer,
        trace,
    };
    serve(ctx, a, asked).await
}

/// A stateless request that passed its checks.
struct Asked<'a> {
    f: &'a Frame,
    id: &'a Bytes,
    method: &'a str,
    said: (&'static str, Hello, Option<u8>),
    answer: super::context::Answer,
    trace: Option<crate::observe::trace::TraceParent>,
}

/// Answers or routes a stateless request (a session is made for it alone).
async fn serve(ctx: &Rc<Ctx>, a: &Admitted, asked: Asked<'_>) -> Streamed {
    let (f, id, method) = (asked.f, asked.id, asked.method);
    let snap = &a.snap;
    let outcome = match method {
        "server/discover" => Outcome::Done(discover(snap, id)),
        "subscriptions/listen" => {
            let advertised = list_changes(snap);
            return super::listen::listen(ctx, f, id, a, (asked.answer, advertised)).await;
        }
        "tools/call"
        | "prompts/get"
        | "resources/read"
        | "completion/complete"
        | "tools/list"
        | "prompts/list"
        | "resources/list"
        | "resources/templates/list" => {
            let sess = ctx.spares.take(
                asked.said,
                a.server.clone(),
                a.principal.clone(),
                ctx.shared.now_ms(),
            );
            let call = Call {
                f,
                id,
                snap,
                sess: &sess,
                answer: asked.answer,
                trace: asked.trace,
            };
            let outcome = match route::request(ctx, &call).await {
                // A list's answer is the gateway's own (the snapshot's page).
                Outcome::Pieces(p) if method.ends_with("/list") => {
                    Outcome::Pieces(p.with_members(LIST_MEMBERS))
                }
                other => other,
            };
            ctx.spares.give_back(sess);
            outcome
        }
        _ => Outcome::Done(rescue(Some(id), Reject::NotFound(NotFound::Method))),
    };
    match outcome {
        Outcome::Done(b) => match error_code(&b, id).map(status_of) {
            Some(status) if status != 200 => Reply::json(status, b),
            _ => reply_with(asked.answer, b).widen(),
        },
        Outcome::Pieces(p) => reply_pieces(asked.answer, p).widen(),
        Outcome::Streaming(relay, first) => Reply::events(Sse::call(&ctx.shared, relay, first)),
    }
}

/// The `Mcp-Param-*` headers the called tool declares agree with its arguments.
fn check_declared_headers(
    req: &RequestHead,
    f: &Frame,
    id: &[u8],
    a: &Admitted,
) -> Result<(), Whole> {
    let Some(name) = f.param("name").and_then(|s| f.str_at(s)) else {
        return Ok(());
    };
    let declared = a
        .snap
        .view(a.server.as_deref())
        .and_then(|v| v.tools.get(&*name))
        .map(|t| &t.param_headers);
    match declared {
        Some(d) if !d.is_empty() => check_param_headers(req, f, id, d),
        _ => Ok(()),
    }
}

/// Hands a retry's `inputResponses` to the parked call named by `token` and answers
/// with what the call gives back (its result, another input-required result, or an
/// error).
async fn continue_parked(
    ctx: &Ctx,
    f: &Frame,
    id: &Bytes,
    token: &str,
    (principal, answer): (&Arc<Principal>, super::context::Answer),
) -> Streamed {
    let unknown = || {
        refuse(
            Some(id),
            Code::InvalidParams,
            "Invalid params: requestState is unknown or has expired",
        )
        .widen()
    };
    let tx = match ctx.shared.parked.get(token) {
        Some(p) if *p.principal == *principal.credential => p.tx.clone(),
        _ => return unknown(),
    };
    let responses = f
        .param("inputResponses")
        .and_then(|s| f.raw_at(s))
        .map_or(Bytes::from_static(b"{}"), Bytes::copy_from_slice);
    let (reply, answered) = flume::bounded(1);
    let input = crate::state::ParkedInput {
        responses,
        client_id: id.clone(),
        reply,
    };
    if tx.send_async(input).await.is_err() {
        return unknown();
    }
    let wait = ctx.shared.config.gateway.call_timeout;
    match monoio::time::timeout(wait, answered.recv_async()).await {
        Ok(Ok(b)) => match error_code(&b, id).map(status_of) {
            Some(status) if status != 200 => Reply::json(status, b),
            _ => reply_with(answer, b).widen(),
        },
        _ => {
            let e = Reject::Upstream(Code::UpstreamTimeout, "Upstream timed out");
            Reply::json(200, rescue(Some(id), e))
        }
    }
}

/// Checks a stateless request's `_meta` and routing headers; its version (one the gateway
/// speaks), what it says about the client, and its log level (a rank; `None` without one).
fn check(
    req: &RequestHead,
    f: &Frame,
    id: &[u8],
    method: &str,
) -> Result<(&'static str, Hello, Option<u8>), Whole> {
    let meta = f
        .param("_meta")
        .filter(|s| f.raw_at(*s).is_some_and(|r| r.first() == Some(&b'{')));
    let [version, capabilities, client_info, log_level] = meta.map_or([None; 4], |m| {
        f.members(
            m,
            [
                META_VERSION,
                META_CAPABILITIES,
                META_CLIENT_INFO,
                META_LOG_LEVEL,
            ],
        )
    });
    let log_level = log_level
        .and_then(|s| f.str_at(s))
        .and_then(|l| log_rank(&l));
    let version = version.and_then(|s| match f.raw_at(s) {
        // The revision this gateway speaks, as clients write it: compared raw, not decoded.
        Some(r)
            if r.strip_prefix(b"\"").and_then(|r| r.strip_suffix(b"\""))
                == Some(STATELESS_VERSION.as_bytes()) =>
        {
            Some(std::borrow::Cow::Borrowed(STATELESS_VERSION))
        }
        _ => f.str_at(s),
    });
    let capabilities = capabilities
        .and_then(|s| f.raw_at(s))
        .filter(|r| r.first() == Some(&b'{'));
    let [version_header, method_header, name_header] = [
        req.single("mcp-protocol-version"),
        req.single("mcp-method"),
        req.single("mcp-name"),
    ];
    // The first one, as a lookup of that header reads it.
    let header = req.header("mcp-protocol-version").unwrap_or_default();
    if version.is_none() && header != STATELESS_VERSION.as_bytes() {
        // Neither era's request: a version header the gateway does not know on a body
        // without `_meta` (a legacy client at a revision the gateway lacks). Every revision
        // it speaks is listed.
        let mut supported = vec![STATELESS_VERSION];
        supported.extend(SUPPORTED_VERSIONS.iter().rev());
        return Err(unsupported(
            id,
            &supported,
            &String::from_utf8_lossy(header),
        ));
    }
    let (Some(version), Some(capabilities)) = (version, capabilities) else {
        return Err(refuse(
            Some(id),
            Code::InvalidParams,
            "Invalid params: params._meta must hold \"io.modelcontextprotocol/protocolVersion\" (a string) and \"io.modelcontextprotocol/clientCapabilities\" (an object)",
        ));
    };
    let mismatch = |what: &str| Err(refuse(Some(id), Code::HeaderMismatch, what));
    match version_header {
        Ok(Some(h)) if h == version.as_bytes() => {}
        Ok(_) => {
            return mismatch("Header mismatch: MCP-Protocol-Version differs from params._meta")
        }
        Err(Repeated) => return mismatch("Header mismatch: MCP-Protocol-Version appears twice"),
    }
    match method_header {
        Ok(Some(h)) if header_says(h, method) => {}
        Ok(Some(_)) => return mismatch("Header mismatch: Mcp-Method differs from the method"),
        Ok(None) => return mismatch("Header mismatch: Mcp-Method is required"),
        Err(Repeated) => return mismatch("Header mismatch: Mcp-Method appears twice"),
    }
    if let Some(param) = named_param(method) {
        let body = f.param(param).and_then(|s| f.str_at(s));
        match name_header {
            Ok(Some(h)) => {
                // Without the parameter the call is refused for that, below.
                if body.is_some_and(|b| !header_says(h, &b)) {
                    return mismatch("Header mismatch: Mcp-Name differs from the request's name");
                }
            }
            Ok(None) => return mismatch("Header mismatch: Mcp-Name is required"),
            Err(Repeated) => return mismatch("Header mismatch: Mcp-Name appears twice"),
        }
    }
    if version != STATELESS_VERSION {
        return Err(unsupported(id, &[STATELESS_VERSION], &version));
    }
    let client_info = client_info
        .and_then(|s| f.raw_at(s))
        .filter(|r| r.first() == Some(&b'{'))
        .map_or(Bytes::from_static(CLIENT_INFO.as_bytes()), |r| {
            f.bytes().slice_ref(r)
        });
    // Views of the request's own bytes, not copies.
    let hello = Hello {
        capabilities: f.bytes().slice_ref(capabilities),
        client_info,
    };
    Ok((STATELESS_VERSION, hello, log_level))
}

/// -32022 for `requested`, naming the `supported` revisions.
fn unsupported(id: &[u8], supported: &[&str], requested: &str) -> Whole {
    let data = serde_json::json!({ "supported": supported, "requested": requested }).to_string();
    let refused = Reject::Invalid(
        Code::UnsupportedProtocolVersion,
        "Unsupported protocol version".into(),
        Some(data),
    );
    Reply::json(400, rescue(Some(id), refused))
}

/// The `server/discover` answer.
fn discover(snap: &Snapshot, id: &[u8]) -> Bytes {
    let result = format!(
        r#"{{"resultType":"complete","supportedVersions":["{STATELESS_VERSION}"],"capabilities":{caps},"instructions":{ins},"ttlMs":0,"cacheScope":"private","_meta":{{"io.modelcontextprotocol/serverInfo":{SERVER_INFO}}}}}"#,
        caps = discover_capabilities(snap),
        ins = super::answer::instructions(snap),
    );
    crate::jsonrpc::result_body(id, result.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonrpc::error_body;

    #[test]
    fn statuses_follow_the_sdks() {
        assert_eq!(status_of(-32602), 400);
        assert_eq!(status_of(-32020), 400);
        assert_eq!(status_of(-32022), 400);
        assert_eq!(status_of(-32601), 404);
        assert_eq!(status_of(-32003), 200);
    }

    #[test]
    fn error_codes_are_read_from_gateway_errors_only() {
        let e = error_body(Some(b"\"a\""), Code::MethodNotFound, "Method not found");
        assert_eq!(error_code(&e, b"\"a\""), Some(-32601));
        assert_eq!(error_code(&e, b"\"b\""), None);
        let ok = crate::jsonrpc::result_body(b"1", br#"{"x":1}"#);
        assert_eq!(error_code(&ok, b"1"), None);
    }

    #[test]
    fn members_go_first_in_results() {
        let json = |p: crate::jsonrpc::Pieces| -> serde_json::Value {
            serde_json::from_slice(&p.join()).expect("json")
        };
        let page = Bytes::from_static(br#"{"tools":[]}"#);
        let p = crate::jsonrpc::Pieces::result(b"7", page.clone()).with_members(LIST_MEMBERS);
        // The page is sliced, not copied.
        assert_eq!(p.body.as_ptr(), page[1..].as_ptr());
        let v = json(p);
        assert_eq!(v["id"], 7);
        assert_eq!(v["result"]["resultType"], "complete");
        assert_eq!(v["result"]["cacheScope"], "private");
        assert!(v["result"]["tools"].is_array());
        let empty = crate::jsonrpc::Pieces::result(b"7", Bytes::from_static(b"{}"));
        let v = json(empty.with_members(LIST_MEMBERS));
        assert_eq!(v["result"]["ttlMs"], 0);
        let not_object = crate::jsonrpc::Pieces::result(b"7", Bytes::from_static(b"[]"));
        assert_eq!(
            not_object.with_members(LIST_MEMBERS).join(),
            &br#"{"jsonrpc":"2.0","id":7,"result":[]}"#[..]
        );
    }
}
