//! `mcpgw run`: start the gateway, wait for a signal, stop it.
//!
//! Loads the config, sets logging up, raises the open-file limit, picks the IO driver, starts
//! the control plane and one worker per configured core, then waits: SIGHUP reloads the
//! config, SIGINT or SIGTERM drains the workers and stops. It blocks the calling thread
//! until then; `main.rs` calls it through `cli::execute`.

use std::{
    path::PathBuf,
    sync::{atomic::Ordering, Arc},
};

use anyhow::Context;

use super::{source::Source, ControlPlane};
use crate::{
    config::{Config, Overrides},
    observe::init_logging,
    runtime::{self, worker::Worker, Chosen},
};

/// Runs the gateway from the config file at `path` (`None`: the embedded demo config) with
/// `overrides` until SIGINT or SIGTERM. Logging is set up here, once the config says whether
/// it wants JSON lines (plain text when the config fails to load). Errors: a bad config, no
/// IO driver, signal handlers or a listener that cannot be set up.
pub fn run_gateway(path: Option<PathBuf>, overrides: Overrides) -> anyhow::Result<()> {
    let config = match Config::load(path.as_deref(), &overrides) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            init_logging(false);
            return Err(e);
        }
    };
    init_logging(config.telemetry.json_logs);
    let source = Source { path, overrides };
    raise_fd_limit(&config);
    let chosen = runtime::choose(config.gateway.driver).context("choosing the IO driver")?;
    let signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ]);
    let mut signals = signals.context("installing signal handlers")?;

    let control = ControlPlane::start(config.clone(), source)?;
    let mut workers = Vec::new();
    for i in 0..config.gateway.workers {
        let index = u16::try_from(i).context("too many workers")?;
        match Worker::start(index, config.gateway.listen, chosen, control.shared.clone()) {
            Ok(w) => workers.push(w),
            Err(e) => {
                control.shutdown();
                return Err(e.context(format!("cannot listen on {}", config.gateway.listen)));
            }
        }
    }
    let driver = match chosen {
        Chosen::Uring(flags) => format!("io_uring {flags:?}"),
        Chosen::Epoll => "epoll".into(),
    };
    tracing::info!(
        listen = %config.gateway.listen,
        workers = workers.len(),
        %driver,
        config = %config.source,
        "mcpgw listening on http://{}/mcp",
        config.gateway.listen
    );
    for sig in signals.forever() {
        if sig == signal_hook::consts::SIGHUP {
            tracing::info!("SIGHUP: reloading the configuration");
            control.reload();
            continue;
        }
        tracing::info!(signal = sig, "shutting down");
        break;
    }
    stop(control, workers);
    Ok(())
}

/// Raises the open-file limit; warns when it still cannot hold every worker's
/// `max_connections`, or when it cannot be raised.
fn raise_fd_limit(config: &Config) {
    match runtime::sys::raise_fd_limit() {
        Ok(n) => {
            let g = &config.gateway;
            let want = (g.workers * g.max_connections) as u64;
            if want > n {
                tracing::warn!(
                    open_file_limit = n,
                    connections = want,
                    "workers x max_connections exceeds the open-file limit: accepts will fail \
                     (and back off) before max_connections is reached"
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
}

/// Drains the workers (each finishes its calls in flight), flushes trace and audit
/// exporters, then stops the control plane.
fn stop(control: ControlPlane, workers: Vec<Worker>) {
    control.shared.shutdown.store(true, Ordering::Release);
    for w in workers {
        w.join();
    }
    if let Some(t) = &control.shared.tracing {
        t.shutdown();
    }
    if let Some(a) = &control.shared.audit {
        a.shutdown();
    }
    control.shutdown();
    tracing::info!("stopped");
}
