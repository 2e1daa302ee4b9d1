//! ptrace process control that never harms the target: attach to every
//! thread, stop and resume them, read and write registers and memory, make
//! remote syscalls and calls, patch code, and detach leaving the process
//! exactly as it was. Knows nothing about Python.
//!
//! The whole API:
//! - [`ProcessMemory`]`::open(pid)` → `read`, `read_many` (one syscall for
//!   many ranges), `read_vec`, `read_u64`, `write`: no ptrace needed.
//! - [`Process`]`::attach(pid)` seizes every thread (running) →
//!   `stop_all(self) -> Stopped`, `prepare_calls`, `detach`,
//!   `restart_waits` ([`Restart`]: the waits a stop would make fail with
//!   EINTR are restarted instead).
//! - [`Stopped`] (every thread held; or [`freeze`]`(pid)`): `threads`,
//!   `memory`, `regs`, `save`/`restore` ([`SavedState`]: registers,
//!   XSTATE, signal mask), `syscall`, `call`, `interrupt_syscall` (-EINTR),
//!   `map_near`, `protect`, `map_code`, `unmap`, `seccomp_filters`
//!   ([`Filters`]: what they answer to a syscall, [`Verdict`]), `patch`, `paused`, `set_call_timeout`,
//!   `resume_all(self) -> Process`, `detach(self) -> pause duration`.
//! - [`install_exit_handlers`] / [`exit_requested`]: SIGINT, SIGTERM and
//!   SIGHUP make every wait return [`Error::Interrupted`], so guards restore
//!   the target before the tool exits.
//! - [`Error`] (one enum; `target_gone()`), [`Regs`], [`Pid`], [`Signal`].
//! - [`permissions`], [`procinfo`] (read-only `/proc` diagnosis) and
//!   [`pidfd`] (taking a socket out of the target), [`tree`] (a
//!   process's descendants and command lines).
//!
//! Limits: x86_64 (aarch64 laid out in `arch/`, remote calls refused there);
//! calls take up to 6 integer arguments; a target with a CET shadow stack
//! is refused for remote calls; while a [`Process`] runs attached, a thread
//! that gets a signal or creates a thread waits for the next `stop_all` or
//! detach, so keep that state short.
//!
//! Dropping a `Process` or `Stopped` releases every thread; all ptrace
//! requests must come from the OS thread that attached (the types are not
//! `Send`). Remote calls return through an `rt_sigreturn` frame that holds
//! the thread's state, so the target completes correctly even if this tool
//! is killed with SIGKILL mid-call.
//!
//! ```no_run
//! # fn main() -> attach::Result<()> {
//! let pid = 1234;
//! let mut target = attach::freeze(pid)?; // attach + stop every thread
//! let tid = target.threads()[0];
//! let me = target.syscall(tid, libc::SYS_getpid, &[])?;
//! assert_eq!(me, pid as i64);
//! let page = target.map_near(tid, 0x5555_0000_0000, 4096)?;
//! target.memory().write(page, b"hello")?;
//! let paused = target.detach()?; // the target runs on, as before
//! println!("held for {paused:?}");
//! # Ok(()) }
//! ```

mod arch;
mod diagnose;
mod error;
mod exit;
mod memory;
mod patch;
pub mod permissions;
pub mod pidfd;
mod process;
pub mod procinfo;
mod regs;
mod remote;
mod restart;
mod seccomp;
mod sys;
mod tracer;
pub mod tree;

pub use arch::Regs;
pub use error::{Error, Result};
pub use exit::{exit_requested, forget_exit_request, install_exit_handlers};
pub use memory::ProcessMemory;
pub use nix::sys::signal::Signal;
pub use nix::unistd::Pid;
pub use patch::free_gaps_near;
pub use process::{freeze, freeze_with, Process, Stopped, CALL_STUB};
pub use regs::SavedState;
pub use restart::Restart;
pub use seccomp::{Filters, Verdict};
