//! The few system calls the harness makes outside its IO runtime: clock ticks, the fd limit
//! and the timerfd behind precise open-loop waits. The only module allowed `unsafe`; each
//! block says why it is sound.
//!
//! Nothing here is on a hot path except [`arm_timer`], called once per paced send.
#![allow(unsafe_code)]

use std::{
    io,
    os::fd::{FromRawFd, OwnedFd, RawFd},
    time::Duration,
};

/// Clock ticks per second of `/proc/PID/stat` times (`sysconf(_SC_CLK_TCK)`, usually 100).
pub fn clock_ticks() -> u64 {
    // SAFETY: sysconf takes no pointers and has no side effects.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if n > 0 {
        n as u64
    } else {
        100
    }
}

/// Sets the `RLIMIT_NOFILE` soft limit to the hard limit; returns the new soft limit.
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

/// A new non-blocking `CLOCK_MONOTONIC` timerfd, disarmed.
///
/// It is returned typed as a `std::net::TcpStream` only so that monoio can register it and
/// wait for it to become readable (io_uring `POLL_ADD`, or epoll): monoio's own timers round
/// up to whole milliseconds, too coarse to pace requests a few microseconds apart. The caller
/// must never read, write or set socket options through it; it only polls and closes it.
pub fn timerfd() -> io::Result<std::net::TcpStream> {
    // SAFETY: plain syscall with constant arguments, no pointers.
    let fd = unsafe {
        libc::timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by timerfd_create, is valid and owned by nobody else.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok(std::net::TcpStream::from(owned))
}

/// Arms timerfd `fd` to expire once, `after` from now (at least 1 ns: zero would disarm it).
/// Re-arming also clears a pending expiry, so the fd is unreadable until the new one.
pub fn arm_timer(fd: RawFd, after: Duration) -> io::Result<()> {
    let after = after.max(Duration::from_nanos(1));
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: after.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_nsec: after.subsec_nanos() as libc::c_long,
        },
    };
    // SAFETY: `spec` is a valid itimerspec that outlives the call; a null old_value is allowed.
    if unsafe { libc::timerfd_settime(fd, 0, &spec, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
