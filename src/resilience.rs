//! Surviving upstream failures: retries with backoff and a budget, and circuit breakers.
//!
//! State is per upstream and shared by all workers, in atomics: a breaker is three words, a
//! retry budget one. Nothing here sleeps or locks; the caller waits with monoio timers.
//!
//! - **Retries** happen only where they are safe: a request that never reached the upstream
//!   (connect refused or failed), or one the upstream may see twice without harm (reads,
//!   prompt gets, completions, and tools annotated `readOnlyHint`/`idempotentHint` or listed
//!   in `idempotent_tools`). Backoff is exponential with full jitter. A [`RetryBudget`] caps
//!   retries at a share of calls, so a failing upstream is not hit by a storm of them.
//! - A [`Breaker`] opens after `failures` consecutive failures (unreachable, timed out), then
//!   answers at once with -32015 for `open_ms`; then one probe call is let through
//!   (half-open): its success closes the breaker, its failure opens it again.

use std::{
    sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicU8, Ordering},
    time::Duration,
};

/// Retry settings of one upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Most retries of one call (0: none).
    pub retries: u32,
    /// First backoff; doubles per attempt, with full jitter.
    pub base: Duration,
    /// Largest backoff.
    pub cap: Duration,
    /// Retries allowed, as a percentage of calls.
    pub budget_percent: u32,
    /// Tools (the upstream's own names, `*` globs) safe to call twice.
    pub idempotent_tools: Vec<String>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            retries: 2,
            base: Duration::from_millis(25),
            cap: Duration::from_secs(1),
            budget_percent: 20,
            idempotent_tools: Vec::new(),
        }
    }
}

/// How long to wait before retry `attempt` (1-based): uniform in [0, min(cap, base·2^(attempt-1))],
/// drawn from `random` (any u64).
pub fn backoff(policy: &RetryPolicy, attempt: u32, random: u64) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let ceiling = policy
        .base
        .saturating_mul(1u32 << exp)
        .min(policy.cap)
        .as_micros();
    let ceiling = u64::try_from(ceiling).unwrap_or(u64::MAX);
    if ceiling == 0 {
        return Duration::ZERO;
    }
    Duration::from_micros(random % (ceiling + 1))
}

/// A cheap random number for jitter (not for secrets): a per-thread xorshift generator
/// seeded from the OS once.
pub fn jitter() -> u64 {
    thread_local! {
        static STATE: std::cell::Cell<u64> = std::cell::Cell::new({
            let mut b = [0u8; 8];
            let _ = getrandom::getrandom(&mut b);
            u64::from_le_bytes(b) | 1
        });
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        x
    })
}

/// Retries as a share of calls: every call deposits `percent` hundredths of a retry, every
/// retry withdraws one whole; the balance starts at (and is capped near) a few retries so a
/// quiet upstream can still be retried.
#[derive(Debug)]
pub struct RetryBudget {
    /// In hundredths of a retry.
    balance: AtomicI64,
}

/// Starting balance: three retries.
const BUDGET_START: i64 = 300;
/// Most saved up: ten retries.
const BUDGET_CAP: i64 = 1000;

impl Default for RetryBudget {
    fn default() -> Self {
        Self {
            balance: AtomicI64::new(BUDGET_START),
        }
    }
}

impl RetryBudget {
    /// Records a call (first attempt) under a budget of `percent`.
    pub fn deposit(&self, percent: u32) {
        let add = i64::from(percent);
        let _ = self
            .balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some((b + add).min(BUDGET_CAP))
            });
    }

    /// Takes one retry if the budget has it.
    pub fn withdraw(&self) -> bool {
        self.balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                (b >= 100).then_some(b - 100)
            })
            .is_ok()
    }
}

/// Breaker settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Consecutive failures that open it (0: never).
    pub failures: u32,
    /// How long it stays open before a probe.
    pub open: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            failures: 5,
            open: Duration::from_secs(10),
        }
    }
}

/// A breaker's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls flow.
    Closed,
    /// Calls are refused at once.
    Open,
    /// One probe call is allowed.
    HalfOpen,
}

impl BreakerState {
    /// Lowercase name (metrics, admin API).
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    /// The gauge value: 0 closed, 1 half-open, 2 open.
    pub fn gauge(self) -> u8 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        }
    }
}

/// One upstream's circuit breaker.
#[derive(Debug, Default)]
pub struct Breaker {
    /// 0 closed, 1 open, 2 half-open.
    state: AtomicU8,
    failures: AtomicU32,
    opened_ms: AtomicU64,
    /// A half-open probe is in flight.
    probing: AtomicBool,
    /// Times it opened.
    opened_total: AtomicU64,
}

/// What [`Breaker::allow`] let through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// An ordinary call.
    Call,
    /// The half-open probe: its outcome decides.
    Probe,
}

impl Breaker {
    /// The current state (open turns half-open once `open` has passed, at the next call).
    pub fn state(&self) -> BreakerState {
        match self.state.load(Ordering::Acquire) {
            1 => BreakerState::Open,
            2 => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }

    /// Times it opened since start.
    pub fn opened_total(&self) -> u64 {
        self.opened_total.load(Ordering::Relaxed)
    }

    /// Whether a call may go to the upstream at `now_ms`; `None`: refuse it (open).
    pub fn allow(&self, policy: &BreakerPolicy, now_ms: u64) -> Option<Pass> {
        if policy.failures == 0 {
            return Some(Pass::Call);
        }
        match self.state() {
            BreakerState::Closed => Some(Pass::Call),
            BreakerState::Open => {
                let since = now_ms.saturating_sub(self.opened_ms.load(Ordering::Acquire));
                if u128::from(since) < policy.open.as_millis() {
                    return None;
                }
                // Open long enough: the first caller to flip it to half-open is the probe.
                self.state
                    .compare_exchange(1, 2, Ordering::AcqRel, Ordering::Acquire)
                    .ok()
                    .and_then(|_| self.take_probe())
            }
            BreakerState::HalfOpen => self.take_probe(),
        }
    }

    fn take_probe(&self) -> Option<Pass> {
        self.probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| Pass::Probe)
    }

