//! CPU time of processes from `/proc/PID/stat` (utime + stime, all threads), so a run can
//! report CPU microseconds per request of the load generator, the gateway and the fixture.
//!
//! Sampled by the load generator's main thread at the start and the end of the measured
//! window; never on a load thread. Resolution is one clock tick (10 ms at the usual 100 Hz):
//! runs of several seconds make that negligible.

use std::io;

use serde::Serialize;

use crate::sys;

/// CPU time of one process at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// The command name (`comm`, at most 15 bytes).
    pub comm: String,
    /// utime + stime, clock ticks.
    pub ticks: u64,
}

/// Reads `/proc/self/stat` (`pid = None`) or `/proc/PID/stat`.
pub fn sample(pid: Option<u32>) -> io::Result<Sample> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let text = std::fs::read_to_string(&path)?;
    parse_stat(&text).ok_or_else(|| io::Error::other(format!("{path}: unexpected format")))
}

/// Parses the contents of a `stat` file. `comm` sits in parentheses and may itself contain
/// spaces and parentheses, so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<Sample> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    // After ")": state(3) ppid(4) ... utime(14) stime(15).
    let mut fields = text.get(close + 1..)?.split_ascii_whitespace();
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Sample {
        comm,
        ticks: utime + stime,
    })
}

/// CPU used by one process over the measured window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Usage {
    /// `self` for the load generator, else the command name.
    pub name: String,
    /// Process id (`None` for the load generator itself).
    pub pid: Option<u32>,
    /// CPU seconds over the window.
    pub cpu_s: f64,
    /// CPU microseconds per completed request (ok or error).
    pub us_per_req: f64,
    /// CPU use as a share of one core over the window, percent.
    pub core_percent: f64,
}

/// Turns two samples into a [`Usage`] over `requests` requests and `window_s` seconds.
pub fn usage(
    name: String,
    pid: Option<u32>,
    before: &Sample,
    after: &Sample,
    requests: u64,
    window_s: f64,
) -> Usage {
    let cpu_s = after.ticks.saturating_sub(before.ticks) as f64 / sys::clock_ticks() as f64;
    Usage {
        name,
        pid,
        cpu_s,
        us_per_req: if requests > 0 {
            cpu_s * 1e6 / requests as f64
        } else {
            0.0
        },
        core_percent: if window_s > 0.0 {
            cpu_s * 100.0 / window_s
        } else {
            0.0
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utime_plus_stime() {
        let line = "4242 (mcpgw) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 37 0 0 20 0 3 0 \
                    12345 1000000 500 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0";
        let s = parse_stat(line).expect("parses");
        assert_eq!(s.comm, "mcpgw");
        assert_eq!(s.ticks, 287);
    }

    #[test]
    fn comm_with_spaces_and_parens() {
        let line = "7 (a (b) c) R 1 7 7 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 1 1 1";
        let s = parse_stat(line).expect("parses");
        assert_eq!(s.comm, "a (b) c");
        assert_eq!(s.ticks, 11);
    }

    #[test]
    fn truncated_is_none() {
        assert_eq!(parse_stat("1 (x) S 1 2 3"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn reads_own_stat() {
        let s = sample(None).expect("/proc/self/stat");
        assert!(!s.comm.is_empty());
    }

    #[test]
    fn usage_per_request() {
        let before = Sample {
            comm: "x".into(),
            ticks: 100,
        };
        let after = Sample {
            comm: "x".into(),
            ticks: 100 + sys::clock_ticks(),
        };
        let u = usage("x".into(), Some(1), &before, &after, 100_000, 2.0);
        assert!((u.cpu_s - 1.0).abs() < 1e-9);
        assert!((u.us_per_req - 10.0).abs() < 1e-9);
        assert!((u.core_percent - 50.0).abs() < 1e-9);
    }
}
