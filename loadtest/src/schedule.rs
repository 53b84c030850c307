//! The arithmetic of a run: how connections are split over threads, and when each request of
//! an open-loop run is meant to be sent.
//!
//! Open loop: request `g` (numbered over the whole run, all threads) is due at
//! `start + g / rate`; connection `c` of `C` sends requests `c, c + C, c + 2C, ...`. The schedule
//! never waits for answers: a request sent late is measured from its due time (the
//! coordinated-omission correction). This module only computes; it never sleeps.

use std::{ops::Range, time::Duration};

/// `parts` nearly equal consecutive ranges covering `0..total`; this is part `i`.
pub fn split(total: u64, parts: u64, i: u64) -> Range<u64> {
    let parts = parts.max(1);
    let at = |k: u64| ((u128::from(total) * u128::from(k)) / u128::from(parts)) as u64;
    at(i)..at(i + 1)
}

/// A constant-rate schedule over all connections.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    rate: f64,
    connections: u64,
}

impl Schedule {
    /// `rate` requests per second in total (must be > 0), spread over `connections` (> 0).
    pub fn new(rate: f64, connections: u64) -> Self {
        Schedule {
            rate,
            connections: connections.max(1),
        }
    }

    /// Time from the start at which request `g` is due.
    pub fn due(&self, g: u64) -> Duration {
        Duration::from_secs_f64(g as f64 / self.rate)
    }

    /// The first request due at or after `t` from the start.
    pub fn first_due_at_or_after(&self, t: Duration) -> u64 {
        let exact = t.as_secs_f64() * self.rate;
        let mut g = exact.ceil() as u64;
        // Float rounding may land one off either way; settle it on `due` itself.
        while g > 0 && self.due(g - 1) >= t {
            g -= 1;
        }
        while self.due(g) < t {
            g += 1;
        }
        g
    }

    /// The first request of connection `c`.
    pub fn first_of(&self, c: u64) -> u64 {
        c
    }

    /// The request connection-of-`g` sends after `g`.
    pub fn next_after(&self, g: u64) -> u64 {
        g + self.connections
    }

    /// Time between two sends of one connection.
    pub fn connection_interval(&self) -> Duration {
        Duration::from_secs_f64(self.connections as f64 / self.rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_covers_everything_once() {
        for total in [0u64, 1, 7, 10, 1000] {
            for parts in 1..=5u64 {
                let ranges: Vec<_> = (0..parts).map(|i| split(total, parts, i)).collect();
                assert_eq!(ranges[0].start, 0);
                assert_eq!(ranges.last().map(|r| r.end), Some(total));
                assert!(ranges.windows(2).all(|w| w[0].end == w[1].start));
                let sizes: Vec<u64> = ranges.iter().map(|r| r.end - r.start).collect();
                let (lo, hi) = (sizes.iter().min(), sizes.iter().max());
                assert!(hi.zip(lo).is_some_and(|(h, l)| h - l <= 1), "{sizes:?}");
            }
        }
    }

    #[test]
    fn due_times_follow_the_rate() {
        let s = Schedule::new(4000.0, 3);
        assert_eq!(s.due(0), Duration::ZERO);
        assert_eq!(s.due(1), Duration::from_micros(250));
        assert_eq!(s.due(4000), Duration::from_secs(1));
        assert_eq!(s.connection_interval(), Duration::from_micros(750));
    }

    #[test]
    fn connections_interleave_without_gaps_or_overlaps() {
        let s = Schedule::new(1000.0, 4);
        let mut seen = [false; 100];
        for c in 0..4 {
            let mut g = s.first_of(c);
            while g < 100 {
                assert!(!seen[g as usize], "request {g} sent twice");
                seen[g as usize] = true;
                g = s.next_after(g);
            }
        }
        assert!(seen.iter().all(|&b| b));
    }

    #[test]
    fn first_due_at_or_after_is_exact() {
        for rate in [1.0, 3.0, 1000.0, 33_333.3, 123_457.0] {
            let s = Schedule::new(rate, 2);
            for t_us in [0u64, 1, 999, 1000, 1_000_000, 2_500_001] {
                let t = Duration::from_micros(t_us);
                let g = s.first_due_at_or_after(t);
                assert!(s.due(g) >= t, "rate {rate} t {t:?} g {g}");
                assert!(g == 0 || s.due(g - 1) < t, "rate {rate} t {t:?} g {g}");
            }
        }
    }

    #[test]
    fn warmup_and_window_counts() {
        // 10k/s, 1 s warm-up, 2 s measured: requests 10_000..30_000 are measured.
        let s = Schedule::new(10_000.0, 8);
        let first = s.first_due_at_or_after(Duration::from_secs(1));
        let end = s.first_due_at_or_after(Duration::from_secs(3));
        assert_eq!((first, end), (10_000, 30_000));
    }
}
