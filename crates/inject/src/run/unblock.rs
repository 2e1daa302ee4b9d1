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
    let Some(tid) = host_tid(pid, tid) else {
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
            // countdown runs out (every 100 instructions): run it out now,
            // so that it is raised right after the call instead of some
            // lines later (or, for short code, never).
            if let Some(ticker) = py.symbol(catalogue::TICKER) {
                let _ = st.memory().write(ticker.addr.0, &0i32.to_le_bytes());
            }
        }
        st.detach()?;
        return Ok(if cut {
            Unblocked::Nudged
        } else {
            Unblocked::NotBlocked
        });
    }
    let need = |n: &str| {
        py.symbol(n)
            .map(|s| s.addr.0)
            .ok_or_else(|| RunError::Unsupported {
                pid,
                why: format!("{n} not found"),
            })
    };
    let [set_none, exc_var, get_ident, set_async_exc] = catalogue::RAISE.map(need);
    let (set_none, exc_var) = (set_none?, exc_var?);
    let (get_ident, set_async_exc) = (get_ident?, set_async_exc?);
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

    // -- stop 1: map, write, hook, cut the call short ---------------------
    let total = 2 * 4096;
    let hints = attach::free_gaps_near(pid, sites[0].0, total)?;
    let mut st = stop(pid)?;
    match prover.verdict(&st, tid) {
        Some(v) if v.nudge => {}
        found => {
            st.detach()?;
            return Ok(found.map_or(Unblocked::NotBlocked, |v| {
                Unblocked::Unproved(prover.explain(&v))
            }));
        }
    }
    let helper = st.syscall_thread().unwrap_or(pid);
    let base = st.map_near_hinted(helper, sites[0].0, total, &hints)?;
    let layout = RaiseLayout {
        data: base,
        code: base + 4096,
        tid,
        set_none,
        exc_var,
        get_ident,
        set_async_exc,
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

    // -- wait for the thread to come through a hook ----------------------
    let end = Instant::now() + wait;
    let claimed = loop {
        if read_u32(&mem, base + detour::FLAG) == Some(detour::CLAIMED) {
            // Inside PyErr_SetNone for a moment: wait for its return.
            let end = Instant::now() + Duration::from_millis(500);
            while read_u32(&mem, base + detour::DONE) != Some(1) && Instant::now() < end {
                std::thread::sleep(Duration::from_micros(200));
            }
            break true;
        }
        if !cut || Instant::now() >= end || attach::exit_requested().is_some() {
            break false;
        }
        std::thread::sleep(Duration::from_micros(500));
    };

    // -- stop 2: unhook, unmap -------------------------------------------
    let mut st = stop(pid)?;
    if !claimed {
        st.memory()
            .write(base + detour::FLAG, &detour::CANCELLED.to_le_bytes())?;
    }
    let originals: Vec<(u64, &[u8])> = patched
        .iter()
        .map(|&i| (sites[i].0, sites[i].1.original.as_slice()))
        .collect();
    let restored = st.patch_many(&originals)?;
    let finished = !claimed || read_u32(&mem, base + detour::DONE) == Some(1);
    if finished && !busy(&st, layout.code) {
        let helper = st.syscall_thread().unwrap_or(pid);
        let _ = st.unmap(helper, base, total);
    }
    st.detach()?;
    for r in restored {
        r?;
    }
    Ok(if claimed {
        Unblocked::Raised
    } else {
        Unblocked::Missed
    })
}

/// The thread of `pid` whose id in the target's own pid namespace is
/// `ns_tid` (the last field of `NSpid` in its status), as pyattach sees it.
fn host_tid(pid: i32, ns_tid: i32) -> Option<i32> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    tasks.flatten().find_map(|e| {
        let tid: i32 = e.file_name().to_str()?.parse().ok()?;
        let status = std::fs::read_to_string(e.path().join("status")).ok()?;
        let last = status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .and_then(|v| v.split_whitespace().last())
            .and_then(|v| v.parse::<i32>().ok())
            .unwrap_or(tid);
        (last == ns_tid).then_some(tid)
    })
}
