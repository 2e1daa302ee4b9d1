//! ptrace process control that never harms the target: attach to every
//! thread, stop and resume them, read and write registers and memory, make
//! remote syscalls and calls, patch code, and detach leaving the process
//! exactly as it was. Knows nothing about Python.

pub mod permissions;
pub mod pidfd;
