//! Why a dump could not be made at all. Problems with single threads or
//! frames do not fail the dump: they are reported inside it.

/// A dump that could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    // -- finding the interpreter ---------------------------------------
    /// Discovery failed (the cause says why; kept in the chain so the CLI
    /// maps it to its exit code).
    #[error("cannot find the interpreter")]
    Discover(#[source] symbols::Error),
    #[error("Python {version} is not supported by pyattach dump ({why})")]
    Unsupported { version: String, why: String },
    #[error("cannot find the interpreter state in process {pid}: {why}")]
    NoInterpreter { pid: i32, why: String },

    /// A core file that could not be read (the cause says why).
    #[error(transparent)]
    Core(symbols::Error),

    // -- the target ------------------------------------------------------
    /// Reading or stopping the target failed (the cause says why).
    #[error("cannot read the process")]
    Attach(#[source] attach::Error),
}

impl From<crate::OpenError> for DumpError {
    fn from(e: crate::OpenError) -> DumpError {
        match e {
            crate::OpenError::Discover(e) => DumpError::Discover(e),
            crate::OpenError::Attach(e) => DumpError::Attach(e),
        }
    }
}

impl DumpError {
    /// The exit status pyattach documents for this error (README, "Exit
    /// codes"): 3 for a version the dump cannot read; a cause from
    /// discovery or process control declares its own.
    pub fn exit_code(&self) -> i32 {
        match self {
            DumpError::Discover(e) | DumpError::Core(e) => e.exit_code(),
            DumpError::Attach(e) => e.exit_code(),
            DumpError::Unsupported { .. } => 3,
            DumpError::NoInterpreter { .. } => 1,
        }
    }

    pub(crate) fn from_attach(_pid: i32, source: attach::Error) -> DumpError {
        DumpError::Attach(source)
    }
}
