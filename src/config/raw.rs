//! The configuration file as written: serde types, TOML, unknown keys rejected.
//!
//! Every field documents its unit and default. Validation lives in `config.rs`, which turns
//! these into the immutable [`crate::config::Config`].

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[gateway]`: listener, workers, limits.
    #[serde(default)]
    pub gateway: GatewayConfig,
    /// `[[upstream]]` entries, one per MCP server fronted.
    #[serde(default, rename = "upstream")]
    pub upstreams: Vec<UpstreamConfig>,
    /// `[admin]`: the admin API.
    #[serde(default)]
    pub admin: AdminConfig,
    /// `[audit]`: the audit log.
    #[serde(default)]
    pub audit: AuditConfig,
    /// `[[server]]` entries: virtual servers, each a bundle of chosen tools, prompts and
    /// resources served at `/servers/<name>/mcp`.
    #[serde(default, rename = "server")]
    pub servers: Vec<ServerConfig>,
    /// `[auth]`: client authentication. Off (every client anonymous, all allowed) unless a
    /// method is configured.
    #[serde(default)]
    pub auth: AuthConfig,
    /// `[[role]]` entries: what a role may call, read and get.
    #[serde(default, rename = "role")]
    pub roles: Vec<RoleConfig>,
    /// `[[rate_limit]]` entries.
    #[serde(default, rename = "rate_limit")]
    pub rate_limits: Vec<RateLimitConfig>,
    /// `[telemetry]`: traces and log format.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// `[[quota]]` entries.
    #[serde(default, rename = "quota")]
    pub quotas: Vec<QuotaConfig>,
    /// `[guard]`: catalog scanning, tool pinning and call screening.
    #[serde(default)]
    pub guard: GuardConfig,
}

/// `[guard]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardConfig {
    /// Extra rule files for the catalog scan, in the format of the built-in rules
    /// (`src/guard/rules.toml`); relative to the config file. A rule with a built-in id
    /// overrides it. Default none.
    #[serde(default)]
    pub rules_files: Vec<String>,
    /// `[[guard.catalog]]`: what catalog findings and definition changes do, per upstream;
    /// the first entry whose `upstreams` match applies. With none, the defaults of
    /// [`GuardCatalogConfig`] apply to every upstream.
    #[serde(default)]
    pub catalog: Vec<GuardCatalogConfig>,
    /// `[[guard.screen]]`: screening of `tools/call` arguments and results; the first entry
    /// whose selectors match a call applies. With none, calls pass through unscreened.
    #[serde(default)]
    pub screen: Vec<GuardScreenConfig>,
}

/// One `[[guard.catalog]]` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardCatalogConfig {
    /// Upstream name globs this entry applies to. Default all.
    pub upstreams: Option<Vec<String>>,
    /// What a finding of severity low does: `log`, `hide` (the tool, prompt or resource)
    /// or `block` (the whole upstream leaves the catalog). Default `log`.
    pub low: Option<String>,
    /// Severity medium. Default `log`.
    pub medium: Option<String>,
    /// Severity high. Default `log`.
    pub high: Option<String>,
    /// Severity critical. Default `hide`.
    pub critical: Option<String>,
    /// Tool definition pinning: `off`, `report` (a changed definition is counted, audited
    /// and listed for approval, and stays served) or `hide` (a changed tool is hidden until
    /// an operator approves it). Default `report`.
    pub pin: Option<String>,
}

