//! Find the CPython interpreter inside a process and resolve its symbols,
//! version and struct offsets, without ptrace and without running anything in
//! the target.
//!
//! [`discover`] reads `/proc/PID/maps`, opens every mapped ELF file (the
//! very file mapped, through `/proc/PID/map_files`, where privileges allow;
//! else its path resolved inside `/proc/PID/root` and checked to be the
//! mapped file: containers work, and a hostile target's FIFOs, devices,
//! links out of its root and huge files are refused, see `open.rs`), picks the module that holds CPython (the executable or a
//! `libpython*.so*`, validated by `Py_Initialize` and `PyRun_SimpleString`),
//! computes its load bias from the mapping and the `PT_LOAD` headers, and
//! tells its version (`Py_Version`, else the `PY_VERSION` string, else the
//! file name; cross-checked).
//!
//! Symbols come lazily from an ordered chain, and each answer names its
//! [`SymbolSource`]: `.dynsym` → `.symtab` → `.gnu_debugdata` (xz) →
//! build-id debug file → `.gnu_debuglink` (CRC-checked) → debuginfod. This
//! crate never touches the network: the caller passes a [`DebugFetcher`]
//! that turns a build id into a local file (the CLI's debuginfod client).
//! No DWARF is parsed to find a symbol; symbol tables are extracted once per
//! file and kept.
//!
//! Addresses in the target ([`RemoteAddr`]) and in files ([`FileAddr`]) are
//! distinct types, converted only through a [`Module`]'s load bias.
//!
//! What an [`Interpreter`] answers:
//! - [`Interpreter::symbol`] / [`Interpreter::symbol_in`]: a name, through
//!   the chain (an LTO-renamed static `f.lto_priv.0` answers to `f`);
//! - [`Interpreter::symbolize`]: the function holding an address;
//! - [`Interpreter::read_module_bytes`]: the file's bytes at a mapped
//!   address (code for capstone, initialized data), nothing read from the
//!   target;
//! - [`Interpreter::code_sections`], [`Interpreter::got_slots`]: for
//!   finding call sites (`inject::callsites`);
//! - [`Interpreter::debug_sources`]: which debug files were found.
//!
//! [`discover_core`] does the same for a process saved in a core file
//! ([`CoreFile`]: its memory, threads and the files it names).
//!
//! [`inspect_file`] / [`inspect_bytes`] run the same parsing on one file, for
//! tests and the fuzz target (`fuzz/`): never a panic on any input;
//! [`inspect_in_root`] opens the file inside a stand-in for
//! `/proc/PID/root`, with the checks a target's files get.
//!
//! ```no_run
//! let py = symbols::discover(1234, &symbols::DiscoverOptions::default())?;
//! println!("CPython {} in {}", py.version, py.module.path.display());
//! let run = py.symbol("PyRun_SimpleString").expect("always exported");
//! println!("PyRun_SimpleString at {} from {}", run.addr, run.source);
//! let code = py.read_module_bytes(run.addr, 16)?; // bytes of the file, for capstone
//! let create = py.symbol_in("libc", "pthread_create");
//! # let _ = (code, create);
//! # Ok::<(), symbols::Error>(())
//! ```
//!
//! Ownership while the workspace is young:
//! - `maps`, `elf`, `table`, `chain`, `version`, `discover`: ELF and symbol
//!   chain (issue 2)
//! - `offsets`: per-version struct layouts and `_Py_DebugOffsets` (issues 2 and 5)
#![forbid(unsafe_code)]

mod addr;
mod chain;
mod core;
mod discover;
mod elf;
mod error;
pub mod maps;
pub mod offsets;
mod open;
mod table;
mod version;

pub use addr::{hex, FileAddr, RemoteAddr};
pub use chain::{Symbol, SymbolSource};
pub use core::{CoreFile, CoreMapping, CoreThread, USER_REGS_WORDS};
pub use discover::{
    discover, discover_core, inspect_bytes, inspect_file, inspect_in_root, BuildInfo, CodeSection,
    DebugFetcher, DiscoverOptions, FileSummary, GotKind, GotSlot, Interpreter, Module, Range,
};
pub use error::Error;
pub use version::{PyVersion, ReleaseLevel, VersionCheck, VersionSource};
