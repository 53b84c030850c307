//! The control plane: one thread that owns configuration, child processes and catalogs.
//!
//! It starts the stdio supervisors, fetches every upstream's lists, builds a new
//! [`Snapshot`] when anything changes and publishes it with `arc-swap`. It also ends idle
//! sessions and serves the admin API ([`admin`]). It runs its own monoio runtime (epoll
//! driver) so it can use the same upstream client code as the workers; nothing it does is on
//! a client's request path, and it may block. What it shares with the workers is in
//! [`crate::state`]; only `main.rs` imports this module.

pub mod admin;
pub mod gateway;
mod source;

pub use source::Source;

use futures_util::future::{select, Either};
use std::{
    cell::RefCell,
    rc::Rc,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use serde_json::{Map, Value};

use crate::{
    auth::QuotaKey,
    config::Config,
    registry::{self, Snapshot, UpstreamCatalog},
    state::{Applied, ControlMsg, Shared},
    upstream::{
        self,
        stdio::{ChildEvent, Supervisor},
        Caller, Link, Upstream,
    },
};

/// The running control plane.
pub struct ControlPlane {
    /// Shared state, for the workers.
    pub shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How long start-up waits for stdio children to finish their handshake before serving.
const STARTUP_WAIT: Duration = Duration::from_secs(15);

impl ControlPlane {
    /// Starts the control plane and returns once the first catalog is published.
    pub fn start(config: Arc<Config>, source: Source) -> anyhow::Result<ControlPlane> {
        let (tx, rx) = flume::unbounded();
        let shared = Arc::new(Shared::new(config, tx.clone())?);
        let (ready_tx, ready_rx) = flume::bounded(1);
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("mcpgw-control".into())
            .spawn(move || {
                let rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                    .enable_timer()
                    .build();
                match rt {
                    Ok(mut rt) => rt.block_on(run(sh, tx, rx, ready_tx, source)),
                    Err(e) => {
                        let _ = ready_tx.send(Err(anyhow::anyhow!("control plane runtime: {e}")));
                    }
                }
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => anyhow::bail!("control plane stopped during start-up"),
        }
        Ok(ControlPlane {
            shared,
            thread: Some(thread),
        })
    }

    /// Reads the config file again and applies its upstreams and virtual servers (SIGHUP).
    /// A config that does not load is rejected whole, logged, and the running one kept.
    pub fn reload(&self) {
        let _ = self.shared.control.send(ControlMsg::Reload(Vec::new()));
    }

    /// Stops refreshing, kills the children and waits for them.
    pub fn shutdown(mut self) {
        self.shared.shutdown.store(true, Ordering::Release);
        let _ = self.shared.control.send(ControlMsg::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The control plane's thread: starts up, answers `ready`, then handles one message at a
/// time (or the refresh tick when none comes within the refresh interval) until `Shutdown`.
async fn run(
    shared: Arc<Shared>,
    tx: flume::Sender<ControlMsg>,
    rx: flume::Receiver<ControlMsg>,
    ready: flume::Sender<anyhow::Result<()>>,
    source: Source,
) {
    let mut plane = match Plane::open(shared, tx, source) {
        Ok(p) => p,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    if !plane.begin(&ready).await {
        return;
    }
    let interval = plane.cfg.gateway.refresh_interval;
    loop {
        let msg = monoio::time::timeout(interval, rx.recv_async()).await;
        match msg {
            Ok(Ok(ControlMsg::Shutdown)) | Ok(Err(_)) => break,
            Ok(Ok(ControlMsg::Refresh)) => match coalesce(&rx) {
                Burst::Stop => break,
                // The reload publishes too, after this.
                Burst::Reload(applied) => {
                    let _ = plane.tx.send(ControlMsg::Reload(applied));
                }
                Burst::Refresh => plane.publish().await,
            },
            Ok(Ok(ControlMsg::Reload(applied))) => plane.reload(applied).await,
            Err(_) => plane.tick().await,
        }
        // Shutdown waits for the Shutdown message: workers drain first, and calls in flight
        // to stdio children still need those children.
    }
    plane.stop();
}

/// What a burst of queued messages after a `Refresh` comes to.
enum Burst {
    /// A `Shutdown` was among them.
    Stop,
    /// A reload was among them, with every waiter of every `Reload` in the burst.
    Reload(Vec<Applied>),
    /// Only refreshes.
    Refresh,
}

/// Takes every message already queued, coalescing a burst of refresh requests; a reload
/// among them is kept. Stops taking at a `Shutdown`.
fn coalesce(rx: &flume::Receiver<ControlMsg>) -> Burst {
    let mut reload = None::<Vec<Applied>>;
    while let Ok(m) = rx.try_recv() {
        match m {
            ControlMsg::Shutdown => return Burst::Stop,
            ControlMsg::Reload(a) => reload.get_or_insert_with(Vec::new).extend(a),
            ControlMsg::Refresh => {}
        }
    }
    match reload {
        Some(applied) => Burst::Reload(applied),
        None => Burst::Refresh,
    }
}

// === impl Plane ===

/// What the control loop owns between two messages.
struct Plane {
    shared: Arc<Shared>,
    /// The control plane's own inbox, for messages it sends itself.
    tx: flume::Sender<ControlMsg>,
    source: Rc<Source>,
    store: Rc<dyn crate::store::Store>,
    /// The configuration composed at start-up. **Reloads do not replace it**: the refresh
    /// interval, the session idle timeout and the admin listener stay as they started.
    cfg: Arc<Config>,
    supervisor: Supervisor,
    jwks: JwksFetch,
    quotas: Rc<RefCell<QuotaBook>>,
    /// Every running upstream with the settings it was built from.
    current: Vec<(crate::config::Upstream, Arc<Upstream>)>,
    /// The upstreams of `current`, in its order.
    upstreams: Vec<Arc<Upstream>>,
    catalog: Catalog,
    caller: Caller,
}

impl Plane {
    /// Opens the store, composes the configuration with it, installs its auth and builds the
    /// upstreams (stdio children start here). Serves nothing yet.
    fn open(
        shared: Arc<Shared>,
        tx: flume::Sender<ControlMsg>,
        source: Source,
    ) -> anyhow::Result<Plane> {
        let source = Rc::new(source);
        let refresh_tx = tx.clone();
        let sh = shared.clone();
        let supervisor =
            Supervisor::new(Arc::new(move |name: &str, ev: ChildEvent<'_>| match ev {
                ChildEvent::Up | ChildEvent::ListChanged => {
                    let _ = refresh_tx.send(ControlMsg::Refresh);
                }
                ChildEvent::ResourceUpdated(uri) => sh.deliver_update(name, uri),
            }));
        let store = open_store(&shared.config)?;
        // The config file with the store's admin changes applied.
        let cfg = source
            .load(&*store)
            .map_err(|e| e.context("applying the registry store to the configuration"))?;
        let cfg = Arc::new(cfg);
        // The composed auth (API keys from the store) replaces the file's; JWKS fetching starts.
        let mut jwks = JwksFetch::default();
        jwks.track(&cfg.auth, &cfg.gateway.outbound, &shared);
        // At once: requests are served under the composed policy from here on.
        shared
            .snapshot
            .store(Arc::new(shared.snapshot.load().with_auth(cfg.auth.clone())));
        cfg.auth.sync_jwks();
        let quotas = Rc::new(RefCell::new(QuotaBook::restore(
            &shared, &cfg.auth, &*store,
        )));
        let current: Vec<(crate::config::Upstream, Arc<Upstream>)> = cfg
            .upstreams
            .iter()
            .map(|u| (u.clone(), upstream::build(u, &supervisor)))
            .collect();
        let upstreams = current.iter().map(|(_, u)| u.clone()).collect();
        let catalog = Catalog {
            auth: cfg.auth.clone(),
            servers: cfg.servers.clone(),
            guard: cfg.guard.clone(),
            store: store.clone(),
            disabled: cfg.disabled_tools.clone(),
            generation: 0,
        };
        Ok(Plane {
            shared,
            tx,
            source,
            store,
            cfg,
            supervisor,
            jwks,
            quotas,
            current,
            upstreams,
            catalog,
            caller: Caller::new(upstream::CONTROL_SLOT),
        })
    }

    /// Publishes the first catalog, starts the admin API and the config file watch, and
    /// answers `ready`; then starts the quota saver and the list watches. `false` (with the
    /// error sent on `ready` and the children shut down) when the admin listener fails.
    async fn begin(&mut self, ready: &flume::Sender<anyhow::Result<()>>) -> bool {
        wait_for_children(&self.upstreams).await;
        self.publish().await;
        if let Some(addr) = self.cfg.admin.listen {
            match monoio::net::TcpListener::bind(addr) {
                Ok(l) => {
                    tracing::info!(%addr, "admin API listening");
                    monoio::spawn(admin::serve(
                        l,
                        admin::Context {
                            shared: self.shared.clone(),
                            store: self.store.clone(),
                            control: self.tx.clone(),
                            source: self.source.clone(),
                        },
                    ));
                }
                Err(e) => {
                    let _ =
                        ready.send(Err(anyhow::anyhow!("cannot listen on {addr} (admin): {e}")));
                    self.supervisor.shutdown();
                    return false;
                }
            }
        }
        if let (true, Some(path)) = (self.cfg.gateway.watch_config, self.source.path.clone()) {
            // The first stamp is taken before start-up completes: an edit right after start
            // is a change, not the baseline.
            let first = file_stamp(&path);
            monoio::spawn(watch_file(
                path,
                first,
                self.tx.clone(),
                self.shared.clone(),
            ));
        }
        let _ = ready.send(Ok(()));
        monoio::spawn(save_quotas(
            self.quotas.clone(),
            self.store.clone(),
            self.shared.clone(),
        ));
        self.watch_new();
        true
    }

    /// Builds and publishes a new snapshot if anything changed.
    async fn publish(&mut self) {
        self.catalog
            .publish(&self.shared, &self.upstreams, &self.caller)
            .await;
    }

    /// Starts watching the list changes of every upstream not watched yet.
    fn watch_new(&self) {
        for up in &self.upstreams {
            if !up.watched() {
                start_watching(up, &self.tx, &self.shared);
            }
        }
    }

    /// The refresh tick (no message within the refresh interval): sweeps the rate buckets,
    /// ends idle sessions and publishes.
    async fn tick(&mut self) {
        let shared = &self.shared;
        // Full rate buckets carry no state worth keeping.
        let snap = shared.snapshot.load();
        shared
            .rates
            .sweep(shared.now_ns(), |(id, _)| snap.auth.rate_of(*id));
        drop(snap);
        let ended = shared
            .sessions
            .expire(shared.now_ms(), self.cfg.gateway.session_idle_timeout);
        if !ended.is_empty() {
            tracing::info!(ended = ended.len(), "idle sessions ended");
            end_upstream_sessions(&self.upstreams, &self.caller, ended).await;
        }
        self.publish().await;
    }

    /// Loads the configuration again and applies it; a configuration that does not load is
    /// rejected whole and the running one kept. Every waiter in `applied` gets the outcome.
    async fn reload(&mut self, applied: Vec<Applied>) {
        match self.source.load(&*self.store) {
            Err(e) => {
                let why = format!("{e:#}");
                tracing::error!(error = %why, "config rejected; the running one is kept");
                for a in applied {
                    let _ = a.send(Err(why.clone()));
                }
            }
            Ok(new) => self.apply(new, applied).await,
        }
    }

    /// Applies a loaded configuration and publishes it at once: a new stdio child or OAuth
    /// token that is not ready yet joins the catalog when it is (a refresh), so a child that
    /// keeps failing never holds up this loop or the changes after it.
    async fn apply(&mut self, new: Config, applied: Vec<Applied>) {
        let cfg = &self.cfg;
        if new.gateway.listen != cfg.gateway.listen
            || new.gateway.workers != cfg.gateway.workers
            || new.gateway.driver != cfg.gateway.driver
        {
            tracing::warn!("listen, workers and driver changes take effect at the next start");
        }
        let fresh = self.swap_upstreams(&new);
        self.catalog.servers = new.servers.clone();
        self.catalog.guard = new.guard.clone();
        self.jwks
            .track(&new.auth, &new.gateway.outbound, &self.shared);
        // The new policy at once (keys revoked, roles changed); the catalog follows when
        // it has been fetched.
        self.catalog.auth = new.auth.clone();
        let now = self.shared.snapshot.load().with_auth(new.auth.clone());
        self.shared.snapshot.store(Arc::new(now));
        // A fetch may have finished between tracking and publishing.
        new.auth.sync_jwks();
        self.quotas.borrow_mut().reconcile(&self.shared, &new.auth);
        reload_tls(&self.shared, &new);
        self.catalog.disabled = new.disabled_tools.clone();
        self.watch_new();
        self.publish().await;
        tracing::info!(
            upstreams = self.upstreams.len(),
            servers = self.catalog.servers.len(),
            "config reloaded"
        );
        for a in applied {
            let _ = a.send(Ok(()));
        }
        if !fresh.is_empty() {
            monoio::spawn(refresh_when_ready(fresh, self.tx.clone()));
        }
    }

    /// Replaces the running upstreams with `new`'s: an unchanged one is kept, a new or
    /// changed one is built, and the rest are retired (a stdio child is stopped). Returns the
    /// upstreams built here.
    fn swap_upstreams(&mut self, new: &Config) -> Vec<Arc<Upstream>> {
        let mut next = Vec::with_capacity(new.upstreams.len());
        let mut fresh = Vec::new();
        for u in &new.upstreams {
            // An upstream whose settings did not change keeps its object
            // (connections, sessions, child process).
            let kept = self
                .current
                .iter()
                .position(|(c, _)| c == u)
                .map(|i| self.current.remove(i));
            next.push(match kept {
                Some(k) => k,
                None => {
                    let up = upstream::build(u, &self.supervisor);
                    fresh.push(up.clone());
                    (u.clone(), up)
                }
            });
        }
        for (c, old) in std::mem::replace(&mut self.current, next) {
            tracing::info!(upstream = %c.name, "upstream removed or changed by reload");
            old.retire();
            if let Link::Stdio(h) = &old.link {
                self.supervisor.stop(h);
            }
        }
        self.upstreams = self.current.iter().map(|(_, u)| u.clone()).collect();
        fresh
    }

    /// After the loop: the workers have stopped, so these are the final quota counts; then
    /// the children are killed and waited for.
    fn stop(self) {
        self.quotas.borrow_mut().save(&self.shared, &*self.store);
        self.supervisor.shutdown();
    }
}

/// The listener's certificate and key (the rest of `[gateway.tls]` needs a restart). Every
/// worker's acceptor shares the slot swapped here.
fn reload_tls(shared: &Shared, new: &Config) {
    match (&shared.config.gateway.tls, &new.gateway.tls) {
        (Some(cur), Some(next)) => {
            cur.reload_from(next);
            tracing::info!("TLS certificate reloaded");
        }
        (None, None) => {}
        _ => tracing::warn!("turning TLS on or off takes effect at the next start"),
    }
}

/// How often quota counters are saved to the store.
const QUOTA_SAVE_INTERVAL: Duration = Duration::from_secs(10);

/// Saves quota counters every [`QUOTA_SAVE_INTERVAL`] until shutdown (which saves once more).
async fn save_quotas(
    book: Rc<RefCell<QuotaBook>>,
    store: Rc<dyn crate::store::Store>,
    shared: Arc<Shared>,
) {
    while !shared.stopping() {
        monoio::time::sleep(QUOTA_SAVE_INTERVAL).await;
        book.borrow_mut().save(&shared, &*store);
    }
}

/// What the store holds of the quota counters, so that a save writes only what changed.
#[derive(Default)]
struct QuotaBook {
    saved: std::collections::HashMap<QuotaKey, (u64, u64)>,
}

impl QuotaBook {
    /// Loads the saved counters of the quotas `auth` defines into `shared.quotas` (before
    /// the workers start); deletes those of quotas that are gone.
    fn restore(shared: &Shared, auth: &crate::auth::Auth, store: &dyn crate::store::Store) -> Self {
        let mut book = Self::default();
        let rows = match store.quota_counts() {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "quota counters not restored: counting from 0");
                return book;
            }
        };
        let mut gone = Vec::new();
        for c in rows {
            let Some(q) = auth.quotas.iter().find(|q| *q.key == *c.rule) else {
                gone.push((c.rule, c.subject));
                continue;
            };
            let quota = crate::ratelimit::Quota::new(q.limit, q.window);
            quota.restore(c.window_id, c.used);
            let key: QuotaKey = (q.key.clone(), c.subject.into());
            book.saved.insert(key.clone(), (c.window_id, c.used));
            shared.quotas.insert(key, quota);
        }
        if !gone.is_empty() {
            if let Err(e) = store.save_quota_counts(&[], &gone) {
                tracing::warn!(error = %format!("{e:#}"), "stale quota counters not deleted");
            }
        }
        if !book.saved.is_empty() {
            tracing::info!(counters = book.saved.len(), "quota counters restored");
        }
        book
    }

    /// Applies a reload: counters of quotas that are gone are dropped (and deleted at the
    /// next save); a quota whose limit changed keeps its count under the new limit.
    fn reconcile(&mut self, shared: &Shared, auth: &crate::auth::Auth) {
        shared.quotas.retain(
            |(rule, _), q| match auth.quotas.iter().find(|r| r.key == *rule) {
                None => false,
                Some(r) if r.limit != q.limit() => {
                    let (window, used) = q.snapshot();
                    let next = crate::ratelimit::Quota::new(r.limit, r.window);
                    next.restore(window, used);
                    *q = next;
                    true
                }
                Some(_) => true,
            },
        );
    }

    /// Writes the counters that changed since the last save, and forgets (in memory and in
    /// the store) those whose window is over or whose quota is gone.
    fn save(&mut self, shared: &Shared, store: &dyn crate::store::Store) {
        let now = shared.unix_secs();
        let mut put = Vec::new();
        let mut over = Vec::new();
        for e in shared.quotas.iter() {
            let (window, used) = e.value().snapshot();
            if e.value().window().id(now) > window {
                over.push(e.key().clone());
            } else if self.saved.get(e.key()) != Some(&(window, used)) {
                put.push((e.key().clone(), (window, used)));
            }
        }
        for k in over {
            shared
                .quotas
                .remove_if(&k, |_, q| q.window().id(now) > q.snapshot().0);
        }
        let delete: Vec<QuotaKey> = self
            .saved
            .keys()
            .filter(|k| !shared.quotas.contains_key(*k))
            .cloned()
            .collect();
        if put.is_empty() && delete.is_empty() {
            return;
        }
        let rows: Vec<crate::store::QuotaCount> = put
            .iter()
            .map(
                |((rule, subject), (window_id, used))| crate::store::QuotaCount {
                    rule: rule.to_string(),
                    subject: subject.to_string(),
                    window_id: *window_id,
                    used: *used,
                },
            )
            .collect();
        let gone: Vec<(String, String)> = delete
            .iter()
            .map(|(r, s)| (r.to_string(), s.to_string()))
            .collect();
        match store.save_quota_counts(&rows, &gone) {
            Ok(()) => {
                for k in &delete {
                    self.saved.remove(k);
                }
                self.saved.extend(put);
                tracing::debug!(
                    saved = rows.len(),
                    deleted = gone.len(),
                    "quota counters saved"
                );
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "quota counters not saved; retried at the next save")
            }
        }
    }
}

/// The fetcher of the configured `jwks_url`, kept across reloads that keep the URL and its
/// interval; replaced (the old thread ends) when they change, dropped when it is removed.
#[derive(Default)]
struct JwksFetch(Option<Arc<crate::auth::jwks::Remote>>);

impl JwksFetch {
    /// Starts or keeps the fetcher `auth` needs and attaches it to `auth`.
    fn track(
        &mut self,
        auth: &crate::auth::Auth,
        outbound: &Arc<crate::net::policy::AddressPolicy>,
        shared: &Arc<Shared>,
    ) {
        use crate::auth::jwks::{Remote, MIN_REFETCH};
        let Some((url, every)) = auth.jwks_url() else {
            self.0 = None;
            return;
        };
        let same = self
            .0
            .as_ref()
            .is_some_and(|r| r.url() == url && r.refresh() == every && r.outbound() == &**outbound);
        if !same {
            let weak = Arc::downgrade(shared);
            let on_update = move || {
                if let Some(s) = weak.upgrade() {
                    s.snapshot.load().auth.sync_jwks();
                }
            };
            match Remote::start(url, every, MIN_REFETCH, outbound.clone(), on_update) {
                Ok(r) => {
                    tracing::info!(
                        url,
                        refresh_ms = every.as_millis() as u64,
                        "fetching JWT keys from a JWKS URL"
                    );
                    self.0 = Some(r);
                }
                Err(e) => {
                    tracing::error!(url, error = %e, "cannot start the JWKS fetch thread");
                    self.0 = None;
                    return;
                }
            }
        }
        if let Some(r) = &self.0 {
            auth.attach_jwks(r.clone());
        }
    }
}

/// Opens the registry store the config names (in memory when it names none).
fn open_store(cfg: &Config) -> anyhow::Result<Rc<dyn crate::store::Store>> {
    Ok(match &cfg.admin.store {
        Some(path) => Rc::new(crate::store::Sqlite::open(path)?),
        None => Rc::new(crate::store::Sqlite::memory()?),
    })
}

/// Modification time and size of a file, when it can be read.
type FileStamp = Option<(Option<std::time::SystemTime>, u64)>;

fn file_stamp(p: &std::path::Path) -> FileStamp {
    std::fs::metadata(p)
        .ok()
        .map(|m| (m.modified().ok(), m.len()))
}

/// Asks for a reload whenever the config file's modification time or size changes (opt-in:
/// `watch_config`). Polling once a second is enough for a file people edit, and needs no
/// platform-specific notification API.
async fn watch_file(
    path: std::path::PathBuf,
    first: FileStamp,
    tx: flume::Sender<ControlMsg>,
    shared: Arc<Shared>,
) {
    let stamp = file_stamp;
    let mut last = first;
    tracing::info!(path = %path.display(), "watching the config file");
    while !shared.stopping() {
        monoio::time::sleep(Duration::from_secs(1)).await;
        let now = stamp(&path);
        if now != last && now.is_some() {
            last = now;
            tracing::info!(path = %path.display(), "config file changed; reloading");
            if tx.send(ControlMsg::Reload(Vec::new())).is_err() {
                return;
            }
        }
    }
}

/// Starts the control plane's watchers of a new upstream: its list_changed stream (HTTP)
/// and its health checks. Both end when a reload retires it.
fn start_watching(up: &Arc<Upstream>, tx: &flume::Sender<ControlMsg>, shared: &Arc<Shared>) {
    if matches!(up.link, Link::Http(_)) {
        monoio::spawn(watch_list_changes(up.clone(), tx.clone(), shared.clone()));
    }
    if let Some(every) = shared.config.gateway.health_interval {
        monoio::spawn(check_health(up.clone(), every, tx.clone(), shared.clone()));
    }
}

/// Pings `up` every `every`; a change between healthy and down asks for a catalog refresh
/// (a down upstream leaves the lists, and comes back when it answers again).
async fn check_health(
    up: Arc<Upstream>,
    every: Duration,
    tx: flume::Sender<ControlMsg>,
    shared: Arc<Shared>,
) {
    let caller = Caller::new(upstream::WATCH_SLOT);
    let limit = up.call_timeout.min(every.max(Duration::from_secs(1)));
    while !shared.stopping() && !up.retired() {
        monoio::time::sleep(every).await;
        let id = caller.ids.next();
        // 2026-07-28 has no ping: discovery is the cheap question there.
        let method = match &up.link {
            Link::Http(h) if h.is_stateless() => "server/discover",
            _ => "ping",
        };
        let ping = caller.request(&up, id, upstream::request_body(id, method, "{}"));
        let ok = matches!(monoio::time::timeout(limit, ping).await, Ok(Ok(f)) if !f.is_error());
        let before = up.health.state().0;
        if up.health.record(ok, shared.now_ms()) {
            let now = up.health.state().0;
            tracing::info!(upstream = %up.name, from = before.as_str(), to = now.as_str(), "upstream health changed");
            if now != upstream::HealthState::Degraded || before == upstream::HealthState::Down {
                let _ = tx.send(ControlMsg::Refresh);
            }
        }
    }
}

/// Asks for a catalog refresh once upstreams added by a reload are ready (or after
/// [`STARTUP_WAIT`]): an OAuth upstream's first token has no event of its own (a stdio
/// child's start has, [`ChildEvent::Up`]). Runs beside the control loop, never in it.
async fn refresh_when_ready(fresh: Vec<Arc<Upstream>>, tx: flume::Sender<ControlMsg>) {
    wait_for_children(&fresh).await;
    let _ = tx.send(ControlMsg::Refresh);
}

/// Gives stdio children a chance to come up, and OAuth upstreams their first token fetch,
/// so a catalog built now is complete.
async fn wait_for_children(upstreams: &[Arc<Upstream>]) {
    let deadline = std::time::Instant::now() + STARTUP_WAIT;
    while std::time::Instant::now() < deadline
        && upstreams.iter().any(|u| match &u.link {
            Link::Stdio(h) => !h.is_up(),
            Link::Http(h) => h.token_pending(),
        })
    {
        monoio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `list_changed` notifications a client of `server` (`None`: `/mcp`) needs between two
/// snapshots.
fn changed_lists(cur: &Snapshot, next: &Snapshot, server: Option<&str>) -> Vec<&'static str> {
    let (Some(a), Some(b)) = (cur.view(server), next.view(server)) else {
        return Vec::new();
    };
    [
        (
            a.tools_pages.0 != b.tools_pages.0,
            "notifications/tools/list_changed",
        ),
        (
            a.prompts_pages.0 != b.prompts_pages.0,
            "notifications/prompts/list_changed",
        ),
        (
            a.resources_pages.0 != b.resources_pages.0
                || a.templates_pages.0 != b.templates_pages.0,
            "notifications/resources/list_changed",
        ),
    ]
    .into_iter()
    .filter_map(|(c, m)| c.then_some(m))
    .collect()
}

/// Whether the virtual servers of two snapshots differ (names or what they list).
fn servers_differ(a: &Snapshot, b: &Snapshot) -> bool {
    a.servers.len() != b.servers.len()
        || a.servers.iter().any(|(name, v)| {
            b.servers.get(name).is_none_or(|w| {
                v.tools_pages.0 != w.tools_pages.0
                    || v.prompts_pages.0 != w.prompts_pages.0
                    || v.resources_pages.0 != w.resources_pages.0
                    || v.templates_pages.0 != w.templates_pages.0
                    || v.uri_allow != w.uri_allow
            })
        })
}

/// What the control plane builds snapshots from, besides the upstreams.
struct Catalog {
    /// The policy requests are served under.
    auth: Arc<crate::auth::Auth>,
    /// Virtual servers.
    servers: Vec<crate::config::VirtualServer>,
    /// The guard policy.
    guard: Arc<crate::guard::policy::Policy>,
    /// Where tool pins are kept.
    store: Rc<dyn crate::store::Store>,
    /// Tools switched off.
    disabled: std::collections::HashSet<String>,
    /// Generation of the last published snapshot.
    generation: u64,
}

impl Catalog {
    /// Fetches every upstream's lists and publishes a new snapshot when something changed.
    async fn publish(&mut self, shared: &Shared, upstreams: &[Arc<Upstream>], caller: &Caller) {
        let mut catalogs = Vec::with_capacity(upstreams.len());
        for up in upstreams {
            let cat = match fetch_catalog(up, caller).await {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(upstream = %up.name, error = %e, "upstream left out of the catalog");
                    None
                }
            };
            catalogs.push(cat);
        }
        // No await from reading the pins to writing them: the admin API (same thread) cannot
        // approve in between.
        let report = guard_catalogs(shared, &*self.store, &self.guard, upstreams, &mut catalogs);
        let generation = &mut self.generation;
        let g = &shared.config.gateway;
        let layout = registry::Layout {
            servers: &self.servers,
            disabled: &self.disabled,
            separator: &g.separator,
            page_size: g.page_size,
            auth: self.auth.clone(),
        };
        let next = registry::build(
            *generation + 1,
            upstreams.to_vec(),
            &catalogs,
            &layout,
            registry::Guarded {
                policy: self.guard.clone(),
                report,
            },
        );
        let cur = shared.snapshot.load();
        let changed = *generation == 0
            || cur.tools_pages.0 != next.tools_pages.0
            || cur.prompts_pages.0 != next.prompts_pages.0
            || cur.resources_pages.0 != next.resources_pages.0
            || cur.templates_pages.0 != next.templates_pages.0
            || cur.capabilities != next.capabilities
            || cur.blocked != next.blocked
            || !Arc::ptr_eq(&cur.guard, &next.guard)
            || servers_differ(&cur, &next);
        if changed {
            if *generation > 0 {
                // Each client hears about the lists of the view it uses (/mcp or its server).
                shared.broadcast(|server| changed_lists(&cur, &next, server));
            }
            *generation += 1;
            tracing::info!(
                generation = *generation,
                tools = next.tools.len(),
                prompts = next.prompts.len(),
                upstreams_up = catalogs.iter().filter(|c| c.is_some()).count(),
                upstreams = upstreams.len(),
                "catalog published"
            );
            shared.snapshot.store(Arc::new(next));
        } else if !report_eq(&cur.guard_report, &next.guard_report)
            || !Arc::ptr_eq(&cur.auth, &next.auth)
        {
            // Same lists, but the guard's findings or pending changes moved: the admin API
            // reads them from the snapshot. Same generation: nothing for clients to hear.
            let mut next = next;
            next.generation = *generation;
            shared.snapshot.store(Arc::new(next));
        }
    }
}

/// Whether two guard reports say the same.
fn report_eq(a: &crate::guard::catalog::Report, b: &crate::guard::catalog::Report) -> bool {
    a.changed == b.changed
        && a.hidden == b.hidden
        && a.blocked == b.blocked
        && a.findings == b.findings
        && a.scanned == b.scanned
}

/// Runs the catalog guard over freshly fetched catalogs (removing what it hides and blocks),
/// saves pin changes, and logs and audits what is new.
fn guard_catalogs(
    shared: &Shared,
    store: &dyn crate::store::Store,
    policy: &crate::guard::policy::Policy,
    upstreams: &[Arc<Upstream>],
    catalogs: &mut [Option<UpstreamCatalog>],
) -> Arc<crate::guard::catalog::Report> {
    use crate::guard::catalog;
    let pins = match store.pins() {
        Ok(p) => Some(catalog::index(p)),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "tool pins unreadable: pinning skipped this time");
            None
        }
    };
    let names: Vec<&str> = upstreams.iter().map(|u| &*u.name).collect();
    let now_ms = i64::try_from(shared.unix_secs().saturating_mul(1000)).unwrap_or(i64::MAX);
    let empty = Default::default();
    let began = std::time::Instant::now();
    let applied = catalog::apply(
        policy,
        &names,
        catalogs,
        pins.as_ref().unwrap_or(&empty),
        now_ms,
    );
    tracing::debug!(
        items = applied.report.scanned,
        elapsed_us = u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX),
        "guard: catalogs scanned"
    );
    if pins.is_some() && !applied.writes.is_empty() {
        if let Err(e) = store.save_pins(&applied.writes) {
            tracing::error!(error = %format!("{e:#}"), "tool pins not saved");
        }
    }
    let prev = shared.snapshot.load().guard_report.clone();
    for f in catalog::new_findings(&prev, &applied.report) {
        tracing::warn!(upstream = %f.upstream, kind = f.kind, name = %f.name, rule = %f.rule, severity = f.severity, field = %f.field, excerpt = %f.excerpt, action = f.action, "guard: catalog finding");
    }
    for h in applied
        .report
        .hidden
        .iter()
        .filter(|h| !prev.hidden.contains(h))
    {
        tracing::warn!(upstream = %h.upstream, kind = h.kind, name = %h.name, reason = %h.reason, "guard: hidden from the catalog");
        if let Some(a) = &shared.audit {
            a.record(serde_json::json!({
                "event": "guard_hidden",
                "upstream": h.upstream, "kind": h.kind, "name": h.name, "reason": h.reason,
            }));
        }
    }
    for (up, why) in applied
        .report
        .blocked
        .iter()
        .filter(|b| !prev.blocked.contains(b))
    {
        tracing::error!(upstream = %up, rules = %why, "guard: upstream blocked");
        if let Some(a) = &shared.audit {
            a.record(serde_json::json!({ "event": "guard_blocked", "upstream": up, "rules": why }));
        }
    }
    for (up, tool, old, new) in &applied.new_changes {
        shared
            .guard
            .pin_changes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(upstream = %up, tool = %tool, pinned = %old, now = %new, "guard: tool definition changed since it was approved");
        if let Some(a) = &shared.audit {
            a.record(serde_json::json!({
                "event": "tool_changed",
                "upstream": up, "tool": tool, "pinned_hash": old, "new_hash": new,
            }));
        }
    }
    Arc::new(applied.report)
}

