//! Thin wrappers over the ptrace requests nix lacks (register sets sized by
//! the kernel, the signal mask) and over waitpid with a deadline. Every
//! errno is turned into an [`Error`] with meaning here.

use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::ptrace;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::{Error, Result};

/// `PTRACE_GETSIGMASK` / `PTRACE_SETSIGMASK` (linux/ptrace.h).
const PTRACE_GETSIGMASK: libc::c_uint = 0x420a;
const PTRACE_SETSIGMASK: libc::c_uint = 0x420b;

pub(crate) fn pid(tid: i32) -> Pid {
    Pid::from_raw(tid)
}

/// Gives a ptrace errno on `tid` its meaning.
pub(crate) fn err(op: &'static str, tid: i32) -> impl FnOnce(Errno) -> Error {
    move |e| Error::from_errno(op, tid, e)
}

/// `PTRACE_GETREGSET` of note `note` into `buf`; returns the length the
/// kernel filled (pass exactly that back to [`setregset`]).
pub(crate) fn getregset(tid: i32, note: libc::c_int, buf: &mut [u8]) -> Result<usize> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: the iovec points at `buf`, which is valid and writable for
    // `buf.len()` bytes for the duration of the call; the kernel writes at
    // most `iov_len` bytes and updates `iov_len`.
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_GETREGSET,
            tid,
            note as usize as *mut libc::c_void,
            &mut iov as *mut libc::iovec,
        )
    };
    Errno::result(r).map_err(err("read registers of", tid))?;
    Ok(iov.iov_len)
}

/// `PTRACE_SETREGSET` of note `note` from `buf` (its whole length).
pub(crate) fn setregset(tid: i32, note: libc::c_int, buf: &[u8]) -> Result<()> {
    let mut iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: the iovec points at `buf`, valid for `buf.len()` bytes; for
    // SETREGSET the kernel only reads from it.
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_SETREGSET,
            tid,
            note as usize as *mut libc::c_void,
            &mut iov as *mut libc::iovec,
        )
    };
    Errno::result(r).map_err(err("write registers of", tid))?;
    Ok(())
}

/// The thread's blocked-signal mask (kernel sigset: one bit per signal,
/// bit `n-1` for signal `n`).
pub(crate) fn getsigmask(tid: i32) -> Result<u64> {
    let mut mask: u64 = 0;
    // SAFETY: PTRACE_GETSIGMASK writes `addr` (= 8, the kernel sigset size)
    // bytes to `data`, which points at a u64 we own.
    let r = unsafe {
        libc::ptrace(
            PTRACE_GETSIGMASK,
            tid,
            8usize as *mut libc::c_void,
            &mut mask as *mut u64,
        )
    };
    Errno::result(r).map_err(err("read the signal mask of", tid))?;
    Ok(mask)
}

pub(crate) fn setsigmask(tid: i32, mask: u64) -> Result<()> {
    // SAFETY: PTRACE_SETSIGMASK reads 8 bytes from `data`, a u64 we own.
    let r = unsafe {
        libc::ptrace(
            PTRACE_SETSIGMASK,
            tid,
            8usize as *mut libc::c_void,
            &mask as *const u64,
        )
    };
    Errno::result(r).map_err(err("set the signal mask of", tid))?;
    Ok(())
}

/// `PTRACE_CONT`, delivering signal number `sig` (0 for none). Raw
/// numbers, because nix's `Signal` cannot name real-time signals.
pub(crate) fn cont(tid: i32, sig: i32) -> Result<()> {
    resume(libc::PTRACE_CONT, tid, sig)
}

/// `PTRACE_SYSCALL`: run to the next syscall entry or exit.
pub(crate) fn cont_syscall(tid: i32, sig: i32) -> Result<()> {
    resume(libc::PTRACE_SYSCALL, tid, sig)
}

fn resume(req: libc::c_uint, tid: i32, sig: i32) -> Result<()> {
    // SAFETY: PTRACE_CONT/PTRACE_SYSCALL take no pointers; `data` is the
    // signal number passed by value.
    let r = unsafe {
        libc::ptrace(
            req,
            tid,
            std::ptr::null_mut::<libc::c_void>(),
            sig as usize as *mut libc::c_void,
        )
    };
    Errno::result(r).map_err(err("continue", tid))?;
    Ok(())
}

