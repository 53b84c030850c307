//! A worker's idle connections to HTTP upstreams, by address: plain TCP or TLS.

use std::{cell::RefCell, collections::HashMap, time::Duration};

use bytes::{Bytes, BytesMut};
use monoio::net::TcpStream;

use crate::net::{tls::TlsStream, Stream};

/// A connection to an HTTP upstream: plain TCP, or TLS for `https://` URLs.
pub enum Conn {
    /// `http://`.
    Plain(TcpStream),
    /// `https://` (boxed: the TLS state is large, and a plain connection should not carry it).
    Tls(Box<TlsStream>),
    /// An in-process upstream with no socket, for the whole-call benchmarks ([`crate::bench`]).
    #[cfg(any(test, feature = "bench"))]
    Memory(Box<crate::bench::MemoryUpstream>),
}

impl Conn {
    /// The socket under it (none for an in-process upstream).
    pub(super) fn fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        match self {
            Conn::Plain(c) => Some(c.as_raw_fd()),
            Conn::Tls(t) => Some(t.tcp().as_raw_fd()),
            #[cfg(any(test, feature = "bench"))]
            Conn::Memory(_) => None,
        }
    }
}

impl Stream for Conn {
    async fn read_more(&mut self, buf: &mut BytesMut) -> std::io::Result<usize> {
        match self {
            Conn::Plain(c) => c.read_more(buf).await,
            Conn::Tls(t) => t.read_more(buf).await,
            #[cfg(any(test, feature = "bench"))]
            Conn::Memory(m) => m.read_more(buf).await,
        }
    }

    async fn readable(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(c) => Stream::readable(c).await,
            Conn::Tls(t) => t.readable().await,
            #[cfg(any(test, feature = "bench"))]
            Conn::Memory(m) => m.readable().await,
        }
    }

    async fn write_all(&mut self, buf: Bytes) -> std::io::Result<()> {
        match self {
            Conn::Plain(c) => Stream::write_all(c, buf).await,
            Conn::Tls(t) => t.write_all(buf).await,
            #[cfg(any(test, feature = "bench"))]
            Conn::Memory(m) => m.write_all(buf).await,
        }
    }

    async fn write_segments(&mut self, parts: crate::net::Segments) -> std::io::Result<()> {
        match self {
            Conn::Plain(c) => c.write_segments(parts).await,
            Conn::Tls(t) => t.write_segments(parts).await,
            #[cfg(any(test, feature = "bench"))]
            Conn::Memory(m) => m.write_segments(parts).await,
        }
    }

    async fn close(&mut self) {
        match self {
            Conn::Plain(c) => c.close().await,
            Conn::Tls(t) => t.close().await,
            #[cfg(any(test, feature = "bench"))]
            Conn::Memory(m) => m.close().await,
        }
    }

    fn peer_identity(&self) -> Option<&str> {
        None
    }
}

/// A parked connection: the connection, its read buffer (kept for the next answer, so an
/// exchange allocates none), and when it was parked.
type Parked = (Conn, BytesMut, std::time::Instant);

/// Parked connections by pool key, oldest first. Looked up twice per call by keys the
/// configuration fixed: a fast hasher.
type Idle = HashMap<String, Vec<Parked>, foldhash::fast::RandomState>;

/// Per-worker idle connections, by upstream address (and TLS settings).
#[derive(Default)]
pub struct Pool {
    /// Per pool key, oldest first; each with the time it was parked.
    idle: RefCell<Idle>,
}

/// Most idle connections kept per address and worker.
const MAX_IDLE: usize = 64;

/// Largest read buffer kept with a parked connection, bytes.
pub(super) const MAX_KEPT: usize = 64 << 10;

impl Pool {
    /// The most recently parked connection to `addr` that is still usable (one the upstream
    /// closed while it sat idle is dropped here, before a request is written to it; for TLS,
    /// unread bytes such as a close_notify count as unusable too).
    pub(super) fn take(&self, addr: &str) -> Option<(Conn, BytesMut)> {
        let mut idle = self.idle.borrow_mut();
        let v = idle.get_mut(addr)?;
        while let Some((c, buf, _)) = v.pop() {
            if !c.fd().is_some_and(crate::runtime::sys::idle_conn_unusable) {
                return Some((c, buf));
            }
        }
        None
    }

    /// Parks `conn` with its read buffer `buf`, emptied (the answer read into it may still
    /// be in use: the next exchange takes the allocation back if it is free by then). The
    /// caller passes an empty `BytesMut::new()` instead of a buffer a large answer grew
    /// ([`MAX_KEPT`]): a parked connection must not keep a large allocation alive.
    pub(crate) fn put(&self, addr: &str, conn: Conn, mut buf: BytesMut) {
        buf.clear();
        let mut idle = self.idle.borrow_mut();
        // The key is copied only the first time an address is seen, not on every put.
        if !idle.contains_key(addr) {
            idle.insert(addr.to_string(), Vec::new());
        }
        if let Some(v) = idle.get_mut(addr).filter(|v| v.len() < MAX_IDLE) {
            v.push((conn, buf, std::time::Instant::now()));
        }
    }

    /// Closes connections idle longer than `max_idle` (the most recently used are reused
    /// first, so the ones left idle are the surplus of a past burst).
    pub fn sweep(&self, max_idle: Duration) {
        let mut idle = self.idle.borrow_mut();
        for v in idle.values_mut() {
            v.retain(|(_, _, at)| at.elapsed() < max_idle);
        }
        idle.retain(|_, v| !v.is_empty());
    }
}
