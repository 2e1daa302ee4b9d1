//! Helpers shared by the cli's tests.
pub mod pty;
