//! Stdio upstreams: child processes speaking newline-delimited JSON-RPC, supervised by the
//! control plane.
//!
//! Each child has one supervisor thread (spawn, handshake, write requests, restart with
//! exponential backoff), one thread reading its stdout (answers go to the waiting caller by
//! gateway id) and one thread copying its stderr to the log. Workers reach a child only
//! through its [`StdioHandle`]: a channel in, a channel of the call's messages back; they
//! never block. A child that
//! dies fails every call in flight at once with "upstream unavailable"; calls that arrive
//! while it is down fail fast. On shutdown the child is killed and reaped.
//!
//! These threads are the control plane's; blocking here is expected.

use std::{
    io::{BufRead, BufReader, Read, Write},
    process::{Child, ChildStdin, Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use dashmap::DashMap;
use futures_channel::mpsc;
use futures_util::StreamExt;
use serde_json::{Map, Value};

use crate::{
    config,
    error::{Error, ErrorKind, Result},
    jsonrpc::{self, Kind},
};

/// Where the reader sends a call's messages: (is it the response, bytes).
type Reply = mpsc::UnboundedSender<(bool, Bytes)>;

/// A request sent to the child and not answered yet: where its messages go, and whether it
/// is the gateway's own (a catalog fetch, a health ping: it takes no messages but its
/// response, so it never counts as "the call in flight" that a message without a request
/// id is routed to).
type Pending = (Reply, bool);

enum Msg {
    Call {
        id: u64,
        body: Bytes,
        reply: Reply,
        own: bool,
    },
    Notify(Bytes),
    Cancel(u64),
    /// The stdout reader saw EOF: the child is gone (generation of the child it read).
    Exited(u64),
    Shutdown,
}

/// A worker's way to a supervised child.
#[derive(Clone)]
pub struct StdioHandle {
    name: Arc<str>,
    tx: flume::Sender<Msg>,
    up: Arc<AtomicBool>,
    capabilities: Arc<ArcSwapOption<Map<String, Value>>>,
    /// Disconnected once the supervisor has stopped for good (its child killed and reaped).
    done: flume::Receiver<()>,
}

impl StdioHandle {
    /// Stops the child for good: kills it, reaps it, and no restart follows. Resolves once
    /// that is done (`true`), or after `within` (`false`: a supervisor busy writing to a
    /// child that reads nothing; it stops when the write fails). Never blocks the thread.
    pub async fn stop(&self, within: Duration) -> bool {
        let _ = self.tx.send(Msg::Shutdown);
        matches!(
            monoio::time::timeout(within, self.done.recv_async()).await,
            Ok(Err(_))
        )
    }

    /// Whether the child is running and initialized.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// `capabilities` from the running child's `initialize` answer.
    pub fn capabilities(&self) -> Option<Map<String, Value>> {
        self.capabilities.load_full().map(|c| (*c).clone())
    }

    /// Sends request `id`; the returned call yields the child's messages for it. `own`: the
    /// gateway's own request (see [`Pending`]).
    pub fn call(&self, id: u64, body: Bytes, own: bool) -> Result<StdioCall> {
        if !self.is_up() {
            return Err(Error::new(
                ErrorKind::UpstreamUnavailable,
                format!("{}: child is down", self.name),
            )
            .unsent());
        }
        let (reply, rx) = mpsc::unbounded();
        self.tx
            .send(Msg::Call {
                id,
                body,
                reply,
                own,
            })
            .map_err(|_| {
                Error::new(
                    ErrorKind::UpstreamUnavailable,
                    format!("{}: supervisor gone", self.name),
                )
            })?;
        Ok(StdioCall {
            handle: self.clone(),
            id,
            rx,
            answered: false,
        })
    }

    /// Writes a notification or a response to the child.
    pub fn send(&self, body: Bytes) -> Result<()> {
        self.tx.send(Msg::Notify(body)).map_err(|_| {
            Error::new(
                ErrorKind::UpstreamUnavailable,
                format!("{}: supervisor gone", self.name),
            )
        })
    }

    /// Forgets call `id` (it timed out) and tells the child it is cancelled.
    pub fn cancel(&self, id: u64) {
        let _ = self.tx.send(Msg::Cancel(id));
    }
}

/// One request to a child: yields the messages routed to it (progress with its token,
/// requests and notifications while it is the only call in flight, then its response).
/// Dropped before the response, it forgets the request and tells the child it is cancelled.
pub struct StdioCall {
    handle: StdioHandle,
    id: u64,
    rx: mpsc::UnboundedReceiver<(bool, Bytes)>,
    answered: bool,
}

impl StdioCall {
    /// The next message; `None` once the response was given (or the child died: then an
    /// error).
    pub async fn next(&mut self) -> Result<Option<Bytes>> {
        if self.answered {
            return Ok(None);
        }
        match self.rx.next().await {
            Some((last, m)) => {
                self.answered = last;
                Ok(Some(m))
            }
            None => Err(Error::new(
                ErrorKind::UpstreamUnavailable,
                format!("{}: child exited mid-call", self.handle.name),
            )),
        }
    }
}

impl Drop for StdioCall {
    fn drop(&mut self) {
        if !self.answered {
            self.handle.cancel(self.id);
        }
    }
}

/// What a supervised child did that the control plane must know.
pub enum ChildEvent<'a> {
    /// It (re)started and finished its handshake.
    Up,
    /// It said one of its lists changed.
    ListChanged,
    /// It said a resource changed (`notifications/resources/updated`), original URI.
    ResourceUpdated(&'a str),
}

/// The control plane's callback for [`ChildEvent`]s, by upstream name.
pub type OnEvent = dyn Fn(&str, ChildEvent<'_>) + Send + Sync;

/// Starts and stops the stdio children; owned by the control plane.
pub struct Supervisor {
    handles: std::cell::RefCell<Vec<(StdioHandle, thread::JoinHandle<()>)>>,
    /// Called (from supervisor threads) with the upstream name each time a child is up.
    on_up: Arc<OnEvent>,
}

impl Supervisor {
    /// A supervisor that reports each child's events to `on_up`.
    pub fn new(on_up: Arc<OnEvent>) -> Self {
        Self {
            handles: Default::default(),
            on_up,
        }
    }

    /// Starts supervising the child of `cfg` (a stdio upstream).
    pub fn spawn(&self, cfg: &config::Upstream) -> StdioHandle {
        let (tx, rx) = flume::unbounded();
        let (done_tx, done) = flume::bounded(1);
        let handle = StdioHandle {
            name: cfg.name.as_str().into(),
            tx: tx.clone(),
            up: Arc::new(AtomicBool::new(false)),
            capabilities: Arc::new(ArcSwapOption::empty()),
            done,
        };
        let child = ChildSpec::from(cfg);
        let h = handle.clone();
        let on_up = self.on_up.clone();
        let join = thread::Builder::new()
            .name(format!("stdio-{}", cfg.name))
            .spawn(move || supervise(child, tx, rx, h, on_up, done_tx))
            .expect("spawning a supervisor thread at start");
        self.handles.borrow_mut().push((handle.clone(), join));
        handle
    }

    /// Tells one child's supervisor to stop (an upstream removed or changed by a reload): it
    /// kills and reaps the child and ends. Calls still in flight to it fail with "upstream
    /// unavailable". Does not wait (a grandchild holding the child's pipes could make the
    /// supervisor's own clean-up take long): [`StdioHandle::stop`] waits.
    pub fn stop(&self, handle: &StdioHandle) {
        let mut all = self.handles.borrow_mut();
        let Some(i) = all.iter().position(|(h, _)| Arc::ptr_eq(&h.up, &handle.up)) else {
            return;
        };
        let (h, _detached) = all.remove(i);
        drop(all);
        let _ = h.tx.send(Msg::Shutdown);
    }

    /// Kills every child, reaps it and joins its threads.
    pub fn shutdown(&self) {
        let handles = std::mem::take(&mut *self.handles.borrow_mut());
        for (h, _) in &handles {
            let _ = h.tx.send(Msg::Shutdown);
        }
        for (_, j) in handles {
            let _ = j.join();
        }
    }
}

struct ChildSpec {
    name: String,
    command: std::path::PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    cwd: Option<std::path::PathBuf>,
    backoff_max: Duration,
    init_timeout: Duration,
    /// Start from an empty environment plus [`KEPT_ENV`] (an admin-added child).
    clean_env: bool,
}

/// What an admin-added child keeps of the gateway's environment (besides its own `env`):
/// where programs and home are, locale, time zone, temporary directory. Nothing else of the
/// gateway's environment (its secret key, admin token, variables the config file reads
/// with `env:`) reaches a program the admin API chose.
const KEPT_ENV: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR",
];

impl ChildSpec {
    fn from(cfg: &config::Upstream) -> Self {
        let (command, args, env, cwd, backoff_max) = match &cfg.transport {
            config::Transport::Stdio {
                command,
                args,
                env,
                cwd,
                restart_backoff_max,
            } => (
                command.clone(),
                args.clone(),
                env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                cwd.clone(),
                *restart_backoff_max,
            ),
            config::Transport::Http { .. } => {
                (Default::default(), vec![], vec![], None, Duration::ZERO)
            }
        };
        Self {
            name: cfg.name.clone(),
            command,
            args,
            env,
            cwd,
            backoff_max,
            // A child may take seconds to start (an interpreter importing its SDK), whatever
            // its call timeout.
            init_timeout: cfg
                .call_timeout
                .clamp(Duration::from_secs(10), Duration::from_secs(60)),
            clean_env: cfg.from_admin,
        }
    }
}

/// A running child and what the supervisor needs of it.
struct Running {
    child: Child,
    stdin: ChildStdin,
    pending: Arc<DashMap<u64, Pending>>,
    threads: Vec<thread::JoinHandle<()>>,
}

/// Id of the supervisor's own `initialize` (gateway ids are never 0).
const INIT_ID: u64 = 0;

fn supervise(
    spec: ChildSpec,
    tx: flume::Sender<Msg>,
    rx: flume::Receiver<Msg>,
    handle: StdioHandle,
    on_up: Arc<OnEvent>,
    done: flume::Sender<()>,
) {
    // Dropped (disconnecting `StdioHandle::done`) once a shutdown has reaped the child, or
    // when this function returns.
    let mut done = Some(done);
    let up = &handle.up;
    let generation = AtomicU64::new(0);
    let mut backoff = Duration::from_millis(100);
    loop {
        let gen = generation.fetch_add(1, Ordering::Relaxed) + 1;
        let started = Instant::now();
        match start(&spec, &tx, gen, on_up.clone()) {
            Ok(mut run) => {
                match handshake(&spec, &mut run, &rx) {
                    Ok(caps) => {
                        handle.capabilities.store(Some(Arc::new(caps)));
                        up.store(true, Ordering::Release);
                        tracing::info!(upstream = %spec.name, pid = run.child.id(), "stdio upstream up");
                        on_up(&spec.name, ChildEvent::Up);
                        if serve(&spec, &mut run, &rx, gen) {
                            up.store(false, Ordering::Release);
                            stop(&spec, run, || drop(done.take()));
                            return;
                        }
                    }
                    Err(Stop::Shutdown) => {
                        stop(&spec, run, || drop(done.take()));
                        return;
                    }
                    Err(Stop::Failed(why)) => {
                        tracing::warn!(upstream = %spec.name, %why, "stdio upstream failed to initialize");
                    }
                }
                up.store(false, Ordering::Release);
                stop(&spec, run, || {});
            }
            Err(e) => {
                tracing::error!(upstream = %spec.name, error = %e, command = %spec.command.display(), "cannot start stdio upstream")
            }
        }
        if started.elapsed() > Duration::from_secs(10) {
            backoff = Duration::from_millis(100);
        }
        tracing::warn!(upstream = %spec.name, backoff_ms = backoff.as_millis() as u64, "stdio upstream down; restarting after backoff");
        // Wait out the backoff, failing calls fast, unless asked to stop.
        let until = Instant::now() + backoff;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match rx.recv_timeout(left) {
                Ok(Msg::Shutdown) | Err(flume::RecvTimeoutError::Disconnected) => return,
                Ok(Msg::Call { reply, .. }) => drop(reply),
                Ok(_) | Err(flume::RecvTimeoutError::Timeout) => {}
            }
        }
        backoff = (backoff * 2).min(spec.backoff_max.max(Duration::from_millis(100)));
    }
}

fn start(
    spec: &ChildSpec,
    tx: &flume::Sender<Msg>,
    gen: u64,
    on_change: Arc<OnEvent>,
) -> std::io::Result<Running> {
    let mut cmd = Command::new(&spec.command);
    if spec.clean_env {
        cmd.env_clear();
        for k in KEPT_ENV {
            if let Some(v) = std::env::var_os(k) {
                cmd.env(k, v);
            }
        }
    }
    cmd.args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(d) = &spec.cwd {
        cmd.current_dir(d);
    }
    crate::runtime::sys::die_with_parent(&mut cmd);
    let mut child = cmd.spawn()?;
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(std::io::Error::other("child pipes missing"));
    };
    let pending: Arc<DashMap<u64, Pending>> = Arc::new(DashMap::new());
    let mut threads = Vec::new();
    let name = spec.name.clone();
    threads.push(
        thread::Builder::new()
            .name(format!("stderr-{name}"))
            .spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    match line {
                        Ok(l) => tracing::info!(upstream = %name, "stderr: {l}"),
                        Err(_) => break,
                    }
                }
            })?,
    );
    let (name, pend, tx) = (spec.name.clone(), pending.clone(), tx.clone());
    threads.push(
        thread::Builder::new()
            .name(format!("stdout-{name}"))
            .spawn(move || read_stdout(&name, stdout, &pend, &tx, gen, &*on_change))?,
    );
    Ok(Running {
        child,
        stdin,
        pending,
        threads,
    })
}

