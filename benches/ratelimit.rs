//! The `rate_limit` phase: one GCRA check, as a worker does per request.
//!
//! `ratelimit_cell_*`: one bucket, single-threaded. `ratelimit_limiter_10k_keys_hit`: a
//! `Limiter<String>` already holding 10k keys, cycling through them. Each scenario runs with
//! `now` read from `quanta` inside the loop and with a fixed `now`; the rate is high enough
//! that every check is granted (the compare-exchange path), except in `*_deny`, where the
//! bucket is empty (a load and a compare). Beside each, the naive baseline: a token bucket
//! `parking_lot::Mutex<(f64 tokens, Instant last)>` (in a `DashMap` for the keyed case).

// criterion_group! generates an undocumented function.
#![allow(missing_docs)]

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use dashmap::DashMap;
use mcpgw::ratelimit::{Cell, Limiter, Rate};
use parking_lot::Mutex;
use quanta::{Clock, Instant};

/// Granted on every check: one token per nanosecond, and a bucket of 4e9.
const OPEN: Rate = Rate {
    count: 1_000_000_000,
    per: Duration::from_secs(1),
    burst: u32::MAX,
};

/// Refused on every check once the first is granted.
const SHUT: Rate = Rate {
    count: 1,
    per: Duration::from_secs(3_600),
    burst: 1,
};

const KEYS: usize = 10_000;

/// The naive token bucket: tokens refilled from the time elapsed, under a lock.
struct NaiveBucket {
    state: Mutex<(f64, Instant)>,
}

impl NaiveBucket {
    fn new(rate: &Rate, now: Instant) -> Self {
        NaiveBucket {
            state: Mutex::new((f64::from(rate.burst), now)),
        }
    }

    fn check(&self, rate: &Rate, now: Instant) -> Result<(), Duration> {
        let per_sec = f64::from(rate.count) / rate.per.as_secs_f64();
        let mut s = self.state.lock();
        let elapsed = now.saturating_duration_since(s.1).as_secs_f64();
        s.0 = (s.0 + elapsed * per_sec).min(f64::from(rate.burst));
        s.1 = s.1.max(now);
        if s.0 >= 1.0 {
            s.0 -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - s.0) / per_sec))
        }
    }
}

fn ns_since(clock: &Clock, origin: Instant) -> u64 {
    clock.now().saturating_duration_since(origin).as_nanos() as u64
}

fn cell(c: &mut Criterion) {
    let clock = Clock::new();
    let origin = clock.now();
    let fixed_ns = ns_since(&clock, origin) + 1_000_000;
    let fixed = origin + Duration::from_nanos(fixed_ns);

    let mut g = c.benchmark_group("ratelimit_cell_allow");
    let ours = Cell::new();
    g.bench_function("gcra_atomic_fixed_now", |b| {
        b.iter(|| black_box(ours.check(black_box(&OPEN), black_box(fixed_ns), 1)))
    });
    let ours = Cell::new();
    g.bench_function("gcra_atomic_quanta_now", |b| {
        b.iter(|| black_box(ours.check(&OPEN, ns_since(&clock, origin), 1)))
    });
    let naive = NaiveBucket::new(&OPEN, origin);
    g.bench_function("naive_mutex_f64_fixed_now", |b| {
        b.iter(|| black_box(naive.check(black_box(&OPEN), black_box(fixed))))
    });
    let naive = NaiveBucket::new(&OPEN, origin);
    g.bench_function("naive_mutex_f64_quanta_now", |b| {
        b.iter(|| black_box(naive.check(&OPEN, clock.now())))
    });
    g.finish();

    let mut g = c.benchmark_group("ratelimit_cell_deny");
    let ours = Cell::new();
    let _ = ours.check(&SHUT, fixed_ns, 1);
    g.bench_function("gcra_atomic_fixed_now", |b| {
        b.iter(|| black_box(ours.check(black_box(&SHUT), black_box(fixed_ns), 1)))
    });
    let naive = NaiveBucket::new(&SHUT, fixed);
    let _ = naive.check(&SHUT, fixed);
    g.bench_function("naive_mutex_f64_fixed_now", |b| {
        b.iter(|| black_box(naive.check(black_box(&SHUT), black_box(fixed))))
    });
    g.finish();
}

fn limiter(c: &mut Criterion) {
    let clock = Clock::new();
    let origin = clock.now();
    let fixed_ns = ns_since(&clock, origin) + 1_000_000;
    let fixed = origin + Duration::from_nanos(fixed_ns);
    let keys: Vec<String> = (0..KEYS).map(|i| format!("client-{i:05}")).collect();

    let ours: Limiter<String> = Limiter::new();
    let naive: DashMap<String, NaiveBucket> = DashMap::new();
    for k in &keys {
        let _ = ours.check(k, &OPEN, fixed_ns);
        naive.insert(k.clone(), NaiveBucket::new(&OPEN, origin));
    }
    let naive_check = |key: &String, now: Instant| match naive.get(key) {
        Some(b) => b.check(&OPEN, now),
        None => naive
            .entry(key.clone())
            .or_insert_with(|| NaiveBucket::new(&OPEN, now))
            .check(&OPEN, now),
    };

    let mut g = c.benchmark_group("ratelimit_limiter_10k_keys_hit");
    let mut i = 0;
    g.bench_function("gcra_dashmap_fixed_now", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(ours.check(&keys[i], &OPEN, black_box(fixed_ns)))
        })
    });
    g.bench_function("gcra_dashmap_quanta_now", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(ours.check(&keys[i], &OPEN, ns_since(&clock, origin)))
        })
    });
    g.bench_function("naive_dashmap_mutex_f64_fixed_now", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(naive_check(&keys[i], black_box(fixed)))
        })
    });
    g.bench_function("naive_dashmap_mutex_f64_quanta_now", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(naive_check(&keys[i], clock.now()))
        })
    });
    g.finish();
}

criterion_group!(benches, cell, limiter);
criterion_main!(benches);
