//! The tracer: which threads of the target are seized and in what state,
//! how they are stopped, resumed and released. The public typestate
//! ([`crate::Process`], [`crate::Stopped`]) wraps one of these; its `Drop`
//! releases every thread, so no path leaves the target stopped.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::ptrace::{self, Options};
use nix::sys::signal::Signal;

use crate::arch::{Arch, Native};
use crate::remote::Gadgets;
use crate::sys::{self, Stop};
use crate::{diagnose, Error, ProcessMemory, Result};

/// How long stopping, resuming or detaching may take before we give up on a
/// thread (generous: a thread in uninterruptible sleep (D) stops only when
/// its I/O completes).
pub(crate) const STOP_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TState {
    /// Seized and running.
    Running,
    /// Held in a ptrace stop we know of (trap, or signal-delivery after a
    /// crash we suppressed).
    Stopped,
    /// Held in a group-stop (job control).
    GroupStopped,
    /// Created by a traced thread; its first stop has not been reaped yet.
    New,
    /// Exited.
    Gone,
}

pub(crate) struct Thread {
    pub state: TState,
}

pub(crate) struct Tracer {
    pub pid: i32,
    pub threads: BTreeMap<i32, Thread>,
    pub mem: ProcessMemory,
    pub gadgets: Option<Gadgets>,
    /// Our stub page in the target (address), once mapped.
    pub stub: Option<u64>,
    /// The stub was left by an earlier run of the tool (killed while a call
    /// ran), or a call of ours was left running: never unmapped, since
    /// that call may still return into it (a later run reuses it).
    pub stub_adopted: bool,
    /// Set while the stub is being mapped (its syscalls borrow libc's code).
    pub making_stub: bool,
    pub stopped_at: Option<Instant>,
    pub timeout: Duration,
    /// Threads detached after all the others (see `Stopped::release_last`).
    pub release_last: Vec<i32>,
    /// Which waits cut short by our stops are restarted.
    pub restart: crate::Restart,
    released: bool,
    /// ptrace requests must all come from the thread that attached.
    _one_thread: PhantomData<*mut ()>,
}

fn options() -> Options {
    // Never EXITKILL: if the tool dies, its tracees must run on.
    // TRACESYSGOOD also makes a syscall stop safe to be left in when the
    // tool dies: the "signal" the kernel re-sends is 0x85, invalid, ignored.
    Options::PTRACE_O_TRACECLONE | Options::PTRACE_O_TRACEEXEC | Options::PTRACE_O_TRACESYSGOOD
}

fn list_tasks(pid: i32) -> Result<Vec<i32>> {
    let dir =
        std::fs::read_dir(format!("/proc/{pid}/task")).map_err(|_| Error::TargetExited { pid })?;
    let mut v: Vec<i32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    v.sort_unstable();
    Ok(v)
}

