//! Client sessions (`Mcp-Session-Id`), shared by all workers.
//!
//! `SO_REUSEPORT` spreads a client's connections over workers, so any worker must find any
//! session: the table is a sharded `DashMap`, touched once per request. A session id is 128
//! random bits from the OS (hex), unguessable. Sessions end on `DELETE`, on idle expiry (swept
//! by the control plane) and never otherwise.

use std::{
    fmt,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use arc_swap::{ArcSwap, ArcSwapOption};
use bytes::Bytes;
use dashmap::DashMap;

use crate::{
    mcp::Hello,
    upstream::{OnSession, Upstream, UpstreamSession},
};

/// A session id as issued (32 lowercase hex characters), held inline: parsing one from a
/// request allocates nothing.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionId {
    text: [u8; 32],
    len: u8,
}

impl SessionId {
    /// 128 bits from the OS random source.
    pub fn random() -> std::io::Result<Self> {
        let mut b = [0u8; 16];
        getrandom::getrandom(&mut b).map_err(|e| std::io::Error::other(e.to_string()))?;
        let mut text = [0u8; 32];
        crate::text::hex_into(&b, &mut text);
        Ok(Self { text, len: 32 })
    }

    /// Parses a header value; only the shape the gateway issues is accepted.
    pub fn parse(v: &[u8]) -> Option<Self> {
        let text: [u8; 32] = v.try_into().ok()?;
        // Every byte checked, without an early exit, so the check runs as vector code.
        text.iter()
            .fold(true, |ok, &c| {
                ok & ((c.wrapping_sub(b'0') < 10) | (c.wrapping_sub(b'a') < 6))
            })
            .then_some(Self { text, len: 32 })
    }

    /// An id that is not of the issued shape (a stateless request's); at most 32 bytes.
    fn fixed(s: &str) -> Self {
        let mut text = [0u8; 32];
        let len = s.len().min(32);
        text[..len].copy_from_slice(&s.as_bytes()[..len]);
        Self {
            text,
            len: len as u8,
        }
    }

    /// The id text.
    pub fn as_str(&self) -> &str {
        self.text
            .get(..usize::from(self.len))
            .and_then(|t| std::str::from_utf8(t).ok())
            .unwrap_or_default()
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Ids are bearer secrets: log only a prefix.
        write!(f, "{}…", self.as_str().get(..8).unwrap_or(""))
    }
}

/// The id of every stateless request's context, as logs and the audit log show it (never
/// a real session id: those are 32 hex characters).
pub const STATELESS_ID: &str = "-";

/// The recent events of one SSE stream, kept so a client that lost the connection can resume
/// with `Last-Event-ID` (event ids are `<stream>-<seq>`; stream 0 is the GET stream).
/// Bounded: only the last `cap` events are kept.
pub struct Replay {
    ring: parking_lot::Mutex<Ring>,
    wake_tx: flume::Sender<()>,
    wake_rx: flume::Receiver<()>,
}

struct Ring {
    events: std::collections::VecDeque<(u64, Bytes)>,
    next: u64,
    cap: usize,
    bytes: usize,
    cap_bytes: usize,
    done: bool,
}

impl Replay {
    /// An empty buffer keeping at most `cap` events and, beyond the newest one, at most
    /// `cap_bytes` bytes of them.
    pub fn new(cap: usize, cap_bytes: usize) -> Self {
        let (wake_tx, wake_rx) = flume::bounded(1);
        Self {
            ring: parking_lot::Mutex::new(Ring {
                events: Default::default(),
                next: 1,
                cap: cap.max(1),
                bytes: 0,
                cap_bytes,
                done: false,
            }),
            wake_tx,
            wake_rx,
        }
    }

