//! The results of a load run as people and scripts read them: a text summary on stdout, a
//! loud `ERRORS:` block on stderr, a JSON object, CSV rows.
//!
//! Built once from the merged [`Recorder`] after the run; nothing here measures anything.

use std::{
    collections::BTreeMap,
    fs::OpenOptions,
    io::{self, Write},
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Serialize;

use crate::{
    cpu::Usage,
    load::{Config, Plan},
    mcp::Op,
    stats::{distribution, Percentiles, Point, Recorder, LATE_THRESHOLD_US},
};

/// Everything a run reports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `--label`.
    pub label: String,
    /// Endpoint.
    pub url: String,
    /// `closed` or `open`.
    pub mode: &'static str,
    /// Open loop: requests per second asked for.
    pub rate: Option<f64>,
    /// Load threads.
    pub threads: u64,
    /// Connections asked for.
    pub connections: u64,
    /// Sessions that were set up.
    pub sessions: u64,
    /// Request mix.
    pub mix: String,
    /// Tool called.
    pub tool: String,
    /// Requests accepted event streams only (`--sse`).
    pub sse_only: bool,
    /// `text` argument size, bytes.
    pub payload_bytes: usize,
    /// `result_bytes` argument, if sent.
    pub result_bytes: Option<usize>,
    /// Warm-up, seconds.
    pub warmup_s: f64,
    /// Measured window (warm-up end to last measured answer), seconds.
    pub window_s: f64,
    /// Ok answers.
    pub ok: u64,
    /// Errors of all kinds (setup included).
    pub errors: u64,
    /// Errors by kind.
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Ok answers per second of the measured window.
    pub calls_per_s: f64,
    /// Latency of ok answers, µs.
    pub latency_us: Percentiles,
    /// Latency per operation (only those in the mix), µs.
    pub by_op: BTreeMap<&'static str, Percentiles>,
    /// Request bytes in the window.
    pub bytes_sent: u64,
    /// Response bytes in the window.
    pub bytes_received: u64,
    /// Open loop: sends later than the threshold.
    pub late_sends: u64,
    /// Open loop: largest lateness, µs.
    pub max_late_us: u64,
    /// CPU per request of the load generator (`--self-cpu`) and of each `--pid`.
    pub cpu: Vec<Usage>,
    /// The percentile distribution of all ok answers.
    pub percentiles: Vec<Point>,
}

impl Report {
    /// Assembles the report.
    pub fn new(
        config: &Config,
        rec: &Recorder,
        window: Duration,
        sessions: u64,
        cpu: Vec<Usage>,
    ) -> Report {
        let a = &config.args;
        let window_s = window.as_secs_f64();
        let ok = rec.ok_total();
        Report {
            label: a.label.clone(),
            url: a.url.clone(),
            mode: config.mode(),
            rate: match config.plan {
                Plan::Open { .. } => a.rate,
                _ => None,
            },
            threads: config.threads,
            connections: a.connections,
            sessions,
            mix: a.mix.to_string(),
            tool: a.tool.clone(),
            sse_only: a.sse,
            payload_bytes: a.payload_bytes,
            result_bytes: a.result_bytes,
            warmup_s: config.warmup.as_secs_f64(),
            window_s,
            ok,
            errors: rec.error_total(),
            errors_by_kind: rec
                .errors
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            calls_per_s: if window_s > 0.0 {
                ok as f64 / window_s
            } else {
                0.0
            },
            latency_us: Percentiles::of(&rec.all),
            by_op: Op::ALL
                .into_iter()
                .filter(|&op| a.mix.weight(op) > 0)
                .map(|op| (op.name(), Percentiles::of(&rec.by_op[op.index()])))
                .collect(),
            bytes_sent: rec.bytes_sent,
            bytes_received: rec.bytes_received,
            late_sends: rec.late,
            max_late_us: rec.max_late_us,
            cpu,
            percentiles: distribution(&rec.all),
        }
    }
}

