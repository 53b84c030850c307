//! Worker threads: one monoio runtime per core, each with its own `SO_REUSEPORT` listener.
//!
//! The IO driver is chosen at start: io_uring (with the setup flags that cut CPU per request
//! where the kernel has them) or epoll. `auto` probes io_uring once and falls back to epoll
//! with one log line saying why. Workers never block; they share only what
//! `state::Shared` holds.

pub mod sys;
pub mod worker;

use std::{future::Future, io, pin::Pin, task::Poll};

use crate::config::Driver;

/// What the probe decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chosen {
    /// io_uring with these setup flags.
    Uring(UringFlags),
    /// epoll (monoio's legacy driver).
    Epoll,
}

/// io_uring setup flags the kernel accepted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UringFlags {
    /// `IORING_SETUP_COOP_TASKRUN` (Linux 5.19): no IPI to interrupt the task for completions.
    pub coop_taskrun: bool,
    /// `IORING_SETUP_SINGLE_ISSUER` (Linux 6.0): one thread submits, so the kernel skips locking.
    pub single_issuer: bool,
    /// `IORING_SETUP_DEFER_TASKRUN` (Linux 6.1, needs SINGLE_ISSUER): completion work runs only
    /// when the worker waits for events, in batches.
    pub defer_taskrun: bool,
}

impl UringFlags {
    /// An `io_uring::Builder` with these flags set.
    pub fn builder(self) -> io_uring::Builder {
        let mut b = io_uring::IoUring::builder();
        if self.coop_taskrun {
            b.setup_coop_taskrun();
        }
        if self.single_issuer {
            b.setup_single_issuer();
        }
        if self.defer_taskrun {
            b.setup_defer_taskrun();
        }
        b
    }
}

/// Number of submission queue entries per worker ring.
pub const RING_ENTRIES: u32 = 1024;

/// Picks the driver for `want`; for io_uring, the best set of flags this kernel accepts.
pub fn choose(want: Driver) -> io::Result<Chosen> {
    if want == Driver::Epoll {
        return Ok(Chosen::Epoll);
    }
    let candidates = [
        UringFlags {
            coop_taskrun: true,
            single_issuer: true,
            defer_taskrun: true,
        },
        UringFlags {
            coop_taskrun: true,
            single_issuer: true,
            defer_taskrun: false,
        },
        UringFlags {
            coop_taskrun: true,
            ..Default::default()
        },
        UringFlags::default(),
    ];
    let mut last = None;
    for flags in candidates {
        match flags.builder().build(8) {
            Ok(_) => {
                if flags != candidates[0] {
                    tracing::info!(
                        ?flags,
                        "io_uring: this kernel lacks some setup flags; using a subset"
                    );
                }
                return Ok(Chosen::Uring(flags));
            }
            Err(e) => last = Some(e),
        }
    }
    let e = last.unwrap_or_else(|| io::Error::other("io_uring unavailable"));
    match want {
        Driver::Uring => Err(io::Error::new(
            e.kind(),
            format!("io_uring requested but unavailable: {e}"),
        )),
        _ => {
            tracing::warn!(error = %e, "io_uring unavailable; falling back to the epoll driver");
            Ok(Chosen::Epoll)
        }
    }
}

/// `fut`'s output, or `None` when `sleep` ends first (`fut` is polled first, as by
/// `monoio::time::timeout`). Both stay pinned where the caller made them: `timeout` takes
/// the future by value and moves it, and its 640-byte, 128-aligned `Sleep`, into a new
/// future at every use, and every future that awaits one grows by as much (on the request
/// path those moves were the largest share of the gateway's `memmove`s).
pub fn timed<'a, F: Future>(
    mut fut: Pin<&'a mut F>,
    mut sleep: Pin<&'a mut monoio::time::Sleep>,
) -> impl Future<Output = Option<F::Output>> + 'a {
    std::future::poll_fn(move |cx| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
}
