//! Per-call metrics: counts, errors by kind and latency, per tool and upstream, and per
//! client principal.
//!
//! Each worker records into its own [`WorkerMetrics`]: a map behind a lock that only that
//! worker takes on the request path (uncontended), and that the scraper takes briefly to copy
//! when `/metrics` is read; workers never share a counter, so no cache line bounces between
//! cores. Latency goes into HDR histograms (µs, 3 significant digits), merged at scrape time
//! into Prometheus histogram buckets plus p50/p90/p99/p99.9 summaries. A call's latency is
//! also split in two: the time spent waiting on the upstream (sending, its work, its answer
//! arriving) and the rest, the gateway's own time (routing, session set-up, splicing,
//! relaying); those two use 2-significant-digit histograms (1% resolution) to stay small.
//! Label values are bounded: past `max_labels` distinct tools, or `max_principals` distinct
//! principals, new ones are counted as `__other__`.

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

/// One finished call, as recorded.
#[derive(Clone, Copy, Debug)]
pub struct Sample<'a> {
    /// Tool or prompt name, else the method.
    pub target: &'a str,
    /// Upstream name.
    pub upstream: &'a str,
    /// The client principal's name (`anonymous` without credentials).
    pub principal: &'a str,
    /// How it ended.
    pub outcome: Outcome,
    /// From routing to the answer, µs.
    pub total_us: u64,
    /// Of that, waiting on the upstream, µs.
    pub upstream_us: u64,
    /// Request and answer sizes, bytes.
    pub bytes: (usize, usize),
}

/// Histogram templates: full resolution for the whole call, compact for its parts.
struct Templates {
    full: Histogram<u64>,
    compact: Histogram<u64>,
}

impl Templates {
    fn new() -> Self {
        Self {
            // 1 µs .. 1 hour: constant bounds, valid by construction.
            full: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds"),
            compact: Histogram::new_with_bounds(1, 3_600_000_000, 2)
                .expect("valid histogram bounds"),
        }
    }
}

/// Counts and latency of one (target, upstream) pair.
#[derive(Clone)]
struct Series {
    by_outcome: [u64; 6],
    latency_us: Histogram<u64>,
    /// Time waiting on the upstream.
    upstream_us: Histogram<u64>,
    /// The rest: the gateway's own time.
    gateway_us: Histogram<u64>,
    /// Bytes from clients (requests) and to clients (answers).
    bytes: [u64; 2],
}

impl Series {
    fn new(t: &Templates) -> Self {
        Self {
            by_outcome: [0; 6],
            latency_us: t.full.clone(),
            upstream_us: t.compact.clone(),
            gateway_us: t.compact.clone(),
            bytes: [0; 2],
        }
    }

    fn merge(&mut self, other: &Series) {
        for (a, b) in self.by_outcome.iter_mut().zip(other.by_outcome) {
            *a += b;
        }
        let _ = self.latency_us.add(&other.latency_us);
        let _ = self.upstream_us.add(&other.upstream_us);
        let _ = self.gateway_us.add(&other.gateway_us);
        self.bytes[0] += other.bytes[0];
        self.bytes[1] += other.bytes[1];
    }

    fn add(&mut self, c: &Sample<'_>) {
        self.by_outcome[c.outcome.index()] += 1;
        let _ = self.latency_us.record(c.total_us.max(1));
        let up = c.upstream_us.min(c.total_us);
        let _ = self.upstream_us.record(up.max(1));
        let _ = self.gateway_us.record((c.total_us - up).max(1));
        self.bytes[0] += c.bytes.0 as u64;
        self.bytes[1] += c.bytes.1 as u64;
    }
}

/// Counts and latency of one principal's calls.
#[derive(Clone)]
struct PrincipalSeries {
    by_outcome: [u64; 6],
    latency_us: Histogram<u64>,
}

