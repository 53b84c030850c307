//! Admission limits: how much one client, or all of them, may hold of the gateway.
//!
//! Connections per worker and per client IP are checked at accept, sessions at `initialize`,
//! calls in flight per session when a call starts, bytes per SSE stream when a message is
//! queued, and a client that stops reading is cut off after `write_timeout_ms`. Each hit is
//! counted by kind (`mcpgw_limit_hits_total{limit=...}`) and answered with a stable error
//! (README.md, "Limits"). Counters are touched only when a limit is hit or a connection opens
//! or closes, never per request.

use std::{
    cell::Cell,
    net::IpAddr,
    rc::Rc,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
};

use dashmap::DashMap;

/// A limit that can be hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// `max_connections` (per worker).
    Connections,
    /// `max_connections_per_ip`.
    ConnectionsPerIp,
    /// `max_sessions`.
    Sessions,
    /// `max_in_flight_per_session`.
    InFlight,
    /// `sse_buffer_bytes`: a message for a stream was dropped.
    SseBuffer,
    /// `write_timeout_ms`: a client that does not read was disconnected.
    SlowReader,
    /// A `[[rate_limit]]` refused a request or call.
    RateLimit,
    /// A `[[quota]]` refused a call.
    Quota,
    /// `max_batch_items`: a batch was refused whole.
    BatchItems,
}

impl Limit {
    const ALL: [Limit; 9] = [
        Limit::Connections,
        Limit::ConnectionsPerIp,
        Limit::Sessions,
        Limit::InFlight,
        Limit::SseBuffer,
        Limit::SlowReader,
        Limit::RateLimit,
        Limit::Quota,
        Limit::BatchItems,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Limit::Connections => "max_connections",
            Limit::ConnectionsPerIp => "max_connections_per_ip",
            Limit::Sessions => "max_sessions",
            Limit::InFlight => "max_in_flight_per_session",
            Limit::SseBuffer => "sse_buffer_bytes",
            Limit::SlowReader => "write_timeout_ms",
            Limit::RateLimit => "rate_limit",
            Limit::Quota => "quota",
            Limit::BatchItems => "max_batch_items",
        }
    }

    fn index(self) -> usize {
        Limit::ALL.iter().position(|l| *l == self).unwrap_or(0)
    }
}

/// Gateway-wide limit state: hit counters, open connections, connections per client IP.
pub struct Limits {
    hits: [AtomicU64; 9],
    tls_failures: AtomicU64,
    open: AtomicUsize,
    per_ip: DashMap<IpAddr, usize>,
    per_ip_cap: usize,
    per_worker_cap: usize,
}

impl Limits {
    /// Limits with at most `per_worker` connections per worker and `per_ip` per client
    /// address (0: no per-address cap).
    pub fn new(per_worker: usize, per_ip: usize) -> Self {
        Self {
            hits: Default::default(),
            tls_failures: AtomicU64::new(0),
            open: AtomicUsize::new(0),
            per_ip: DashMap::new(),
            per_ip_cap: per_ip,
            per_worker_cap: per_worker.max(1),
        }
    }

    /// Counts one hit of `l`.
    pub fn hit(&self, l: Limit) {
        self.hits[l.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Hits of `l` so far.
    pub fn hits(&self, l: Limit) -> u64 {
        self.hits[l.index()].load(Ordering::Relaxed)
    }

    /// Counts a client TLS handshake that failed or timed out.
    pub fn tls_handshake_failed(&self) {
        self.tls_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Client TLS handshakes failed so far.
    pub fn tls_handshake_failures(&self) -> u64 {
        self.tls_failures.load(Ordering::Relaxed)
    }

    /// Client connections open on all workers.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Admits a new connection from `ip` on a worker holding `worker` connections; the
    /// permit releases its place when dropped. Err names the limit it hit (counted).
    pub fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        worker: &Rc<Cell<usize>>,
    ) -> Result<ConnPermit, Limit> {
        if worker.get() >= self.per_worker_cap {
            self.hit(Limit::Connections);
            return Err(Limit::Connections);
        }
        let ip = if self.per_ip_cap > 0 {
            let mut n = self.per_ip.entry(ip).or_insert(0);
            if *n >= self.per_ip_cap {
                drop(n);
                self.hit(Limit::ConnectionsPerIp);
                return Err(Limit::ConnectionsPerIp);
            }
            *n += 1;
            Some(ip)
        } else {
            None
        };
        worker.set(worker.get() + 1);
        self.open.fetch_add(1, Ordering::Relaxed);
        Ok(ConnPermit {
            limits: self.clone(),
            ip,
            worker: worker.clone(),
        })
    }

    /// Addresses currently counted per IP (for leak checks: empty when no client is
    /// connected).
    pub fn tracked_addresses(&self) -> usize {
        self.per_ip.len()
    }

    /// Appends the limit metrics in the Prometheus text format.
    pub fn prometheus(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = writeln!(out, "# HELP mcpgw_limit_hits_total Requests, connections or messages refused by a configured limit.\n# TYPE mcpgw_limit_hits_total counter");
        for l in Limit::ALL {
            let _ = writeln!(
                out,
                "mcpgw_limit_hits_total{{limit=\"{}\"}} {}",
                l.label(),
                self.hits(l)
            );
        }
        let _ = writeln!(out, "# HELP mcpgw_tls_handshake_failures_total Client TLS handshakes that failed or timed out.\n# TYPE mcpgw_tls_handshake_failures_total counter\nmcpgw_tls_handshake_failures_total {}", self.tls_handshake_failures());
        let _ = writeln!(out, "# HELP mcpgw_connections_open Client connections open.\n# TYPE mcpgw_connections_open gauge\nmcpgw_connections_open {}", self.open_connections());
    }
}

/// A connection's place under the limits, given back on drop.
pub struct ConnPermit {
    limits: Arc<Limits>,
    ip: Option<IpAddr>,
    worker: Rc<Cell<usize>>,
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        self.worker.set(self.worker.get().saturating_sub(1));
        self.limits.open.fetch_sub(1, Ordering::Relaxed);
        if let Some(ip) = self.ip {
            self.limits.per_ip.remove_if_mut(&ip, |_, n| {
                *n = n.saturating_sub(1);
                *n == 0
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_worker_and_per_ip_and_releases() {
        let l = Arc::new(Limits::new(3, 2));
        let w = Rc::new(Cell::new(0));
        let a: IpAddr = "127.0.0.2".parse().expect("ip");
        let b: IpAddr = "::1".parse().expect("ip");
        let p1 = l.admit(a, &w).expect("first");
        let p2 = l.admit(a, &w).expect("second");
        assert_eq!(l.admit(a, &w).err(), Some(Limit::ConnectionsPerIp));
        let p3 = l.admit(b, &w).expect("other address");
        assert_eq!(l.admit(b, &w).err(), Some(Limit::Connections));
        assert_eq!(l.open_connections(), 3);
        drop((p1, p2, p3));
        assert_eq!(w.get(), 0);
        assert_eq!(l.open_connections(), 0);
        assert_eq!(l.tracked_addresses(), 0, "no address left counted");
        assert_eq!(l.hits(Limit::ConnectionsPerIp), 1);
        assert_eq!(l.hits(Limit::Connections), 1);
        let _p = l.admit(a, &w).expect("admitted again");
    }
}
