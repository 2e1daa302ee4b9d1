//! Errors of discovery and symbol resolution.

use crate::addr::RemoteAddr;
use std::path::PathBuf;

/// Everything that can go wrong while finding the interpreter.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // --- the process
    /// `/proc/PID` does not exist.
    #[error("no process with pid {0}")]
    NoSuchProcess(i32),
    /// The process has exited but was not reaped: nothing is mapped any more.
    #[error("process {0} is a zombie: it has exited and waits for its parent to reap it")]
    Zombie(i32),
    /// A `/proc` file could not be read (EACCES when the target belongs to
    /// someone else and we may not ptrace it).
    #[error("cannot read /proc/{pid}/{what}")]
    Proc {
        pid: i32,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },

    // --- the interpreter
    /// No mapped module defines the CPython API.
    #[error("process {pid} ({exe}) is not CPython: neither its executable nor a mapped libpython defines Py_Initialize{refused}")]
    NotPython {
        pid: i32,
        exe: PathBuf,
        /// The mapped files that were not read, and why (empty, or a
        /// sentence that starts with "; ").
        refused: String,
    },
    /// CPython, but a version pyattach does not know.
    #[error("CPython {version} in {path} is not supported (supported: 2.7 and 3.6 to 3.15)")]
    UnsupportedVersion { version: String, path: PathBuf },
    /// Neither `Py_Version`, a version string nor the file name told the version.
    #[error("cannot tell which CPython version {0} is")]
    UnknownVersion(PathBuf),

    // --- files
    /// A module's file could not be opened or read.
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file the target controls was not read: not a regular file, too
    /// large, not the mapped file (see `open.rs`).
    #[error("{path} was not read: {reason}")]
    Refused { path: PathBuf, reason: String },
    /// A module's file is not a well-formed ELF file (truncated, corrupt).
    #[error("{path} is not a valid ELF file: {reason}")]
    BadElf { path: PathBuf, reason: String },
    /// A file given as a core file is not one pyattach can read.
    #[error("{path} is not a core file pyattach can read: {reason}")]
    NotACore { path: PathBuf, reason: String },
    /// The address lies in no module, or in a part not backed by its file
    /// (`.bss`, heap).
    #[error("address {0} is not backed by a mapped module's file")]
    NotInFile(RemoteAddr),
}

impl Error {
    /// The exit status pyattach documents for this error (README, "Exit
    /// codes"): 3 not a supported CPython, 4 no such process, 5 permission
    /// denied, 6 zombie, 7 an unreadable or invalid binary, else 1.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::NotPython { .. }
            | Error::UnsupportedVersion { .. }
            | Error::UnknownVersion(_) => 3,
            Error::NoSuchProcess(_) => 4,
            Error::Proc { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
                5
            }
            Error::Proc { .. } => 1,
            Error::Zombie(_) => 6,
            Error::Io { .. }
            | Error::BadElf { .. }
            | Error::Refused { .. }
            | Error::NotACore { .. } => 7,
            Error::NotInFile(_) => 1,
        }
    }
}
