//! The load generator: flags, threads, the closed and open loops, and the measured window.
//!
//! ```text
//! main thread: parse flags -> start T load threads -> barrier -> sample CPU at warm-up end
//!              -> progress bar -> collect each thread's Recorder -> sample CPU -> report
//! load thread: own monoio runtime -> connect + initialize its connections -> barrier
//!              -> one task per connection (closed or open loop) -> Recorder back to main
//! ```
//!
//! Threads share only the start instant, the closed-loop request budget and one progress
//! counter each; everything measured stays in the thread until it ends. It never retries a
//! failed request: every failure is counted, and any failure makes the run exit with 3.

pub mod client;
#[cfg(test)]
mod tests;

use std::{
    cell::{Cell, RefCell},
    io::IsTerminal,
    path::PathBuf,
    rc::Rc,
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc, Arc, Barrier, OnceLock,
    },
    time::{Duration, Instant},
};

use monoio::net::TcpStream;

use self::client::{Client, Target};
use crate::{
    cpu,
    mcp::{Bodies, Mix, Payload},
    report::{self, Report},
    rt::{Driver, Runtime},
    schedule::{self, Schedule},
    stats::{Phase, Recorder},
    sys,
};

/// Exit code of a run that saw any error.
pub const EXIT_ERRORS: u8 = 3;

/// Pause after a failed reconnect before the next request of that connection.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(10);

/// MCP-aware load generator for Streamable HTTP servers (mcpgw, its fixture, any MCP server).
///
/// Each connection opens its own MCP session (initialize, notifications/initialized), then
/// sends the request mix with the session header, keeping the connection alive. Answers are
/// checked: a JSON-RPC result with the right id is ok; everything else is an error, counted
/// by kind. A run with any error prints ERRORS: on stderr and exits with status 3.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "mcpgw-load", version)]
pub struct Args {
    /// MCP endpoint; http:// only.
    #[arg(long, default_value = "http://127.0.0.1:8080/mcp")]
    pub url: String,

    /// Connections in total, each with its own MCP session.
    #[arg(short = 'c', long, default_value_t = 4)]
    pub connections: u64,

    /// Load threads, each with its own runtime; connections are split evenly over them.
    #[arg(short = 't', long, default_value_t = 1)]
    pub threads: u64,

    /// Measured time after the warm-up, seconds. Ignored with --requests.
    #[arg(short = 'd', long, default_value_t = 10.0)]
    pub duration: f64,

    /// Measure this many requests in total instead of a duration.
    #[arg(short = 'n', long)]
    pub requests: Option<u64>,

    /// Warm-up before the measured window, seconds; its requests are not recorded.
    #[arg(short = 'w', long, default_value_t = 1.0)]
    pub warmup: f64,

    /// Open loop: send this many requests per second in total, on a constant schedule spread
    /// over the connections, whatever the answers do. Latency counts from each request's
    /// intended send time (coordinated-omission correction); sends that start more than
    /// 100 µs late are reported. Without --rate: closed loop, each connection sends its next
    /// request when the previous answer arrives.
    #[arg(short = 'r', long)]
    pub rate: Option<f64>,

    /// Request mix as NAME=WEIGHT pairs: call (tools/call of --tool), list (tools/list),
    /// read (resources/read of --resource). Interleaved deterministically.
    #[arg(short = 'm', long, default_value = "call=100")]
    pub mix: Mix,

    /// Tool called by tools/call (through mcpgw: `<upstream>__echo`).
    #[arg(long, default_value = "echo")]
    pub tool: String,

    /// Size of the `text` argument of tools/call, bytes.
    #[arg(long, default_value_t = 1024)]
    pub payload_bytes: usize,

    /// Make the `text` argument from this file's text (repeated, cut at a character boundary
    /// to `--payload-bytes`) instead of `x`s: prose, for measuring what looks at the text
    /// (the gateway's screening). With no `--result-bytes`, the echo returns it too.
    #[arg(long)]
    pub text_file: Option<std::path::PathBuf>,

    /// Also send argument `result_bytes` with this value: the fixture's echo then answers
    /// with a text of this many bytes. Unset: not sent, and echo returns the text it got.
    #[arg(long)]
    pub result_bytes: Option<usize>,

    /// URI read by resources/read.
    #[arg(long, default_value = "fixture://static/1")]
    pub resource: String,

