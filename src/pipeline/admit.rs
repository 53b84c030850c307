//! Phase: admit. Whether an HTTP request may be served at all, in a fixed order: `Host`
//! (DNS rebinding), the client's address (`ip_allow`/`ip_deny`, through trusted proxies),
//! the OAuth metadata paths, the endpoint (`/mcp` or a virtual server's), `Origin`, a
//! repeated version header, the credentials (and a virtual server's anonymous role), the
//! virtual server's admission, the request rate; then the POST's media types and the
//! session it names.
//!
//! Never parses the body, never routes, never talks to an upstream.

use std::{net::IpAddr, sync::Arc};

use bytes::Bytes;

use super::context::{Answer, Ctx};
use crate::{
    auth::{
        policy::{Method, Principal},
        Auth, Denied, RateStage,
    },
    jsonrpc::Code,
    limits::Limit,
    mcp::version,
    observe::trace::TraceParent,
    registry::Snapshot,
    session::{Session, SessionId},
    transport::{
        http::{host_allowed, request_host, RequestHead},
        reply::{Reply, Whole},
    },
};

/// The endpoint path.
pub const MCP_PATH: &str = "/mcp";

/// A request let in: on which endpoint, by whom, in which era, on which snapshot.
pub struct Admitted {
    /// The virtual server whose endpoint it came to (`None`: `/mcp`).
    pub server: Option<String>,
    /// Who sent it.
    pub principal: Arc<Principal>,
    /// Its version header names no legacy revision: the stateless era (2026-07-28).
    pub stateless: bool,
    /// The snapshot it is served on (one load per request).
    pub snap: Arc<Snapshot>,
}

/// Lets `req` (from TCP peer `peer`, with the verified client certificate's identity
/// `cert`) in, or the reply refusing it.
pub async fn admit(
    ctx: &Ctx,
    req: &RequestHead,
    peer: IpAddr,
    cert: Option<&str>,
) -> Result<Admitted, Whole> {
    // DNS rebinding: a page on a foreign name that resolves to this address sends that
    // name, with or without an Origin.
    let g = &ctx.shared.config.gateway;
    if !host_allowed(
        request_host(req),
        g.listen.ip().is_loopback(),
        &g.allowed_hosts,
    ) {
        tracing::info!(host = ?req.header_str("host"), "request for a foreign Host refused");
        return Err(Reply::error(
            403,
            Code::BadHttpRequest,
            "Forbidden: Host not allowed",
        ));
    }
    // The one load of the request: the catalog and the policy it is served under.
    let snap = ctx.shared.snapshot.load_full();
    let auth = &snap.auth;
    let client = client_address(req, peer, auth);
    if !auth.ip.allows(client) {
        return Err(forbidden_address(client));
    }
    if let Some(o) = auth
        .oauth
        .as_ref()
        .filter(|o| o.paths.iter().any(|p| p == req.path()))
    {
        return Err(match req.method() {
            "GET" | "HEAD" => Reply::json(200, o.document.clone()),
            _ => Reply::error(405, Code::BadHttpRequest, "Method not allowed"),
        });
    }
    let server = endpoint(req, &snap)?;
    if let Some(rules) = server.as_deref().and_then(|s| auth.server_ip.get(s)) {
        if !rules.allows(client) {
            return Err(forbidden_address(client));
        }
    }
    if !origin_allowed(ctx, req.header("origin")) {
        tracing::info!(origin = ?req.header_str("origin"), "request from a foreign Origin refused");
        return Err(Reply::error(
            403,
            Code::BadHttpRequest,
            "Forbidden: Origin not allowed",
        ));
    }
    // Read once to choose the era: a repeated one is refused, never "first wins". A
    // header naming no legacy revision selects the stateless era (2026-07-28), where
    // unknown versions are refused after the body's `_meta` is read.
    let Ok(version) = req.single("mcp-protocol-version") else {
        return Err(Reply::error(
            400,
            Code::HeaderMismatch,
            "Header mismatch: MCP-Protocol-Version is repeated",
        ));
    };
    let stateless = version.is_some_and(version::is_stateless);
    let principal = authenticate(ctx, req, cert, auth, server.as_deref(), client).await?;
    if req.method_bytes() == b"POST" {
        request_rate(ctx, auth, &principal)?;
    }
    Ok(Admitted {
        server,
        principal,
        stateless,
        snap,
    })
}

