//! Phase: answer. What the gateway answers itself, from the snapshot and the session:
//! `initialize` (a new session), `ping`, the four lists (filtered by the principal's roles,
//! paged), `logging/setLevel`, subscriptions it keeps for shared upstream sessions, and the
//! client's notifications and answers to upstream requests (delivered, never answered).
//!
//! Never sends a client's request upstream: routed requests go through `call`.

use std::{borrow::Cow, sync::Arc};

use bytes::{Bytes, BytesMut};

use super::{
    authorize, call,
    context::{Answer, Call, Ctx},
    reject::{invalid, rescue, Reject},
};
use crate::{
    auth::policy::Principal,
    jsonrpc::{codes::result_body, Code, Frame, Pieces},
    limits::Limit,
    mcp::{
        version::{self, log_rank},
        Hello, CLIENT_INFO,
    },
    registry::{self, Snapshot, View},
    session::Session,
    transport::reply::{Body, Reply, Whole},
    upstream::SessionMode,
    upstream::UpstreamRef,
};

/// The gateway's `serverInfo` (`initialize`) and `_meta` serverInfo (2026-07-28).
pub const SERVER_INFO: &str = concat!(
    r#"{"name":"mcpgw","title":"mcpgw MCP gateway","version":""#,
    env!("CARGO_PKG_VERSION"),
    r#""}"#
);

