//! Streamable HTTP upstreams (client side of MCP 2025-03-26 .. 2025-11-25).
//!
//! A call is a POST whose answer is either one JSON message or an SSE stream of messages
//! (notifications and server-to-client requests, then the response); [`HttpCall`] yields
//! them one by one as they arrive, so the gateway can relay progress and requests while the
//! call runs. Upstream sessions are values ([`UpstreamSession`]): the caller decides which
//! one a request runs on (the gateway's shared session, or the client's own). A 404 on a
//! session is reported as `UpstreamSessionExpired` so the owner can initialize again.
//!
//! Every request head carries the upstream's configured `headers` and its [`Credential`] (a
//! fixed header, or the OAuth token the control plane's fetcher published), and nothing of the
//! client's own request headers. Their values are [`Secret`]s, exposed only into the head.
//!
//! A new connection goes to the upstream's address only if every address it resolves to
//! passes its outbound address policy ([`crate::net::policy`]); a refusal fails the request
//! as unavailable and logs the address and the reason. Upstreams under the admin API's policy
//! pool their connections apart from the config file's, so that one never rides on a
//! connection the other opened.
//!
//! Connections are kept alive in a per-worker [`Pool`](super::pool::Pool). A pooled
//! connection the upstream closed is replaced once: found closed before the request is
//! written (one idle for a while is looked at first), or after, when the kernel reports that
//! the upstream's TCP refused all of the request (nothing read it). A request that may have
//! been read is never sent again here. After the response of a call has been read,
//! the rest of an SSE stream is drained (briefly) so the connection can be reused.
//!
//! An upstream with replicas (`urls`) has one [`Endpoint`] per URL and a [`Balancer`]: a new
//! session (and the gateway's shared session, one per replica) goes to the replica it picks,
//! and every request of a session goes to the replica that issued it. A request on a session
//! whose replica is ejected, or cannot be connected to, is not sent: it fails as an expired
//! session, so the owner initializes a new one (on another replica) and sends it there. A
//! session without an id (a server that keeps none) is not tied to a replica: each of its
//! requests is balanced on its own.

use std::{collections::VecDeque, sync::Arc, time::Duration};

use arc_swap::ArcSwapOption;
use bytes::{Bytes, BytesMut};
use monoio::net::TcpStream;

use super::{
    balance::{self, Balancer},
    caller::{initialize_body, Caller, INITIALIZED},
    oauth::TokenSource,
    pool::{Conn, Reached},
};
use crate::{
    config::UpstreamAuth,
    error::{Error, ErrorKind, Result},
    jsonrpc::Kind,
    mcp::{
        era::{self, ParamHeaders, Routing},
        version::{STATELESS_VERSION, UPSTREAM_PROTOCOL_VERSION},
        Hello, CLIENT_INFO,
    },
    net::{policy::AddressPolicy, tls::ClientTls, Segments, Stream},
    secret::Secret,
    transport::{
        http::{self as codec, BodyKind, ChunkedDecoder, Limits, ResponseHead},
        sse::SseDecoder,
    },
};

/// Largest upstream answer the gateway accepts, bytes.
const MAX_ANSWER: usize = 64 << 20;
/// Room an answer is read into at first, bytes.
const READ_BUF: usize = 16 << 10;
/// Most room reserved for an answer's body before its bytes arrive, bytes.
const RESERVE_MAX: usize = 1 << 20;
/// Room left past an answer's body when the read buffer grows for it, bytes (see
/// `Body::read_all`).
const ANSWER_SLACK: usize = 8 << 10;
/// Found speaking the legacy era (or not asked).
const FOUND_LEGACY: u8 = 0;
/// Found speaking 2026-07-28 alone (or told to speak only that).
const FOUND_2026: u8 = 1;
/// Found speaking both eras.
const FOUND_BOTH: u8 = 2;

/// Whether `e` is an upstream's refusal (a JSON-RPC error answer, a 4xx) rather than a
/// failure to answer (unreachable, 5xx, 429).
fn refused(e: &Error) -> bool {
    e.http_status.is_some_and(|s| s < 500 && s != 429)
}

/// Distinct capability sets of 2026-07-28 clients that get a legacy session of their own at
/// one upstream (clients of one SDK declare the same set, so a handful in practice).
const CAPABILITY_SESSIONS: usize = 32;
/// How long to wait for the rest of an SSE stream after the response arrived.
const DRAIN_WAIT: Duration = Duration::from_millis(500);

/// A negotiated upstream session.
#[derive(Debug)]
pub struct UpstreamSession {
    /// `Mcp-Session-Id` the upstream issued (a stateless server issues none).
    pub id: Option<String>,
    /// Negotiated protocol version.
    pub version: String,
    /// `capabilities` from the upstream's `initialize` answer.
    pub capabilities: serde_json::Map<String, serde_json::Value>,
    /// The replica that issued it (index in `urls`; 0 for a single URL).
    pub replica: usize,
}

/// One URL of an HTTP upstream.
pub struct Endpoint {
    /// The URL as configured (empty for an upstream built without one).
    pub url: String,
    addr: String,
    host: String,
    path: String,
    tls: Option<ClientTls>,
    /// Key of its connections in the pool: the address, and for TLS the name and CA they
    /// were verified with. Shared with each call's connection (no copy per call).
    pool_key: Arc<str>,
    /// The head of every POST to it up to what changes per request (request line, `Host`,
    /// `Accept`, `Content-Type`, the configured headers and a fixed credential), written
    /// once. It may hold a secret: wiped when dropped.
    post_prefix: std::sync::OnceLock<zeroize::Zeroizing<Vec<u8>>>,
}

impl Endpoint {
    fn new(url: String, addr: String, host: String, path: String, tls: Option<ClientTls>) -> Self {
        let pool_key = match &tls {
            None => addr.as_str().into(),
            Some(t) => format!("{addr} {t:?}").into(),
        };
        Self {
            url,
            addr,
            host,
            path,
            tls,
            pool_key,
            post_prefix: std::sync::OnceLock::new(),
        }
    }
}

/// An HTTP upstream's address and its gateway-wide (shared) session.
pub struct HttpUpstream {
    /// Its name (shared with each call, for its errors: no copy per call).
    name: Arc<str>,
    headers: Vec<(String, Secret)>,
    /// Boxed: most upstreams have none, and `Link` stays small.
    auth: Option<Box<Credential>>,
    connect_timeout: Duration,
    /// What its addresses must pass, checked per new connection.
    outbound: Arc<AddressPolicy>,
    /// Its URL, or one per replica.
    endpoints: Box<[Endpoint]>,
    /// Load and ejections of its replicas; none for a single URL, whose calls pay nothing.
    balancer: Option<Arc<Balancer>>,
    /// The gateway-wide session, one per endpoint.
    shared: Box<[ArcSwapOption<UpstreamSession>]>,
    /// Which revision it is spoken to in, as configured.
    era: crate::config::UpstreamEra,
    /// The era it was found in, one value so that a reader never sees half a change:
    /// [`FOUND_LEGACY`]; [`FOUND_2026`] (only that, or `era` insists: its "session" has no
    /// id, every request carries the envelope, there is no per-client session);
    /// [`FOUND_BOTH`] (`era = "auto"`: `server/discover` offered 2026-07-28 and `initialize`
    /// worked too: a 2026-07-28 client's requests go to it in that era (`modern`), the rest
    /// in the legacy one, so neither is translated).
    found: std::sync::atomic::AtomicU8,
    /// Its 2026-07-28 "session" per endpoint, when `dual`.
    modern: Box<[ArcSwapOption<UpstreamSession>]>,
    /// Legacy sessions for 2026-07-28 clients, by the capabilities they declare (raw JSON;
    /// at most [`CAPABILITY_SESSIONS`]): such a session declares them, so the upstream may
    /// ask those clients what they can answer. Not per client: clients declaring the same
    /// capabilities share one.
    by_capabilities: dashmap::DashMap<Bytes, Arc<UpstreamSession>>,
    /// Its tools' `Mcp-Param-*` headers (2026-07-28), by its own tool name: set by the
    /// control plane from each catalog fetch; only tools that declare any are present.
    param_headers: arc_swap::ArcSwap<std::collections::HashMap<String, ParamHeaders>>,
}

