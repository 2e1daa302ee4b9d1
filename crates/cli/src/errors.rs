//! The one place that turns errors into messages, advice and exit codes.
//!
//! Exit codes (documented in the README):
//! 0 success, 1 failure, 2 usage (clap's, a thread's id given as the pid,
//! a `--thread` the process does not have), 3 not a supported CPython,
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

/// The exit code `err` declares: each library error says its own
/// (`exit_code()`, exhaustive over its variants, delegating to the cause
/// it wraps), as do the CLI's own; found under the context the CLI added.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    if let Some(e) = err.downcast_ref::<inject::run::RunError>() {
        e.exit_code()
    } else if let Some(e) = err.downcast_ref::<inject::dump::DumpError>() {
        e.exit_code()
    } else if let Some(e) = err.downcast_ref::<inject::OpenError>() {
        e.exit_code()
    } else if let Some(e) = err.downcast_ref::<symbols::Error>() {
        e.exit_code()
    } else if let Some(e) = err.downcast_ref::<attach::Error>() {
        e.exit_code()
    } else if err.downcast_ref::<crate::target::WrongId>().is_some() {
        2
    } else if err.downcast_ref::<crate::info::Denied>().is_some() {
        5
    } else if err.downcast_ref::<crate::session::Lost>().is_some() {
        crate::session::EXIT_CODE_LOST
    } else {
        1
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
