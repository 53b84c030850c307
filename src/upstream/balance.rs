//! Replicas of one HTTP upstream (`urls`): which one a new session or call goes to, and
//! which ones are left out for a while because they failed (outlier ejection).
//!
//! The state of each replica is a handful of atomics shared by all workers: calls
//! outstanding, consecutive failures, when its ejection ends, how often it was ejected. A
//! choice is power of two choices: two replicas at random among those not ejected, the one
//! with fewer calls outstanding wins (one that failed in the last second, and has not answered
//! since, loses to one that did not: a retry goes elsewhere). When
//! every replica is ejected, the one ejected longest ago is used: a call never fails for lack
//! of a replica (the upstream's circuit breaker decides when to stop calling).
//!
//! A replica fails when it cannot be connected to, closes the connection before answering,
//! answers with HTTP 5xx, or lets a call time out. `consecutive_failures` of them in a row
//! eject it for `base_ejection_ms` times the number of times it was ejected (capped at
//! `max_ejection_ms`), unless that would put more than `max_ejection_percent` of the replicas
//! out. It comes back by itself when the time is up (passive: nothing probes it); its
//! multiplier falls back to one once it has served `max_ejection_ms` without an ejection.
//!
//! An upstream with a single URL has no balancer: its calls pay nothing here. Nothing here
//! locks, sleeps or allocates on the call path.

use std::{
    sync::atomic::{AtomicU32, AtomicU64, Ordering},
    time::Duration,
};

/// Most replicas of one upstream (a choice works on a 64-bit mask).
pub const MAX_REPLICAS: usize = 64;

/// How long a failure makes a replica lose to one without, ms.
const FAILING_MS: u64 = 1000;

/// Outlier ejection settings of one upstream (`[upstream.outlier]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutlierPolicy {
    /// Failures in a row that eject a replica (0: never eject).
    pub consecutive_failures: u32,
    /// First ejection; the n-th lasts n times as long.
    pub base_ejection: Duration,
    /// Longest ejection.
    pub max_ejection: Duration,
    /// Most replicas ejected at once, as a percentage of all (rounded down).
    pub max_ejection_percent: u32,
}

impl Default for OutlierPolicy {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            base_ejection: Duration::from_millis(30_000),
            max_ejection: Duration::from_millis(300_000),
            max_ejection_percent: 50,
        }
    }
}

/// Milliseconds on the balancers' clock (monotonic, since the first use in this process).
pub fn now_ms() -> u64 {
    static ORIGIN: std::sync::OnceLock<quanta::Instant> = std::sync::OnceLock::new();
    let origin = *ORIGIN.get_or_init(quanta::Instant::now);
    u64::try_from(
        quanta::Instant::now()
            .saturating_duration_since(origin)
            .as_millis(),
    )
    .unwrap_or(u64::MAX)
}

/// One replica's shared state.
#[derive(Debug, Default)]
struct Replica {
    outstanding: AtomicU32,
    /// Failures since its last success (or ejection).
    failures: AtomicU32,
    /// Time of its last failure, ms.
    failed_at: AtomicU64,
    /// End of its current or last ejection, ms; 0: never ejected.
    ejected_until: AtomicU64,
    /// Start of its last ejection, ms.
    ejected_at: AtomicU64,
    /// Times ejected since start.
    ejections: AtomicU32,
    /// Multiplier of the next ejection, minus one.
    streak: AtomicU32,
    /// Requests sent to it.
    calls: AtomicU64,
}

/// What the admin API and `/metrics` show of a replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaView {
    /// Requests in flight to it now.
    pub outstanding: u32,
    /// Whether it is ejected now.
    pub ejected: bool,
    /// Ms until its ejection ends (0 when not ejected).
    pub ejected_for_ms: u64,
    /// Times ejected since start.
    pub ejections: u32,
    /// Requests sent to it since start.
    pub calls: u64,
    /// Failures in a row now.
    pub failures: u32,
}

/// The replicas of one upstream.
#[derive(Debug)]
pub struct Balancer {
    replicas: Box<[Replica]>,
    policy: OutlierPolicy,
}

impl Balancer {
    /// A balancer over `n` replicas (at most [`MAX_REPLICAS`]; more are not chosen).
    pub fn new(n: usize, policy: OutlierPolicy) -> Self {
        Self {
            replicas: (0..n.clamp(1, MAX_REPLICAS))
                .map(|_| Replica::default())
                .collect(),
            policy,
        }
    }

    /// Number of replicas.
    pub fn len(&self) -> usize {
        self.replicas.len()
    }

    /// Always false: a balancer has at least one replica.
    pub fn is_empty(&self) -> bool {
        self.replicas.is_empty()
    }

    fn ejected_at(&self, i: usize, now: u64) -> bool {
        self.replicas[i].ejected_until.load(Ordering::Acquire) > now
    }

    /// Whether replica `i` is ejected at `now` (ms).
    pub fn ejected(&self, i: usize, now: u64) -> bool {
        i < self.replicas.len() && self.ejected_at(i, now)
    }

    /// Whether some replica other than `i` is not ejected at `now`.
    pub fn others_available(&self, i: usize, now: u64) -> bool {
        (0..self.replicas.len()).any(|j| j != i && !self.ejected_at(j, now))
    }