/// The gateway's own credential for an upstream, written into every request head.
pub enum Credential {
    /// A fixed header (`Authorization: Bearer ...`, `X-Api-Key: ...`).
    Header {
        /// Header name.
        name: String,
        /// Its value.
        value: Secret,
    },
    /// An OAuth access token, fetched and refreshed off the workers.
    OAuth(Arc<TokenSource>),
}

impl Credential {
    /// The credential for a validated `auth`; an OAuth one starts its token thread.
    pub fn new(upstream: &str, auth: &UpstreamAuth) -> Self {
        match auth {
            UpstreamAuth::Header { name, value } => Credential::Header {
                name: name.clone(),
                value: value.clone(),
            },
            UpstreamAuth::OAuth(c) => Credential::OAuth(TokenSource::start(upstream, c)),
        }
    }
}

impl HttpUpstream {
    /// An upstream at `addr` (connect) / `host` (Host header) / `path`, over TLS when `tls`
    /// is given.
    pub fn new(
        name: String,
        addr: String,
        host: String,
        path: String,
        headers: Vec<(String, Secret)>,
        connect_timeout: Duration,
        tls: Option<ClientTls>,
    ) -> Self {
        Self {
            name: name.into(),
            headers,
            auth: None,
            connect_timeout,
            outbound: Arc::new(AddressPolicy::new(Vec::new())),
            endpoints: Box::new([Endpoint::new(String::new(), addr, host, path, tls)]),
            balancer: None,
            shared: Box::new([ArcSwapOption::empty()]),
            era: crate::config::UpstreamEra::Auto,
            found: std::sync::atomic::AtomicU8::new(FOUND_LEGACY),
            modern: Box::new([ArcSwapOption::empty()]),
            by_capabilities: dashmap::DashMap::new(),
            param_headers: Default::default(),
        }
    }

    /// Connects only to addresses `policy` allows (default: the always-refused set is
    /// refused). Call after [`HttpUpstream::with_replicas`].
    pub fn with_outbound(mut self, policy: Arc<AddressPolicy>) -> Self {
        if policy.limited() {
            for ep in self.endpoints.iter_mut() {
                ep.pool_key = format!("{} (admin)", ep.pool_key).into();
            }
        }
        self.outbound = policy;
        self
    }

    /// Speaks to it in `era`.
    pub fn with_era(mut self, era: crate::config::UpstreamEra) -> Self {
        self.era = era;
        self
    }

    /// Records the `Mcp-Param-*` headers of its tools (from a fetched `tools/list`).
    pub fn set_param_headers(&self, tools: &[serde_json::Value]) {
        let map: std::collections::HashMap<String, ParamHeaders> = tools
            .iter()
            .filter_map(|t| {
                let declared = era::param_headers(t);
                let name = t.get("name")?.as_str()?;
                (!declared.is_empty()).then(|| (name.to_string(), declared))
            })
            .collect();
        if !(map.is_empty() && self.param_headers.load().is_empty()) {
            self.param_headers.store(Arc::new(map));
        }
    }

    /// The `Mcp-Param-*` headers its tool `tool` (its own name) declares, if any.
    pub fn param_headers_of(&self, tool: &str) -> Option<ParamHeaders> {
        self.param_headers.load().get(tool).cloned()
    }

    /// Whether it is spoken to in MCP 2026-07-28 (stateless) alone: found to speak only
    /// that, or configured so.
    pub fn is_stateless(&self) -> bool {
        self.found.load(std::sync::atomic::Ordering::Relaxed) == FOUND_2026
    }

    /// Whether it was found to speak both eras: 2026-07-28 clients' requests go to it in
    /// 2026-07-28 ([`HttpUpstream::ensure_modern`]), the rest on legacy sessions.
    pub fn is_dual(&self) -> bool {
        self.found.load(std::sync::atomic::Ordering::Relaxed) == FOUND_BOTH
    }

    /// The session [`HttpUpstream::for_capabilities`] would give without replacing one, when
    /// it is open already (no IO).
    pub fn ready_for_capabilities(&self, capabilities: &Bytes) -> Option<Arc<UpstreamSession>> {
        let declares_none = capabilities
            .iter()
            .all(|b| b.is_ascii_whitespace() || *b == b'{' || *b == b'}');
        if declares_none {
            return self.ready_shared();
        }
        match self.by_capabilities.get(capabilities.as_ref()) {
            Some(e) => Some(e.clone()),
            None if self.by_capabilities.len() >= CAPABILITY_SESSIONS => self.ready_shared(),
            None => None,
        }
    }

    /// The gateway-wide session [`HttpUpstream::ensure_shared`] would give, when it is open
    /// already (no IO).
    pub fn ready_shared(&self) -> Option<Arc<UpstreamSession>> {
        self.shared.get(self.choose(0)).and_then(|s| s.load_full())
    }

    /// The legacy session for a 2026-07-28 client's request that declares `capabilities`:
    /// the gateway-wide session (which declares none) when it declares none, else one
    /// initialized with them (shared by every client declaring the same, kept while the
    /// upstream is). `expired`: the one the upstream no longer knows, replaced. Past
    /// [`CAPABILITY_SESSIONS`] distinct sets, the gateway-wide session.
    pub async fn for_capabilities(
        &self,
        caller: &Caller,
        capabilities: &Bytes,
        expired: Option<&Arc<UpstreamSession>>,
    ) -> Result<Arc<UpstreamSession>> {
        let declares_none = capabilities
            .iter()
            .all(|b| b.is_ascii_whitespace() || *b == b'{' || *b == b'}');
        let current = self
            .by_capabilities
            .get(capabilities.as_ref())
            .map(|e| e.clone());
        let full = current.is_none() && self.by_capabilities.len() >= CAPABILITY_SESSIONS;
        if declares_none || full {
            return match expired {
                Some(_) => self.reinit_shared(caller).await,
                None => self.ensure_shared(caller).await,
            };
        }
        if let Some(s) = current.filter(|s| !expired.is_some_and(|e| Arc::ptr_eq(e, s))) {
            return Ok(s);
        }
        let hello = Hello {
            capabilities: Bytes::copy_from_slice(capabilities),
            client_info: Bytes::from_static(CLIENT_INFO.as_bytes()),
        };
        let fresh = match self.initialize(caller, &hello).await {
            Ok(s) => s,
            // A server refusing a session that declares these: the gateway's own (which
            // declares none) serves them, as it did before.
            Err(e) if refused(&e) => {
                tracing::debug!(upstream = %self.name, error = %e, "initialize with a client's capabilities refused");
                return self.ensure_shared(caller).await;
            }
            Err(e) => return Err(e),
        };
        // Requests racing to initialize: the first in stays, the others end theirs.
        let kept = {
            let mut e = self
                .by_capabilities
                .entry(hello.capabilities)
                .or_insert_with(|| fresh.clone());
            if expired.is_some_and(|x| Arc::ptr_eq(x, e.value())) {
                *e.value_mut() = fresh.clone();
            }
            e.value().clone()
        };
        if !Arc::ptr_eq(&kept, &fresh) {
            self.delete(caller, &fresh).await;
        }
        Ok(kept)
    }

    /// The 2026-07-28 "session" a 2026-07-28 client's request to a dual-era upstream goes
    /// on (the era is found with the gateway-wide session, on first use). A replica not
    /// (yet) found dual gets one too: the request was built for that era, and a replica
    /// that does not speak it answers with an error.
    pub async fn ensure_modern(&self, caller: &Caller) -> Result<Arc<UpstreamSession>> {
        let shared = self.ensure_shared(caller).await?;
        if shared.version == STATELESS_VERSION {
            return Ok(shared);
        }
        Ok(self
            .modern
            .get(shared.replica)
            .and_then(|m| m.load_full())
            .unwrap_or_else(|| {
                Arc::new(UpstreamSession {
                    id: None,
                    version: STATELESS_VERSION.into(),
                    capabilities: serde_json::Map::new(),
                    replica: shared.replica,
                })
            }))
    }