    /// Gives back a half-open probe whose call ended without an outcome: the next call
    /// probes instead.
    pub fn release_probe(&self) {
        self.probing.store(false, Ordering::Release);
    }

    /// Records a call's outcome: `ok` = the upstream answered (a JSON-RPC error or a tool
    /// error counts as an answer); otherwise it was unreachable or timed out.
    pub fn record(&self, policy: &BreakerPolicy, pass: Pass, ok: bool, now_ms: u64) {
        if policy.failures == 0 {
            return;
        }
        if ok {
            self.failures.store(0, Ordering::Relaxed);
            if pass == Pass::Probe || self.state() != BreakerState::Closed {
                self.state.store(0, Ordering::Release);
                self.probing.store(false, Ordering::Release);
            }
            return;
        }
        let n = self
            .failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        let reopen = pass == Pass::Probe;
        let trip = n >= policy.failures && self.state() == BreakerState::Closed;
        if reopen || trip {
            self.opened_ms.store(now_ms, Ordering::Release);
            if self.state.swap(1, Ordering::AcqRel) != 1 {
                self.opened_total.fetch_add(1, Ordering::Relaxed);
            }
            self.probing.store(false, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn breaker_opens_probes_and_closes() {
        let p = BreakerPolicy {
            failures: 3,
            open: Duration::from_millis(100),
        };
        let b = Breaker::default();
        for t in 0..2 {
            assert_eq!(b.allow(&p, t), Some(Pass::Call));
            b.record(&p, Pass::Call, false, t);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        b.record(&p, Pass::Call, false, 10);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.allow(&p, 50), None, "open: refused at once");
        assert_eq!(
            b.allow(&p, 110),
            Some(Pass::Probe),
            "one probe after open_ms"
        );
        assert_eq!(b.allow(&p, 111), None, "only one probe");
        b.record(&p, Pass::Probe, false, 120);
        assert_eq!(b.state(), BreakerState::Open, "failed probe reopens");
        assert_eq!(b.allow(&p, 150), None);
        assert_eq!(b.allow(&p, 221), Some(Pass::Probe));
        b.record(&p, Pass::Probe, true, 230);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.allow(&p, 231), Some(Pass::Call));
        assert_eq!(b.opened_total(), 2);
        // A success resets the count: failures must be consecutive.
        b.record(&p, Pass::Call, false, 300);
        b.record(&p, Pass::Call, false, 301);
        b.record(&p, Pass::Call, true, 302);
        b.record(&p, Pass::Call, false, 303);
        assert_eq!(b.state(), BreakerState::Closed);
        let off = BreakerPolicy { failures: 0, ..p };
        for t in 0..10 {
            b.record(&off, Pass::Call, false, t);
        }
        assert_eq!(b.allow(&off, 11), Some(Pass::Call));
    }

    #[test]
    fn budget_caps_retries_to_a_share_of_calls() {
        let b = RetryBudget::default();
        let mut granted = 0;
        for _ in 0..1000 {
            b.deposit(20);
            if b.withdraw() {
                granted += 1;
            }
        }
        // 3 at the start + 20% of 1000 calls.
        assert_eq!(granted, 203);
        assert!(!b.withdraw());
    }

    proptest! {
        #[test]
        fn backoff_stays_within_its_ceiling(
            base_ms in 0u64..1000,
            cap_ms in 0u64..10_000,
            attempt in 0u32..100,
            r in any::<u64>(),
        ) {
            let p = RetryPolicy {
                base: Duration::from_millis(base_ms),
                cap: Duration::from_millis(cap_ms),
                ..Default::default()
            };
            let d = backoff(&p, attempt, r);
            let exp = attempt.saturating_sub(1).min(30);
            let ceiling = Duration::from_millis(base_ms).saturating_mul(1 << exp).min(p.cap);
            prop_assert!(d <= ceiling);
        }

        #[test]
        fn budget_never_grants_more_than_its_share(
            percent in 0u32..=100,
            calls in 0usize..2000,
            tries_per_call in 0usize..4,
        ) {
            let b = RetryBudget::default();
            let mut granted = 0usize;
            for _ in 0..calls {
                b.deposit(percent);
                for _ in 0..tries_per_call {
                    granted += usize::from(b.withdraw());
                }
            }
            prop_assert!(granted <= 3 + calls * percent as usize / 100);
        }

        #[test]
        fn breaker_admits_one_probe_at_a_time(
            events in proptest::collection::vec((any::<bool>(), 0u64..50), 1..200),
        ) {
            let p = BreakerPolicy { failures: 2, open: Duration::from_millis(20) };
            let b = Breaker::default();
            let mut now = 0;
            for (ok, dt) in events {
                now += dt;
                match b.allow(&p, now) {
                    Some(Pass::Probe) => {
                        // Half the probes stay out a while: another call meanwhile is refused.
                        if dt % 2 == 0 {
                            prop_assert_eq!(b.allow(&p, now), None, "two probes at once");
                        }
                        b.record(&p, Pass::Probe, ok, now);
                    }
                    Some(Pass::Call) => {
                        prop_assert_ne!(b.state(), BreakerState::Open);
                        b.record(&p, Pass::Call, ok, now);
                    }
                    None => prop_assert_ne!(b.state(), BreakerState::Closed),
                }
            }
        }
    }
}