    /// Speak MCP 2026-07-28 (stateless): no `initialize` and no session; every request
    /// carries `params._meta` (version, capabilities) and the `MCP-Protocol-Version`,
    /// `Mcp-Method` and `Mcp-Name` headers.
    #[arg(long)]
    pub stateless: bool,

    /// Short-lived clients: after this many requests a connection's client leaves (a
    /// session's `DELETE`, then the connection is closed) and a new one takes its place (a
    /// new connection and, outside --stateless, a new session). Closed loop only. What it
    /// costs the server shows in --pid's CPU per request; latencies are the requests' own.
    #[arg(long)]
    pub calls_per_session: Option<std::num::NonZeroU64>,

    /// Send `Accept: text/event-stream` alone, so that a server honouring it (mcpgw does)
    /// answers every request as an event stream. By default both JSON and event stream are
    /// accepted, as the MCP spec asks of clients.
    #[arg(long)]
    pub sse: bool,

    /// Timeout of each request (and of each session-setup exchange), milliseconds. A request
    /// that times out is an error and its connection is reopened.
    #[arg(long, default_value_t = 5000)]
    pub timeout_ms: u64,

    /// IO driver of the load threads: io_uring (COOP_TASKRUN + SINGLE_ISSUER +
    /// DEFER_TASKRUN) or epoll.
    #[arg(long, value_enum, default_value_t = Driver::Uring)]
    pub driver: Driver,

    /// Report the load generator's own CPU time per request (from /proc/self/stat).
    #[arg(long)]
    pub self_cpu: bool,

    /// Report CPU µs per request of process PID (from /proc/PID/stat deltas over the
    /// measured window). Repeat for several processes: gateway, fixture, floor.
    #[arg(long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,

    /// Write the summary and the percentile distribution as one JSON object to FILE
    /// (overwritten).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Append the summary as one CSV row to FILE (writing the header if FILE is new or
    /// empty); the percentile distribution is appended to FILE with `-percentiles` before
    /// its extension. Rows carry --label, so one file can collect a whole matrix.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,

    /// Draw the HDR percentile plot (latency against percentile on a log 1/(1-p) axis) as
    /// an SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,

    /// Extra request header `Name: value` on every request (repeat the flag), e.g.
    /// `--header 'Authorization: Bearer mcpgw_...'`.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,

    /// Name of this scenario in the JSON and CSV output and the plot title.
    #[arg(long, default_value = "")]
    pub label: String,

    /// No progress bar (it is shown only when stderr is a terminal and the run is longer
    /// than 2 s).
    #[arg(short, long)]
    pub quiet: bool,
}

/// How the run ends and how requests are paced, resolved from the flags.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Plan {
    /// Closed loop for a measured duration.
    ClosedFor(Duration),
    /// Closed loop until this many measured requests were sent.
    ClosedCount(u64),
    /// Open loop: requests `first..end` of `schedule` are measured, earlier ones warm up.
    Open {
        /// The schedule.
        schedule: Schedule,
        /// First measured request.
        first: u64,
        /// One past the last request.
        end: u64,
    },
}

/// The flags checked and resolved.
#[derive(Debug, Clone)]
pub struct Config {
    /// The flags as given.
    pub args: Args,
    /// Where the load goes.
    pub target: Arc<Target>,
    /// Threads actually used (never more than connections).
    pub threads: u64,
    /// Warm-up.
    pub warmup: Duration,
    /// Pacing and end.
    pub plan: Plan,
}

