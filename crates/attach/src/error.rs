//! The one error type of the crate. errno values get their meaning here, at
//! the boundary: `ESRCH` from a tracee is [`Error::TargetExited`], `EPERM` is
//! [`Error::PermissionDenied`], `EFAULT` is [`Error::BadAddress`].

use std::time::Duration;

use nix::errno::Errno;

/// Everything that can go wrong while observing or controlling a target.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // --- the target process and its lifetime
    /// No process with this pid exists (it never did, or it is gone).
    #[error("no process with pid {pid}")]
    NoSuchProcess { pid: i32 },
    /// The process is a zombie: it has exited and waits for its parent.
    #[error("process {pid} is a zombie (it has exited; its parent has not reaped it)")]
    Zombie { pid: i32 },
    /// The target (or the thread being worked on) exited during the operation.
    #[error("process {pid} exited during the operation")]
    TargetExited { pid: i32 },
    /// The process found first exited, and its pid now names another one
    /// (checked once attached, when the pid can no longer change hands);
    /// nothing was done to the new process.
    #[error("process {pid} exited while pyattach was looking at it, and pid {pid} now belongs to another process (left untouched); find the program's new pid (e.g. with `pgrep -f`) and run pyattach again")]
    PidReused { pid: i32 },
    /// The target called `exec` during the operation: every address is void.
    #[error("process {pid} called exec during the operation")]
    TargetExeced { pid: i32 },
    /// The target is stopped by job control (SIGSTOP, SIGTSTP, Ctrl-Z); it is
    /// left stopped, as it was.
    #[error("process {pid} is stopped by job control (state T); continue it with `kill -CONT {pid}` first")]
    GroupStop { pid: i32 },

    // --- permissions
    /// The kernel refused access; `reason` says why as far as can be told.
    #[error("permission denied to {op} process {pid}: {reason}")]
    PermissionDenied {
        pid: i32,
        op: &'static str,
        reason: String,
    },
    /// Another tracer (a debugger, strace, another pyattach) holds the target.
    #[error("process {pid} is already traced by pid {tracer} ({tracer_name}); a process can have only one tracer")]
    AlreadyTraced {
        pid: i32,
        tracer: i32,
        tracer_name: String,
    },

    // --- memory
    /// Part of a memory range is not mapped (or not accessible) in the target.
    #[error("cannot {op} {len} bytes at {addr:#x} in process {pid}: address not mapped (only {done} bytes done)")]
    BadAddress {
        pid: i32,
        op: &'static str,
        addr: u64,
        len: usize,
        done: usize,
    },

    // --- remote execution
    /// The called function or syscall crashed; registers were restored, but
    /// whatever it changed in memory (heap, locks) stays changed.
    #[error("the remote call in thread {tid} crashed with {signal} at {pc:#x} (fault address {addr:#x}); the thread's registers were restored")]
    RemoteCrash {
        tid: i32,
        signal: nix::sys::signal::Signal,
        pc: u64,
        addr: u64,
    },
    /// A remote call did not return in time. It was left to finish on its
    /// own (pulling the thread out mid-function could leave locks held);
    /// when it returns, the thread resumes exactly as before, with or
    /// without the tool.
    #[error("the remote call in thread {tid} did not return within {after:?}; it was left to finish on its own, after which the thread resumes as before")]
    CallLeftRunning { tid: i32, after: Duration },
    /// Nothing suitable for a remote call was found in the target.
    #[error("cannot run code in process {pid}: {why}")]
    NoGadget { pid: i32, why: String },
    /// Patching was refused because a thread is executing the bytes to change.
    #[error("thread {tid} is executing inside {addr:#x}..{end:#x}; not patching under it")]
    ThreadInPatch { tid: i32, addr: u64, end: u64 },

    // --- the tool's side
    /// A wait ran past its deadline; the target was restored.
    #[error("timed out after {after:?} while {what}")]
    Timeout { what: &'static str, after: Duration },
    /// The tool was asked to exit (SIGINT, SIGTERM, SIGHUP) during a wait.
    #[error("interrupted by {signal}; the target was restored")]
    Interrupted { signal: nix::sys::signal::Signal },
    /// The target was put back only partly; reported before any other error.
    #[error("failed to restore thread {tid} of process {pid}: {source}")]
    RestoreFailed {
        pid: i32,
        tid: i32,
        #[source]
        source: Box<Error>,
    },
    /// Something the kernel or the architecture does not offer.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A system call failed in a way the cases above do not cover.
    #[error("{op} on {pid} failed: {errno}")]
    Os {
        op: &'static str,
        pid: i32,
        errno: Errno,
    },
}

impl Error {
    /// The exit status pyattach documents for this error (README, "Exit
    /// codes"): 4 no such process, 5 permission denied, 6 zombie, 128+N
    /// interrupted by signal N (the target restored first), else 1.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::NoSuchProcess { .. } | Error::PidReused { .. } => 4,
            Error::PermissionDenied { .. } | Error::AlreadyTraced { .. } => 5,
            Error::Zombie { .. } => 6,
            // Killed politely: the target was restored; exit as a shell
            // expects.
            Error::Interrupted { signal } => 128 + *signal as i32,
            Error::TargetExited { .. }
            | Error::TargetExeced { .. }
            | Error::GroupStop { .. }
            | Error::BadAddress { .. }
            | Error::RemoteCrash { .. }
            | Error::CallLeftRunning { .. }
            | Error::NoGadget { .. }
            | Error::ThreadInPatch { .. }
            | Error::Timeout { .. }
            | Error::RestoreFailed { .. }
            | Error::Unsupported(_)
            | Error::Os { .. } => 1,
        }
    }

    /// True when the target (or thread) is gone, so there is nothing left to
    /// restore.
    pub fn target_gone(&self) -> bool {
        match self {
            Error::NoSuchProcess { .. }
            | Error::Zombie { .. }
            | Error::TargetExited { .. }
            | Error::PidReused { .. }
            | Error::TargetExeced { .. } => true,
            Error::GroupStop { .. }
            | Error::PermissionDenied { .. }
            | Error::AlreadyTraced { .. }
            | Error::BadAddress { .. }
            | Error::RemoteCrash { .. }
            | Error::CallLeftRunning { .. }
            | Error::NoGadget { .. }
            | Error::ThreadInPatch { .. }
            | Error::Timeout { .. }
            | Error::Interrupted { .. }
            | Error::RestoreFailed { .. }
            | Error::Unsupported(_)
            | Error::Os { .. } => false,
        }
    }

    /// Gives an errno from an operation on `pid` its meaning.
    pub(crate) fn from_errno(op: &'static str, pid: i32, errno: Errno) -> Error {
        match errno {
            Errno::ESRCH => Error::TargetExited { pid },
            Errno::EPERM | Errno::EACCES => Error::PermissionDenied {
                pid,
                op,
                reason: crate::diagnose::permission_reason(pid),
            },
            _ => Error::Os { op, pid, errno },
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
