//! monoio runtimes and thread-per-core servers for the three binaries.
//!
//! Every thread gets its own runtime, on io_uring (set up with COOP_TASKRUN + SINGLE_ISSUER +
//! DEFER_TASKRUN, like the gateway's workers) or on epoll. Servers bind one `SO_REUSEPORT`
//! listener per thread, so the kernel spreads connections over threads and no connection ever
//! moves between threads. Nothing here falls back silently: a driver that cannot start is an
//! error at start-up.

use std::{
    future::Future,
    io,
    net::SocketAddr,
    rc::Rc,
    sync::{mpsc, Arc},
    thread::JoinHandle,
    time::Duration,
};

use monoio::{
    net::{ListenerOpts, TcpListener, TcpStream},
    time::TimeDriver,
    IoUringDriver, LegacyDriver,
};

/// Submission queue entries per io_uring.
pub const RING_ENTRIES: u32 = 1024;

/// Listen backlog of server sockets.
const BACKLOG: i32 = 4096;

/// Which IO driver a runtime uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Driver {
    /// io_uring with COOP_TASKRUN + SINGLE_ISSUER + DEFER_TASKRUN (Linux 6.1 or newer).
    Uring,
    /// epoll (monoio's legacy driver).
    Epoll,
}

/// A monoio runtime on either driver, with timers enabled.
pub enum Runtime {
    /// io_uring.
    Uring(monoio::Runtime<TimeDriver<IoUringDriver>>),
    /// epoll.
    Epoll(monoio::Runtime<TimeDriver<LegacyDriver>>),
}

impl Runtime {
    /// Builds a runtime for the calling thread (io_uring's SINGLE_ISSUER binds the ring to it).
    pub fn new(driver: Driver) -> io::Result<Runtime> {
        match driver {
            Driver::Uring => {
                let mut setup = io_uring::IoUring::builder();
                setup
                    .setup_coop_taskrun()
                    .setup_single_issuer()
                    .setup_defer_taskrun();
                let rt = monoio::RuntimeBuilder::<IoUringDriver>::new()
                    .with_entries(RING_ENTRIES)
                    .uring_builder(setup)
                    .enable_timer()
                    .build()
                    .map_err(|e| io::Error::new(e.kind(), format!("io_uring runtime: {e}")))?;
                Ok(Runtime::Uring(rt))
            }
            Driver::Epoll => Ok(Runtime::Epoll(
                monoio::RuntimeBuilder::<LegacyDriver>::new()
                    .enable_timer()
                    .build()?,
            )),
        }
    }

    /// Runs `fut` to completion on this runtime. May be called again afterwards: sockets
    /// opened in one call stay usable in the next.
    pub fn block_on<F: Future>(&mut self, fut: F) -> F::Output {
        match self {
            Runtime::Uring(rt) => rt.block_on(fut),
            Runtime::Epoll(rt) => rt.block_on(fut),
        }
    }
}

// === servers ===

/// What a server does with each accepted connection. One value per thread, shared by that
/// thread's connections.
pub trait Handler: 'static {
    /// Serves one connection until it closes.
    fn serve(self: Rc<Self>, conn: TcpStream) -> impl Future<Output = ()> + 'static;
}

/// Server threads that are running.
pub struct Servers {
    /// The bound address (its port resolved when `--listen` asked for port 0).
    pub addr: SocketAddr,
    threads: Vec<JoinHandle<()>>,
}

impl Servers {
    /// Blocks until every server thread has ended (they serve until the process is killed).
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Starts `threads` server threads named `name-N` on `listen`, each with its own runtime,
/// `SO_REUSEPORT` listener and handler made by `make(N)`. Returns once all are bound; the
/// first binds `listen` (port 0 picks a port), the others bind the port it got.
pub fn serve_threads<H, M>(
    name: &str,
    listen: SocketAddr,
    threads: usize,
    driver: Driver,
    make: M,
) -> anyhow::Result<Servers>
where
    H: Handler,
    M: Fn(usize) -> H + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let mut addr = listen;
    let mut handles = Vec::with_capacity(threads);
    for i in 0..threads.max(1) {
        let (ready_tx, ready_rx) = mpsc::sync_channel::<io::Result<SocketAddr>>(1);
        let make = make.clone();
        let thread = std::thread::Builder::new()
            .name(format!("{name}-{i}"))
            .spawn(move || {
                let mut rt = match Runtime::new(driver) {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                rt.block_on(accept_loop(addr, make(i), ready_tx));
            })?;
        match ready_rx.recv() {
            Ok(Ok(bound)) => addr = bound,
            Ok(Err(e)) => anyhow::bail!("{name} thread {i}: {e}"),
            Err(_) => anyhow::bail!("{name} thread {i} stopped during start-up"),
        }
        handles.push(thread);
    }
    Ok(Servers {
        addr,
        threads: handles,
    })
}

async fn accept_loop<H: Handler>(
    addr: SocketAddr,
    handler: H,
    ready: mpsc::SyncSender<io::Result<SocketAddr>>,
) {
    let opts = ListenerOpts::default()
        .reuse_port(true)
        .reuse_addr(true)
        .backlog(BACKLOG);
    let bound =
        TcpListener::bind_with_config(addr, &opts).and_then(|l| l.local_addr().map(|a| (l, a)));
    let listener = match bound {
        Ok((listener, local)) => {
            let _ = ready.send(Ok(local));
            listener
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let handler = Rc::new(handler);
    loop {
        match listener.accept().await {
            Ok((conn, _peer)) => {
                // Small request/response exchanges: never wait for Nagle.
                let _ = conn.set_nodelay(true);
                monoio::spawn(handler.clone().serve(conn));
            }
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                eprintln!("accept failed: {e}");
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}
