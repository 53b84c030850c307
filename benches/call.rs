//! One `tools/call` through the whole gateway in one process, no socket: the request's
//! bytes read by the HTTP server loop, every pipeline phase, the upstream request written,
//! the upstream's answer read and relayed, the client's answer written
//! ([`mcpgw::bench::Harness`]). Run with `cargo bench --features bench --bench call`.
//!
//! `call/legacy_1k` (W1: 1 KiB each way on an initialized session), `call/stateless_1k` (the
//! same from a 2026-07-28 client), `call/legacy_256k` (256 KiB each way), and
//! `memory_upstream_answer`: the in-memory server's own share of a call (included in the
//! others).

// criterion_group! generates an undocumented function.
#![allow(missing_docs)]

use std::{cell::Cell, rc::Rc, time::Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mcpgw::bench::{runtime, Harness, MemoryUpstream, Options};

fn calls(c: &mut Criterion) {
    let mut rt = runtime().expect("runtime");
    let mut g = c.benchmark_group("call");
    let cases = [
        ("legacy_1k", Options::default()),
        (
            "stateless_1k",
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
    for (name, opts) in cases {
        let h = rt.block_on(Harness::start(&opts)).expect("harness");
        g.throughput(Throughput::Elements(1));
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let t = Instant::now();
                    for _ in 0..iters {
                        h.call().await.expect("call");
                    }
                    t.elapsed()
                })
            })
        });
    }
    g.finish();
}

fn upstream_alone(c: &mut Criterion) {
    let mut up = MemoryUpstream::new(1024, Rc::new(Cell::new(0)));
    let body = Bytes::from(format!(
        r#"{{"jsonrpc":"2.0","id":17,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{}"}}}}}}"#,
        "x".repeat(1024)
    ));
    c.bench_function("memory_upstream_answer", |b| {
        b.iter(|| {
            up.answer("POST", &body);
            up.clear();
        })
    });
}

criterion_group!(benches, calls, upstream_alone);
criterion_main!(benches);
