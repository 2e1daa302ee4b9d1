//! Ctrl-C for code blocked in a system call.
//!
//! KeyboardInterrupt reaches a session's code as an asynchronous exception
//! (`PyThreadState_SetAsyncExc`), which the interpreter raises only between
//! bytecodes: code blocked in `time.sleep(3600)`, `os.read` or
//! `lock.acquire()` never gets there. The main thread has the same problem
//! with a real Ctrl-C, and CPython solves it there: the signal cuts the
//! system call short with EINTR, and the retry loop's `PyErr_CheckSignals`
//! (or, for locks, `Py_MakePendingCalls`) raises KeyboardInterrupt. In any
//! other thread those return 0 and the call goes back to sleep.
//!
//! So pyattach does what the signal would, for one thread: it hooks those
//! functions (and 3.12+'s internal `_PyEval_MakePendingCalls`, which lock
//! waits call) with one-shot trampolines that, in that thread only,
//! set KeyboardInterrupt and return -1 (skipping the function), then makes
//! the thread's system call return EINTR. Python 2 needs no hook: it does
//! not retry (the call returns early, and the pending asynchronous
//! exception is raised at the next bytecode, once its countdown
//! `_Py_Ticker` is run out).

use std::time::{Duration, Instant};

use super::arm::PROT_RX;
use super::detour::{self, RaiseLayout, Relocated};
use super::error::RunError;
use super::nudge::{self, Prover};
use super::orphan::{busy, read_u32, stop};
use crate::catalogue;
use crate::Target;

/// What [`interrupt_blocked`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unblocked {
    /// The thread was not blocked in a system call that can be cut short
    /// (running Python sees the asynchronous exception by itself).
    NotBlocked,
    /// Blocked in a call that is not known to be safe to cut short (a C
    /// library's own, or a frame without symbols): left alone, and why.
    Unproved(String),
    /// KeyboardInterrupt was raised in the thread.
    Raised,
    /// Python 2: the system call was cut short (EINTR); the pending
    /// asynchronous exception does the rest.
    Nudged,
    /// The system call was cut short but the thread did not come through a
    /// hooked function within the wait (it went back to sleep); the hooks
    /// were removed.
    Missed,
}

/// Makes thread `tid` of the target, blocked in a system call under Python code,
/// raise KeyboardInterrupt there (see the module docs). `tid` is the
/// thread's id as the target sees it (what the bootstrap reports), which
/// differs from pyattach's view when the target is in a pid namespace of
/// its own. Holds the target's threads twice, briefly; waits up to `wait`
/// for the thread to come through a hook. Everything is restored whatever
/// happens.
pub fn interrupt_blocked(target: &Target, tid: i32, wait: Duration) -> Result<Unblocked, RunError> {
    let pid = target.pid();
    if !cfg!(target_arch = "x86_64") {
        return Err(RunError::Unsupported {
            pid,
            why: "interrupting blocked code is implemented for x86_64 only".into(),
        });
    }
    let Some(tid) = attach::procinfo::host_tid(pid, tid) else {
        return Ok(Unblocked::NotBlocked);
    };
    if !nudge::any_blocked(pid, Some(tid)) {
        return Ok(Unblocked::NotBlocked);
    }
    let py = target.interpreter();
    // Only a call proved to return into CPython's own handling of EINTR
    // (nudge.rs): the code may be blocked in a C library's call, which
    // must not see EINTR.
    let prover = Prover::new(py);
    if py.version.major == 2 {
        return cut_short_py2(py, &prover, pid, tid);
    }
    let (sites, raise) = hooks(py, pid)?;
    // -- stop 1: map, write, hook, cut the call short ---------------------
    let hooked = match hook_and_cut(&prover, &sites, raise, pid, tid)? {
        Ok(h) => h,
        Err(found) => return Ok(found),
    };
    // -- wait for the thread to come through a hook ----------------------
    let mem = attach::ProcessMemory::open(pid)?;
    // (Not cut short: the flag is looked at once.)
    let wait = if hooked.cut { wait } else { Duration::ZERO };
    let claimed = wait_for_hook(&mem, hooked.base, wait);
    // -- stop 2: unhook, unmap -------------------------------------------
    hooked.remove(&sites, claimed, &mem)?;
    Ok(if claimed {
        Unblocked::Raised
    } else {
        Unblocked::Missed
    })
}

