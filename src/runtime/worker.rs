//! One worker: a thread with its own monoio runtime and `SO_REUSEPORT` listener.
//!
//! The worker accepts connections and serves each as a local task; requests and their
//! upstream calls stay on this thread. It stops accepting when shutdown starts and lets its
//! connections finish (each closes after its current request).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use monoio::net::{ListenerOpts, TcpListener};

use super::Chosen;
use crate::{pipeline::Pipeline, state::Shared, transport::server};

/// A started worker thread.
pub struct Worker {
    thread: std::thread::JoinHandle<()>,
}

impl Worker {
    /// Starts worker `index`; returns once its listener is bound (or failed to bind).
    pub fn start(
        index: u16,
        addr: SocketAddr,
        chosen: Chosen,
        shared: Arc<Shared>,
    ) -> anyhow::Result<Worker> {
        let (ready_tx, ready_rx) = flume::bounded::<std::io::Result<()>>(1);
        let thread = std::thread::Builder::new()
            .name(format!("mcpgw-worker-{index}"))
            .spawn(move || {
                let res = match chosen {
                    Chosen::Uring(flags) => monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                        .with_entries(super::RING_ENTRIES)
                        .uring_builder(flags.builder())
                        .enable_timer()
                        .build()
                        .map(|mut rt| rt.block_on(run(index, addr, shared, ready_tx.clone()))),
                    Chosen::Epoll => monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                        .enable_timer()
                        .build()
                        .map(|mut rt| rt.block_on(run(index, addr, shared, ready_tx.clone()))),
                };
                if let Err(e) = res {
                    let _ = ready_tx.send(Err(e));
                }
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Worker { thread }),
            Ok(Err(e)) => Err(anyhow::anyhow!("worker {index}: {e}")),
            Err(_) => Err(anyhow::anyhow!("worker {index} stopped during start-up")),
        }
    }

    /// Waits for the worker to finish.
    pub fn join(self) {
        let _ = self.thread.join();
    }
}

async fn run(
    index: u16,
    addr: SocketAddr,
    shared: Arc<Shared>,
    ready: flume::Sender<std::io::Result<()>>,
) {
    let opts = ListenerOpts::default()
        .reuse_port(true)
        .reuse_addr(true)
        .backlog(4096);
    let listener = match TcpListener::bind_with_config(addr, &opts) {
        Ok(l) => l,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    let pipeline = Pipeline::new(shared.clone(), index);
    // Idle upstream connections past upstream_idle_timeout_ms are closed.
    {
        let (ctx, shared) = (pipeline.ctx().clone(), shared.clone());
        monoio::spawn(async move {
            let every = shared
                .config
                .gateway
                .upstream_idle_timeout
                .clamp(Duration::from_millis(100), Duration::from_secs(1));
            while !shared.stopping() {
                monoio::time::sleep(every).await;
                ctx.caller
                    .pool
                    .sweep(shared.config.gateway.upstream_idle_timeout);
            }
        });
    }
    // `[gateway.tls]`: this worker's acceptor, with its own session cache.
    let tls = shared.config.gateway.tls.as_ref().map(|t| t.for_worker());
    // Connections this worker holds (its share of `max_connections`).
    let held = std::rc::Rc::new(std::cell::Cell::new(0usize));
    loop {
        if shared.stopping() {
            break;
        }
        // Wake up now and then to notice shutdown.
        match monoio::time::timeout(Duration::from_millis(200), listener.accept()).await {
            Ok(Ok((conn, peer))) => match shared.limits.admit(peer.ip(), &held) {
                Ok(permit) => {
                    let _ = conn.set_nodelay(true);
                    match &tls {
                        None => {
                            monoio::spawn(server::serve(conn, pipeline.clone(), permit, peer.ip()));
                        }
                        Some(tls) => {
                            monoio::spawn(server::serve_tls(
                                conn,
                                tls.clone(),
                                pipeline.clone(),
                                permit,
                                peer.ip(),
                            ));
                        }
                    }
                }
                // Over a limit on a TLS listener: closed at once. A plaintext 503 would not
                // reach a TLS client, and a handshake is the cost the limit is there to shed.
                Err(_) if tls.is_some() => drop(conn),
                Err(limit) => {
                    monoio::spawn(server::refuse_connection(conn, limit, pipeline.clone()));
                }
            },
            Ok(Err(e)) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(worker = index, error = %e, "accept failed");
                monoio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(_) => {}
        }
    }
    drop(listener);
    // Drain: requests in progress finish (up to drain_timeout); idle keep-alive connections
    // are closed when the runtime stops. GET streams end by themselves on shutdown.
    let deadline = monoio::time::Instant::now() + shared.config.gateway.drain_timeout;
    while pipeline.ctx().in_progress() > 0 && monoio::time::Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(10)).await;
    }
    if pipeline.ctx().in_progress() > 0 {
        tracing::warn!(
            worker = index,
            left = pipeline.ctx().in_progress(),
            "drain deadline passed with requests in progress"
        );
    }
}
