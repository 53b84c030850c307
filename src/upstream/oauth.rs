//! OAuth 2.0 client credentials for an upstream: tokens fetched off the workers, published
//! lock-free.
//!
//! A [`TokenSource`] owns one thread (`mcpgw-oauth`) that asks the token endpoint for a token
//! (`grant_type=client_credentials`, a form POST, the client authenticated with HTTP Basic as
//! RFC 6749 2.3.1 `client_secret_basic` says) with a blocking HTTP client: at start, at 80% of
//! each token's `expires_in` (3600 s when the server gives none), after 1 s doubling up to
//! 60 s after a failure, and early when an upstream answers 401 to a request that carried a
//! token ([`TokenSource::rejected`], honoured at most once per [`MIN_EARLY_REFRESH`]). Each
//! token is published through an arc-swap; workers read it per request, without a lock or a
//! wait, and treat a token past its expiry as none: the call then fails (-32003) and a warning
//! is logged (at most every 10 s per upstream).
//!
//! The token endpoint is connected to only at addresses its upstream's outbound address
//! policy allows (`crate::net::policy`); a refused one fails the fetch like any other error.
//!
//! A failed fetch keeps the last token until it expires. Nothing here logs a token, the client
//! secret or a token endpoint's answer body; only the endpoint URL, the HTTP status and the
//! OAuth `error` code. The thread ends once its `TokenSource` is dropped (the upstream was
//! removed or changed by a reload).

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use arc_swap::ArcSwapOption;
use base64::Engine as _;
use zeroize::Zeroizing;

use crate::{config::OAuthClient, secret::Secret};

/// Early refreshes (an upstream answered 401) happen at most this often.
pub const MIN_EARLY_REFRESH: Duration = Duration::from_secs(10);

/// Lifetime assumed when the token endpoint gives no `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// Time allowed for one token request, connect to last byte.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// First wait after a failed fetch; doubles per further failure up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(60);

/// Largest token endpoint answer read, bytes.
const MAX_BODY: u64 = 64 << 10;

/// How often a worker may log that it has no valid token, per upstream.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// A published access token.
pub struct Token {
    /// `Bearer <access token>`: the `Authorization` value.
    pub header: Secret,
    /// When it expires, ns since the source's origin.
    expires_ns: u64,
}

/// An upstream's OAuth client and its current token.
pub struct TokenSource {
    upstream: String,
    client: OAuthClient,
    state: Arc<State>,
    kick: flume::Sender<()>,
    min_early: Duration,
}

/// What the fetch thread and the workers share.
struct State {
    token: ArcSwapOption<Token>,
    origin: quanta::Instant,
    /// When the last fetch started, ns since `origin`.
    last_fetch_ns: AtomicU64,
    /// An early refresh is asked for and not yet started.
    kicked: AtomicBool,
    /// The first fetch has finished (either way).
    attempted: AtomicBool,
    /// When a worker last warned of having no token, ns since `origin` (+1; 0 = never).
    warned_ns: AtomicU64,
}

impl State {
    fn now_ns(&self) -> u64 {
        let d = quanta::Instant::now().saturating_duration_since(self.origin);
        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
    }
}

impl TokenSource {
    /// Starts fetching tokens for `upstream` as `client` (the first fetch begins at once).
    /// If the thread cannot be started the error is logged and the source never has a token.
    pub fn start(upstream: &str, client: &OAuthClient) -> Arc<TokenSource> {
        Self::start_with(upstream, client, MIN_EARLY_REFRESH)
    }

    /// As [`TokenSource::start`], with early refreshes at most every `min_early`.
    pub fn start_with(
        upstream: &str,
        client: &OAuthClient,
        min_early: Duration,
    ) -> Arc<TokenSource> {
        let state = Arc::new(State {
            token: ArcSwapOption::empty(),
            origin: quanta::Instant::now(),
            last_fetch_ns: AtomicU64::new(0),
            kicked: AtomicBool::new(false),
            attempted: AtomicBool::new(false),
            warned_ns: AtomicU64::new(0),
        });
        let (kick, rx) = flume::bounded(1);
        let (st, c, name) = (state.clone(), client.clone(), upstream.to_string());
        let spawned = std::thread::Builder::new()
            .name("mcpgw-oauth".into())
            .spawn(move || fetch_loop(&name, &c, &st, &rx));
        if let Err(e) = spawned {
            tracing::error!(upstream, error = %e, "cannot start the OAuth token thread: calls to this upstream will fail");
            state.attempted.store(true, Ordering::Release);
        }
        Arc::new(TokenSource {
            upstream: upstream.to_string(),
            client: client.clone(),
            state,
            kick,
            min_early,
        })
    }