/// `/mcp`, or `/servers/<name>/mcp` for a virtual server that exists.
fn endpoint(req: &RequestHead, snap: &Snapshot) -> Result<Option<String>, Whole> {
    if req.path_bytes() == MCP_PATH.as_bytes() {
        return Ok(None);
    }
    match req
        .path()
        .strip_prefix("/servers/")
        .and_then(|r| r.strip_suffix(MCP_PATH))
    {
        Some(name) if snap.servers.contains_key(name) => Ok(Some(name.to_string())),
        _ => Err(Reply::error(404, Code::BadHttpRequest, "Not found")),
    }
}

/// Who sent the request. A virtual server may let anonymous clients in with its own
/// roles, and may admit only some roles.
async fn authenticate(
    ctx: &Ctx,
    req: &RequestHead,
    cert: Option<&str>,
    auth: &Auth,
    server: Option<&str>,
    client: IpAddr,
) -> Result<Arc<Principal>, Whole> {
    let server_auth = server.and_then(|s| auth.servers.get(s));
    let server_anonymous = server_auth.and_then(|s| s.anonymous.clone());
    let principal = match (
        auth.authenticate_with_cert(req, cert).await,
        server_anonymous,
    ) {
        (Ok(p), Some(a)) if p.method == Method::Anonymous => a,
        (Ok(p), _) => p,
        (Err(Denied::Missing), Some(a)) => a,
        (Err(denied), _) => {
            let why = match denied {
                Denied::Missing => "credentials required",
                Denied::Invalid(why) => why,
            };
            tracing::info!(client = %client, reason = why, "request not authenticated");
            if let Some(a) = &ctx.shared.audit {
                a.record(serde_json::json!({
                    "event": "denied", "reason": why, "client": client.to_string(),
                }));
            }
            let mut r = Reply::error(401, Code::Unauthorized, &format!("Unauthorized: {why}"));
            r.headers.push(("WWW-Authenticate", auth.challenge()));
            return Err(r);
        }
    };
    if server_auth.is_some_and(|sa| !sa.admits(&principal)) {
        tracing::info!(principal = %principal.name, server = ?server, "principal not admitted to this server");
        return Err(Reply::error(
            403,
            Code::Forbidden,
            "Forbidden: this principal may not use this server",
        ));
    }
    Ok(principal)
}

/// The `[[rate_limit]]`s of the request stage let this POST through now.
fn request_rate(ctx: &Ctx, auth: &Auth, principal: &Principal) -> Result<(), Whole> {
    if auth.rates.is_empty() {
        return Ok(());
    }
    let now = ctx.shared.now_ns();
    let Err(wait) = auth.rate_check(&ctx.shared.rates, RateStage::Request, principal, "", now)
    else {
        return Ok(());
    };
    ctx.shared.limits.hit(Limit::RateLimit);
    tracing::debug!(principal = %principal.name, "request rate limited");
    let mut r = Reply::error(
        429,
        Code::RateLimited,
        "Too Many Requests: rate limit exceeded",
    );
    r.headers.push(("Retry-After", retry_after(wait)));
    Err(r)
}

