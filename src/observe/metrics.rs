//! Per-call metrics: counts, errors by kind and latency, per tool and per upstream.
//!
//! Each worker records into its own [`WorkerMetrics`]: a map behind a lock that only that
//! worker takes on the request path (uncontended), and that the scraper takes briefly to copy
//! when `/metrics` is read; workers never share a counter, so no cache line bounces between
//! cores. Latency goes into HDR histograms (µs, 3 significant digits), merged at scrape time
//! into Prometheus histogram buckets plus p50/p90/p99/p99.9 summaries. Label values are
//! bounded: past `max_labels` distinct tools, new ones are counted as `__other__`.

use std::{collections::HashMap, fmt::Write as _, sync::Arc};

use hdrhistogram::Histogram;

/// What became of one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A result (tool errors with `isError` count as answered: the upstream answered).
    Ok,
    /// The upstream answered with a JSON-RPC error.
    UpstreamError,
    /// The upstream could not be reached or broke the call.
    Unavailable,
    /// The upstream did not answer in time.
    Timeout,
    /// The client cancelled it.
    Cancelled,
    /// Not tried: the upstream's circuit breaker was open.
    CircuitOpen,
}

impl Outcome {
    const ALL: [Outcome; 6] = [
        Outcome::Ok,
        Outcome::UpstreamError,
        Outcome::Unavailable,
        Outcome::Timeout,
        Outcome::Cancelled,
        Outcome::CircuitOpen,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::UpstreamError => "upstream_error",
            Outcome::Unavailable => "unavailable",
            Outcome::Timeout => "timeout",
            Outcome::Cancelled => "cancelled",
            Outcome::CircuitOpen => "circuit_open",
        }
    }

    fn index(self) -> usize {
        Outcome::ALL.iter().position(|o| *o == self).unwrap_or(0)
    }
}

/// Counts and latency of one (target, upstream) pair.
#[derive(Clone)]
struct Series {
    by_outcome: [u64; 6],
    latency_us: Histogram<u64>,
}

impl Series {
    fn new(template: &Histogram<u64>) -> Self {
        Self {
            by_outcome: [0; 6],
            latency_us: template.clone(),
        }
    }

    fn merge(&mut self, other: &Series) {
        for (a, b) in self.by_outcome.iter_mut().zip(other.by_outcome) {
            *a += b;
        }
        let _ = self.latency_us.add(&other.latency_us);
    }
}

/// Series by (target, upstream).
type SeriesMap = HashMap<(Arc<str>, Arc<str>), Series>;

/// Label value used once `max_labels` distinct targets were seen.
pub const OTHER: &str = "__other__";

/// One worker's metrics.
pub struct WorkerMetrics {
    inner: parking_lot::Mutex<SeriesMap>,
    max_labels: usize,
    /// An empty histogram of the right bounds, cloned for each new series.
    template: Histogram<u64>,
}

impl WorkerMetrics {
    /// Empty metrics keeping at most `max_labels` distinct targets.
    pub fn new(max_labels: usize) -> Self {
        Self {
            inner: parking_lot::Mutex::new(HashMap::new()),
            max_labels: max_labels.max(1),
            // 1 µs .. 1 hour, 3 significant digits: constant bounds, valid by construction.
            template: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .expect("valid histogram bounds"),
        }
    }

    /// Records one call to `target` (a tool name, or a method such as `resources/read`) on
    /// `upstream`.
    pub fn record(&self, target: &str, upstream: &str, outcome: Outcome, micros: u64) {
        let mut m = self.inner.lock();
        let key = if m.len() >= self.max_labels
            && !m.keys().any(|(t, u)| &**t == target && &**u == upstream)
        {
            (Arc::from(OTHER), Arc::from(upstream))
        } else {
            (Arc::from(target), Arc::from(upstream))
        };
        let s = m.entry(key).or_insert_with(|| Series::new(&self.template));
        s.by_outcome[outcome.index()] += 1;
        let _ = s.latency_us.record(micros.max(1));
    }

    fn copy(&self) -> SeriesMap {
        self.inner.lock().clone()
    }
}

/// Every worker's metrics, for the scraper.
#[derive(Default)]
pub struct Registry {
    workers: parking_lot::Mutex<Vec<Arc<WorkerMetrics>>>,
}

/// Upper bounds (µs) of the Prometheus histogram buckets.
const BUCKETS_US: [u64; 16] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 5_000_000, 30_000_000,
];