    /// Records an event; returns its sequence number.
    pub fn push(&self, data: Bytes) -> u64 {
        let seq = {
            let mut r = self.ring.lock();
            let seq = r.next;
            r.next += 1;
            r.bytes += data.len();
            r.events.push_back((seq, data));
            while r.events.len() > r.cap || (r.bytes > r.cap_bytes && r.events.len() > 1) {
                if let Some((_, old)) = r.events.pop_front() {
                    r.bytes -= old.len();
                }
            }
            seq
        };
        let _ = self.wake_tx.try_send(());
        seq
    }

    /// Marks the stream complete (its last event is recorded).
    pub fn finish(&self) {
        self.ring.lock().done = true;
        let _ = self.wake_tx.try_send(());
    }

    /// Events after `seq`, and whether the stream is complete.
    pub fn after(&self, seq: u64) -> (Vec<(u64, Bytes)>, bool) {
        let r = self.ring.lock();
        (
            r.events.iter().filter(|(s, _)| *s > seq).cloned().collect(),
            r.done,
        )
    }

    /// Resolves when something new is recorded (or the stream completes).
    pub fn changed(&self) -> flume::Receiver<()> {
        self.wake_rx.clone()
    }
}

/// A small map owned by one session, behind that session's own lock (never a global one).
/// Empty, it allocates nothing: 100k idle sessions must stay cheap whatever the core count,
/// which a sharded map per session would not.
pub struct SessionMap<K, V>(
    parking_lot::Mutex<std::collections::HashMap<K, V, foldhash::fast::RandomState>>,
);

impl<K: std::hash::Hash + Eq, V> SessionMap<K, V> {
    /// An empty map.
    pub fn new() -> Self {
        Self(parking_lot::Mutex::new(std::collections::HashMap::default()))
    }

    /// Inserts; returns the value it replaced.
    pub fn insert(&self, k: K, v: V) -> Option<V> {
        self.0.lock().insert(k, v)
    }

    /// Removes and returns the value at `k`.
    pub fn remove<Q>(&self, k: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        self.0.lock().remove(k)
    }

    /// Removes the value at `k` if `f` says so.
    pub fn remove_if<Q>(&self, k: &Q, f: impl FnOnce(&V) -> bool) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        let mut m = self.0.lock();
        if m.get(k).is_some_and(f) {
            m.remove(k)
        } else {
            None
        }
    }

    /// Runs `f` on the value at `k` under the lock.
    pub fn with<Q, R>(&self, k: &Q, f: impl FnOnce(&mut V) -> R) -> Option<R>
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        self.0.lock().get_mut(k).map(f)
    }

    /// Keeps the entries for which `f` is true.
    pub fn retain(&self, f: impl FnMut(&K, &mut V) -> bool) {
        self.0.lock().retain(f);
    }

    /// Empties it, keeping its room (through `&mut`: no lock taken).
    pub fn clear(&mut self) {
        self.0.get_mut().clear();
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.lock().len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.lock().is_empty()
    }
}

impl<K: std::hash::Hash + Eq, V: Clone> SessionMap<K, V> {
    /// A copy of the value at `k`.
    pub fn get<Q>(&self, k: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        self.0.lock().get(k).cloned()
    }

    /// Inserts `v` at `k` unless the value there is one `keep` says to keep; returns the
    /// value now at `k` and the one `v` replaced.
    pub fn insert_unless(&self, k: K, v: V, keep: impl FnOnce(&V) -> bool) -> (V, Option<V>) {
        let mut m = self.0.lock();
        match m.get(&k) {
            Some(cur) if keep(cur) => (cur.clone(), None),
            _ => {
                let old = m.insert(k, v.clone());
                (v, old)
            }
        }
    }

    /// The value at `k`, inserted by `make` when missing.
    pub fn get_or_insert_with(&self, k: K, make: impl FnOnce() -> V) -> V {
        self.0.lock().entry(k).or_insert_with(make).clone()
    }

