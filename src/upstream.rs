//! Upstream MCP servers: how the gateway reaches them and calls them.
//!
//! An [`Upstream`] is immutable and lives in the catalog snapshot. Calls happen on the worker
//! that received the client's request: HTTP upstreams over that worker's own keep-alive pool
//! (`http`), stdio upstreams through the supervisor that owns the child process (`stdio`).
//! A [`Call`] yields the upstream's messages for one request as they arrive (progress,
//! server-to-client requests, then the response), so they can be relayed while it runs.
//! Every request carries a gateway-owned id from an [`IdGen`]. An HTTP upstream with several
//! URLs (replicas) spreads its sessions over them and leaves failing ones out (`balance`).

pub mod balance;
pub mod caller;
pub mod connector;
pub mod http;
pub mod oauth;
pub mod pool;
pub mod stdio;

use std::{sync::Arc, time::Duration};

use bytes::Bytes;

use crate::{
    config,
    error::{Error, ErrorKind, Result},
    jsonrpc::{Frame, Kind},
};

pub use caller::{
    initialize_body, request_body, Caller, IdGen, CONTROL_SLOT, INITIALIZED, MAX_SLOT, WATCH_SLOT,
};
pub use http::UpstreamSession;

/// Index of an upstream in the snapshot it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UpstreamRef(pub u16);

/// Which upstream session a client's calls run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionMode {
    /// One upstream session per client session, created on first use and ended with it:
    /// log level, subscriptions and server-to-client requests stay the client's own.
    PerClient,
    /// The gateway's one session, shared by all clients: cheaper, for stateless servers.
    Shared,
}

/// One upstream MCP server.
pub struct Upstream {
    /// Its configured name (the namespace of its tools).
    pub name: Arc<str>,
    /// Whether its names are prefixed with `<name><sep>`.
    pub prefix: bool,
    /// Deadline for an answer (reset by progress notifications).
    pub call_timeout: Duration,
    /// Upper bound for one call however much progress it reports.
    pub max_call: Duration,
    /// Call timeouts of single tools (by the upstream's own name), overriding `call_timeout`.
    pub tool_timeouts: std::collections::BTreeMap<String, Duration>,
    /// Session model.
    pub mode: SessionMode,
    /// How it is reached.
    pub link: Link,
    /// Set when a reload removed or replaced it (calls in flight finish on it).
    retired: std::sync::atomic::AtomicBool,
    /// Set once the control plane watches its own GET stream.
    watched: std::sync::atomic::AtomicBool,
    /// What the last health checks found.
    pub health: Health,
    /// Retry settings.
    pub retry: crate::resilience::RetryPolicy,
    /// Its retry budget (shared by all workers).
    pub budget: crate::resilience::RetryBudget,
    /// Breaker settings.
    pub breaker_policy: crate::resilience::BreakerPolicy,
    /// Its circuit breaker.
    pub breaker: crate::resilience::Breaker,
    /// Retries made.
    pub retries_total: std::sync::atomic::AtomicU64,
}

/// An upstream's health, from periodic `ping`s by the control plane.
#[derive(Default)]
pub struct Health {
    failures: std::sync::atomic::AtomicU32,
    since_ms: std::sync::atomic::AtomicU64,
}

/// Health states: healthy (last ping answered), degraded (one failure), down (two or more in
/// a row: the upstream leaves the lists until it answers again).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthState {
    /// The last ping was answered.
    Healthy,
    /// One ping failed.
    Degraded,
    /// Two or more pings in a row failed.
    Down,
}

impl HealthState {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Healthy => "healthy",
            HealthState::Degraded => "degraded",
            HealthState::Down => "down",
        }
    }
}

impl Health {
    /// The current state and since when (ms on the gateway's clock).
    pub fn state(&self) -> (HealthState, u64) {
        let f = self.failures.load(std::sync::atomic::Ordering::Relaxed);
        let since = self.since_ms.load(std::sync::atomic::Ordering::Relaxed);
        let s = match f {
            0 => HealthState::Healthy,
            1 => HealthState::Degraded,
            _ => HealthState::Down,
        };
        (s, since)
    }

