//! A thread's complete user-visible CPU state: general registers, the
//! extended FP/vector state (XSTATE, sized by the kernel) and the blocked
//! signal mask. Saved before anything touches a thread, restored after.

use crate::arch::{Arch, Native, Regs};
use crate::{sys, Error, Result};

/// Everything needed to put a thread back exactly as it was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedState {
    /// General registers, including the syscall number (`orig_rax`).
    pub regs: Regs,
    /// The extended state exactly as the kernel gave it (its length is the
    /// kernel's), in the layout of [`SavedState::fp_is_xstate`].
    pub fp: Vec<u8>,
    /// True for the XSAVE layout (`NT_X86_XSTATE`), false for the legacy
    /// FXSAVE fallback.
    pub fp_is_xstate: bool,
    /// Blocked signals (bit n-1 for signal n).
    pub sigmask: u64,
}

impl SavedState {
    pub(crate) fn save(tid: i32) -> Result<SavedState> {
        let regs = Native::get_regs(tid)?;
        let mut buf = vec![0u8; Native::FP_MAX];
        let (fp, fp_is_xstate) = match sys::getregset(tid, Native::FP_NOTE, &mut buf) {
            Ok(n) => {
                buf.truncate(n);
                (buf, true)
            }
            Err(Error::Os { .. }) => {
                let mut small = vec![0u8; 4096];
                let n = sys::getregset(tid, Native::FP_FALLBACK_NOTE, &mut small)?;
                small.truncate(n);
                (small, false)
            }
            Err(e) => return Err(e),
        };
        let sigmask = sys::getsigmask(tid)?;
        Ok(SavedState {
            regs,
            fp,
            fp_is_xstate,
            sigmask,
        })
    }

    /// Puts the state back: FP first, then the general registers (the
    /// syscall number with them), then the signal mask.
    pub(crate) fn restore(&self, tid: i32) -> Result<()> {
        self.restore_with(tid, &self.regs)
    }

    pub(crate) fn restore_with(&self, tid: i32, regs: &Regs) -> Result<()> {
        let note = if self.fp_is_xstate {
            Native::FP_NOTE
        } else {
            Native::FP_FALLBACK_NOTE
        };
        sys::setregset(tid, note, &self.fp)?;
        Native::set_regs(tid, regs)?;
        sys::setsigmask(tid, self.sigmask)
    }
}
