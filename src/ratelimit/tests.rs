use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Barrier,
    },
    time::Duration,
};

use proptest::prelude::*;

use super::*;

const SEC: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;

fn rate(count: u32, per: Duration, burst: u32) -> Rate {
    Rate { count, per, burst }
}

/// A copy of `cell`'s state, to try a request without spending it.
fn fork(cell: &Cell) -> Cell {
    Cell {
        tat: AtomicU64::new(cell.tat.load(Ordering::Relaxed)),
    }
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).expect("wait fits u64 ns")
}

// === Rate::parse ===

#[test]
fn parse_units_and_default_burst() {
    let cases = [
        ("10/s", rate(10, Duration::from_secs(1), 10)),
        ("600/min", rate(600, Duration::from_secs(60), 600)),
        ("5000/h", rate(5000, Duration::from_secs(3_600), 5000)),
        (
            "100000/day",
            rate(100_000, Duration::from_secs(86_400), 100_000),
        ),
        ("10/s burst 20", rate(10, Duration::from_secs(1), 20)),
        (" 3 / 15min  burst=1 ", rate(3, Duration::from_secs(900), 1)),
        ("1/second", rate(1, Duration::from_secs(1), 1)),
        ("2/hour", rate(2, Duration::from_secs(3_600), 2)),
        ("7/d", rate(7, Duration::from_secs(86_400), 7)),
        ("5/100ms", rate(5, Duration::from_millis(100), 5)),
    ];
    for (s, want) in cases {
        assert_eq!(Rate::parse(s), Ok(want), "{s:?}");
        assert_eq!(s.parse::<Rate>(), Ok(want), "{s:?}");
    }
}

#[test]
fn parse_errors_name_the_problem() {
    let cases = [
        ("", "COUNT/UNIT"),
        ("10", "COUNT/UNIT"),
        ("x/s", "count \"x\""),
        ("-1/s", "count \"-1\""),
        ("99999999999/s", "count"),
        ("0/s", "count must be at least 1"),
        ("10/fortnight", "unknown unit \"fortnight\""),
        ("10/", "unknown unit \"\""),
        ("10/0s", "must not be zero"),
        ("10/99999999999day", "too long"),
        ("10/s burst 0", "burst must be at least 1"),
        ("10/s burst x", "burst \"x\""),
        ("10/s burst", "burst \"\""),
    ];
    for (s, needle) in cases {
        let err = Rate::parse(s).expect_err(s);
        assert!(err.contains(needle), "{s:?}: {err}");
        assert!(err.contains(&format!("{s:?}")), "{s:?}: {err}");
    }
}

#[test]
fn utc_times_and_quota_accessors() {
    assert_eq!(utc_rfc3339(0), "1970-01-01T00:00:00Z");
    // 2024-02-29 (a leap day) 23:59:59 and the second after it.
    assert_eq!(utc_rfc3339(1_709_251_199), "2024-02-29T23:59:59Z");
    assert_eq!(utc_rfc3339(1_709_251_200), "2024-03-01T00:00:00Z");
    let q = Quota::new(QUOTA_MAX + 5, Window::Month);
    assert_eq!((q.limit(), q.window()), (QUOTA_MAX, Window::Month));
}

#[test]
fn display_forms() {
    assert_eq!(rate(10, Duration::from_secs(1), 10).to_string(), "10/s");
    assert_eq!(
        rate(10, Duration::from_secs(1), 20).to_string(),
        "10/s burst 20"
    );
    assert_eq!(rate(3, Duration::from_secs(900), 3).to_string(), "3/15min");
    assert_eq!(
        rate(1, Duration::from_secs(172_800), 1).to_string(),
        "1/2day"
    );
    assert_eq!(
        rate(1, Duration::from_nanos(1_500), 1).to_string(),
        "1/1500ns"
    );
}

// === Cell ===

