//! Configuration: the TOML file (`raw`), validated into an immutable [`Config`].
//!
//! Loading never half-succeeds: the file is parsed and checked whole, and every error names
//! the file, the line and the field. `anyhow` is used here (config loading is not the request
//! path); the rest of the crate gets typed values.

pub mod admin_entry;
pub mod raw;

use std::{
    collections::{BTreeMap, HashSet},
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use std::sync::Arc;

use anyhow::{anyhow, bail, Context};

use crate::net::policy::{AddressPolicy, Listener};
use crate::secret::{Env, Secret, SecretKey};
use raw::RawConfig;
use toml::Spanned;

use crate::upstream::balance::MAX_REPLICAS;

/// The configuration used when `mcpgw run` is given no file: the gateway in front of its own
/// demo server (`examples/demo.toml`).
pub const EMBEDDED_DEFAULT: &str = include_str!("../examples/demo.toml");

/// Most worker threads (each owns a slot of gateway request ids).
pub const MAX_WORKERS: usize = 1024;

/// The IO driver for worker runtimes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    /// io_uring when the kernel allows it, else epoll (logged).
    Auto,
    /// io_uring only; start fails without it.
    Uring,
    /// epoll (monoio's legacy driver).
    Epoll,
}

impl std::str::FromStr for Driver {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "auto" => Ok(Driver::Auto),
            "uring" | "io_uring" | "iouring" => Ok(Driver::Uring),
            "epoll" | "legacy" => Ok(Driver::Epoll),
            _ => bail!("unknown driver {s:?} (expected auto, uring or epoll)"),
        }
    }
}

/// Validated gateway settings.
#[derive(Clone, Debug)]
pub struct Gateway {
    /// MCP listener address.
    pub listen: SocketAddr,
    /// Worker count (at least 1).
    pub workers: usize,
    /// IO driver choice.
    pub driver: Driver,
    /// Namespacing separator.
    pub separator: String,
    /// Extra allowed origins (exact, lowercase); `*` allows all.
    pub allowed_origins: Vec<String>,
    /// `Host` names served besides loopback ones (lowercase, no port; `*` any). Empty: on
    /// a loopback listener only loopback names, on another any name.
    pub allowed_hosts: Vec<String>,
    /// Body cap, bytes.
    pub max_body_bytes: usize,
    /// Messages per JSON-RPC batch.
    pub max_batch_items: usize,
    /// Head cap, bytes.
    pub max_header_bytes: usize,
    /// Head read deadline.
    pub header_timeout: Duration,
    /// Keep-alive idle deadline.
    pub idle_timeout: Duration,
    /// Default call timeout.
    pub call_timeout: Duration,
    /// List page size.
    pub page_size: usize,
    /// Deepest nesting of a client's message.
    pub max_json_depth: usize,
    /// GET stream enabled.
    pub get_stream: bool,
    /// SSE keep-alive interval.
    pub sse_keepalive: Duration,
    /// Events kept per SSE stream for resumption (0: no ids, no replay).
    pub sse_replay_events: usize,
    /// How long a finished stream stays resumable.
    pub sse_replay: Duration,
    /// End call streams after this long and let clients resume (None: never).
    pub sse_poll: Option<Duration>,
    /// Idle session expiry.
    pub session_idle_timeout: Duration,
    /// Catalog refresh interval.
    pub refresh_interval: Duration,
    /// Health check interval (None: off).
    pub health_interval: Option<Duration>,
    /// Reload when the config file changes.
    pub watch_config: bool,
    /// How long a shutdown waits for requests in progress.
    pub drain_timeout: Duration,
    /// Label cap of per-tool metrics.
    pub metrics_max_labels: usize,
    /// Label cap of per-principal metrics.
    pub metrics_max_principals: usize,
    /// Per-call metrics on.
    pub metrics: bool,
    /// Open connections per worker.
    pub max_connections: usize,
    /// Open connections per client IP (0: no cap).
    pub max_connections_per_ip: usize,
    /// Client sessions.
    pub max_sessions: usize,
    /// Calls in flight per session.
    pub max_in_flight_per_session: usize,
    /// Bytes queued or kept per SSE stream.
    pub sse_buffer_bytes: usize,
    /// Deadline of one write to a client.
    pub write_timeout: Duration,
    /// Idle upstream keep-alive connections are closed after this.
    pub upstream_idle_timeout: Duration,
    /// TLS on the client listener (None: plain HTTP).
    pub tls: Option<crate::net::tls::ServerTls>,
    /// What config-file upstreams, their OAuth token endpoints and the JWKS URL may connect
    /// to: anything but the always-refused set and the gateway's own listeners.
    pub outbound: Arc<AddressPolicy>,
    /// What upstreams added through the admin API may connect to: `outbound`, within
    /// `upstream_networks`.
    pub admin_outbound: Arc<AddressPolicy>,
}

/// How an upstream is reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Streamable HTTP.
    Http {
        /// `host:port` to connect to.
        addr: String,
        /// `Host` header value.
        host: String,
        /// Path and query of the MCP endpoint.
        path: String,
        /// Extra headers (values are secrets).
        headers: Vec<(String, Secret)>,
        /// The gateway's own credential for it.
        auth: Option<UpstreamAuth>,
        /// Connect deadline.
        connect_timeout: Duration,
        /// `https://`: how the upstream's certificate is checked (None: plain HTTP).
        tls: Option<crate::net::tls::ClientTls>,
    },
    /// A child process speaking newline-delimited JSON-RPC on stdin/stdout.
    Stdio {
        /// Program (resolved: `@self` is this binary).
        command: PathBuf,
        /// Arguments.
        args: Vec<String>,
        /// Added environment.
        env: BTreeMap<String, String>,
        /// Working directory.
        cwd: Option<PathBuf>,
        /// Longest restart backoff.
        restart_backoff_max: Duration,
    },
}

/// An HTTP upstream's credential (`auth`), its secrets loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpstreamAuth {
    /// A fixed header: `Authorization: Bearer ...` for `bearer`, else `header` = `value`.
    Header {
        /// Header name.
        name: String,
        /// Its whole value.
        value: Secret,
    },
    /// OAuth 2.0 client credentials grant.
    OAuth(OAuthClient),
}

/// The OAuth client an upstream's token is fetched as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthClient {
    /// Token endpoint (`http://` or `https://`).
    pub token_url: String,
    /// Client id.
    pub client_id: String,
    /// Client secret.
    pub client_secret: Secret,
    /// Space-separated scopes (None: the server's default).
    pub scope: Option<String>,
    /// What the token endpoint's address must pass (its upstream's policy).
    pub outbound: Arc<AddressPolicy>,
}

/// One validated upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    /// Unique name.
    pub name: String,
    /// How to reach it.
    pub transport: Transport,
    /// Deadline for an answer; progress notifications restart it.
    pub call_timeout: Duration,
    /// Upper bound for one call, progress or not.
    pub max_call: Duration,
    /// Whether names are prefixed with `<name><sep>`.
    pub prefix: bool,
    /// Call timeouts of single tools, by the upstream's own name.
    pub tool_timeouts: BTreeMap<String, Duration>,
    /// One gateway-wide upstream session instead of one per client session.
    pub shared_session: bool,
    /// Which MCP revision an HTTP upstream is spoken to in.
    pub era: UpstreamEra,
    /// Retries.
    pub retry: crate::resilience::RetryPolicy,
    /// Circuit breaker.
    pub breaker: crate::resilience::BreakerPolicy,
    /// An HTTP upstream's replicas (`urls`), the first also in `transport`; empty when it
    /// has one URL.
    pub replicas: Vec<Replica>,
    /// When a failing replica is left out.
    pub outlier: crate::upstream::balance::OutlierPolicy,
    /// Added through the admin API (from the registry store), not the config file: a stdio
    /// child of such an entry starts without the gateway's environment.
    pub from_admin: bool,
    /// What its addresses must pass when connecting: the config file's policy, or the admin
    /// API's for an upstream added through it ([`Config::limit_admin_upstreams`]).
    pub outbound: Arc<AddressPolicy>,
}

impl Upstream {
    /// Subjects it (and its OAuth token endpoint) to `policy`.
    fn set_outbound(&mut self, policy: &Arc<AddressPolicy>) {
        self.outbound = policy.clone();
        if let Transport::Http {
            auth: Some(UpstreamAuth::OAuth(c)),
            ..
        } = &mut self.transport
        {
            c.outbound = policy.clone();
        }
    }

