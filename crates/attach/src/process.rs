//! The public typestate: [`Process`] (every thread seized, running) and
//! [`Stopped`] (every thread held). Moving between them consumes the value,
//! so registers and remote calls exist only while the threads are held.
//! Dropping either releases every thread; nothing is left stopped.

use std::time::Duration;

use crate::arch::{Arch, Native, Regs};
use crate::regs::SavedState;
use crate::tracer::Tracer;
use crate::{patch, remote, ProcessMemory, Result};

/// A process whose threads are all seized (`PTRACE_SEIZE`) and running.
pub struct Process {
    t: Tracer,
}

/// A process whose threads are all held in a ptrace stop.
pub struct Stopped {
    t: Tracer,
}

impl Process {
    /// Seizes every thread of `pid` (re-scanning `/proc/PID/task` until no
    /// new thread appears; threads created later are caught by
    /// `PTRACE_O_TRACECLONE`). Nothing is stopped yet. Keep the time spent
    /// in this state short: a thread that receives a signal or creates a
    /// thread waits for the next [`Process::stop_all`] or detach.
    pub fn attach(pid: i32) -> Result<Process> {
        Ok(Process {
            t: Tracer::seize(pid)?,
        })
    }

    pub fn pid(&self) -> i32 {
        self.t.pid
    }

    pub fn memory(&self) -> &ProcessMemory {
        &self.t.mem
    }

    /// Which waits (`rt_sigtimedwait`, `epoll_wait`, …) that our stops cut
    /// short with EINTR are restarted instead; see [`crate::Restart`].
    pub fn restart_waits(&mut self, restart: crate::Restart) {
        self.t.restart = restart;
    }

    /// Finds what remote calls borrow from the target's code (reads memory
    /// only), so that the first call holds the threads for less time.
    pub fn prepare_calls(&mut self) -> Result<()> {
        remote::find_gadgets(&mut self.t).map(|_| ())
    }

    /// Stops every thread (`PTRACE_INTERRUPT`, then each stop collected).
    /// Signals that arrive meanwhile are delivered, untouched. Fails with
    /// [`crate::Error::GroupStop`] if the process is being stopped by job control.
    pub fn stop_all(mut self) -> Result<Stopped> {
        self.t.stop_all()?;
        Ok(Stopped { t: self.t })
    }

    /// Releases every thread.
    pub fn detach(mut self) -> Result<()> {
        self.t.release().map(|_| ())
    }
}

impl Stopped {
    pub fn pid(&self) -> i32 {
        self.t.pid
    }

    pub fn memory(&self) -> &ProcessMemory {
        &self.t.mem
    }

    /// Ids of the held threads, ascending (the main thread's id is the pid).
    pub fn threads(&self) -> Vec<i32> {
        self.t.tids()
    }

    /// How long the threads have been held so far.
    pub fn paused(&self) -> Duration {
        self.t.paused()
    }

    /// Deadline for one remote call (default 10 s). When it passes, the call
    /// fails with [`crate::Error::CallLeftRunning`]: the callee is left to
    /// finish on its own (the thread then resumes through its signal
    /// frame), and that thread is no longer held.
    pub fn set_call_timeout(&mut self, timeout: Duration) {
        self.t.timeout = timeout;
    }

    /// General registers of a held thread.
    pub fn regs(&self, tid: i32) -> Result<Regs> {
        self.t.check_stopped(tid)?;
        Native::get_regs(tid)
    }

    /// Everything needed to put the thread back: general registers, the
    /// extended FP state, the signal mask.
    pub fn save(&self, tid: i32) -> Result<SavedState> {
        self.t.check_stopped(tid)?;
        SavedState::save(tid)
    }

    /// Puts back a state from [`Stopped::save`].
    pub fn restore(&mut self, tid: i32, state: &SavedState) -> Result<()> {
        self.t.check_stopped(tid)?;
        state.restore(tid)
    }

    /// Runs syscall `nr` (a `libc::SYS_*` number) with up to 6 arguments in
    /// held thread `tid`, and returns its raw result (`-errno` on failure).
    /// The thread is restored afterwards, an interrupted syscall of its own
    /// included.
    pub fn syscall(&mut self, tid: i32, nr: i64, args: &[u64]) -> Result<i64> {
        remote::syscall(&mut self.t, tid, nr, args)
    }

    /// Calls the function at `func` with up to 6 integer arguments (SysV)
    /// in held thread `tid`, on its own stack, and returns `rax`. Its return
    /// goes through an `rt_sigreturn` frame holding the thread's state, so
    /// if this tool dies mid-call the thread still resumes correctly. A
    /// crash in the callee is [`crate::Error::RemoteCrash`] (registers restored).
    pub fn call(&mut self, tid: i32, func: u64, args: &[u64]) -> Result<u64> {
        remote::call(&mut self.t, tid, func, args)
    }

    /// Makes held thread `tid`, if it is inside an interruptible syscall
    /// (sleep, read, select, futex…), return `-EINTR` from it when resumed
    /// instead of restarting it. Returns false (and changes nothing) if it
    /// is not in one. CPython retries such calls itself (PEP 475).
    pub fn interrupt_syscall(&mut self, tid: i32) -> Result<bool> {
        self.t.check_stopped(tid)?;
        let mut r = Native::get_regs(tid)?;
        if !Native::force_eintr(&mut r) {
            return Ok(false);
        }
        Native::set_regs(tid, &r)?;
        Ok(true)
    }

