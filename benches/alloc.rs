//! Heap allocations per `tools/call` through the whole gateway in one process
//! ([`mcpgw::bench::Harness`], no socket), counted by a counting global allocator over
//! calls made after a warm-up. Run with `cargo bench --features bench --bench alloc`.
//!
//! `--calls N` (default 10,000) and `--case legacy|stateless|legacy_256k` (default all);
//! `perf/inproc.sh` also runs it under callgrind for instructions per call.

#![allow(missing_docs)]
// The counting allocator forwards to the system allocator: that needs `unsafe impl`.
#![allow(unsafe_code)]

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicU64, Ordering::Relaxed},
};

use mcpgw::bench::{runtime, Harness, Options};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static FREES: AtomicU64 = AtomicU64::new(0);
static REALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// `GlobalAlloc` contract holds as it does for `System`; the counters have no effect on it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(l.size() as u64, Relaxed);
        // SAFETY: the caller's layout, as `GlobalAlloc::alloc` requires.
        unsafe { System.alloc(l) }
    }

    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(l.size() as u64, Relaxed);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(l) }
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        FREES.fetch_add(1, Relaxed);
        // SAFETY: `p` was allocated by this allocator (that is, `System`) with `l`.
        unsafe { System.dealloc(p, l) }
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        REALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(new.saturating_sub(l.size()) as u64, Relaxed);
        // SAFETY: `p` was allocated by `System` with `l`; `new` is the caller's size.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let calls: u64 = arg("--calls")
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let only = arg("--case");
    let cases = [
        ("legacy", Options::default()),
        (
            "stateless",
            Options {
                stateless: true,
                ..Options::default()
            },
        ),
        (
            "legacy_256k",
            Options {
                payload_bytes: 256 << 10,
                result_bytes: 256 << 10,
                ..Options::default()
            },
        ),
    ];
    let mut rt = runtime().expect("runtime");
    for (name, opts) in cases {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        rt.block_on(async {
            let h = Harness::start(&opts).await.expect("harness");
            for _ in 0..1000 {
                h.call().await.expect("warm-up call");
            }
            let served = h.served();
            let before = [&ALLOCS, &FREES, &REALLOCS, &BYTES].map(|c| c.load(Relaxed));
            for _ in 0..calls {
                h.call().await.expect("call");
            }
            let after = [&ALLOCS, &FREES, &REALLOCS, &BYTES].map(|c| c.load(Relaxed));
            assert_eq!(h.served() - served, calls, "one upstream request per call");
            let per = |i: usize| (after[i] - before[i]) as f64 / calls as f64;
            println!(
                "{name}: {:.2} allocations, {:.2} frees, {:.2} reallocations, {:.0} bytes allocated per call ({calls} calls)",
                per(0),
                per(1),
                per(2),
                per(3)
            );
            // Not torn down: the thread that drops the gateway's shared state last (this
            // one or another) varies from run to run, and `perf/inproc.sh` counts this
            // thread's instructions; a teardown counted in one run of a pair and not the
            // other showed up as ~4 M instructions spread over the calls.
            std::mem::forget(h);
        });
    }
}