    /// Checks the literal addresses of its URLs and OAuth token endpoint against `policy`;
    /// the error names the field of `upstream[i]`.
    pub fn check_outbound(&self, i: usize, policy: &AddressPolicy) -> Result<(), String> {
        let Transport::Http { addr, auth, .. } = &self.transport else {
            return Ok(());
        };
        let mut urls: Vec<(String, &str)> = match self.replicas.as_slice() {
            [] => vec![(format!("upstream[{i}].url"), addr.as_str())],
            many => many
                .iter()
                .enumerate()
                .map(|(k, r)| (format!("upstream[{i}].urls[{k}]"), r.addr.as_str()))
                .collect(),
        };
        let token_addr = match auth {
            Some(UpstreamAuth::OAuth(c)) => split_http_url(&c.token_url).ok().map(|t| t.1),
            _ => None,
        };
        if let Some(t) = &token_addr {
            urls.push((format!("upstream[{i}].auth.oauth_token_url"), t.as_str()));
        }
        for (field, a) in urls {
            policy
                .check_authority(a)
                .map_err(|d| format!("{field}: {}", refusal(a, d)))?;
        }
        Ok(())
    }
}

/// A URL refused by the outbound address policy (the root of such a config error, so that a
/// stored admin entry refused for its address can be told from an invalid one).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct OutboundRefused(pub String);

/// How a refused address is reported.
fn refusal(addr: &str, deny: crate::net::policy::Deny) -> String {
    format!("refused by the outbound address policy: {addr} is {deny}")
}

/// Which MCP revision an HTTP upstream is spoken to in (`era`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UpstreamEra {
    /// The `initialize` handshake and sessions (2025-11-25 and earlier).
    Legacy,
    /// `server/discover` first: 2026-07-28 when offered, else the handshake (the default).
    #[default]
    Auto,
    /// 2026-07-28 only (stateless requests).
    Stateless,
}

/// One URL of an HTTP upstream with replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replica {
    /// The URL as configured (shown by the admin API and in metrics).
    pub url: String,
    /// `host:port` to connect to.
    pub addr: String,
    /// `Host` header value.
    pub host: String,
    /// Path and query of the MCP endpoint.
    pub path: String,
    /// `https://`: how its certificate is checked.
    pub tls: Option<crate::net::tls::ClientTls>,
}

/// The outlier policy of `[upstream.outlier]`, defaults filled in.
fn outlier_policy(c: Option<&raw::OutlierConfig>) -> crate::upstream::balance::OutlierPolicy {
    let d = crate::upstream::balance::OutlierPolicy::default();
    let Some(c) = c else {
        return d;
    };
    let base = c
        .base_ejection_ms
        .map_or(d.base_ejection, Duration::from_millis);
    crate::upstream::balance::OutlierPolicy {
        consecutive_failures: c.consecutive_failures.unwrap_or(d.consecutive_failures),
        base_ejection: base,
        max_ejection: c
            .max_ejection_ms
            .map_or(d.max_ejection, Duration::from_millis)
            .max(base),
        max_ejection_percent: c
            .max_ejection_percent
            .unwrap_or(d.max_ejection_percent)
            .min(100),
    }
}

/// The validated `[admin]` section.
#[derive(Clone, Debug, Default)]
pub struct Admin {
    /// Admin listener (None: off).
    pub listen: Option<SocketAddr>,
    /// Bearer token for `/admin/*`.
    pub token: Option<String>,
    /// Store file (None: in memory).
    pub store: Option<PathBuf>,
    /// Programs the admin API may add as stdio upstreams (`[admin] stdio_commands`), as
    /// written: absolute paths or `@self`.
    pub stdio_commands: Vec<String>,
}

/// A validated virtual server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtualServer {
    /// Its name (path `/servers/<name>/mcp`).
    pub name: String,
    /// Tool name globs.
    pub tools: Vec<String>,
    /// Prompt name globs.
    pub prompts: Vec<String>,
    /// Resource URI globs.
    pub resources: Vec<String>,
    /// Gateway name -> name shown in this server.
    pub rename: BTreeMap<String, String>,
    /// Shown name -> description.
    pub descriptions: BTreeMap<String, String>,
}

/// The whole validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// `[gateway]`.
    pub gateway: Gateway,
    /// `[[upstream]]`, in file order.
    pub upstreams: Vec<Upstream>,
    /// `[[server]]`, virtual servers.
    pub servers: Vec<VirtualServer>,
    /// `[admin]`.
    pub admin: Admin,
    /// Tools switched off through the admin API (gateway names); not in the file.
    pub disabled_tools: HashSet<String>,
    /// The audit log, if on.
    pub audit: Option<AuditSettings>,
    /// Where it came from, for messages (`<embedded>` for the default).
    pub source: String,
    /// Client authentication, roles and address rules (`[auth]`, `[[role]]`).
    pub auth: std::sync::Arc<crate::auth::Auth>,
    /// `[telemetry]`.
    pub telemetry: Telemetry,
    /// The key of `enc:v1:` secrets (`MCPGW_SECRET_KEY`), if set.
    pub secret_key: Option<Arc<SecretKey>>,
    /// `[guard]`, compiled.
    pub guard: Arc<crate::guard::policy::Policy>,
}

/// Validated `[audit]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditSettings {
    /// The file.
    pub path: PathBuf,
    /// Wait for room when the writer's queue is full (else drop and count).
    pub block: bool,
    /// Write calls' arguments.
    pub arguments: bool,
}

/// Validated `[telemetry]`.
#[derive(Clone, Debug, Default)]
pub struct Telemetry {
    /// OTLP/HTTP endpoint (None: no export).
    pub otlp_endpoint: Option<String>,
    /// Service name.
    pub service_name: String,
    /// Sampling ratio for new traces.
    pub sample_ratio: f64,
    /// JSON log lines.
    pub json_logs: bool,
}

impl std::fmt::Debug for crate::auth::Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print keys or hashes.
        f.debug_struct("Auth")
            .field("enabled", &self.enabled())
            .finish_non_exhaustive()
    }
}

/// Command-line and environment overrides applied over the file.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--listen` / `MCPGW_LISTEN`.
    pub listen: Option<String>,
    /// `--workers` / `MCPGW_WORKERS`.
    pub workers: Option<usize>,
    /// `--driver` / `MCPGW_DRIVER`.
    pub driver: Option<String>,
    /// `MCPGW_ADMIN_LISTEN`.
    pub admin_listen: Option<String>,
    /// `MCPGW_ADMIN_TOKEN`.
    pub admin_token: Option<String>,
    /// Where `env:VAR` secrets and `MCPGW_SECRET_KEY` are read (default: the process
    /// environment).
    pub env: Env,
}

impl Config {
    /// Reads and validates `path`, or the embedded default when `None`.
    pub fn load(path: Option<&Path>, ov: &Overrides) -> anyhow::Result<Config> {
        match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read config file {}", p.display()))?;
                // An empty file is a mistake or a write caught half-way (an editor or a
                // script truncating before writing): never a config to run or reload with.
                // The embedded defaults are what runs without `--config`.
                if text.trim().is_empty() {
                    anyhow::bail!(
                        "config file {} is empty (write configs by renaming a finished file into place)",
                        p.display()
                    );
                }
                Config::parse(&text, &p.display().to_string(), ov)
            }
            None => Config::parse(EMBEDDED_DEFAULT, "<embedded default>", ov),
        }
    }

    /// Parses and validates TOML text; `source` names it in errors.
    pub fn parse(text: &str, source: &str, ov: &Overrides) -> anyhow::Result<Config> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            match line {
                Some(l) => anyhow!("{source}:{l}: {}", e.message()),
                None => anyhow!("{source}: {}", e.message()),
            }
        })?;
        let secret_key = SecretKey::from_env(&ov.env)?;
        let doc = Doc {
            text,
            source,
            base_dir: Path::new(source).parent().filter(|d| d.is_dir()),
            ov,
            secret_key: secret_key.as_ref(),
        };
        let (gateway, admin_listen) = doc.gateway(&raw)?;
        let upstreams = doc.upstreams(&raw, &gateway)?;
        let servers = doc.servers(&raw.servers)?;
        let admin = doc.admin(&raw.admin, admin_listen)?;
        let auth = doc.auth(&raw, &gateway.outbound)?;
        let telemetry = doc.telemetry(&raw.telemetry, &gateway.outbound)?;
        let audit = doc.audit(&raw.audit)?;
        let guard = doc.guard(&raw.guard)?;
        Ok(Config {
            guard: Arc::new(guard),
            secret_key: secret_key.map(Arc::new),
            telemetry,
            auth: std::sync::Arc::new(auth),
            gateway,
            upstreams,
            servers,
            admin,
            disabled_tools: HashSet::new(),
            audit,
            source: source.into(),
        })
    }
}