impl Tracer {
    /// Seizes every thread of `pid` without stopping any.
    pub fn seize(pid: i32) -> Result<Tracer> {
        let Some(st) = diagnose::status(pid) else {
            return Err(Error::NoSuchProcess { pid });
        };
        if st.tracer_pid != 0 {
            return Err(Error::AlreadyTraced {
                pid,
                tracer: st.tracer_pid,
                tracer_name: diagnose::comm(st.tracer_pid),
            });
        }
        let tasks = list_tasks(pid)?;
        if st.state == 'Z' && tasks.len() <= 1 {
            return Err(Error::Zombie { pid });
        }
        if st.state == 'T' {
            return Err(Error::GroupStop { pid });
        }
        let mut t = Tracer {
            pid,
            threads: BTreeMap::new(),
            mem: ProcessMemory::open(pid)?,
            gadgets: None,
            stub: None,
            making_stub: false,
            stub_adopted: false,
            stopped_at: None,
            timeout: Duration::from_secs(10),
            release_last: Vec::new(),
            restart: crate::Restart::default(),
            released: false,
            _one_thread: PhantomData,
        };
        // Re-scan until no new thread appears: a thread created before its
        // creator was seized escapes PTRACE_O_TRACECLONE.
        loop {
            let tasks = list_tasks(pid)?;
            let mut new = false;
            for tid in tasks {
                if t.threads.contains_key(&tid) {
                    continue;
                }
                new = true;
                match ptrace::seize(sys::pid(tid), options()) {
                    Ok(()) => {
                        t.threads.insert(
                            tid,
                            Thread {
                                state: TState::Running,
                            },
                        );
                    }
                    // Gone meanwhile, or a zombie leader (EPERM): skip it.
                    Err(Errno::ESRCH) => {
                        t.threads.insert(tid, gone());
                    }
                    Err(Errno::EPERM) => {
                        let me = nix::unistd::gettid().as_raw();
                        match diagnose::task_status(pid, tid) {
                            // Vanished meanwhile.
                            None => {
                                t.threads.insert(tid, gone());
                            }
                            // Born of a seized thread: already ours through
                            // PTRACE_O_TRACECLONE; its first stop will come.
                            Some(s) if s.tracer_pid == me => t.set(tid, TState::New),
                            // An exiting thread, or a zombie leader whose
                            // other threads live on.
                            Some(s) if matches!(s.state, 'Z' | 'X') => {
                                t.threads.insert(tid, gone());
                            }
                            Some(s) if s.tracer_pid != 0 => {
                                return Err(Error::AlreadyTraced {
                                    pid,
                                    tracer: s.tracer_pid,
                                    tracer_name: diagnose::comm(s.tracer_pid),
                                })
                            }
                            Some(_) => {
                                return Err(Error::from_errno("attach to", pid, Errno::EPERM))
                            }
                        }
                    }
                    Err(e) => return Err(Error::from_errno("attach to", tid, e)),
                }
            }
            if !new {
                break;
            }
        }
        if t.live() == 0 {
            t.released = true;
            return Err(Error::TargetExited { pid });
        }
        Ok(t)
    }

    pub fn live(&self) -> usize {
        self.threads
            .values()
            .filter(|th| th.state != TState::Gone)
            .count()
    }

    /// Thread ids that are alive, sorted.
    pub fn tids(&self) -> Vec<i32> {
        self.threads
            .iter()
            .filter(|(_, th)| th.state != TState::Gone)
            .map(|(t, _)| *t)
            .collect()
    }

    fn set(&mut self, tid: i32, state: TState) {
        self.threads.entry(tid).or_insert(Thread { state }).state = state;
    }

    /// Threads asked to stop (or just born) whose stop is still to be
    /// collected.
    fn not_stopped_yet(&self) -> Vec<i32> {
        self.threads
            .iter()
            .filter(|(_, th)| matches!(th.state, TState::Running | TState::New))
            .map(|(t, _)| *t)
            .collect()
    }