/// Largest line accepted from a child, bytes.
const MAX_LINE: usize = 64 << 20;

/// Sends one message from a child where it belongs: a response to its call; progress to the
/// call whose gateway id is the token; other requests and notifications to the only
/// client call in flight (a shared child gives no other way to tell whom they concern; the
/// gateway's own requests do not count), else they are refused (requests) or logged
/// (notifications). `list_changed` asks for a catalog refresh.
fn route_from_child(
    name: &str,
    frame: jsonrpc::Frame,
    pending: &DashMap<u64, Pending>,
    tx: &flume::Sender<Msg>,
    on_change: &OnEvent,
) {
    let as_id =
        |raw: Option<Bytes>| raw.and_then(|r| std::str::from_utf8(&r).ok()?.parse::<u64>().ok());
    let sole = || {
        let mut clients = pending.iter().filter(|e| !e.value().1);
        let first = clients.next()?.value().0.clone();
        clients.next().is_none().then_some(first)
    };
    match frame.kind() {
        Kind::Response => match as_id(frame.id_raw()).and_then(|id| pending.remove(&id)) {
            Some((_, (reply, _))) => {
                let _ = reply.unbounded_send((true, frame.bytes().clone()));
            }
            None => tracing::debug!(upstream = %name, "answer to an unknown or cancelled request"),
        },
        Kind::Request => {
            if frame.method().as_deref() == Some("ping") {
                let id = frame
                    .id_raw()
                    .unwrap_or_else(|| Bytes::from_static(b"null"));
                let _ = tx.send(Msg::Notify(jsonrpc::result_body(&id, b"{}")));
            } else if let Some(reply) = sole() {
                let _ = reply.unbounded_send((false, frame.bytes().clone()));
            } else {
                let id = frame
                    .id_raw()
                    .unwrap_or_else(|| Bytes::from_static(b"null"));
                tracing::warn!(upstream = %name, method = ?frame.method(), "request from a shared child with no single call in flight refused");
                let _ = tx.send(Msg::Notify(jsonrpc::error_body(
                    Some(&id),
                    jsonrpc::Code::MethodNotFound,
                    "No client to route this request to",
                )));
            }
        }
        Kind::Notification => {
            let method = frame.method().map(|m| m.into_owned()).unwrap_or_default();
            if method.ends_with("/list_changed") {
                on_change(name, ChildEvent::ListChanged);
                return;
            }
            if method == "notifications/resources/updated" {
                // About a subscription, not a call: the gateway fans it out to subscribers.
                if let Some(uri) = frame.param("uri").and_then(|s| frame.str_at(s)) {
                    on_change(name, ChildEvent::ResourceUpdated(&uri));
                }
                return;
            }
            let by_token = if method == "notifications/progress" {
                frame
                    .param("progressToken")
                    .and_then(|s| frame.raw_at(s))
                    .and_then(|r| std::str::from_utf8(r).ok()?.parse::<u64>().ok())
                    .and_then(|t| pending.get(&t).map(|e| e.value().0.clone()))
            } else {
                sole()
            };
            match by_token {
                Some(reply) => {
                    let _ = reply.unbounded_send((false, frame.bytes().clone()));
                }
                None => {
                    tracing::debug!(upstream = %name, %method, "notification from child with no call to relay it to")
                }
            }
        }
    }
}

