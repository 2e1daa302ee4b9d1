//! Errors of code execution in the target.

use std::io;

/// Why code could not be run in the target.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    // -- the target --------------------------------------------------
    #[error("process {pid} exited")]
    TargetExited { pid: i32 },
    #[error("process {pid} is not a CPython pyattach can run code in: {why}")]
    Unsupported { pid: i32, why: String },
    #[error(
        "no thread of process {pid} reached a point where Python code can run within {secs:.1}s{holder}; \
         the target was left running as it was (try `pyattach dump {pid}` to see what it is doing)"
    )]
    NoSafePoint {
        pid: i32,
        secs: f64,
        /// `": the GIL is held by thread N in native code (function)"` or
        /// empty when unknown.
        holder: String,
    },

    /// A seccomp filter would (or might) kill the target, or forbids what
    /// the injection needs; nothing was done to it.
    #[error(
        "refused: {why}; nothing was done to process {pid} (`pyattach dump {pid}` still works)"
    )]
    Seccomp { pid: i32, why: String },

    #[error("finding the interpreter")]
    Discover(#[from] symbols::Error),
    #[error("controlling the process")]
    Attach(#[from] attach::Error),
    #[error("interrupted by {0}; the target was restored")]
    Interrupted(String),

    // -- the channel -------------------------------------------------
    #[error("the code started in process {pid} but never called back within {secs:.1}s")]
    NoCallback { pid: i32, secs: f64 },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

impl RunError {
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> RunError {
        RunError::Io {
            what: what.into(),
            source,
        }
    }
}
