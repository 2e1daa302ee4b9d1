//! The CPython knowledge of pyattach: reading stacks from memory (`dump`),
//! and getting a GIL-holding thread to run a bootstrap that opens a channel
//! back to the tool (`run`).

pub mod callsites;
pub mod dump;
pub mod run;
