//! Client authentication and authorization.
//!
//! [`Auth`] is compiled from `[auth]`, `[[role]]` and the address lists when the config loads
//! (and again on reload); workers read it through an arc-swap. It answers one question per
//! request without blocking: who is this ([`Auth::authenticate`]). API keys and JWTs are
//! checked on the worker (one SHA-256, or one signature, with keys already loaded); a Basic
//! password is verified once on the password thread and then remembered. JWT keys from a
//! `jwks_url` are fetched by [`jwks::Remote`]'s thread and swapped in; a worker only reads
//! them. What a principal may do is its [`policy::Grant`].

pub mod credentials;
pub mod jwks;
pub mod jwt;
pub mod policy;

use std::{collections::HashMap, sync::Arc, time::Duration};

use arc_swap::{ArcSwap, ArcSwapOption};
use base64::Engine as _;
use bytes::Bytes;

use crate::{config::raw::RawConfig, transport::http::RequestHead};
use credentials::{KeyHash, PasswordChecker};
use policy::{Grant, IpRules, Method, Principal, Role, Roles};

/// Why a request was not authenticated (answered 401).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denied {
    /// No credentials, and anonymous clients are not allowed.
    Missing,
    /// Credentials that do not check out; the reason is safe to show.
    Invalid(&'static str),
}

/// API keys by id: the key's hash and its principal.
type ApiKeys = HashMap<String, (KeyHash, Arc<Principal>)>;
/// Basic users by name: the password hash and the principal.
type Users = HashMap<String, (Arc<str>, Arc<Principal>)>;

/// The compiled authentication and authorization settings.
pub struct Auth {
    /// The principal of clients without credentials, when they are allowed.
    anonymous: Option<Arc<Principal>>,
    keys: ApiKeys,
    users: Users,
    jwt: Option<JwtAuth>,
    passwords: Option<Arc<PasswordChecker>>,
    /// `[[auth.cert]]`: principals by the identity a client certificate names.
    certs: HashMap<String, Arc<Principal>>,
    /// What roles grant.
    pub roles: Roles,
    /// The OAuth protected-resource metadata, when configured.
    pub oauth: Option<OAuth>,
    /// `[gateway]` address rules.
    pub ip: IpRules,
    /// Proxies trusted for `X-Forwarded-For`.
    pub proxies: IpRules,
    /// Per virtual server address rules.
    pub server_ip: HashMap<String, IpRules>,
    /// Per virtual server: roles allowed there, and the principal of anonymous clients there.
    pub servers: HashMap<String, ServerAuth>,
    /// `[[rate_limit]]`, in file order.
    pub rates: Vec<RateRule>,
    /// `[[quota]]`, in file order.
    pub quotas: Vec<QuotaRule>,
}

/// One compiled `[[quota]]`.
#[derive(Debug)]
pub struct QuotaRule {
    /// `<scope>/<window>/<match,...>`: identifies its counters across reloads and restarts
    /// (the limit is not part of it, so a new limit keeps the count).
    pub key: Arc<str>,
    /// Counted per team (else per principal).
    team: bool,
    /// The calendar window.
    pub window: crate::ratelimit::Window,
    /// Calls allowed per window.
    pub limit: u64,
    /// Tools it counts; empty: all.
    globs: Vec<String>,
}

/// A quota counter's key: (the quota's key, principal key or team).
pub type QuotaKey = (Arc<str>, Box<str>);

/// Quota counters, shared by all workers.
pub type QuotaCounters = dashmap::DashMap<QuotaKey, crate::ratelimit::Quota>;

/// A call refused by a `[[quota]]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverQuota {
    /// The quota's limit.
    pub limit: u64,
    /// Its window.
    pub window: crate::ratelimit::Window,
    /// Counted per team (else per principal).
    pub team: bool,
    /// When the window ends, unix seconds.
    pub resets_at: u64,
}

/// A virtual server's own authentication settings.
#[derive(Debug)]
pub struct ServerAuth {
    /// A principal must hold one of these roles (empty: any).
    pub allowed_roles: Vec<String>,
    /// The principal of clients without credentials here.
    pub anonymous: Option<Arc<Principal>>,
}

impl ServerAuth {
    /// Whether `p` may use the server.
    pub fn admits(&self, p: &Principal) -> bool {
        self.allowed_roles.is_empty()
            || p.grant.roles.iter().any(|r| self.allowed_roles.contains(r))
    }
}

/// One compiled `[[rate_limit]]`.
#[derive(Debug)]
pub struct RateRule {
    /// Its position in the file (part of its buckets' keys).
    id: u32,
    scope: Scope,
    /// Tools (or upstreams) it applies to; empty: all.
    globs: Vec<String>,
    rate: crate::ratelimit::Rate,
}

/// What a rate limit counts separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// One bucket for everything.
    Global,
    /// One per principal.
    Principal,
    /// One per tool.
    Tool,
    /// One per principal and tool.
    PrincipalTool,
    /// One per upstream.
    Upstream,
}

/// Rate buckets, shared by all workers: (rule, subject) -> GCRA cell.
pub type RateBuckets = crate::ratelimit::Limiter<(u32, Box<str>)>;

/// Where a rate limit applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateStage {
    /// Every MCP request (rules without `match` of scope global or principal).
    Request,
    /// `tools/call` of a matching tool.
    Tool,
    /// Any call forwarded to a matching upstream.
    Upstream,
}