fn origin_allowed(ctx: &Ctx, origin: Option<&[u8]>) -> bool {
    let Some(o) = origin.and_then(|o| std::str::from_utf8(o).ok()) else {
        return origin.is_none();
    };
    let o = o.trim().to_ascii_lowercase();
    let allowed = &ctx.shared.config.gateway.allowed_origins;
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

/// The session named by the request (on this endpoint, opened by this principal), or the
/// reply to send instead.
pub fn session(
    ctx: &Ctx,
    req: &RequestHead,
    server: Option<&str>,
    principal: &Arc<Principal>,
) -> Result<(SessionId, Arc<Session>), Whole> {
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
        .and_then(|id| Some((ctx.shared.sessions.get(&id)?, id)))
        .filter(|(s, _)| s.server.as_deref() == server)
        .filter(|(s, _)| s.principal.load().credential == principal.credential);
    match found {
        Some((s, id)) => {
            s.touch(ctx.shared.now_ms());
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

/// The client's W3C trace context, read only when spans are exported.
pub fn trace_parent(ctx: &Ctx, req: &RequestHead) -> Option<TraceParent> {
    ctx.shared
        .tracing
        .as_ref()
        .and(req.header_str("traceparent"))
        .and_then(TraceParent::parse)
}

/// The client's address: the TCP peer, or, when the peer is a trusted proxy, the last
/// address in `X-Forwarded-For` that is not itself a trusted proxy.
fn client_address(req: &RequestHead, peer: IpAddr, auth: &Auth) -> IpAddr {
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

fn forbidden_address(client: IpAddr) -> Whole {
    tracing::info!(client = %client, "client address refused by ip_allow/ip_deny");
    Reply::error(
        403,
        Code::Forbidden,
        "Forbidden: client address not allowed",
    )
}

/// How a POST may be answered (its `Accept`), once its `Content-Type` is JSON.
pub fn media(req: &RequestHead) -> Result<Answer, Whole> {
    let ct = req
        .header("content-type")
        .unwrap_or_default()
        .trim_ascii_start();
    let json = b"application/json";
    // The media type itself, then nothing or its parameters (`; charset=utf-8`): not a
    // longer subtype such as `application/json-seq`.
    let is_json = ct
        .get(..json.len())
        .is_some_and(|t| t.eq_ignore_ascii_case(json))
        && matches!(
            ct.get(json.len()..)
                .unwrap_or_default()
                .trim_ascii_start()
                .first(),
            None | Some(b';')
        );
    if !is_json {
        return Err(Reply::error(
            415,
            Code::BadHttpRequest,
            "Unsupported Media Type: Content-Type must be application/json",
        ));
    }
    match accepted(req) {
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

/// Whether the request's `Accept` takes `media` (`application/json` or
/// `text/event-stream`).
pub fn accepts(req: &RequestHead, media: &str) -> bool {
    let (json, sse) = accepted(req);
    match media {
        "application/json" => json,
        "text/event-stream" => sse,
        _ => false,
    }
}

/// Whether `Accept` takes JSON (`*/*` does) and whether it takes SSE, in one pass without
/// allocating. No `Accept` takes JSON only.
fn accepted(req: &RequestHead) -> (bool, bool) {
    let a = req.header("accept");
    // What the official SDKs send on every request, recognised whole.
    if a == Some(b"application/json, text/event-stream") {
        return (true, true);
    }
    // A value that is not UTF-8 counts as none.
    let Some(a) = a.filter(|a| a.is_ascii() || std::str::from_utf8(a).is_ok()) else {
        return (true, false);
    };
    let (mut json, mut sse) = (false, false);
    for part in a.split(|&c| c == b',') {
        // The media range, without its parameters.
        let m = match memchr::memchr(b';', part) {
            Some(i) => &part[..i],
            None => part,
        }
        .trim_ascii();
        json |= m.eq_ignore_ascii_case(b"application/json") || m == b"*/*";
        sse |= m.eq_ignore_ascii_case(b"text/event-stream");
    }
    (json, sse)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::http::{parse_request_head, Limits};

    fn head(content_type: &str) -> RequestHead {
        let raw = format!(
            "POST /mcp HTTP/1.1\r\nHost: a\r\nContent-Type: {content_type}\r\nContent-Length: 2\r\n\r\n{{}}"
        );
        parse_request_head(raw.as_bytes(), &Limits::default())
            .ok()
            .flatten()
            .expect("a head")
    }

    #[test]
    fn json_is_the_media_type_itself_with_or_without_parameters() {
        for ok in [
            "application/json",
            "APPLICATION/JSON",
            "application/json; charset=utf-8",
            "application/json ;charset=utf-8",
        ] {
            assert!(media(&head(ok)).is_ok(), "{ok}");
        }
        for refused in [
            "application/json-seq",
            "application/jsonx",
            "application/jso",
            "text/plain",
            "application/json,text/plain",
        ] {
            assert!(media(&head(refused)).is_err(), "{refused}");
        }
    }
}
