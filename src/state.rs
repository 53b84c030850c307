//! What the workers and the control plane share: one `Arc<Shared>` made at start.
//!
//! It holds the snapshot and auth pointers (the control plane stores a new one on refresh or
//! reload; workers load them, lock-free), the session table, rate-limit and quota cells,
//! metrics, resource subscriptions, the open `subscriptions/listen` streams ([`Listeners`])
//! and the calls parked for a 2026-07-28 client's answer ([`ParkedCalls`]). Workers write
//! sessions, counters, subscriptions, listeners and parked calls as requests come; the
//! control plane writes the pointers and reads the rest. [`ControlMsg`] is how a worker or
//! the admin API asks the control plane for something.
//!
//! It never runs a task, opens a socket or talks to an upstream: the control plane
//! (`control`) and the pipeline do, and this module imports neither.

use std::sync::{
    atomic::{AtomicBool, AtomicU64, Ordering},
    Arc,
};

use arc_swap::ArcSwap;
use bytes::Bytes;

use crate::{
    config::Config,
    registry::Snapshot,
    session::{Outbox, Sessions},
};

/// State shared by the control plane and all workers.
pub struct Shared {
    /// The configuration the gateway started with.
    pub config: Arc<Config>,
    /// The current catalog snapshot.
    pub snapshot: ArcSwap<Snapshot>,
    /// Client sessions.
    pub sessions: Sessions,
    /// Set once shutdown starts.
    pub shutdown: AtomicBool,
    /// Every worker's call metrics.
    pub metrics: crate::observe::metrics::Registry,
    /// The audit log, when on.
    pub audit: Option<crate::observe::audit::Audit>,
    /// Subscriptions made through shared upstream sessions: (upstream, original URI) ->
    /// subscribed client sessions. Per-client upstream sessions need none (the upstream
    /// knows its own subscribers).
    pub subscriptions: dashmap::DashMap<String, Vec<crate::session::SessionId>>,
    /// Connection, session and stream limits, and their hit counters.
    pub limits: Arc<crate::limits::Limits>,
    /// Rate-limit buckets (kept across reloads).
    pub rates: crate::auth::RateBuckets,
    /// Span export, when `[telemetry] otlp_endpoint` is set (read at start).
    pub tracing: Option<crate::observe::trace::Tracing>,
    /// Quota counters (kept across reloads; saved to the store and restored at start).
    pub quotas: crate::auth::QuotaCounters,
    /// What the guards did (counters for `/metrics`).
    pub guard: crate::guard::catalog::Counters,
    clock: quanta::Clock,
    origin: quanta::Instant,
    /// Unix time at `origin`, ns.
    unix_origin_ns: u64,
    /// Requests to the control plane ([`Shared::request_refresh`], reload, shutdown).
    pub(crate) control: flume::Sender<ControlMsg>,
    /// Calls of 2026-07-28 clients parked on a legacy upstream's request, by the token their
    /// input-required result gave as `requestState`.
    pub parked: ParkedCalls,
    /// Open `subscriptions/listen` streams of 2026-07-28 clients.
    pub listeners: Listeners,
    /// Per 2026-07-28 upstream: asks its watcher to listen again, with the resources
    /// subscribed now.
    pub(crate) listen_again: dashmap::DashMap<String, flume::Sender<()>>,
}

// === impl Shared ===