impl RateRule {
    fn stage(&self) -> RateStage {
        match self.scope {
            Scope::Upstream => RateStage::Upstream,
            Scope::Tool | Scope::PrincipalTool => RateStage::Tool,
            Scope::Global | Scope::Principal if self.globs.is_empty() => RateStage::Request,
            Scope::Global | Scope::Principal => RateStage::Tool,
        }
    }
}

struct JwtAuth {
    /// Keys from `jwks_file`, `keys` and `secret_env`.
    local: jwt::KeySet,
    /// `jwks_url` and its refresh interval.
    url: Option<(String, Duration)>,
    /// The fetcher of `url`, attached by the control plane ([`Auth::attach_jwks`]).
    remote: ArcSwapOption<jwks::Remote>,
    /// What tokens are verified against: `local` merged over the remote set of this
    /// generation (0: no remote keys).
    keys: ArcSwap<jwks::Fetched>,
    rules: jwt::Rules,
    user_claim: String,
    roles_claim: String,
    team_claim: String,
    default_roles: Vec<String>,
    /// Tokens verified lately: a client sends the same token with every request, and an
    /// ES256/RS256 signature check costs tens of microseconds. By a hash of the token; the
    /// entry holds the token itself (compared in full) and when to stop trusting it: its
    /// `exp`, at most [`VERIFIED_TTL`] from verification, and never past a key change.
    verified: dashmap::DashMap<u64, Verified>,
}

/// A token that passed verification, as remembered.
struct Verified {
    token: Box<str>,
    principal: Arc<Principal>,
    until_unix: u64,
    /// The key set generation it was verified against.
    generation: u64,
}

/// Hashes tokens for the verified-token cache (seeded per process).
static TOKEN_HASH: std::sync::LazyLock<std::collections::hash_map::RandomState> =
    std::sync::LazyLock::new(std::collections::hash_map::RandomState::new);

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Longest a verified token is trusted without checking its signature again, seconds.
const VERIFIED_TTL: u64 = 300;
/// Most remembered tokens.
const VERIFIED_MAX: usize = 10_000;

/// RFC 9728 metadata for this gateway as an OAuth 2.1 protected resource.
pub struct OAuth {
    /// The metadata document.
    pub document: Bytes,
    /// Paths it is served at (`/.well-known/oauth-protected-resource` and the same with the
    /// resource's path appended).
    pub paths: Vec<String>,
    /// `WWW-Authenticate` value of a 401.
    pub challenge: Bytes,
}

impl Auth {
    /// No authentication: every client is anonymous and may do everything.
    pub fn off() -> Self {
        Self {
            anonymous: Some(Arc::new(Principal::new(
                "anonymous",
                Method::Anonymous,
                None,
                Grant::everything(),
            ))),
            keys: HashMap::new(),
            users: HashMap::new(),
            jwt: None,
            passwords: None,
            certs: HashMap::new(),
            rates: Vec::new(),
            quotas: Vec::new(),
            roles: Roles::default(),
            oauth: None,
            ip: IpRules::default(),
            proxies: IpRules::default(),
            server_ip: HashMap::new(),
            servers: HashMap::new(),
        }
    }

    /// Whether any authentication method is configured.
    pub fn enabled(&self) -> bool {
        !self.keys.is_empty()
            || !self.users.is_empty()
            || self.jwt.is_some()
            || !self.certs.is_empty()
    }

    /// Compiles the file's settings; errors name the entry. The steps run in this order, and
    /// each stops at its first bad entry, so a config with several errors reports the same
    /// one on every load.
    pub fn compile(raw: &RawConfig, base_dir: Option<&std::path::Path>) -> Result<Self, String> {
        let a = &raw.auth;
        let roles = compile_roles(raw)?;
        let keys = compile_api_keys(&a.api_keys, &roles)?;
        let users = compile_users(&a.users, &roles)?;
        let oauth = a.oauth.as_ref().map(oauth_metadata).transpose()?;
        let jwt = match &a.jwt {
            None => None,
            Some(j) => Some(compile_jwt(j, a.oauth.as_ref(), &roles, base_dir)?),
        };
        let certs = compile_certs(raw, &roles)?;
        let any = !keys.is_empty() || !users.is_empty() || jwt.is_some() || !certs.is_empty();
        let anonymous = anonymous_principal(a.anonymous_roles.as_deref(), any, &roles)?;
        let passwords = password_checker(a, &users)?;
        let (ip, proxies) = compile_gateway_ip(&raw.gateway)?;
        let server_ip = compile_server_ip(&raw.servers)?;
        let servers = compile_server_auth(&raw.servers, &roles)?;
        let rates = compile_rates(&raw.rate_limits)?;
        let quotas = compile_quotas(&raw.quotas)?;
        Ok(Self {
            anonymous,
            keys,
            users,
            jwt,
            passwords,
            certs,
            roles,
            oauth,
            ip,
            proxies,
            server_ip,
            servers,
            rates,
            quotas,
        })
    }

    /// Every API key (config file and store): id, hash, principal.
    pub fn api_keys(&self) -> impl Iterator<Item = (&str, &KeyHash, &Principal)> {
        self.keys.iter().map(|(id, (h, p))| (id.as_str(), h, &**p))
    }

    /// `[auth.jwt] jwks_url` and its refresh interval, when set.
    pub fn jwks_url(&self) -> Option<(&str, Duration)> {
        let (url, every) = self.jwt.as_ref()?.url.as_ref()?;
        Some((url.as_str(), *every))
    }

    /// Gives this `Auth` the fetcher of its `jwks_url` (the control plane keeps one per URL
    /// across reloads) and merges the keys fetched so far.
    pub fn attach_jwks(&self, remote: Arc<jwks::Remote>) {
        if let Some(j) = &self.jwt {
            j.remote.store(Some(remote));
        }
        self.sync_jwks();
    }

