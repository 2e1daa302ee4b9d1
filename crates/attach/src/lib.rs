//! ptrace process control that never harms the target: attach to every
//! thread, stop and resume them, read and write registers and memory, make
//! remote syscalls and calls, patch code, and detach leaving the process
//! exactly as it was. Knows nothing about Python.

mod diagnose;
mod error;
mod memory;
pub mod permissions;
pub mod pidfd;
pub mod procinfo;

pub use error::{Error, Result};
pub use memory::ProcessMemory;
pub use nix::sys::signal::Signal;
pub use nix::unistd::Pid;
