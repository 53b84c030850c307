//! `subscriptions/listen` (MCP 2026-07-28): a client's opt-in stream of server events.
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
//! they change (`control::Shared::subscriptions_changed`). A URI the caller may not read,
//! that routes nowhere, or whose legacy upstream refuses the subscription is not honored:
//! the acknowledgement leaves it out, as the spec asks.
//!
//! A listener is registered in [`Listeners`] (shared across workers: list changes are
//! broadcast by the control plane, updates by the upstream's reader) and removed when its
//! stream closes. What changed is decided per endpoint as for legacy sessions (`/mcp` or the
//! virtual server's view).

use std::{
    rc::Rc,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use bytes::Bytes;

use super::{Front, Reply, ReplyBody};
use crate::{
    auth::policy::Principal,
    control::Shared,
    jsonrpc::{Code, Frame},
    session::Outbox,
    upstream::{Link, OnSession, Upstream},
};

/// The `_meta` key that ties a notification to its listen stream.
const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

/// The list-change notifications a listener may ask for: filter field and method.
const KINDS: [(&str, &str); 3] = [
    ("toolsListChanged", "notifications/tools/list_changed"),
    ("promptsListChanged", "notifications/prompts/list_changed"),
    (
        "resourcesListChanged",
        "notifications/resources/list_changed",
    ),
];

/// Every open listen stream, by a gateway-wide number.
#[derive(Default)]
pub struct Listeners {
    open: dashmap::DashMap<u64, Listener>,
    next: AtomicU64,
    /// Listeners subscribed to each resource, by `control::subscription_key`.
    by_resource: dashmap::DashMap<String, Vec<u64>>,
}

/// One open listen stream.
pub struct Listener {
    /// The endpoint it was opened on: `None` for `/mcp`, else the virtual server.
    server: Option<String>,
    /// Which of [`KINDS`] it gets.
    wants: [bool; 3],
    /// The listen request's id, raw JSON.
    id: Bytes,
    outbox: Arc<Outbox>,
    /// Dropped (with the entry) to end the stream from the gateway's side.
    _end: flume::Sender<()>,
}

impl Listeners {
    /// Open listen streams.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// Whether none is open.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Offers each listener the list changes of its endpoint that it asked for;
    /// `lists(server)` says which notifications that endpoint's clients need. Listeners
    /// whose stream has closed are skipped.
    pub fn broadcast(&self, shared: &Shared, lists: &impl Fn(Option<&str>) -> Vec<&'static str>) {
        let mut by_view: std::collections::HashMap<Option<String>, Vec<&'static str>> =
            Default::default();
        for l in self.open.iter() {
            // Closed: its own cleanup task removes it (and its subscriptions).
            if l.outbox.alive.is_disconnected() {
                continue;
            }
            let methods = by_view
                .entry(l.server.clone())
                .or_insert_with(|| lists(l.server.as_deref()));
            for (i, (_, method)) in KINDS.iter().enumerate() {
                if l.wants[i] && methods.contains(method) {
                    l.outbox
                        .offer(notification(method, &l.id, ""), &shared.limits);
                }
            }
        }
    }

    /// The rest of each resource key starting with `prefix` that some listener holds.
    pub fn keys_with_prefix(&self, prefix: &str) -> Vec<String> {
        self.by_resource
            .iter()
            .filter(|e| !e.value().is_empty())
            .filter_map(|e| e.key().strip_prefix(prefix).map(str::to_string))
            .collect()
    }

    /// Whether a listener is subscribed to resource `key`.
    pub fn subscribed(&self, key: &str) -> bool {
        self.by_resource.get(key).is_some_and(|v| !v.is_empty())
    }

    /// Offers `notifications/resources/updated` for `uri` (as the listener's client names
    /// it) to the listeners subscribed to resource `key`.
    pub fn deliver(&self, shared: &Shared, key: &str, uri: &str) {
        let Some(keys) = self.by_resource.get(key).map(|v| v.clone()) else {
            return;
        };
        let params = format!(
            r#""uri":{},"#,
            serde_json::to_string(uri).unwrap_or_else(|_| "\"\"".into())
        );
        for k in keys {
            if let Some(l) = self.open.get(&k) {
                let n = notification("notifications/resources/updated", &l.id, &params);
                l.outbox.offer(n, &shared.limits);
            }
        }
    }
}

/// A notification for the listen stream `id`, with `params` members (each followed by a
/// comma) before its `_meta`.
fn notification(method: &str, id: &[u8], params: &str) -> Bytes {
    let mut out = Vec::with_capacity(96 + method.len() + params.len() + id.len());
    out.extend_from_slice(br#"{"jsonrpc":"2.0","method":""#);
    out.extend_from_slice(method.as_bytes());
    out.extend_from_slice(br#"","params":{"#);
    out.extend_from_slice(params.as_bytes());
    out.extend_from_slice(br#""_meta":{""#);
    out.extend_from_slice(SUBSCRIPTION_ID.as_bytes());
    out.extend_from_slice(br#"":"#);
    out.extend_from_slice(id);
    out.extend_from_slice(b"}}}");
    Bytes::from(out)
}

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

impl Front {
    /// Serves `subscriptions/listen` (its `_meta` and headers already checked): subscribes
    /// the resources asked for, registers the listener, queues the acknowledgement, and
    /// answers with the stream. `advertised`: which list changes the endpoint can have.
    pub(super) async fn listen(
        self: &Rc<Self>,
        f: &Frame,
        id: &Bytes,
        server: Option<&str>,
        principal: &Principal,
        answer: super::Answer,
        advertised: [bool; 3],
    ) -> Reply {
        if matches!(answer, super::Answer::Json) {
            return Reply::json(
                406,
                crate::jsonrpc::error_body(
                    Some(id),
                    Code::InvalidRequest,
                    "Not Acceptable: subscriptions/listen answers with an event stream; Accept must include text/event-stream",
                ),
            );
        }
        let (asked, uris) = match filter(f) {
            Ok(w) => w,
            Err(why) => {
                return Reply::json(
                    400,
                    crate::jsonrpc::error_body(Some(id), Code::InvalidParams, why),
                )
            }
        };
        // Honored: what was asked and the endpoint can change (it advertises `listChanged`).
        let mut wants = [false; 3];
        let mut honored = String::new();
        for (i, (field, _)) in KINDS.iter().enumerate() {
            wants[i] = asked[i] && advertised[i];
            if wants[i] {
                honored.push_str(&format!(r#""{field}":true,"#));
            }
        }
        let key = self.shared.listeners.next.fetch_add(1, Ordering::Relaxed);
        let shared = &self.shared;
        let g = &shared.config.gateway;
        // Held by the stream; once dropped (the stream closed, or this request was dropped
        // while subscribing) the cleanup below runs.
        let (alive, alive_rx) = flume::bounded::<()>(1);
        // The resources it is subscribed to (`control::subscription_key`s), as they are made.
        let held = Rc::new(std::cell::RefCell::new(Vec::<String>::new()));
        // Forgotten when the stream closes (the client left, or the gateway ended it).
        let front = self.clone();
        let (cleanup_rx, cleanup_held) = (alive_rx.clone(), held.clone());
        monoio::spawn(async move {
            let _ = cleanup_rx.recv_async().await;
            front.shared.listeners.open.remove(&key);
            let keys = std::mem::take(&mut *cleanup_held.borrow_mut());
            for rkey in keys {
                front.unsubscribe_resource(key, &rkey).await;
            }
            tracing::debug!(key, "listen stream closed");
        });
        let mut honored_uris = Vec::new();
        for uri in uris {
            let taken = held.borrow().clone();
            if let Some(rkey) = self
                .subscribe_resource(key, &uri, server, principal, &taken)
                .await
            {
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
        Reply {
            status: 200,
            headers: vec![],
            body: ReplyBody::Stream {
                inbox,
                ended,
                alive,
                replay: None,
                resume_after: None,
                farewell: Some(farewell(id)),
            },
        }
    }

    /// Subscribes listener `key` to the resource the client calls `uri`; its subscription
    /// key, or `None` when not honored (not readable by the caller, routes nowhere, already
    /// held under another URI, or a legacy upstream refuses). A 2026-07-28 upstream is not
    /// asked: the gateway's listen stream to it names the resource from now on.
    async fn subscribe_resource(
        &self,
        key: u64,
        uri: &str,
        server: Option<&str>,
        principal: &Principal,
        held: &[String],
    ) -> Option<String> {
        if !principal.grant.resource(uri) {
            return None;
        }
        let snap = self.shared.snapshot.load_full();
        let view = snap.view(server)?;
        let (up, orig_json) = super::route_uri(&snap, view, uri)?;
        let up = snap.upstream(up)?.clone();
        let orig: String = serde_json::from_slice(&orig_json).ok()?;
        let rkey = crate::control::subscription_key(&up.name, &orig);
        if held.contains(&rkey) {
            // Another of its URIs names the same upstream resource.
            return None;
        }
        let listeners = &self.shared.listeners;
        if matches!(&up.link, Link::Http(h) if h.is_stateless()) {
            // The gateway's listen stream to it names the resources: it listens again.
            let was = self.shared.subscribed_uris(&up.name);
            listeners
                .by_resource
                .entry(rkey.clone())
                .or_default()
                .push(key);
            if self.shared.subscribed_uris(&up.name) != was {
                self.shared.subscriptions_changed(&up.name);
            }
            return Some(rkey);
        }
        let first = !listeners.subscribed(&rkey)
            && self
                .shared
                .subscriptions
                .get(&rkey)
                .is_none_or(|s| s.is_empty());
        if first {
            let params = format!(r#"{{"uri":{}}}"#, String::from_utf8_lossy(&orig_json));
            if !self.ask(&up, "resources/subscribe", &params).await {
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
    async fn unsubscribe_resource(&self, key: u64, rkey: &str) {
        let listeners = &self.shared.listeners;
        let left = match listeners.by_resource.get_mut(rkey) {
            Some(mut v) => {
                v.retain(|k| *k != key);
                v.len()
            }
            None => 0,
        };
        if left > 0
            || self
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
        let snap = self.shared.snapshot.load_full();
        let Some(up) = snap
            .by_name
            .get(name)
            .and_then(|r| snap.upstream(*r))
            .cloned()
        else {
            return;
        };
        if matches!(&up.link, Link::Http(h) if h.is_stateless()) {
            self.shared.subscriptions_changed(name);
            return;
        }
        let params = format!(
            r#"{{"uri":{}}}"#,
            serde_json::to_string(orig).unwrap_or_else(|_| "\"\"".into())
        );
        self.ask(&up, "resources/unsubscribe", &params).await;
    }

    /// Sends `method` to `up` on the gateway's own upstream session; whether it answered
    /// with a result.
    async fn ask(&self, up: &Upstream, method: &str, params: &str) -> bool {
        let on = match &up.link {
            Link::Stdio(_) => OnSession::Stdio,
            Link::Http(h) => match h.ensure_shared(&self.caller).await {
                Ok(s) => OnSession::Http(s),
                Err(e) => {
                    tracing::debug!(upstream = %up.name, error = %e, method, "not sent");
                    return false;
                }
            },
        };
        let gid = self.caller.ids.next();
        let body = crate::upstream::request_body(gid, method, params);
        let mut call = match self.caller.start(up, &on, gid, body).await {
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
            if r.kind() == crate::jsonrpc::Kind::Response
                && r.id_raw().as_deref() == Some(gid_text.as_bytes())
            {
                ok = !r.is_error();
                break;
            }
        }
        call.finish(&self.caller).await;
        ok
    }
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