    /// Records a check; returns whether the state changed.
    pub fn record(&self, ok: bool, now_ms: u64) -> bool {
        let before = self.state().0;
        if ok {
            self.failures.store(0, std::sync::atomic::Ordering::Relaxed);
        } else {
            self.failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let after = self.state().0;
        if before != after {
            self.since_ms
                .store(now_ms, std::sync::atomic::Ordering::Relaxed);
        }
        before != after
    }
}

impl Upstream {
    /// An upstream reached over `link`.
    pub fn new(
        name: String,
        prefix: bool,
        call_timeout: Duration,
        max_call: Duration,
        mode: SessionMode,
        link: Link,
    ) -> Self {
        Self {
            name: name.into(),
            prefix,
            call_timeout,
            max_call,
            mode,
            link,
            retired: Default::default(),
            watched: Default::default(),
            health: Health::default(),
            tool_timeouts: Default::default(),
            retry: Default::default(),
            budget: Default::default(),
            breaker_policy: Default::default(),
            breaker: Default::default(),
            retries_total: Default::default(),
        }
    }

    /// The call timeout of tool `original` (the upstream's own name).
    pub fn timeout_for(&self, original: Option<&str>) -> Duration {
        original
            .and_then(|n| self.tool_timeouts.get(n))
            .copied()
            .unwrap_or(self.call_timeout)
    }