    /// Merges the latest fetched JWKS with the local keys (local keys win on an equal `kid`)
    /// when it is newer than what tokens are verified against now. Called by the fetch
    /// thread after each new set and by the control plane after a reload; safe to race.
    pub fn sync_jwks(&self) {
        let Some(j) = &self.jwt else { return };
        let Some(remote) = j.remote.load_full() else {
            return;
        };
        let fetched = remote.fetched();
        if fetched.generation <= j.keys.load().generation {
            return;
        }
        let merged = Arc::new(jwks::Fetched {
            generation: fetched.generation,
            keys: fetched.keys.clone().merge(j.local.clone()),
        });
        j.keys.rcu(|cur| {
            if cur.generation >= merged.generation {
                cur.clone()
            } else {
                merged.clone()
            }
        });
    }

    /// The rate of rule `id` (for sweeping buckets of rules a reload removed).
    pub fn rate_of(&self, id: u32) -> Option<crate::ratelimit::Rate> {
        self.rates.iter().find(|r| r.id == id).map(|r| r.rate)
    }

    /// Takes one token from every rule of `stage` that applies (`name`: the tool or upstream,
    /// for those stages); Err is how long until the first refusing rule allows again.
    pub fn rate_check(
        &self,
        buckets: &RateBuckets,
        stage: RateStage,
        principal: &Principal,
        name: &str,
        now_ns: u64,
    ) -> Result<(), Duration> {
        for r in self.rates.iter().filter(|r| r.stage() == stage) {
            if !r.globs.is_empty() && !r.globs.iter().any(|g| crate::text::glob_match(g, name)) {
                continue;
            }
            let subject: Box<str> = match r.scope {
                Scope::Global => "".into(),
                Scope::Principal => principal.key.clone(),
                Scope::Tool | Scope::Upstream => name.into(),
                Scope::PrincipalTool => format!("{}\u{0}{name}", principal.key).into(),
            };
            buckets.check(&(r.id, subject), &r.rate, now_ns)?;
        }
        Ok(())
    }

    /// Counts one `tools/call` of `tool` by `principal` at `now_unix_secs` against every
    /// quota that applies. Either all of them take it, or none is charged and the first one
    /// used up is returned (two workers racing for the last call of two quotas may both
    /// charge one; the quota itself is never exceeded).
    pub fn quota_check(
        &self,
        counters: &QuotaCounters,
        principal: &Principal,
        tool: &str,
        now_unix_secs: u64,
    ) -> Result<(), OverQuota> {
        if self.quotas.is_empty() {
            return Ok(());
        }
        let applying: Vec<(&QuotaRule, QuotaKey)> = self
            .quotas
            .iter()
            .filter(|q| {
                q.globs.is_empty() || q.globs.iter().any(|g| crate::text::glob_match(g, tool))
            })
            .filter_map(|q| {
                let subject: Box<str> = if q.team {
                    principal.team.as_deref()?.into()
                } else {
                    principal.key.clone()
                };
                Some((q, (q.key.clone(), subject)))
            })
            .collect();
        let over = |q: &QuotaRule, resets_at: u64| OverQuota {
            limit: q.limit,
            window: q.window,
            team: q.team,
            resets_at,
        };
        for (q, key) in &applying {
            let used = counters.get(key).map_or(0, |c| c.used(now_unix_secs));
            if used >= q.limit {
                let id = q.window.id(now_unix_secs);
                return Err(over(q, q.window.end(id)));
            }
        }
        for (q, key) in applying {
            let taken = match counters.get(&key) {
                Some(c) => c.take(now_unix_secs),
                None => counters
                    .entry(key)
                    .or_insert_with(|| crate::ratelimit::Quota::new(q.limit, q.window))
                    .take(now_unix_secs),
            };
            if let Err(secs) = taken {
                return Err(over(q, now_unix_secs.saturating_add(secs)));
            }
        }
        Ok(())
    }

    /// Who sent `req`. API keys come as `Authorization: Bearer mcpgw_...` or `X-API-Key`;
    /// any other bearer token is a JWT; `Basic` is a user's password.
    pub async fn authenticate(&self, req: &RequestHead) -> Result<Arc<Principal>, Denied> {
        let authz = req.header_str("authorization").map(str::trim);
        let api_key = req.header_str("x-api-key").map(str::trim);
        let (scheme, cred) = match (authz, api_key) {
            (Some(a), _) => a.split_once(' ').map_or((a, ""), |(s, c)| (s, c.trim())),
            (None, Some(k)) => ("bearer", k),
            (None, None) => {
                return self.anonymous.clone().ok_or(Denied::Missing);
            }
        };
        if scheme.eq_ignore_ascii_case("bearer") {
            if let Some((id, secret)) = credentials::split_key(cred) {
                return match self.keys.get(id) {
                    Some((hash, p)) if hash.matches(secret) => Ok(p.clone()),
                    _ => Err(Denied::Invalid("unknown API key")),
                };
            }
            return self.bearer(cred);
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(cred)
                .map_err(|_| Denied::Invalid("malformed Basic credentials"))?;
            let text = String::from_utf8(raw)
                .map_err(|_| Denied::Invalid("malformed Basic credentials"))?;
            let (user, password) = text
                .split_once(':')
                .ok_or(Denied::Invalid("malformed Basic credentials"))?;
            let (Some((phc, p)), Some(checker)) = (self.users.get(user), &self.passwords) else {
                return Err(Denied::Invalid("unknown user or wrong password"));
            };
            return if checker.check(user, password, phc).await {
                Ok(p.clone())
            } else {
                Err(Denied::Invalid("unknown user or wrong password"))
            };
        }
        Err(Denied::Invalid("unsupported authorization scheme"))
    }

