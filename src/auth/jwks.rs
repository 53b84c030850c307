//! JWT keys from a JWKS URL (`[auth.jwt] jwks_url`): fetched off the workers, published
//! lock-free.
//!
//! A [`Remote`] owns one thread (`mcpgw-jwks`) that fetches the document with a blocking
//! HTTP client: at start, every `refresh` after a success, after 1 s doubling up to `refresh`
//! after a failure, and early when a worker meets a token whose `kid` the keys lack
//! ([`Remote::want_refetch`], honoured at most once per `min_refetch` since the last fetch
//! of any kind). A fetch that fails (network, status, size, not a usable JWKS) keeps the last
//! good keys and logs a warning; until a first fetch succeeds there are no remote keys, and
//! tokens that need them are refused.
//!
//! Each good set that differs from the last is published with a new generation, and the
//! `on_update` callback merges it into the live [`crate::auth::Auth`]. Workers never fetch,
//! wait or lock here: they read the merged set through an arc-swap and, on an unknown `kid`,
//! flip an atomic flag and offer one message to a bounded channel.
//!
//! The URL, and any redirect, is connected to only at addresses the configuration's outbound
//! address policy allows (`crate::net::policy`); a refused one fails the fetch.
//!
//! The thread ends once every handle to its `Remote` is dropped (a reload that removes or
//! changes the URL drops the old one).

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use arc_swap::ArcSwap;

use super::jwt::KeySet;
use crate::net::policy::AddressPolicy;

/// Default interval between fetches, ms (`jwks_refresh_ms`).
pub const DEFAULT_REFRESH_MS: u64 = 300_000;

/// Shortest `jwks_refresh_ms` accepted.
pub const MIN_REFRESH_MS: u64 = 1_000;

/// Early refetches (unknown `kid`) happen at most this often.
pub const MIN_REFETCH: Duration = Duration::from_secs(30);

/// Largest JWKS document read, bytes.
const MAX_BODY: u64 = 1 << 20;

/// Time allowed for one fetch, connect to last byte.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// First wait after a failed fetch; it doubles on each further failure, up to `refresh`.
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// A key set and the generation it was published as (0: nothing fetched yet).
#[derive(Debug, Default)]
pub struct Fetched {
    /// Counts the distinct good documents fetched, from 1.
    pub generation: u64,
    /// The keys.
    pub keys: KeySet,
}

/// A JWKS URL being fetched by its own thread.
pub struct Remote {
    url: String,
    refresh: Duration,
    outbound: Arc<AddressPolicy>,
    state: Arc<State>,
    kick: flume::Sender<()>,
}

/// What the thread and the workers share.
struct State {
    fetched: ArcSwap<Fetched>,
    /// When the last fetch started, ns since `origin`.
    last_fetch_ns: AtomicU64,
    /// An early refetch is asked for and not yet started.
    kicked: AtomicBool,
    origin: quanta::Instant,
    min_refetch: Duration,
}

impl State {
    fn now_ns(&self) -> u64 {
        let d = quanta::Instant::now().saturating_duration_since(self.origin);
        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
    }
}

impl Remote {
    /// Starts fetching `url` (the first fetch begins at once) every `refresh`; early
    /// refetches at most every `min_refetch`. `on_update` runs on the fetch thread after each
    /// new set is published.
    pub fn start(
        url: &str,
        refresh: Duration,
        min_refetch: Duration,
        outbound: Arc<AddressPolicy>,
        on_update: impl Fn() + Send + 'static,
    ) -> std::io::Result<Arc<Remote>> {
        let state = Arc::new(State {
            fetched: ArcSwap::from_pointee(Fetched::default()),
            last_fetch_ns: AtomicU64::new(0),
            kicked: AtomicBool::new(false),
            origin: quanta::Instant::now(),
            min_refetch,
        });
        let (kick, rx) = flume::bounded(1);
        let (st, u, p) = (state.clone(), url.to_string(), outbound.clone());
        std::thread::Builder::new()
            .name("mcpgw-jwks".into())
            .spawn(move || fetch_loop(&u, refresh, p, &st, &rx, &on_update))?;
        Ok(Arc::new(Remote {
            url: url.to_string(),
            refresh,
            outbound,
            state,
            kick,
        }))
    }

