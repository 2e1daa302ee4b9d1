//! The one place that turns errors into messages, advice and exit codes.
//!
//! Exit codes (documented in the README):
//! 0 success, 1 failure, 2 usage (clap), 3 not a supported CPython,
//! 4 no such process, 5 permission denied, 6 zombie process,
//! 7 unreadable or corrupt binary, 9 a session ended without the user
//! leaving it, 10 refused: a seccomp filter could kill the target (or
//! forbids what running code needs), 128+N interrupted by signal N (the
//! target restored first).

/// Prints `result`'s error, if any, and returns the process exit code.
pub fn finish(result: anyhow::Result<i32>) -> i32 {
    match result {
        Ok(code) => code,
        Err(err) => {
            // Messages quote the target's paths, names and what it sent.
            eprintln!("pyattach: {}", crate::term::text(&format!("{err:#}")));
            let code = exit_code(&err);
            if code == 5 {
                print_permission_advice(&err);
            }
            code
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
        if let Some(e) = cause.downcast_ref::<attach::Error>() {
            if let Some(code) = attach_exit_code(e) {
                return code;
            }
        }
        if let Some(inject::dump::DumpError::Unsupported { .. }) = cause.downcast_ref() {
            return 3;
        }
        if cause.downcast_ref::<crate::session::Lost>().is_some() {
            return crate::session::EXIT_CODE_LOST;
        }
        if let Some(inject::run::RunError::Seccomp { .. }) = cause.downcast_ref() {
            return 10;
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
        E::Io { .. } | E::BadElf { .. } | E::Refused { .. } => 7,
        E::NotInFile(_) => 1,
    }
}

/// `None` where the attach error is a plain failure whose cause may lie
/// further down the chain.
fn attach_exit_code(e: &attach::Error) -> Option<i32> {
    use attach::Error as E;
    match e {
        E::NoSuchProcess { .. } | E::PidReused { .. } => Some(4),
        E::PermissionDenied { .. } | E::AlreadyTraced { .. } => Some(5),
        E::Zombie { .. } => Some(6),
        // Killed politely: the target was restored; exit as a shell expects.
        E::Interrupted { signal } => Some(128 + *signal as i32),
        E::TargetExited { .. }
        | E::TargetExeced { .. }
        | E::GroupStop { .. }
        | E::BadAddress { .. }
        | E::RemoteCrash { .. }
        | E::CallLeftRunning { .. }
        | E::NoGadget { .. }
        | E::ThreadInPatch { .. }
        | E::Timeout { .. }
        | E::RestoreFailed { .. }
        | E::Unsupported(_)
        | E::Os { .. } => None,
    }
}

/// After "permission denied", says which rule refused and how to fix it (the
/// same diagnosis `pyattach info` shows), unless the message already did.
fn print_permission_advice(err: &anyhow::Error) {
    let pid = err
        .chain()
        .find_map(|c| match c.downcast_ref::<symbols::Error>() {
            Some(symbols::Error::Proc { pid, .. }) => Some(*pid),
            _ => match c.downcast_ref::<attach::Error>() {
                Some(attach::Error::PermissionDenied { pid, .. }) => Some(*pid),
                _ => None,
            },
        });
    let Some(pid) = pid else { return };
    let Ok(verdict) = attach::permissions::diagnose(pid) else {
        return;
    };
    let text = format!("{err:#}");
    for denial in &verdict.denials {
        if !text.contains(&denial.reason()) {
            eprintln!("  why: {}", crate::term::text(&denial.reason()));
            eprintln!("  fix: {}", crate::term::text(&denial.fix()));
        }
    }
}
