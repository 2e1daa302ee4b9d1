//! ptrace process control that never harms the target: attach to every
//! thread, stop and resume them, read and write registers and memory, make
//! remote syscalls and calls, patch code, and detach leaving the process
//! exactly as it was. Knows nothing about Python.

mod arch;
mod diagnose;
mod error;
mod memory;
mod patch;
pub mod permissions;
pub mod pidfd;
mod process;
pub mod procinfo;
mod regs;
mod remote;
mod sys;
mod tracer;

pub use arch::Regs;
pub use error::{Error, Result};
pub use memory::ProcessMemory;
pub use nix::sys::signal::Signal;
pub use nix::unistd::Pid;
pub use process::{freeze, Process, Stopped};
pub use regs::SavedState;