/// Prints the summary on stdout.
pub fn print(r: &Report) {
    let mut o = String::new();
    let pacing = match r.rate {
        Some(rate) => format!("open loop at {rate} req/s"),
        None => "closed loop".to_string(),
    };
    o.push_str(&format!(
        "mcpgw-load {}: {pacing}, {} thread(s), {} connection(s), mix {}, tool {}, payload {} B{}{}\n",
        r.url,
        r.threads,
        r.connections,
        r.mix,
        r.tool,
        r.payload_bytes,
        r.result_bytes
            .map(|n| format!(", result {n} B"))
            .unwrap_or_default(),
        if r.sse_only { ", SSE answers only" } else { "" },
    ));
    o.push_str(&format!(
        "  requests  {} ok, {} errors in {:.2} s (after {:.1} s warm-up)  =>  {:.1} calls/s\n",
        r.ok, r.errors, r.window_s, r.warmup_s, r.calls_per_s
    ));
    let p = &r.latency_us;
    o.push_str(&format!(
        "  latency   µs  p50 {}  p90 {}  p99 {}  p99.9 {}  p99.99 {}  max {}  mean {:.1}{}\n",
        p.p50,
        p.p90,
        p.p99,
        p.p99_9,
        p.p99_99,
        p.max,
        p.mean,
        if r.rate.is_some() {
            "  (from intended send time)"
        } else {
            ""
        }
    ));
    if r.by_op.len() > 1 {
        for (name, p) in &r.by_op {
            o.push_str(&format!(
                "    {name:<5} {:>9} ok  p50 {}  p99 {}  p99.9 {}  max {}\n",
                p.count, p.p50, p.p99, p.p99_9, p.max
            ));
        }
    }
    let per_s = |b: u64| {
        if r.window_s > 0.0 {
            b as f64 / r.window_s / 1e6
        } else {
            0.0
        }
    };
    o.push_str(&format!(
        "  bytes     sent {} ({:.1} MB/s), received {} ({:.1} MB/s)\n",
        r.bytes_sent,
        per_s(r.bytes_sent),
        r.bytes_received,
        per_s(r.bytes_received)
    ));
    if r.rate.is_some() {
        o.push_str(&format!(
            "  pacing    {} late sends (> {} µs after intended), max lateness {} µs\n",
            r.late_sends, LATE_THRESHOLD_US, r.max_late_us
        ));
    }
    for u in &r.cpu {
        let who = match u.pid {
            Some(pid) => format!("{} (pid {pid})", u.name),
            None => "mcpgw-load (self)".to_string(),
        };
        o.push_str(&format!(
            "  cpu       {who}: {:.2} µs/req, {:.2} s, {:.0}% of a core\n",
            u.us_per_req, u.cpu_s, u.core_percent
        ));
    }
    print!("{o}");
}

/// Prints the loud error summary on stderr.
pub fn print_errors(rec: &Recorder, sessions: u64) {
    let mut e = String::new();
    e.push_str(&format!(
        "ERRORS: {} error(s); {} session(s) set up. By kind:\n",
        rec.error_total(),
        sessions
    ));
    for (k, n) in &rec.errors {
        e.push_str(&format!("ERRORS:   {n:>10}  {k}\n"));
    }
    if rec.errors.is_empty() {
        e.push_str("ERRORS:   no session could be set up\n");
    }
    eprint!("{e}");
}

/// Writes `--json` and appends `--csv` if asked.
pub fn write_files(r: &Report, config: &Config) -> io::Result<()> {
    if let Some(path) = &config.args.json {
        let mut text = serde_json::to_string_pretty(r).map_err(io::Error::other)?;
        text.push('\n');
        std::fs::write(path, text)?;
    }
    if let Some(path) = &config.args.csv {
        append_csv(path, &SUMMARY_HEADER.join(","), &[summary_row(r)])?;
        let rows: Vec<String> = r
            .percentiles
            .iter()
            .map(|p| {
                [
                    csv_field(&r.label),
                    p.percentile.to_string(),
                    p.latency_us.to_string(),
                    p.count.to_string(),
                ]
                .join(",")
            })
            .collect();
        append_csv(
            &percentiles_path(path),
            "label,percentile,latency_us,count",
            &rows,
        )?;
    }
    Ok(())
}

