//! What a load run records: latency histograms (HDR, microseconds, 3 significant digits),
//! answers by operation, errors by kind, bytes and late sends.
//!
//! Each load thread owns one [`Recorder`]; the main thread merges them when the threads end,
//! so recording never crosses cores. This module only counts and summarizes; printing and
//! files are `report`'s.

use std::{collections::BTreeMap, fmt};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::mcp::{BadAnswer, Op};

/// Largest latency a histogram tracks, µs (60 s); larger values are clamped to it.
pub const MAX_LATENCY_US: u64 = 60_000_000;
/// Significant decimal digits kept by the histograms.
pub const SIGNIFICANT_DIGITS: u8 = 3;
/// A send this much after its intended time counts as late, µs.
pub const LATE_THRESHOLD_US: u64 = 100;

/// Where in a connection's life an error happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// While connecting and initializing the session (`initialize`, `notifications/initialized`).
    Setup,
    /// During the warm-up (counted, though nothing else of the warm-up is).
    Warmup,
    /// During the measured window.
    Request,
}

/// The kind of a failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorKind {
    /// The answer was a JSON-RPC error with this code.
    Rpc(i64),
    /// A `tools/call` result flagged `isError`.
    ToolError,
    /// HTTP status other than the expected one.
    Http(u16),
    /// No complete answer within the request timeout.
    Timeout,
    /// The TCP connection could not be made.
    Connect,
    /// The server closed the connection before answering.
    Closed,
    /// Any other socket error.
    Io,
    /// Bytes that are not the expected HTTP (bad head, bad chunk, unsupported framing).
    Http1,
    /// An answer that is not a JSON-RPC response for the request.
    Answer(BadAnswer),
    /// A body with a media type other than JSON or event stream.
    ContentType,
    /// `initialize` answered without a usable result.
    NoSession,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Rpc(code) => write!(f, "json-rpc error {code}"),
            ErrorKind::ToolError => f.write_str("tool result isError"),
            ErrorKind::Http(status) => write!(f, "http status {status}"),
            ErrorKind::Timeout => f.write_str("timeout"),
            ErrorKind::Connect => f.write_str("connect failed"),
            ErrorKind::Closed => f.write_str("connection closed by server"),
            ErrorKind::Io => f.write_str("socket error"),
            ErrorKind::Http1 => f.write_str("protocol: malformed HTTP"),
            ErrorKind::Answer(bad) => write!(f, "protocol: {bad}"),
            ErrorKind::ContentType => f.write_str("protocol: unexpected content type"),
            ErrorKind::NoSession => f.write_str("protocol: initialize failed"),
        }
    }
}

/// An error kind and where it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ErrorKey {
    /// Setup or request.
    pub phase: Phase,
    /// What went wrong.
    pub kind: ErrorKind,
}

impl fmt::Display for ErrorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.phase {
            Phase::Setup => write!(f, "session setup: {}", self.kind),
            Phase::Warmup => write!(f, "warm-up: {}", self.kind),
            Phase::Request => write!(f, "{}", self.kind),
        }
    }
}

// === impl Recorder ===

/// Everything one thread measured.
#[derive(Debug, Clone)]
pub struct Recorder {
    /// Latency of every ok answer, µs.
    pub all: Histogram<u64>,
    /// Latency of ok answers per operation, µs.
    pub by_op: [Histogram<u64>; 3],
    /// Ok answers per operation.
    pub ok: [u64; 3],
    /// Failed requests by kind.
    pub errors: BTreeMap<ErrorKey, u64>,
    /// Request bytes written in the measured window (heads included).
    pub bytes_sent: u64,
    /// Response bytes read in the measured window (heads included).
    pub bytes_received: u64,
    /// Open loop: sends that started more than [`LATE_THRESHOLD_US`] after their intended time.
    pub late: u64,
    /// Open loop: the largest lateness of a send, µs.
    pub max_late_us: u64,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, SIGNIFICANT_DIGITS)
        .expect("constant histogram bounds are valid")
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            all: histogram(),
            by_op: [histogram(), histogram(), histogram()],
            ok: [0; 3],
            errors: BTreeMap::new(),
            bytes_sent: 0,
            bytes_received: 0,
            late: 0,
            max_late_us: 0,
        }
    }
}

impl Recorder {
    /// Records an ok answer of `op` that took `us` microseconds (clamped to 1..=max).
    pub fn ok(&mut self, op: Op, us: u64) {
        let us = us.clamp(1, MAX_LATENCY_US);
        self.all.saturating_record(us);
        self.by_op[op.index()].saturating_record(us);
        self.ok[op.index()] += 1;
    }

    /// Counts one error.
    pub fn error(&mut self, phase: Phase, kind: ErrorKind) {
        *self.errors.entry(ErrorKey { phase, kind }).or_insert(0) += 1;
    }

    /// Records how late a send started (open loop), µs.
    pub fn lateness(&mut self, us: u64) {
        if us > LATE_THRESHOLD_US {
            self.late += 1;
        }
        self.max_late_us = self.max_late_us.max(us);
    }

    /// Ok answers of all operations.
    pub fn ok_total(&self) -> u64 {
        self.ok.iter().sum()
    }