#[test]
fn burst_at_once_then_one_per_interval() {
    let r = rate(10, Duration::from_secs(1), 5); // one per 100 ms, 5 at once
    let cell = Cell::new();
    let t0 = 1_000 * SEC;
    for _ in 0..5 {
        assert_eq!(cell.check(&r, t0, 1), Ok(()));
    }
    assert_eq!(cell.check(&r, t0, 1), Err(Duration::from_millis(100)));
    for k in 1..=20 {
        let t = t0 + k * 100 * MS;
        assert_eq!(
            cell.check(&r, t - 1, 1),
            Err(Duration::from_nanos(1)),
            "k={k}"
        );
        assert_eq!(cell.check(&r, t, 1), Ok(()), "k={k}");
        assert_eq!(
            cell.check(&r, t, 1),
            Err(Duration::from_millis(100)),
            "k={k}"
        );
    }
}

#[test]
fn retry_after_is_time_to_next_conforming_instant() {
    let r = rate(4, Duration::from_secs(1), 2); // 250 ms interval
    let cell = Cell::new();
    let t0 = 5 * SEC;
    assert_eq!(cell.check(&r, t0, 2), Ok(()));
    let wait = cell.check(&r, t0 + 30 * MS, 1).expect_err("bucket empty");
    assert_eq!(wait, Duration::from_millis(220));
    assert!(fork(&cell).check(&r, t0 + 250 * MS - 1, 1).is_err());
    assert_eq!(cell.check(&r, t0 + 250 * MS, 1), Ok(()));
    // Two tokens need two intervals from the last grant.
    assert_eq!(
        cell.check(&r, t0 + 250 * MS, 2),
        Err(Duration::from_millis(500))
    );
}

#[test]
fn idle_restores_burst_but_not_more() {
    let r = rate(10, Duration::from_secs(1), 3);
    let cell = Cell::new();
    let t0 = 42 * SEC;
    for _ in 0..3 {
        assert_eq!(cell.check(&r, t0, 1), Ok(()));
    }
    assert!(cell.check(&r, t0, 1).is_err());
    assert!(!cell.is_full(t0 + 299 * MS));
    // An hour idle: exactly the burst again.
    let t1 = t0 + 3_600 * SEC;
    assert!(cell.is_full(t1));
    for _ in 0..3 {
        assert_eq!(cell.check(&r, t1, 1), Ok(()));
    }
    assert_eq!(cell.check(&r, t1, 1), Err(Duration::from_millis(100)));
}

#[test]
fn n_tokens_cost_n_intervals() {
    let r = rate(10, Duration::from_secs(1), 10);
    let cell = Cell::new();
    assert_eq!(cell.check(&r, SEC, 7), Ok(()));
    assert_eq!(cell.check(&r, SEC, 4), Err(Duration::from_millis(100)));
    assert_eq!(cell.check(&r, SEC, 3), Ok(()));
    assert_eq!(cell.check(&r, SEC, 1), Err(Duration::from_millis(100)));
    assert_eq!(cell.check(&r, SEC + 500 * MS, 5), Ok(()));
}

#[test]
fn more_than_burst_is_refused_with_time_until_full() {
    let r = rate(10, Duration::from_secs(1), 5);
    let cell = Cell::new();
    assert_eq!(cell.check(&r, SEC, 6), Err(Duration::ZERO));
    assert_eq!(cell.check(&r, SEC, 2), Ok(()));
    assert_eq!(cell.check(&r, SEC, 6), Err(Duration::from_millis(200)));
    assert_eq!(cell.check(&r, 10 * SEC, u32::MAX), Err(Duration::ZERO));
    // Refusals take nothing.
    assert_eq!(cell.check(&r, SEC, 3), Ok(()));
}

#[test]
fn zero_tokens_take_nothing() {
    let r = rate(1, Duration::from_secs(1), 1);
    let cell = Cell::new();
    assert_eq!(cell.check(&r, SEC, 0), Ok(()));
    assert_eq!(cell.check(&r, SEC, 1), Ok(()));
    assert_eq!(cell.check(&r, SEC, 0), Ok(()));
    assert_eq!(cell.check(&r, SEC, 1), Err(Duration::from_secs(1)));
}