// === impl Doc ===

/// The document [`Config::parse`] reads, and what each of its steps needs. The steps run
/// in a fixed order: the first error found is the one reported.
struct Doc<'a> {
    text: &'a str,
    /// Names the document in errors.
    source: &'a str,
    /// The config file's directory: relative file names in it are relative to this.
    base_dir: Option<&'a Path>,
    ov: &'a Overrides,
    secret_key: Option<&'a SecretKey>,
}

/// An entry's field name for errors (`upstream[2].url`).
type FieldName<'f> = &'f dyn Fn(&str) -> String;

/// `v` milliseconds, default `d`.
fn ms(v: Option<u64>, d: u64) -> Duration {
    Duration::from_millis(v.unwrap_or(d))
}

impl Doc<'_> {
    /// `source:line` of a span.
    fn at(&self, s: std::ops::Range<usize>) -> String {
        format!("{}:{}", self.source, line_of(self.text, s.start))
    }

    /// A file named in the config, relative to its directory.
    fn file(&self, f: &str) -> PathBuf {
        self.base_dir
            .map_or_else(|| PathBuf::from(f), |d| d.join(f))
    }

    /// `[gateway]`, and the outbound address policies built from the gateway's own
    /// listeners. Also returns the admin listener.
    fn gateway(&self, raw: &RawConfig) -> anyhow::Result<(Gateway, Option<SocketAddr>)> {
        let g = &raw.gateway;
        let listen = self.listen(g)?;
        let workers = self
            .ov
            .workers
            .or(g.workers)
            .filter(|w| *w > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .min(MAX_WORKERS);
        let driver = self.driver(g)?;
        let separator = self.name_separator(g)?;
        let tls = g.tls.as_ref().map(|t| self.tls(t)).transpose()?;
        let admin_listen = self.admin_listen(&raw.admin)?;
        let mut own = vec![(listen, Listener::Mcp)];
        own.extend(admin_listen.map(|a| (a, Listener::Admin)));
        let outbound = AddressPolicy::new(own);
        let networks = self.upstream_networks(g)?;
        let admin_outbound = Arc::new(outbound.clone().within(networks));
        let gateway = Gateway {
            outbound: Arc::new(outbound),
            admin_outbound,
            listen,
            workers,
            driver,
            separator,
            allowed_origins: g
                .allowed_origins
                .iter()
                .map(|o| o.to_ascii_lowercase())
                .collect(),
            allowed_hosts: allowed_hosts(g)?,
            max_body_bytes: g.max_body_bytes.unwrap_or(4 << 20),
            max_batch_items: g.max_batch_items.unwrap_or(100).max(1),
            max_header_bytes: g.max_header_bytes.unwrap_or(16 << 10).max(1024),
            header_timeout: ms(g.header_timeout_ms, 10_000),
            idle_timeout: ms(g.idle_timeout_ms, 60_000),
            call_timeout: ms(g.call_timeout_ms, 60_000),
            page_size: g.page_size.unwrap_or(1000).max(1),
            max_json_depth: max_json_depth(g)?,
            get_stream: g.get_stream.unwrap_or(true),
            sse_keepalive: ms(g.sse_keepalive_ms, 15_000).max(Duration::from_millis(100)),
            sse_replay_events: g.sse_replay_events.unwrap_or(256),
            sse_replay: ms(g.sse_replay_ms, 30_000),
            sse_poll: g
                .sse_poll_ms
                .filter(|p| *p > 0 && g.sse_replay_events != Some(0))
                .map(Duration::from_millis),
            session_idle_timeout: ms(g.session_idle_timeout_ms, 3_600_000),
            refresh_interval: ms(g.refresh_interval_ms, 30_000).max(Duration::from_millis(100)),
            watch_config: g.watch_config.unwrap_or(false),
            drain_timeout: ms(g.drain_timeout_ms, 30_000),
            metrics_max_labels: g.metrics_max_labels.unwrap_or(1000),
            metrics_max_principals: g.metrics_max_principals.unwrap_or(100),
            metrics: g.metrics.unwrap_or(true),
            max_connections: g.max_connections.unwrap_or(10_000).max(1),
            max_connections_per_ip: g.max_connections_per_ip.unwrap_or(0),
            max_sessions: g.max_sessions.unwrap_or(200_000).max(1),
            max_in_flight_per_session: g.max_in_flight_per_session.unwrap_or(128).max(1),
            sse_buffer_bytes: g.sse_buffer_bytes.unwrap_or(1 << 20).max(1024),
            write_timeout: ms(g.write_timeout_ms, 30_000).max(Duration::from_millis(100)),
            upstream_idle_timeout: ms(g.upstream_idle_timeout_ms, 30_000),
            tls,
            health_interval: match g.health_interval_ms.unwrap_or(10_000) {
                0 => None,
                n => Some(Duration::from_millis(n.max(100))),
            },
        };
        Ok((gateway, admin_listen))
    }

    /// `gateway.listen`, or its override: an address.
    fn listen(&self, g: &raw::GatewayConfig) -> anyhow::Result<SocketAddr> {
        let ov = self.ov;
        let listen_s = ov
            .listen
            .clone()
            .or_else(|| g.listen.as_ref().map(|s| s.get_ref().clone()))
            .unwrap_or_else(|| "127.0.0.1:8080".into());
        listen_s.parse().map_err(|_| {
            let w = g.listen.as_ref().filter(|_| ov.listen.is_none());
            anyhow!(
                "{}: gateway.listen: {listen_s:?} is not an address like 127.0.0.1:8080",
                w.map(|s| self.at(s.span()))
                    .unwrap_or_else(|| "override".into())
            )
        })
    }

    /// `gateway.driver`, or its override: a known driver.
    fn driver(&self, g: &raw::GatewayConfig) -> anyhow::Result<Driver> {
        Ok(match (&self.ov.driver, &g.driver) {
            (Some(d), _) => d.parse().context("--driver")?,
            (None, Some(d)) => d
                .get_ref()
                .parse()
                .map_err(|e| anyhow!("{}: gateway.driver: {e}", self.at(d.span())))?,
            (None, None) => Driver::Auto,
        })
    }

    /// `gateway.name_separator`: 1 to 4 of '_', '-', '.'.
    fn name_separator(&self, g: &raw::GatewayConfig) -> anyhow::Result<String> {
        Ok(g.name_separator
            .as_ref()
            .map(|s| {
                let v = s.get_ref();
                if v.is_empty() || v.len() > 4 || !v.chars().all(|c| matches!(c, '_' | '-' | '.')) {
                    Err(anyhow!(
                        "{}: gateway.name_separator: must be 1 to 4 of '_', '-', '.'",
                        self.at(s.span())
                    ))
                } else {
                    Ok(v.clone())
                }
            })
            .transpose()?
            .unwrap_or_else(|| "__".into()))
    }

    /// `[gateway.tls]`: `client_auth` needs `client_ca`; the files load.
    fn tls(&self, t: &raw::GatewayTlsConfig) -> anyhow::Result<crate::net::tls::ServerTls> {
        use crate::net::tls::{ClientAuth, ServerTls};
        let client_auth = match (&t.client_ca, &t.client_auth) {
            (None, None) => ClientAuth::Off,
            (None, Some(a)) => bail!(
                "{}: gateway.tls.client_auth: needs gateway.tls.client_ca",
                self.at(a.span())
            ),
            (Some(_), None) => ClientAuth::Required,
            (Some(_), Some(a)) => match a.get_ref().as_str() {
                "required" => ClientAuth::Required,
                "optional" => ClientAuth::Optional,
                other => bail!(
                    "{}: gateway.tls.client_auth: {other:?} is not \"required\" or \"optional\"",
                    self.at(a.span())
                ),
            },
        };
        let ca = t.client_ca.as_ref().map(|c| self.file(c.get_ref()));
        ServerTls::load(
            &self.file(t.cert.get_ref()),
            &self.file(t.key.get_ref()),
            ca.as_deref(),
            client_auth,
        )
        .map_err(|e| anyhow!("{}: gateway.tls: {e}", self.at(t.cert.span())))
    }

    /// `admin.listen`, or its override: an address, or off (empty or `off`).
    fn admin_listen(&self, a: &raw::AdminConfig) -> anyhow::Result<Option<SocketAddr>> {
        self.ov
            .admin_listen
            .clone()
            .or_else(|| a.listen.as_ref().map(|s| s.get_ref().clone()))
            .filter(|s| !s.is_empty() && s != "off")
            .map(|l| {
                l.parse::<SocketAddr>().map_err(|_| {
                    let at_line = a
                        .listen
                        .as_ref()
                        .map_or_else(|| "MCPGW_ADMIN_LISTEN".into(), |s| self.at(s.span()));
                    anyhow!("{at_line}: admin.listen: {l:?} is not an address like 127.0.0.1:8081")
                })
            })
            .transpose()
    }

    /// `gateway.upstream_networks`: networks in CIDR notation.
    fn upstream_networks(&self, g: &raw::GatewayConfig) -> anyhow::Result<Vec<ipnet::IpNet>> {
        match &g.upstream_networks {
            None => Ok(crate::net::policy::DEFAULT_UPSTREAM_NETWORKS
                .iter()
                .filter_map(|n| n.parse().ok())
                .collect()),
            Some(list) => list
                .get_ref()
                .iter()
                .map(|n| {
                    n.parse::<ipnet::IpNet>().map_err(|_| {
                        anyhow!(
                            "{}: gateway.upstream_networks: {n:?} is not a network like 10.0.0.0/8 or fd00::/8",
                            self.at(list.span())
                        )
                    })
                })
                .collect(),
        }
    }

    /// `[[upstream]]`, in file order: names valid, unique and free of the separator.
    fn upstreams(&self, raw: &RawConfig, gw: &Gateway) -> anyhow::Result<Vec<Upstream>> {
        let separator = &gw.separator;
        let mut names = HashSet::new();
        let mut upstreams = Vec::new();
        for (i, u) in raw.upstreams.iter().enumerate() {
            let name = u.name.get_ref();
            let field = |f: &str| format!("upstream[{i}].{f}");
            if name.is_empty()
                || name.len() > 32
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                bail!(
                    "{}: {}: {name:?} must be 1 to 32 letters, digits, '-' or '_'",
                    self.at(u.name.span()),
                    field("name")
                );
            }
            if name.contains(separator.as_str()) {
                bail!(
                    "{}: {}: {name:?} contains the name separator {separator:?}",
                    self.at(u.name.span()),
                    field("name")
                );
            }
            if !names.insert(name.clone()) {
                bail!(
                    "{}: {}: duplicate upstream {name:?}",
                    self.at(u.name.span()),
                    field("name")
                );
            }
            upstreams.push(self.upstream(u, &field, gw, raw.gateway.max_call_ms)?);
        }
        Ok(upstreams)
    }

    /// One `[[upstream]]` past its name: transport, session, era, timeouts, retry,
    /// breaker and outlier policy.
    fn upstream(
        &self,
        u: &raw::UpstreamConfig,
        field: FieldName,
        gw: &Gateway,
        max_call_ms: Option<u64>,
    ) -> anyhow::Result<Upstream> {
        let (transport, replicas) = match u.transport.get_ref().as_str() {
            "http" | "streamable-http" => self.http(u, field, &gw.outbound)?,
            "stdio" => (self.stdio(u, field)?, Vec::new()),
            other => bail!(
                "{}: {}: unknown transport {other:?} (expected \"http\" or \"stdio\")",
                self.at(u.transport.span()),
                field("transport")
            ),
        };
        let shared_session = match u.session.as_ref().map(|s| s.get_ref().as_str()) {
            None | Some("per-client") => false,
            Some("shared") => true,
            Some(other) => bail!(
                "{}: {}: {other:?} is not \"per-client\" or \"shared\"",
                self.at(u.session.as_ref().map_or(u.name.span(), |s| s.span())),
                field("session")
            ),
        };
        let era = match u.era.as_ref().map(|s| s.get_ref().as_str()) {
            Some("legacy") => UpstreamEra::Legacy,
            None | Some("auto") => UpstreamEra::Auto,
            Some("2026-07-28") => UpstreamEra::Stateless,
            Some(other) => bail!(
                "{}: {}: {other:?} is not \"legacy\", \"auto\" or \"2026-07-28\"",
                self.at(u.era.as_ref().map_or(u.name.span(), |s| s.span())),
                field("era")
            ),
        };
        let timeout = u
            .call_timeout_ms
            .map_or(gw.call_timeout, Duration::from_millis);
        let max_call = u.max_call_ms.or(max_call_ms).unwrap_or(600_000);
        Ok(Upstream {
            name: u.name.get_ref().clone(),
            era,
            transport,
            call_timeout: timeout,
            max_call: Duration::from_millis(max_call).max(timeout),
            prefix: u.prefix.unwrap_or(true),
            tool_timeouts: u
                .tool_timeouts_ms
                .iter()
                .map(|(k, v)| (k.clone(), Duration::from_millis(*v)))
                .collect(),
            shared_session,
            retry: crate::resilience::RetryPolicy {
                retries: u.retries.unwrap_or(2),
                base: ms(u.retry_backoff_ms, 25),
                cap: Duration::from_secs(1).max(ms(u.retry_backoff_ms, 25)),
                budget_percent: u.retry_budget_percent.unwrap_or(20).min(100),
                idempotent_tools: u.idempotent_tools.clone(),
            },
            breaker: crate::resilience::BreakerPolicy {
                failures: u.breaker_failures.unwrap_or(5),
                open: ms(u.breaker_open_ms, 10_000),
            },
            replicas,
            outlier: outlier_policy(u.outlier.as_ref()),
            from_admin: false,
            outbound: gw.outbound.clone(),
        })
    }

    /// An http upstream: its URLs (allowed by `outbound`, one scheme, no repeats), TLS,
    /// headers and auth. The transport names the first URL; the replicas are all of them
    /// when there are several, else none.
    fn http(
        &self,
        u: &raw::UpstreamConfig,
        field: FieldName,
        outbound: &Arc<AddressPolicy>,
    ) -> anyhow::Result<(Transport, Vec<Replica>)> {
        let urls = self.urls(u, field)?;
        let mut endpoints: Vec<Replica> = Vec::with_capacity(urls.len());
        for (name, url) in &urls {
            let at = self.at(url.span());
            let (https, addr, host, path) =
                split_http_url(url.get_ref()).map_err(|e| anyhow!("{at}: {name}: {e}"))?;
            outbound
                .check_authority(&addr)
                .map_err(|d| OutboundRefused(format!("{at}: {name}: {}", refusal(&addr, d))))?;
            if let Some(first) = endpoints.first() {
                if first.tls.is_some() != https {
                    bail!("{at}: {name}: every replica must use the same scheme");
                }
            }
            if endpoints.iter().any(|e| e.url == *url.get_ref()) {
                bail!("{at}: {name}: listed twice");
            }
            let tls = self.client_tls(u, field, url, https, &host)?;
            endpoints.push(Replica {
                url: url.get_ref().clone(),
                addr,
                host,
                path,
                tls,
            });
        }
        if u.outlier.is_some() && endpoints.len() < 2 {
            bail!(
                "{}: {}: only for upstreams with two or more `urls`",
                self.at(u.name.span()),
                field("outlier")
            );
        }
        let Replica {
            addr,
            host,
            path,
            tls,
            ..
        } = endpoints[0].clone();
        let replicas = if endpoints.len() > 1 {
            endpoints
        } else {
            Vec::new()
        };
        if u.command.is_some() {
            bail!(
                "{}: {}: only for transport \"stdio\"",
                self.at(u.name.span()),
                field("command")
            );
        }
        let at = |s: std::ops::Range<usize>| self.at(s);
        let (headers, auth) = credentials(u, field, &at, &self.ov.env, self.secret_key, outbound)?;
        let transport = Transport::Http {
            addr,
            host,
            path,
            headers,
            auth,
            connect_timeout: ms(u.connect_timeout_ms, 5_000),
            tls,
        };
        Ok((transport, replicas))
    }

    /// An http upstream's `url` or `urls` (one to [`MAX_REPLICAS`]), each with its field
    /// name.
    fn urls<'u>(
        &self,
        u: &'u raw::UpstreamConfig,
        field: FieldName,
    ) -> anyhow::Result<Vec<(String, &'u Spanned<String>)>> {
        Ok(match (&u.url, &u.urls) {
            (Some(_), Some(list)) => bail!(
                "{}: {}: give `url` or `urls`, not both",
                self.at(list.span()),
                field("urls")
            ),
            (Some(url), None) => vec![(field("url"), url)],
            (None, Some(list)) if list.get_ref().is_empty() => bail!(
                "{}: {}: empty (give one URL or more)",
                self.at(list.span()),
                field("urls")
            ),
            (None, Some(list)) if list.get_ref().len() > MAX_REPLICAS => bail!(
                "{}: {}: more than {MAX_REPLICAS} replicas",
                self.at(list.span()),
                field("urls")
            ),
            (None, Some(list)) => list
                .get_ref()
                .iter()
                .enumerate()
                .map(|(k, url)| (field(&format!("urls[{k}]")), url))
                .collect(),
            (None, None) => bail!(
                "{}: {}: required for transport \"http\" (or `urls`)",
                self.at(u.name.span()),
                field("url")
            ),
        })
    }

    /// TLS to one replica: for https:// URLs only, with `tls_ca` if given.
    fn client_tls(
        &self,
        u: &raw::UpstreamConfig,
        field: FieldName,
        url: &Spanned<String>,
        https: bool,
        host: &str,
    ) -> anyhow::Result<Option<crate::net::tls::ClientTls>> {
        match (&u.tls_ca, https) {
            (Some(ca), false) => bail!(
                "{}: {}: only for https:// URLs",
                self.at(ca.span()),
                field("tls_ca")
            ),
            (ca, true) => {
                let ca_file = ca.as_ref().map(|c| self.file(c.get_ref()));
                let tls = crate::net::tls::ClientTls::new(sni_host(host), ca_file.as_deref())
                    .map_err(|e| {
                        let span = ca.as_ref().map_or(url.span(), |c| c.span());
                        anyhow!("{}: {}: {e}", self.at(span), field("tls_ca"))
                    })?;
                Ok(Some(tls))
            }
            (None, false) => Ok(None),
        }
    }

    /// A stdio upstream: a `command` (`@self`: this binary), and no http-only fields.
    fn stdio(&self, u: &raw::UpstreamConfig, field: FieldName) -> anyhow::Result<Transport> {
        let cmd = u.command.as_ref().ok_or_else(|| {
            anyhow!(
                "{}: {}: required for transport \"stdio\"",
                self.at(u.name.span()),
                field("command")
            )
        })?;
        if u.url.is_some() || u.urls.is_some() || u.outlier.is_some() {
            let f = if u.url.is_some() {
                "url"
            } else if u.urls.is_some() {
                "urls"
            } else {
                "outlier"
            };
            bail!(
                "{}: {}: only for transport \"http\"",
                self.at(u.name.span()),
                field(f)
            );
        }
        if u.auth.is_some() {
            bail!(
                "{}: {}: only for transport \"http\"",
                self.at(u.name.span()),
                field("auth")
            );
        }
        let command = if cmd.get_ref() == "@self" {
            std::env::current_exe().context("cannot find this binary for @self")?
        } else if cmd.get_ref().is_empty() {
            bail!("{}: {}: empty", self.at(cmd.span()), field("command"));
        } else {
            PathBuf::from(cmd.get_ref())
        };
        Ok(Transport::Stdio {
            command,
            args: u.args.clone(),
            env: u.env.clone(),
            cwd: u.cwd.as_ref().map(PathBuf::from),
            restart_backoff_max: ms(u.restart_backoff_max_ms, 30_000),
        })
    }

    /// `[[server]]`: names valid and unique, renamed names unique.
    fn servers(&self, raw: &[raw::ServerConfig]) -> anyhow::Result<Vec<VirtualServer>> {
        let mut servers = Vec::new();
        let mut server_names = HashSet::new();
        for (i, sv) in raw.iter().enumerate() {
            let name = sv.name.get_ref();
            let field = |f: &str| format!("server[{i}].{f}");
            if name.is_empty()
                || name.len() > 64
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                bail!(
                    "{}: {}: {name:?} must be 1 to 64 letters, digits, '-' or '_'",
                    self.at(sv.name.span()),
                    field("name")
                );
            }
            if !server_names.insert(name.clone()) {
                bail!(
                    "{}: {}: duplicate server {name:?}",
                    self.at(sv.name.span()),
                    field("name")
                );
            }
            let mut shown = HashSet::new();
            for new in sv.rename.values() {
                if new.is_empty() || new.chars().count() > 64 || !shown.insert(new.clone()) {
                    bail!(
                        "{}: {}: {new:?} must be a unique name of 1 to 64 characters",
                        self.at(sv.name.span()),
                        field("rename")
                    );
                }
            }
            servers.push(VirtualServer {
                name: name.clone(),
                tools: sv.tools.clone(),
                prompts: sv.prompts.clone(),
                resources: sv.resources.clone(),
                rename: sv.rename.clone(),
                descriptions: sv.descriptions.clone(),
            });
        }
        Ok(servers)
    }

    /// `[admin]` past its listener: `stdio_commands` absolute paths or `@self`.
    fn admin(&self, a: &raw::AdminConfig, listen: Option<SocketAddr>) -> anyhow::Result<Admin> {
        Ok(Admin {
            listen,
            token: self
                .ov
                .admin_token
                .clone()
                .or_else(|| a.token.clone())
                .filter(|t| !t.is_empty()),
            stdio_commands: a
                .stdio_commands
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let v = c.get_ref();
                    if v == "@self" || Path::new(v).is_absolute() {
                        Ok(v.clone())
                    } else {
                        Err(anyhow!(
                            "{}: admin.stdio_commands[{i}]: {v:?} is not an absolute path (or @self)",
                            self.at(c.span())
                        ))
                    }
                })
                .collect::<anyhow::Result<_>>()?,
            store: match a.data_dir.as_deref() {
                Some(":memory:") => None,
                Some(d) => Some(PathBuf::from(d).join("mcpgw.db")),
                None => default_data_dir().map(|d| d.join("mcpgw.db")),
            },
        })
    }

    /// `[auth]` and `[[role]]`, compiled; the JWKS URL must pass `outbound`.
    fn auth(&self, raw: &RawConfig, outbound: &AddressPolicy) -> anyhow::Result<crate::auth::Auth> {
        let source = self.source;
        let auth =
            crate::auth::Auth::compile(raw, self.base_dir).map_err(|e| anyhow!("{source}: {e}"))?;
        if let Some((url, _)) = auth.jwks_url() {
            check_url(outbound, url).map_err(|e| anyhow!("{source}: auth.jwt.jwks_url: {e}"))?;
        }
        Ok(auth)
    }

    /// `[telemetry]`: a known log format; the OTLP endpoint must pass `outbound`.
    fn telemetry(
        &self,
        t: &raw::TelemetryConfig,
        outbound: &AddressPolicy,
    ) -> anyhow::Result<Telemetry> {
        let source = self.source;
        let json_logs = match t.log_format.as_deref() {
            None | Some("pretty") | Some("text") => false,
            Some("json") => true,
            Some(other) => {
                bail!("{source}: telemetry.log_format {other:?}: expected pretty or json")
            }
        };
        if let Some(e) = &t.otlp_endpoint {
            check_url(outbound, e)
                .map_err(|e| anyhow!("{source}: telemetry.otlp_endpoint: {e}"))?;
        }
        Ok(Telemetry {
            otlp_endpoint: t
                .otlp_endpoint
                .clone()
                .or_else(|| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok())
                .filter(|e| !e.is_empty()),
            service_name: t.service_name.clone().unwrap_or_else(|| "mcpgw".into()),
            sample_ratio: t.sample_ratio.unwrap_or(1.0).clamp(0.0, 1.0),
            json_logs,
        })
    }

    /// `[audit]`: a known `on_full`; off without a path.
    fn audit(&self, a: &raw::AuditConfig) -> anyhow::Result<Option<AuditSettings>> {
        let source = self.source;
        let block = match a.on_full.as_deref() {
            None | Some("drop") => false,
            Some("block") => true,
            Some(other) => bail!("{source}: audit.on_full {other:?}: expected drop or block"),
        };
        Ok(a.path
            .as_ref()
            .filter(|p| !p.is_empty())
            .map(|p| AuditSettings {
                path: PathBuf::from(p),
                block,
                arguments: a.arguments.unwrap_or(false),
            }))
    }

    /// `[guard]`, compiled (its files relative to the config's directory).
    fn guard(&self, g: &raw::GuardConfig) -> anyhow::Result<crate::guard::policy::Policy> {
        crate::guard::policy::Policy::compile(g, self.base_dir.unwrap_or(Path::new(".")))
            .map_err(|e| anyhow!("{}: {e}", self.source))
    }
}