impl Config {
    /// Checks the flags and resolves the URL.
    pub fn new(args: Args) -> Result<Config, String> {
        if args.connections == 0 {
            return Err("--connections must be at least 1".into());
        }
        if !(args.warmup.is_finite() && args.warmup >= 0.0) {
            return Err("--warmup must be 0 or more seconds".into());
        }
        let warmup = Duration::from_secs_f64(args.warmup);
        let plan = match (args.rate, args.requests) {
            (Some(rate), _) if !(rate.is_finite() && rate > 0.0) => {
                return Err("--rate must be more than 0".into())
            }
            (_, Some(0)) => return Err("--requests must be at least 1".into()),
            (Some(rate), requests) => {
                let schedule = Schedule::new(rate, args.connections);
                let first = schedule.first_due_at_or_after(warmup);
                let end = match requests {
                    Some(n) => first + n,
                    None => schedule.first_due_at_or_after(warmup + measured(&args)?),
                };
                Plan::Open {
                    schedule,
                    first,
                    end,
                }
            }
            (None, Some(n)) => Plan::ClosedCount(n),
            (None, None) => Plan::ClosedFor(measured(&args)?),
        };
        let mut target = Target::parse(&args.url)?;
        for h in &args.headers {
            if !h.contains(':') || h.contains('\r') || h.contains('\n') {
                return Err(format!("--header {h:?}: expected 'Name: value'"));
            }
            target.extra_headers.push_str(h.trim());
            target.extra_headers.push_str("\r\n");
        }
        if args.sse {
            target.accept = client::ACCEPT_SSE;
        }
        target.stateless = args.stateless;
        if args.calls_per_session.is_some() && args.rate.is_some() {
            return Err("--calls-per-session is for the closed loop (no --rate)".into());
        }
        let target = Arc::new(target);
        let threads = args.threads.clamp(1, args.connections);
        Ok(Config {
            target,
            threads,
            warmup,
            plan,
            args,
        })
    }

    /// A short description of the pacing, for reports.
    pub fn mode(&self) -> &'static str {
        match self.plan {
            Plan::Open { .. } => "open",
            _ => "closed",
        }
    }
}

fn measured(args: &Args) -> Result<Duration, String> {
    if args.duration.is_finite() && args.duration > 0.0 {
        Ok(Duration::from_secs_f64(args.duration))
    } else {
        Err("--duration must be more than 0 seconds".into())
    }
}

/// A counter on its own cache line, so two threads' counters never share one.
#[repr(align(128))]
#[derive(Default)]
struct Padded(AtomicU64);

/// What the threads share.
struct Shared {
    config: Config,
    bodies: Bodies,
    barrier: Barrier,
    start: OnceLock<Instant>,
    /// Closed loop with --requests: measured requests handed out so far.
    issued: AtomicU64,
    /// Measured answers per thread, for the progress bar.
    progress: Vec<Padded>,
}

/// What a thread hands back.
struct ThreadResult {
    rec: Recorder,
    /// When its last measured answer arrived.
    last_answer: Option<Instant>,
    sessions: u64,
}

