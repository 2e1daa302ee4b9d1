//! The CPython knowledge of pyattach: reading stacks from memory (`dump`),
//! and getting a GIL-holding thread to run a bootstrap that opens a channel
//! back to the tool (`run`). Process control itself is `attach`'s; finding
//! the interpreter and its layouts is `symbols`'. A command opens its
//! [`Target`] once, with the user's discovery options, and hands it to
//! each step; [`catalogue`] lists the interpreter's symbols pyattach uses.
//!
//! ```no_run
//! // Every thread's Python stack, without running anything in the target.
//! let target = inject::Target::open(1234, &symbols::DiscoverOptions::default())?;
//! let dump = inject::dump::dump_target(&target, &inject::dump::DumpOptions::default())?;
//! for thread in &dump.threads {
//!     println!("thread {} holds the GIL: {}", thread.thread_id, thread.holds_gil);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

pub mod callsites;
pub mod catalogue;
pub mod dump;
pub mod run;
mod target;

pub use target::{OpenError, Target};
