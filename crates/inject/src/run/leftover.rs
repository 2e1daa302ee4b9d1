//! The pages of an injection after its channel is open: unmapped once
//! nothing can run in them any more.

use std::time::{Duration, Instant};

use super::detour;
use super::error::RunError;
use super::orphan::{busy, read_u32, reclaim, stop_with, Orphan};

/// The pages of an injection, still mapped while the thread that ran the
/// bootstrap may be returning through them.
#[derive(Debug)]
pub struct Leftover {
    pub(super) pid: i32,
    pub(super) base: u64,
    pub(super) total: u64,
    pub(super) code: u64,
    /// Code queued or started in stop 1 that runs in the page later,
    /// whichever strategy claimed.
    pub(super) waiting: Waiting,
    /// A remote call left running returns into the page some day.
    pub(super) keep: bool,
    /// Pages left by earlier, killed pyattach runs, to unmap in the same
    /// stop, and the entries that may jump into them.
    pub(super) orphans: Vec<Orphan>,
    pub(super) entries: Vec<u64>,
    /// How the last stop treats the waits it cuts short.
    pub(super) restart: attach::Restart,
    /// [`Leftover::remove`] was called (else `Drop` does it).
    pub(super) removed: bool,
}

/// How long a `Leftover` dropped without [`Leftover::remove`] (an error on
/// the way, the caller's or ours) waits for the bootstrap's call to return.
const DROP_WAIT: Duration = Duration::from_millis(500);

/// Entrances into the code page that stay open after the entries are
/// restored: a pending call the main thread has not run yet, and a new
/// thread that has not finished. Each sets its flag in the data page as
/// its last act before returning.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Waiting {
    pub pending: bool,
    pub thread: bool,
}

impl Waiting {
    pub fn settled(self, mem: &attach::ProcessMemory, base: u64) -> bool {
        let set = |off| read_u32(mem, base + off) == Some(1);
        (!self.pending || set(detour::PENDING_RAN)) && (!self.thread || set(detour::THREAD_DONE))
    }
}

impl Leftover {
    /// Unmaps the pages once nothing can run in them any more: the
    /// bootstrap call has returned (its done flag), a pending call or new
    /// thread started by stop 1 has been and gone, no thread's instruction
    /// pointer is inside, and no thread's stack holds a return address
    /// into them. Waits up to `wait` for that; returns the pause, or `None`
    /// when the pages had to stay (harmless: nothing jumps to them any
    /// more, and whatever still will finds the flag taken).
    ///
    /// Pages left by earlier, killed pyattach runs go in the same stop
    /// (by the same rules, and only once their owner is dead).
    pub fn remove(mut self, wait: Duration) -> Result<Option<Duration>, RunError> {
        self.removed = true;
        self.remove_within(wait)
    }

    fn remove_within(&self, wait: Duration) -> Result<Option<Duration>, RunError> {
        let mem = attach::ProcessMemory::open(self.pid)?;
        let orphans: Vec<Orphan> = self
            .orphans
            .iter()
            .copied()
            .filter(|o| o.settled(&mem))
            .collect();
        let end = Instant::now() + wait;
        let ours = !self.keep
            && loop {
                let done = read_u32(&mem, self.base + detour::DONE) == Some(1);
                if done && self.waiting.settled(&mem, self.base) {
                    break true;
                }
                if Instant::now() >= end {
                    break false;
                }
                std::thread::sleep(Duration::from_millis(1));
            };
        if !ours && orphans.is_empty() {
            return Ok(None);
        }
        let mut st = stop_with(self.pid, self.restart)?;
        reclaim(&mut st, &orphans, &self.entries);
        if !ours || busy(&st, self.code) {
            st.detach()?;
            return Ok(None);
        }
        let helper = st.syscall_thread().unwrap_or(self.pid);
        st.unmap(helper, self.base, self.total)?;
        Ok(Some(st.detach()?))
    }
}

impl Drop for Leftover {
    /// A session that ended in an error, or a run given up after its
    /// channel opened, still takes its pages back (best effort: pages
    /// left are inert, and a later pyattach reclaims them).
    fn drop(&mut self) {
        if !self.removed {
            let _ = self.remove_within(DROP_WAIT);
        }
    }
}