    /// [`Auth::authenticate`] on a connection whose verified TLS client certificate names
    /// `cert`: a request without credentials headers is the principal `[[auth.cert]]` maps
    /// that identity to. Credentials in headers win; an unmapped certificate counts as none.
    pub async fn authenticate_with_cert(
        &self,
        req: &RequestHead,
        cert: Option<&str>,
    ) -> Result<Arc<Principal>, Denied> {
        if let Some(p) = cert.and_then(|c| self.certs.get(c)) {
            if req.header("authorization").is_none() && req.header("x-api-key").is_none() {
                return Ok(p.clone());
            }
        }
        self.authenticate(req).await
    }

    fn bearer(&self, token: &str) -> Result<Arc<Principal>, Denied> {
        let Some(j) = &self.jwt else {
            return Err(Denied::Invalid("bearer tokens are not accepted here"));
        };
        let keys = j.keys.load();
        let now = unix_now();
        let h = {
            use std::hash::{BuildHasher as _, Hasher as _};
            let mut s = TOKEN_HASH.build_hasher();
            s.write(token.as_bytes());
            s.finish()
        };
        if let Some(v) = j.verified.get(&h) {
            if &*v.token == token && v.until_unix > now && v.generation == keys.generation {
                return Ok(v.principal.clone());
            }
        }
        let v = jwt::verify(token, &keys.keys, &j.rules).map_err(|e| {
            tracing::debug!(error = %e, "bearer token refused");
            if e == jwt::JwtError::UnknownKey {
                if let Some(r) = &*j.remote.load() {
                    // The provider may have rotated its keys: fetch again (rate-limited).
                    r.want_refetch();
                }
            }
            Denied::Invalid(match e {
                jwt::JwtError::Expired => "token expired",
                jwt::JwtError::WrongAudience => "token audience is not this gateway",
                _ => "invalid token",
            })
        })?;
        let name = v
            .str_claim(&j.user_claim)
            .ok_or(Denied::Invalid("token has no user claim"))?;
        let mut roles = v.list_claim(&j.roles_claim);
        roles.extend(j.default_roles.iter().cloned());
        let team = v.str_claim(&j.team_claim);
        // Bound to the token's issuer and subject (the user claim may be a display name
        // that two subjects share).
        let credential = format!(
            "jwt:{}\u{0}{}",
            v.str_claim("iss").unwrap_or(""),
            v.str_claim("sub").unwrap_or(name)
        );
        let principal = Arc::new(
            Principal::new(name, Method::Jwt, team, self.roles.grant_for(&roles, team))
                .with_credential(credential),
        );
        let exp = v
            .claims
            .get("exp")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        if j.verified.len() >= VERIFIED_MAX {
            j.verified.retain(|_, v| v.until_unix > now);
        }
        if j.verified.len() < VERIFIED_MAX {
            j.verified.insert(
                h,
                Verified {
                    token: token.into(),
                    principal: principal.clone(),
                    until_unix: exp.min(now + VERIFIED_TTL),
                    generation: keys.generation,
                },
            );
        }
        Ok(principal)
    }

    /// The `WWW-Authenticate` value for a 401.
    pub fn challenge(&self) -> Bytes {
        match &self.oauth {
            Some(o) => o.challenge.clone(),
            None if self.jwt.is_some() || !self.keys.is_empty() => {
                Bytes::from_static(b"Bearer realm=\"mcpgw\"")
            }
            None => Bytes::from_static(b"Basic realm=\"mcpgw\""),
        }
    }
}

// === compile steps ===

/// Errs with `{what}: unknown role ...` on the first name no `[[role]]` defines.
fn known_roles(roles: &Roles, what: &str, names: &[String]) -> Result<(), String> {
    match names.iter().find(|n| !roles.contains(n)) {
        Some(n) => Err(format!(
            "{what}: unknown role {n:?} (define it in [[role]])"
        )),
        None => Ok(()),
    }
}

/// `[[role]]` and `[[auth.team]]`: names are unique, a team names only defined roles.
fn compile_roles(raw: &RawConfig) -> Result<Roles, String> {
    let mut roles = Vec::new();
    for r in &raw.roles {
        if roles.iter().any(|(n, _): &(String, Role)| *n == r.name) {
            return Err(format!("role {:?} is defined twice", r.name));
        }
        roles.push((
            r.name.clone(),
            Role {
                tools: r.tools.clone(),
                prompts: r.prompts.clone(),
                resources: r.resources.clone(),
            },
        ));
    }
    let mut teams = Vec::new();
    for t in &raw.auth.teams {
        if let Some(r) = t
            .roles
            .iter()
            .find(|r| !raw.roles.iter().any(|x| x.name == **r))
        {
            return Err(format!(
                "team {:?}: unknown role {r:?} (define it in [[role]])",
                t.name
            ));
        }
        if teams
            .iter()
            .any(|(n, _): &(String, Vec<String>)| *n == t.name)
        {
            return Err(format!("team {:?} is defined twice", t.name));
        }
        teams.push((t.name.clone(), t.roles.clone()));
    }
    Ok(Roles::new(roles).with_teams(teams))
}