    /// A copy of every entry.
    pub fn entries(&self) -> Vec<(K, V)>
    where
        K: Clone,
    {
        self.0
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

impl<K: std::hash::Hash + Eq, V> Default for SessionMap<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

/// The way into a client's open GET stream.
pub struct Outbox {
    /// Messages for the client.
    tx: flume::Sender<Bytes>,
    /// Disconnects when that stream closes (readers relaying into it stop then).
    pub alive: flume::Receiver<()>,
    /// Bytes queued and not yet taken by the stream's writer.
    queued: Arc<std::sync::atomic::AtomicUsize>,
    cap: usize,
}

/// The stream writer's end of an [`Outbox`].
pub struct Inbox {
    rx: flume::Receiver<Bytes>,
    queued: Arc<std::sync::atomic::AtomicUsize>,
}

/// A GET stream's queue: at most `cap_bytes` bytes (and 1024 messages) waiting for the
/// writer; past that, messages are dropped (a client that does not read cannot make the
/// gateway hold more).
pub fn outbox(cap_bytes: usize, alive: flume::Receiver<()>) -> (Outbox, Inbox) {
    let (tx, rx) = flume::bounded(1024);
    let queued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    (
        Outbox {
            tx,
            alive,
            queued: queued.clone(),
            cap: cap_bytes,
        },
        Inbox { rx, queued },
    )
}

impl Outbox {
    /// Queues `m` for the client unless the stream's buffer is full or the stream closed;
    /// a message refused for room is counted against `sse_buffer_bytes`.
    pub fn offer(&self, m: Bytes, limits: &crate::limits::Limits) -> bool {
        let n = m.len();
        let before = self.queued.fetch_add(n, Ordering::Relaxed);
        if before + n > self.cap && before > 0 {
            self.queued.fetch_sub(n, Ordering::Relaxed);
            limits.hit(crate::limits::Limit::SseBuffer);
            return false;
        }
        match self.tx.try_send(m) {
            Ok(()) => true,
            Err(e) => {
                self.queued.fetch_sub(n, Ordering::Relaxed);
                if matches!(e, flume::TrySendError::Full(_)) {
                    limits.hit(crate::limits::Limit::SseBuffer);
                }
                false
            }
        }
    }
}

impl Inbox {
    /// The next message; Err once every [`Outbox`] is gone.
    pub async fn recv(&self) -> Result<Bytes, flume::RecvError> {
        let m = self.rx.recv_async().await?;
        self.queued.fetch_sub(m.len(), Ordering::Relaxed);
        Ok(m)
    }
}

/// One worker's spare stateless sessions. A 2026-07-28 request gets a session of its own
/// that lives for that request only; building one each time cost three allocations (the
/// session and the room of its in-flight table among them). After the request the session is
/// kept here, when nothing else holds it (a call still streaming does), and the next
/// request's takes it over. A spare keeps only the last request's principal (a reference);
/// its hello (views of the request's bytes) is dropped when it is given back.
#[derive(Default)]
pub struct Spares(std::cell::RefCell<Vec<Arc<Session>>>);

impl Spares {
    /// Spares kept at most: the stateless requests one worker serves at once, in the usual
    /// case; past it, sessions are dropped as before.
    const CAP: usize = 64;

    /// A stateless session for one request (see [`Session::stateless`]): a spare when there
    /// is one.
    pub fn take(
        &self,
        said: (&'static str, Hello, Option<u8>),
        server: Option<String>,
        principal: Arc<crate::auth::policy::Principal>,
        now_ms: u64,
    ) -> Arc<Session> {
        let spare = self.0.borrow_mut().pop();
        if let Some(mut s) = spare {
            if let Some(m) = Arc::get_mut(&mut s) {
                m.reuse(said, server, principal, now_ms);
                return s;
            }
        }
        Arc::new(Session::stateless(said, server, principal, now_ms))
    }

    /// Keeps `s` for the next request when nothing else holds it; else drops this reference.
    pub fn give_back(&self, mut s: Arc<Session>) {
        let Some(m) = Arc::get_mut(&mut s) else {
            return;
        };
        if !m.stateless {
            return;
        }
        m.hello = Hello {
            capabilities: Bytes::new(),
            client_info: Bytes::new(),
        };
        let mut spares = self.0.borrow_mut();
        if spares.len() < Self::CAP {
            spares.push(s);
        }
    }
}

/// A client request forwarded upstream and not yet answered.
pub struct InFlight {
    /// The gateway id it carries upstream.
    pub gid: u64,
    /// Fires to stop relaying it (the client cancelled it); taken by the first cancel.
    pub cancel: Option<futures_channel::oneshot::Sender<()>>,
}

/// A call's place in its session's `in_flight` table, from before it is sent upstream until
/// it ends: counted against `max_in_flight_per_session` and cancellable all along. Dropping
/// it removes the entry (only if it is still this call's: a client reusing an id in flight
/// replaced it).
pub struct InFlightEntry {
    session: Arc<Session>,
    id: Bytes,
    gid: u64,
}

impl Session {
    /// Registers a call with client id `id` and gateway id `gid`; the receiver fires when
    /// the client cancels it.
    pub fn register_call(
        self: &Arc<Self>,
        id: Bytes,
        gid: u64,
    ) -> (InFlightEntry, futures_channel::oneshot::Receiver<()>) {
        let (tx, rx) = futures_channel::oneshot::channel();
        self.in_flight.insert(
            id.clone(),
            InFlight {
                gid,
                cancel: Some(tx),
            },
        );
        (
            InFlightEntry {
                session: self.clone(),
                id,
                gid,
            },
            rx,
        )
    }
}

impl Drop for InFlightEntry {
    fn drop(&mut self) {
        self.session
            .in_flight
            .remove_if(&self.id, |e| e.gid == self.gid);
    }
}

/// A request from an upstream relayed to the client, waiting for the client's answer.
#[derive(Clone)]
pub struct PendingRequest {
    /// The upstream that asked.
    pub upstream: Arc<Upstream>,
    /// The upstream session it asked on.
    pub on: OnSession,
    /// Its id as the upstream wrote it (raw JSON).
    pub original_id: Bytes,
    /// Set when the request stands for one entry of a 2026-07-28 upstream's input-required
    /// result: the client's answer goes to the call's relay (with the entry's key), not to
    /// the upstream.
    pub to_relay: Option<(flume::Sender<(String, Bytes)>, String)>,
}

/// One client session.
pub struct Session {
    /// Its id.
    pub id: SessionId,
    /// The virtual server it was opened on (`None`: `/mcp`); it is usable only there.
    pub server: Option<String>,
    /// The principal that opened it; only the same credential (`Principal::credential`) may use the
    /// session. Replaced by each request's own (a refreshed token may carry other roles).
    pub principal: ArcSwap<crate::auth::policy::Principal>,
    /// Negotiated protocol revision.
    pub version: &'static str,
    /// A request of MCP 2026-07-28 (or later), which has no session: this one lives for that
    /// request only, is in no session map, and its calls run on the gateway's own upstream
    /// sessions.
    pub stateless: bool,
    /// A 2026-07-28 request's own log level (its `_meta` logLevel, as a rank of
    /// `mcp::version::LOG_LEVELS`): its call relays log messages at or above it; `None`, none.
    pub request_log_level: Option<u8>,
    /// What the client said in `initialize` (capabilities, clientInfo): per-client upstream
    /// sessions are initialized with it, so upstreams see what the client supports.
    pub hello: Hello,
    /// Per-client upstream sessions, by upstream name.
    pub upstreams: SessionMap<Arc<str>, Arc<UpstreamSession>>,
    /// Client requests in flight upstream, by the client's raw id.
    pub in_flight: SessionMap<Bytes, InFlight>,
    /// Upstream requests waiting for the client's answer, by the id the client saw.
    pub server_requests: SessionMap<u64, PendingRequest>,
    /// The inbox of the client's GET stream, while one is open.
    pub outbox: ArcSwapOption<Outbox>,
    /// The log level the client set (`logging/setLevel`), applied to new upstream sessions.
    pub log_level: ArcSwapOption<String>,
    /// Replay buffers of recent SSE streams, by stream number (0: the GET stream).
    pub streams: SessionMap<u32, Arc<Replay>>,
    next_stream: std::sync::atomic::AtomicU32,
    /// Last use, ms since the gateway's clock origin.
    last_seen_ms: AtomicU64,
    /// Made on the first [`Session::ended`] (most sessions are never waited on: a
    /// 2026-07-28 request's never is). Dropped with the session: every receiver then wakes
    /// (disconnected).
    alive: std::sync::OnceLock<(flume::Sender<()>, flume::Receiver<()>)>,
}

impl Session {
    fn new(
        id: SessionId,
        version: &'static str,
        hello: Hello,
        server: Option<String>,
        principal: Arc<crate::auth::policy::Principal>,
        now_ms: u64,
    ) -> Self {
        Session {
            id,
            server,
            principal: ArcSwap::new(principal),
            version,
            stateless: false,
            request_log_level: None,
            hello,
            upstreams: SessionMap::new(),
            in_flight: SessionMap::new(),
            server_requests: SessionMap::new(),
            outbox: ArcSwapOption::empty(),
            log_level: ArcSwapOption::empty(),
            streams: SessionMap::new(),
            next_stream: std::sync::atomic::AtomicU32::new(1),
            last_seen_ms: AtomicU64::new(now_ms),
            alive: std::sync::OnceLock::new(),
        }
    }

    /// The context of one MCP 2026-07-28 request: not registered anywhere, id
    /// [`STATELESS_ID`] (what logs and the audit log show for it).
    pub fn stateless(
        (version, hello, log_level): (&'static str, Hello, Option<u8>),
        server: Option<String>,
        principal: Arc<crate::auth::policy::Principal>,
        now_ms: u64,
    ) -> Self {
        let id = SessionId::fixed(STATELESS_ID);
        Session {
            stateless: true,
            request_log_level: log_level,
            ..Session::new(id, version, hello, server, principal, now_ms)
        }
    }

    /// Readies a stateless session that nothing else holds for another request (see
    /// [`Spares`]): what the last request left is dropped, its tables keep their room.
    fn reuse(
        &mut self,
        (version, hello, log_level): (&'static str, Hello, Option<u8>),
        server: Option<String>,
        principal: Arc<crate::auth::policy::Principal>,
        now_ms: u64,
    ) {
        // Every field named: one added to Session must be reset here too (or the build
        // fails), so nothing of one request's session reaches the next request's.
        let Session {
            id: _,
            server: s_server,
            principal: s_principal,
            version: s_version,
            stateless: _,
            request_log_level,
            hello: s_hello,
            upstreams,
            in_flight,
            server_requests,
            outbox,
            log_level: s_log_level,
            streams,
            next_stream,
            last_seen_ms,
            alive,
        } = self;
        *s_server = server;
        // Replacing (or dropping) an ArcSwap's value waits for its readers, a walk of
        // arc_swap's debt lists: skipped when the value is already the one wanted (the same
        // client's next request; the empty slots of a session that had none).
        if !Arc::ptr_eq(&s_principal.load(), &principal) {
            s_principal.store(principal);
        }
        *s_version = version;
        *request_log_level = log_level;
        *s_hello = hello;
        *last_seen_ms = AtomicU64::new(now_ms);
        *next_stream = std::sync::atomic::AtomicU32::new(1);
        upstreams.clear();
        in_flight.clear();
        server_requests.clear();
        streams.clear();
        if outbox.load().is_some() {
            outbox.store(None);
        }
        if s_log_level.load().is_some() {
            s_log_level.store(None);
        }
        // Receivers of the last request's `ended()` wake now, as they would have when the
        // session was dropped.
        *alive = std::sync::OnceLock::new();
    }

    /// Marks the session used now.
    pub fn touch(&self, now_ms: u64) {
        self.last_seen_ms.store(now_ms, Ordering::Relaxed);
    }

    /// A new POST stream's number and replay buffer (registered in `streams`).
    pub fn open_stream(&self, cap: usize, cap_bytes: usize) -> (u32, Arc<Replay>) {
        let n = self.next_stream.fetch_add(1, Ordering::Relaxed);
        let r = Arc::new(Replay::new(cap, cap_bytes));
        self.streams.insert(n, r.clone());
        (n, r)
    }

    /// The GET stream's replay buffer (stream 0), created on first use.
    pub fn get_stream(&self, cap: usize, cap_bytes: usize) -> Arc<Replay> {
        self.streams
            .get_or_insert_with(0, || Arc::new(Replay::new(cap, cap_bytes)))
    }

    /// A receiver that resolves (as disconnected) once the session is gone: ended by the
    /// client, expired, or the gateway stopping. Streams of the session wait on it instead
    /// of polling the table.
    pub fn ended(&self) -> flume::Receiver<()> {
        self.alive.get_or_init(|| flume::bounded(1)).1.clone()
    }
}

/// All sessions.
#[derive(Default)]
pub struct Sessions {
    /// Keyed by ids the gateway made (random): a fast hasher is enough.
    map: DashMap<SessionId, Arc<Session>, foldhash::fast::RandomState>,
}

impl Sessions {
    /// Creates a session for `version`.
    pub fn create(
        &self,
        version: &'static str,
        hello: Hello,
        server: Option<String>,
        principal: Arc<crate::auth::policy::Principal>,
        now_ms: u64,
    ) -> std::io::Result<SessionId> {
        let id = SessionId::random()?;
        let sess = Session::new(id.clone(), version, hello, server, principal, now_ms);
        self.map.insert(id.clone(), Arc::new(sess));
        Ok(id)
    }

    /// The session, if it exists.
    pub fn get(&self, id: &SessionId) -> Option<Arc<Session>> {
        self.map.get(id).map(|s| s.clone())
    }

    /// Ends a session; returns it (for cleanup of its upstream sessions) if it existed.
    pub fn remove(&self, id: &SessionId) -> Option<Arc<Session>> {
        self.map.remove(id).map(|(_, s)| s)
    }

    /// Every live session (for broadcasts such as `list_changed`).
    pub fn all(&self) -> Vec<Arc<Session>> {
        self.map.iter().map(|e| e.value().clone()).collect()
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Ends sessions idle longer than `idle`; returns them.
    pub fn expire(&self, now_ms: u64, idle: Duration) -> Vec<Arc<Session>> {
        let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        let old: Vec<SessionId> = self
            .map
            .iter()
            .filter(|e| {
                now_ms.saturating_sub(e.value().last_seen_ms.load(Ordering::Relaxed)) > idle_ms
            })
            .map(|e| e.key().clone())
            .collect();
        old.iter().filter_map(|id| self.remove(id)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anonymous() -> Arc<crate::auth::policy::Principal> {
        Arc::new(crate::auth::policy::Principal::new(
            "anonymous",
            crate::auth::policy::Method::Anonymous,
            None,
            crate::auth::policy::Grant::everything(),
        ))
    }

    #[test]
    fn ids_are_random_and_parse_back() {
        let a = SessionId::random().expect("random");
        let b = SessionId::random().expect("random");
        assert_ne!(a, b);
        assert_eq!(SessionId::parse(a.as_str().as_bytes()), Some(a));
        assert_eq!(SessionId::parse(b"short"), None);
        assert_eq!(SessionId::parse(&[b'G'; 32]), None);
        // Each byte is held to lowercase hex, at any position.
        for bad in [b'/', b':', b'`', b'g', b'A', b'F', 0x80, 0] {
            for at in [0, 17, 31] {
                let mut v = *b"0123456789abcdef0123456789abcdef";
                v[at] = bad;
                assert_eq!(SessionId::parse(&v), None, "{bad} at {at}");
            }
        }
        assert!(SessionId::parse(b"0123456789abcdef0123456789abcdef").is_some());
    }

    #[test]
    fn expiry_and_removal() {
        let s = Sessions::default();
        let a = s
            .create("2025-11-25", Hello::gateway(), None, anonymous(), 0)
            .expect("create");
        let b = s
            .create("2025-11-25", Hello::gateway(), None, anonymous(), 0)
            .expect("create");
        let a_ended = s.get(&a).expect("a").ended();
        s.get(&b).expect("b").touch(5_000);
        assert!(matches!(
            a_ended.try_recv(),
            Err(flume::TryRecvError::Empty)
        ));
        assert_eq!(s.expire(6_000, Duration::from_secs(2)).len(), 1);
        assert!(s.get(&a).is_none());
        assert!(matches!(
            a_ended.try_recv(),
            Err(flume::TryRecvError::Disconnected)
        ));
        assert!(s.remove(&b).is_some());
        assert!(s.remove(&b).is_none());
        assert!(s.is_empty());
    }

    #[test]
    fn spare_stateless_sessions_are_reused_only_when_free() {
        let spares = Spares::default();
        let hello = |name: &'static str| Hello {
            capabilities: Bytes::from_static(b"{}"),
            client_info: Bytes::from_static(name.as_bytes()),
        };
        let a = spares.take(("2026-07-28", hello("a"), Some(3)), None, anonymous(), 1);
        assert!(a.stateless);
        let ended = a.ended();
        let (_entry, _cancel) = a.register_call(Bytes::from_static(b"1"), 7);
        let first = Arc::as_ptr(&a);
        a.log_level.store(Some(Arc::new("debug".into())));
        let a_principal = a.principal.load_full();
        // Held elsewhere (its call's entry): not kept.
        spares.give_back(a.clone());
        drop((_entry, _cancel));
        spares.give_back(a);
        let b_principal = anonymous();
        let b = spares.take(
            ("2026-07-28", hello("b"), None),
            Some("v".into()),
            b_principal.clone(),
            2,
        );
        assert_eq!(Arc::as_ptr(&b), first, "the spare is taken over");
        assert!(Arc::ptr_eq(&b.principal.load(), &b_principal));
        assert!(!Arc::ptr_eq(&b.principal.load(), &a_principal));
        assert!(b.log_level.load().is_none() && b.outbox.load().is_none());
        assert_eq!(&b.hello.client_info[..], b"b");
        assert_eq!(
            (b.request_log_level, b.server.as_deref()),
            (None, Some("v"))
        );
        assert!(b.in_flight.is_empty());
        assert!(
            matches!(ended.try_recv(), Err(flume::TryRecvError::Disconnected)),
            "the last request's waiters wake"
        );
        // A second one while the first is taken is new.
        let c = spares.take(("2026-07-28", hello("c"), None), None, anonymous(), 3);
        assert_ne!(Arc::as_ptr(&c), first);
        // A session with a long life is never kept.
        let s = Sessions::default();
        let id = s
            .create("2025-11-25", Hello::gateway(), None, anonymous(), 0)
            .expect("create");
        let legacy = s.remove(&id).expect("removed");
        spares.give_back(legacy);
        assert_eq!(spares.0.borrow().len(), 0);
    }

    #[test]
    fn replay_keeps_the_last_events() {
        let r = Replay::new(3, usize::MAX);
        for i in 0..5u8 {
            assert_eq!(r.push(Bytes::from(vec![i])), u64::from(i) + 1);
        }
        let (after, done) = r.after(0);
        assert_eq!(
            after.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        assert!(!done);
        assert_eq!(r.after(4).0.len(), 1);
        r.finish();
        assert!(r.after(5).1);
        assert!(r.changed().try_recv().is_ok());
    }
}
