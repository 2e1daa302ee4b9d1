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
    #[error("interrupted by {}; the target was restored", .0.as_str())]
    Interrupted(attach::Signal),

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

impl From<crate::OpenError> for RunError {
    fn from(e: crate::OpenError) -> RunError {
        match e {
            crate::OpenError::Discover(e) => RunError::Discover(e),
            crate::OpenError::Attach(e) => RunError::Attach(e),
        }
    }
}

impl RunError {
    /// The exit status pyattach documents for this error (README, "Exit
    /// codes"); a cause from discovery or process control declares its own.
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Discover(e) => e.exit_code(),
            RunError::Attach(e) => e.exit_code(),
            RunError::Seccomp { .. } => 10,
            // The target was restored first; exit as a shell expects.
            RunError::Interrupted(sig) => 128 + *sig as i32,
            RunError::TargetExited { .. }
            | RunError::Unsupported { .. }
            | RunError::NoSafePoint { .. }
            | RunError::NoCallback { .. }
            | RunError::Io { .. } => 1,
        }
    }

    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> RunError {
        RunError::Io {
            what: what.into(),
            source,
        }
    }
}