impl PrincipalSeries {
    fn merge(&mut self, other: &PrincipalSeries) {
        for (a, b) in self.by_outcome.iter_mut().zip(other.by_outcome) {
            *a += b;
        }
        let _ = self.latency_us.add(&other.latency_us);
    }
}

/// Series by (target, upstream).
type SeriesMap = HashMap<(Arc<str>, Arc<str>), Series>;

/// A map looked up on every call, by names the configuration bounds (`max_labels`,
/// `max_principals`): a fast hasher.
type Fast<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Label value used once `max_labels` distinct targets were seen.
pub const OTHER: &str = "__other__";

/// Series by upstream, then target, and by principal: looked up by `&str` without
/// allocating.
#[derive(Default)]
struct ByUpstream {
    map: Fast<Arc<str>, Fast<Arc<str>, Series>>,
    /// Distinct series.
    len: usize,
    principals: Fast<Arc<str>, PrincipalSeries>,
}

/// One worker's metrics.
pub struct WorkerMetrics {
    inner: parking_lot::Mutex<ByUpstream>,
    max_labels: usize,
    max_principals: usize,
    /// `[gateway] metrics`: false records nothing.
    on: bool,
    /// Empty histograms of the right bounds, cloned for each new series.
    templates: Templates,
}

impl WorkerMetrics {
    /// Empty metrics keeping at most `max_labels` distinct targets and `max_principals`
    /// distinct principals.
    pub fn new(max_labels: usize, max_principals: usize) -> Self {
        Self {
            inner: parking_lot::Mutex::new(ByUpstream::default()),
            max_labels: max_labels.max(1),
            max_principals: max_principals.max(1),
            on: true,
            templates: Templates::new(),
        }
    }

    /// Records one finished call. A series seen before costs two lookups, no allocation.
    pub fn record(&self, c: &Sample<'_>) {
        if !self.on {
            return;
        }
        let mut m = self.inner.lock();
        let m = &mut *m;
        match m.map.get_mut(c.upstream).and_then(|t| t.get_mut(c.target)) {
            Some(s) => s.add(c),
            None => {
                let target = if m.len >= self.max_labels {
                    OTHER
                } else {
                    c.target
                };
                let targets = m.map.entry(Arc::from(c.upstream)).or_default();
                let s = match targets.get_mut(target) {
                    Some(s) => s,
                    None => {
                        m.len += 1;
                        targets
                            .entry(Arc::from(target))
                            .or_insert_with(|| Series::new(&self.templates))
                    }
                };
                s.add(c);
            }
        }
        let p = match m.principals.get_mut(c.principal) {
            Some(p) => p,
            None => {
                let name = if m.principals.len() >= self.max_principals {
                    OTHER
                } else {
                    c.principal
                };
                m.principals
                    .entry(Arc::from(name))
                    .or_insert_with(|| PrincipalSeries {
                        by_outcome: [0; 6],
                        latency_us: self.templates.compact.clone(),
                    })
            }
        };
        p.by_outcome[c.outcome.index()] += 1;
        let _ = p.latency_us.record(c.total_us.max(1));
    }

    fn copy(&self) -> (SeriesMap, Fast<Arc<str>, PrincipalSeries>) {
        let m = self.inner.lock();
        let mut out = SeriesMap::new();
        for (u, targets) in &m.map {
            for (t, s) in targets {
                out.insert((t.clone(), u.clone()), s.clone());
            }
        }
        (out, m.principals.clone())
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
        self.worker_with(max_labels, max_labels, true)
    }

    /// Metrics for a new worker that records only when `on`.
    pub fn worker_with(
        &self,
        max_labels: usize,
        max_principals: usize,
        on: bool,
    ) -> Arc<WorkerMetrics> {
        let mut w = WorkerMetrics::new(max_labels, max_principals);
        w.on = on;
        let w = Arc::new(w);
        self.workers.lock().push(w.clone());
        w
    }

