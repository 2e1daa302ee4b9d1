//! The one place that turns errors into messages, advice and exit codes.
//!
//! Exit codes (documented in the README):
//! 0 success, 1 failure, 2 usage (clap), 3 not a supported CPython,
//! 4 no such process, 5 permission denied, 6 zombie process,
//! 7 unreadable or corrupt binary.

/// Prints `result`'s error, if any, and returns the process exit code.
pub fn finish(result: anyhow::Result<i32>) -> i32 {
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("pyattach: {err:#}");
            exit_code(&err)
        }
    }
}

/// The documented exit code for the first known cause in `err`'s chain.
fn exit_code(err: &anyhow::Error) -> i32 {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<symbols::Error>() {
            return symbols_exit_code(e);
        }
        if cause.downcast_ref::<crate::info::Denied>().is_some() {
            return 5;
        }
    }
    1
}

fn symbols_exit_code(e: &symbols::Error) -> i32 {
    use symbols::Error as E;
    match e {
        E::NotPython { .. } | E::UnsupportedVersion { .. } | E::UnknownVersion(_) => 3,
        E::NoSuchProcess(_) => 4,
        E::Proc { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => 5,
        E::Proc { .. } => 1,
        E::Zombie(_) => 6,
        E::Io { .. } | E::BadElf { .. } => 7,
        E::NotInFile(_) => 1,
    }
}