/// `[[auth.api_key]]`: principals by key id (8 hex digits, unique).
fn compile_api_keys(
    raw: &[crate::config::raw::ApiKeyConfig],
    roles: &Roles,
) -> Result<ApiKeys, String> {
    let mut keys = HashMap::new();
    for k in raw {
        let hash = KeyHash::parse(&k.hash).map_err(|e| format!("api_key {:?}: {e}", k.name))?;
        if k.id.len() != 8 || !k.id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("api_key {:?}: id must be 8 hex digits", k.name));
        }
        known_roles(roles, &format!("api_key {:?}", k.name), &k.roles)?;
        let p = Principal::new(
            &k.name,
            Method::ApiKey,
            k.team.as_deref(),
            roles.grant_for(&k.roles, k.team.as_deref()),
        )
        .with_credential(format!("api_key:{}", k.id));
        if keys.insert(k.id.clone(), (hash, Arc::new(p))).is_some() {
            return Err(format!("api_key id {:?} is used twice", k.id));
        }
    }
    Ok(keys)
}

/// `[[auth.user]]`: password hash and principal by user name.
fn compile_users(raw: &[crate::config::raw::UserConfig], roles: &Roles) -> Result<Users, String> {
    let mut users = HashMap::new();
    for u in raw {
        credentials::check_password_hash(&u.password_hash)
            .map_err(|e| format!("user {:?}: {e}", u.name))?;
        if u.name.contains(':') || u.name.is_empty() {
            return Err(format!(
                "user {:?}: a name must not be empty or hold ':'",
                u.name
            ));
        }
        known_roles(roles, &format!("user {:?}", u.name), &u.roles)?;
        let p = Principal::new(
            &u.name,
            Method::Basic,
            u.team.as_deref(),
            roles.grant_for(&u.roles, u.team.as_deref()),
        );
        users.insert(
            u.name.clone(),
            (Arc::<str>::from(u.password_hash.as_str()), Arc::new(p)),
        );
    }
    Ok(users)
}

/// `[auth.jwt]`. With no `audience`, tokens must name the OAuth resource when one is set.
fn compile_jwt(
    j: &crate::config::raw::JwtConfig,
    oauth: Option<&crate::config::raw::OAuthConfig>,
    roles: &Roles,
    base_dir: Option<&std::path::Path>,
) -> Result<JwtAuth, String> {
    let set = jwt_local_keys(j, base_dir)?;
    let url = jwt_jwks_url(j)?;
    let local = match (set, &url) {
        (Some(s), _) => s,
        (None, Some(_)) => jwt::KeySet::default(),
        (None, None) => {
            return Err(
                "auth.jwt: no key (give jwks_url, jwks_file, keys or secret_env)".to_string(),
            )
        }
    };
    known_roles(roles, "auth.jwt.default_roles", &j.default_roles)?;
    let mut audiences = j.audience.clone();
    if audiences.is_empty() {
        if let Some(o) = oauth {
            audiences.push(o.resource.clone());
        }
    }
    Ok(JwtAuth {
        verified: dashmap::DashMap::new(),
        keys: ArcSwap::from_pointee(jwks::Fetched {
            generation: 0,
            keys: local.clone(),
        }),
        local,
        url,
        remote: ArcSwapOption::empty(),
        rules: jwt::Rules {
            issuer: j.issuer.clone(),
            audiences,
            leeway_secs: j.leeway_secs.unwrap_or(60),
            required_claims: vec![],
        },
        user_claim: j.user_claim.clone().unwrap_or_else(|| "sub".into()),
        roles_claim: j.roles_claim.clone().unwrap_or_else(|| "roles".into()),
        team_claim: j.team_claim.clone().unwrap_or_else(|| "team".into()),
        default_roles: j.default_roles.clone(),
    })
}

/// The keys of `jwks_file` (relative to the config file), `keys` and `secret_env`, merged in
/// that order; `None` when none is given.
fn jwt_local_keys(
    j: &crate::config::raw::JwtConfig,
    base_dir: Option<&std::path::Path>,
) -> Result<Option<jwt::KeySet>, String> {
    let mut set: Option<jwt::KeySet> = None;
    let mut add = |k: jwt::KeySet| {
        set = Some(match set.take() {
            Some(s) => s.merge(k),
            None => k,
        });
    };
    if let Some(f) = &j.jwks_file {
        let path = base_dir.map_or_else(|| f.into(), |d| d.join(f));
        let text = std::fs::read(&path)
            .map_err(|e| format!("auth.jwt.jwks_file {}: {e}", path.display()))?;
        add(jwt::KeySet::from_jwks(&text)
            .map_err(|e| format!("auth.jwt.jwks_file {}: {e}", path.display()))?);
    }
    for (i, k) in j.keys.iter().enumerate() {
        add(jwt::KeySet::from_pem(k.pem.as_bytes(), k.kid.clone())
            .map_err(|e| format!("auth.jwt.keys[{i}]: {e}"))?);
    }
    if let Some(var) = &j.secret_env {
        let secret = std::env::var(var)
            .map_err(|_| format!("auth.jwt.secret_env: environment variable {var} is not set"))?;
        add(jwt::KeySet::from_secret(secret.as_bytes(), None));
    }
    Ok(set)
}