#[test]
fn interval_rounds_up() {
    assert_eq!(
        rate(3, Duration::from_secs(1), 1).interval_ns(),
        333_333_334
    );
    assert_eq!(rate(0, Duration::from_secs(1), 1).interval_ns(), u64::MAX);
    assert_eq!(rate(5, Duration::ZERO, 1).interval_ns(), 0);
    assert_eq!(rate(1, Duration::MAX, 1).interval_ns(), u64::MAX);
}

#[test]
fn extreme_times_and_rates_do_not_overflow() {
    let rates = [
        rate(10, Duration::from_secs(1), 5),
        rate(1, Duration::MAX, u32::MAX),
        rate(0, Duration::from_secs(1), 1),
        rate(u32::MAX, Duration::from_nanos(1), u32::MAX),
        rate(5, Duration::ZERO, 0),
        rate(1, Duration::from_secs(86_400), 0),
    ];
    for r in rates {
        for now in [0, 1, u64::MAX / 2, u64::MAX - 1, u64::MAX] {
            let cell = Cell::new();
            for n in [0, 1, 2, u32::MAX] {
                let _ = cell.check(&r, now, n);
                let _ = cell.check(&r, 0, n);
                let _ = cell.check(&r, u64::MAX, n);
            }
        }
    }
    // At now = 0 a new cell is full, burst 0 counts as 1.
    let r = rate(1, Duration::from_secs(1), 0);
    let cell = Cell::new();
    assert_eq!(cell.check(&r, 0, 1), Ok(()));
    assert_eq!(cell.check(&r, 0, 1), Err(Duration::from_secs(1)));
    // The TAT never passes u64::MAX: a take that would push it there is refused.
    let r = rate(1, Duration::from_secs(1), 2);
    let cell = Cell::new();
    assert_eq!(cell.check(&r, u64::MAX - 2 * SEC, 2), Ok(()));
    assert_eq!(cell.tat.load(Ordering::Relaxed), u64::MAX);
    assert!(cell.check(&r, u64::MAX - 2 * SEC, 1).is_err());
    assert!(cell.check(&r, u64::MAX, 1).is_err());
    let cell = Cell::new();
    assert!(cell.check(&r, u64::MAX - 10, 1).is_err());
    assert_eq!(cell.tat.load(Ordering::Relaxed), 0);
    // count 0 refuses everything, with a wait that means never.
    let r = rate(0, Duration::from_secs(1), 2);
    let cell = Cell::new();
    assert_eq!(cell.check(&r, 7, 1), Err(Duration::from_nanos(u64::MAX)));
    assert_eq!(cell.check(&r, 7, 0), Ok(()));
    // No limit at all.
    let r = rate(5, Duration::ZERO, 1);
    let cell = Cell::new();
    for _ in 0..1000 {
        assert_eq!(cell.check(&r, 3, 1), Ok(()));
    }
}

#[test]
fn clock_stepping_back_never_grants_extra() {
    let r = rate(10, Duration::from_secs(1), 2);
    let cell = Cell::new();
    assert_eq!(cell.check(&r, 10 * SEC, 2), Ok(()));
    assert!(cell.check(&r, 9 * SEC, 1).is_err());
    assert!(cell.check(&r, 0, 1).is_err());
}

#[test]
fn four_threads_on_one_cell_get_exactly_the_burst() {
    let r = rate(1, Duration::from_secs(1), 1_000);
    let cell = Cell::new();
    let start = Barrier::new(4);
    let granted = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                start.wait();
                let mut mine = 0;
                for _ in 0..20_000 {
                    mine += u64::from(cell.check(&r, 77 * SEC, 1).is_ok());
                }
                granted.fetch_add(mine, Ordering::Relaxed);
            });
        }
    });
    assert_eq!(granted.load(Ordering::Relaxed), 1_000);
}

// === Limiter ===

#[test]
fn limiter_keys_are_independent() {
    let r = rate(1, Duration::from_secs(1), 2);
    let lim: Limiter<String> = Limiter::new();
    assert!(lim.is_empty());
    for key in ["a", "b"] {
        let key = key.to_string();
        assert_eq!(lim.check(&key, &r, SEC), Ok(()));
        assert_eq!(lim.check(&key, &r, SEC), Ok(()));
        assert_eq!(lim.check(&key, &r, SEC), Err(Duration::from_secs(1)));
    }
    assert_eq!(lim.len(), 2);
}

