//! Rate limits and quotas for the `rate_limit` phase (after `authorize`, before `route`).
//!
//! A [`Rate`] is enforced by GCRA (the generic cell rate algorithm: a token bucket with
//! burst, kept as one timestamp). Each bucket is a [`Cell`]: its whole state is one
//! `AtomicU64`, the theoretical arrival time (TAT) in nanoseconds since the gateway's clock
//! origin, updated by a compare-exchange loop. A [`Limiter`] keeps the cells of many keys in a
//! `DashMap` that every worker shares (ARCHITECTURE.md, invariant 1). A [`Quota`] counts
//! calls against a limit per UTC calendar day or month, in one `AtomicU64` as well.
//!
//! This module never reads a clock, blocks, or allocates on a hit: callers pass `now_ns`
//! (from `quanta`, relative to a fixed origin that all workers share) or the unix time, and
//! turn a refusal into the client's error with its `Retry-After`.

use std::{
    fmt,
    hash::Hash,
    str::FromStr,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use dashmap::DashMap;

#[cfg(test)]
mod tests;

const NS_PER_SEC: u64 = 1_000_000_000;
const SECS_PER_DAY: u64 = 86_400;

/// Units that [`Rate`]'s `Display` writes, largest first (`Rate::parse` also takes aliases).
const UNITS: [(&str, u64); 6] = [
    ("day", SECS_PER_DAY * NS_PER_SEC),
    ("h", 3_600 * NS_PER_SEC),
    ("min", 60 * NS_PER_SEC),
    ("s", NS_PER_SEC),
    ("ms", 1_000_000),
    ("ns", 1),
];

// === impl Rate ===

/// A rate: `count` events per `per`, with bursts of up to `burst` at once (burst >= 1).
///
/// Enforced exactly: after a full burst, one event per `per / count` (rounded **up** to the
/// nanosecond, so the limiter never lets more through than the rate). `count == 0` refuses
/// everything; `per == 0` means no limit; `burst == 0` is taken as 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Events per `per`.
    pub count: u32,
    /// The period `count` applies to.
    pub per: Duration,
    /// Events allowed at once after an idle period (the bucket's size).
    pub burst: u32,
}

impl Rate {
    /// Parses `COUNT/UNIT`, optionally followed by `burst N`: `"10/s"`, `"600/min"`,
    /// `"5000/h"`, `"100000/day"`, `"10/s burst 20"`.
    ///
    /// Units: `ns`, `ms`, `s` (`sec`, `second`), `min` (`minute`), `h` (`hour`), `day` (`d`),
    /// optionally with a multiplier (`"100/15min"`). Without `burst`, the burst is `count`:
    /// a client may spend a whole period's allowance at once. Errors quote the input and name
    /// the part that is wrong.
    pub fn parse(s: &str) -> Result<Rate, String> {
        let text = s.trim();
        let (rate, burst) = match text.split_once("burst") {
            Some((rate, burst)) => (rate.trim(), Some(burst.trim().trim_start_matches('='))),
            None => (text, None),
        };
        let Some((count, unit)) = rate.split_once('/') else {
            return Err(format!(
                "rate {s:?}: expected COUNT/UNIT, such as 10/s or 600/min"
            ));
        };
        let count = count.trim();
        let count: u32 = count.parse().map_err(|_| {
            format!(
                "rate {s:?}: count {count:?} is not a whole number from 1 to {}",
                u32::MAX
            )
        })?;
        if count == 0 {
            return Err(format!("rate {s:?}: count must be at least 1"));
        }
        let unit = unit.trim();
        let digits = unit.len() - unit.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let (times, name) = unit.split_at(digits);
        let times: u64 = if times.is_empty() {
            1
        } else {
            times
                .parse()
                .map_err(|_| format!("rate {s:?}: period {unit:?} is too long"))?
        };
        if times == 0 {
            return Err(format!("rate {s:?}: period {unit:?} must not be zero"));
        }
        let name = name.trim();
        let unit_ns = match name {
            "ns" => 1,
            "ms" => 1_000_000,
            "s" | "sec" | "second" => NS_PER_SEC,
            "min" | "minute" => 60 * NS_PER_SEC,
            "h" | "hour" => 3_600 * NS_PER_SEC,
            "d" | "day" => SECS_PER_DAY * NS_PER_SEC,
            _ => {
                return Err(format!(
                    "rate {s:?}: unknown unit {name:?} (expected ns, ms, s, min, h or day)"
                ))
            }
        };
        let per_ns = times
            .checked_mul(unit_ns)
            .ok_or_else(|| format!("rate {s:?}: period {unit:?} is too long"))?;
        let burst = match burst {
            None => count,
            Some(b) => {
                let b = b.trim();
                match b.parse::<u32>() {
                    Ok(0) => return Err(format!("rate {s:?}: burst must be at least 1")),
                    Ok(b) => b,
                    Err(_) => {
                        return Err(format!(
                            "rate {s:?}: burst {b:?} is not a whole number from 1 to {}",
                            u32::MAX
                        ))
                    }
                }
            }
        };
        Ok(Rate {
            count,
            per: Duration::from_nanos(per_ns),
            burst,
        })
    }