/// Fetches one upstream's capabilities and lists (following cursors).
async fn fetch_catalog(up: &Upstream, caller: &Caller) -> crate::error::Result<UpstreamCatalog> {
    let capabilities = match &up.link {
        Link::Http(h) => h.ensure_shared(caller).await?.capabilities.clone(),
        Link::Stdio(s) => {
            if !s.is_up() {
                return Err(crate::error::Error::new(
                    crate::error::ErrorKind::UpstreamUnavailable,
                    "child is down",
                ));
            }
            s.capabilities().unwrap_or_default()
        }
    };
    let mut cat = UpstreamCatalog {
        capabilities: capabilities.clone(),
        ..Default::default()
    };
    if capabilities.contains_key("tools") {
        cat.tools = fetch_list(up, caller, "tools/list", "tools").await?;
        if let Link::Http(h) = &up.link {
            h.set_param_headers(&cat.tools);
        }
    }
    if capabilities.contains_key("prompts") {
        cat.prompts = fetch_list(up, caller, "prompts/list", "prompts").await?;
    }
    if capabilities.contains_key("resources") {
        cat.resources = fetch_list(up, caller, "resources/list", "resources").await?;
        // Templates are optional even for servers with resources.
        cat.templates = fetch_list(up, caller, "resources/templates/list", "resourceTemplates")
            .await
            .unwrap_or_default();
    }
    Ok(cat)
}