/// Python 2: cuts the call short if proved safe; the pending asynchronous
/// exception does the rest.
fn cut_short_py2(
    py: &symbols::Interpreter,
    prover: &Prover,
    pid: i32,
    tid: i32,
) -> Result<Unblocked, RunError> {
    let mut st = stop(pid)?;
    let cut = match prover.verdict(&st, tid) {
        Some(v) if v.nudge => st.interrupt_syscall(tid)?,
        Some(v) => {
            st.detach()?;
            return Ok(Unblocked::Unproved(prover.explain(&v)));
        }
        None => false,
    };
    if cut {
        // The asynchronous exception is looked at when the bytecode
        // countdown runs out (every 100 instructions): run it out now, so
        // that it is raised right after the call instead of some lines
        // later (or, for short code, never).
        if let Some(ticker) = py.symbol(catalogue::TICKER) {
            let _ = st.memory().write(ticker.addr.0, &0i32.to_le_bytes());
        }
    }
    st.detach()?;
    Ok(if cut {
        Unblocked::Nudged
    } else {
        Unblocked::NotBlocked
    })
}

/// The C API the raising trampolines call.
#[derive(Clone, Copy)]
struct Raise {
    set_none: u64,
    exc_var: u64,
    get_ident: u64,
    set_async_exc: u64,
}

/// The entries to hook, relocated, and what the hooks call.
fn hooks(py: &symbols::Interpreter, pid: i32) -> Result<(Vec<(u64, Relocated)>, Raise), RunError> {
    let need = |n: &str| {
        py.symbol(n)
            .map(|s| s.addr.0)
            .ok_or_else(|| RunError::Unsupported {
                pid,
                why: format!("{n} not found"),
            })
    };
    let [set_none, exc_var, get_ident, set_async_exc] = catalogue::RAISE.map(need);
    let raise = Raise {
        set_none: set_none?,
        exc_var: exc_var?,
        get_ident: get_ident?,
        set_async_exc: set_async_exc?,
    };
    let mem = attach::ProcessMemory::open(pid)?;
    let mut sites: Vec<(u64, Relocated)> = Vec::new();
    // 3.12+ lock waits call the internal _PyEval_MakePendingCalls (in
    // .symtab or a debug file only; without it a lock wait is missed).
    for name in catalogue::UNBLOCK_HOOKS {
        let Some(s) = py.symbol(name) else { continue };
        let code = mem.read_vec(s.addr.0, 32)?;
        // Another pyattach's detour in place: leave that entry alone.
        if code[0] == 0xe9 {
            continue;
        }
        if let Ok(r) = detour::relocate(s.addr.0, &code) {
            sites.push((s.addr.0, r));
        }
    }
    if sites.is_empty() {
        return Err(RunError::Unsupported {
            pid,
            why: "neither PyErr_CheckSignals nor Py_MakePendingCalls can be hooked".into(),
        });
    }
    Ok((sites, raise))
}

/// The hooks in place.
struct Hooked {
    pid: i32,
    base: u64,
    total: u64,
    code: u64,
    /// Indices of the sites patched.
    patched: Vec<usize>,
    /// The thread's call was cut short.
    cut: bool,
}

