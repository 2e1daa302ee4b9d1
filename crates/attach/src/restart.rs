//! A stop of ours must not make a wait fail.
//!
//! `PTRACE_INTERRUPT` wakes a thread blocked in a syscall the way a signal
//! does. Most blocking syscalls then return `-ERESTART*`, and the kernel
//! restarts them after the stop: nothing shows. A few return plain
//! `-EINTR` (`man 7 signal`, "Interruption of system calls and library
//! functions by stop signals"): `rt_sigtimedwait`, the `epoll_wait`s,
//! `semop`/`semtimedop`, `io_getevents`, and socket calls on a socket with
//! `SO_RCVTIMEO`/`SO_SNDTIMEO`. The application would see a failure that
//! no signal of its own caused: Python 2.7's `epoll.poll` raises `IOError`
//! (EINTR), and CPython 3's `signal.sigtimedwait` returns a siginfo it
//! never filled when its deadline passed meanwhile.
//!
//! At the trap stop, such a thread shows `-EINTR` in its return register
//! while the kernel has not yet acted on it (it reports the stop from
//! `get_signal`, before it delivers a signal or restarts a syscall). We
//! change it into `-ERESTARTNOHAND`, the value the kernel gives the
//! restartable waits (`pause`, `select`), and so leave the choice to the
//! kernel at the resume, with the pending signals of that instant:
//! - a signal with a handler is delivered first: the handler's frame gets
//!   `-EINTR`, exactly as without us (a real signal keeps its EINTR, also
//!   one that arrives while we hold the thread);
//! - nothing to deliver: the syscall restarts with its arguments, as if
//!   the thread had been scheduled late. For each syscall listed,
//!   `-EINTR` means nothing was consumed (no event, signal, semaphore
//!   operation, datagram or byte was taken), so the restart finds what a
//!   thread that never left would have found.
//!
//! A restarted wait starts its relative timeout afresh: one that times out
//! returns later by the time it had already waited (what comes earlier
//! still ends it at once). No more than a late wake-up when the timeout is
//! short, the time a Python thread may wait for the GIL anyway after its
//! wait; a timer loop's long timeout, though, would fire late by up to all
//! of it. So by default ([`Restart::Within`]) only waits without a timeout
//! (restarting them is exact) or with one of at most 5 ms are restarted;
//! longer ones keep the EINTR, which CPython 3 retries with the time left
//! (PEP 475), as do event loops written in C. Where EINTR is an error to
//! the application (Python 2 raises it), [`Restart::Always`] restarts them
//! all: late rather than failed. A socket's timeout is not among the
//! call's arguments: by default its EINTR stays.
//!
//! Not listed: `connect` (restarting an interrupted connection attempt
//! fails with `EALREADY`), `recvmmsg`/`sendmmsg` (they may have done part
//! of their work), `io_uring_enter` (it may have submitted).
//!
//! The other way considered, leaving such threads running and reading
//! their stacks without a stop (checking `/proc/TID/syscall` afterwards),
//! is racy where this is not: the thread may return between the check and
//! the read, code may not be patched while an unheld thread could run it,
//! native unwinding needs its registers, and a seized thread must be
//! stopped to be detached in any case. Here every thread is held as
//! before, and the one decision is the kernel's own.
//!
//! One case stays as it was: a stop signal (SIGSTOP, SIGTSTP, …) pending
//! for the thread at our stop. Linux makes these waits fail with EINTR
//! after a job-control stop, and we leave that EINTR alone. A stop signal
//! sent while we hold the thread makes it restart instead.

use std::time::Duration;

use crate::arch::{Arch, Native, WaitTimeout};
use crate::ProcessMemory;

/// Which waits that a stop of ours cut short with EINTR are restarted
/// (see the module's text).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    /// Those without a timeout, or with one of at most this.
    Within(Duration),
    /// Every one: for a program to which EINTR is an error (Python 2).
    Always,
}

impl Default for Restart {
    fn default() -> Self {
        Restart::Within(Duration::from_millis(5))
    }
}

/// The stop signals' bits in a kernel sigset (bit `n-1` for signal `n`).
const STOP_SIGNALS: u64 = 1 << (libc::SIGSTOP - 1)
    | 1 << (libc::SIGTSTP - 1)
    | 1 << (libc::SIGTTIN - 1)
    | 1 << (libc::SIGTTOU - 1);

/// For `tid` of `pid`, just caught in a trap stop after it ran: if our
/// stop cut one of [`Arch::WAIT_ONLY`] short with `-EINTR`, make it
/// restart unless a handler runs first (see the module's text). Best
/// effort: when anything cannot be read, the thread keeps the kernel's
/// EINTR, as before this existed.
pub(crate) fn resume_waits(pid: i32, tid: i32, mem: &ProcessMemory, policy: Restart) -> bool {
    let Ok(mut r) = Native::get_regs(tid) else {
        return false;
    };
    let Some(nr) = Native::interrupted(&r) else {
        return false;
    };
    if !Native::WAIT_ONLY.contains(&nr) || stop_pending(pid, tid) {
        return false;
    }
    if let Restart::Within(most) = policy {
        let timeout = match Native::wait_timeout(&r) {
            WaitTimeout::Infinite => Some(Duration::ZERO),
            WaitTimeout::Millis(ms) => u64::try_from(ms).ok().map(Duration::from_millis),
            WaitTimeout::Timespec(at) => read_timespec(mem, at),
            WaitTimeout::Unknown => None,
        };
        if timeout.is_none_or(|t| t > most) {
            return false;
        }
    }
    Native::restart_unless_handled(&mut r);
    Native::set_regs(tid, &r).is_ok()
}

/// True if a stop signal is pending for the thread or its process (or if
/// that cannot be told).
fn stop_pending(pid: i32, tid: i32) -> bool {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")) else {
        return true;
    };
    let pending = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
    };
    match (pending("SigPnd:"), pending("ShdPnd:")) {
        (Some(own), Some(shared)) => (own | shared) & STOP_SIGNALS != 0,
        _ => true,
    }
}

/// A `struct timespec` of the target; `None` if unreadable or invalid.
fn read_timespec(mem: &ProcessMemory, at: u64) -> Option<Duration> {
    let b = mem.read_vec(at, 16).ok()?;
    let sec = u64::try_from(i64::from_le_bytes(b[..8].try_into().ok()?)).ok()?;
    let nsec = u32::try_from(i64::from_le_bytes(b[8..].try_into().ok()?)).ok()?;
    (nsec < 1_000_000_000).then(|| Duration::new(sec, nsec))
}