    /// The OAuth client (its secret prints as `***`).
    pub fn client(&self) -> &OAuthClient {
        &self.client
    }

    /// The current token, unless there is none or it expired. For workers: no lock, no
    /// wait. Without one it logs a warning (at most every 10 s).
    pub fn current(&self) -> Option<Arc<Token>> {
        let s = &self.state;
        let now = s.now_ns();
        let t = s.token.load_full().filter(|t| now < t.expires_ns);
        if t.is_none() {
            let last = s.warned_ns.load(Ordering::Relaxed);
            let due = last == 0 || now.saturating_sub(last - 1) >= WARN_EVERY.as_nanos() as u64;
            if due
                && s.warned_ns
                    .compare_exchange(last, now + 1, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                tracing::warn!(upstream = %self.upstream, token_url = %self.client.token_url,
                    "no valid OAuth token for the upstream: its calls fail until a token fetch succeeds");
            }
        }
        t
    }

    /// Whether a token is there and not expired (for listings: logs nothing).
    pub fn valid(&self) -> bool {
        let now = self.state.now_ns();
        self.state
            .token
            .load()
            .as_ref()
            .is_some_and(|t| now < t.expires_ns)
    }

    /// Whether the first fetch is still under way (start-up waits for it).
    pub fn pending(&self) -> bool {
        !self.state.attempted.load(Ordering::Acquire)
    }

    /// The upstream refused a token (HTTP 401): asks for an early refresh. Cheap and
    /// non-blocking; ignored unless the minimum interval ([`MIN_EARLY_REFRESH`]) passed since the last fetch
    /// started and none is pending. Returns whether it asked.
    pub fn rejected(&self) -> bool {
        let s = &self.state;
        let since = s
            .now_ns()
            .saturating_sub(s.last_fetch_ns.load(Ordering::SeqCst));
        if u128::from(since) < self.min_early.as_nanos() || s.kicked.swap(true, Ordering::SeqCst) {
            return false;
        }
        tracing::info!(upstream = %self.upstream, "upstream refused the OAuth token (401): fetching a new one");
        let _ = self.kick.try_send(());
        true
    }
}

/// The fetch thread: runs until the `TokenSource` (the only sender) is dropped.
fn fetch_loop(upstream: &str, client: &OAuthClient, state: &State, kicks: &flume::Receiver<()>) {
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(FETCH_TIMEOUT))
        .http_status_as_error(false)
        // A redirect would carry the client's credentials elsewhere.
        .max_redirects(0)
        .user_agent(concat!("mcpgw/", env!("CARGO_PKG_VERSION")))
        .build();
    // Every address the token endpoint resolves to passes the upstream's policy.
    let agent = crate::net::policy::agent(config, client.outbound.clone());
    let basic = basic_auth(&client.client_id, client.client_secret.expose());
    let url = client.token_url.as_str();
    let mut wait = Duration::ZERO;
    let mut failures: u32 = 0;
    loop {
        match kicks.recv_timeout(wait) {
            Ok(()) | Err(flume::RecvTimeoutError::Timeout) => {}
            Err(flume::RecvTimeoutError::Disconnected) => return,
        }
        let started = state.now_ns();
        state.last_fetch_ns.store(started, Ordering::SeqCst);
        state.kicked.store(false, Ordering::SeqCst);
        match fetch(&agent, url, &basic, client.scope.as_deref()) {
            Ok((header, lifetime)) => {
                let first = failures > 0 || state.token.load().is_none();
                failures = 0;
                // Counted from when the request left: the token cannot outlive that.
                let life = lifetime.unwrap_or(DEFAULT_LIFETIME);
                let expires_ns =
                    started.saturating_add(u64::try_from(life.as_nanos()).unwrap_or(u64::MAX));
                state
                    .token
                    .store(Some(Arc::new(Token { header, expires_ns })));
                wait = (life * 4 / 5).max(Duration::from_millis(500));
                if first {
                    tracing::info!(
                        upstream,
                        token_url = url,
                        expires_in_s = life.as_secs(),
                        "OAuth token fetched"
                    );
                } else {
                    tracing::debug!(
                        upstream,
                        token_url = url,
                        expires_in_s = life.as_secs(),
                        "OAuth token refreshed"
                    );
                }
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                wait = FIRST_RETRY
                    .saturating_mul(1 << failures.saturating_sub(1).min(16))
                    .min(MAX_RETRY);
                let valid = state
                    .token
                    .load()
                    .as_ref()
                    .is_some_and(|t| state.now_ns() < t.expires_ns);
                if valid {
                    tracing::warn!(upstream, token_url = url, error = %e, retry_ms = wait.as_millis() as u64,
                        "OAuth token fetch failed: keeping the current token until it expires");
                } else {
                    tracing::warn!(upstream, token_url = url, error = %e, retry_ms = wait.as_millis() as u64,
                        "OAuth token fetch failed: no valid token, calls to the upstream fail");
                }
            }
        }
        state.attempted.store(true, Ordering::Release);
    }
}