    /// Marks it removed by a reload.
    pub fn retire(&self) {
        self.retired
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Whether a reload removed it.
    pub fn retired(&self) -> bool {
        self.retired.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Its replicas as the admin API shows them (`null` without `urls`): url, calls
    /// outstanding, whether ejected and for how long still, ejections and calls so far.
    pub fn replicas_json(&self) -> serde_json::Value {
        let Link::Http(h) = &self.link else {
            return serde_json::Value::Null;
        };
        let Some((endpoints, b)) = h.replicas() else {
            return serde_json::Value::Null;
        };
        let now = balance::now_ms();
        endpoints
            .iter()
            .enumerate()
            .filter_map(|(i, e)| {
                let v = b.view(i, now)?;
                Some(serde_json::json!({
                    "url": e.url,
                    "outstanding": v.outstanding,
                    "ejected": v.ejected,
                    "ejected_for_ms": v.ejected_for_ms,
                    "ejections": v.ejections,
                    "failures": v.failures,
                    "calls": v.calls,
                }))
            })
            .collect()
    }

    /// True the first time only: whether the caller should start watching it.
    pub fn watched(&self) -> bool {
        self.watched.swap(true, std::sync::atomic::Ordering::AcqRel)
    }
}

/// The transport to an upstream.
pub enum Link {
    /// Streamable HTTP.
    Http(http::HttpUpstream),
    /// A supervised child process (always one shared session: the child).
    Stdio(stdio::StdioHandle),
}

/// The session a call runs on.
#[derive(Clone)]
pub enum OnSession {
    /// An HTTP upstream session.
    Http(Arc<UpstreamSession>),
    /// The stdio child.
    Stdio,
}

/// One request in flight to an upstream.
pub enum Call {
    /// Over HTTP (boxed: it carries the connection and decoder state).
    Http(Box<http::HttpCall>),
    /// To a child.
    Stdio(stdio::StdioCall),
}

impl Call {
    /// The next message from the upstream for this request; `None` at the end.
    pub async fn next(&mut self) -> Result<Option<Bytes>> {
        match self {
            Call::Http(c) => c.next().await,
            Call::Stdio(c) => c.next().await,
        }
    }

    /// Counts this call, which timed out, as a failure of its replica (HTTP upstreams with
    /// replicas only).
    pub fn timed_out(&self) {
        if let Call::Http(c) = self {
            c.timed_out();
        }
    }

    /// Ends the call at once when nothing of it is left to read (see
    /// [`http::HttpCall::finish_now`]); else gives it back for [`Call::finish`].
    pub fn finish_now(self, caller: &Caller) -> Option<Self> {
        match self {
            Call::Http(c) => c.finish_now(caller).map(Call::Http),
            Call::Stdio(_) => None,
        }
    }

    /// Ends the call, returning its connection to the pool when clean.
    pub async fn finish(self, caller: &Caller) {
        if let Call::Http(c) = self {
            c.finish(caller).await;
        }
    }
}

impl Caller {
    /// Counts a call on `on` whose start timed out (it was just abandoned) as a failure of
    /// the replica it went to (HTTP upstreams with replicas only).
    pub fn timed_out(&self, up: &Upstream, on: &OnSession) {
        if let (Link::Http(h), OnSession::Http(s)) = (&up.link, on) {
            h.timed_out_on(self, s);
        }
        self.abandoned.set(None);
    }

    /// Starts a request (whose id is already set) on `on`.
    pub async fn start(&self, up: &Upstream, on: &OnSession, id: u64, body: Bytes) -> Result<Call> {
        self.start_with(up, on, id, &body.into(), &Sending::default())
            .await
    }

    /// [`Caller::start`], with what else goes with the request (see [`Sending`]).
    pub async fn start_with(
        &self,
        up: &Upstream,
        on: &OnSession,
        id: u64,
        body: &crate::net::Segments,
        how: &Sending<'_>,
    ) -> Result<Call> {
        match (&up.link, on) {
            (Link::Http(h), OnSession::Http(s)) => h
                .call(self, s, body, how.traceparent, how.routing)
                .await
                .map(Call::Http),
            (Link::Stdio(s), _) => s
                .call(id, body.clone().into_bytes(), how.own)
                .map(Call::Stdio),
            (Link::Http(_), OnSession::Stdio) => Err(Error::new(
                ErrorKind::Internal,
                "stdio session for an HTTP upstream",
            )),
        }
    }

    /// Sends a notification or a response on `on`.
    pub async fn send(&self, up: &Upstream, on: &OnSession, body: Bytes) -> Result<()> {
        let fut = async {
            match (&up.link, on) {
                (Link::Http(h), OnSession::Http(s)) => h.send(self, s, body).await,
                (Link::Stdio(s), _) => s.send(body),
                (Link::Http(_), OnSession::Stdio) => Err(Error::new(
                    ErrorKind::Internal,
                    "stdio session for an HTTP upstream",
                )),
            }
        };
        match monoio::time::timeout(up.call_timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(Error::new(
                ErrorKind::UpstreamTimeout,
                format!("{}: sending", up.name),
            )),
        }
    }

    /// A request on the gateway's own (shared) session, waiting only for its response
    /// (messages before it are dropped): for catalog fetches and gateway-initiated calls.
    pub async fn request(&self, up: &Upstream, id: u64, body: Bytes) -> Result<Frame> {
        let body = crate::net::Segments::from(body);
        let fut = async {
            let on = self.shared_session(up).await?;
            let own = Sending {
                own: true,
                ..Sending::default()
            };
            let mut call = match self.start_with(up, &on, id, &body, &own).await {
                Err(e) if e.kind == ErrorKind::UpstreamSessionExpired => {
                    let Link::Http(h) = &up.link else {
                        return Err(e);
                    };
                    tracing::info!(upstream = %up.name, "upstream session expired; initializing again");
                    let fresh = OnSession::Http(h.reinit_shared(self).await?);
                    self.start_with(up, &fresh, id, &body, &own).await?
                }
                other => other?,
            };
            let want = id.to_string();
            loop {
                let Some(m) = call.next().await? else {
                    return Err(Error::new(
                        ErrorKind::UpstreamProtocol,
                        format!("{}: no answer", up.name),
                    ));
                };
                let f = self.parser.borrow_mut().parse_upstream(m).map_err(|e| {
                    Error::new(
                        ErrorKind::UpstreamProtocol,
                        format!("{}: bad message", up.name),
                    )
                    .with_source(e)
                })?;
                if f.kind() == Kind::Response && f.id_raw().as_deref() == Some(want.as_bytes()) {
                    call.finish(self).await;
                    return Ok(f);
                }
            }
        };
        match monoio::time::timeout(up.call_timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(Error::new(
                ErrorKind::UpstreamTimeout,
                format!("{}: no answer within {:?}", up.name, up.call_timeout),
            )),
        }
    }

    /// The gateway-wide session of `up` (initialized when missing).
    pub async fn shared_session(&self, up: &Upstream) -> Result<OnSession> {
        match &up.link {
            Link::Http(h) => Ok(OnSession::Http(h.ensure_shared(self).await?)),
            Link::Stdio(_) => Ok(OnSession::Stdio),
        }
    }
}

/// What goes with a request besides its body ([`Caller::start_with`]).
#[derive(Default)]
pub struct Sending<'a> {
    /// A W3C `traceparent` header (HTTP upstreams).
    pub traceparent: Option<&'a str>,
    /// The routing headers of a request to a 2026-07-28 upstream, when the sender knows
    /// them already (else they are read from the body).
    pub routing: Option<&'a crate::mcp::era::Routing>,
    /// The gateway's own request: a shared stdio child's messages without a request id are
    /// never routed to it.
    pub own: bool,
}

/// Builds the runtime upstream for a validated config entry. Stdio children are started by
/// `supervisor` (the control plane) and reached through the handle it returns.
pub fn build(cfg: &config::Upstream, supervisor: &stdio::Supervisor) -> Arc<Upstream> {
    let link = match &cfg.transport {
        config::Transport::Http {
            addr,
            host,
            path,
            headers,
            auth,
            connect_timeout,
            tls,
        } => Link::Http(
            http::HttpUpstream::new(
                cfg.name.clone(),
                addr.clone(),
                host.clone(),
                path.clone(),
                headers.clone(),
                *connect_timeout,
                tls.clone(),
            )
            .with_auth(auth.as_ref().map(|a| http::Credential::new(&cfg.name, a)))
            .with_replicas(&cfg.replicas, cfg.outlier)
            .with_outbound(cfg.outbound.clone())
            .with_era(cfg.era),
        ),
        config::Transport::Stdio { .. } => Link::Stdio(supervisor.spawn(cfg)),
    };
    let mode = match (&link, cfg.shared_session) {
        (Link::Stdio(_), _) | (_, true) => SessionMode::Shared,
        _ => SessionMode::PerClient,
    };
    let mut up = Upstream::new(
        cfg.name.clone(),
        cfg.prefix,
        cfg.call_timeout,
        cfg.max_call,
        mode,
        link,
    );
    up.tool_timeouts = cfg.tool_timeouts.clone();
    up.retry = cfg.retry.clone();
    up.breaker_policy = cfg.breaker;
    Arc::new(up)
}

/// Appends the replica gauges and counters of `upstreams` (those with `urls`) to a
/// Prometheus text page.
pub fn write_replica_metrics(out: &mut String, upstreams: &[Arc<Upstream>]) {
    use std::fmt::Write as _;
    let now = balance::now_ms();
    let with = || {
        upstreams.iter().filter_map(|u| match &u.link {
            Link::Http(h) => h.replicas().map(|(e, b)| (u, e, b)),
            Link::Stdio(_) => None,
        })
    };
    if with().next().is_none() {
        return;
    }
    type Value = fn(&balance::ReplicaView) -> u64;
    let metrics: [(&str, &str, &str, Value); 4] = [
        (
            "mcpgw_upstream_replica_ejected",
            "gauge",
            "1 while the replica is ejected.",
            |v| u64::from(v.ejected),
        ),
        (
            "mcpgw_upstream_replica_outstanding",
            "gauge",
            "Requests in flight to the replica.",
            |v| u64::from(v.outstanding),
        ),
        (
            "mcpgw_upstream_replica_calls_total",
            "counter",
            "Requests sent to the replica.",
            |v| v.calls,
        ),
        (
            "mcpgw_upstream_replica_ejections_total",
            "counter",
            "Times the replica was ejected.",
            |v| u64::from(v.ejections),
        ),
    ];
    for (name, kind, help, value) in metrics {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (u, endpoints, b) in with() {
            for (i, e) in endpoints.iter().enumerate() {
                if let Some(v) = b.view(i, now) {
                    let _ = writeln!(
                        out,
                        "{name}{{upstream=\"{}\",replica=\"{}\"}} {}",
                        u.name,
                        e.url.replace('\\', "\\\\").replace('"', "\\\""),
                        value(&v)
                    );
                }
            }
        }
    }
}