fn read_stdout(
    name: &str,
    stdout: std::process::ChildStdout,
    pending: &DashMap<u64, Pending>,
    tx: &flume::Sender<Msg>,
    gen: u64,
    on_change: &OnEvent,
) {
    let mut r = BufReader::with_capacity(64 << 10, stdout);
    let mut parser = jsonrpc::Parser::default();
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut r)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
        {
            Ok(0) | Err(_) => break,
            Ok(n) if n > MAX_LINE => {
                tracing::error!(upstream = %name, "line over {MAX_LINE} bytes from child; restarting it");
                break;
            }
            Ok(_) => {}
        }
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        let frame = match parser.parse_upstream(Bytes::copy_from_slice(text)) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(upstream = %name, error = %e, "invalid message from child");
                if matches!(e, jsonrpc::FrameError::Invalid { .. }) {
                    fail_sole_call(name, text, pending);
                }
                continue;
            }
        };
        route_from_child(name, frame, pending, tx, on_change);
    }
    let _ = tx.send(Msg::Exited(gen));
}

/// An error answer with a `null` id (the child could not read a request's id: a parse
/// error, too deep a nesting) fails the one client call in flight at once, rather than
/// leaving it to its timeout; with several in flight, whose it is cannot be told.
fn fail_sole_call(name: &str, text: &[u8], pending: &DashMap<u64, Pending>) {
    let Some(error) = jsonrpc::null_id_error(text) else {
        return;
    };
    let sole = {
        let mut clients = pending.iter().filter(|e| !e.value().1);
        match (clients.next().map(|e| *e.key()), clients.next()) {
            (Some(id), None) => Some(id),
            _ => None,
        }
    };
    let Some((id, (reply, _))) = sole.and_then(|id| pending.remove(&id)) else {
        tracing::debug!(upstream = %name, "error answer without an id, and not one call in flight");
        return;
    };
    let body = jsonrpc::error_raw_body(id.to_string().as_bytes(), error);
    let _ = reply.unbounded_send((true, body));
}