    /// The replica for a new session or call at `now`: power of two choices by calls
    /// outstanding among those neither ejected nor in `avoid` (a bit per replica, e.g. the
    /// ones just tried); failing replicas lose to others. `random` is any random u64.
    pub fn pick(&self, now: u64, random: u64, avoid: u64) -> usize {
        let n = self.replicas.len();
        let all = if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
        let mut live = 0u64;
        for i in 0..n {
            if !self.ejected_at(i, now) {
                live |= 1 << i;
            }
        }
        let mut candidates = live & !avoid & all;
        if candidates == 0 {
            candidates = live;
        }
        if candidates == 0 {
            // Every replica is ejected: the one ejected longest ago, unless avoided.
            let oldest = |mask: u64| {
                (0..n)
                    .filter(|i| mask & (1 << i) != 0)
                    .min_by_key(|i| self.replicas[*i].ejected_at.load(Ordering::Relaxed))
            };
            return oldest(all & !avoid).or_else(|| oldest(all)).unwrap_or(0);
        }
        let k = candidates.count_ones() as u64;
        if k == 1 {
            return candidates.trailing_zeros() as usize;
        }
        let a = (random % k) as u32;
        let mut b = ((random >> 32) % (k - 1)) as u32;
        if b >= a {
            b += 1;
        }
        let (a, b) = (nth_bit(candidates, a), nth_bit(candidates, b));
        let key = |i: usize| {
            let r = &self.replicas[i];
            let failing = r.failures.load(Ordering::Relaxed) > 0
                && now.saturating_sub(r.failed_at.load(Ordering::Relaxed)) < FAILING_MS;
            (failing, r.outstanding.load(Ordering::Relaxed))
        };
        if key(b) < key(a) {
            b
        } else {
            a
        }
    }

    /// Counts a request to replica `i` as outstanding until `end` is called.
    pub fn begin(&self, i: usize) {
        if let Some(r) = self.replicas.get(i) {
            r.outstanding.fetch_add(1, Ordering::Relaxed);
            r.calls.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Ends a request [`Balancer::begin`] counted.
    pub fn end(&self, i: usize) {
        if let Some(r) = self.replicas.get(i) {
            let _ = r
                .outstanding
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
    }

    /// Records an exchange with replica `i` at `now`: `ok` when it answered (any HTTP status
    /// below 500), else a failure. Returns true when this failure ejected it.
    pub fn record(&self, i: usize, ok: bool, now: u64) -> bool {
        let Some(r) = self.replicas.get(i) else {
            return false;
        };
        let p = &self.policy;
        if ok {
            if r.failures.load(Ordering::Relaxed) != 0 {
                r.failures.store(0, Ordering::Relaxed);
            }
            if r.streak.load(Ordering::Relaxed) != 0 {
                let until = r.ejected_until.load(Ordering::Relaxed);
                if now.saturating_sub(until) >= ms(p.max_ejection) {
                    r.streak.store(0, Ordering::Relaxed);
                }
            }
            return false;
        }
        // Failures while it is out (pinned sessions, or every replica out) do not count
        // toward its next ejection.
        let until = r.ejected_until.load(Ordering::Acquire);
        if until > now {
            return false;
        }
        r.failed_at.store(now, Ordering::Relaxed);
        let failures = r.failures.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        if p.consecutive_failures == 0 || failures < p.consecutive_failures {
            return false;
        }
        let n = self.replicas.len();
        let out = (0..n).filter(|j| self.ejected_at(*j, now)).count();
        let cap = n * p.max_ejection_percent.min(100) as usize / 100;
        if out >= cap {
            return false;
        }
        let streak = r.streak.load(Ordering::Relaxed);
        let period = ms(p.base_ejection)
            .saturating_mul(u64::from(streak) + 1)
            .min(ms(p.max_ejection).max(ms(p.base_ejection)));
        // One worker ejects it; the others see it ejected.
        if r.ejected_until
            .compare_exchange(
                until,
                now + period.max(1),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_err()
        {
            return false;
        }
        r.ejected_at.store(now, Ordering::Relaxed);
        r.streak.store(streak.saturating_add(1), Ordering::Relaxed);
        r.ejections.fetch_add(1, Ordering::Relaxed);
        r.failures.store(0, Ordering::Relaxed);
        true
    }

    /// Replica `i` as the admin API shows it at `now`.
    pub fn view(&self, i: usize, now: u64) -> Option<ReplicaView> {
        let r = self.replicas.get(i)?;
        let until = r.ejected_until.load(Ordering::Acquire);
        Some(ReplicaView {
            outstanding: r.outstanding.load(Ordering::Relaxed),
            ejected: until > now,
            ejected_for_ms: until.saturating_sub(now),
            ejections: r.ejections.load(Ordering::Relaxed),
            calls: r.calls.load(Ordering::Relaxed),
            failures: r.failures.load(Ordering::Relaxed),
        })
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Index of the `n`-th set bit (0-based) of `mask`, which has more than `n` bits set.
fn nth_bit(mut mask: u64, n: u32) -> usize {
    for _ in 0..n {
        mask &= mask - 1;
    }
    mask.trailing_zeros() as usize
}

#[cfg(test)]
mod tests;