/// `jwks_url` (absolute http(s)) and its refresh interval (at least
/// [`jwks::MIN_REFRESH_MS`]), when set.
fn jwt_jwks_url(j: &crate::config::raw::JwtConfig) -> Result<Option<(String, Duration)>, String> {
    let Some(u) = &j.jwks_url else {
        return Ok(None);
    };
    if split_url(u).is_none() {
        return Err(format!(
            "auth.jwt.jwks_url {u:?} must be an absolute http(s) URL"
        ));
    }
    let ms = j.jwks_refresh_ms.unwrap_or(jwks::DEFAULT_REFRESH_MS);
    if ms < jwks::MIN_REFRESH_MS {
        return Err(format!(
            "auth.jwt.jwks_refresh_ms {ms}: at least {}",
            jwks::MIN_REFRESH_MS
        ));
    }
    Ok(Some((u.clone(), Duration::from_millis(ms))))
}

/// The principal of clients without credentials: may do everything when no method is
/// configured (`any` false), else has `auth.anonymous_roles`, else does not exist.
fn anonymous_principal(
    anonymous_roles: Option<&[String]>,
    any: bool,
    roles: &Roles,
) -> Result<Option<Arc<Principal>>, String> {
    let grant = match (anonymous_roles, any) {
        (_, false) => Some(Grant::everything()),
        (Some(r), true) => {
            known_roles(roles, "auth.anonymous_roles", r)?;
            Some(roles.grant(r))
        }
        (None, true) => None,
    };
    Ok(grant.map(|g| Arc::new(Principal::new("anonymous", Method::Anonymous, None, g))))
}

/// Starts the password thread, only when there are users.
fn password_checker(
    a: &crate::config::raw::AuthConfig,
    users: &Users,
) -> Result<Option<Arc<PasswordChecker>>, String> {
    if users.is_empty() {
        return Ok(None);
    }
    let remember = Duration::from_millis(a.remember_passwords_ms.unwrap_or(300_000));
    let checker = PasswordChecker::start(remember).map_err(|e| format!("password thread: {e}"))?;
    Ok(Some(checker))
}

/// `[gateway]` `ip_allow`/`ip_deny`, then `trusted_proxies`.
fn compile_gateway_ip(g: &crate::config::raw::GatewayConfig) -> Result<(IpRules, IpRules), String> {
    let ip = IpRules::parse(&g.ip_allow, &g.ip_deny).map_err(|e| format!("gateway: {e}"))?;
    let proxies = IpRules::parse(&g.trusted_proxies, &[])
        .map_err(|e| format!("gateway.trusted_proxies: {e}"))?;
    Ok((ip, proxies))
}

/// Per `[[server]]` address rules; servers without any are left out.
fn compile_server_ip(
    raw: &[crate::config::raw::ServerConfig],
) -> Result<HashMap<String, IpRules>, String> {
    let mut server_ip = HashMap::new();
    for s in raw {
        let rules = IpRules::parse(&s.ip_allow, &s.ip_deny)
            .map_err(|e| format!("server {:?}: {e}", s.name.get_ref()))?;
        if !rules.is_empty() {
            server_ip.insert(s.name.get_ref().clone(), rules);
        }
    }
    Ok(server_ip)
}

/// Per `[[server]]` `allowed_roles` and `anonymous_roles`; servers with neither are left
/// out.
fn compile_server_auth(
    raw: &[crate::config::raw::ServerConfig],
    roles: &Roles,
) -> Result<HashMap<String, ServerAuth>, String> {
    let mut servers = HashMap::new();
    for s in raw {
        let name = s.name.get_ref();
        known_roles(
            roles,
            &format!("server {name:?}.allowed_roles"),
            &s.allowed_roles,
        )?;
        let anonymous = match &s.anonymous_roles {
            None => None,
            Some(r) => {
                known_roles(roles, &format!("server {name:?}.anonymous_roles"), r)?;
                Some(Arc::new(Principal::new(
                    "anonymous",
                    Method::Anonymous,
                    None,
                    roles.grant(r),
                )))
            }
        };
        if !s.allowed_roles.is_empty() || anonymous.is_some() {
            servers.insert(
                name.clone(),
                ServerAuth {
                    allowed_roles: s.allowed_roles.clone(),
                    anonymous,
                },
            );
        }
    }
    Ok(servers)
}

/// `[[auth.cert]]`: identity -> principal. Needs `gateway.tls.client_ca` (else no
/// certificate is ever verified and the entries could never match).
fn compile_certs(
    raw: &RawConfig,
    roles: &Roles,
) -> Result<HashMap<String, Arc<Principal>>, String> {
    let certs = &raw.auth.certs;
    let mtls = raw
        .gateway
        .tls
        .as_ref()
        .is_some_and(|t| t.client_ca.is_some());
    if !certs.is_empty() && !mtls {
        return Err("auth.cert: needs gateway.tls.client_ca (client certificates)".into());
    }
    let mut out = HashMap::new();
    for c in certs {
        if c.subject.is_empty() {
            return Err("auth.cert: subject must not be empty".into());
        }
        if let Some(n) = c.roles.iter().find(|n| !roles.contains(n)) {
            return Err(format!(
                "auth.cert {:?}: unknown role {n:?} (define it in [[role]])",
                c.subject
            ));
        }
        let p = Principal::new(
            c.name.as_deref().unwrap_or(&c.subject),
            Method::Certificate,
            c.team.as_deref(),
            roles.grant_for(&c.roles, c.team.as_deref()),
        )
        .with_credential(format!("cert:{}", c.subject));
        if out.insert(c.subject.clone(), Arc::new(p)).is_some() {
            return Err(format!("auth.cert subject {:?} is listed twice", c.subject));
        }
    }
    Ok(out)
}