impl Shared {
    /// Tells every session with an open GET stream (and every listen stream) which of its
    /// lists changed; `lists` gives them for a view (`None`: `/mcp`, else a virtual
    /// server's name).
    pub fn broadcast(&self, lists: impl Fn(Option<&str>) -> Vec<&'static str>) {
        let mut by_view: std::collections::HashMap<Option<String>, Vec<&'static str>> =
            Default::default();
        for s in self.sessions.all() {
            let Some(o) = s.outbox.load_full() else {
                continue;
            };
            let methods = by_view
                .entry(s.server.clone())
                .or_insert_with(|| lists(s.server.as_deref()));
            for m in methods.iter() {
                o.offer(
                    Bytes::from(format!(r#"{{"jsonrpc":"2.0","method":"{m}"}}"#)),
                    &self.limits,
                );
            }
        }
        self.listeners.broadcast(self, &lists);
    }

    /// The state for a gateway starting with `config`; `control` reaches the control plane.
    /// Starts span export and the audit log when configured.
    pub fn new(config: Arc<Config>, control: flume::Sender<ControlMsg>) -> anyhow::Result<Shared> {
        let clock = quanta::Clock::new();
        Ok(Shared {
            snapshot: ArcSwap::from_pointee(Snapshot::empty(
                &config.gateway.separator,
                config.auth.clone(),
            )),
            sessions: Sessions::default(),
            shutdown: AtomicBool::new(false),
            subscriptions: dashmap::DashMap::new(),
            rates: Default::default(),
            tracing: match &config.telemetry.otlp_endpoint {
                None => None,
                Some(e) => {
                    let t = crate::observe::trace::Tracing::start(
                        e,
                        &config.telemetry.service_name,
                        config.telemetry.sample_ratio,
                    )?;
                    tracing::info!(endpoint = %e, "exporting spans over OTLP/HTTP");
                    Some(t)
                }
            },
            quotas: Default::default(),
            guard: Default::default(),
            parked: Default::default(),
            listeners: Default::default(),
            listen_again: Default::default(),
            unix_origin_ns: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
            limits: Arc::new(crate::limits::Limits::new(
                config.gateway.max_connections,
                config.gateway.max_connections_per_ip,
            )),
            metrics: Default::default(),
            audit: match &config.audit {
                Some(a) => Some(crate::observe::audit::Audit::start(a)?),
                None => None,
            },
            origin: clock.now(),
            clock,
            control,
            config,
        })
    }

    /// Milliseconds since the gateway started (monotonic).
    pub fn now_ms(&self) -> u64 {
        let d = self.clock.now().saturating_duration_since(self.origin);
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
    }

    /// Nanoseconds since the gateway started (monotonic), for rate limits.
    pub fn now_ns(&self) -> u64 {
        let d = self.clock.now().saturating_duration_since(self.origin);
        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
    }

    /// Unix time in seconds: the wall clock read once at start plus the monotonic clock
    /// since, so the request path reads no other clock (quota windows are UTC days and
    /// months; a clock step after start is not followed).
    pub fn unix_secs(&self) -> u64 {
        self.unix_origin_ns.saturating_add(self.now_ns()) / 1_000_000_000
    }

    /// Whether shutdown has begun.
    pub fn stopping(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }

    /// Sends `notifications/resources/updated` for `uri` of `upstream` (original URI) to every
    /// session subscribed to it through a shared upstream session, and only to them.
    pub fn deliver_update(&self, upstream: &str, uri: &str) {
        let key = subscription_key(upstream, uri);
        let subscribers = self.subscriptions.get(&key).map(|e| e.clone());
        let listened = self.listeners.subscribed(&key);
        if subscribers.is_none() && !listened {
            tracing::debug!(upstream, uri, "resource update with no subscriber");
            return;
        }
        let snap = self.snapshot.load();
        let prefixed = snap
            .by_name
            .get(upstream)
            .and_then(|r| snap.upstream(*r))
            .is_none_or(|u| u.prefix);
        let exposed = if prefixed {
            crate::registry::names::expose_uri(upstream, uri)
        } else {
            uri.to_string()
        };
        if listened {
            self.listeners.deliver(self, &key, &exposed);
        }
        let Some(subscribers) = subscribers else {
            return;
        };
        let body = bytes::Bytes::from(format!(
            r#"{{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{{"uri":{}}}}}"#,
            serde_json::to_string(&exposed).unwrap_or_else(|_| "\"\"".into())
        ));
        let mut gone = Vec::new();
        for sid in subscribers {
            match self.sessions.get(&sid) {
                Some(s) => {
                    if let Some(o) = s.outbox.load_full() {
                        o.offer(body.clone(), &self.limits);
                    }
                }
                None => gone.push(sid),
            }
        }
        if !gone.is_empty() {
            if let Some(mut e) = self.subscriptions.get_mut(&key) {
                e.retain(|s| !gone.contains(s));
            }
            // Nobody left: forget the key, and a 2026-07-28 upstream's listen stream stops
            // naming it.
            if self
                .subscriptions
                .remove_if(&key, |_, v| v.is_empty())
                .is_some()
                && !self.listeners.subscribed(&key)
            {
                self.subscriptions_changed(upstream);
            }
        }
    }

    /// The original URIs of `upstream`'s resources someone is subscribed to (legacy
    /// sessions through the gateway's upstream session, or listen streams).
    pub fn subscribed_uris(&self, upstream: &str) -> Vec<String> {
        let prefix = subscription_key(upstream, "");
        let mut uris: Vec<String> = self
            .subscriptions
            .iter()
            .filter(|e| !e.value().is_empty())
            .filter_map(|e| e.key().strip_prefix(&prefix).map(str::to_string))
            .chain(self.listeners.keys_with_prefix(&prefix))
            .collect();
        uris.sort();
        uris.dedup();
        uris
    }

    /// Tells the watcher of 2026-07-28 upstream `upstream` that its subscribed resources
    /// changed (it listens again with them).
    pub fn subscriptions_changed(&self, upstream: &str) {
        if let Some(tx) = self.listen_again.get(upstream) {
            let _ = tx.try_send(());
        }
    }

    /// Asks the control plane to fetch the catalogs again (e.g. after an upstream restart).
    pub fn request_refresh(&self) {
        let _ = self.control.send(ControlMsg::Refresh);
    }
}

/// Requests to the control plane.
pub enum ControlMsg {
    /// Fetch the catalogs again.
    Refresh,
    /// Re-read the configuration (file + store) and apply it; each [`Applied`] sender hears
    /// once the new snapshot is published (or why the configuration was rejected).
    Reload(Vec<Applied>),
    /// Stop.
    Shutdown,
}

/// Where a reload reports its outcome: `Err` holds why the configuration was rejected.
pub type Applied = flume::Sender<Result<(), String>>;

/// Key of the subscription table.
pub fn subscription_key(upstream: &str, uri: &str) -> String {
    format!("{upstream}\u{0}{uri}")
}

// === Listeners ===

/// The `_meta` key that ties a notification to its listen stream.
pub(crate) const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

/// The list-change notifications a listener may ask for: filter field and method.
pub(crate) const KINDS: [(&str, &str); 3] = [
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
    pub(crate) open: dashmap::DashMap<u64, Listener>,
    pub(crate) next: AtomicU64,
    /// Listeners subscribed to each resource, by [`subscription_key`].
    pub(crate) by_resource: dashmap::DashMap<String, Vec<u64>>,
}

/// One open listen stream.
pub struct Listener {
    /// The endpoint it was opened on: `None` for `/mcp`, else the virtual server.
    pub(crate) server: Option<String>,
    /// Which of [`KINDS`] it gets.
    pub(crate) wants: [bool; 3],
    /// The listen request's id, raw JSON.
    pub(crate) id: Bytes,
    pub(crate) outbox: Arc<Outbox>,
    /// Dropped (with the entry) to end the stream from the gateway's side.
    pub(crate) _end: flume::Sender<()>,
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
pub(crate) fn notification(method: &str, id: &[u8], params: &str) -> Bytes {
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

// === Parked calls ===

/// Calls parked on a legacy upstream's request to a 2026-07-28 client, by park token. The
/// call itself stays on its worker; the retry that carries the client's answer may arrive on
/// any worker and reaches it through the channel.
pub type ParkedCalls = dashmap::DashMap<String, Parked>;

/// One parked call.
pub struct Parked {
    /// Where the retry's input goes.
    pub tx: flume::Sender<ParkedInput>,
    /// Only the credential that made the call may continue it (`Principal::credential`).
    pub principal: String,
}

/// A retry of a parked call: the client's answers and where to send what comes next.
pub struct ParkedInput {
    /// The retry's `params.inputResponses` (raw JSON object).
    pub responses: Bytes,
    /// The retry's id (raw JSON).
    pub client_id: Bytes,
    /// The answer to the retry (a final result, another input-required result or an error).
    pub reply: flume::Sender<Bytes>,
}