#[test]
fn limiter_sweep_drops_full_and_unrated_buckets() {
    let r = rate(1, Duration::from_secs(1), 1);
    let lim: Limiter<u32> = Limiter::new();
    for key in 0..10 {
        assert_eq!(lim.check(&key, &r, u64::from(key) * SEC), Ok(()));
    }
    // At 5 s, keys 0..=4 are full again (their TAT is key + 1 s).
    assert_eq!(lim.sweep(5 * SEC, |_| Some(r)), 5);
    assert_eq!(lim.len(), 5);
    // Key 7 has no rate any more.
    assert_eq!(lim.sweep(5 * SEC, |k| (*k != 7).then_some(r)), 1);
    assert_eq!(lim.len(), 4);
    // A swept key starts full, as it would have been.
    assert_eq!(lim.check(&0, &r, 5 * SEC), Ok(()));
    assert_eq!(lim.sweep(u64::MAX, |_| Some(r)), 5);
    assert!(lim.is_empty());
}

// === Window and Quota ===

fn leap(year: u64) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn month_lengths(year: u64) -> [u64; 12] {
    let feb = if leap(year) { 29 } else { 28 };
    [31, feb, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
}

/// Days since 1970-01-01 of (year, month), counted the slow way.
fn naive_month_start_days(year: u64, month: u32) -> u64 {
    let years: u64 = (1970..year).map(|y| if leap(y) { 366 } else { 365 }).sum();
    years
        + month_lengths(year)[..month as usize - 1]
            .iter()
            .sum::<u64>()
}

/// The unix second at which the window holding `secs` ends, counted the slow way.
fn naive_end(window: Window, secs: u64) -> u64 {
    let days = secs / 86_400;
    if window == Window::Day {
        return (days + 1) * 86_400;
    }
    let (mut year, mut start) = (1970, 0);
    loop {
        for len in month_lengths(year) {
            start += len;
            if start > days {
                return start * 86_400;
            }
        }
        year += 1;
    }
}

#[test]
fn civil_dates_match_the_slow_count() {
    for (y, m, d, unix) in [
        (1970, 1, 1, 0),
        (2000, 3, 1, 951_868_800),
        (2027, 12, 31, 1_830_211_200),
        (2028, 1, 1, 1_830_297_600),
        (2028, 2, 29, 1_835_395_200),
        (2028, 3, 1, 1_835_481_600),
        (2100, 3, 1, 4_107_542_400),
    ] {
        assert_eq!(days_from_civil(y, m, d) * 86_400, unix, "{y}-{m}-{d}");
        assert_eq!(civil_from_days(unix / 86_400), (y, m, d), "{y}-{m}-{d}");
    }
    for days in 0..200_000 {
        let (y, m, d) = civil_from_days(days);
        assert_eq!(days_from_civil(y, m, d), days);
        if d == 1 {
            assert_eq!(naive_month_start_days(y, m), days, "{y}-{m}");
        }
    }
    // Far future: no panic, saturates.
    let _ = civil_from_days(u64::MAX / 86_400);
    assert_eq!(days_from_civil(u64::MAX, 1, 1), u64::MAX);
    assert_eq!(Window::Month.end(u64::MAX), u64::MAX);
    assert_eq!(Window::Day.end(u64::MAX), u64::MAX);
}

#[test]
fn month_window_ids() {
    let feb29_2028 = 1_835_395_200 + 12 * 3_600;
    assert_eq!(Window::Month.id(feb29_2028), 2028 * 12 + 1);
    assert_eq!(Window::Month.end(2028 * 12 + 1), 1_835_481_600);
    assert_eq!(Window::Month.id(1_830_297_600 - 1), 2027 * 12 + 11);
    assert_eq!(Window::Month.end(2027 * 12 + 11), 1_830_297_600);
    assert_eq!(Window::Day.id(1_830_297_600), 1_830_297_600 / 86_400);
}

#[test]
fn quota_day_counts_and_resets_at_midnight() {
    let q = Quota::new(3, Window::Day);
    let t = 1_830_211_200 + 23 * 3_600; // 2027-12-31 23:00 UTC
    assert_eq!(q.take(t), Ok(2));
    assert_eq!(q.take(t), Ok(1));
    assert_eq!(q.take(t), Ok(0));
    assert_eq!(q.take(t), Err(3_600));
    assert_eq!(q.used(t), 3);
    assert_eq!(q.take(1_830_297_600 - 1), Err(1));
    assert_eq!(q.used(1_830_297_600), 0);
    assert_eq!(q.take(1_830_297_600), Ok(2));
    assert_eq!(q.snapshot(), (1_830_297_600 / 86_400, 1));
}

#[test]
fn quota_month_resets_exactly_after_feb_29_2028() {
    let q = Quota::new(2, Window::Month);
    let feb29_noon = 1_835_395_200 + 12 * 3_600;
    assert_eq!(q.take(feb29_noon), Ok(1));
    assert_eq!(q.take(feb29_noon), Ok(0));
    assert_eq!(q.take(feb29_noon), Err(12 * 3_600));
    assert_eq!(q.take(1_835_481_600 - 1), Err(1));
    assert_eq!(q.take(1_835_481_600), Ok(1));
}

#[test]
fn quota_month_resets_on_new_year() {
    let q = Quota::new(1, Window::Month);
    let dec31 = 1_830_211_200; // 2027-12-31 00:00 UTC
    assert_eq!(q.take(dec31), Ok(0));
    assert_eq!(q.take(dec31), Err(86_400));
    assert_eq!(q.take(1_830_297_600), Ok(0));
    assert_eq!(q.snapshot(), (2028 * 12, 1));
}

#[test]
fn quota_restore_snapshot_and_clock_stepping_back() {
    let q = Quota::new(10, Window::Day);
    let day = 20_000;
    q.restore(day, 9);
    assert_eq!(q.snapshot(), (day, 9));
    assert_eq!(q.used(day * 86_400 + 5), 9);
    assert_eq!(q.take(day * 86_400 + 5), Ok(0));
    // A clock stepped back a day still counts against the later window.
    assert_eq!(q.take((day - 1) * 86_400), Err(2 * 86_400));
    assert_eq!(q.used((day - 1) * 86_400), 10);
    // An old snapshot is reset by the first take.
    q.restore(day - 30, 10);
    assert_eq!(q.take(day * 86_400), Ok(9));
    // Counts beyond the packed width are clamped, not wrapped.
    q.restore(day, u64::MAX);
    assert_eq!(q.snapshot(), (day, USED_MAX));
}

#[test]
fn quota_zero_limit_and_huge_limit() {
    let q = Quota::new(0, Window::Month);
    assert_eq!(q.take(0), Err(31 * 86_400));
    let q = Quota::new(u64::MAX, Window::Day);
    assert_eq!(q.take(0), Ok(USED_MAX - 1));
    let _ = q.take(u64::MAX);
    let _ = q.used(u64::MAX);
}

#[test]
fn quota_four_threads_get_exactly_the_limit() {
    let q = Quota::new(5_000, Window::Day);
    let start = Barrier::new(4);
    let granted = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                start.wait();
                let mut mine = 0;
                for _ in 0..5_000 {
                    mine += u64::from(q.take(1_000_000).is_ok());
                }
                granted.fetch_add(mine, Ordering::Relaxed);
            });
        }
    });
    assert_eq!(granted.load(Ordering::Relaxed), 5_000);
}