/// `gateway.allowed_hosts`: host names without a port, lowercased.
fn allowed_hosts(g: &raw::GatewayConfig) -> anyhow::Result<Vec<String>> {
    g.allowed_hosts
        .iter()
        .map(|h| {
            let h = h.trim().to_ascii_lowercase();
            let port = !h.starts_with('[') && h.contains(':') || h.contains("]:");
            if h.is_empty() || port || h.bytes().any(|b| b.is_ascii_whitespace() || b == b'/') {
                bail!("gateway.allowed_hosts: {h:?} is not a host name without a port (e.g. \"mcp.example.com\", or \"*\")");
            }
            Ok(h)
        })
        .collect()
}

/// `gateway.max_json_depth`: within 2..=[`crate::jsonrpc::frame::MAX_DEPTH`].
fn max_json_depth(g: &raw::GatewayConfig) -> anyhow::Result<usize> {
    match g.max_json_depth {
        None => Ok(64),
        Some(d @ 2..=crate::jsonrpc::frame::MAX_DEPTH) => Ok(d),
        Some(d) => bail!(
            "gateway.max_json_depth: {d} is out of range (2..={})",
            crate::jsonrpc::frame::MAX_DEPTH
        ),
    }
}

// === admin-added upstreams ===

impl Config {
    /// Validates a document holding only `[[upstream]]` entries from the admin API as this
    /// configuration would run them: the config file's rules, against this gateway's own
    /// listeners, and within the admin API's address policy (`upstream_networks`). Errors
    /// name the field (`upstream[0].url`); an address the policy refuses is an [`OutboundRefused`].
    pub fn check_admin_upstreams(&self, doc: &str, source: &str) -> anyhow::Result<()> {
        let ov = Overrides {
            listen: Some(self.gateway.listen.to_string()),
            admin_listen: Some(
                self.admin
                    .listen
                    .map_or_else(|| "off".into(), |a| a.to_string()),
            ),
            ..Default::default()
        };
        let parsed = Config::parse(doc, source, &ov)?;
        for (i, u) in parsed.upstreams.iter().enumerate() {
            u.check_outbound(i, &self.gateway.admin_outbound)
                .map_err(|e| OutboundRefused(format!("{source}: {e}")))?;
        }
        Ok(())
    }

