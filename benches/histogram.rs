//! Latency recording as the gateway's metrics do it: an HDR histogram of microseconds,
//! bounds 1 µs .. 1 h, 3 significant digits (`observe::metrics`).
//!
//! `histogram_record`: one value recorded. `histogram_p99_100k_samples`: the 99th percentile
//! read back from 100k recorded values. The naive baseline keeps every sample in a
//! `Vec<u64>` and sorts a copy when read (its record path clears the vector every 1M pushes,
//! keeping the capacity, so that the bench does not grow it without bound).

// criterion_group! generates an undocumented function.
#![allow(missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use hdrhistogram::Histogram;

const SAMPLES: usize = 100_000;
const VEC_CAP: usize = 1 << 20;

fn hdr() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")
}

/// Latencies in µs with a long tail: mostly 100 µs .. 10 ms, some up to 10 s
/// (xorshift, fixed seed).
fn latencies(n: usize) -> Vec<u64> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if x.is_multiple_of(100) {
                1 + x % 10_000_000
            } else {
                100 + x % 10_000
            }
        })
        .collect()
}

fn record(c: &mut Criterion) {
    let values = latencies(4_096);
    let mut g = c.benchmark_group("histogram_record");
    let mut h = hdr();
    let mut i = 0;
    g.bench_function("hdr_record", |b| {
        b.iter(|| {
            i = (i + 1) % values.len();
            let _ = black_box(&mut h).record(values[i]);
        })
    });
    let mut v: Vec<u64> = Vec::with_capacity(VEC_CAP);
    g.bench_function("naive_vec_push", |b| {
        b.iter(|| {
            i = (i + 1) % values.len();
            if v.len() == VEC_CAP {
                v.clear();
            }
            black_box(&mut v).push(values[i]);
        })
    });
    g.finish();
}

fn p99(c: &mut Criterion) {
    let values = latencies(SAMPLES);
    let mut h = hdr();
    for &x in &values {
        let _ = h.record(x);
    }
    let mut g = c.benchmark_group("histogram_p99_100k_samples");
    g.bench_function("hdr_value_at_quantile", |b| {
        b.iter(|| black_box(&h).value_at_quantile(0.99))
    });
    g.bench_function("naive_vec_clone_sort", |b| {
        b.iter_batched(
            || values.clone(),
            |mut v| {
                v.sort_unstable();
                v[v.len() * 99 / 100]
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, record, p99);
criterion_main!(benches);