    /// Spreads sessions over `replicas` (two or more; the address given to `new` is
    /// replaced), ejecting failing ones by `outlier`.
    pub fn with_replicas(
        mut self,
        replicas: &[crate::config::Replica],
        outlier: balance::OutlierPolicy,
    ) -> Self {
        if replicas.len() < 2 {
            return self;
        }
        self.endpoints = replicas
            .iter()
            .take(balance::MAX_REPLICAS)
            .map(|r| {
                Endpoint::new(
                    r.url.clone(),
                    r.addr.clone(),
                    r.host.clone(),
                    r.path.clone(),
                    r.tls.clone(),
                )
            })
            .collect();
        self.shared = self
            .endpoints
            .iter()
            .map(|_| ArcSwapOption::empty())
            .collect();
        self.modern = self
            .endpoints
            .iter()
            .map(|_| ArcSwapOption::empty())
            .collect();
        self.balancer = Some(Arc::new(Balancer::new(self.endpoints.len(), outlier)));
        self
    }

    /// Its replicas with their state, when it has several (`urls`).
    pub fn replicas(&self) -> Option<(&[Endpoint], &Balancer)> {
        self.balancer.as_deref().map(|b| (&self.endpoints[..], b))
    }

    /// The replica for a new session: the balancer's pick, avoiding those in `avoid`.
    fn choose(&self, avoid: u64) -> usize {
        match &self.balancer {
            None => 0,
            Some(b) => b.pick(balance::now_ms(), crate::resilience::jitter(), avoid),
        }
    }

    /// Records the outcome of an exchange with `replica` (a no-op for a single URL).
    fn outcome(&self, replica: usize, ok: bool) {
        if let Some(b) = &self.balancer {
            if b.record(replica, ok, balance::now_ms()) {
                let url = self.endpoints.get(replica).map_or("", |e| e.url.as_str());
                tracing::warn!(upstream = %self.name, replica = %url, "replica ejected after consecutive failures");
            }
        }
    }

    fn endpoint(&self, replica: usize) -> &Endpoint {
        self.endpoints.get(replica).unwrap_or(&self.endpoints[0])
    }

    /// Sends `auth` on every request.
    pub fn with_auth(mut self, auth: Option<Credential>) -> Self {
        self.auth = auth.map(Box::new);
        self
    }

    /// Names of the configured extra headers (their values are secrets).
    pub fn header_names(&self) -> impl Iterator<Item = &str> {
        self.headers.iter().map(|(k, _)| k.as_str())
    }

    /// Its credential, if any.
    pub fn credential(&self) -> Option<&Credential> {
        self.auth.as_deref()
    }

    /// Fails (-32003, before anything is sent) when the upstream needs an OAuth token and
    /// has no valid one; the warning is logged by the token source.
    pub fn check_credential(&self) -> Result<()> {
        match self.auth.as_deref() {
            Some(Credential::OAuth(source)) if source.current().is_none() => Err(self.no_token()),
            _ => Ok(()),
        }
    }

    fn no_token(&self) -> Error {
        self.err(ErrorKind::UpstreamUnavailable, "no valid OAuth token")
            .unsent()
    }

    /// Whether its first OAuth token fetch is still under way.
    pub fn token_pending(&self) -> bool {
        matches!(self.auth.as_deref(), Some(Credential::OAuth(s)) if s.pending())
    }

    /// The gateway-wide session, if one was negotiated (with replicas: any replica's).
    pub fn shared_session(&self) -> Option<Arc<UpstreamSession>> {
        self.shared.iter().find_map(|s| s.load_full())
    }

    /// The gateway-wide session, initialized (with the gateway's own hello) when missing.
    /// With replicas, the session of the replica the balancer picks for this call.
    pub async fn ensure_shared(&self, caller: &Caller) -> Result<Arc<UpstreamSession>> {
        let r = self.choose(0);
        match self.shared.get(r).and_then(|s| s.load_full()) {
            Some(s) => Ok(s),
            None => self.init_shared(caller, r).await,
        }
    }

    /// Replaces the gateway-wide session with a fresh one. With replicas, the lost session
    /// was already forgotten where its request failed: this is the session of the replica the
    /// balancer picks, a fresh one only when that replica has none.
    pub async fn reinit_shared(&self, caller: &Caller) -> Result<Arc<UpstreamSession>> {
        if self.balancer.is_some() {
            return self.ensure_shared(caller).await;
        }
        self.init_shared(caller, 0).await
    }

    async fn init_shared(&self, caller: &Caller, first: usize) -> Result<Arc<UpstreamSession>> {
        use crate::config::UpstreamEra;
        let s = match self.era {
            UpstreamEra::Legacy => None,
            era => match self.discover(caller, first).await? {
                Some(s) => Some(s),
                None if era == UpstreamEra::Stateless => {
                    return Err(self.err(
                        ErrorKind::UpstreamUnavailable,
                        "server/discover offers no 2026-07-28 (era = \"2026-07-28\")",
                    ))
                }
                None => None,
            },
        };
        // `auto`: a server offering 2026-07-28 that takes `initialize` too speaks both eras;
        // each client is then served in its own (nothing translated). Tools written for
        // sessions (requests mid-call) fail on a dual-era server's stateless path, so a
        // legacy client must not be moved to it.
        let (modern, legacy) = match s {
            Some(m) if self.era == UpstreamEra::Auto => {
                match self.initialize_from(caller, &Hello::gateway(), first).await {
                    Ok(l) => (Some(m), Some(l)),
                    // Refused (a JSON-RPC error, a 4xx): a server of 2026-07-28 alone. Not
                    // answered (unreachable, 5xx, 429): no verdict yet, asked again later
                    // (kept, a passing failure would serve legacy clients translated for
                    // as long as the era stands).
                    Err(e) if refused(&e) => {
                        tracing::debug!(upstream = %self.name, error = %e, "initialize refused: 2026-07-28 only");
                        (Some(m), None)
                    }
                    Err(e) => return Err(e),
                }
            }
            other => (other, None),
        };
        let found = match (&modern, &legacy) {
            (Some(_), Some(_)) => FOUND_BOTH,
            (Some(_), None) => FOUND_2026,
            _ => FOUND_LEGACY,
        };
        let dual = found == FOUND_BOTH;
        let was = self.found.swap(found, std::sync::atomic::Ordering::Relaxed);
        if was != found || self.era != UpstreamEra::Legacy {
            let era = match found {
                FOUND_2026 => STATELESS_VERSION,
                FOUND_BOTH => "both (each client's own)",
                _ => "legacy (initialize)",
            };
            tracing::info!(upstream = %self.name, era, "upstream era");
        }
        if let Some(slot) = self.modern.get(first) {
            slot.store(modern.clone().filter(|_| dual));
        }
        let s = match (modern, legacy) {
            (_, Some(l)) => l,
            (Some(m), None) => m,
            (None, None) => {
                self.initialize_from(caller, &Hello::gateway(), first)
                    .await?
            }
        };
        if let Some(slot) = self.shared.get(s.replica) {
            slot.store(Some(s.clone()));
        }
        Ok(s)
    }

    /// Forgets `session` if it is a replica's shared session (its replica was lost).
    fn forget_shared(&self, session: &UpstreamSession) {
        if let Some(slot) = self.shared.get(session.replica) {
            let current = slot.load_full();
            if current.as_deref().is_some_and(|c| std::ptr::eq(c, session)) {
                slot.compare_and_swap(&current, None);
            }
        }
    }

    /// Runs `initialize` + `notifications/initialized`; returns the new session. With
    /// replicas, on the one the balancer picks, and on another when that one fails
    /// (initializing twice is harmless).
    pub async fn initialize(&self, caller: &Caller, hello: &Hello) -> Result<Arc<UpstreamSession>> {
        self.initialize_from(caller, hello, self.choose(0)).await
    }

    async fn initialize_from(
        &self,
        caller: &Caller,
        hello: &Hello,
        first: usize,
    ) -> Result<Arc<UpstreamSession>> {
        let (mut replica, mut tried, mut attempts) = (first, 0u64, 1);
        loop {
            match self.initialize_on(caller, hello, replica).await {
                Err(e)
                    if e.kind == ErrorKind::UpstreamUnavailable
                        && self.balancer.is_some()
                        && attempts < self.endpoints.len() =>
                {
                    tracing::debug!(upstream = %self.name, replica = %self.endpoint(replica).url, error = %e, "initialize failed; trying another replica");
                    tried |= 1 << replica;
                    replica = self.choose(tried);
                    attempts += 1;
                }
                other => return other,
            }
        }
    }