    /// Subjects the upstreams named in `names` (those added through the admin API) to the
    /// admin API's address policy when they connect.
    pub fn limit_admin_upstreams<'a>(&mut self, names: impl IntoIterator<Item = &'a str>) {
        let policy = self.gateway.admin_outbound.clone();
        let names: HashSet<&str> = names.into_iter().collect();
        for u in &mut self.upstreams {
            if names.contains(u.name.as_str()) {
                u.set_outbound(&policy);
            }
        }
    }
}

/// Headers the gateway writes itself: configured ones would break the request's framing.
const RESERVED_HEADERS: &[&str] = &["host", "content-length", "transfer-encoding", "connection"];

/// Whether `name` is an HTTP header name (RFC 9110 token) the configuration may set.
fn header_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        && !RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str())
}

/// An upstream's extra headers and credential.
type Credentials = (Vec<(String, Secret)>, Option<UpstreamAuth>);

/// An upstream's `headers` and `auth`, validated, with their secrets loaded. Errors name the
/// line, the field and the upstream, never a value.
fn credentials(
    u: &raw::UpstreamConfig,
    field: &dyn Fn(&str) -> String,
    at: &dyn Fn(std::ops::Range<usize>) -> String,
    env: &Env,
    key: Option<&SecretKey>,
    outbound: &Arc<AddressPolicy>,
) -> anyhow::Result<Credentials> {
    let name = u.name.get_ref();
    let load = |v: &raw::SecretText, f: String| {
        let v = &v.0;
        let s = crate::secret::resolve(v.get_ref(), env, key)
            .map_err(|e| anyhow!("{}: {f} (upstream {name:?}): {e}", at(v.span())))?;
        // A line break in a value would let it write further headers.
        if s.expose().bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
            bail!(
                "{}: {f} (upstream {name:?}): the value contains a line break or NUL",
                at(v.span())
            );
        }
        Ok(s)
    };
    let mut headers = Vec::with_capacity(u.headers.len());
    for (k, v) in &u.headers {
        let f = field(&format!("headers.{k}"));
        if !header_name_ok(k) {
            bail!(
                "{}: {f}: not a header name the gateway may send (an HTTP token other than Host, Content-Length, Transfer-Encoding, Connection)",
                at(v.0.span())
            );
        }
        headers.push((k.clone(), load(v, f)?));
    }
    let Some(a) = &u.auth else {
        return Ok((headers, None));
    };
    let shape_error = || {
        anyhow!(
            "{}: {}: give one of `bearer`, `header` + `value`, or `oauth_token_url` + `client_id` + `client_secret` (+ `scope`)",
            at(u.name.span()),
            field("auth")
        )
    };
    let fixed = a.bearer.is_some() as u8 + (a.header.is_some() || a.value.is_some()) as u8;
    let oauth = a.oauth_token_url.is_some()
        || a.client_id.is_some()
        || a.client_secret.is_some()
        || a.scope.is_some();
    let auth = match (&a.bearer, &a.header, &a.value) {
        _ if fixed + oauth as u8 != 1 => return Err(shape_error()),
        (Some(b), None, None) => UpstreamAuth::Header {
            name: "Authorization".into(),
            value: load(b, field("auth.bearer"))?.prefixed("Bearer "),
        },
        (None, Some(h), Some(v)) => {
            if !header_name_ok(h.get_ref()) {
                bail!(
                    "{}: {}: not a header name the gateway may send",
                    at(h.span()),
                    field("auth.header")
                );
            }
            UpstreamAuth::Header {
                name: h.get_ref().clone(),
                value: load(v, field("auth.value"))?,
            }
        }
        (None, None, None) => {
            let (Some(url), Some(id), Some(secret)) =
                (&a.oauth_token_url, &a.client_id, &a.client_secret)
            else {
                return Err(shape_error());
            };
            let u = url.get_ref();
            check_token_url(url, &field("auth.oauth_token_url"), at, outbound)?;
            if id.get_ref().is_empty() {
                bail!("{}: {}: empty", at(id.span()), field("auth.client_id"));
            }
            UpstreamAuth::OAuth(OAuthClient {
                token_url: u.clone(),
                client_id: id.get_ref().clone(),
                client_secret: load(secret, field("auth.client_secret"))?,
                scope: a.scope.clone().filter(|s| !s.is_empty()),
                outbound: outbound.clone(),
            })
        }
        _ => return Err(shape_error()),
    };
    let sent = match &auth {
        UpstreamAuth::Header { name, .. } => name.as_str(),
        UpstreamAuth::OAuth(_) => "Authorization",
    };
    if let Some((k, v)) = u.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(sent)) {
        bail!(
            "{}: {}: {sent} is already set by `auth`",
            at(v.0.span()),
            field(&format!("headers.{k}"))
        );
    }
    Ok((headers, Some(auth)))
}