/// Most pages followed per list, so a looping cursor cannot hold the control plane.
const MAX_PAGES: usize = 1000;

async fn fetch_list(
    up: &Upstream,
    caller: &Caller,
    method: &str,
    key: &str,
) -> crate::error::Result<Vec<Value>> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let id = caller.ids.next();
        let params = match &cursor {
            Some(c) => serde_json::json!({ "cursor": c }).to_string(),
            None => "{}".to_string(),
        };
        let frame = caller
            .request(up, id, upstream::request_body(id, method, &params))
            .await?;
        let Some(result) = frame.result_raw() else {
            return Err(crate::error::Error::new(
                crate::error::ErrorKind::UpstreamProtocol,
                format!("{}: {method} answered with an error", up.name),
            ));
        };
        let mut v: Map<String, Value> = serde_json::from_slice(result).map_err(|e| {
            crate::error::Error::new(
                crate::error::ErrorKind::UpstreamProtocol,
                format!("{}: {method}", up.name),
            )
            .with_source(e)
        })?;
        if let Some(Value::Array(a)) = v.remove(key) {
            items.extend(a);
        }
        match v.remove("nextCursor") {
            Some(Value::String(c)) if !c.is_empty() => cursor = Some(c),
            _ => return Ok(items),
        }
    }
    tracing::warn!(upstream = %up.name, method, "list truncated after {MAX_PAGES} pages");
    Ok(items)
}

