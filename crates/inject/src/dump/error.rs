//! Why a dump could not be made at all. Problems with single threads or
//! frames do not fail the dump: they are reported inside it.

/// A dump that could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    // -- finding the interpreter ---------------------------------------
    #[error("process {pid}: {source}")]
    Discover {
        pid: i32,
        #[source]
        source: symbols::Error,
    },
    #[error("Python {version} is not supported by pyattach dump ({why})")]
    Unsupported { version: String, why: String },
    #[error("cannot find the interpreter state in process {pid}: {why}")]
    NoInterpreter { pid: i32, why: String },

    // -- the target ------------------------------------------------------
    #[error("process {pid}: {source}")]
    Attach {
        pid: i32,
        #[source]
        source: attach::Error,
    },
}

impl DumpError {
    pub(crate) fn from_attach(pid: i32, source: attach::Error) -> DumpError {
        DumpError::Attach { pid, source }
    }
}