/// `initialize`: a new session on the endpoint `server` (a virtual server, or `/mcp`) for
/// `principal`, with the gateway's capabilities and its `Mcp-Session-Id`.
pub fn initialize(
    ctx: &Ctx,
    f: &Frame,
    snap: &Snapshot,
    answer: Answer,
    (server, principal): (Option<&str>, &Arc<Principal>),
) -> Whole {
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
    if ctx.shared.sessions.len() >= ctx.shared.config.gateway.max_sessions {
        ctx.shared.limits.hit(Limit::Sessions);
        tracing::info!("session limit reached: initialize refused");
        let refused =
            Reject::LimitReached("Service Unavailable: session limit reached (max_sessions)");
        let mut r = Reply::json(503, rescue(Some(&id), refused));
        r.headers.push(("Retry-After", Bytes::from_static(b"1")));
        return r;
    }
    let hello = Hello {
        capabilities: raw("capabilities", b"{}"),
        client_info: raw("clientInfo", CLIENT_INFO.as_bytes()),
    };
    let created = ctx.shared.sessions.create(
        version,
        hello,
        server.map(str::to_string),
        principal.clone(),
        ctx.shared.now_ms(),
    );
    let sid = match created {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot create a session id");
            return Reply::json(500, rescue(Some(&id), Reject::Internal));
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

/// `ping`.
pub fn ping(call: &Call<'_>) -> Bytes {
    result_body(call.id, b"{}")
}

/// Which of the four lists.
#[derive(Clone, Copy)]
pub enum List {
    /// `tools/list`.
    Tools = 0,
    /// `prompts/list`.
    Prompts = 1,
    /// `resources/list`.
    Resources = 2,
    /// `resources/templates/list`.
    Templates = 3,
}

/// A page of one of the lists of `view`, with only what the principal's roles allow.
pub fn list(ctx: &Ctx, call: &Call<'_>, view: View<'_>, which: List) -> Result<Pieces, Reject> {
    let principal = call.sess.principal.load();
    let grant = &principal.grant;
    let all = match which {
        List::Tools => view.tools_pages,
        List::Prompts => view.prompts_pages,
        List::Resources => view.resources_pages,
        List::Templates => view.templates_pages,
    };
    if grant.is_everything() {
        return page(call, all);
    }
    let granted = authorize::granted_lists(ctx, call.snap, call.sess.server.as_deref(), grant);
    page(call, &granted[which as usize])
}

/// The page the request's cursor names, not copied: the answer's head, the snapshot's
/// page, and its tail.
fn page(call: &Call<'_>, pages: &registry::Pages) -> Result<Pieces, Reject> {
    let f = call.f;
    let page = match f.param("cursor") {
        None => Some(0),
        Some(c) => f.str_at(c).and_then(|c| registry::page_of(&c)),
    };
    match page.and_then(|p| pages.0.get(p)) {
        Some(body) => Ok(Pieces::result(call.id, body.clone())),
        None => Err(invalid(
            Code::InvalidParams,
            "Invalid params: unknown cursor",
        )),
    }
}

/// `logging/setLevel`: remembered for the session and sent to each of its own upstream
/// sessions that offer logging. Shared upstream sessions are not told (the level would
/// change for every client).
pub async fn set_level(ctx: &Ctx, call: &Call<'_>) -> Result<Bytes, Reject> {
    let (f, sess) = (call.f, call.sess);
    let Some(level) = f
        .param("level")
        .and_then(|s| f.str_at(s))
        .map(Cow::into_owned)
    else {
        return Err(invalid(
            Code::InvalidParams,
            "Invalid params: level is required",
        ));
    };
    if log_rank(&level).is_none() {
        return Err(invalid(
            Code::InvalidParams,
            "Invalid params: unknown level",
        ));
    }
    sess.log_level.store(Some(Arc::new(level.clone())));
    for up in &call.snap.upstreams {
        if up.mode != SessionMode::PerClient {
            continue;
        }
        if let Some(us) = sess.upstreams.get(&up.name) {
            call::apply_level(ctx, up, &us, &level).await;
        }
    }
    Ok(result_body(call.id, b"{}"))
}

/// A client notification: cancellations reach the relay of the request; the rest ends
/// here (`initialized`, `roots/list_changed` have no upstream to go to yet).
pub async fn notification(f: &Frame, sess: &Session) {
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
pub async fn client_answer(ctx: &Ctx, f: &Frame, sess: &Session) {
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
    if let Err(e) = ctx.caller.send(&pending.upstream, &pending.on, body).await {
        tracing::warn!(upstream = %pending.upstream.name, error = %e, "could not deliver the client's answer");
    }
}

/// Subscriptions through a shared upstream session are the gateway's to keep: the
/// upstream sees one subscriber (the gateway) per URI, so only the first subscribe and the
/// last unsubscribe go to it. Returns the answer when the upstream need not be asked.
pub fn subscription(
    ctx: &Ctx,
    method: &str,
    call: &Call<'_>,
    up: UpstreamRef,
    orig_json: &[u8],
) -> Option<&'static [u8]> {
    let (snap, sess) = (call.snap, call.sess);
    let upstream = snap.upstream(up)?;
    // A 2026-07-28 upstream has no subscribe: the gateway's listen stream to it names the
    // resources subscribed (and is opened again when they change).
    let stateless = upstream.is_stateless();
    if upstream.mode != SessionMode::Shared && !stateless {
        return None;
    }
    let uri: String = serde_json::from_slice(orig_json).ok()?;
    let key = crate::state::subscription_key(&upstream.name, &uri);
    let subs = &ctx.shared.subscriptions;
    if stateless {
        let was = ctx.shared.subscribed_uris(&upstream.name);
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
        if ctx.shared.subscribed_uris(&upstream.name) != was {
            ctx.shared.subscriptions_changed(&upstream.name);
        }
        return Some(b"{}");
    }
    if method == "resources/subscribe" {
        let listened = ctx.shared.listeners.subscribed(&key);
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
            let listened = ctx.shared.listeners.subscribed(&key);
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

/// The `instructions` the gateway gives clients (a JSON string).
pub fn instructions(snap: &Snapshot) -> String {
    serde_json::Value::String(format!(
        "One endpoint for many MCP servers: tool and prompt names are <server>{}<name>.",
        snap.separator
    ))
    .to_string()
}

/// An answer in pieces as the client asked for it: JSON written without joining them, or
/// one SSE event (joined: an event's lines are framed one by one).
pub fn reply_pieces(answer: Answer, pieces: Pieces) -> Whole {
    match answer {
        Answer::Json | Answer::Either => Reply {
            status: 200,
            headers: vec![],
            body: Body::JsonPieces(pieces),
        },
        Answer::Sse => reply_with(answer, pieces.join()),
    }
}

/// An answer as the client asked for it: JSON, or one SSE event.
pub fn reply_with(answer: Answer, body: Bytes) -> Whole {
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