/// Runs the load described by `args`; returns the process exit code (0, or 3 on errors).
pub fn run(args: Args) -> anyhow::Result<u8> {
    let config = Config::new(args).map_err(anyhow::Error::msg)?;
    for &pid in &config.args.pids {
        cpu::sample(Some(pid)).map_err(|e| anyhow::anyhow!("--pid {pid}: {e}"))?;
    }
    let _ = sys::raise_fd_limit();
    let threads = config.threads;
    let sample = match &config.args.text_file {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .map_err(|e| anyhow::anyhow!("--text-file {}: {e}", p.display()))?,
        ),
        None => None,
    };
    let bodies = Bodies::new(&Payload {
        tool: config.args.tool.clone(),
        sample,
        payload_bytes: config.args.payload_bytes,
        result_bytes: config.args.result_bytes,
        resource: config.args.resource.clone(),
        stateless: config.args.stateless,
    });
    let shared = Arc::new(Shared {
        bodies,
        barrier: Barrier::new(threads as usize + 1),
        start: OnceLock::new(),
        issued: AtomicU64::new(0),
        progress: (0..threads).map(|_| Padded::default()).collect(),
        config,
    });
    let (tx, rx) = mpsc::channel::<std::io::Result<ThreadResult>>();
    let mut handles = Vec::new();
    for i in 0..threads {
        let shared = shared.clone();
        let tx = tx.clone();
        handles.push(
            std::thread::Builder::new()
                .name(format!("mcpgw-load-{i}"))
                .spawn(move || {
                    let _ = tx.send(load_thread(i, &shared));
                })?,
        );
    }
    drop(tx);

    shared.barrier.wait();
    let start = *shared.start.get_or_init(Instant::now);
    let config = &shared.config;
    let warm_end = start + config.warmup;
    let mut progress = Progress::new(config, start);
    let mut before: Option<(Instant, Vec<Option<cpu::Sample>>)> = None;
    let mut results = Vec::new();
    let mut failed = Vec::new();
    while results.len() + failed.len() < threads as usize {
        let now = Instant::now();
        if before.is_none() && now >= warm_end {
            before = Some((now, sample_cpu(config)));
        }
        progress.tick(
            now,
            shared
                .progress
                .iter()
                .map(|p| p.0.load(Ordering::Relaxed))
                .sum(),
        );
        let wait = match before {
            None => warm_end.saturating_duration_since(now).min(Progress::TICK),
            Some(_) => Progress::TICK,
        };
        match rx.recv_timeout(wait) {
            Ok(Ok(r)) => results.push(r),
            Ok(Err(e)) => failed.push(e),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let end = Instant::now();
    let after = sample_cpu(config);
    let (cpu_t0, before) = before.unwrap_or_else(|| (end, after.clone()));
    progress.finish();
    for h in handles {
        let _ = h.join();
    }
    if let Some(e) = failed.into_iter().next() {
        anyhow::bail!("a load thread could not start: {e}");
    }

    let mut rec = Recorder::default();
    let mut last_answer = None;
    let mut sessions = 0;
    for r in &results {
        rec.merge(&r.rec);
        last_answer = last_answer.max(r.last_answer);
        sessions += r.sessions;
    }
    let window = last_answer.map_or(Duration::ZERO, |t| t.saturating_duration_since(warm_end));
    let completed = rec.ok_total() + rec.error_total();
    let cpu_window = end.saturating_duration_since(cpu_t0).as_secs_f64();
    let mut usage = Vec::new();
    let names = std::iter::once(None).chain(config.args.pids.iter().copied().map(Some));
    for ((pid, b), a) in names.zip(&before).zip(&after) {
        if let (Some(b), Some(a)) = (b, a) {
            let name = if pid.is_none() {
                "self".to_string()
            } else {
                a.comm.clone()
            };
            usage.push(cpu::usage(name, pid, b, a, completed, cpu_window));
        }
    }
    if !config.args.self_cpu {
        usage.retain(|u| u.pid.is_some());
    }
    let report = Report::new(config, &rec, window, sessions, usage);
    report::print(&report);
    report::write_files(&report, config).map_err(|e| anyhow::anyhow!("writing output: {e}"))?;
    if let Some(path) = &config.args.plot {
        crate::plot::write_svg(path, &report)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    Ok(if rec.error_total() > 0 || sessions == 0 {
        report::print_errors(&rec, sessions);
        EXIT_ERRORS
    } else {
        0
    })
}

/// CPU samples: the load generator itself first, then each --pid (None if unreadable).
fn sample_cpu(config: &Config) -> Vec<Option<cpu::Sample>> {
    std::iter::once(None)
        .chain(config.args.pids.iter().copied().map(Some))
        .map(|pid| match cpu::sample(pid) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("cpu: cannot read pid {}: {e}", pid.unwrap_or(0));
                None
            }
        })
        .collect()
}

// === load threads ===

/// Per-thread state shared by its connection tasks.
struct Ctx {
    shared: Arc<Shared>,
    thread: usize,
    start: Instant,
    warm_end: Instant,
    timeout: Duration,
    rec: RefCell<Recorder>,
    last_answer: Cell<Option<Instant>>,
}

fn load_thread(i: u64, shared: &Arc<Shared>) -> std::io::Result<ThreadResult> {
    let config = &shared.config;
    let conns = schedule::split(config.args.connections, config.threads, i);
    let timeout = Duration::from_millis(config.args.timeout_ms);
    let mut rt = match Runtime::new(config.args.driver) {
        Ok(rt) => rt,
        Err(e) => {
            shared.barrier.wait();
            return Err(e);
        }
    };
    let mut setup_rec = Recorder::default();
    let clients = rt.block_on(setup(config.target.clone(), conns, timeout, &mut setup_rec));
    let sessions = clients.len() as u64;
    shared.barrier.wait();
    let start = *shared.start.get_or_init(Instant::now);
    let ctx = Rc::new(Ctx {
        shared: shared.clone(),
        thread: i as usize,
        start,
        warm_end: start + config.warmup,
        timeout,
        rec: RefCell::new(setup_rec),
        last_answer: Cell::new(None),
    });
    rt.block_on(async {
        let tasks: Vec<_> = clients
            .into_iter()
            .map(|(c, client)| monoio::spawn(connection(c, client, ctx.clone())))
            .collect();
        for t in tasks {
            t.await;
        }
    });
    let ctx = Rc::try_unwrap(ctx).map_err(|_| std::io::Error::other("connection task leaked"))?;
    Ok(ThreadResult {
        rec: ctx.rec.into_inner(),
        last_answer: ctx.last_answer.get(),
        sessions,
    })
}