// === Properties ===

fn any_window() -> impl Strategy<Value = Window> {
    prop_oneof![Just(Window::Day), Just(Window::Month)]
}

proptest! {
    /// Over any sequence of requests, the tokens granted within [t, t + T] never exceed
    /// burst + count * T / per (plus 1 for rounding).
    #[test]
    fn grants_never_exceed_burst_plus_rate(
        count in 1u32..50,
        per_ms in 1u64..5_000,
        burst in 1u32..20,
        start in 0u64..(u64::MAX / 2),
        steps in prop::collection::vec(
            (prop_oneof![Just(0u64), 0u64..10_000_000, 0u64..3_000_000_000], 1u32..5),
            1..150,
        ),
    ) {
        let r = rate(count, Duration::from_millis(per_ms), burst);
        let per_ns = u128::from(per_ms * MS);
        let cell = Cell::new();
        let mut now = start;
        let mut grants = Vec::new();
        for (dt, n) in steps {
            now += dt;
            if cell.check(&r, now, n).is_ok() {
                grants.push((now, n));
            }
        }
        for i in 0..grants.len() {
            let mut tokens = 0u128;
            for &(t, n) in &grants[i..] {
                tokens += u128::from(n);
                let span = u128::from(t - grants[i].0);
                prop_assert!(
                    tokens * per_ns <= (u128::from(burst) + 1) * per_ns + u128::from(count) * span,
                    "{tokens} tokens in {span} ns at {r}"
                );
            }
        }
    }

    /// A request refused with wait w is accepted at now + w, and not a nanosecond earlier.
    #[test]
    fn refused_request_is_accepted_after_the_wait(
        count in 1u32..1_000,
        per_ms in 1u64..100_000,
        burst in 1u32..20,
        start in 0u64..(u64::MAX / 2),
        steps in prop::collection::vec((0u64..2_000_000_000, 1u32..20), 0..40),
        n in 1u32..20,
    ) {
        let r = rate(count, Duration::from_millis(per_ms), burst);
        let n = n.min(burst);
        let cell = Cell::new();
        let mut now = start;
        for (dt, k) in steps {
            now += dt;
            let _ = cell.check(&r, now, k);
        }
        if let Err(wait) = cell.check(&r, now, n) {
            let at = now + ns(wait);
            prop_assert!(wait > Duration::ZERO);
            prop_assert!(fork(&cell).check(&r, at - 1, n).is_err());
            prop_assert_eq!(cell.check(&r, at, n), Ok(()));
        }
    }

    /// A quota never grants more than its limit in one window, refuses only when the limit
    /// is reached, and its wait ends exactly at the window boundary.
    #[test]
    fn quota_never_exceeds_limit_per_window(
        limit in 0u64..6,
        window in any_window(),
        start in 0u64..(1 << 35),
        steps in prop::collection::vec((0u64..(20 * 86_400), 1usize..5), 1..60),
    ) {
        let q = Quota::new(limit, window);
        let mut granted: HashMap<u64, u64> = HashMap::new();
        let mut now = start;
        for (dt, takes) in steps {
            now += dt;
            let end = naive_end(window, now);
            for _ in 0..takes {
                let got = granted.entry(end).or_default();
                match q.take(now) {
                    Ok(remaining) => {
                        *got += 1;
                        prop_assert!(*got <= limit);
                        prop_assert_eq!(remaining, limit - *got);
                    }
                    Err(wait) => {
                        prop_assert_eq!(*got, limit);
                        prop_assert_eq!(now + wait, end);
                    }
                }
                prop_assert_eq!(q.used(now), *got);
            }
        }
    }

    /// An exhausted quota is still refused one second before the boundary and full again at it.
    #[test]
    fn quota_resets_exactly_at_the_boundary(
        limit in 1u64..4,
        window in any_window(),
        start in 0u64..(1 << 35),
    ) {
        let q = Quota::new(limit, window);
        for _ in 0..limit {
            prop_assert!(q.take(start).is_ok());
        }
        let wait = q.take(start).expect_err("exhausted");
        prop_assert_eq!(start + wait, naive_end(window, start));
        prop_assert_eq!(q.take(start + wait - 1), Err(1));
        prop_assert_eq!(q.take(start + wait), Ok(limit - 1));
    }

    /// `Display` writes what `Rate::parse` reads back.
    #[test]
    fn rate_display_round_trips(
        count in 1u32..,
        unit in prop::sample::select(UNITS.to_vec()),
        times in 1u64..1_000,
        burst in 1u32..,
    ) {
        let r = rate(count, Duration::from_nanos(unit.1 * times), burst);
        let text = r.to_string();
        prop_assert_eq!(Rate::parse(&text), Ok(r), "{}", text);
    }
}