/// One `[[guard.screen]]` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardScreenConfig {
    /// Upstream name globs. Default all.
    pub upstreams: Option<Vec<String>>,
    /// Tool name globs, as the upstream names its tools. Default all.
    pub tools: Option<Vec<String>>,
    /// Endpoints: virtual server names, `/mcp` for the main endpoint. Default all.
    pub servers: Option<Vec<String>>,
    /// Secrets (cloud and provider keys, private keys, JWTs, high-entropy tokens): `allow`,
    /// `mask` (replaced by `[REDACTED:<kind>]`) or `block` (a JSON-RPC error, -32016).
    /// Default `mask`.
    pub secrets: Option<String>,
    /// Personal data (emails, phone numbers, Luhn-valid card numbers, IBANs with a valid
    /// checksum): `allow`, `mask` or `block`. Default `allow`.
    pub pii: Option<String>,
    /// Prompt-injection phrases and hidden Unicode text in results: `allow`, `flag` (logged,
    /// counted, audited; the result passes) or `block`. Default `flag`.
    pub injection: Option<String>,
    /// Screen the call's `arguments`. Default true.
    pub arguments: Option<bool>,
    /// Screen the call's `result`. Default true.
    pub results: Option<bool>,
}

/// `[telemetry]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// OTLP/HTTP collector to export spans to (JSON encoding), e.g. `http://127.0.0.1:4318`.
    /// Default: off (also `OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the spans. Default `mcpgw`.
    pub service_name: Option<String>,
    /// Share of calls without a sampled client trace that start a trace, 0.0-1.0. Default
    /// 1.0. Calls whose client trace is sampled are always traced.
    pub sample_ratio: Option<f64>,
    /// Log lines as `pretty` text (default) or `json` (also `MCPGW_LOG_FORMAT`). Read at
    /// start.
    pub log_format: Option<String>,
}

/// `[auth]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Roles of a client that presents no credentials. Absent: when any method below is
    /// configured, such a client is refused (401).
    pub anonymous_roles: Option<Vec<String>>,
    /// How long a verified Basic password is trusted before it is checked again, ms.
    /// Default 300000.
    pub remember_passwords_ms: Option<u64>,
    /// Teams: every principal of a team (its `team`, or the JWT team claim) gets the team's
    /// roles besides its own.
    #[serde(default, rename = "team")]
    pub teams: Vec<TeamConfig>,
    /// API keys (`Authorization: Bearer mcpgw_...` or `X-API-Key`).
    #[serde(default, rename = "api_key")]
    pub api_keys: Vec<ApiKeyConfig>,
    /// HTTP Basic users.
    #[serde(default, rename = "user")]
    pub users: Vec<UserConfig>,
    /// JWT bearer tokens.
    pub jwt: Option<JwtConfig>,
    /// OAuth 2.1 protected resource (MCP authorization): the metadata served at
    /// `/.well-known/oauth-protected-resource`.
    pub oauth: Option<OAuthConfig>,
    /// Client certificates (mTLS, needs `gateway.tls.client_ca`) mapped to principals.
    #[serde(default, rename = "cert")]
    pub certs: Vec<CertConfig>,
}

/// `[[auth.cert]]`: the principal of clients whose verified TLS certificate names
/// `subject`. A request with `Authorization` or `X-API-Key` is authenticated by those
/// instead; a certificate no entry names counts as no credentials.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertConfig {
    /// The identity the certificate names: its subject common name (CN), or, for a
    /// certificate without a CN, its first subject alternative name (DNS name, e-mail, URI
    /// or IP address). Compared exactly.
    pub subject: String,
    /// The principal's name. Default: `subject`.
    pub name: Option<String>,
    /// Roles granted.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Team, for limits and the audit log.
    pub team: Option<String>,
}

/// `[[auth.team]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamConfig {
    /// Team name, as principals name it.
    pub name: String,
    /// Roles every member gets.
    #[serde(default)]
    pub roles: Vec<String>,
}

/// `[[auth.api_key]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// The principal's name.
    pub name: String,
    /// The key's id (8 hex digits, the part after `mcpgw_`).
    pub id: String,
    /// `sha256:<salt>:<digest>`, as `mcpgw auth new-key` prints.
    pub hash: String,
    /// Roles granted.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Team, for limits and the audit log.
    pub team: Option<String>,
}

/// `[[auth.user]]`: an HTTP Basic user.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// User name.
    pub name: String,
    /// argon2id PHC string, as `mcpgw auth hash-password` prints.
    pub password_hash: String,
    /// Roles granted.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Team.
    pub team: Option<String>,
}

