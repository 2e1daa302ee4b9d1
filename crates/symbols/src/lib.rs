//! Find the CPython interpreter inside a process and resolve its symbols,
//! version and struct offsets, without ptrace and without running anything in
//! the target.
//!
//! Ownership while the workspace is young:
//! - `maps`, `elf`, `resolve`, `version`, `discover`: ELF and symbol chain (issue 2)
//! - `offsets`: per-version struct layouts and `_Py_DebugOffsets` (issues 2 and 5)
#![forbid(unsafe_code)]

pub mod offsets;
