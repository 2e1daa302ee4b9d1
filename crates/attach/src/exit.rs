//! The tool's own SIGINT, SIGTERM and SIGHUP. Their default action would
//! kill the tool in the middle of an operation; instead a handler records
//! the signal, every wait in this crate notices it within milliseconds and
//! fails with [`crate::Error::Interrupted`] after putting the thread it was
//! working on back, and the guards (`Process`, `Stopped`) release the
//! target as they are dropped. The CLI then exits (conventionally with
//! status 128 + signal number).
//!
//! SIGKILL cannot be handled; that case is covered by the design of remote
//! calls (see `remote`), not here.

use std::sync::atomic::Ordering;

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

use crate::sys::EXIT_SIGNAL;
use crate::{Error, Result};

extern "C" fn record(sig: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    EXIT_SIGNAL.store(sig, Ordering::Relaxed);
}

/// Installs the handlers (idempotent). Installed without `SA_RESTART`, so a
/// blocking call of the tool returns `EINTR` and can check
/// [`exit_requested`] too.
pub fn install_exit_handlers() -> Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(record),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: `record` only stores into an atomic, which is
        // async-signal-safe; no other handler state is shared.
        unsafe { sigaction(sig, &action) }.map_err(|errno| Error::Os {
            op: "sigaction",
            pid: std::process::id() as i32,
            errno,
        })?;
    }
    Ok(())
}

/// The exit signal received since the handlers were installed, if any.
pub fn exit_requested() -> Option<Signal> {
    crate::sys::exit_requested()
}

/// Forgets a recorded `sig`, for a caller that handles that signal itself
/// from now on (an interactive session forwards SIGINT to the target as
/// KeyboardInterrupt: it must not abort pyattach's later work on the
/// target). Another recorded signal stays.
pub fn forget_exit_request(sig: Signal) {
    let _ = crate::sys::EXIT_SIGNAL.compare_exchange(
        sig as i32,
        0,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
}