enum Stop {
    Shutdown,
    Failed(String),
}

fn write_line(stdin: &mut ChildStdin, body: &[u8]) -> std::io::Result<()> {
    // Raw CR/LF can only be whitespace between JSON tokens (strings escape them), so
    // replacing them keeps the message intact on one line.
    if memchr::memchr2(b'\n', b'\r', body).is_some() {
        let flat: Vec<u8> = body
            .iter()
            .map(|&c| if c == b'\n' || c == b'\r' { b' ' } else { c })
            .collect();
        stdin.write_all(&flat)?;
    } else {
        stdin.write_all(body)?;
    }
    stdin.write_all(b"\n")?;
    stdin.flush()
}

/// Runs `initialize` with the child; returns its capabilities.
fn handshake(
    spec: &ChildSpec,
    run: &mut Running,
    rx: &flume::Receiver<Msg>,
) -> std::result::Result<Map<String, Value>, Stop> {
    let (reply, mut answer) = mpsc::unbounded();
    run.pending.insert(INIT_ID, (reply, true));
    write_line(
        &mut run.stdin,
        &super::caller::initialize_body(INIT_ID, &crate::mcp::Hello::gateway()),
    )
    .map_err(|e| Stop::Failed(e.to_string()))?;
    let deadline = Instant::now() + spec.init_timeout;
    loop {
        if let Ok((_, b)) = answer.try_recv() {
            let result: Option<Value> = match jsonrpc::parse(b) {
                Ok(jsonrpc::Message::Single(f)) => {
                    f.result_raw().and_then(|r| serde_json::from_slice(r).ok())
                }
                _ => None,
            };
            let Some(result) = result else {
                return Err(Stop::Failed("initialize refused".into()));
            };
            write_line(&mut run.stdin, super::caller::INITIALIZED)
                .map_err(|e| Stop::Failed(e.to_string()))?;
            return Ok(result
                .get("capabilities")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Stop::Failed("no answer to initialize".into()));
        }
        match rx.recv_timeout(left.min(Duration::from_millis(20))) {
            Ok(Msg::Shutdown) => return Err(Stop::Shutdown),
            Ok(Msg::Exited(_)) => return Err(Stop::Failed("exited during initialize".into())),
            Ok(Msg::Call { reply, .. }) => drop(reply),
            Ok(_) | Err(flume::RecvTimeoutError::Timeout) => {}
            Err(flume::RecvTimeoutError::Disconnected) => return Err(Stop::Shutdown),
        }
    }
}