/// `auth.oauth_token_url`: an http:// or https:// URL with a host and no user info, allowed
/// by `outbound`.
fn check_token_url(
    url: &Spanned<String>,
    f: &str,
    at: &dyn Fn(std::ops::Range<usize>) -> String,
    outbound: &AddressPolicy,
) -> anyhow::Result<()> {
    let u = url.get_ref();
    let authority = u
        .split_once("://")
        .map_or("", |(_, rest)| rest.split('/').next().unwrap_or(""));
    if !(u.starts_with("https://") || u.starts_with("http://"))
        || u.contains(char::is_whitespace)
        || authority.is_empty()
        || authority.contains('@')
    {
        bail!(
            "{}: {f}: must be an http:// or https:// URL with a host and no user info",
            at(url.span())
        );
    }
    let (_, addr, _, _) = split_http_url(u).map_err(|e| anyhow!("{}: {f}: {e}", at(url.span())))?;
    outbound
        .check_authority(&addr)
        .map_err(|d| OutboundRefused(format!("{}: {f}: {}", at(url.span()), refusal(&addr, d))))?;
    Ok(())
}

/// `$XDG_DATA_HOME/mcpgw`, else `~/.local/share/mcpgw`.
fn default_data_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .map(|d| d.join("mcpgw"))
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).map_or(0, |t| t.matches('\n').count()) + 1
}

