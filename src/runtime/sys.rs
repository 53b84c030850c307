//! The few system calls the gateway makes outside its IO runtime, and the recycled heap
//! room of request futures ([`recycle`]). The only module allowed `unsafe` (with its
//! child); each block says why it is sound.
#![allow(unsafe_code)]

pub mod recycle;

use std::{io, os::unix::process::CommandExt, process::Command};

/// Makes a child process receive SIGKILL when the gateway dies, however it dies, so that no
/// stdio upstream outlives it (Linux `PR_SET_PDEATHSIG`).
pub fn die_with_parent(cmd: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec; it calls only `prctl` and
    // `getppid`, which are async-signal-safe, and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl.
            if libc::getppid() == 1 {
                return Err(io::Error::other("parent exited"));
            }
            Ok(())
        });
    }
}

/// Sets `RLIMIT_NOFILE` soft limit to the hard limit; returns the new soft limit.
pub fn raise_fd_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for getrlimit to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: `lim` is a valid rlimit with cur <= max.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(lim.rlim_cur)
}

/// Whether an idle connection can no longer carry a request: the peer closed it (or sent
/// something unasked, or it failed). Looks without reading or waiting (`MSG_PEEK |
/// MSG_DONTWAIT`); "nothing to read yet" is the only healthy answer.
pub fn idle_conn_unusable(fd: std::os::fd::RawFd) -> bool {
    let mut b = [0u8; 1];
    // SAFETY: `fd` is an open socket owned by the caller for the duration of the call; the
    // buffer is a live 1-byte array whose length is passed.
    let n = unsafe {
        libc::recv(
            fd,
            b.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error().raw_os_error();
        return !matches!(e, Some(libc::EAGAIN) | Some(libc::EINTR));
    }
    true
}

/// What a connection's TCP has done with the bytes written on it, as the kernel reports it
/// (`TCP_INFO`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpProgress {
    /// Bytes the peer has acknowledged (`tcpi_bytes_acked`; Linux counts the SYN as one).
    pub acked: u64,
    /// The connection was reset or has otherwise ended (`TCP_CLOSE`).
    pub closed: bool,
    /// Smoothed round-trip time, microseconds.
    pub rtt_us: u32,
}

/// `TCP_CLOSE` of `include/net/tcp_states.h`.
const TCP_CLOSE: u8 = 7;

/// `fd`'s [`TcpProgress`]; `None` when the kernel does not report acknowledged bytes (before
/// Linux 4.1) or the call fails.
pub fn tcp_progress(fd: std::os::fd::RawFd) -> Option<TcpProgress> {
    // SAFETY: tcp_info is plain old data; all zeroes is a valid value.
    let zero: libc::tcp_info = unsafe { std::mem::zeroed() };
    let (info, len) = socket_option(fd, libc::IPPROTO_TCP, libc::TCP_INFO, zero)?;
    if len < std::mem::offset_of!(libc::tcp_info, tcpi_bytes_acked) + 8 {
        return None;
    }
    Some(TcpProgress {
        acked: info.tcpi_bytes_acked,
        closed: info.tcpi_state == TCP_CLOSE,
        rtt_us: info.tcpi_rtt,
    })
}

/// The error pending on socket `fd` (`SO_ERROR`, which reading clears), if any.
pub fn take_socket_error(fd: std::os::fd::RawFd) -> Option<i32> {
    let (err, _) = socket_option(fd, libc::SOL_SOCKET, libc::SO_ERROR, 0 as libc::c_int)?;
    (err != 0).then_some(err)
}

/// Socket option `name` at `level` of `fd`, read over `value` (a plain-old-data type the
/// option is, or begins like), with the number of bytes the kernel wrote; `None` if the
/// call fails.
fn socket_option<T: Copy>(
    fd: std::os::fd::RawFd,
    level: libc::c_int,
    name: libc::c_int,
    mut value: T,
) -> Option<(T, usize)> {
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `fd` is an open socket owned by the caller for the duration of the call;
    // `value` is a live `T` whose size is passed in `len`, and the kernel writes at most
    // `len` bytes of plain data into it (and the length it wrote into `len`).
    let r = unsafe { libc::getsockopt(fd, level, name, (&mut value as *mut T).cast(), &mut len) };
    (r == 0).then_some((value, len as usize))
}

