//! A worker's idle connections to HTTP upstreams, by address: plain TCP or TLS.

use std::{cell::RefCell, collections::HashMap, time::Duration};

use bytes::{Bytes, BytesMut};
use monoio::net::TcpStream;

use crate::net::{tls::TlsStream, Stream};

/// A connection to an HTTP upstream: plain TCP, or TLS for `https://` URLs.
pub enum Conn {
    /// `http://`.
    Plain(Plain),
    /// `https://` (boxed: the TLS state is large, and a plain connection should not carry it).
    Tls(Box<TlsStream>),
    /// An in-process upstream with no socket, for the whole-call benchmarks ([`crate::bench`]).
    #[cfg(any(test, feature = "bench"))]
    Memory(Box<crate::bench::MemoryUpstream>),
}

/// A plain TCP connection to an upstream and what has been written on it: enough to tell,
/// when it ends before an answer, whether the upstream's TCP took any of the last request
/// ([`Conn::reached`]).
pub struct Plain {
    tcp: TcpStream,
    /// Bytes the peer acknowledges once everything written so far has arrived (Linux counts
    /// the SYN as one, so this starts at what the kernel reported when it was made); `None`
    /// when that is not known (a kernel without `tcpi_bytes_acked`, or a write that failed
    /// part-way).
    acked_when_all_in: Option<u64>,
}

impl Plain {
    /// A connection just made.
    pub(super) fn new(tcp: TcpStream) -> Self {
        use std::os::fd::AsRawFd;
        let acked_when_all_in = crate::runtime::sys::tcp_progress(tcp.as_raw_fd()).map(|p| p.acked);
        Self {
            tcp,
            acked_when_all_in,
        }
    }

    /// After a write: `Some(n)` bytes went; `None`, it failed, and how many went is not
    /// known.
    fn written(&mut self, n: Option<usize>) {
        self.acked_when_all_in = self.acked_when_all_in.zip(n).map(|(a, n)| a + n as u64);
    }
}

/// Whether the upstream's TCP took any of a request written on a connection that then ended
/// before any byte of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reached {
    /// It acknowledged some of it, or reset the connection in a way a closed socket does
    /// not: the upstream may have read it.
    Yes,
    /// A socket the upstream had closed refused all of it: nothing read it.
    No,
    /// Not known (yet).
    Unknown,
}

impl Conn {
    /// The socket under it (none for an in-process upstream).
    pub(super) fn fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        match self {
            Conn::Plain(c) => Some(c.tcp.as_raw_fd()),
            Conn::Tls(t) => Some(t.tcp().as_raw_fd()),
            #[cfg(any(test, feature = "bench"))]
            Conn::Memory(_) => None,
        }
    }

    /// Marks what has been written so far: [`Conn::reached`] then asks about what is
    /// written after it.
    pub(super) fn mark(&self) -> Option<u64> {
        match self {
            Conn::Plain(p) => p.acked_when_all_in,
            _ => None,
        }
    }

    /// Whether the upstream's TCP took any of what was written after `mark`, as far as the
    /// kernel knows now, and the connection's round-trip time (microseconds). `read_error`:
    /// the error the read of the answer ended with, if any.
    ///
    /// [`Reached::No`] needs three things: none of it acknowledged, the connection reset,
    /// and the reset come after the upstream's FIN (the kernel then reports `EPIPE`, where a
    /// reset of an open connection is `ECONNRESET`). The last rules out a server that read
    /// the request and then aborted the connection before its delayed ACK went out: that
    /// reset also acknowledges nothing, but it is not what a closed socket answers. What is
    /// left is a socket the upstream had closed, or shut for sending, before the request
    /// came; one that shut its sending side cannot answer, and reads only to drop what comes
    /// (a lingering close).
    ///
    /// Only plain TCP connections can tell; TLS ones and unmarked ones answer
    /// [`Reached::Unknown`].
    pub(super) fn reached(&self, mark: Option<u64>, read_error: Option<i32>) -> (Reached, u32) {
        use std::os::fd::AsRawFd;
        let (Conn::Plain(p), Some(all_before)) = (self, mark) else {
            return (Reached::Unknown, 0);
        };
        let fd = p.tcp.as_raw_fd();
        match crate::runtime::sys::tcp_progress(fd) {
            Some(t) if t.acked > all_before => (Reached::Yes, t.rtt_us),
            Some(t) if t.closed => {
                let after_fin = read_error == Some(libc::EPIPE)
                    || crate::runtime::sys::take_socket_error(fd) == Some(libc::EPIPE);
                (if after_fin { Reached::No } else { Reached::Yes }, t.rtt_us)
            }
            Some(t) => (Reached::Unknown, t.rtt_us),
            None => (Reached::Unknown, 0),
        }
    }
}