/// Ends the per-client upstream sessions of expired client sessions.
async fn end_upstream_sessions(
    upstreams: &[Arc<Upstream>],
    caller: &Caller,
    ended: Vec<Arc<crate::session::Session>>,
) {
    for s in ended {
        for (name, us) in s.upstreams.entries() {
            if let Some(Link::Http(h)) =
                upstreams.iter().find(|u| *u.name == *name).map(|u| &u.link)
            {
                h.delete(caller, &us).await;
            }
        }
    }
}

/// Holds the gateway's own GET stream to an HTTP upstream and asks for a catalog refresh
/// whenever the upstream says a list changed. Reconnects every few seconds while it can't.
async fn watch_list_changes(up: Arc<Upstream>, tx: flume::Sender<ControlMsg>, shared: Arc<Shared>) {
    // A 2026-07-28 upstream's listen stream names the resources subscribed: when they change
    // the stream is opened again.
    let (again, again_rx) = flume::bounded::<()>(1);
    shared
        .listen_again
        .insert(up.name.to_string(), again.clone());
    watch(&up, &tx, &shared, &again_rx).await;
    // Unless a newer watcher of the same name (a reload) took the slot.
    shared
        .listen_again
        .remove_if(&*up.name, |_, tx| tx.same_channel(&again));
}

