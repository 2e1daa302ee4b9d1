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

    // -- the target ------------------------------------------------------
    /// Reading or stopping the target failed (the cause says why).
    #[error("cannot read the process")]
    Attach(#[source] attach::Error),
}

impl DumpError {
    pub(crate) fn from_attach(_pid: i32, source: attach::Error) -> DumpError {
        DumpError::Attach(source)
    }
}