    /// Stops every thread: `PTRACE_INTERRUPT` to all, then collect each
    /// stop. Threads born meanwhile are caught by TRACECLONE and stopped too.
    pub fn stop_all(&mut self) -> Result<()> {
        self.stopped_at.get_or_insert_with(Instant::now);
        let deadline = Instant::now() + STOP_TIMEOUT;
        for (tid, th) in self.threads.iter() {
            if th.state == TState::Running {
                match sys::interrupt(*tid) {
                    Ok(()) | Err(Error::TargetExited { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        loop {
            let pending = self.not_stopped_yet();
            if pending.is_empty() {
                break;
            }
            for tid in pending {
                self.wait_until_stopped(tid, deadline)?;
            }
        }
        if self.live() == 0 {
            return Err(Error::TargetExited { pid: self.pid });
        }
        if self
            .threads
            .values()
            .any(|th| th.state == TState::GroupStopped)
        {
            return Err(Error::GroupStop { pid: self.pid });
        }
        Ok(())
    }

    /// Waits until `tid` (already interrupted, or new) sits in a trap stop,
    /// passing on any signal it reports on the way.
    pub fn wait_until_stopped(&mut self, tid: i32, deadline: Instant) -> Result<()> {
        self.wait_stopped(tid, deadline, true)
    }

    fn wait_stopped(&mut self, tid: i32, deadline: Instant, interruptible: bool) -> Result<()> {
        loop {
            let stop = sys::wait(
                tid,
                deadline,
                "stopping the target's threads",
                interruptible,
            )?;
            let ran = self
                .threads
                .get(&tid)
                .is_some_and(|th| matches!(th.state, TState::Running | TState::New));
            match self.on_stop(tid, stop)? {
                Some(state) => {
                    if ran && stop == Stop::Trap {
                        // Our stop may have cut a wait short with EINTR.
                        crate::restart::resume_waits(self.pid, tid, &self.mem, self.restart);
                    }
                    self.set(tid, state);
                    return Ok(());
                }
                None => continue,
            }
        }
    }

    /// Handles a stop reported while we wanted `tid` to come to a halt:
    /// returns its new state if it is now held, or `None` after letting it
    /// go on towards the trap (a signal passed on with its siginfo intact,
    /// a clone event completed).
    pub fn on_stop(&mut self, tid: i32, stop: Stop) -> Result<Option<TState>> {
        match stop {
            Stop::Trap => Ok(Some(TState::Stopped)),
            Stop::Group(_) => Ok(Some(TState::GroupStopped)),
            Stop::Gone => Ok(Some(TState::Gone)),
            Stop::Exec => {
                self.set(tid, TState::Stopped);
                Err(Error::TargetExeced { pid: self.pid })
            }
            Stop::Signal(sig) => {
                // Deliver it now, untouched (siginfo stays the kernel's);
                // the pending interrupt stops the thread right after. A
                // blocked signal is re-queued by the kernel.
                sys::cont(tid, sig)?;
                sys::interrupt(tid)?;
                Ok(None)
            }
            Stop::Clone(new) => {
                if new > 0 && !self.threads.contains_key(&new) {
                    self.set(new, TState::New);
                }
                // Let the clone syscall return, then stop at the trap.
                sys::cont(tid, 0)?;
                sys::interrupt(tid)?;
                Ok(None)
            }
            Stop::Syscall | Stop::OtherEvent(_) => {
                sys::cont(tid, 0)?;
                sys::interrupt(tid)?;
                Ok(None)
            }
        }
    }

    /// Takes the time the threads were held off the timeouts of the
    /// `select`/`pselect6`/`ppoll` calls that will restart, so that they
    /// wait as long as they would have without us (best effort: a timeout
    /// that cannot be written is left alone).
    fn compensate_timeouts(&mut self) {
        let Some(since) = self.stopped_at else {
            return;
        };
        let held = since.elapsed();
        if held < Duration::from_millis(1) {
            // Not worth a register read per thread: less than scheduling
            // jitter.
            return;
        }
        for (tid, th) in self.threads.iter() {
            if th.state != TState::Stopped {
                continue;
            }
            let Ok(regs) = Native::get_regs(*tid) else {
                continue;
            };
            let Some((at, timeval)) = Native::restart_timeout(&regs) else {
                continue;
            };
            let Ok(b) = self.mem.read_vec(at, 16) else {
                continue;
            };
            let sec = i64::from_le_bytes(b[0..8].try_into().unwrap());
            let sub = i64::from_le_bytes(b[8..16].try_into().unwrap());
            let unit = if timeval { 1_000 } else { 1 };
            let left = (sec as i128) * 1_000_000_000 + (sub as i128) * unit;
            let left = (left - held.as_nanos() as i128).max(0);
            let mut out = Vec::with_capacity(16);
            out.extend_from_slice(&((left / 1_000_000_000) as i64).to_le_bytes());
            out.extend_from_slice(&(((left % 1_000_000_000) / unit) as i64).to_le_bytes());
            let _ = self.mem.write(at, &out);
        }
    }

    /// Lets every held thread run again.
    pub fn resume_all(&mut self) -> Result<()> {
        self.compensate_timeouts();
        for (tid, th) in self.threads.iter_mut() {
            if th.state == TState::Stopped {
                match sys::cont(*tid, 0) {
                    Ok(()) => th.state = TState::Running,
                    Err(Error::TargetExited { .. }) => th.state = TState::Gone,
                    Err(e) => return Err(e),
                }
            }
        }
        self.stopped_at = None;
        Ok(())
    }

    /// Releases every thread (stopping the running ones first: a running
    /// tracee cannot be detached). Returns how long the target was stopped.
    pub fn release(&mut self) -> Result<Duration> {
        if self.released {
            return Ok(Duration::ZERO);
        }
        let mut first_err = None;
        let deadline = Instant::now() + STOP_TIMEOUT;
        // Running or new threads must come to a stop first.
        let running: Vec<i32> = self
            .threads
            .iter()
            .filter(|(_, th)| th.state == TState::Running)
            .map(|(t, _)| *t)
            .collect();
        for tid in &running {
            let _ = sys::interrupt(*tid);
        }
        loop {
            let pending = self.not_stopped_yet();
            if pending.is_empty() {
                break;
            }
            for tid in pending {
                // Releasing must finish even if the tool is asked to exit.
                if let Err(e) = self.wait_ignoring_exit(tid, deadline) {
                    if !matches!(e, Error::TargetExeced { .. }) {
                        first_err.get_or_insert(e);
                        self.set(tid, TState::Gone);
                    }
                }
            }
        }
        // Our call stub is no longer needed by any thread.
        crate::patch::unmap_stub(self);
        self.compensate_timeouts();
        let last = std::mem::take(&mut self.release_last);
        let mut order: Vec<i32> = self
            .threads
            .keys()
            .copied()
            .filter(|t| !last.contains(t))
            .collect();
        order.extend(last.iter().filter(|t| self.threads.contains_key(t)));
        for tid in order {
            let Some(th) = self.threads.get_mut(&tid) else {
                continue;
            };
            if matches!(th.state, TState::Stopped | TState::GroupStopped) {
                match ptrace::detach(sys::pid(tid), None) {
                    Ok(()) | Err(Errno::ESRCH) => {}
                    Err(e) => {
                        first_err.get_or_insert(Error::from_errno("detach from", tid, e));
                    }
                }
                th.state = TState::Gone;
            }
        }
        self.released = true;
        let paused = self
            .stopped_at
            .take()
            .map(|t| t.elapsed())
            .unwrap_or_default();
        match first_err {
            Some(e) => Err(e),
            None => Ok(paused),
        }
    }

    /// [`Tracer::wait_until_stopped`] that does not give up on an exit
    /// request: used where a thread must be brought back to a stop before
    /// it can be restored.
    pub fn wait_ignoring_exit(&mut self, tid: i32, deadline: Instant) -> Result<()> {
        self.wait_stopped(tid, deadline, false)
    }

    /// How long the threads have been held.
    pub fn paused(&self) -> Duration {
        self.stopped_at.map(|t| t.elapsed()).unwrap_or_default()
    }

    /// Fails unless `tid` is a held thread of ours.
    pub fn check_stopped(&self, tid: i32) -> Result<()> {
        match self.threads.get(&tid).map(|t| t.state) {
            Some(TState::Stopped) => Ok(()),
            Some(TState::GroupStopped) => Err(Error::GroupStop { pid: self.pid }),
            Some(TState::Gone) | None => Err(Error::TargetExited { pid: tid }),
            Some(TState::Running | TState::New) => {
                Err(Error::Unsupported(format!("thread {tid} is not stopped")))
            }
        }
    }
}

fn gone() -> Thread {
    Thread {
        state: TState::Gone,
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        if let Err(e) = self.release() {
            eprintln!("pyattach: while releasing process {}: {e}", self.pid);
        }
    }
}

/// The signal a `Signal` number maps to, for reports.
pub(crate) fn signal_of(n: i32) -> Signal {
    Signal::try_from(n).unwrap_or(Signal::SIGSEGV)
}