    /// Nanoseconds between two events at the steady rate (the GCRA emission interval):
    /// `per / count` rounded up (saturating at `u64::MAX`); `u64::MAX` when `count` is 0, 0
    /// when `per` is zero.
    pub fn interval_ns(&self) -> u64 {
        if self.count == 0 {
            return u64::MAX;
        }
        let per = u64::try_from(self.per.as_nanos()).unwrap_or(u64::MAX);
        per.div_ceil(u64::from(self.count))
    }
}

/// Writes the form [`Rate::parse`] reads back: `10/s`, `100/15min`, `10/s burst 20` (the
/// burst only when it differs from the count).
impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let per = u64::try_from(self.per.as_nanos()).unwrap_or(u64::MAX);
        let (name, unit_ns) = UNITS
            .iter()
            .copied()
            .find(|&(_, ns)| per != 0 && per % ns == 0)
            .unwrap_or(("ns", 1));
        write!(f, "{}/", self.count)?;
        if per / unit_ns != 1 {
            write!(f, "{}", per / unit_ns)?;
        }
        f.write_str(name)?;
        if self.burst != self.count {
            write!(f, " burst {}", self.burst)?;
        }
        Ok(())
    }
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Rate, String> {
        Rate::parse(s)
    }
}

// === impl Cell ===

/// One GCRA bucket: the theoretical arrival time (TAT), in nanoseconds since the clock
/// origin, in one atomic. A new cell (TAT 0) is full.
///
/// The rate is not stored: each check passes it, so a reloaded rate applies at once.
#[derive(Debug, Default)]
pub struct Cell {
    tat: AtomicU64,
}

impl Cell {
    /// A full bucket.
    pub fn new() -> Cell {
        Cell {
            tat: AtomicU64::new(0),
        }
    }

    /// Takes `n` tokens at `now_ns` if that conforms to `rate`; otherwise takes nothing and
    /// returns how long until it would conform (the `Retry-After`): retrying `n` at
    /// `now_ns + wait` succeeds unless others took tokens in between.
    ///
    /// - `n > burst` can never conform: the answer is always `Err`, with the time until the
    ///   bucket is full again (**zero if it already is**), so the caller must treat it as a
    ///   permanent refusal, not a retry hint.
    /// - `n == 0` takes nothing: `Ok` unless the bucket is over-full (a clock stepped back).
    /// - `count == 0` refuses every take with a wait of `u64::MAX` ns, which means never.
    /// - Never panics and never overflows: the arithmetic is done in `u128`, waits saturate
    ///   at `u64::MAX` ns, and a take that would push the TAT past `u64::MAX` ns (584 years
    ///   after the origin) is refused rather than stored clamped, so the limit holds there too.
    /// - Lock-free: one load and, when allowed, one compare-exchange (retried on contention).
    pub fn check(&self, rate: &Rate, now_ns: u64, n: u32) -> Result<(), Duration> {
        let interval = u128::from(rate.interval_ns());
        let burst = rate.burst.max(1);
        let now = u128::from(now_ns);
        // Ordering: the decision depends on this one atomic only, and a successful
        // compare-exchange replaces exactly the value it read, so two takers can never both
        // spend the same tokens; no other memory is published through it.
        let mut tat = self.tat.load(Ordering::Relaxed);
        if n > burst {
            return Err(Duration::from_nanos(tat.saturating_sub(now_ns)));
        }
        if rate.count == 0 && n > 0 {
            return Err(NEVER);
        }
        // The latest TAT that still conforms: one full bucket ahead of now, and storable.
        let limit = (now + u128::from(burst) * interval).min(u128::from(u64::MAX));
        let cost = u128::from(n) * interval;
        loop {
            let next = u128::from(tat).max(now) + cost;
            if next > limit {
                return Err(nanos(next - limit));
            }
            if n == 0 {
                return Ok(());
            }
            match self.tat.compare_exchange_weak(
                tat,
                // next <= limit <= u64::MAX
                next as u64,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => tat = actual,
            }
        }
    }