/// Splits `http(s)://host:port/path` into (https, connect address, Host header, path).
fn split_http_url(url: &str) -> anyhow::Result<(bool, String, String, String)> {
    let (https, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(r), _) => (true, r),
        (None, Some(r)) => (false, r),
        (None, None) => bail!("{url:?}: only http:// and https:// URLs are supported"),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.contains('@') {
        // Not echoed: user info may hold a password.
        bail!("a URL with user info is refused (credentials go in `auth`)");
    }
    if authority.is_empty() {
        bail!("{url:?}: needs a host");
    }
    let has_port = authority.rsplit_once(':').is_some_and(|(h, p)| {
        !h.is_empty() && !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()) && !h.ends_with(':')
    }) && !authority.ends_with(']');
    let addr = if has_port {
        let port = authority.rsplit_once(':').map_or("", |(_, p)| p);
        if !port.parse::<u16>().is_ok_and(|p| p > 0) {
            bail!("{url:?}: port {port} is not a port from 1 to 65535");
        }
        authority.to_string()
    } else {
        format!("{authority}:{}", if https { 443 } else { 80 })
    };
    Ok((https, addr, authority.to_string(), path.to_string()))
}

/// Checks the literal address of an `http(s)://` URL the gateway fetches; a URL of another
/// form is left to its own validation.
fn check_url(policy: &AddressPolicy, url: &str) -> Result<(), String> {
    match split_http_url(url) {
        Ok((_, addr, _, _)) => policy.check_authority(&addr).map_err(|d| refusal(&addr, d)),
        Err(e) if url.contains("://") && (url.starts_with("http")) => Err(e.to_string()),
        Err(_) => Ok(()),
    }
}

