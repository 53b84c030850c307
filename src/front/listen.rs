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
//! A listener is registered in [`Listeners`] (shared across workers: list changes are
//! broadcast by the control plane) and removed when its stream closes. What changed is
//! decided per endpoint as for legacy sessions (`/mcp` or the virtual server's view).
//! Not yet: `resourceSubscriptions` (resource updates are not delivered to listen streams;
//! the acknowledgement leaves them out, as the spec asks for types a server does not honor).

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use bytes::Bytes;

use super::{Reply, ReplyBody};
use crate::{
    control::Shared,
    jsonrpc::{Code, Frame},
    session::Outbox,
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
    /// whose stream has closed are dropped.
    pub fn broadcast(&self, shared: &Shared, lists: &impl Fn(Option<&str>) -> Vec<&'static str>) {
        let mut by_view: std::collections::HashMap<Option<String>, Vec<&'static str>> =
            Default::default();
        let mut gone = Vec::new();
        for l in self.open.iter() {
            if l.outbox.alive.is_disconnected() {
                gone.push(*l.key());
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
        for k in gone {
            self.open.remove(&k);
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

/// What a listen request asks for: `wants` per [`KINDS`]; `Err` says what is wrong.
fn filter(f: &Frame) -> Result<[bool; 3], &'static str> {
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
    Ok(wants)
}

/// Serves `subscriptions/listen` (its `_meta` and headers already checked): registers the
/// listener, queues the acknowledgement, and answers with the stream.
pub(super) fn listen(
    shared: &Arc<Shared>,
    f: &Frame,
    id: &Bytes,
    server: Option<&str>,
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
    let asked = match filter(f) {
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
            honored.push_str(if honored.is_empty() { "" } else { "," });
            honored.push_str(&format!(r#""{field}":true"#));
        }
    }
    let g = &shared.config.gateway;
    let (alive, alive_rx) = flume::bounded::<()>(1);
    let (outbox, inbox) = crate::session::outbox(g.sse_buffer_bytes, alive_rx.clone());
    let outbox = Arc::new(outbox);
    let ack = notification(
        "notifications/subscriptions/acknowledged",
        id,
        &format!(r#""notifications":{{{honored}}},"#),
    );
    outbox.offer(ack, &shared.limits);
    let (end, ended) = flume::bounded::<()>(1);
    let key = shared.listeners.next.fetch_add(1, Ordering::Relaxed);
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
    // Forgotten when the stream closes (the client left, or the gateway ended it).
    let owner = shared.clone();
    monoio::spawn(async move {
        let _ = alive_rx.recv_async().await;
        owner.listeners.open.remove(&key);
        tracing::debug!(key, "listen stream closed");
    });
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
