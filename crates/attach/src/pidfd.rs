//! Taking a file descriptor out of another process (`pidfd_getfd`, Linux
//! 5.6+) and the few socket queries the channel to an injected bootstrap
//! needs (peer credentials, a non-consuming peek).
//!
//! `pidfd_getfd` needs the same permission as ptrace
//! (`PTRACE_MODE_ATTACH_REALCREDS`, see `man 2 pidfd_getfd`); it duplicates
//! the file description into this process and leaves the target's descriptor
//! untouched.

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use nix::sys::socket::{self, sockopt, MsgFlags};

/// `PIDFD_THREAD` (linux/pidfd.h, Linux 6.9+): a pidfd for a thread that
/// is not its process's main one.
const PIDFD_THREAD: libc::c_long = libc::O_EXCL as libc::c_long;

/// A pidfd for `pid` (`pidfd_open(2)`, Linux 5.3+); for a thread id that
/// is not a process's (the live thread that stands for a process whose
/// main thread has exited, see [`crate::procinfo::live_member`]), a
/// thread pidfd, through which `pidfd_getfd` reaches the same descriptors.
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    let open = |flags: libc::c_long| {
        // SAFETY: pidfd_open takes a pid and flags by value and returns a
        // new descriptor or -1; no memory of ours is passed.
        unsafe { libc::syscall(libc::SYS_pidfd_open, pid, flags) }
    };
    let mut fd = open(0);
    // Not a process's id: EINVAL before Linux 6.9, ENOENT since.
    if fd < 0
        && matches!(
            io::Error::last_os_error().raw_os_error(),
            Some(libc::EINVAL | libc::ENOENT)
        )
    {
        fd = open(PIDFD_THREAD);
    }
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us and nothing
    // else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// A duplicate, in this process, of descriptor `target_fd` of the process
/// behind `pidfd` (`pidfd_getfd(2)`). The duplicate has `FD_CLOEXEC` set.
pub fn pidfd_getfd(pidfd: &impl AsFd, target_fd: i32) -> io::Result<OwnedFd> {
    let raw = pidfd.as_fd().as_raw_fd();
    // SAFETY: pidfd_getfd takes two descriptors numbers and flags (must be
    // 0) by value and returns a new descriptor or -1; `raw` is borrowed from
    // a live pidfd for the duration of the call.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, raw, target_fd, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us and nothing
    // else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `(pid, uid)` of the process at the other end of a unix socket
/// (`SO_PEERCRED`, as the kernel recorded it at connect time).
pub fn peer_credentials(sock: &impl AsFd) -> io::Result<(i32, u32)> {
    let cred = socket::getsockopt(sock, sockopt::PeerCredentials).map_err(io::Error::from)?;
    Ok((cred.pid(), cred.uid()))
}

/// True if `sock` is a unix stream socket (anything else is not a channel
/// end a bootstrap could have made).
pub fn is_unix_stream(sock: &impl AsFd) -> bool {
    let ty = socket::getsockopt(sock, sockopt::SockType);
    let addr = socket::getsockname::<socket::UnixAddr>(sock.as_fd().as_raw_fd());
    matches!(ty, Ok(socket::SockType::Stream)) && addr.is_ok()
}

/// Copies up to `buf.len()` bytes already queued on `sock` without
/// consuming them and without blocking (`MSG_PEEK | MSG_DONTWAIT`). Returns
/// 0 when nothing is queued.
pub fn peek(sock: &impl AsFd, buf: &mut [u8]) -> io::Result<usize> {
    match socket::recv(
        sock.as_fd().as_raw_fd(),
        buf,
        MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
    ) {
        Ok(n) => Ok(n),
        Err(nix::errno::Errno::EAGAIN) => Ok(0),
        Err(e) => Err(e.into()),
    }
}