/// The host of an authority, without port or IPv6 brackets: the TLS server name.
fn sni_host(authority: &str) -> &str {
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6);
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> anyhow::Result<Config> {
        Config::parse(t, "test.toml", &Overrides::default())
    }

    #[test]
    fn embedded_default_is_valid() {
        let c = parse(EMBEDDED_DEFAULT).expect("embedded default");
        assert_eq!(c.upstreams.len(), 1);
        assert!(matches!(c.upstreams[0].transport, Transport::Stdio { .. }));
    }

    #[test]
    fn host_and_batch_settings() {
        let c = parse(EMBEDDED_DEFAULT).expect("embedded default");
        assert_eq!(c.gateway.max_batch_items, 100);
        assert!(c.gateway.allowed_hosts.is_empty());
        let c = parse("[gateway]\nmax_batch_items = 0\nallowed_hosts = [\"MCP.Example\", \"[fe80::1]\", \"*\"]\n")
            .expect("valid");
        assert_eq!(c.gateway.max_batch_items, 1);
        assert_eq!(c.gateway.allowed_hosts, ["mcp.example", "[fe80::1]", "*"]);
        for bad in ["mcp.example:8080", "[::1]:80", "", "a b", "http://x"] {
            let t = format!("[gateway]\nallowed_hosts = [{bad:?}]\n");
            let e = parse(&t).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains("allowed_hosts"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn replicas_and_their_outlier_policy() {
        let up = |rest: &str| format!("[[upstream]]\nname = \"a\"\ntransport = \"http\"\n{rest}");
        let c = parse(&up(
            "urls = [\"http://127.0.0.1:9001/mcp\", \"http://127.0.0.1:9002/x\"]\n[upstream.outlier]\nconsecutive_failures = 2\nbase_ejection_ms = 500\n",
        ))
        .expect("replicas");
        let u = &c.upstreams[0];
        let urls: Vec<_> = u
            .replicas
            .iter()
            .map(|r| (r.addr.as_str(), r.path.as_str()))
            .collect();
        assert_eq!(urls, [("127.0.0.1:9001", "/mcp"), ("127.0.0.1:9002", "/x")]);
        assert!(matches!(&u.transport, Transport::Http { addr, .. } if addr == "127.0.0.1:9001"));
        assert_eq!(u.outlier.consecutive_failures, 2);
        assert_eq!(u.outlier.base_ejection, Duration::from_millis(500));
        assert_eq!(u.outlier.max_ejection, Duration::from_millis(300_000));
        assert_eq!(u.outlier.max_ejection_percent, 50);
        // One URL in `urls` is a plain upstream.
        let c = parse(&up("urls = [\"http://127.0.0.1:9001/mcp\"]\n")).expect("one");
        assert!(c.upstreams[0].replicas.is_empty());

        let bad = |rest: &str, want: &str| {
            let e = format!("{:#}", parse(&up(rest)).expect_err(want));
            assert!(e.contains(want), "{e}");
        };
        bad(
            "url = \"http://h:1/mcp\"\nurls = [\"http://h:2/mcp\"]\n",
            "upstream[0].urls: give `url` or `urls`, not both",
        );
        bad("urls = []\n", "upstream[0].urls: empty");
        bad(
            "urls = [\"http://h:1/mcp\", \"ftp://h:2/mcp\"]\n",
            "upstream[0].urls[1]: \"ftp://h:2/mcp\": only http",
        );
        bad(
            "urls = [\"http://h:1/mcp\", \"https://h:2/mcp\"]\n",
            "upstream[0].urls[1]: every replica must use the same scheme",
        );
        bad(
            "urls = [\"http://h:1/mcp\", \"http://h:1/mcp\"]\n",
            "upstream[0].urls[1]: listed twice",
        );
        bad("", "upstream[0].url: required");
        bad(
            "url = \"http://h:1/mcp\"\n[upstream.outlier]\nconsecutive_failures = 1\n",
            "upstream[0].outlier: only for upstreams with two or more `urls`",
        );
        bad(
            "urls = [\"http://h:1/mcp\", \"http://h:2/mcp\"]\n[upstream.outlier]\nconsecutive = 1\n",
            "consecutive",
        );
    }

    #[test]
    fn errors_name_line_and_field() {
        let e = parse("[gateway]\nlisten = \"x\"\n").expect_err("bad listen");
        assert!(e.to_string().contains("test.toml:2"), "{e}");
        assert!(e.to_string().contains("gateway.listen"), "{e}");
        let e = parse("[gateway]\nbogus = 1\n").expect_err("unknown key");
        assert!(
            e.to_string().contains("test.toml:2") && e.to_string().contains("bogus"),
            "{e}"
        );
        let e = parse("[[upstream]]\nname = \"a\"\ntransport = \"http\"\nurl = \"ftp://x\"\n")
            .expect_err("ftp");
        assert!(
            e.to_string().contains("upstream[0].url") && e.to_string().contains(":4"),
            "{e}"
        );
        let e = parse(
            "[[upstream]]\nname = \"a\"\ntransport = \"http\"\nurl = \"http://x\"\ntls_ca = \"ca.pem\"\n",
        )
        .expect_err("tls_ca on http");
        assert!(e.to_string().contains("upstream[0].tls_ca"), "{e}");
        let e = parse(
            "[[upstream]]\nname = \"a\"\ntransport = \"http\"\nurl = \"https://x\"\ntls_ca = \"/nonexistent/ca.pem\"\n",
        )
        .expect_err("missing CA file");
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
        let e = parse("[gateway.tls]\ncert = \"/nonexistent/c.pem\"\nkey = \"k.pem\"\n")
            .expect_err("missing cert");
        assert!(
            e.to_string().contains("gateway.tls") && e.to_string().contains("c.pem"),
            "{e}"
        );
        let e = parse("[gateway.tls]\ncert = \"c\"\nkey = \"k\"\nclient_auth = \"optional\"\n")
            .expect_err("client_auth without client_ca");
        assert!(e.to_string().contains("gateway.tls.client_auth"), "{e}");
        let e = parse("[[upstream]]\nname = \"a__b\"\ntransport = \"stdio\"\ncommand = \"x\"\n")
            .expect_err("separator in name");
        assert!(e.to_string().contains("upstream[0].name"), "{e}");
    }

    #[test]
    fn http_urls_split() {
        let (s, a, h, p) = split_http_url("http://127.0.0.1:9000/mcp").expect("url");
        assert_eq!(
            (s, a.as_str(), h.as_str(), p.as_str()),
            (false, "127.0.0.1:9000", "127.0.0.1:9000", "/mcp")
        );
        let (_, a, _, p) = split_http_url("http://localhost").expect("url");
        assert_eq!((a.as_str(), p.as_str()), ("localhost:80", "/"));
        let (_, a, _, _) = split_http_url("http://[::1]:81/x").expect("url");
        assert_eq!(a, "[::1]:81");
        let (s, a, h, _) = split_http_url("https://mcp.example.com/mcp").expect("url");
        assert_eq!(
            (s, a.as_str(), h.as_str()),
            (true, "mcp.example.com:443", "mcp.example.com")
        );
        assert_eq!(sni_host("mcp.example.com:8443"), "mcp.example.com");
        assert_eq!(sni_host("[::1]:443"), "::1");
        assert_eq!(sni_host("[::1]"), "::1");
        assert_eq!(sni_host("localhost"), "localhost");
    }

    fn with_env(t: &str, vars: &[(&str, &str)]) -> anyhow::Result<Config> {
        let env: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let ov = Overrides {
            env: Env::with(env),
            ..Default::default()
        };
        Config::parse(t, "test.toml", &ov)
    }

    fn http_auth(c: &Config) -> (&Vec<(String, Secret)>, &Option<UpstreamAuth>) {
        match &c.upstreams[0].transport {
            Transport::Http { headers, auth, .. } => (headers, auth),
            Transport::Stdio { .. } => panic!("not http"),
        }
    }

    const UP: &str =
        "[[upstream]]\nname = \"api\"\ntransport = \"http\"\nurl = \"http://127.0.0.1:9/mcp\"\n";

    #[test]
    fn upstream_secrets_load_from_env_and_ciphertext() {
        let key = SecretKey::generate().expect("key");
        let b64 = key.to_base64();
        let sealed = key.encrypt("tok-123").expect("encrypt");
        let text = format!(
            "{UP}headers = {{ X-Tenant = \"env:TENANT\" }}\nauth = {{ bearer = \"{sealed}\" }}\n"
        );
        let vars = [("MCPGW_SECRET_KEY", b64.as_str()), ("TENANT", "acme")];
        let c = with_env(&text, &vars).expect("loads");
        let (headers, auth) = http_auth(&c);
        assert_eq!(headers[0].0, "X-Tenant");
        assert_eq!(headers[0].1.expose(), "acme");
        let Some(UpstreamAuth::Header { name, value }) = auth else {
            panic!("bearer: {auth:?}")
        };
        assert_eq!(
            (name.as_str(), value.expose()),
            ("Authorization", "Bearer tok-123")
        );
        // Nothing of either value in a debug dump of the whole config.
        let dump = format!("{c:?}");
        assert!(
            !dump.contains("tok-123") && !dump.contains("acme"),
            "{dump}"
        );
        assert!(!dump.contains(b64.as_str()));
        let raw: RawConfig = toml::from_str(&text.replace("env:TENANT", "acme")).expect("raw");
        let dump = format!("{raw:?}");
        assert!(!dump.contains(&sealed) && !dump.contains("acme"), "{dump}");

        // Wrong key, tampered value, no key, missing variable: each names line, field and
        // upstream, and never shows a value.
        let other = SecretKey::generate().expect("key").to_base64();
        let e = with_env(
            &text,
            &[("MCPGW_SECRET_KEY", other.as_str()), ("TENANT", "acme")],
        )
        .expect_err("wrong key");
        let msg = format!("{e:#}");
        assert!(
            msg.contains("test.toml:6")
                && msg.contains("upstream[0].auth.bearer")
                && msg.contains("\"api\"")
                && msg.contains("MCPGW_SECRET_KEY"),
            "{msg}"
        );
        let mut chars: Vec<char> = sealed.chars().collect();
        let i = chars.len() - 6;
        chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
        let tampered: String = chars.into_iter().collect();
        let e = with_env(&text.replace(&sealed, &tampered), &vars).expect_err("tampered");
        assert!(format!("{e:#}").contains("cannot be decrypted"), "{e:#}");
        let e = with_env(&text, &[("TENANT", "acme")]).expect_err("no key");
        assert!(
            format!("{e:#}").contains("MCPGW_SECRET_KEY is not set"),
            "{e:#}"
        );
        let e = with_env(&text, &vars[..1]).expect_err("no TENANT");
        assert!(
            format!("{e:#}").contains("upstream[0].headers.X-Tenant")
                && format!("{e:#}").contains("env:TENANT"),
            "{e:#}"
        );
        let e = with_env(UP, &[("MCPGW_SECRET_KEY", "not-a-key")]).expect_err("bad key");
        assert!(format!("{e:#}").contains("32 bytes"), "{e:#}");
    }

    #[test]
    fn upstream_auth_shapes_are_checked() {
        let c = parse(&format!(
            "{UP}auth = {{ header = \"X-Api-Key\", value = \"k1\" }}\n"
        ))
        .expect("header");
        assert!(
            matches!(http_auth(&c).1, Some(UpstreamAuth::Header { name, .. }) if name == "X-Api-Key")
        );
        let c = parse(&format!(
            "{UP}auth = {{ oauth_token_url = \"https://login.example.com/token\", client_id = \"gw\", client_secret = \"cs\", scope = \"mcp\" }}\n"
        ))
        .expect("oauth");
        let Some(UpstreamAuth::OAuth(o)) = http_auth(&c).1 else {
            panic!("oauth")
        };
        assert_eq!(
            (o.client_id.as_str(), o.scope.as_deref()),
            ("gw", Some("mcp"))
        );
        assert!(!format!("{o:?}").contains("\"cs\""));
        for (bad, want) in [
            ("auth = { bearer = \"a\", header = \"X\", value = \"b\" }", "upstream[0].auth"),
            ("auth = { header = \"X-Api-Key\" }", "upstream[0].auth"),
            ("auth = { bearer = \"a\", client_id = \"x\" }", "upstream[0].auth"),
            ("auth = { oauth_token_url = \"https://x/t\", client_id = \"x\" }", "upstream[0].auth"),
            ("auth = { oauth_token_url = \"ftp://x\", client_id = \"x\", client_secret = \"s\" }", "auth.oauth_token_url"),
            ("auth = {}", "upstream[0].auth"),
            ("auth = { oauth_token_url = \"https://id:pw@x/t\", client_id = \"x\", client_secret = \"s\" }", "no user info"),
            ("auth = { bearer = \"a\" }\nheaders = { authorization = \"b\" }", "headers.authorization"),
            ("auth = { header = \"Content-Length\", value = \"1\" }", "auth.header"),
            ("headers = { \"Bad Name\" = \"x\" }", "headers.Bad Name"),
            ("headers = { Host = \"x\" }", "headers.Host"),
            ("headers = { X-A = \"a\\r\\nX-Injected: 1\" }", "line break"),
            ("auth = { bearer = \"enc:v9:zz\" }", "unknown encryption format"),
        ] {
                let e = parse(&format!("{UP}{bad}\n")).expect_err(bad);
            assert!(format!("{e:#}").contains(want), "{bad}: {e:#}");
            assert!(!format!("{e:#}").contains("X-Injected"), "{e:#}");
            assert!(!format!("{e:#}").contains("id:pw"), "{e:#}");
        }
        let e = parse(&UP.replace("127.0.0.1:9", "user:pw-77@127.0.0.1:9")).expect_err("userinfo");
        assert!(
            format!("{e:#}").contains("upstream[0].url") && !format!("{e:#}").contains("pw-77"),
            "{e:#}"
        );
        let e = parse("[[upstream]]\nname = \"s\"\ntransport = \"stdio\"\ncommand = \"x\"\nauth = { bearer = \"a\" }\n")
            .expect_err("stdio");
        assert!(format!("{e:#}").contains("upstream[0].auth"), "{e:#}");
    }

    #[test]
    fn overrides_win() {
        let ov = Overrides {
            listen: Some("127.0.0.1:9999".into()),
            workers: Some(3),
            driver: Some("epoll".into()),
            ..Default::default()
        };
        let c = Config::parse("[gateway]\nlisten=\"127.0.0.1:1\"\n", "t", &ov).expect("ok");
        assert_eq!(c.gateway.listen.port(), 9999);
        assert_eq!(c.gateway.workers, 3);
        assert_eq!(c.gateway.driver, Driver::Epoll);
    }
}