/// Connects and initializes the connections `conns` (global indices) concurrently; returns
/// the ones that made it, with their index. Failures are counted in `rec`.
async fn setup(
    target: Arc<Target>,
    conns: std::ops::Range<u64>,
    timeout: Duration,
    rec: &mut Recorder,
) -> Vec<(u64, Client)> {
    let tasks: Vec<_> = conns
        .map(|c| {
            let mut client = Client::new(target.clone());
            monoio::spawn(async move {
                let r = client.setup(timeout).await;
                (c, client, r)
            })
        })
        .collect();
    let mut ready = Vec::with_capacity(tasks.len());
    for t in tasks {
        match t.await {
            (c, client, Ok(())) => ready.push((c, client)),
            (_, _, Err(kind)) => rec.error(Phase::Setup, kind),
        }
    }
    ready
}

async fn connection(c: u64, client: Client, ctx: Rc<Ctx>) {
    match ctx.shared.config.plan {
        Plan::Open {
            schedule,
            first,
            end,
        } => open_loop(c, client, &ctx, schedule, first, end).await,
        plan => closed_loop(c, client, &ctx, plan).await,
    }
}

async fn closed_loop(c: u64, mut client: Client, ctx: &Ctx, plan: Plan) {
    let end = match plan {
        Plan::ClosedFor(d) => Some(ctx.warm_end + d),
        _ => None,
    };
    let mix = &ctx.shared.config.args.mix;
    let per_session = ctx.shared.config.args.calls_per_session;
    let mut i = c;
    let mut on_session = 0u64;
    loop {
        if end.is_some_and(|e| Instant::now() >= e) {
            break;
        }
        if per_session.is_some_and(|n| on_session >= n.get()) {
            // This client leaves; a new one arrives on a new connection (tried again, after
            // a pause, until it gets its session).
            client.leave(ctx.timeout).await;
            if let Err(kind) = client.setup(ctx.timeout).await {
                ctx.rec.borrow_mut().error(Phase::Setup, kind);
                monoio::time::sleep(RECONNECT_BACKOFF).await;
                continue;
            }
            on_session = 0;
        }
        on_session += 1;
        let sent_at = Instant::now();
        if end.is_some_and(|e| sent_at >= e) {
            break;
        }
        let measured = sent_at >= ctx.warm_end;
        if let (true, Plan::ClosedCount(n)) = (measured, plan) {
            if ctx.shared.issued.fetch_add(1, Ordering::Relaxed) >= n {
                break;
            }
        }
        let op = mix.pick(i);
        i += 1;
        let out = client.request(op, &ctx.shared.bodies, ctx.timeout).await;
        let done = Instant::now();
        if measured {
            ctx.record(op, &out, done, done - sent_at);
        } else {
            ctx.record_warmup(&out);
        }
        if out.result == Err(crate::stats::ErrorKind::Connect) {
            monoio::time::sleep(RECONNECT_BACKOFF).await;
        }
    }
}

async fn open_loop(
    c: u64,
    mut client: Client,
    ctx: &Ctx,
    schedule: Schedule,
    first: u64,
    end: u64,
) {
    let pacer = match Pacer::new() {
        Ok(p) => Some(p),
        Err(e) => {
            eprintln!("timerfd unavailable ({e}): pacing falls back to 1 ms timers");
            None
        }
    };
    let mix = &ctx.shared.config.args.mix;
    let mut g = schedule.first_of(c);
    let mut i = c;
    while g < end {
        let due = ctx.start + schedule.due(g);
        match &pacer {
            Some(p) => p.sleep_until(due).await,
            None => coarse_sleep_until(due).await,
        }
        let sent_at = Instant::now();
        let op = mix.pick(i);
        i += 1;
        let out = client.request(op, &ctx.shared.bodies, ctx.timeout).await;
        let done = Instant::now();
        if g >= first {
            // Latency from the intended send time, not the actual one.
            ctx.record(op, &out, done, done.saturating_duration_since(due));
            ctx.rec
                .borrow_mut()
                .lateness(micros(sent_at.saturating_duration_since(due)));
        } else {
            ctx.record_warmup(&out);
        }
        g = schedule.next_after(g);
    }
}

