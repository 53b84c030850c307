//! Phase: listen. `subscriptions/listen` (MCP 2026-07-28): a client's opt-in stream of server events.
//!
//! A 2026-07-28 client has no session and no GET stream; it POSTs `subscriptions/listen`
//! with the notifications it wants (`toolsListChanged`, `promptsListChanged`,
//! `resourcesListChanged`), and the answer is an event stream: first
//! `notifications/subscriptions/acknowledged` with the subset the gateway honors, then every
//! matching notification, each with `_meta["io.modelcontextprotocol/subscriptionId"]` = the
//! listen request's id. The stream stays open until the client goes; when the gateway ends
//! it (drain), the last event is the request's result (`resultType: "complete"`, the id in
//! `_meta`). There is no replay: a client that lost its stream listens again and refetches.
//!
//! `resourceSubscriptions` (gateway URIs) get `notifications/resources/updated` for those
//! URIs: the gateway subscribes once per (upstream, URI) on its own upstream session (the
//! first subscriber, a listener or a legacy session on a shared upstream session, sends
//! `resources/subscribe`; the last one to go sends `resources/unsubscribe`), and the update
//! the upstream sends reaches every subscriber. A 2026-07-28 upstream has no subscribe: the
//! gateway's own listen stream to it names the subscribed resources and is opened again when
//! they change (`state::Shared::subscriptions_changed`). A URI the caller may not read,
//! that routes nowhere, or whose legacy upstream refuses the subscription is not honored:
//! the acknowledgement leaves it out, as the spec asks.
//!
//! A listener is registered in [`Listeners`](crate::state::Listeners) (shared across workers: list changes are
//! broadcast by the control plane, updates by the upstream's reader) and removed when its
//! stream closes. What changed is decided per endpoint as for legacy sessions (`/mcp` or the
//! virtual server's view).
//!
//! Never answers a request on the stream: it carries notifications, then the result.

use std::{
    rc::Rc,
    sync::{atomic::Ordering, Arc},
};

use bytes::Bytes;

use super::{
    admit::Admitted,
    context::{Answer, Ctx},
    reject::{invalid, rescue},
    streams::{OpenStream, Sse, Streamed},
};
use crate::{
    auth::policy::Principal,
    jsonrpc::{Code, Frame},
    state::{notification, Listener, KINDS, SUBSCRIPTION_ID},
    transport::reply::Reply,
    upstream::Upstream,
};

/// The listen request's result: the stream ended from the gateway's side.
fn farewell(id: &[u8]) -> Bytes {
    let result = format!(
        r#"{{"resultType":"complete","_meta":{{"{SUBSCRIPTION_ID}":{}}}}}"#,
        String::from_utf8_lossy(id)
    );
    crate::jsonrpc::result_body(id, result.as_bytes())
}

/// What a listen request asks for: list changes per [`KINDS`], and the resources of
/// `resourceSubscriptions`; `Err` says what is wrong.
fn filter(f: &Frame) -> Result<([bool; 3], Vec<String>), &'static str> {
    let Some(n) = f.param("notifications") else {
        return Err("Invalid params: notifications is required");
    };
    if f.raw_at(n).and_then(|r| r.first()) != Some(&b'{') {
        return Err("Invalid params: notifications must be an object");
    }
    let mut wants = [false; 3];
    for (i, (field, _)) in KINDS.iter().enumerate() {
        wants[i] = f.member(n, field).and_then(|s| f.raw_at(s)) == Some(b"true");
    }
    let uris = match f
        .member(n, "resourceSubscriptions")
        .and_then(|s| f.raw_at(s))
    {
        None => Vec::new(),
        Some(raw) => match serde_json::from_slice::<Vec<String>>(raw) {
            Ok(mut u) => {
                u.sort_unstable();
                u.dedup();
                u.truncate(MAX_RESOURCES);
                u
            }
            Err(_) => return Err("Invalid params: resourceSubscriptions must be an array of URIs"),
        },
    };
    Ok((wants, uris))
}

/// Most resources one listen stream subscribes to (more are not honored).
const MAX_RESOURCES: usize = 100;