    async fn initialize_on(
        &self,
        caller: &Caller,
        hello: &Hello,
        replica: usize,
    ) -> Result<Arc<UpstreamSession>> {
        let id = caller.ids.next();
        let mut call = self
            .start(
                caller,
                replica,
                None,
                &initialize_body(id, hello).into(),
                None,
                None,
            )
            .await?;
        let session_id = call.session_id.take();
        let status = call.status;
        let (raw, result) = self.answer(caller, call, "initialize").await?;
        if raw.is_error() {
            // An answer, with its status: a verdict of the server (see `init_shared`).
            let mut e = self.err(ErrorKind::UpstreamUnavailable, "initialize refused");
            e.http_status = Some(status);
            return Err(e);
        }
        let version = result
            .get("protocolVersion")
            .and_then(|v| v.as_str())
            .unwrap_or(UPSTREAM_PROTOCOL_VERSION)
            .to_string();
        let capabilities = result
            .get("capabilities")
            .and_then(|c| c.as_object())
            .cloned()
            .unwrap_or_default();
        let session = Arc::new(UpstreamSession {
            id: session_id,
            version,
            capabilities,
            replica,
        });
        self.send(caller, &session, Bytes::from_static(INITIALIZED))
            .await?;
        tracing::debug!(upstream = %self.name, version = %session.version, "upstream session initialized");
        Ok(session)
    }