/// `[auth.jwt]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// Required `iss`.
    pub issuer: Option<String>,
    /// Accepted `aud` values (one must be in the token). Default: `auth.oauth.resource`
    /// when set; empty means the audience is not checked.
    #[serde(default)]
    pub audience: Vec<String>,
    /// A JWKS document on disk (re-read on reload).
    pub jwks_file: Option<String>,
    /// A JWKS document to fetch (`https://...`; `http://` only for a trusted network),
    /// e.g. the authorization server's `jwks_uri`. Fetched off the workers at start, every
    /// `jwks_refresh_ms`, and early (at most once per 30 s) when a token names a `kid` the
    /// keys lack. A failed fetch keeps the last good keys; until the first succeeds, tokens
    /// needing them are refused (the gateway still starts). Its keys are merged with
    /// `jwks_file`, `keys` and `secret_env`, which win on an equal `kid`. Default: none.
    pub jwks_url: Option<String>,
    /// Interval between fetches of `jwks_url`, ms; at least 1000. Default 300000 (5 min).
    pub jwks_refresh_ms: Option<u64>,
    /// PEM public keys (RSA, EC, Ed25519), each with an optional `kid`.
    #[serde(default)]
    pub keys: Vec<JwtKeyConfig>,
    /// Environment variable holding an HMAC secret (HS256/384/512).
    pub secret_env: Option<String>,
    /// Claim naming the principal. Default `sub`.
    pub user_claim: Option<String>,
    /// Claim (dotted path) holding role names: a list, or a space-separated string.
    /// Default `roles`.
    pub roles_claim: Option<String>,
    /// Claim holding the team. Default `team`.
    pub team_claim: Option<String>,
    /// Roles every token holder gets besides those in its claim.
    #[serde(default)]
    pub default_roles: Vec<String>,
    /// Clock skew allowed on `exp`/`nbf`, seconds. Default 60.
    pub leeway_secs: Option<u64>,
}

/// A JWT verification key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtKeyConfig {
    /// PEM text of a public key.
    pub pem: String,
    /// Its `kid`.
    pub kid: Option<String>,
}

/// `[auth.oauth]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthConfig {
    /// This gateway's resource identifier (its public MCP URL); tokens must name it as
    /// audience.
    pub resource: String,
    /// Authorization servers that issue tokens for it.
    pub authorization_servers: Vec<String>,
    /// Scopes a client may ask for.
    #[serde(default)]
    pub scopes_supported: Vec<String>,
}

/// `[[role]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleConfig {
    /// Role name.
    pub name: String,
    /// Tools it may call (and see), by gateway name; `*` globs.
    #[serde(default)]
    pub tools: Vec<String>,
    /// Prompts it may get.
    #[serde(default)]
    pub prompts: Vec<String>,
    /// Resources (gateway URIs) it may read.
    #[serde(default)]
    pub resources: Vec<String>,
}

/// `[[rate_limit]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// What is counted: `global`, `principal` (each client principal), `tool` (each tool,
    /// all clients), `principal_tool` (each principal on each tool) or `upstream`.
    pub scope: String,
    /// Tools (or, for `upstream`, upstream names) it applies to; `*` globs. Default all.
    #[serde(default)]
    pub r#match: Vec<String>,
    /// `"<n>/<s|min|h|day> [burst <b>]"`, e.g. `"10/s burst 20"`.
    pub rate: String,
}

/// `[[quota]]`: `tools/call` allowed per principal (or team) per UTC calendar day or month.
/// A call over it is answered with a JSON-RPC error (-32014) saying when the window resets.
/// A call counts once roles and principal/tool rate limits allow it and the tool is known
/// (refused calls do not count); counts are kept in the store (saved every 10 s and at
/// shutdown), so a restart keeps them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    /// Who is counted: `principal` (each client principal) or `team` (each team, all its
    /// principals together; principals without a team are not counted by this quota).
    pub scope: String,
    /// `day` (UTC day) or `month` (UTC calendar month); the count starts again at 0 when
    /// the window changes.
    pub window: String,
    /// Calls allowed per window; 0 refuses every matching call. At most 2^40 - 1.
    pub limit: u64,
    /// Tools it counts, by gateway name; `*` globs. Default: all tools. Scope, window and
    /// match identify the quota: changing its limit keeps the count, changing these starts
    /// a new one.
    #[serde(default)]
    pub r#match: Vec<String>,
}