impl Ctx {
    /// Warm-up answers are not recorded, but their errors are counted: a run with errors
    /// must not look clean.
    fn record_warmup(&self, out: &client::Outcome) {
        if let Err(kind) = out.result {
            self.rec.borrow_mut().error(Phase::Warmup, kind);
        }
    }

    fn record(&self, op: crate::mcp::Op, out: &client::Outcome, done: Instant, latency: Duration) {
        let mut rec = self.rec.borrow_mut();
        match out.result {
            Ok(()) => rec.ok(op, micros(latency)),
            Err(kind) => rec.error(Phase::Request, kind),
        }
        rec.bytes_sent += out.sent as u64;
        rec.bytes_received += out.received as u64;
        self.last_answer.set(Some(done));
        self.shared.progress[self.thread]
            .0
            .fetch_add(1, Ordering::Relaxed);
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Sleeps until `t` with microsecond precision on a timerfd that monoio polls.
struct Pacer {
    fd: TcpStream,
}

impl Pacer {
    fn new() -> std::io::Result<Pacer> {
        Ok(Pacer {
            fd: TcpStream::from_std(sys::timerfd()?)?,
        })
    }

    async fn sleep_until(&self, t: Instant) {
        use std::os::fd::AsRawFd;
        loop {
            let now = Instant::now();
            if now >= t {
                return;
            }
            if sys::arm_timer(self.fd.as_raw_fd(), t - now).is_err()
                || self.fd.readable(false).await.is_err()
            {
                coarse_sleep_until(t).await;
            }
        }
    }
}

/// monoio's timer: rounds up to the next millisecond.
async fn coarse_sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        monoio::time::sleep(t - now).await;
    }
}

// === progress ===

/// The indicatif bar on stderr, for runs longer than 2 s on a terminal.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    start: Instant,
    /// Total run time for a timed run; `None` when counting requests.
    planned: Option<Duration>,
    /// Measured requests for a counted run.
    count: Option<u64>,
    enabled: bool,
    last: (Instant, u64),
}

impl Progress {
    const TICK: Duration = Duration::from_millis(100);
    const MIN_RUN: Duration = Duration::from_secs(2);

    fn new(config: &Config, start: Instant) -> Self {
        let (planned, count) = match config.plan {
            Plan::ClosedFor(d) => (Some(config.warmup + d), None),
            Plan::ClosedCount(n) => (None, Some(n)),
            Plan::Open {
                schedule,
                first,
                end,
            } => (Some(schedule.due(end)), Some(end - first)),
        };
        Progress {
            bar: None,
            start,
            planned,
            count,
            enabled: !config.args.quiet && std::io::stderr().is_terminal(),
            last: (start, 0),
        }
    }

    fn tick(&mut self, now: Instant, answers: u64) {
        if !self.enabled {
            return;
        }
        let elapsed = now.saturating_duration_since(self.start);
        if self.bar.is_none() {
            let long = self
                .planned
                .map_or(elapsed > Self::MIN_RUN, |p| p > Self::MIN_RUN);
            if !long {
                return;
            }
            let bar = match (self.planned, self.count) {
                (Some(p), _) => indicatif::ProgressBar::new(p.as_millis() as u64),
                (None, Some(n)) => indicatif::ProgressBar::new(n),
                (None, None) => indicatif::ProgressBar::no_length(),
            };
            let style = indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:40}] {percent:>3}% {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            bar.set_style(style.progress_chars("=> "));
            self.bar = Some(bar);
        }
        if let Some(bar) = &self.bar {
            match self.planned {
                Some(_) => bar.set_position(elapsed.as_millis() as u64),
                None => bar.set_position(answers),
            }
            let dt = now.saturating_duration_since(self.last.0).as_secs_f64();
            if dt >= 0.5 {
                let rate = answers.saturating_sub(self.last.1) as f64 / dt;
                bar.set_message(format!("{answers} measured, {rate:.0}/s"));
                self.last = (now, answers);
            }
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
