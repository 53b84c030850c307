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
    /// Bytes from clients (requests) and to clients (answers).
    bytes: [u64; 2],
}

impl Series {
    fn new(template: &Histogram<u64>) -> Self {
        Self {
            by_outcome: [0; 6],
            latency_us: template.clone(),
            bytes: [0; 2],
        }
    }

    fn merge(&mut self, other: &Series) {
        for (a, b) in self.by_outcome.iter_mut().zip(other.by_outcome) {
            *a += b;
        }
        let _ = self.latency_us.add(&other.latency_us);
        self.bytes[0] += other.bytes[0];
        self.bytes[1] += other.bytes[1];
    }

    fn add(&mut self, outcome: Outcome, micros: u64, bytes: (usize, usize)) {
        self.by_outcome[outcome.index()] += 1;
        let _ = self.latency_us.record(micros.max(1));
        self.bytes[0] += bytes.0 as u64;
        self.bytes[1] += bytes.1 as u64;
    }
}

/// Series by (target, upstream).
type SeriesMap = HashMap<(Arc<str>, Arc<str>), Series>;

/// Label value used once `max_labels` distinct targets were seen.
pub const OTHER: &str = "__other__";

/// Series by upstream, then target: looked up by `&str` without allocating.
#[derive(Default)]
struct ByUpstream {
    map: HashMap<Arc<str>, HashMap<Arc<str>, Series>>,
    /// Distinct series.
    len: usize,
}

/// One worker's metrics.
pub struct WorkerMetrics {
    inner: parking_lot::Mutex<ByUpstream>,
    max_labels: usize,
    /// `[gateway] metrics`: false records nothing.
    on: bool,
    /// An empty histogram of the right bounds, cloned for each new series.
    template: Histogram<u64>,
}

impl WorkerMetrics {
    /// Empty metrics keeping at most `max_labels` distinct targets.
    pub fn new(max_labels: usize) -> Self {
        Self {
            inner: parking_lot::Mutex::new(ByUpstream::default()),
            max_labels: max_labels.max(1),
            on: true,
            // 1 µs .. 1 hour, 3 significant digits: constant bounds, valid by construction.
            template: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .expect("valid histogram bounds"),
        }
    }

    /// Records one call to `target` (a tool name, or a method such as `resources/read`) on
    /// `upstream`, with its request and answer sizes. A series seen before costs a lookup,
    /// no allocation.
    pub fn record(
        &self,
        target: &str,
        upstream: &str,
        outcome: Outcome,
        micros: u64,
        bytes: (usize, usize),
    ) {
        if !self.on {
            return;
        }
        let mut m = self.inner.lock();
        if let Some(s) = m.map.get_mut(upstream).and_then(|t| t.get_mut(target)) {
            s.add(outcome, micros, bytes);
            return;
        }
        let target = if m.len >= self.max_labels {
            OTHER
        } else {
            target
        };
        let ByUpstream { map, len } = &mut *m;
        let targets = map.entry(Arc::from(upstream)).or_default();
        let s = match targets.get_mut(target) {
            Some(s) => s,
            None => {
                *len += 1;
                targets
                    .entry(Arc::from(target))
                    .or_insert_with(|| Series::new(&self.template))
            }
        };
        s.add(outcome, micros, bytes);
    }

    fn copy(&self) -> SeriesMap {
        let m = self.inner.lock();
        let mut out = SeriesMap::new();
        for (u, targets) in &m.map {
            for (t, s) in targets {
                out.insert((t.clone(), u.clone()), s.clone());
            }
        }
        out
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
        self.worker_with(max_labels, true)
    }

    /// Metrics for a new worker that records only when `on`.
    pub fn worker_with(&self, max_labels: usize, on: bool) -> Arc<WorkerMetrics> {
        let mut w = WorkerMetrics::new(max_labels);
        w.on = on;
        let w = Arc::new(w);
        self.workers.lock().push(w.clone());
        w
    }

    /// Every worker's series merged, by (target, upstream).
    fn merged(&self) -> SeriesMap {
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
        all
    }

    /// The merged metrics as JSON (`/admin/stats`): per target and upstream, calls by
    /// outcome, latency percentiles (ms) and bytes.
    pub fn stats_json(&self) -> serde_json::Value {
        let all = self.merged();
        let mut keys: Vec<_> = all.keys().cloned().collect();
        keys.sort();
        let rows: Vec<serde_json::Value> = keys
            .iter()
            .map(|k| {
                let s = &all[k];
                let h = &s.latency_us;
                let outcomes: serde_json::Map<String, serde_json::Value> = Outcome::ALL
                    .iter()
                    .map(|o| (o.label().to_string(), s.by_outcome[o.index()].into()))
                    .collect();
                let q = |p: f64| h.value_at_quantile(p) as f64 / 1000.0;
                serde_json::json!({
                    "target": &*k.0,
                    "upstream": &*k.1,
                    "calls": h.len(),
                    "outcomes": outcomes,
                    "latency_ms": { "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p999": q(0.999), "max": h.max() as f64 / 1000.0 },
                    "bytes_in": s.bytes[0],
                    "bytes_out": s.bytes[1],
                })
            })
            .collect();
        serde_json::json!({ "calls": rows })
    }

    /// The merged metrics in the Prometheus text format; `extra` is appended (gauges kept
    /// elsewhere).
    pub fn prometheus(&self, extra: &str) -> String {
        let all = self.merged();
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
        let _ = writeln!(
            out,
            "# HELP mcpgw_call_bytes_total Bytes of calls: requests from clients (in) and answers to them (out).\n# TYPE mcpgw_call_bytes_total counter"
        );
        for k in &keys {
            let b = all[k].bytes;
            for (dir, n) in [("in", b[0]), ("out", b[1])] {
                let _ = writeln!(
                    out,
                    "mcpgw_call_bytes_total{{target=\"{}\",upstream=\"{}\",direction=\"{dir}\"}} {n}",
                    esc(&k.0),
                    esc(&k.1)
                );
            }
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
        a.record("t1", "u", Outcome::Ok, 100, (10, 20));
        b.record("t1", "u", Outcome::Timeout, 2_000_000, (10, 20));
        a.record("t2", "u", Outcome::Ok, 10, (10, 20));
        a.record("t3", "u", Outcome::Ok, 10, (10, 20));
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