/// `[admin]`: the admin API and the registry store. The admin API is off unless this section
/// (or `MCPGW_ADMIN_LISTEN`) gives it an address.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address of the admin listener, e.g. `127.0.0.1:8081` (keep it on loopback or a
    /// management network). Default: off.
    pub listen: Option<Spanned<String>>,
    /// Bearer token required on `/admin/*` (also `MCPGW_ADMIN_TOKEN`). Without one, only
    /// `/healthz` and `/ready` answer.
    pub token: Option<String>,
    /// Directory of the registry store (`mcpgw.db`, SQLite). Default:
    /// `$XDG_DATA_HOME/mcpgw` or `~/.local/share/mcpgw`; `":memory:"` keeps nothing.
    pub data_dir: Option<String>,
    /// Programs the admin API may add as `stdio` upstreams: exact absolute paths (or
    /// `@self`), compared with the entry's `command` as written. Only this file sets it (no
    /// environment override). An allowed program runs with any `args` the admin caller
    /// gives: list only programs that are safe with any arguments. Default: empty, the admin
    /// API cannot add stdio upstreams.
    #[serde(default)]
    pub stdio_commands: Vec<Spanned<String>>,
}

/// `[audit]`: the hash-chained audit log (off unless `path` is set).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// File the JSON lines are appended to.
    pub path: Option<String>,
    /// When the writer falls behind and its queue (65,536 events) is full: `drop` (the
    /// event is counted in `mcpgw_audit_dropped_total`, the call goes on) or `block` (the
    /// worker waits for room: nothing is lost, calls stall meanwhile). Default `drop`.
    pub on_full: Option<String>,
    /// Also write each call's `arguments` (after masking, when a `[[guard.screen]]` masks
    /// them). Default false: arguments are often personal or secret.
    pub arguments: Option<bool>,
}

/// `[[server]]`: a virtual server.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Served at `/servers/<name>/mcp`. Letters, digits, `-` and `_`.
    pub name: Spanned<String>,
    /// Tools it holds, by gateway name (`<upstream>__<tool>`); `*` matches any run of
    /// characters (`"github__*"`). Default: none.
    #[serde(default)]
    pub tools: Vec<String>,
    /// Prompts it holds, by gateway name, globs allowed. Default: none.
    #[serde(default)]
    pub prompts: Vec<String>,
    /// Resources and resource templates it holds, by gateway URI (`mcpgw://<upstream>/...`),
    /// globs allowed; reads are allowed for URIs matching these. Default: none.
    #[serde(default)]
    pub resources: Vec<String>,
    /// New names for tools and prompts in this server: gateway name -> name shown here.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// Description overrides, by the name shown in this server.
    #[serde(default)]
    pub descriptions: BTreeMap<String, String>,
    /// Client addresses (CIDR) allowed on this server, besides `[gateway]`'s lists.
    #[serde(default)]
    pub ip_allow: Vec<String>,
    /// Client addresses (CIDR) refused on this server.
    #[serde(default)]
    pub ip_deny: Vec<String>,
    /// Roles allowed on this server: a principal holding none of them gets 403. Default:
    /// any authenticated principal.
    #[serde(default)]
    pub allowed_roles: Vec<String>,
    /// Roles of clients without credentials on this server (overrides
    /// `auth.anonymous_roles` here). Absent: as on `/mcp`.
    pub anonymous_roles: Option<Vec<String>>,
}