/// Asks the kernel to acknowledge the next data on `fd` at once (Linux `TCP_QUICKACK`; the
/// kernel clears it again after use, so it is set before each read that waits on a peer).
///
/// Why: an upstream that writes one answer in several small writes (an SSE event, then the
/// end of the chunked body) is held back by its Nagle algorithm until the previous segment is
/// acknowledged, and a reused connection delays that ACK by up to 40 ms. Errors are ignored:
/// this is an optimisation, never required for correctness.
pub fn quickack(fd: std::os::fd::RawFd) {
    let one: libc::c_int = 1;
    // SAFETY: `fd` is an open socket owned by the caller for the duration of the call, and
    // `one` is a live c_int whose size is passed as the option length.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            std::ptr::addr_of!(one).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// The iovec arrays of `writev`s in flight are kept here between writes, so that a write
/// allocates nothing.
type Iovecs = Box<[libc::iovec; crate::net::MAX_SEGMENTS]>;

thread_local! {
    static IOVECS: std::cell::RefCell<Vec<Iovecs>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// [`Segments`](crate::net::Segments) as a `writev`'s buffers: the parts, and an `iovec`
/// for each of them in a heap array, made when the value is built.
pub struct IoSlices {
    parts: crate::net::Segments,
    iov: Iovecs,
    n: usize,
}

impl IoSlices {
    /// The iovecs of `parts` not yet written.
    pub fn new(parts: crate::net::Segments) -> Self {
        let mut iov = IOVECS.with(|v| v.borrow_mut().pop()).unwrap_or_else(|| {
            Box::new(
                [libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                }; crate::net::MAX_SEGMENTS],
            )
        });
        let n = fill_iovecs(&mut iov[..], &parts);
        Self { parts, iov, n }
    }

    /// The parts back (to advance past what was written); the iovec array is kept for the
    /// next write.
    pub fn into_segments(self) -> crate::net::Segments {
        IOVECS.with(|v| {
            let mut v = v.borrow_mut();
            if v.len() < 64 {
                v.push(self.iov);
            }
        });
        self.parts
    }
}

// SAFETY: each of the first `n` iovecs points to the bytes of a part this value owns (a
// `Bytes`, whose heap data does not move when the value does, and which the value keeps
// alive until the operation gives it back or drops it), with that part's length; the kernel
// only reads them (writev). The iovec array is on the heap, so its address does not change
// when the value moves into the operation, or when the operation moves before io_uring
// submits it (monoio submits queued entries later, when it parks).
unsafe impl monoio::buf::IoVecBuf for IoSlices {
    fn read_iovec_ptr(&self) -> *const libc::iovec {
        self.iov.as_ptr()
    }

    fn read_iovec_len(&self) -> usize {
        self.n
    }
}

/// Points the first iovecs of `iov` at the parts of `parts` not yet written; returns how many.
fn fill_iovecs(iov: &mut [libc::iovec], parts: &crate::net::Segments) -> usize {
    let mut n = 0;
    for (slot, p) in iov.iter_mut().zip(parts.iter()) {
        slot.iov_base = p.as_ptr().cast_mut().cast();
        slot.iov_len = p.len();
        n += 1;
    }
    n
}

/// Writes as much of `parts` as the socket `fd` takes now, without waiting: one `sendmsg`
/// with `MSG_DONTWAIT` (whether or not the socket is non-blocking) and `MSG_NOSIGNAL`.
/// Returns the bytes written; `WouldBlock` when the send buffer is full.
///
/// For large messages: the kernel copies them while they are still in this core's cache,
/// where a write queued to io_uring is copied only when the worker next enters the kernel,
/// after every other ready task has run (and, under load, pushed them out of the cache).
pub fn send_now(fd: std::os::fd::RawFd, parts: &crate::net::Segments) -> io::Result<usize> {
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; crate::net::MAX_SEGMENTS];
    let n = fill_iovecs(&mut iov, parts);
    // SAFETY: a zeroed msghdr is valid (no name, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = n;
    // SAFETY: `msg` points to `n` iovecs on this stack frame, each describing the bytes of
    // a part `parts` holds (borrowed for the whole call); the kernel only reads them.
    let sent = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
    match usize::try_from(sent) {
        Ok(sent) => Ok(sent),
        Err(_) => Err(io::Error::last_os_error()),
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::{Read, Write},
        net::{TcpListener, TcpStream},
        os::fd::AsRawFd,
    };

    use super::*;

    /// The kernel facts the pool's verdict on a closed connection rests on (loopback, where
    /// a reset comes back within the write).
    #[test]
    fn tcp_progress_tells_a_refused_request_from_an_acknowledged_one() {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut c = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        let (mut a, _) = l.accept().expect("accept");
        let fd = c.as_raw_fd();
        let start = tcp_progress(fd).expect("TCP_INFO").acked;
        assert_eq!(start, 1, "the SYN counts as one");
        c.write_all(b"first").expect("write");
        let mut got = [0u8; 5];
        a.read_exact(&mut got).expect("read");
        a.write_all(b"ok").expect("answer");
        let mut ok = [0u8; 2];
        c.read_exact(&mut ok).expect("read the answer");
        assert_eq!(tcp_progress(fd).expect("TCP_INFO").acked, start + 5);
        // The peer closes while the connection sits idle; a request written after that is
        // refused: nothing of it acknowledged, the connection reset after the FIN (EPIPE).
        drop(a);
        assert_eq!(c.read(&mut [0u8; 1]).expect("the FIN"), 0);
        c.write_all(b"second")
            .expect("a write into a closed peer succeeds");
        // Loopback delivers the reset within the write; a few yields, should it not.
        for _ in 0..10_000 {
            if tcp_progress(fd).expect("TCP_INFO").closed {
                break;
            }
            std::thread::yield_now();
        }
        let p = tcp_progress(fd).expect("TCP_INFO");
        assert!(p.closed, "reset");
        assert_eq!(
            p.acked,
            start + 5,
            "none of the second request acknowledged"
        );
        assert_eq!(take_socket_error(fd), Some(libc::EPIPE));
        assert_eq!(take_socket_error(fd), None, "reading the error clears it");
    }
}