/// Columns of the summary CSV.
pub const SUMMARY_HEADER: [&str; 29] = [
    "label",
    "url",
    "mode",
    "rate",
    "threads",
    "connections",
    "sessions",
    "mix",
    "tool",
    "sse_only",
    "payload_bytes",
    "result_bytes",
    "window_s",
    "ok",
    "errors",
    "calls_per_s",
    "p50_us",
    "p90_us",
    "p99_us",
    "p99_9_us",
    "p99_99_us",
    "max_us",
    "mean_us",
    "bytes_sent",
    "bytes_received",
    "late_sends",
    "max_late_us",
    "self_cpu_us_per_req",
    "pid_cpu_us_per_req",
];

/// One summary row, in [`SUMMARY_HEADER`] order. `pid_cpu_us_per_req` holds
/// `name:pid=us` items separated by `;`.
pub fn summary_row(r: &Report) -> String {
    let p = &r.latency_us;
    let opt = |v: Option<String>| v.unwrap_or_default();
    let self_cpu = r
        .cpu
        .iter()
        .find(|u| u.pid.is_none())
        .map(|u| format!("{:.3}", u.us_per_req));
    let pids: Vec<String> = r
        .cpu
        .iter()
        .filter_map(|u| {
            u.pid
                .map(|pid| format!("{}:{pid}={:.3}", u.name, u.us_per_req))
        })
        .collect();
    let fields: [String; 29] = [
        csv_field(&r.label),
        csv_field(&r.url),
        r.mode.to_string(),
        opt(r.rate.map(|x| x.to_string())),
        r.threads.to_string(),
        r.connections.to_string(),
        r.sessions.to_string(),
        csv_field(&r.mix),
        csv_field(&r.tool),
        r.sse_only.to_string(),
        r.payload_bytes.to_string(),
        opt(r.result_bytes.map(|x| x.to_string())),
        format!("{:.3}", r.window_s),
        r.ok.to_string(),
        r.errors.to_string(),
        format!("{:.1}", r.calls_per_s),
        p.p50.to_string(),
        p.p90.to_string(),
        p.p99.to_string(),
        p.p99_9.to_string(),
        p.p99_99.to_string(),
        p.max.to_string(),
        format!("{:.2}", p.mean),
        r.bytes_sent.to_string(),
        r.bytes_received.to_string(),
        r.late_sends.to_string(),
        r.max_late_us.to_string(),
        opt(self_cpu),
        csv_field(&pids.join(";")),
    ];
    fields.join(",")
}

/// Quotes a CSV field when it needs it (RFC 4180).
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// `dir/name-percentiles.ext` for `dir/name.ext`.
pub fn percentiles_path(path: &Path) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match path.extension() {
        Some(ext) => format!("{stem}-percentiles.{}", ext.to_string_lossy()),
        None => format!("{stem}-percentiles"),
    };
    path.with_file_name(name)
}

fn append_csv(path: &Path, header: &str, rows: &[String]) -> io::Result<()> {
    let mut f = OpenOptions::new().create(true).append(true).open(path)?;
    let mut text = String::new();
    if f.metadata()?.len() == 0 {
        text.push_str(header);
        text.push('\n');
    }
    for row in rows {
        text.push_str(row);
        text.push('\n');
    }
    f.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quoting() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("call=90,list=10"), "\"call=90,list=10\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    #[test]
    fn percentiles_file_name() {
        assert_eq!(
            percentiles_path(Path::new("/tmp/run/raw.csv")),
            PathBuf::from("/tmp/run/raw-percentiles.csv")
        );
        assert_eq!(
            percentiles_path(Path::new("raw")),
            PathBuf::from("raw-percentiles")
        );
    }

    #[test]
    fn csv_appends_header_once() {
        let dir = std::env::temp_dir().join(format!("mcpgw-load-csv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("a.csv");
        let _ = std::fs::remove_file(&path);
        append_csv(&path, "h1,h2", &["1,2".into()]).expect("append");
        append_csv(&path, "h1,h2", &["3,4".into()]).expect("append");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text, "h1,h2\n1,2\n3,4\n");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