/// `[gateway]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Address the MCP endpoint listens on. Default `127.0.0.1:8080`.
    pub listen: Option<Spanned<String>>,
    /// Worker threads, one monoio runtime each. Default: number of cores.
    pub workers: Option<usize>,
    /// IO driver: `auto` (io_uring, else epoll), `uring` or `epoll`. Default `auto`.
    pub driver: Option<Spanned<String>>,
    /// Separator between upstream name and tool/prompt name. Default `__`.
    pub name_separator: Option<Spanned<String>>,
    /// Browser origins allowed besides loopback ones (`http://localhost:*` and the like are
    /// always allowed); `"*"` allows any. Requests without `Origin` are always allowed.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// `Host` names served besides loopback ones (`localhost`, `127.0.0.1`, `[::1]`, any
    /// port, always served): names without a port, case-insensitive, `"*"` for any. Empty
    /// (default): a listener on a loopback address serves loopback names only (DNS
    /// rebinding), one on another address serves any name. Applies to the admin listener
    /// too, judged by its own address. Answer otherwise: 403, -32008.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Largest request body, bytes. Default 4 MiB (4194304).
    pub max_body_bytes: Option<usize>,
    /// Most messages in one JSON-RPC batch (2025-03-26 sessions only); a larger batch is
    /// refused whole (HTTP 400, -32600) before any of it runs. Default 100; at least 1.
    pub max_batch_items: Option<usize>,
    /// Largest request head (request line and headers), bytes. Default 16 KiB.
    pub max_header_bytes: Option<usize>,
    /// Time allowed to receive a whole request head once its first byte arrived, ms. Default 10000.
    pub header_timeout_ms: Option<u64>,
    /// Time a keep-alive connection may sit idle between requests, ms. Default 60000.
    pub idle_timeout_ms: Option<u64>,
    /// Default upstream call timeout, ms: how long to wait for an answer; every progress
    /// notification from the upstream restarts it. Default 60000.
    pub call_timeout_ms: Option<u64>,
    /// Default upper bound for one call however much progress it reports, ms. Default 600000.
    pub max_call_ms: Option<u64>,
    /// Items per page in `tools/list` and the other list answers. Default 1000.
    pub page_size: Option<usize>,
    /// Deepest nesting of arrays and objects in a client's message (its own object is level
    /// 1); deeper is refused with -32600 before anything reads it. Default 64, at most 1000.
    pub max_json_depth: Option<usize>,
    /// Whether `GET /mcp` opens a server-to-client SSE stream (else 405). Default true.
    pub get_stream: Option<bool>,
    /// Interval between SSE keep-alive comments on GET streams, ms. Default 15000.
    pub sse_keepalive_ms: Option<u64>,
    /// Events kept per SSE stream for clients that reconnect with `Last-Event-ID`. Default
    /// 256; 0 turns event ids and replay off.
    pub sse_replay_events: Option<usize>,
    /// How long a finished stream's events stay available for replay, ms. Default 30000.
    pub sse_replay_ms: Option<u64>,
    /// End a call's SSE stream after this long (with a `retry:` hint) and let the client
    /// resume it with `Last-Event-ID`: for intermediaries that cut long responses. The call
    /// goes on meanwhile. 0 (default) never ends a stream early. Needs sse_replay_events > 0.
    pub sse_poll_ms: Option<u64>,
    /// A session unused this long is ended, ms. Default 3600000 (one hour).
    pub session_idle_timeout_ms: Option<u64>,
    /// Interval at which upstream catalogs are fetched again, ms. Default 30000.
    pub refresh_interval_ms: Option<u64>,
    /// Interval of health checks (`ping`) per upstream, ms. Default 10000; 0 turns them off.
    pub health_interval_ms: Option<u64>,
    /// Most distinct tools labelled in metrics; more are counted as `__other__`. Default 1000.
    pub metrics_max_labels: Option<usize>,
    /// Most distinct client principals labelled in metrics
    /// (`mcpgw_principal_calls_total`); more are counted as `__other__`. Default 100.
    pub metrics_max_principals: Option<usize>,
    /// Whether calls are counted and timed per tool (`mcpgw_calls_total`, latency
    /// histograms, `/admin/stats`). Default true; false saves their cost (measured in
    /// perf/RESULTS.md).
    pub metrics: Option<bool>,
    /// On SIGTERM/SIGINT, how long requests in progress may take to finish, ms. Default 30000.
    pub drain_timeout_ms: Option<u64>,
    /// Reload when the config file changes (checked every second). Default false: reload
    /// on `SIGHUP` or `POST /admin/reload`.
    pub watch_config: Option<bool>,
    /// Client addresses (CIDR) allowed; empty allows all. Answer otherwise: 403.
    #[serde(default)]
    pub ip_allow: Vec<String>,
    /// Client addresses (CIDR) refused (403), checked after `ip_allow`.
    #[serde(default)]
    pub ip_deny: Vec<String>,
    /// Proxies (CIDR) whose `X-Forwarded-For` names the client address.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Most client connections one worker holds open; past it a new connection is answered
    /// 503 (`Retry-After: 1`) and closed. Default 10000.
    pub max_connections: Option<usize>,
    /// Most open connections from one client IP address, over all workers; past it a new
    /// connection is answered 429 and closed. Default 0: no cap (clients behind one NAT or
    /// proxy share an address).
    pub max_connections_per_ip: Option<usize>,
    /// Most client sessions at once; past it `initialize` is answered 503. Default 200000.
    pub max_sessions: Option<usize>,
    /// Most calls one session may have waiting on upstreams; past it a call is answered with
    /// a JSON-RPC error (-32011). Default 128.
    pub max_in_flight_per_session: Option<usize>,
    /// Most bytes queued for one SSE stream: messages waiting for a GET stream's writer,
    /// and the events a stream keeps for replay. Past it, queued messages are dropped and
    /// the oldest replay events forgotten. Default 1 MiB (1048576).
    pub sse_buffer_bytes: Option<usize>,
    /// An idle keep-alive connection to an HTTP upstream is closed after this long, ms.
    /// Default 30000.
    pub upstream_idle_timeout_ms: Option<u64>,
    /// Longest a write to a client may wait for the client to read, ms; a client that reads
    /// nothing for this long is disconnected. Default 30000.
    pub write_timeout_ms: Option<u64>,
    /// `[gateway.tls]`: serve the MCP endpoint over TLS. Default: plain HTTP.
    pub tls: Option<GatewayTlsConfig>,
    /// Networks (CIDR, e.g. `"10.20.0.0/16"`, `"fd00:1::/64"`) that upstreams added through
    /// the admin API may be reached at, their OAuth token endpoints included; checked on the
    /// literal address when added and on every resolved address when connecting. Config-file
    /// upstreams are not limited by it. Whatever it says, no upstream, token endpoint or JWKS
    /// URL may be at a link-local, cloud metadata, unspecified, broadcast or multicast
    /// address, or at the gateway's own listeners. Default: loopback and private networks,
    /// `["127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
    /// "fc00::/7"]`; `[]` refuses every admin-added HTTP upstream.
    pub upstream_networks: Option<Spanned<Vec<String>>>,
}