/// `Basic base64(urlencode(id):urlencode(secret))` (RFC 6749 2.3.1).
fn basic_auth(id: &str, secret: &str) -> Zeroizing<String> {
    let (id, secret) = (form_encode(id), form_encode(secret));
    let pair = Zeroizing::new(format!("{}:{}", id.as_str(), secret.as_str()));
    Zeroizing::new(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair.as_bytes())
    ))
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(s: &str) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(s.len()));
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 15)]));
            }
        }
    }
    out
}

/// One token request: the `Authorization` value and the lifetime the server gave. Errors
/// name the status and the OAuth `error` code, never the body.
fn fetch(
    agent: &ureq::Agent,
    url: &str,
    basic: &str,
    scope: Option<&str>,
) -> Result<(Secret, Option<Duration>), String> {
    let mut form = vec![("grant_type", "client_credentials")];
    if let Some(s) = scope {
        form.push(("scope", s));
    }
    let mut resp = agent
        .post(url)
        .header("Authorization", basic)
        .header("Accept", "application/json")
        .send_form(form)
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = Zeroizing::new(
        resp.body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec()
            .map_err(|e| e.to_string())?,
    );
    parse_answer(status, &body)
}

/// Reads a token endpoint's answer (RFC 6749 5.1 and 5.2).
fn parse_answer(status: u16, body: &[u8]) -> Result<(Secret, Option<Duration>), String> {
    #[derive(serde::Deserialize)]
    struct Answer {
        access_token: Option<String>,
        token_type: Option<String>,
        expires_in: Option<serde_json::Value>,
        error: Option<String>,
    }
    let answer: Option<Answer> = serde_json::from_slice(body).ok();
    if status != 200 {
        // The error code is a short ASCII word (RFC 6749 5.2); anything else is not shown.
        let code = answer
            .and_then(|a| a.error)
            .filter(|c| c.len() <= 64 && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
            .unwrap_or_else(|| "no OAuth error code".into());
        return Err(format!("token endpoint answered HTTP {status} ({code})"));
    }
    let Some(mut a) = answer else {
        return Err("token endpoint answer is not a JSON token response".into());
    };
    let token = Zeroizing::new(a.access_token.take().unwrap_or_default());
    if token.is_empty() || token.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err("token endpoint answer has no usable access_token".into());
    }
    if let Some(t) = a.token_type.as_deref() {
        if !t.eq_ignore_ascii_case("bearer") {
            return Err(format!(
                "token_type {:?} is not Bearer",
                t.chars().take(32).collect::<String>()
            ));
        }
    }
    let lifetime = match &a.expires_in {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .map(Duration::from_secs);
    Ok((Secret::new(token.as_str()).prefixed("Bearer "), lifetime))
}

#[cfg(test)]
mod tests;