async fn watch(
    up: &Arc<Upstream>,
    tx: &flume::Sender<ControlMsg>,
    shared: &Arc<Shared>,
    again_rx: &flume::Receiver<()>,
) {
    let Link::Http(h) = &up.link else { return };
    let caller = Caller::new(upstream::WATCH_SLOT);
    while !shared.stopping() && !up.retired() {
        if let Ok(session) = h.ensure_shared(&caller).await {
            let uris = shared.subscribed_uris(&up.name);
            let listened = h.listen(&caller, &session, &uris).await;
            if let Err(e) = &listened {
                // Unreachable for now (not "no stream offered"): try again later.
                tracing::debug!(upstream = %up.name, error = %e, "GET stream not opened; retrying");
            }
            if let Ok(Some(mut stream)) = listened {
                let mut reopen = false;
                loop {
                    let next = {
                        let woke =
                            select(Box::pin(stream.next()), Box::pin(again_rx.recv_async())).await;
                        match woke {
                            Either::Left((Ok(Some(m)), _)) => m,
                            Either::Left(_) => break,
                            Either::Right(_) => {
                                reopen = true;
                                break;
                            }
                        }
                    };
                    let m = next;
                    let Ok(crate::jsonrpc::Message::Single(f)) = crate::jsonrpc::parse(m) else {
                        continue;
                    };
                    if f.kind() == crate::jsonrpc::Kind::Response {
                        // A 2026-07-28 upstream's answer to subscriptions/listen: the stream
                        // ended (a result: listen again), it has none (-32601: refresh covers
                        // it), or it refused this request (another error: try again later).
                        if f.is_error() {
                            let code = f
                                .error_raw()
                                .and_then(|r| serde_json::from_slice::<serde_json::Value>(r).ok())
                                .and_then(|v| v.get("code").and_then(serde_json::Value::as_i64));
                            if code == Some(-32601) {
                                tracing::info!(upstream = %up.name, "upstream has no subscriptions/listen; its lists refresh every refresh_interval_ms");
                                return;
                            }
                            tracing::warn!(upstream = %up.name, error = %String::from_utf8_lossy(f.bytes()), "upstream refused subscriptions/listen; trying again in 5 s");
                        }
                        break;
                    }
                    let method = f.method().map(|m| m.into_owned()).unwrap_or_default();
                    if method == "notifications/resources/updated" {
                        if let Some(uri) = f.param("uri").and_then(|s| f.str_at(s)) {
                            shared.deliver_update(&up.name, &uri);
                        }
                    }
                    if method.ends_with("/list_changed") {
                        tracing::info!(upstream = %up.name, "upstream lists changed");
                        if tx.send(ControlMsg::Refresh).is_err() {
                            return;
                        }
                    }
                    if shared.stopping() || up.retired() {
                        return;
                    }
                }
                if reopen {
                    tracing::debug!(upstream = %up.name, "subscribed resources changed: listening again");
                    continue;
                }
            } else if listened.is_ok() {
                // No stream offered: periodic refresh covers this upstream.
                return;
            }
        }
        monoio::time::sleep(Duration::from_secs(5)).await;
    }
}