    /// Asks `server/discover` (MCP 2026-07-28): the upstream's stateless "session" when it
    /// lists 2026-07-28; `None` when it answers otherwise (an error, a 4xx, a 5xx other
    /// than 502-504, no such version: a legacy server, some of which fail on a method they
    /// do not know before `initialize`); `Err` when it cannot be reached, is overloaded or
    /// is behind a proxy that cannot reach it (429, 502-504: no verdict).
    async fn discover(
        &self,
        caller: &Caller,
        replica: usize,
    ) -> Result<Option<Arc<UpstreamSession>>> {
        let probe = UpstreamSession {
            id: None,
            version: STATELESS_VERSION.into(),
            capabilities: serde_json::Map::new(),
            replica,
        };
        let id = caller.ids.next();
        let body = Bytes::from(format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"server/discover","params":{{}}}}"#
        ));
        let call = match self
            .start(caller, replica, Some(&probe), &body.into(), None, None)
            .await
        {
            Ok(c) => c,
            Err(e) if e.kind == ErrorKind::UpstreamProtocol => return Ok(None),
            Err(e)
                if e.http_status
                    .is_some_and(|s| s >= 500 && !matches!(s, 502..=504)) =>
            {
                tracing::debug!(upstream = %self.name, status = e.http_status, "server/discover failed: a legacy server");
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        // An answer that is not one (no response, not JSON-RPC) is a legacy server's too.
        let Ok((answer, result)) = self.answer(caller, call, "server/discover").await else {
            return Ok(None);
        };
        let speaks = result
            .get("supportedVersions")
            .and_then(|v| v.as_array())
            .is_some_and(|a| a.iter().any(|v| v.as_str() == Some(STATELESS_VERSION)));
        if answer.is_error() || !speaks {
            return Ok(None);
        }
        let capabilities = result
            .get("capabilities")
            .and_then(|c| c.as_object())
            .cloned()
            .unwrap_or_default();
        Ok(Some(Arc::new(UpstreamSession {
            capabilities,
            ..probe
        })))
    }

    /// The response `call` ends with (messages before it are skipped) and its `result`
    /// decoded (`Null` for an error); `what` names the request in errors.
    async fn answer(
        &self,
        caller: &Caller,
        mut call: Box<HttpCall>,
        what: &str,
    ) -> Result<(crate::jsonrpc::Frame, serde_json::Value)> {
        let f = loop {
            let Some(m) = call.next().await? else {
                return Err(self.err(
                    ErrorKind::UpstreamProtocol,
                    &format!("{what} got no answer"),
                ));
            };
            let f = caller.parser.borrow_mut().parse_upstream(m).map_err(|e| {
                self.err(ErrorKind::UpstreamProtocol, &format!("{what} answer"))
                    .with_source(e)
            })?;
            if f.kind() == Kind::Response {
                break f;
            }
        };
        call.finish(caller).await;
        let result = f
            .result_raw()
            .and_then(|r| serde_json::from_slice::<serde_json::Value>(r).ok())
            .unwrap_or_default();
        Ok((f, result))
    }

    /// Sends a request on `session`; the returned call yields the upstream's messages.
    pub async fn call(
        &self,
        caller: &Caller,
        session: &UpstreamSession,
        body: &Segments,
        traceparent: Option<&str>,
        routing: Option<&Routing>,
    ) -> Result<Box<HttpCall>> {
        let Some(b) = &self.balancer else {
            return self
                .start(caller, 0, Some(session), body, traceparent, routing)
                .await;
        };
        if session.id.is_none() {
            return self
                .call_any(caller, session, body, traceparent, routing)
                .await;
        }
        // A session lives on its replica: when that one is out, the call is not sent and the
        // owner starts a session elsewhere, as for an expired one.
        let r = session.replica;
        if b.ejected(r, balance::now_ms()) && b.others_available(r, balance::now_ms()) {
            self.forget_shared(session);
            return Err(self.err(ErrorKind::UpstreamSessionExpired, "replica ejected"));
        }
        self.check_credential()?;
        match self
            .start(caller, r, Some(session), body, traceparent, routing)
            .await
        {
            // Never sent (connection refused or failed): safe to move.
            Err(e) if e.unsent && e.kind == ErrorKind::UpstreamUnavailable => {
                self.forget_shared(session);
                tracing::info!(upstream = %self.name, replica = %self.endpoint(r).url, error = %e, "replica unreachable; moving the session");
                Err(self.err(ErrorKind::UpstreamSessionExpired, "replica unreachable"))
            }
            Err(e) if e.kind == ErrorKind::UpstreamSessionExpired => {
                self.forget_shared(session);
                Err(e)
            }
            other => other,
        }
    }

    /// A request of a session without an id (a server that keeps no sessions): any replica
    /// serves it, so each is balanced on its own, and one never sent goes to another replica.
    /// Until its answer begins it is noted in `caller` as pending at its replica, so a
    /// timeout that abandons it is counted there ([`Caller::timed_out`]).
    async fn call_any(
        &self,
        caller: &Caller,
        session: &UpstreamSession,
        body: &Segments,
        traceparent: Option<&str>,
        routing: Option<&Routing>,
    ) -> Result<Box<HttpCall>> {
        self.check_credential()?;
        let (mut replica, mut tried, mut attempts) = (self.choose(0), 0u64, 1);
        loop {
            let pending = Pending::new(caller, session, replica);
            let r = self
                .start(caller, replica, Some(session), body, traceparent, routing)
                .await;
            pending.disarm();
            match r {
                Err(e)
                    if e.unsent
                        && e.kind == ErrorKind::UpstreamUnavailable
                        && attempts < self.endpoints.len() =>
                {
                    tried |= 1 << replica;
                    replica = self.choose(tried);
                    attempts += 1;
                }
                other => return other,
            }
        }
    }

    /// Counts a timed-out call on `session` against its replica: the session's own, or for a
    /// session without an id the one its abandoned request was pending at.
    pub fn timed_out_on(&self, caller: &Caller, session: &UpstreamSession) {
        if self.balancer.is_none() {
            return;
        }
        if session.id.is_some() {
            return self.outcome(session.replica, false);
        }
        match caller.abandoned.take() {
            Some((s, r)) if s == std::ptr::from_ref(session) as usize => self.outcome(r, false),
            _ => {}
        }
    }

    /// Sends a notification or a response on `session`; waits for the upstream to accept it.
    pub async fn send(
        &self,
        caller: &Caller,
        session: &UpstreamSession,
        body: Bytes,
    ) -> Result<()> {
        let call = self
            .start(
                caller,
                session.replica,
                Some(session),
                &body.into(),
                None,
                None,
            )
            .await?;
        call.finish(caller).await;
        Ok(())
    }

    /// Opens the session's server-to-client stream: `GET` in the legacy era (`Ok(None)`
    /// when the upstream offers none: 405), a `subscriptions/listen` request for every list
    /// change and the resources `uris` (original URIs) in the 2026-07-28 era (the answer
    /// ends the stream: a result when the upstream closes it, -32601 from an upstream without
    /// it, another error when it refuses this one; the reader decides what follows).
    pub async fn listen(
        &self,
        caller: &Caller,
        session: &UpstreamSession,
        uris: &[String],
    ) -> Result<Option<Box<HttpCall>>> {
        if session.version == STATELESS_VERSION {
            let body = Bytes::from(format!(
                r#"{{"jsonrpc":"2.0","id":"mcpgw-watch","method":"subscriptions/listen","params":{{"notifications":{{"toolsListChanged":true,"promptsListChanged":true,"resourcesListChanged":true,"resourceSubscriptions":{}}}}}}}"#,
                serde_json::to_string(uris).unwrap_or_else(|_| "[]".into())
            ));
            return self
                .start(
                    caller,
                    session.replica,
                    Some(session),
                    &body.into(),
                    None,
                    None,
                )
                .await
                .map(Some);
        }
        let req = self.head("GET", session.replica, Some(session), None, None, &[])?;
        match self
            .exchange_pooled(caller, session.replica, req, "GET")
            .await
        {
            Ok(c) if c.status == 400 => Err(self.err(ErrorKind::UpstreamProtocol, "HTTP 400")),
            Ok(c) => Ok(Some(c)),
            Err(e) if e.context.ends_with("HTTP 405") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Ends `session` at the upstream (`DELETE`), best effort.
    pub async fn delete(&self, caller: &Caller, session: &UpstreamSession) {
        if session.id.is_none() {
            return;
        }
        let exchange = match self.head("DELETE", session.replica, Some(session), None, None, &[]) {
            Ok(req) => {
                self.exchange_pooled(caller, session.replica, req, "DELETE")
                    .await
            }
            Err(e) => Err(e),
        };
        match exchange {
            Ok(c) => c.finish(caller).await,
            Err(e) => {
                tracing::debug!(upstream = %self.name, error = %e, "upstream session DELETE failed")
            }
        }
    }

    fn err(&self, kind: ErrorKind, what: &str) -> Error {
        Error::new(kind, format!("upstream {}: {what}", self.name))
    }

    /// The request: its head, then its body as given (written together, not joined). Fails,
    /// before anything is sent, when the upstream's OAuth token is missing or expired.
    fn head(
        &self,
        method: &str,
        replica: usize,
        session: Option<&UpstreamSession>,
        body: Option<&Segments>,
        traceparent: Option<&str>,
        routing: &[(std::borrow::Cow<'static, str>, Vec<u8>)],
    ) -> Result<Segments> {
        // Declared before `token_field`, which borrows it.
        let token;
        let token_field: Option<(&str, &[u8])> = match self.auth.as_deref() {
            Some(Credential::OAuth(source)) => {
                token = source.current().ok_or_else(|| self.no_token())?;
                Some(("Authorization", token.header.expose().as_bytes()))
            }
            _ => None,
        };
        let per_request: [Option<(&str, &[u8])>; 3] = [
            session
                .and_then(|s| s.id.as_deref())
                .map(|id| ("Mcp-Session-Id", id.as_bytes())),
            session.map(|s| ("MCP-Protocol-Version", s.version.as_bytes())),
            traceparent.map(|tp| ("traceparent", tp.as_bytes())),
        ];
        let per_request = per_request
            .into_iter()
            .flatten()
            .chain(routing.iter().map(|(k, v)| (k.as_ref(), &v[..])))
            .chain(token_field);
        let ep = self.endpoint(replica);
        let fixed = match (method, body) {
            ("POST", Some(_)) => None,
            _ => Some(zeroize::Zeroizing::new(self.fixed_head(
                ep,
                method,
                body.is_some(),
            ))),
        };
        let prefix: &[u8] = match &fixed {
            Some(f) => f,
            None => ep
                .post_prefix
                .get_or_init(|| zeroize::Zeroizing::new(self.fixed_head(ep, "POST", true))),
        };
        let head = crate::arena::build(prefix.len() + 256, |head| {
            head.extend_from_slice(prefix);
            codec::write_request_fields(head, per_request);
            codec::write_request_end(head, body.map_or(0, |b| b.len()));
        });
        let mut req = Segments::default();
        req.push(head);
        for part in body.iter().flat_map(|b| b.iter()) {
            req.push(part.clone());
        }
        Ok(req)
    }

    /// The part of a request head to `ep` that is the same for every request of `method`:
    /// the request line, `Host`, `Accept`, `Content-Type` (with a body), the configured
    /// headers and a fixed credential.
    fn fixed_head(&self, ep: &Endpoint, method: &str, with_body: bool) -> Vec<u8> {
        let accept: &[u8] = if method == "GET" {
            b"text/event-stream"
        } else {
            b"application/json, text/event-stream"
        };
        let credential = match self.auth.as_deref() {
            Some(Credential::Header { name, value }) => {
                Some((name.as_str(), value.expose().as_bytes()))
            }
            _ => None,
        };
        let fields = [
            Some(("Accept", accept)),
            with_body.then_some(("Content-Type", &b"application/json"[..])),
        ]
        .into_iter()
        .flatten()
        .chain(
            self.headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.expose().as_bytes())),
        )
        .chain(credential);
        let mut out = BytesMut::with_capacity(256);
        codec::write_request_start(&mut out, method, &ep.path, &ep.host);
        codec::write_request_fields(&mut out, fields);
        // Into a Vec without a copy the allocator keeps: the caller wipes it.
        Vec::from(out)
    }

    async fn start(
        &self,
        caller: &Caller,
        replica: usize,
        session: Option<&UpstreamSession>,
        body: &Segments,
        traceparent: Option<&str>,
        routing: Option<&Routing>,
    ) -> Result<Box<HttpCall>> {
        let stateless = session.is_some_and(|s| s.version == STATELESS_VERSION);
        // The routing headers a 2026-07-28 upstream needs: given by the front (which parsed
        // the request already), else read from the body.
        let (body, routing) = match (stateless, routing) {
            (false, _) => (
                std::borrow::Cow::Borrowed(body),
                std::borrow::Cow::Owned(Vec::new()),
            ),
            (true, Some(r)) => (
                std::borrow::Cow::Borrowed(body),
                std::borrow::Cow::Borrowed(r),
            ),
            (true, None) => {
                let (body, r) =
                    for_stateless_upstream(caller, body.concat(), |t| self.param_headers_of(t));
                (
                    std::borrow::Cow::Owned(body.into()),
                    std::borrow::Cow::Owned(r),
                )
            }
        };
        let req = self.head("POST", replica, session, Some(&body), traceparent, &routing)?;
        // Outstanding at its replica until the call is dropped.
        let load = self.balancer.as_ref().map(|b| Load::new(b, replica));
        let mut call = self.exchange_pooled(caller, replica, req, "POST").await?;
        call.load = load;
        // In 2026-07-28 an error answer comes with 400 or 404 and a JSON-RPC error body: an
        // answer like any other. Before it, 404 is an expired session and 400 a failure.
        if !stateless {
            if call.status == 404 && session.is_some() {
                return Err(self.err(ErrorKind::UpstreamSessionExpired, "404"));
            }
            if call.status == 400 {
                tracing::warn!(upstream = %self.name, status = 400, "upstream answered with an HTTP error");
                let mut e = self.err(ErrorKind::UpstreamProtocol, "HTTP 400");
                e.http_status = Some(400);
                return Err(e);
            }
        }
        Ok(call)
    }

    /// One exchange, on a pooled connection when there is one (replaced once if closed).
    async fn exchange_pooled(
        &self,
        caller: &Caller,
        replica: usize,
        req: Segments,
        method: &str,
    ) -> Result<Box<HttpCall>> {
        let ep = self.endpoint(replica);
        if let Some(taken) = caller.pool.take(&ep.pool_key) {
            match self.exchange(ep, replica, taken, &req, method, true).await {
                Ok(r) => return Ok(r),
                // Closed as the request went out: it may have been read, so it is not sent
                // again here; the caller retries what is safe to retry. A write that failed
                // outright, or a request the upstream's TCP refused, reached nobody.
                Err(Stale::Before) => {
                    self.outcome(replica, false);
                    return Err(self.err(
                        ErrorKind::UpstreamUnavailable,
                        "pooled connection closed before an answer",
                    ));
                }
                Err(Stale::Unwritten) => {}
                Err(Stale::Failed(e)) => return Err(e),
            }
        }
        let conn = match self.connect(ep).await {
            Ok(c) => c,
            Err(e) => {
                self.outcome(replica, false);
                return Err(e.unsent());
            }
        };
        self.exchange(ep, replica, (conn, BytesMut::new()), &req, method, false)
            .await
            .map_err(|e| match e {
                Stale::Before => {
                    self.outcome(replica, false);
                    self.err(
                        ErrorKind::UpstreamUnavailable,
                        "connection closed before an answer",
                    )
                }
                Stale::Unwritten => self
                    .err(
                        ErrorKind::UpstreamUnavailable,
                        "connection closed before the request",
                    )
                    .unsent(),
                Stale::Failed(e) => e,
            })
    }

    /// A reused connection ended before any byte of the answer to the request written on it
    /// after `mark`: [`Stale::Unwritten`] if the upstream's TCP refused all of it (the
    /// upstream had closed the connection while it sat idle; nothing read the request, so it
    /// goes again on a new connection), else [`Stale::Before`] (it may have been read). The
    /// refusal, a reset, comes a round trip after the request: waited for, within a bound.
    async fn unreached(&self, conn: &Conn, mark: Option<u64>, read_error: Option<i32>) -> Stale {
        let started = std::time::Instant::now();
        loop {
            let (reached, rtt_us) = conn.reached(mark, read_error);
            match reached {
                Reached::No => {
                    tracing::debug!(upstream = %self.name,
                        "pooled connection closed by the upstream; the request never reached it");
                    return Stale::Unwritten;
                }
                Reached::Yes => return Stale::Before,
                Reached::Unknown if mark.is_none() => return Stale::Before,
                Reached::Unknown => {}
            }
            // Four round trips, at least 5 ms and at most 200 ms.
            let bound = Duration::from_micros(u64::from(rtt_us) * 4)
                .clamp(Duration::from_millis(5), Duration::from_millis(200));
            if started.elapsed() >= bound {
                return Stale::Before;
            }
            let step = Duration::from_micros(u64::from(rtt_us / 2)).max(Duration::from_micros(200));
            monoio::time::sleep(step).await;
        }
    }

    /// A new connection; for `https://` with its handshake done. Both within
    /// `connect_timeout_ms`.
    async fn connect(&self, ep: &Endpoint) -> Result<Conn> {
        let deadline = monoio::time::Instant::now() + self.connect_timeout;
        // Resolved here (as `TcpStream::connect` would, blocking for a name) so that every
        // address is checked, each time: a name that comes to resolve elsewhere is caught.
        let addr = match self.outbound.resolve(&ep.addr) {
            Ok(addrs) => addrs.first().copied(),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                tracing::warn!(upstream = %self.name, addr = %ep.addr, error = %e,
                    "connect refused by the outbound address policy");
                let mut err = self
                    .err(ErrorKind::UpstreamUnavailable, "connect")
                    .with_source(e);
                err.retryable = false;
                return Err(err);
            }
            Err(e) => {
                return Err(self
                    .err(ErrorKind::UpstreamUnavailable, "connect")
                    .with_source(e))
            }
        };
        let Some(addr) = addr else {
            return Err(self.err(ErrorKind::UpstreamUnavailable, "connect: no address"));
        };
        let tcp = match monoio::time::timeout_at(deadline, TcpStream::connect_addr(addr)).await {
            Ok(Ok(c)) => {
                let _ = c.set_nodelay(true);
                c
            }
            Ok(Err(e)) => {
                return Err(self
                    .err(ErrorKind::UpstreamUnavailable, "connect")
                    .with_source(e))
            }
            Err(_) => return Err(self.err(ErrorKind::UpstreamUnavailable, "connect timed out")),
        };
        let Some(tls) = &ep.tls else {
            return Ok(Conn::Plain(super::pool::Plain::new(tcp)));
        };
        match monoio::time::timeout_at(deadline, tls.connect(tcp)).await {
            Ok(Ok(t)) => Ok(Conn::Tls(Box::new(t))),
            Ok(Err(e)) => {
                tracing::warn!(upstream = %self.name, error = %e, "TLS handshake with the upstream failed");
                Err(self
                    .err(ErrorKind::UpstreamUnavailable, "TLS handshake")
                    .with_source(e))
            }
            Err(_) => Err(self.err(ErrorKind::UpstreamUnavailable, "TLS handshake timed out")),
        }
    }

    async fn exchange(
        &self,
        ep: &Endpoint,
        replica: usize,
        (mut conn, mut buf): (Conn, BytesMut),
        req: &Segments,
        method: &str,
        reused: bool,
    ) -> std::result::Result<Box<HttpCall>, Stale> {
        let mark = conn.mark();
        // What the socket does not take at once (rarely anything) goes as a queued write, of
        // a copy of the parts' references: `req` stays whole for a retry.
        let unwritten = match conn.write_now(req) {
            Err(_) => true,
            Ok(n) if n < req.len() => {
                let mut rest = req.clone();
                rest.advance(n);
                conn.write_segments(rest).await.is_err()
            }
            Ok(_) => false,
        };
        if unwritten {
            return Err(Stale::Unwritten);
        }
        let limits = Limits {
            max_header_bytes: 64 << 10,
            max_body_bytes: MAX_ANSWER,
        };
        // The connection's buffer when the last answer read into it is gone by now.
        if !buf.try_reclaim(READ_BUF) {
            buf = BytesMut::with_capacity(READ_BUF);
        }
        let head = loop {
            // (Nothing to parse before the first read.)
            let parsed = match buf.is_empty() {
                true => Ok(None),
                false => codec::parse_response_head(&buf, method, &limits),
            };
            match parsed {
                // An interim 1xx answer: skip it and read the real one.
                Ok(Some(h)) if (100..200).contains(&h.status) => {
                    let _ = buf.split_to(h.head_len);
                    continue;
                }
                Ok(Some(h)) => break h,
                Ok(None) => {}
                Err(e) => {
                    return Err(Stale::Failed(
                        self.err(ErrorKind::UpstreamProtocol, "bad response head")
                            .with_source(e),
                    ))
                }
            }
            let first = buf.is_empty();
            match read_upstream(&mut conn, &mut buf, !first).await {
                Ok(0) if first && reused => return Err(self.unreached(&conn, mark, None).await),
                Err(e) if first && reused => {
                    return Err(self.unreached(&conn, mark, e.raw_os_error()).await)
                }
                Ok(0) | Err(_) if first => return Err(Stale::Before),
                Ok(0) => {
                    return Err(Stale::Failed(
                        self.err(ErrorKind::UpstreamUnavailable, "closed mid-answer"),
                    ))
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(Stale::Failed(
                        self.err(ErrorKind::UpstreamUnavailable, "read")
                            .with_source(e),
                    ))
                }
            }
        };
        let _ = buf.split_to(head.head_len);
        let status = head.status;
        let sse = head.header("content-type").is_some_and(|c| {
            let media = b"text/event-stream";
            c.trim_ascii_start()
                .get(..media.len())
                .is_some_and(|m| m.eq_ignore_ascii_case(media))
        });
        // Boxed where it is made: it is returned through several levels, each of which
        // would move its 456 bytes (the allocation was made one level up before). The room
        // is allocated first so that it is built there, not built and copied in.
        let room = Box::new_uninit();
        let call = Box::write(
            room,
            HttpCall {
                session_id: head.header_str("mcp-session-id").map(str::to_string),
                status,
                sse: sse.then(|| SseDecoder::new(MAX_ANSWER)),
                queue: VecDeque::new(),
                body: Body::new(&head, buf),
                keep_alive: head.keep_alive,
                conn,
                addr: ep.pool_key.clone(),
                name_hint: self.name.clone(),
                load: None,
            },
        );
        // Answered: a failure for the replica only with a 5xx.
        self.outcome(replica, status < 500);
        // 400 and 404 are judged by the caller (they are answers in 2026-07-28).
        if status == 404 || status == 400 || (200..300).contains(&status) {
            return Ok(call);
        }
        tracing::warn!(upstream = %self.name, status, "upstream answered with an HTTP error");
        if status == 401 {
            if let Some(Credential::OAuth(source)) = self.auth.as_deref() {
                source.rejected();
            }
        }
        let kind = if status >= 500 || status == 429 {
            ErrorKind::UpstreamUnavailable
        } else {
            ErrorKind::UpstreamProtocol
        };
        let mut e = self.err(kind, &format!("HTTP {status}"));
        e.http_status = Some(status);
        Err(Stale::Failed(e))
    }
}

/// Why an exchange failed: the request could not be written (it reached nobody), the
/// connection closed before any answer byte (the request may have been read), or later.
enum Stale {
    Unwritten,
    Before,
    Failed(Error),
}

/// One HTTP exchange with an upstream, read message by message.
pub struct HttpCall {
    /// `Mcp-Session-Id` of the answer, if any.
    pub session_id: Option<String>,
    status: u16,
    sse: Option<SseDecoder>,
    queue: VecDeque<Bytes>,
    body: Body,
    keep_alive: bool,
    conn: Conn,
    /// Pool key of `conn`.
    addr: Arc<str>,
    /// The upstream's name, for errors.
    name_hint: Arc<str>,
    /// Counts it as outstanding at its replica (upstreams with replicas only).
    load: Option<Load>,
}

/// A balanced request whose answer has not begun; dropped armed (abandoned, e.g. by a
/// timeout), it leaves its replica in the caller for [`HttpUpstream::timed_out_on`].
struct Pending<'a> {
    caller: &'a Caller,
    /// The session's address: only a timeout on that session takes it.
    session: usize,
    replica: usize,
    armed: bool,
}