    /// Whether the bucket is full at `now_ns`, so that dropping it (and later starting a
    /// new one) changes nothing. Independent of the rate: the TAT is absolute.
    pub fn is_full(&self, now_ns: u64) -> bool {
        self.tat.load(Ordering::Relaxed) <= now_ns
    }
}

/// The wait for a take that can never succeed.
const NEVER: Duration = Duration::from_nanos(u64::MAX);

/// A `Duration` of `ns` nanoseconds, saturating at `u64::MAX` ns.
fn nanos(ns: u128) -> Duration {
    Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
}

// === impl Limiter ===

/// GCRA buckets by key (a principal, a session, a tool), shared by all workers.
///
/// A hit costs a `DashMap` shard read lock plus [`Cell::check`]; the first request of a key
/// inserts its cell under the shard's write lock. Keys are never dropped on the request path:
/// the control plane calls [`Limiter::sweep`] now and then, which bounds the map to the keys
/// active within about one burst's refill time.
#[derive(Debug)]
pub struct Limiter<K: Hash + Eq + Clone> {
    cells: DashMap<K, Cell>,
}

impl<K: Hash + Eq + Clone> Default for Limiter<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    /// No buckets.
    pub fn new() -> Self {
        Limiter {
            cells: DashMap::new(),
        }
    }

    /// Takes one token from `key`'s bucket at `now_ns` (see [`Cell::check`]); a key seen for
    /// the first time starts with a full bucket.
    pub fn check(&self, key: &K, rate: &Rate, now_ns: u64) -> Result<(), Duration> {
        if let Some(cell) = self.cells.get(key) {
            return cell.check(rate, now_ns, 1);
        }
        self.cells
            .entry(key.clone())
            .or_default()
            .check(rate, now_ns, 1)
    }

    /// Forgets buckets idle long enough to be full again, and those whose key has no rate any
    /// more (`rate_of` returns `None`); returns how many were dropped.
    ///
    /// Fullness needs no rate (the TAT is absolute), so `rate_of` is only asked about buckets
    /// that are not full. Each shard is write-locked in turn: a control-plane call, not for
    /// the request path. Dropping a full bucket loses nothing: a new one starts full.
    pub fn sweep(&self, now_ns: u64, rate_of: impl Fn(&K) -> Option<Rate>) -> usize {
        let mut dropped = 0;
        self.cells.retain(|key, cell| {
            let keep = !cell.is_full(now_ns) && rate_of(key).is_some();
            dropped += usize::from(!keep);
            keep
        });
        dropped
    }

    /// How many buckets are kept (locks each shard in turn).
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// Whether no bucket is kept.
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }
}

// === impl Window ===

/// A UTC calendar window for a [`Quota`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    /// A UTC day; its id is the number of days since 1970-01-01.
    Day,
    /// A UTC calendar month; its id is `year * 12 + month - 1` (month 1..=12), so that
    /// `id / 12` is the year and `id % 12 + 1` the month.
    Month,
}

impl Window {
    /// The id of the window holding `unix_secs`.
    pub fn id(self, unix_secs: u64) -> u64 {
        let days = unix_secs / SECS_PER_DAY;
        match self {
            Window::Day => days,
            Window::Month => {
                let (year, month, _) = civil_from_days(days);
                year * 12 + u64::from(month) - 1
            }
        }
    }

    /// The unix second at which window `id` ends and the next one begins (saturating at
    /// `u64::MAX`).
    pub fn end(self, id: u64) -> u64 {
        match self {
            Window::Day => id.saturating_add(1).saturating_mul(SECS_PER_DAY),
            Window::Month => {
                let (year, month0) = (id / 12, id % 12);
                let (year, month) = if month0 == 11 {
                    (year + 1, 1)
                } else {
                    // month0 < 11, so the month 1..=12 fits.
                    (year, month0 as u32 + 2)
                };
                days_from_civil(year, month, 1).saturating_mul(SECS_PER_DAY)
            }
        }
    }
}

/// The largest quota limit (and count) a [`Quota`] holds.
pub const QUOTA_MAX: u64 = USED_MAX;