impl Stream for Conn {
    async fn read_more(&mut self, buf: &mut BytesMut) -> std::io::Result<usize> {
        match self {
            Conn::Plain(c) => c.tcp.read_more(buf).await,
            Conn::Tls(t) => t.read_more(buf).await,
            #[cfg(any(test, feature = "bench"))]
            Conn::Memory(m) => m.read_more(buf).await,
        }
    }

    async fn readable(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(c) => Stream::readable(&mut c.tcp).await,
            Conn::Tls(t) => t.readable().await,
            #[cfg(any(test, feature = "bench"))]
            Conn::Memory(m) => m.readable().await,
        }
    }

    async fn write_all(&mut self, buf: Bytes) -> std::io::Result<()> {
        match self {
            Conn::Plain(c) => {
                let n = buf.len();
                let r = Stream::write_all(&mut c.tcp, buf).await;
                c.written(r.is_ok().then_some(n));
                r
            }
            Conn::Tls(t) => t.write_all(buf).await,
            #[cfg(any(test, feature = "bench"))]
            Conn::Memory(m) => m.write_all(buf).await,
        }
    }

    fn write_now(&mut self, parts: &crate::net::Segments) -> std::io::Result<usize> {
        match self {
            Conn::Plain(c) => {
                let r = c.tcp.write_now(parts);
                c.written(r.as_ref().ok().copied());
                r
            }
            Conn::Tls(t) => t.write_now(parts),
            #[cfg(any(test, feature = "bench"))]
            Conn::Memory(m) => m.write_now(parts),
        }
    }

    async fn write_segments(&mut self, parts: crate::net::Segments) -> std::io::Result<()> {
        match self {
            Conn::Plain(c) => {
                let n = parts.len();
                let r = c.tcp.write_segments(parts).await;
                c.written(r.is_ok().then_some(n));
                r
            }
            Conn::Tls(t) => t.write_segments(parts).await,
            #[cfg(any(test, feature = "bench"))]
            Conn::Memory(m) => m.write_segments(parts).await,
        }
    }

    async fn close(&mut self) {
        match self {
            Conn::Plain(c) => c.tcp.close().await,
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
/// exchange allocates none), when it was parked, and the bytes its buffer counts against
/// [`LARGE_BUDGET`] (0 for one of at most [`MAX_KEPT`]).
type Parked = (Conn, BytesMut, std::time::Instant, usize);

/// Parked connections by pool key, oldest first. Looked up twice per call by keys the
/// configuration fixed: a fast hasher.
type Idle = HashMap<String, Vec<Parked>, foldhash::fast::RandomState>;

/// Per-worker idle connections, by upstream address (and TLS settings).
#[derive(Default)]
pub struct Pool {
    /// Per pool key, oldest first; each with the time it was parked.
    idle: RefCell<Idle>,
    /// Bytes of the large buffers parked connections keep (each over [`MAX_KEPT`]).
    large: std::cell::Cell<usize>,
}

/// Most idle connections kept per address and worker.
const MAX_IDLE: usize = 64;

/// A plain connection idle longer than this is looked at (`MSG_PEEK`) before it is reused;
/// one idle for less is not. Servers close idle keep-alive connections after seconds
/// (Node and uvicorn 5 s, Apache 5 s with a lingering close that reads and drops what
/// arrives, nginx 75 s); one that closes sooner than this without `Connection: close` is
/// caught after the write instead, where only a request its TCP refused is sent again.
const LOOK_AFTER: Duration = Duration::from_millis(100);

/// Largest read buffer always kept with a parked connection, bytes.
pub(super) const MAX_KEPT: usize = 64 << 10;

/// Most bytes of larger read buffers kept by a worker's parked connections together. Under
/// a load of large answers each connection then reads the next into the block the last one
/// used, where a fresh block per answer costs the kernel's copies out of it about a third
/// more (measured at 256 KiB with 16 connections); the budget bounds what idle connections
/// hold.
pub(super) const LARGE_BUDGET: usize = 8 << 20;

impl Pool {
    /// The most recently parked connection to `addr` that is still usable (one the upstream
    /// closed while it sat idle is dropped here, before a request is written to it; for TLS,
    /// unread bytes such as a close_notify count as unusable too).
    ///
    /// Among connections parked with a large buffer, the most recent one whose buffer is free
    /// again (the answer last read into it has been written and dropped) comes first: the
    /// next answer then reuses its block whole, where the most recent connection's block may
    /// still hold an answer being written to a client.
    pub(super) fn take(&self, addr: &str) -> Option<(Conn, BytesMut)> {
        let mut idle = self.idle.borrow_mut();
        let v = idle.get_mut(addr)?;
        let free = v
            .iter_mut()
            .rposition(|(_, buf, _, large)| *large > 0 && buf.try_reclaim(*large));
        if let Some(i) = free.filter(|&i| i + 1 < v.len()) {
            let parked = v.remove(i);
            v.push(parked);
        }
        while let Some((c, buf, at, large)) = v.pop() {
            self.large.set(self.large.get() - large);
            // A plain connection parked a moment ago is taken as it is: under load that is
            // every one, and a look costs a system call per request. If the upstream closed
            // it all the same, the exchange learns from the kernel whether the request
            // reached the upstream (see `Conn::reached`).
            let recent = matches!(c, Conn::Plain(_)) && at.elapsed() < LOOK_AFTER;
            if recent || !c.fd().is_some_and(crate::runtime::sys::idle_conn_unusable) {
                return Some((c, buf));
            }
        }
        None
    }

    /// Parks `conn` with its read buffer `buf`, emptied (the answer read into it may still
    /// be in use: the next exchange takes the allocation back if it is free by then).
    /// `peak` is the most the buffer held room for during the exchange: one that grew past
    /// [`MAX_KEPT`] is kept only within the worker's [`LARGE_BUDGET`], else dropped here
    /// (the connection is parked with no buffer).
    pub(crate) fn put(&self, addr: &str, conn: Conn, mut buf: BytesMut, peak: usize) {
        buf.clear();
        let mut large = 0;
        if peak.max(buf.capacity()) > MAX_KEPT {
            large = peak.max(buf.capacity());
            if self.large.get() + large > LARGE_BUDGET {
                (buf, large) = (BytesMut::new(), 0);
            }
        }
        let mut idle = self.idle.borrow_mut();
        // The key is copied only the first time an address is seen, not on every put.
        if !idle.contains_key(addr) {
            idle.insert(addr.to_string(), Vec::new());
        }
        if let Some(v) = idle.get_mut(addr).filter(|v| v.len() < MAX_IDLE) {
            self.large.set(self.large.get() + large);
            v.push((conn, buf, std::time::Instant::now(), large));
        }
    }

    /// Closes connections idle longer than `max_idle` (the most recently used are reused
    /// first, so the ones left idle are the surplus of a past burst).
    pub fn sweep(&self, max_idle: Duration) {
        let mut idle = self.idle.borrow_mut();
        let mut freed = 0;
        for v in idle.values_mut() {
            v.retain(|(_, _, at, large)| {
                let keep = at.elapsed() < max_idle;
                if !keep {
                    freed += large;
                }
                keep
            });
        }
        self.large.set(self.large.get() - freed);
        idle.retain(|_, v| !v.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use std::{cell::Cell, rc::Rc};

    use super::*;

    fn conn() -> Conn {
        Conn::Memory(Box::new(crate::bench::MemoryUpstream::new(
            16,
            Rc::new(Cell::new(0)),
        )))
    }

    #[test]
    fn large_buffers_are_kept_within_the_budget() {
        let pool = Pool::default();
        let big = 1 << 20;
        let n = LARGE_BUDGET / big;
        for _ in 0..n + 2 {
            pool.put("a", conn(), BytesMut::with_capacity(big), big);
        }
        // A small buffer is always kept, whatever the budget says.
        pool.put("a", conn(), BytesMut::with_capacity(4096), 4096);
        assert_eq!(pool.large.get(), n * big);
        let kept: Vec<usize> = std::iter::from_fn(|| pool.take("a"))
            .map(|(_, b)| b.capacity())
            .collect();
        assert_eq!(kept.len(), n + 3);
        // The ones within the budget, the two over it (parked without a buffer), the small.
        assert_eq!(kept.iter().filter(|&&c| c >= big).count(), n);
        assert_eq!(kept.iter().filter(|&&c| c == 0).count(), 2);
        assert_eq!(
            kept.iter()
                .filter(|&&c| (4096..=MAX_KEPT).contains(&c))
                .count(),
            1
        );
        assert_eq!(pool.large.get(), 0, "taking gives the budget back");
        pool.put("a", conn(), BytesMut::with_capacity(big), big);
        pool.sweep(Duration::ZERO);
        assert_eq!(pool.large.get(), 0, "sweeping gives it back too");
        assert!(pool.take("a").is_none());
    }

    #[test]
    fn a_connection_whose_large_buffer_is_free_comes_first() {
        let pool = Pool::default();
        let big = 256 << 10;
        // The older connection's last answer is gone; the newer one's is still in use.
        let mut free = BytesMut::with_capacity(big);
        free.resize(big - 100, b'x');
        drop(free.split_to(big - 100).freeze());
        pool.put("a", conn(), free, big);
        let mut busy = BytesMut::with_capacity(big);
        busy.resize(big - 100, b'y');
        let answer = busy.split_to(big - 100).freeze();
        pool.put("a", conn(), busy, big);
        let (_, first) = pool.take("a").expect("a connection");
        assert!(
            first.capacity() >= big,
            "the free block, whole: {}",
            first.capacity()
        );
        let (_, second) = pool.take("a").expect("the other");
        assert!(second.capacity() < big);
        drop(answer);
    }
}