fn compile_rates(raw: &[crate::config::raw::RateLimitConfig]) -> Result<Vec<RateRule>, String> {
    raw.iter()
        .enumerate()
        .map(|(i, r)| {
            let scope = match r.scope.as_str() {
                "global" => Scope::Global,
                "principal" => Scope::Principal,
                "tool" => Scope::Tool,
                "principal_tool" => Scope::PrincipalTool,
                "upstream" => Scope::Upstream,
                other => {
                    return Err(format!(
                        "rate_limit[{i}].scope {other:?}: expected global, principal, tool, principal_tool or upstream"
                    ))
                }
            };
            let rate = crate::ratelimit::Rate::parse(&r.rate)
                .map_err(|e| format!("rate_limit[{i}].rate: {e}"))?;
            Ok(RateRule {
                id: u32::try_from(i).unwrap_or(u32::MAX),
                scope,
                globs: r.r#match.clone(),
                rate,
            })
        })
        .collect()
}

fn compile_quotas(raw: &[crate::config::raw::QuotaConfig]) -> Result<Vec<QuotaRule>, String> {
    use crate::ratelimit::{Window, QUOTA_MAX};
    let mut rules: Vec<QuotaRule> = Vec::with_capacity(raw.len());
    for (i, q) in raw.iter().enumerate() {
        let team = match q.scope.as_str() {
            "principal" => false,
            "team" => true,
            other => {
                return Err(format!(
                    "quota[{i}].scope {other:?}: expected principal or team"
                ))
            }
        };
        let window = match q.window.as_str() {
            "day" => Window::Day,
            "month" => Window::Month,
            other => {
                return Err(format!(
                    "quota[{i}].window {other:?}: expected day or month"
                ))
            }
        };
        if q.limit > QUOTA_MAX {
            return Err(format!("quota[{i}].limit {}: at most {QUOTA_MAX}", q.limit));
        }
        let key: Arc<str> = format!("{}/{}/{}", q.scope, q.window, q.r#match.join(",")).into();
        if let Some(j) = rules.iter().position(|r| r.key == key) {
            return Err(format!(
                "quota[{i}]: same scope, window and match as quota[{j}]"
            ));
        }
        rules.push(QuotaRule {
            key,
            team,
            window,
            limit: q.limit,
            globs: q.r#match.clone(),
        });
    }
    Ok(rules)
}

fn oauth_metadata(o: &crate::config::raw::OAuthConfig) -> Result<OAuth, String> {
    let (origin, path) = split_url(&o.resource).ok_or_else(|| {
        format!(
            "auth.oauth.resource {:?} must be an absolute http(s) URL",
            o.resource
        )
    })?;
    if o.authorization_servers.is_empty() {
        return Err("auth.oauth.authorization_servers: name at least one".into());
    }
    let doc = serde_json::json!({
        "resource": o.resource,
        "authorization_servers": o.authorization_servers,
        "scopes_supported": o.scopes_supported,
        "bearer_methods_supported": ["header"],
        "resource_name": "mcpgw MCP gateway",
    });
    let base = "/.well-known/oauth-protected-resource";
    let mut paths = vec![base.to_string()];
    if !path.is_empty() && path != "/" {
        paths.push(format!("{base}{path}"));
    }
    let url = format!("{origin}{}", paths.last().map_or(base, String::as_str));
    Ok(OAuth {
        document: Bytes::from(serde_json::to_vec(&doc).map_err(|e| e.to_string())?),
        paths,
        challenge: Bytes::from(format!("Bearer resource_metadata=\"{url}\"")),
    })
}

/// (`scheme://host[:port]`, path) of an absolute http(s) URL.
fn split_url(url: &str) -> Option<(&str, &str)> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let host_end = rest.find('/').unwrap_or(rest.len());
    if host_end == 0 {
        return None;
    }
    let split = url.len() - rest.len() + host_end;
    Some((&url[..split], &url[split..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(extra: &str) -> RequestHead {
        let text = format!("POST /mcp HTTP/1.1\r\nHost: x\r\n{extra}\r\n");
        let limits = crate::transport::http::Limits {
            max_header_bytes: 4096,
            max_body_bytes: 1024,
        };
        crate::transport::http::parse_request_head(text.as_bytes(), &limits)
            .expect("valid")
            .expect("complete")
    }

    #[monoio::test]
    async fn certificates_map_to_principals_unless_headers_authenticate() {
        let text = r#"
            [gateway.tls]
            cert = "c.pem"
            key = "k.pem"
            client_ca = "ca.pem"
            [[role]]
            name = "ops"
            tools = ["*"]
            [[auth.cert]]
            subject = "agent-7"
            name = "build-agent"
            roles = ["ops"]
            team = "ci"
        "#;
        let raw: RawConfig = toml::from_str(text).expect("toml");
        let auth = Auth::compile(&raw, None).expect("compiles");
        assert!(auth.enabled());
        let p = auth
            .authenticate_with_cert(&head(""), Some("agent-7"))
            .await
            .expect("mapped certificate");
        assert_eq!((&*p.name, p.method), ("build-agent", Method::Certificate));
        assert_eq!(p.team.as_deref(), Some("ci"));
        // Unmapped certificate, or none: no credentials (no anonymous role here).
        assert_eq!(
            auth.authenticate_with_cert(&head(""), Some("stranger"))
                .await
                .err(),
            Some(Denied::Missing)
        );
        assert_eq!(
            auth.authenticate_with_cert(&head(""), None).await.err(),
            Some(Denied::Missing)
        );
        // Header credentials win over the certificate.
        assert!(matches!(
            auth.authenticate_with_cert(&head("X-API-Key: mcpgw_00000000_x\r\n"), Some("agent-7"))
                .await,
            Err(Denied::Invalid(_))
        ));
        // Entries without mTLS, or naming unknown roles, are refused.
        let no_ca = text.replace("client_ca = \"ca.pem\"", "");
        let raw: RawConfig = toml::from_str(&no_ca).expect("toml");
        assert!(Auth::compile(&raw, None)
            .err()
            .is_some_and(|e| e.contains("client_ca")));
        let bad_role = text.replace("roles = [\"ops\"]", "roles = [\"nope\"]");
        let raw: RawConfig = toml::from_str(&bad_role).expect("toml");
        assert!(Auth::compile(&raw, None)
            .err()
            .is_some_and(|e| e.contains("nope")));
    }

    #[test]
    fn oauth_metadata_paths_and_challenge() {
        let o = oauth_metadata(&crate::config::raw::OAuthConfig {
            resource: "https://gw.example.com/mcp".into(),
            authorization_servers: vec!["https://as.example.com".into()],
            scopes_supported: vec!["mcp".into()],
        })
        .expect("metadata");
        assert_eq!(
            o.paths,
            [
                "/.well-known/oauth-protected-resource",
                "/.well-known/oauth-protected-resource/mcp"
            ]
        );
        assert_eq!(
            &o.challenge[..],
            b"Bearer resource_metadata=\"https://gw.example.com/.well-known/oauth-protected-resource/mcp\""
        );
        let v: serde_json::Value = serde_json::from_slice(&o.document).expect("json");
        assert_eq!(v["resource"], "https://gw.example.com/mcp");
        assert!(split_url("ftp://x/y").is_none());
    }

    fn compile(text: &str) -> Result<Auth, String> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        Auth::compile(&raw, None)
    }

    #[test]
    fn quotas_count_per_principal_and_team_and_charge_nothing_when_one_is_used_up() {
        let a = compile(
            "[[quota]]\nscope = \"principal\"\nwindow = \"day\"\nlimit = 2\nmatch = [\"gh__*\"]\n\n\
             [[quota]]\nscope = \"team\"\nwindow = \"month\"\nlimit = 3\n",
        )
        .expect("quotas");
        let counters = QuotaCounters::default();
        let everything = Grant::everything();
        let p = |name: &str, team: Option<&str>| {
            Principal::new(name, Method::ApiKey, team, everything.clone())
        };
        let (ann, bob, solo) = (p("ann", Some("t")), p("bob", Some("t")), p("solo", None));
        let day = 20_000 * 86_400 + 3_600; // 2024-10-04T01:00:00Z
        let check = |who: &Principal, tool: &str| a.quota_check(&counters, who, tool, day);
        // Ann: two gh__ calls (the team counts them too), then her daily quota is used up;
        // the refusal charges the team nothing.
        assert_eq!(check(&ann, "gh__a"), Ok(()));
        assert_eq!(check(&ann, "gh__b"), Ok(()));
        let over = check(&ann, "gh__a").expect_err("over");
        assert_eq!(
            (over.limit, over.team, over.resets_at),
            (2, false, 20_001 * 86_400)
        );
        // Bob's other tool counts for the team only: its third call.
        assert_eq!(check(&bob, "other"), Ok(()));
        let over = check(&bob, "gh__x").expect_err("team over");
        assert!(over.team && over.window == crate::ratelimit::Window::Month);
        assert_eq!(over.resets_at, 1_730_419_200, "2024-11-01T00:00:00Z");
        // No team: only the principal quota applies; other tools are not counted at all.
        for _ in 0..5 {
            assert_eq!(check(&solo, "other"), Ok(()));
        }
        assert_eq!(check(&solo, "gh__a"), Ok(()));
        // The next day Ann's daily count starts again (the team's month does not).
        let next = a.quota_check(&counters, &ann, "gh__a", day + 86_400);
        assert!(next.expect_err("team still over").team);
        for (bad, why) in [
            ("scope = \"user\"\nwindow = \"day\"\nlimit = 1", "scope"),
            ("scope = \"team\"\nwindow = \"week\"\nlimit = 1", "window"),
            (
                "scope = \"team\"\nwindow = \"day\"\nlimit = 99999999999999",
                "at most",
            ),
        ] {
            let e = compile(&format!("[[quota]]\n{bad}\n")).expect_err("refused");
            assert!(e.contains(why), "{bad}: {e}");
        }
        let twice = "[[quota]]\nscope = \"team\"\nwindow = \"day\"\nlimit = 1\n";
        let e = compile(&format!("{twice}{twice}")).expect_err("twice");
        assert!(e.contains("same scope"), "{e}");
    }

    #[test]
    fn jwks_url_alone_is_a_key_source_and_is_validated() {
        let a = compile("[auth.jwt]\njwks_url = \"https://idp.test/jwks\"\n").expect("url only");
        assert!(a.enabled());
        assert_eq!(
            a.jwks_url(),
            Some((
                "https://idp.test/jwks",
                Duration::from_millis(jwks::DEFAULT_REFRESH_MS)
            ))
        );
        // No keys until a fetch attaches some: tokens are refused, nothing panics.
        let j = a.jwt.as_ref().expect("jwt");
        assert!(j.keys.load().keys.is_empty());
        a.sync_jwks();
        for (bad, why) in [
            ("jwks_url = \"idp.test/jwks\"", "absolute"),
            (
                "jwks_url = \"https://idp.test/jwks\"\njwks_refresh_ms = 10",
                "at least 1000",
            ),
            ("issuer = \"x\"", "no key"),
        ] {
            let e = compile(&format!("[auth.jwt]\n{bad}\n")).expect_err("refused");
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