    /// The URL fetched.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The refresh interval.
    pub fn refresh(&self) -> Duration {
        self.refresh
    }

    /// The address policy its fetches pass.
    pub fn outbound(&self) -> &AddressPolicy {
        &self.outbound
    }

    /// The last good set (generation 0 and no keys before the first success).
    pub fn fetched(&self) -> Arc<Fetched> {
        self.state.fetched.load_full()
    }

    /// Asks for an early refetch because a token named a key the set lacks. Cheap and
    /// non-blocking (for workers); ignored unless `min_refetch` has passed since the last
    /// fetch started and no refetch is pending. Returns whether it asked.
    pub fn want_refetch(&self) -> bool {
        let s = &self.state;
        let since = s
            .now_ns()
            .saturating_sub(s.last_fetch_ns.load(Ordering::SeqCst));
        if u128::from(since) < s.min_refetch.as_nanos() || s.kicked.swap(true, Ordering::SeqCst) {
            return false;
        }
        tracing::debug!(url = %self.url, "token names an unknown key id: refetching the JWKS");
        let _ = self.kick.try_send(());
        true
    }
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("url", &self.url)
            .field("refresh", &self.refresh)
            .finish_non_exhaustive()
    }
}

/// The fetch thread: runs until every sender (every `Remote` handle) is gone.
fn fetch_loop(
    url: &str,
    refresh: Duration,
    outbound: Arc<AddressPolicy>,
    state: &State,
    kicks: &flume::Receiver<()>,
    on_update: &dyn Fn(),
) {
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(FETCH_TIMEOUT))
        .http_status_as_error(true)
        .max_redirects(3)
        .user_agent(concat!("mcpgw/", env!("CARGO_PKG_VERSION")))
        .build();
    // Every address the URL (or a redirect) resolves to passes the policy.
    let agent = crate::net::policy::agent(config, outbound);
    let mut wait = Duration::ZERO;
    let mut failures: u32 = 0;
    let mut last_body: Vec<u8> = Vec::new();
    loop {
        match kicks.recv_timeout(wait) {
            Ok(()) | Err(flume::RecvTimeoutError::Timeout) => {}
            Err(flume::RecvTimeoutError::Disconnected) => return,
        }
        // Workers read `last_fetch_ns` first: once `kicked` is clear, they see this fetch.
        state.last_fetch_ns.store(state.now_ns(), Ordering::SeqCst);
        state.kicked.store(false, Ordering::SeqCst);
        match fetch(&agent, url) {
            Ok((body, keys)) => {
                failures = 0;
                wait = refresh;
                if body == last_body {
                    tracing::debug!(url, "JWKS unchanged");
                    continue;
                }
                let generation = state.fetched.load().generation + 1;
                tracing::info!(url, keys = keys.len(), generation, "JWKS fetched");
                state.fetched.store(Arc::new(Fetched { generation, keys }));
                last_body = body;
                on_update();
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                wait = FIRST_RETRY
                    .saturating_mul(1 << failures.saturating_sub(1).min(16))
                    .min(refresh);
                if state.fetched.load().generation == 0 {
                    tracing::warn!(url, error = %e, retry_ms = wait.as_millis() as u64,
                        "JWKS fetch failed: no keys from it yet, tokens signed by them are refused");
                } else {
                    tracing::warn!(url, error = %e, retry_ms = wait.as_millis() as u64,
                        "JWKS fetch failed: keeping the last good keys");
                }
            }
        }
    }
}

/// One GET of the document; the raw body (to spot changes) and its keys.
fn fetch(agent: &ureq::Agent, url: &str) -> Result<(Vec<u8>, KeySet), String> {
    let mut resp = agent
        .get(url)
        .header("Accept", "application/jwk-set+json, application/json")
        .call()
        .map_err(|e| e.to_string())?;
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_BODY)
        .read_to_vec()
        .map_err(|e| e.to_string())?;
    let keys = KeySet::from_jwks(&body).map_err(|e| e.to_string())?;
    Ok((body, keys))
}

#[cfg(test)]
mod tests;