impl<'a> Pending<'a> {
    fn new(caller: &'a Caller, session: &UpstreamSession, replica: usize) -> Self {
        Self {
            caller,
            session: std::ptr::from_ref(session) as usize,
            replica,
            armed: true,
        }
    }

    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.caller
                .abandoned
                .set(Some((self.session, self.replica)));
        }
    }
}

/// A request outstanding at a replica, until dropped.
struct Load {
    balancer: Arc<Balancer>,
    replica: usize,
}

impl Load {
    fn new(balancer: &Arc<Balancer>, replica: usize) -> Self {
        balancer.begin(replica);
        Self {
            balancer: balancer.clone(),
            replica,
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.balancer.end(self.replica);
    }
}

impl HttpCall {
    /// Counts this call, which timed out, as a failure of its replica (upstreams with
    /// replicas only).
    pub fn timed_out(&self) {
        if let Some(l) = &self.load {
            l.balancer.record(l.replica, false, balance::now_ms());
        }
    }

    fn err(&self, kind: ErrorKind, what: &str) -> Error {
        Error::new(kind, format!("upstream {}: {what}", self.name_hint))
    }

    /// The next message of the answer; `None` at its end (a 202 has none).
    pub async fn next(&mut self) -> Result<Option<Bytes>> {
        if self.status == 202 {
            return Ok(None);
        }
        let Some(dec) = self.sse.as_mut() else {
            // A JSON answer is one message: the whole body.
            if self.body.done && self.body.taken {
                return Ok(None);
            }
            let all = self
                .body
                .read_all(&mut self.conn)
                .await
                .map_err(|e| self.body_err(e))?;
            self.body.taken = true;
            if all.iter().all(u8::is_ascii_whitespace) {
                return Ok(None);
            }
            return Ok(Some(all));
        };
        loop {
            if let Some(m) = self.queue.pop_front() {
                return Ok(Some(m));
            }
            let chunk = match self.body.next_chunk(&mut self.conn).await {
                Ok(Some(c)) => c,
                Ok(None) => return Ok(None),
                Err(e) => return Err(self.body_err(e)),
            };
            let events = dec
                .feed(&chunk)
                .map_err(|_| Error::new(ErrorKind::UpstreamProtocol, "SSE event too large"))?;
            self.queue.extend(
                events
                    .into_iter()
                    .filter(|e| !e.data.is_empty())
                    .map(|e| e.data),
            );
        }
    }