/// `[gateway.tls]`: TLS 1.2 and 1.3 on the client listener (ALPN `http/1.1`), optionally
/// with client certificates (mTLS). Paths are relative to the config file's directory.
/// A reload (SIGHUP, `POST /admin/reload`) re-reads `cert` and `key` (new handshakes get the
/// new certificate); `client_ca` and `client_auth` change at the next start.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayTlsConfig {
    /// The server certificate chain, PEM file, leaf first. Required.
    pub cert: Spanned<String>,
    /// Its private key, PEM file (PKCS#8, PKCS#1 or SEC1). Required.
    pub key: Spanned<String>,
    /// CA certificates (PEM file) that sign client certificates. Setting it turns on mTLS.
    /// Default: none, no client certificate is asked for.
    pub client_ca: Option<Spanned<String>>,
    /// With `client_ca`: `required` (default; the handshake fails without a valid client
    /// certificate) or `optional` (a client without one is served and authenticated by its
    /// HTTP credentials or as anonymous; an invalid one still fails the handshake).
    pub client_auth: Option<Spanned<String>>,
}

/// `[[upstream]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Unique name; prefixes its tools (`<name><sep><tool>`). Letters, digits, `-` and `_`.
    pub name: Spanned<String>,
    /// `http` (Streamable HTTP) or `stdio` (a child process).
    pub transport: Spanned<String>,
    /// `http`: the MCP endpoint, e.g. `http://127.0.0.1:9000/mcp` or
    /// `https://mcp.example.com/mcp` (TLS 1.2/1.3; the host is the SNI and the name checked
    /// in the server's certificate, against the Mozilla roots unless `tls_ca` is set).
    pub url: Option<Spanned<String>>,
    /// `http`: replicas of one server instead of `url` (exactly one of the two), e.g.
    /// `["http://10.0.0.1:9000/mcp", "http://10.0.0.2:9000/mcp"]`; 2 to 64 URLs of one scheme,
    /// each checked like `url`, all sharing `headers`, `auth`, `tls_ca` and the timeouts. A new
    /// session goes to the replica with fewer calls outstanding of two picked at random, and
    /// stays there; see `outlier` for replicas that fail. Default: none.
    pub urls: Option<Spanned<Vec<Spanned<String>>>>,
    /// `http` with `urls`: when a failing replica is left out (`[upstream.outlier]`).
    pub outlier: Option<OutlierConfig>,
    /// `https` upstreams: CA certificates (PEM file, relative to the config file) trusted
    /// instead of the Mozilla roots, e.g. a private CA. Default: the Mozilla roots.
    /// Certificate checks cannot be turned off.
    pub tls_ca: Option<Spanned<String>>,
    /// `http`: extra request headers sent to the upstream on every request. Values are
    /// secrets (never logged, shown as `***` by the admin API, stored encrypted when added
    /// through it): plain text, `env:VAR` (read from the environment at load) or
    /// `enc:v1:<base64>` (`mcpgw secret encrypt`, key in `MCPGW_SECRET_KEY`). Names must be
    /// HTTP tokens; `Host`, `Content-Length`, `Transfer-Encoding` and `Connection` are the
    /// gateway's. Default: none.
    #[serde(default)]
    pub headers: BTreeMap<String, SecretText>,
    /// `http`: the gateway's own credential for this upstream, sent on every request
    /// (initialize, calls, GET stream, DELETE). A client's `Authorization` is never
    /// forwarded. Default: none.
    pub auth: Option<UpstreamAuthConfig>,
    /// `stdio`: program to run; `@self` runs this mcpgw binary.
    pub command: Option<Spanned<String>>,
    /// `stdio`: its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// `stdio`: environment variables added to the child's (which inherits the gateway's).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// `stdio`: working directory. Default: the gateway's.
    pub cwd: Option<String>,
    /// Call timeout for this upstream, ms. Default: `gateway.call_timeout_ms`.
    pub call_timeout_ms: Option<u64>,
    /// Upper bound for one call, ms. Default: `gateway.max_call_ms`.
    pub max_call_ms: Option<u64>,
    /// Call timeouts of single tools, ms, by the upstream's own tool name (e.g.
    /// `{ "build_project" = 600000 }`); others use `call_timeout_ms`.
    #[serde(default)]
    pub tool_timeouts_ms: BTreeMap<String, u64>,
    /// Prefix names with `<name><sep>` (and URIs with `mcpgw://<name>/`). Default true;
    /// `false` exposes the upstream's own names (first upstream wins a clash).
    pub prefix: Option<bool>,
    /// `per-client` (default for `http`): one upstream session per client session, so log
    /// level, subscriptions and server-to-client requests stay each client's own. `shared`:
    /// one gateway-wide session for all clients (cheaper; for stateless servers). Stdio
    /// upstreams are always shared: the child is the session.
    pub session: Option<Spanned<String>>,
    /// Which MCP revision an `http` upstream is spoken to in: `auto` (default: ask
    /// `server/discover` first; a server of both eras serves each client in its own, one of
    /// 2026-07-28 alone is spoken to in that, any other in the legacy era), `legacy` (the
    /// `initialize` handshake only) or `2026-07-28` (stateless only).
    pub era: Option<Spanned<String>>,
    /// Connect timeout, ms (`http`). Default 5000.
    pub connect_timeout_ms: Option<u64>,
    /// Longest wait between restarts of a crashed child, ms (`stdio`). Default 30000.
    pub restart_backoff_max_ms: Option<u64>,
    /// Most retries of one call, where retrying is safe (the request never reached the
    /// upstream, or it is a read, prompt get, completion or an idempotent tool). Default 2.
    pub retries: Option<u32>,
    /// First retry backoff, ms; doubles per attempt with full jitter, capped at 1 s.
    /// Default 25.
    pub retry_backoff_ms: Option<u64>,
    /// Retries allowed as a percentage of calls (plus a few saved up). Default 20.
    pub retry_budget_percent: Option<u32>,
    /// Tools (the upstream's own names, `*` globs) safe to retry besides those annotated
    /// `readOnlyHint` or `idempotentHint`.
    #[serde(default)]
    pub idempotent_tools: Vec<String>,
    /// Consecutive failures (unreachable, timed out) that open the circuit breaker; 0 turns
    /// it off. Default 5.
    pub breaker_failures: Option<u32>,
    /// How long an open breaker refuses calls before one probe, ms. Default 10000.
    pub breaker_open_ms: Option<u64>,
}