    /// Every worker's series merged, by (target, upstream), and by principal.
    fn merged(&self) -> (SeriesMap, Fast<Arc<str>, PrincipalSeries>) {
        let mut all = SeriesMap::new();
        let mut principals: Fast<Arc<str>, PrincipalSeries> = Fast::default();
        for w in self.workers.lock().iter() {
            let (series, ps) = w.copy();
            for (k, s) in series {
                match all.get_mut(&k) {
                    Some(t) => t.merge(&s),
                    None => {
                        all.insert(k, s);
                    }
                }
            }
            for (k, s) in ps {
                match principals.get_mut(&k) {
                    Some(t) => t.merge(&s),
                    None => {
                        principals.insert(k, s);
                    }
                }
            }
        }
        (all, principals)
    }

    /// The merged metrics as JSON (`/admin/stats`): per target and upstream, calls by
    /// outcome, latency percentiles (ms) and bytes.
    pub fn stats_json(&self) -> serde_json::Value {
        let (all, principals) = self.merged();
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
                serde_json::json!({
                    "target": &*k.0,
                    "upstream": &*k.1,
                    "calls": h.len(),
                    "outcomes": outcomes,
                    "latency_ms": quantiles_ms(h),
                    "upstream_ms": quantiles_ms(&s.upstream_us),
                    "gateway_ms": quantiles_ms(&s.gateway_us),
                    "bytes_in": s.bytes[0],
                    "bytes_out": s.bytes[1],
                })
            })
            .collect();
        let mut names: Vec<_> = principals.keys().cloned().collect();
        names.sort();
        let by_principal: Vec<serde_json::Value> = names
            .iter()
            .map(|n| {
                let p = &principals[n];
                let outcomes: serde_json::Map<String, serde_json::Value> = Outcome::ALL
                    .iter()
                    .map(|o| (o.label().to_string(), p.by_outcome[o.index()].into()))
                    .collect();
                serde_json::json!({
                    "principal": &**n,
                    "calls": p.latency_us.len(),
                    "outcomes": outcomes,
                    "latency_ms": quantiles_ms(&p.latency_us),
                })
            })
            .collect();
        serde_json::json!({ "calls": rows, "principals": by_principal })
    }

    /// The merged metrics in the Prometheus text format; `extra` is appended (gauges kept
    /// elsewhere).
    pub fn prometheus(&self, extra: &str) -> String {
        let (all, principals) = self.merged();
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
        for (name, help, pick, buckets) in [
            (
                "mcpgw_call_duration_seconds",
                "Time from routing a call to its answer.",
                (|s: &Series| &s.latency_us) as fn(&Series) -> &Histogram<u64>,
                &BUCKETS_US[..],
            ),
            (
                "mcpgw_call_upstream_seconds",
                "Part of a call's time spent waiting on the upstream (2 significant digits).",
                |s: &Series| &s.upstream_us,
                &BUCKETS_US[..],
            ),
            (
                "mcpgw_call_gateway_seconds",
                "Part of a call's time spent in the gateway itself (2 significant digits).",
                |s: &Series| &s.gateway_us,
                &GATEWAY_BUCKETS_US[..],
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            for k in &keys {
                let labels = format!("target=\"{}\",upstream=\"{}\"", esc(&k.0), esc(&k.1));
                histogram(&mut out, name, &labels, pick(&all[k]), buckets);
            }
        }
        let mut names: Vec<_> = principals.keys().cloned().collect();
        names.sort();
        let _ = writeln!(out, "# HELP mcpgw_principal_calls_total Calls by client principal and outcome.\n# TYPE mcpgw_principal_calls_total counter");
        for n in &names {
            for o in Outcome::ALL {
                let _ = writeln!(
                    out,
                    "mcpgw_principal_calls_total{{principal=\"{}\",outcome=\"{}\"}} {}",
                    esc(n),
                    o.label(),
                    principals[n].by_outcome[o.index()]
                );
            }
        }
        let _ = writeln!(out, "# HELP mcpgw_principal_call_duration_seconds Call latency by client principal (2 significant digits).\n# TYPE mcpgw_principal_call_duration_seconds histogram");
        for n in &names {
            let labels = format!("principal=\"{}\"", esc(n));
            histogram(
                &mut out,
                "mcpgw_principal_call_duration_seconds",
                &labels,
                &principals[n].latency_us,
                &BUCKETS_US,
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

/// Upper bounds (µs) of the buckets of the gateway's own time per call.
const GATEWAY_BUCKETS_US: [u64; 12] = [
    5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 10_000, 100_000, 1_000_000,
];

/// p50/p90/p99/p99.9/max of a µs histogram, in ms.
fn quantiles_ms(h: &Histogram<u64>) -> serde_json::Value {
    let q = |p: f64| h.value_at_quantile(p) as f64 / 1000.0;
    serde_json::json!({ "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p999": q(0.999), "max": h.max() as f64 / 1000.0 })
}

/// One Prometheus histogram series (buckets, sum, count) from a µs histogram.
fn histogram(out: &mut String, name: &str, labels: &str, h: &Histogram<u64>, buckets: &[u64]) {
    for b in buckets {
        let n = h.count_between(0, *b);
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels},le=\"{}\"}} {n}",
            *b as f64 / 1e6
        );
    }
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.len());
    let sum: f64 = h
        .iter_recorded()
        .map(|v| v.value_iterated_to() as f64 * v.count_at_value() as f64)
        .sum::<f64>()
        / 1e6;
    let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.len());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>(target: &'a str, principal: &'a str, outcome: Outcome, us: u64) -> Sample<'a> {
        Sample {
            target,
            upstream: "u",
            principal,
            outcome,
            total_us: us,
            upstream_us: us * 3 / 4,
            bytes: (10, 20),
        }
    }

    #[test]
    fn merges_workers_and_caps_labels() {
        let r = Registry::default();
        let (a, b) = (r.worker_with(2, 1, true), r.worker_with(2, 1, true));
        a.record(&sample("t1", "ann", Outcome::Ok, 100));
        b.record(&sample("t1", "ann", Outcome::Timeout, 2_000_000));
        a.record(&sample("t2", "bob", Outcome::Ok, 10));
        a.record(&sample("t3", "ann", Outcome::Ok, 10));
        let text = r.prometheus("");
        for want in [
            r#"mcpgw_calls_total{target="t1",upstream="u",outcome="ok"} 1"#,
            r#"mcpgw_calls_total{target="t1",upstream="u",outcome="timeout"} 1"#,
            r#"mcpgw_calls_total{target="__other__",upstream="u",outcome="ok"} 1"#,
            r#"mcpgw_call_duration_seconds_count{target="t1",upstream="u"} 2"#,
            r#"mcpgw_call_duration_seconds_bucket{target="t1",upstream="u",le="0.00025"} 1"#,
            // 100 us: 75 upstream, 25 gateway.
            r#"mcpgw_call_upstream_seconds_bucket{target="t1",upstream="u",le="0.0001"} 1"#,
            r#"mcpgw_call_gateway_seconds_bucket{target="t1",upstream="u",le="0.000025"} 1"#,
            r#"mcpgw_call_gateway_seconds_bucket{target="t1",upstream="u",le="0.00001"} 0"#,
            // One principal label per worker (cap 1): bob overflows on worker a.
            r#"mcpgw_principal_calls_total{principal="ann",outcome="ok"} 2"#,
            r#"mcpgw_principal_calls_total{principal="ann",outcome="timeout"} 1"#,
            r#"mcpgw_principal_calls_total{principal="__other__",outcome="ok"} 1"#,
            r#"mcpgw_principal_call_duration_seconds_count{principal="ann"} 3"#,
        ] {
            assert!(text.contains(want), "{want}\n{text}");
        }
        let stats = r.stats_json();
        assert_eq!(stats["principals"][0]["principal"], "__other__", "{stats}");
        assert!(
            stats["calls"][0]["gateway_ms"]["p50"].as_f64().is_some(),
            "{stats}"
        );
    }
}