    /// Maps `len` bytes of fresh memory within ±2 GiB of `near` (so a rel32
    /// jump reaches it), read-write, using held thread `tid`.
    pub fn map_near(&mut self, tid: i32, near: u64, len: u64) -> Result<u64> {
        patch::map_near(&mut self.t, tid, near, len, None)
    }

    /// [`Stopped::map_near`], trying first the places `hints` (from
    /// [`crate::free_gaps_near`], read before the threads were stopped, so
    /// that they are held for less time); if all were taken meanwhile, the
    /// free places are read again.
    pub fn map_near_hinted(&mut self, tid: i32, near: u64, len: u64, hints: &[u64]) -> Result<u64> {
        patch::map_near(&mut self.t, tid, near, len, Some(hints))
    }

    /// A held thread best suited to run remote syscalls in: one that will
    /// not restart a syscall of its own through its restart block (such a
    /// thread needs the call stub mapped first, two more remote syscalls).
    /// `None` if every thread does.
    pub fn syscall_thread(&self) -> Option<i32> {
        remote::syscall_thread(&self.t)
    }

    /// Makes [`Stopped::call`] return through [`CALL_STUB`], which the
    /// caller already wrote at `addr` in executable memory of its own,
    /// instead of mapping a page for it (and unmapping it at detach). The
    /// caller must keep `addr` mapped while a call may still return there
    /// (a call left running after its timeout).
    pub fn adopt_call_stub(&mut self, addr: u64) -> Result<()> {
        remote::adopt_stub(&mut self.t, addr)
    }

    /// Changes the protection of `[addr, addr+len)` (`libc::PROT_*`).
    pub fn protect(&mut self, tid: i32, addr: u64, len: u64, prot: i32) -> Result<()> {
        remote::protect(&mut self.t, tid, addr, len, prot)
    }

    /// The seccomp filters of held thread `tid`, to learn beforehand what
    /// they answer to a syscall ([`crate::Filters::verdict`]). Fails with
    /// [`crate::Error::Unsupported`] where they cannot be read (the tool
    /// needs `CAP_SYS_ADMIN` and must not run under seccomp itself).
    pub fn seccomp_filters(&self, tid: i32) -> Result<crate::Filters> {
        self.t.check_stopped(tid)?;
        crate::seccomp::Filters::read(tid)
    }

    /// Replaces `[addr, addr+len)`, which must be a mapping of the
    /// caller's that nothing runs in, with fresh read+exec memory holding
    /// `code`: for a process that refuses to make memory executable
    /// (`PR_SET_MDWE`) where [`Stopped::protect`] fails.
    pub fn map_code(&mut self, tid: i32, addr: u64, len: u64, code: &[u8]) -> Result<()> {
        patch::map_code(&mut self.t, tid, addr, len, code)
    }

    /// Unmaps `[addr, addr+len)`.
    pub fn unmap(&mut self, tid: i32, addr: u64, len: u64) -> Result<()> {
        patch::unmap(&mut self.t, tid, addr, len)
    }

    /// Replaces the bytes at `addr` (code, even in read-only pages) with
    /// `new`, after checking that no thread's instruction pointer lies
    /// inside the range; returns the bytes that were there.
    pub fn patch(&mut self, addr: u64, new: &[u8]) -> Result<Vec<u8>> {
        patch::patch(&mut self.t, addr, new)
    }

    /// Makes [`Stopped::detach`] release `tid` after every other thread. A
    /// thread that will run at once for a while (one made to leave its
    /// syscall to run code) can take the CPU from this tool the moment it
    /// is released, on a busy machine, and so hold up the release of the
    /// threads after it: it goes last.
    pub fn release_last(&mut self, tid: i32) {
        if !self.t.release_last.contains(&tid) {
            self.t.release_last.push(tid);
        }
    }

    /// [`Stopped::patch`] of several ranges, with one register read per
    /// thread for all of them; each range is patched only if no thread is
    /// inside it, and gets its own result (the bytes that were there).
    pub fn patch_many(&mut self, patches: &[(u64, &[u8])]) -> Result<Vec<Result<Vec<u8>>>> {
        patch::patch_many(&mut self.t, patches)
    }

    /// Lets every thread run again (still attached).
    pub fn resume_all(mut self) -> Result<Process> {
        self.t.resume_all()?;
        Ok(Process { t: self.t })
    }

    /// Releases every thread; returns how long they were held.
    pub fn detach(mut self) -> Result<Duration> {
        self.t.release()
    }
}

/// The code remote calls return into ([`Stopped::adopt_call_stub`]).
pub const CALL_STUB: &[u8] = <Native as Arch>::STUB;

/// Attaches to `pid` and stops every thread: the usual start of a
/// consistent read or an injection.
pub fn freeze(pid: i32) -> Result<Stopped> {
    Process::attach(pid)?.stop_all()
}

/// [`freeze`] with the given policy for waits our stops cut short.
pub fn freeze_with(pid: i32, restart: crate::Restart) -> Result<Stopped> {
    let mut p = Process::attach(pid)?;
    p.restart_waits(restart);
    p.stop_all()
}

impl std::fmt::Debug for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stopped")
            .field("pid", &self.t.pid)
            .field("threads", &self.t.tids().len())
            .finish()
    }
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process").field("pid", &self.t.pid).finish()
    }
}