/// `unix_secs` as an RFC 3339 UTC time, `2026-11-26T00:00:00Z`.
pub fn utc_rfc3339(unix_secs: u64) -> String {
    let (year, month, day) = civil_from_days(unix_secs / SECS_PER_DAY);
    let s = unix_secs % SECS_PER_DAY;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// The proleptic Gregorian (year, month 1..=12, day 1..=31) of `days` since 1970-01-01
/// (H. Hinnant's `civil_from_days`, for days >= 0).
fn civil_from_days(days: u64) -> (u64, u32, u32) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365], from March 1
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`);
/// 0 before 1970, `u64::MAX` past what unix seconds in a `u64` can reach.
fn days_from_civil(year: u64, month: u32, day: u32) -> u64 {
    if year > 600_000_000_000 {
        return u64::MAX;
    }
    let y = year.saturating_sub(u64::from(month <= 2));
    let era = y / 400;
    let yoe = y - era * 400; // [0, 399]
    let m = u64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 }; // March = 0
    let doy = (153 * mp + 2) / 5 + u64::from(day) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    (era * 146_097 + doe).saturating_sub(719_468)
}

// === impl Quota ===

/// Bits of the quota state that hold the count; the window id has the 24 above them.
const USED_BITS: u32 = 40;
/// The largest count (and so limit) a quota holds: 2^40 - 1, about 1.1e12 per window.
const USED_MAX: u64 = (1 << USED_BITS) - 1;
/// The largest window id a quota holds: 2^24 - 1 (days: year 47,900; months: far beyond).
const WINDOW_MAX: u64 = (1 << (64 - USED_BITS)) - 1;

/// A counting quota over a UTC calendar window: at most `limit` takes per window, the count
/// starting again at 0 when the window changes.
///
/// The window id and the count share one `AtomicU64` (24 + 40 bits), updated by
/// compare-exchange, so a take and a reset never race. Limits and counts above 2^40 - 1 are
/// clamped to it. The window never moves back: if the clock steps back into an earlier
/// window, takes still count against the later one.
#[derive(Debug)]
pub struct Quota {
    limit: u64,
    window: Window,
    state: AtomicU64,
}

impl Quota {
    /// A quota of `limit` per `window`, nothing used.
    pub fn new(limit: u64, window: Window) -> Quota {
        Quota {
            limit: limit.min(USED_MAX),
            window,
            state: AtomicU64::new(0),
        }
    }

    /// Takes one at `now_unix_secs`: `Ok(remaining)` after this take, or `Err(secs)` until
    /// the window resets (at least 1) when the limit is reached.
    pub fn take(&self, now_unix_secs: u64) -> Result<u64, u64> {
        let current = self.window.id(now_unix_secs).min(WINDOW_MAX);
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            let (id, used) = unpack(state);
            let (id, used) = if current > id {
                (current, 0)
            } else {
                (id, used)
            };
            if used >= self.limit {
                return Err(self.window.end(id).saturating_sub(now_unix_secs).max(1));
            }
            // Ordering: as in `Cell::check`, one atomic carries the whole decision.
            match self.state.compare_exchange_weak(
                state,
                pack(id, used + 1),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(self.limit - used - 1),
                Err(actual) => state = actual,
            }
        }
    }

    /// How many were taken in the window holding `now_unix_secs` (0 once it has passed).
    pub fn used(&self, now_unix_secs: u64) -> u64 {
        let current = self.window.id(now_unix_secs).min(WINDOW_MAX);
        let (id, used) = unpack(self.state.load(Ordering::Relaxed));
        if current > id {
            0
        } else {
            used
        }
    }

    /// The most takes per window.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The calendar window it counts in.
    pub fn window(&self) -> Window {
        self.window
    }

    /// Sets the state read from the store at start (ids and counts clamped as above).
    pub fn restore(&self, window_id: u64, used: u64) {
        self.state.store(pack(window_id, used), Ordering::Relaxed);
    }

    /// The state to write to the store: (window id, used in that window).
    pub fn snapshot(&self) -> (u64, u64) {
        unpack(self.state.load(Ordering::Relaxed))
    }
}

fn pack(window_id: u64, used: u64) -> u64 {
    (window_id.min(WINDOW_MAX) << USED_BITS) | used.min(USED_MAX)
}

fn unpack(state: u64) -> (u64, u64) {
    (state >> USED_BITS, state & USED_MAX)
}