    /// Errors of all kinds and phases.
    pub fn error_total(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Recorder) {
        // Both histograms have the same bounds, so adding cannot fail; clamp if it ever did.
        let _ = self.all.add(&other.all);
        for (h, o) in self.by_op.iter_mut().zip(&other.by_op) {
            let _ = h.add(o);
        }
        for (a, b) in self.ok.iter_mut().zip(other.ok) {
            *a += b;
        }
        for (k, v) in &other.errors {
            *self.errors.entry(*k).or_insert(0) += v;
        }
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
        self.late += other.late;
        self.max_late_us = self.max_late_us.max(other.max_late_us);
    }
}

// === summaries ===

/// The usual percentiles of a histogram, µs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    /// Values recorded.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p99_9: u64,
    /// 99.99th percentile.
    pub p99_99: u64,
    /// Largest value.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

impl Percentiles {
    /// Reads the percentiles off `h` (all zero when it is empty).
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Percentiles {
                count: 0,
                p50: 0,
                p90: 0,
                p99: 0,
                p99_9: 0,
                p99_99: 0,
                max: 0,
                mean: 0.0,
            };
        }
        Percentiles {
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p99_9: h.value_at_quantile(0.999),
            p99_99: h.value_at_quantile(0.9999),
            max: h.max(),
            mean: h.mean(),
        }
    }
}

/// One point of the percentile distribution.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    /// Percentile, 0..=100.
    pub percentile: f64,
    /// Latency at that percentile, µs.
    pub latency_us: u64,
    /// Values recorded at or below this latency.
    pub count: u64,
}

/// The percentile distribution in the classic HdrHistogram form: 5 steps per halving of the
/// remaining tail (50%, 75%, 87.5%, ... ), ending at 100% = max.
pub fn distribution(h: &Histogram<u64>) -> Vec<Point> {
    if h.is_empty() {
        return Vec::new();
    }
    h.iter_quantiles(5)
        .map(|v| Point {
            percentile: v.quantile_iterated_to() * 100.0,
            latency_us: h.highest_equivalent(v.value_iterated_to()),
            count: v.count_since_last_iteration(),
        })
        .scan(0u64, |seen, mut p| {
            *seen += p.count;
            p.count = *seen;
            Some(p)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_histograms_counts_errors_and_bytes() {
        let mut a = Recorder::default();
        let mut b = Recorder::default();
        for us in 1..=100 {
            a.ok(Op::Call, us);
        }
        for us in 101..=200 {
            b.ok(Op::List, us);
        }
        a.error(Phase::Request, ErrorKind::Timeout);
        b.error(Phase::Request, ErrorKind::Timeout);
        b.error(Phase::Setup, ErrorKind::Http(404));
        a.bytes_sent = 10;
        b.bytes_sent = 5;
        a.lateness(50);
        b.lateness(500);
        a.merge(&b);
        assert_eq!(a.all.len(), 200);
        assert_eq!(a.ok, [100, 100, 0]);
        assert_eq!(a.by_op[Op::List.index()].min(), 101);
        assert_eq!(a.error_total(), 3);
        let timeouts = ErrorKey {
            phase: Phase::Request,
            kind: ErrorKind::Timeout,
        };
        assert_eq!(a.errors.get(&timeouts), Some(&2));
        assert_eq!(a.bytes_sent, 15);
        assert_eq!((a.late, a.max_late_us), (1, 500));
    }

    #[test]
    fn percentiles_of_a_uniform_distribution() {
        let mut r = Recorder::default();
        for us in 1..=10_000 {
            r.ok(Op::Call, us);
        }
        let p = Percentiles::of(&r.all);
        assert_eq!(p.count, 10_000);
        // 3 significant digits: values are exact to within 0.1%.
        let close = |got: u64, want: u64| got.abs_diff(want) * 1000 <= want;
        assert!(close(p.p50, 5_000), "{p:?}");
        assert!(close(p.p90, 9_000), "{p:?}");
        assert!(close(p.p99, 9_900), "{p:?}");
        assert!(close(p.p99_9, 9_990), "{p:?}");
        assert!(close(p.max, 10_000), "{p:?}");
        assert!((p.mean - 5_000.5).abs() < 10.0, "{p:?}");
    }

    #[test]
    fn values_are_clamped_not_dropped() {
        let mut r = Recorder::default();
        r.ok(Op::Read, 0);
        r.ok(Op::Read, u64::MAX);
        assert_eq!(r.all.len(), 2);
        assert_eq!(r.all.min(), 1);
        assert!(r.all.max() >= MAX_LATENCY_US);
    }

    #[test]
    fn distribution_is_monotonic_and_ends_at_max() {
        let mut r = Recorder::default();
        for us in 1..=1000 {
            r.ok(Op::Call, us * 3);
        }
        let d = distribution(&r.all);
        assert!(d.len() > 10);
        assert!(d.windows(2).all(|w| w[0].percentile <= w[1].percentile));
        assert!(d.windows(2).all(|w| w[0].latency_us <= w[1].latency_us));
        let last = d.last().expect("non-empty");
        assert_eq!(last.percentile, 100.0);
        assert_eq!(last.count, 1000);
        assert_eq!(last.latency_us, r.all.max());
        assert!(distribution(&Recorder::default().all).is_empty());
    }

    #[test]
    fn empty_percentiles_are_zero() {
        assert_eq!(Percentiles::of(&Recorder::default().all).count, 0);
    }
}