/// Stop 1: maps the pages, writes the trampolines, hooks the entries and
/// cuts the thread's call short; `Err(why)` (the inner one) when the
/// thread is not in a call proved safe to cut short (nothing was done).
fn hook_and_cut(
    prover: &Prover,
    sites: &[(u64, Relocated)],
    raise: Raise,
    pid: i32,
    tid: i32,
) -> Result<Result<Hooked, Unblocked>, RunError> {
    let total = 2 * 4096;
    let hints = attach::free_gaps_near(pid, sites[0].0, total)?;
    let mut st = stop(pid)?;
    match prover.verdict(&st, tid) {
        Some(v) if v.nudge => {}
        found => {
            st.detach()?;
            return Ok(Err(found.map_or(Unblocked::NotBlocked, |v| {
                Unblocked::Unproved(prover.explain(&v))
            })));
        }
    }
    let helper = st.syscall_thread().unwrap_or(pid);
    let base = st.map_near_hinted(helper, sites[0].0, total, &hints)?;
    let layout = RaiseLayout {
        data: base,
        code: base + 4096,
        tid,
        set_none: raise.set_none,
        exc_var: raise.exc_var,
        get_ident: raise.get_ident,
        set_async_exc: raise.set_async_exc,
    };
    let pairs: Vec<(u64, &Relocated)> = sites.iter().map(|(e, r)| (*e, r)).collect();
    let (code, tramps) = detour::raising_code(&layout, &pairs);
    let mut image = vec![0u8; 4096];
    image.extend_from_slice(&code);
    let installed = (|| -> Result<Vec<usize>, RunError> {
        st.memory().write(base, &image)?;
        st.protect(helper, layout.code, 4096, PROT_RX)?;
        let jumps: Vec<Vec<u8>> = sites
            .iter()
            .zip(&tramps)
            .map(|((e, r), &t)| detour::entry_patch(*e, t, r.len))
            .collect();
        let ranges: Vec<(u64, &[u8])> = sites
            .iter()
            .zip(&jumps)
            .map(|((e, _), j)| (*e, j.as_slice()))
            .collect();
        let done = st.patch_many(&ranges)?;
        Ok(done
            .iter()
            .enumerate()
            .filter(|(_, r)| r.is_ok())
            .map(|(i, _)| i)
            .collect())
    })();
    let patched = match installed {
        Ok(p) if !p.is_empty() => p,
        other => {
            let _ = st.unmap(helper, base, total);
            st.detach()?;
            other?;
            return Err(RunError::Unsupported {
                pid,
                why: "no hook could be placed".into(),
            });
        }
    };
    let cut = st.interrupt_syscall(tid)?;
    if cut {
        st.release_last(tid);
    }
    st.detach()?;
    Ok(Ok(Hooked {
        pid,
        base,
        total,
        code: layout.code,
        patched,
        cut,
    }))
}

/// True once the thread came through a hook (and the hook's call
/// returned) within `wait`.
fn wait_for_hook(mem: &attach::ProcessMemory, base: u64, wait: Duration) -> bool {
    let end = Instant::now() + wait;
    loop {
        if read_u32(mem, base + detour::FLAG) == Some(detour::CLAIMED) {
            // Inside PyErr_SetNone for a moment: wait for its return.
            let end = Instant::now() + Duration::from_millis(500);
            while read_u32(mem, base + detour::DONE) != Some(1) && Instant::now() < end {
                std::thread::sleep(Duration::from_micros(200));
            }
            return true;
        }
        if Instant::now() >= end || attach::exit_requested().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

impl Hooked {
    /// Stop 2: cancels an unclaimed hook, puts the entries back and unmaps
    /// the pages once nothing runs in them.
    fn remove(
        self,
        sites: &[(u64, Relocated)],
        claimed: bool,
        mem: &attach::ProcessMemory,
    ) -> Result<(), RunError> {
        let mut st = stop(self.pid)?;
        if !claimed {
            st.memory()
                .write(self.base + detour::FLAG, &detour::CANCELLED.to_le_bytes())?;
        }
        let originals: Vec<(u64, &[u8])> = self
            .patched
            .iter()
            .map(|&i| (sites[i].0, sites[i].1.original.as_slice()))
            .collect();
        let restored = st.patch_many(&originals)?;
        let finished = !claimed || read_u32(mem, self.base + detour::DONE) == Some(1);
        if finished && !busy(&st, self.code) {
            let helper = st.syscall_thread().unwrap_or(self.pid);
            let _ = st.unmap(helper, self.base, self.total);
        }
        st.detach()?;
        for r in restored {
            r?;
        }
        Ok(())
    }
}