pub(crate) fn interrupt(tid: i32) -> Result<()> {
    ptrace::interrupt(pid(tid)).map_err(err("interrupt", tid))
}

/// What a tracee reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The `PTRACE_INTERRUPT` trap (or the first stop of a new thread).
    Trap,
    /// Group-stop (job control) with its stop signal.
    Group(Signal),
    /// Signal-delivery-stop: the thread is about to receive this signal
    /// (a raw number: real-time signals included).
    Signal(i32),
    /// `PTRACE_EVENT_CLONE` with the new thread's id.
    Clone(i32),
    /// `PTRACE_EVENT_EXEC`.
    Exec,
    /// A syscall-entry or -exit stop (`PTRACE_SYSCALL` with TRACESYSGOOD).
    Syscall,
    /// Some other ptrace event (fork, exit…) we did not ask for.
    OtherEvent(i32),
    /// The thread is gone (exited or killed).
    Gone,
}

/// The signal the tool was asked to exit with (SIGINT/SIGTERM/SIGHUP), set
/// by the handlers [`crate::install_exit_handlers`] installs; 0 if none.
pub(crate) static EXIT_SIGNAL: AtomicI32 = AtomicI32::new(0);

pub(crate) fn exit_requested() -> Option<Signal> {
    match EXIT_SIGNAL.load(Ordering::Relaxed) {
        0 => None,
        n => Signal::try_from(n).ok(),
    }
}

/// Waits for the next report of `tid`, polling so that a deadline and (if
/// `interruptible`) an exit request are honoured (waitpid itself cannot
/// time out). The first polls spin, since most stops arrive within
/// microseconds.
pub(crate) fn wait(
    tid: i32,
    deadline: Instant,
    what: &'static str,
    interruptible: bool,
) -> Result<Stop> {
    let start = Instant::now();
    let mut spins = 0u32;
    let mut nap = Duration::from_micros(20);
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes the status into a c_int we own. nix's
        // waitpid is not used: it fails (EINVAL) on a stop for a real-time
        // signal, after the kernel has already reported it.
        let r = unsafe { libc::waitpid(tid, &mut status, libc::__WALL | libc::WNOHANG) };
        match Errno::result(r) {
            Ok(0) => {}
            Ok(_) => return Ok(classify(tid, status)),
            Err(Errno::EINTR) => {}
            Err(Errno::ECHILD) | Err(Errno::ESRCH) => return Ok(Stop::Gone),
            Err(e) => {
                return Err(Error::Os {
                    op: "waitpid",
                    pid: tid,
                    errno: e,
                })
            }
        }
        if let Some(signal) = exit_requested().filter(|_| interruptible) {
            return Err(Error::Interrupted { signal });
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(Error::Timeout {
                what,
                after: now - start,
            });
        }
        if spins < 200 {
            spins += 1;
            std::thread::yield_now();
        } else {
            std::thread::sleep(nap.min(deadline - now));
            nap = (nap * 2).min(Duration::from_millis(2));
        }
    }
}

fn classify(tid: i32, status: i32) -> Stop {
    if !libc::WIFSTOPPED(status) {
        // Exited or killed (WIFCONTINUED is not asked for).
        return Stop::Gone;
    }
    let sig = libc::WSTOPSIG(status);
    match status >> 16 {
        0 if sig == libc::SIGTRAP | 0x80 => Stop::Syscall,
        0 => Stop::Signal(sig),
        libc::PTRACE_EVENT_STOP => match sig {
            libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU => {
                Stop::Group(crate::tracer::signal_of(sig))
            }
            _ => Stop::Trap,
        },
        libc::PTRACE_EVENT_CLONE => {
            let new = ptrace::getevent(pid(tid)).unwrap_or(0) as i32;
            Stop::Clone(new)
        }
        libc::PTRACE_EVENT_EXEC => Stop::Exec,
        other => Stop::OtherEvent(other),
    }
}