impl Registry {
    /// Metrics for a new worker.
    pub fn worker(&self, max_labels: usize) -> Arc<WorkerMetrics> {
        let w = Arc::new(WorkerMetrics::new(max_labels));
        self.workers.lock().push(w.clone());
        w
    }

    /// The merged metrics in the Prometheus text format; `extra` is appended (gauges kept
    /// elsewhere).
    pub fn prometheus(&self, extra: &str) -> String {
        let mut all = SeriesMap::new();
        for w in self.workers.lock().iter() {
            for (k, s) in w.copy() {
                match all.get_mut(&k) {
                    Some(t) => t.merge(&s),
                    None => {
                        all.insert(k, s);
                    }
                }
            }
        }
        let mut keys: Vec<_> = all.keys().cloned().collect();
        keys.sort();
        let mut out = String::new();
        let esc = |v: &str| {
            v.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n")
        };
        let _ = writeln!(
            out,
            "# HELP mcpgw_calls_total Calls routed to upstreams, by target, upstream and outcome."
        );
        let _ = writeln!(out, "# TYPE mcpgw_calls_total counter");
        for k in &keys {
            let s = &all[k];
            for o in Outcome::ALL {
                let _ = writeln!(
                    out,
                    "mcpgw_calls_total{{target=\"{}\",upstream=\"{}\",outcome=\"{}\"}} {}",
                    esc(&k.0),
                    esc(&k.1),
                    o.label(),
                    s.by_outcome[o.index()]
                );
            }
        }
        let _ = writeln!(out, "# HELP mcpgw_call_duration_seconds Time from the client's request to the gateway's answer.");
        let _ = writeln!(out, "# TYPE mcpgw_call_duration_seconds histogram");
        for k in &keys {
            let h = &all[k].latency_us;
            let labels = format!("target=\"{}\",upstream=\"{}\"", esc(&k.0), esc(&k.1));
            for b in BUCKETS_US {
                let n = h.count_between(0, b);
                let _ = writeln!(
                    out,
                    "mcpgw_call_duration_seconds_bucket{{{labels},le=\"{}\"}} {n}",
                    b as f64 / 1e6
                );
            }
            let _ = writeln!(
                out,
                "mcpgw_call_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.len()
            );
            let sum: f64 = h
                .iter_recorded()
                .map(|v| v.value_iterated_to() as f64 * v.count_at_value() as f64)
                .sum::<f64>()
                / 1e6;
            let _ = writeln!(out, "mcpgw_call_duration_seconds_sum{{{labels}}} {sum}");
            let _ = writeln!(
                out,
                "mcpgw_call_duration_seconds_count{{{labels}}} {}",
                h.len()
            );
        }
        let _ = writeln!(out, "# HELP mcpgw_call_duration_quantile_seconds Latency percentiles (HDR histogram, merged over workers).");
        let _ = writeln!(out, "# TYPE mcpgw_call_duration_quantile_seconds gauge");
        for k in &keys {
            let h = &all[k].latency_us;
            for q in [0.5, 0.9, 0.99, 0.999] {
                let _ = writeln!(
                    out,
                    "mcpgw_call_duration_quantile_seconds{{target=\"{}\",upstream=\"{}\",quantile=\"{q}\"}} {}",
                    esc(&k.0),
                    esc(&k.1),
                    h.value_at_quantile(q) as f64 / 1e6
                );
            }
        }
        out.push_str(extra);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_workers_and_caps_labels() {
        let r = Registry::default();
        let (a, b) = (r.worker(2), r.worker(2));
        a.record("t1", "u", Outcome::Ok, 100);
        b.record("t1", "u", Outcome::Timeout, 2_000_000);
        a.record("t2", "u", Outcome::Ok, 10);
        a.record("t3", "u", Outcome::Ok, 10);
        let text = r.prometheus("");
        assert!(
            text.contains(r#"mcpgw_calls_total{target="t1",upstream="u",outcome="ok"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"mcpgw_calls_total{target="t1",upstream="u",outcome="timeout"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"mcpgw_calls_total{target="__other__",upstream="u",outcome="ok"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"mcpgw_call_duration_seconds_count{target="t1",upstream="u"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"mcpgw_call_duration_seconds_bucket{target="t1",upstream="u",le="0.00025"} 1"#
            ),
            "{text}"
        );
    }
}