/// Serves calls until the child exits (returns false) or shutdown (returns true).
fn serve(spec: &ChildSpec, run: &mut Running, rx: &flume::Receiver<Msg>, gen: u64) -> bool {
    loop {
        let Ok(msg) = rx.recv() else { return true };
        match msg {
            Msg::Call {
                id,
                body,
                reply,
                own,
            } => {
                run.pending.insert(id, (reply, own));
                if let Err(e) = write_line(&mut run.stdin, &body) {
                    tracing::warn!(upstream = %spec.name, error = %e, "writing to child failed");
                    run.pending.remove(&id);
                }
            }
            Msg::Notify(body) => {
                let _ = write_line(&mut run.stdin, &body);
            }
            Msg::Cancel(id) => {
                if run.pending.remove(&id).is_some() {
                    let n = format!(
                        r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":{id},"reason":"timeout"}}}}"#
                    );
                    let _ = write_line(&mut run.stdin, n.as_bytes());
                }
            }
            Msg::Exited(g) if g == gen => {
                tracing::warn!(upstream = %spec.name, "stdio upstream exited");
                return false;
            }
            Msg::Exited(_) => {}
            Msg::Shutdown => return true,
        }
    }
}

/// Kills and reaps the child, fails its pending calls, calls `reaped`, joins its threads.
fn stop(spec: &ChildSpec, mut run: Running, reaped: impl FnOnce()) {
    run.pending.clear();
    drop(run.stdin);
    // Give a child that is exiting on its own (stdin closed) a moment, then kill it.
    let deadline = Instant::now() + Duration::from_millis(200);
    loop {
        match run.child.try_wait() {
            Ok(Some(status)) => {
                tracing::info!(upstream = %spec.name, %status, "stdio upstream exited");
                break;
            }
            Ok(None) if Instant::now() < deadline => {
                thread::park_timeout(Duration::from_millis(10))
            }
            _ => {
                let _ = run.child.kill();
                let _ = run.child.wait();
                break;
            }
        }
    }
    reaped();
    for t in run.threads {
        let _ = t.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(text: &'static str) -> jsonrpc::Frame {
        jsonrpc::Parser::default()
            .parse_one(Bytes::from_static(text.as_bytes()))
            .expect("valid message")
    }

    /// A message without a request id goes to the one client call in flight, whatever the
    /// gateway's own requests (a catalog fetch, a health ping) in flight beside it.
    #[test]
    fn messages_without_an_id_go_to_the_sole_client_call() {
        let pending: DashMap<u64, Pending> = DashMap::new();
        let (tx, _rx) = flume::unbounded();
        let ignore = |_: &str, _: ChildEvent<'_>| {};
        let (client, mut client_rx) = mpsc::unbounded();
        let (own, mut own_rx) = mpsc::unbounded();
        pending.insert(7, (client, false));
        pending.insert(8, (own, true));
        let log = r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"hi"}}"#;
        route_from_child("c", frame(log), &pending, &tx, &ignore);
        let got = client_rx.try_recv().expect("routed");
        assert!(!got.0 && got.1.starts_with(b"{\"jsonrpc\""));
        assert!(
            own_rx.try_recv().is_err(),
            "nothing for the gateway's own request"
        );
        // Two client calls: no telling whose it is, so nobody gets it.
        let (other, mut other_rx) = mpsc::unbounded();
        pending.insert(9, (other, false));
        route_from_child("c", frame(log), &pending, &tx, &ignore);
        assert!(client_rx.try_recv().is_err());
        assert!(other_rx.try_recv().is_err());
        // Responses still go by id, the gateway's own too.
        route_from_child(
            "c",
            frame(r#"{"jsonrpc":"2.0","id":8,"result":{}}"#),
            &pending,
            &tx,
            &ignore,
        );
        assert!(own_rx.try_recv().is_ok_and(|m| m.0));
    }
}