    /// Ends the call at once when its answer has been read whole (a JSON answer, or an SSE
    /// stream already at its end): its connection goes back to the pool, and `None` is
    /// returned. Otherwise the call comes back, for [`HttpCall::finish`] to drain.
    pub fn finish_now(self: Box<Self>, caller: &Caller) -> Option<Box<Self>> {
        if !self.body.finished() {
            return Some(self);
        }
        let HttpCall {
            keep_alive,
            body,
            conn,
            addr,
            ..
        } = *self;
        if keep_alive {
            let (buf, peak) = body.keepable();
            caller.pool.put(&addr, conn, buf, peak);
        }
        None
    }

    /// Ends the exchange: reads what is left of the answer (briefly) and returns the
    /// connection to the worker's pool when it is clean.
    pub async fn finish(mut self, caller: &Caller) {
        let drained = monoio::time::timeout(DRAIN_WAIT, self.body.drain(&mut self.conn)).await;
        if matches!(drained, Ok(Ok(()))) && self.keep_alive && self.body.finished() {
            let (buf, peak) = self.body.keepable();
            caller.pool.put(&self.addr, self.conn, buf, peak);
        }
    }

    fn body_err(&self, e: BodyFault) -> Error {
        match e {
            BodyFault::Io(e) => self
                .err(ErrorKind::UpstreamUnavailable, "reading the answer")
                .with_source(e),
            BodyFault::Closed => self.err(ErrorKind::UpstreamUnavailable, "closed mid-answer"),
            BodyFault::Bad(what) => self.err(ErrorKind::UpstreamProtocol, what),
        }
    }
}

enum BodyFault {
    Io(std::io::Error),
    Closed,
    Bad(&'static str),
}

/// Reads a response body in its framing, chunk by chunk.
struct Body {
    kind: BodyKind,
    buf: BytesMut,
    remaining: u64,
    chunked: Option<ChunkedDecoder>,
    done: bool,
    taken: bool,
    /// The most room the buffer had during the exchange (what parking it keeps alive).
    peak: usize,
}

impl Body {
    fn new(head: &ResponseHead, buf: BytesMut) -> Self {
        let (remaining, chunked, done) = match head.body {
            BodyKind::Empty => (0, None, true),
            BodyKind::Length(n) => (n, None, n == 0),
            BodyKind::Chunked => (0, Some(ChunkedDecoder::new(MAX_ANSWER)), false),
            BodyKind::UntilClose => (u64::MAX, None, false),
        };
        Self {
            kind: head.body,
            buf,
            remaining,
            chunked,
            done,
            taken: false,
            peak: 0,
        }
    }

    fn finished(&self) -> bool {
        self.done && !matches!(self.kind, BodyKind::UntilClose)
    }

    /// The read buffer, to park with the connection, and the most room it had
    /// ([`super::pool::Pool::put`] decides whether a large one is kept).
    fn keepable(self) -> (BytesMut, usize) {
        (self.buf, self.peak)
    }

    /// Reads more into the buffer, noting the most room it has had.
    async fn read(&mut self, conn: &mut Conn) -> std::io::Result<usize> {
        let n = read_upstream(conn, &mut self.buf, true).await;
        self.peak = self.peak.max(self.buf.capacity());
        n
    }

    /// The next piece of decoded body; `None` at its end.
    async fn next_chunk(
        &mut self,
        conn: &mut Conn,
    ) -> std::result::Result<Option<Bytes>, BodyFault> {
        loop {
            if self.done {
                return Ok(None);
            }
            if let Some(dec) = self.chunked.as_mut() {
                let mut out = BytesMut::new();
                let end = dec
                    .decode(&mut self.buf, &mut out)
                    .map_err(|_| BodyFault::Bad("bad chunked body"))?;
                self.done = end;
                if !out.is_empty() {
                    return Ok(Some(out.freeze()));
                }
                if end {
                    return Ok(None);
                }
            } else if !self.buf.is_empty() {
                let take = (self.buf.len() as u64).min(self.remaining) as usize;
                self.remaining -= take as u64;
                let piece = self.buf.split_to(take).freeze();
                if self.remaining == 0 {
                    self.done = true;
                }
                return Ok(Some(piece));
            }
            match self.read(conn).await {
                Ok(0) if matches!(self.kind, BodyKind::UntilClose) => {
                    self.done = true;
                    return Ok(None);
                }
                Ok(0) => return Err(BodyFault::Closed),
                Ok(_) => {}
                Err(e) => return Err(BodyFault::Io(e)),
            }
        }
    }