/// Serves `subscriptions/listen` (its `_meta` and headers already checked): subscribes
/// the resources asked for, registers the listener, queues the acknowledgement, and
/// answers with the stream. `advertised`: which list changes the endpoint can have.
pub async fn listen(
    ctx: &Rc<Ctx>,
    f: &Frame,
    id: &Bytes,
    a: &Admitted,
    (answer, advertised): (Answer, [bool; 3]),
) -> Streamed {
    if matches!(answer, Answer::Json) {
        let refused = invalid(
            Code::InvalidRequest,
            "Not Acceptable: subscriptions/listen answers with an event stream; Accept must include text/event-stream",
        );
        return Reply::json(406, rescue(Some(id), refused));
    }
    let (asked, uris) = match filter(f) {
        Ok(w) => w,
        Err(why) => return Reply::json(400, rescue(Some(id), invalid(Code::InvalidParams, why))),
    };
    let (server, principal) = (a.server.as_deref(), &*a.principal);
    // Honored: what was asked and the endpoint can change (it advertises `listChanged`).
    let mut wants = [false; 3];
    let mut honored = String::new();
    for (i, (field, _)) in KINDS.iter().enumerate() {
        wants[i] = asked[i] && advertised[i];
        if wants[i] {
            honored.push_str(&format!(r#""{field}":true,"#));
        }
    }
    let key = ctx.shared.listeners.next.fetch_add(1, Ordering::Relaxed);
    let shared = &ctx.shared;
    let g = &shared.config.gateway;
    // Held by the stream; once dropped (the stream closed, or this request was dropped
    // while subscribing) the cleanup below runs.
    let (alive, alive_rx) = flume::bounded::<()>(1);
    // The resources it is subscribed to (`state::subscription_key`s), as they are made.
    let held = Rc::new(std::cell::RefCell::new(Vec::<String>::new()));
    forget_when_closed(ctx, key, alive_rx.clone(), held.clone());
    let mut honored_uris = Vec::new();
    for uri in uris {
        let taken = held.borrow().clone();
        if let Some(rkey) = subscribe_resource(ctx, key, &uri, (server, principal), &taken).await {
            held.borrow_mut().push(rkey);
            honored_uris.push(uri);
        }
    }
    if !honored_uris.is_empty() {
        honored.push_str(&format!(
            r#""resourceSubscriptions":{},"#,
            serde_json::to_string(&honored_uris).unwrap_or_else(|_| "[]".into())
        ));
    }
    let honored = honored.strip_suffix(',').unwrap_or(&honored);
    let (outbox, inbox) = crate::session::outbox(g.sse_buffer_bytes, alive_rx);
    let outbox = Arc::new(outbox);
    let ack = notification(
        "notifications/subscriptions/acknowledged",
        id,
        &format!(r#""notifications":{{{honored}}},"#),
    );
    outbox.offer(ack, &shared.limits);
    let (end, ended) = flume::bounded::<()>(1);
    shared.listeners.open.insert(
        key,
        Listener {
            server: server.map(str::to_string),
            wants,
            id: id.clone(),
            outbox,
            _end: end,
        },
    );
    tracing::debug!(key, ?server, ?wants, "listen stream opened");
    Reply::events(Sse::Open(Box::new(OpenStream {
        inbox,
        ended,
        alive,
        replay: None,
        resume_after: None,
        farewell: Some(farewell(id)),
        shared: ctx.shared.clone(),
        since: std::time::Duration::ZERO,
    })))
}

/// Forgets listener `key` when its stream closes (the client left, or the gateway ended
/// it): `closed` disconnects then; `held` are its subscriptions.
fn forget_when_closed(
    ctx: &Rc<Ctx>,
    key: u64,
    closed: flume::Receiver<()>,
    held: Rc<std::cell::RefCell<Vec<String>>>,
) {
    let ctx = ctx.clone();
    monoio::spawn(async move {
        let _ = closed.recv_async().await;
        ctx.shared.listeners.open.remove(&key);
        let keys = std::mem::take(&mut *held.borrow_mut());
        for rkey in keys {
            unsubscribe_resource(&ctx, key, &rkey).await;
        }
        tracing::debug!(key, "listen stream closed");
    });
}

/// Subscribes listener `key` to the resource the client calls `uri`; its subscription
/// key, or `None` when not honored (not readable by the caller, routes nowhere, already
/// held under another URI, or a legacy upstream refuses). A 2026-07-28 upstream is not
/// asked: the gateway's listen stream to it names the resource from now on.
async fn subscribe_resource(
    ctx: &Ctx,
    key: u64,
    uri: &str,
    (server, principal): (Option<&str>, &Principal),
    held: &[String],
) -> Option<String> {
    if !principal.grant.resource(uri) {
        return None;
    }
    let snap = ctx.shared.snapshot.load_full();
    let view = snap.view(server)?;
    let (up, orig_json) = super::route::route_uri(&snap, view, uri)?;
    let up = snap.upstream(up)?.clone();
    let orig: String = serde_json::from_slice(&orig_json).ok()?;
    let rkey = crate::state::subscription_key(&up.name, &orig);
    if held.contains(&rkey) {
        // Another of its URIs names the same upstream resource.
        return None;
    }
    let listeners = &ctx.shared.listeners;
    if up.is_stateless() {
        // The gateway's listen stream to it names the resources: it listens again.
        let was = ctx.shared.subscribed_uris(&up.name);
        listeners
            .by_resource
            .entry(rkey.clone())
            .or_default()
            .push(key);
        if ctx.shared.subscribed_uris(&up.name) != was {
            ctx.shared.subscriptions_changed(&up.name);
        }
        return Some(rkey);
    }
    let first = !listeners.subscribed(&rkey)
        && ctx
            .shared
            .subscriptions
            .get(&rkey)
            .is_none_or(|s| s.is_empty());
    if first {
        let params = format!(r#"{{"uri":{}}}"#, String::from_utf8_lossy(&orig_json));
        if !ask(ctx, &up, "resources/subscribe", &params).await {
            return None;
        }
    }
    listeners
        .by_resource
        .entry(rkey.clone())
        .or_default()
        .push(key);
    Some(rkey)
}

/// Drops listener `key`'s subscription `rkey`; the last subscriber tells the upstream.
async fn unsubscribe_resource(ctx: &Ctx, key: u64, rkey: &str) {
    let listeners = &ctx.shared.listeners;
    let left = match listeners.by_resource.get_mut(rkey) {
        Some(mut v) => {
            v.retain(|k| *k != key);
            v.len()
        }
        None => 0,
    };
    if left > 0
        || ctx
            .shared
            .subscriptions
            .get(rkey)
            .is_some_and(|s| !s.is_empty())
    {
        return;
    }
    // Unless another listener came in meanwhile.
    if listeners
        .by_resource
        .remove_if(rkey, |_, v| v.is_empty())
        .is_none()
    {
        return;
    }
    let Some((name, orig)) = rkey.split_once('\u{0}') else {
        return;
    };
    let snap = ctx.shared.snapshot.load_full();
    let Some(up) = snap
        .by_name
        .get(name)
        .and_then(|r| snap.upstream(*r))
        .cloned()
    else {
        return;
    };
    if up.is_stateless() {
        ctx.shared.subscriptions_changed(name);
        return;
    }
    let params = format!(
        r#"{{"uri":{}}}"#,
        serde_json::to_string(orig).unwrap_or_else(|_| "\"\"".into())
    );
    ask(ctx, &up, "resources/unsubscribe", &params).await;
}

/// Sends `method` to `up` on the gateway's own upstream session; whether it answered
/// with a result.
async fn ask(ctx: &Ctx, up: &Upstream, method: &str, params: &str) -> bool {
    let on = match ctx.caller.shared_session(up).await {
        Ok(on) => on,
        Err(e) => {
            tracing::debug!(upstream = %up.name, error = %e, method, "not sent");
            return false;
        }
    };
    let gid = ctx.caller.ids.next();
    let body = crate::upstream::request_body(gid, method, params);
    let mut call = match ctx.caller.start(up, &on, gid, body).await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(upstream = %up.name, error = %e, method, "not sent");
            return false;
        }
    };
    let gid_text = gid.to_string();
    let mut ok = false;
    while let Ok(Ok(Some(m))) = monoio::time::timeout(up.call_timeout, call.next()).await {
        let Ok(crate::jsonrpc::Message::Single(r)) = crate::jsonrpc::parse(m) else {
            continue;
        };
        if r.kind() == crate::jsonrpc::Kind::Response && r.id_bytes() == Some(gid_text.as_bytes()) {
            ok = !r.is_error();
            break;
        }
    }
    call.finish(&ctx.caller).await;
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_carry_the_subscription_id() {
        let n = notification("notifications/tools/list_changed", b"7", "");
        let v: serde_json::Value = serde_json::from_slice(&n).expect("json");
        assert_eq!(v["method"], "notifications/tools/list_changed");
        assert_eq!(v["params"]["_meta"][SUBSCRIPTION_ID], 7);
        let ack = notification(
            "notifications/subscriptions/acknowledged",
            br#""s-1""#,
            r#""notifications":{"toolsListChanged":true},"#,
        );
        let v: serde_json::Value = serde_json::from_slice(&ack).expect("json");
        assert_eq!(v["params"]["notifications"]["toolsListChanged"], true);
        assert_eq!(v["params"]["_meta"][SUBSCRIPTION_ID], "s-1");
        let r: serde_json::Value = serde_json::from_slice(&farewell(b"7")).expect("json");
        assert_eq!(r["id"], 7);
        assert_eq!(r["result"]["resultType"], "complete");
        assert_eq!(r["result"]["_meta"][SUBSCRIPTION_ID], 7);
    }
}