/// `[upstream.outlier]`: ejection of failing replicas (`urls`). A failure is a connection
/// refused or timed out, a connection closed before the answer, an HTTP 5xx or a call timeout.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutlierConfig {
    /// Failures in a row that eject a replica; 0 never ejects. Default 5.
    pub consecutive_failures: Option<u32>,
    /// First ejection, ms; the n-th lasts n times as long. Default 30000.
    pub base_ejection_ms: Option<u64>,
    /// Longest ejection, ms. Default 300000.
    pub max_ejection_ms: Option<u64>,
    /// Most replicas ejected at once, percent of all (rounded down; 0 ejects none).
    /// Default 50.
    pub max_ejection_percent: Option<u32>,
}

/// `[[upstream]] auth`: one of three shapes.
///
/// - `{ bearer = "<secret>" }`: `Authorization: Bearer <secret>`.
/// - `{ header = "X-Api-Key", value = "<secret>" }`: that header with that value.
/// - `{ oauth_token_url, client_id, client_secret, scope }`: an OAuth 2.0 access token from
///   the client credentials grant, sent as `Authorization: Bearer <token>`. The token is
///   fetched off the workers (a thread per upstream) at start, again at 80% of its
///   `expires_in` (3600 s when the server gives none), and early (at most once per 10 s)
///   when the upstream answers 401. The client authenticates with HTTP Basic
///   (`client_secret_basic`). A failed fetch keeps the last token until it expires; then
///   calls fail at once with -32003 (not retried, not counted by the breaker) until a fetch
///   succeeds.
///
/// Secret values (`bearer`, `value`, `client_secret`) are written as in `headers`: plain,
/// `env:VAR` or `enc:v1:<base64>`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamAuthConfig {
    /// Bearer token (a secret).
    pub bearer: Option<SecretText>,
    /// Header name of a fixed credential, e.g. `X-Api-Key`; needs `value`.
    pub header: Option<Spanned<String>>,
    /// Its value (a secret).
    pub value: Option<SecretText>,
    /// OAuth token endpoint, `https://...` (`http://` only on a trusted network).
    pub oauth_token_url: Option<Spanned<String>>,
    /// OAuth client id.
    pub client_id: Option<Spanned<String>>,
    /// OAuth client secret (a secret).
    pub client_secret: Option<SecretText>,
    /// Space-separated scopes asked for. Default: none (the server's default).
    pub scope: Option<String>,
}

/// A secret value as written (plain, `env:VAR` or `enc:v1:...`), with its place in the file.
/// `Debug` shows `***`: a dump of the raw configuration shows no secret.
#[derive(Deserialize)]
#[serde(transparent)]
pub struct SecretText(pub Spanned<String>);

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}