    async fn read_all(&mut self, conn: &mut Conn) -> std::result::Result<Bytes, BodyFault> {
        if let (BodyKind::Length(_), false) = (self.kind, self.done) {
            // The whole body in the read buffer, then split off as it is: no copy. (Its
            // length is at most MAX_ANSWER: the head's limits refuse more.)
            let want = usize::try_from(self.remaining).unwrap_or(usize::MAX);
            if self.buf.len() < want {
                // Room for all of it at once, up to 1 MiB: a length the upstream declares
                // is not trusted with more before its bytes arrive (the rest grows as read).
                // And room past it for the next answer's head: the block is kept with the
                // connection, and the next answer of the same size then fits in it after its
                // head, where a block of the body's size alone must grow and copy the body
                // read so far.
                let missing = want - self.buf.len();
                self.buf.reserve(match missing <= RESERVE_MAX {
                    true => missing + ANSWER_SLACK,
                    false => RESERVE_MAX,
                });
            }
            while self.buf.len() < want {
                match self.read(conn).await {
                    Ok(0) => return Err(BodyFault::Closed),
                    Ok(_) => {}
                    Err(e) => return Err(BodyFault::Io(e)),
                }
            }
        }
        let mut all = BytesMut::new();
        while let Some(c) = self.next_chunk(conn).await? {
            if all.len() + c.len() > MAX_ANSWER {
                return Err(BodyFault::Bad("answer too large"));
            }
            if self.done && all.is_empty() {
                // In one piece (always, for a body with a length): as it came.
                return Ok(c);
            }
            all.extend_from_slice(&c);
        }
        Ok(all.freeze())
    }

    async fn drain(&mut self, conn: &mut Conn) -> std::result::Result<(), BodyFault> {
        while self.next_chunk(conn).await?.is_some() {}
        Ok(())
    }
}

/// Reads more of an upstream's answer into `buf`. Once the answer has begun (`began`: some
/// of it was read and more is needed), what has arrived is acknowledged at once (setting
/// `TCP_QUICKACK` sends a delayed ACK now), so an upstream that answers in several small
/// writes (uvicorn: every official Python SDK server) is not held back by its Nagle until
/// our delayed ACK fires (44 ms per call). An answer that comes whole in one read costs
/// neither the `setsockopt` nor a bare ACK: its ACK rides on the next request.
async fn read_upstream(conn: &mut Conn, buf: &mut BytesMut, began: bool) -> std::io::Result<usize> {
    if began {
        if let Some(fd) = conn.fd() {
            crate::runtime::sys::quickack(fd);
        }
    }
    conn.read_more(buf).await
}

/// A request for an upstream that speaks 2026-07-28: `body` with the envelope added when
/// it has none (the gateway's own requests: version, empty client capabilities, the
/// gateway's client info; clients' calls have theirs by now) and the routing headers its
/// method needs.
pub fn for_stateless_upstream(
    caller: &Caller,
    body: Bytes,
    params_of: impl Fn(&str) -> Option<ParamHeaders>,
) -> (Bytes, Routing) {
    let Ok(f) = caller.parser.borrow_mut().parse_one(body.clone()) else {
        return (body, Vec::new());
    };
    let Some(method) = f.method().map(std::borrow::Cow::into_owned) else {
        return (body, Vec::new());
    };
    let name = era::named_param(&method)
        .and_then(|p| f.param(p))
        .and_then(|s| f.str_at(s));
    let routing = era::routing_of(&f, &method, name.as_deref(), params_of);
    let meta = f
        .param("_meta")
        .filter(|m| f.raw_at(*m).is_some_and(|r| r.first() == Some(&b'{')));
    let has_version = meta.is_some_and(|m| f.member(m, era::META_VERSION).is_some());
    if has_version || f.kind() != Kind::Request {
        return (body, routing);
    }
    match era::meta_insert(&f, &era::envelope(&Hello::gateway()), false) {
        Some((span, with)) => (f.splice(&mut [(span, &with)]), routing),
        None => (body, routing),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::era::{
        header_says, header_text, param_headers, META_CAPABILITIES, META_VERSION,
    };

    #[test]
    fn stateless_upstreams_get_the_envelope_and_routing_headers() {
        let caller = crate::upstream::Caller::new(0);
        let cases = [
            // No params, params without _meta, _meta without the envelope, empty _meta.
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"héllo","arguments":{}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"a://b","_meta":{"progressToken":3}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"_meta":{},"name":"p"}}"#,
        ];
        for body in cases {
            let (out, routing) =
                for_stateless_upstream(&caller, Bytes::copy_from_slice(body.as_bytes()), |_| None);
            let v: serde_json::Value = serde_json::from_slice(&out).expect("still JSON");
            let meta = &v["params"]["_meta"];
            assert_eq!(meta[META_VERSION], STATELESS_VERSION, "{body}");
            assert!(meta[META_CAPABILITIES].is_object(), "{body}");
            assert_eq!(routing[0].0, "Mcp-Method");
            assert_eq!(routing[0].1, v["method"].as_str().unwrap_or("").as_bytes());
        }
        // The progress token stays; a non-ASCII name is base64 in Mcp-Name.
        let (out, _) =
            for_stateless_upstream(&caller, Bytes::from_static(cases[2].as_bytes()), |_| None);
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v["params"]["_meta"]["progressToken"], 3);
        let (_, routing) =
            for_stateless_upstream(&caller, Bytes::from_static(cases[1].as_bytes()), |_| None);
        let name = routing
            .iter()
            .find(|(k, _)| *k == "Mcp-Name")
            .expect("Mcp-Name");
        assert_eq!(header_text(&name.1).as_deref(), Some("héllo"));
        assert!(name.1.starts_with(b"=?base64?"));
        // A request that has the envelope already is sent as it is.
        let own = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"sampling":{}}}}}"#;
        let (out, _) =
            for_stateless_upstream(&caller, Bytes::from_static(own.as_bytes()), |_| None);
        assert_eq!(&out[..], own.as_bytes());
    }

    #[test]
    fn param_headers_are_declared_mirrored_and_checked() {
        let tool = serde_json::json!({"name": "t", "inputSchema": {"type": "object", "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "n": {"type": "integer", "x-mcp-header": "N"},
            "f": {"type": "number", "x-mcp-header": "F"},
            "opts": {"type": "object", "properties": {"dry": {"type": "boolean", "x-mcp-header": "Dry"}}},
            "plain": {"type": "string"}}}});
        let mut declared = param_headers(&tool);
        declared.sort();
        assert_eq!(
            declared,
            vec![
                (vec!["n".to_string()], "N".to_string()),
                (
                    vec!["opts".to_string(), "dry".to_string()],
                    "Dry".to_string()
                ),
                (vec!["region".to_string()], "Region".to_string()),
            ]
        );
        // Toward a 2026-07-28 upstream: mirrored from the arguments (non-ASCII as base64).
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"region":"zürich","n":3,"opts":{"dry":true}}}}"#;
        let (_, routing) = for_stateless_upstream(
            &caller_for_tests(),
            Bytes::from_static(body.as_bytes()),
            |t| (t == "t").then(|| declared.clone()),
        );
        let h = |k: &str| routing.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(h("Mcp-Param-N").as_deref(), Some(&b"3"[..]));
        assert_eq!(h("Mcp-Param-Dry").as_deref(), Some(&b"true"[..]));
        let region = h("Mcp-Param-Region").expect("region");
        assert_eq!(header_text(&region).as_deref(), Some("zürich"));
        assert!(region.starts_with(b"=?base64?"));
        // A base64 form that is not canonical says nothing.
        assert!(header_says(b"=?base64?SGVsbG8=?=", "Hello"));
        assert!(!header_says(b"=?base64?SGVsbG8?=", "Hello"));
        assert!(!header_says(b"=?base64?SGVs!!!bG8=?=", "Hello"));
        assert!(header_says(b"=?base64?SGVsbG8=", "=?base64?SGVsbG8="));
    }

    fn caller_for_tests() -> crate::upstream::Caller {
        crate::upstream::Caller::new(0)
    }
}
