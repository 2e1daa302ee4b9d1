//! Remote syscalls and function calls in a stopped thread, made so that the
//! target completes correctly even if the tool dies at any instant.
//!
//! Below the thread's red zone we write a signal frame (`rt_sigframe`) that
//! holds the registers the thread would resume with, its FP state and its
//! signal mask. The syscall (at a borrowed `syscall; ret` in ld.so or libc)
//! or the function (returning into our stub) ends in `rt_sigreturn`, which
//! reloads that frame: with or without the tool, the thread resumes where it
//! was. While the tool lives it follows the thread with `PTRACE_SYSCALL`
//! only (syscall stops, never a signal stop it caused: a tracee left in a
//! signal-delivery-stop by a dying tracer receives that signal), reads the
//! result at the final `rt_sigreturn`, lets the frame restore the thread,
//! and then puts back the exact original state at a trap stop, where an
//! interrupted syscall restarts just as it would have.

use std::time::Instant;

use nix::sys::ptrace;
use nix::sys::signal::Signal;

use crate::arch::{Arch, Native, KEEP_ALTSTACK};
use crate::regs::SavedState;
use crate::sys::{self, Stop};
use crate::tracer::{signal_of, TState, Tracer};
use crate::{Error, Result};

/// Addresses of borrowed code in the target.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Gadgets {
    /// A `syscall; ret`.
    pub syscall_ret: u64,
    /// A `mov $15, %rax; syscall` (rt_sigreturn), and the end of it.
    pub sigreturn: u64,
    pub sigreturn_end: u64,
}

/// The largest anonymous executable mapping searched for a stub of an
/// earlier run (see [`find_gadgets`]).
const STUB_SCAN: u64 = 64 * 4096;

/// Executable mappings of the target, the likeliest homes of the gadgets
/// first (ld.so is small and always there; then libc).
/// Also returns the anonymous executable mappings (a stub of ours?).
type Ranges = Vec<(u64, u64)>;
fn exec_mappings(pid: i32) -> Result<(Ranges, Ranges)> {
    let via = crate::procinfo::live_member(pid).unwrap_or(pid);
    let maps = std::fs::read_to_string(format!("/proc/{via}/maps"))
        .map_err(|_| Error::TargetExited { pid })?;
    let mut v: Vec<(u8, u64, u64)> = Vec::new();
    let mut anon = Vec::new();
    for line in maps.lines() {
        let mut cols = line.split_whitespace();
        let (Some(range), Some(perms)) = (cols.next(), cols.next()) else {
            continue;
        };
        if !perms.starts_with("r-x") || line.ends_with("[vsyscall]") {
            continue;
        }
        let path = line.split_whitespace().nth(5).unwrap_or("");
        let rank = if path.contains("/ld-") {
            0
        } else if path.contains("/libc.") || path.contains("/libc-") {
            1
        } else if path == "[vdso]" {
            2
        } else {
            3
        };
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else {
            continue;
        };
        if path.is_empty() {
            anon.push((a, b));
        }
        v.push((rank, a, b));
    }
    v.sort_by_key(|m| m.0);
    Ok((v.into_iter().map(|(_, a, b)| (a, b)).collect(), anon))
}

fn find(hay: &[u8], pats: &[&[u8]]) -> Option<(usize, usize)> {
    pats.iter().find_map(|p| {
        hay.windows(p.len())
            .position(|w| w == *p)
            .map(|i| (i, p.len()))
    })
}

/// Finds the gadgets; reads only memory, so it may run while the target runs.
pub(crate) fn find_gadgets(t: &mut Tracer) -> Result<Gadgets> {
    if let Some(g) = t.gadgets {
        return Ok(g);
    }
    if crate::diagnose::shadow_stack(t.pid) {
        // Our returns (into the stub, out of the `syscall; ret`) are not on
        // the shadow stack; the CPU would raise #CP. gdb 15 pushes onto it.
        return Err(Error::Unsupported(format!(
            "process {} runs with a CET shadow stack; remote calls are not supported there yet",
            t.pid
        )));
    }
    let (mut sc, mut sr) = (None, None);
    let (maps, anon) = exec_mappings(t.pid)?;
    if maps.is_empty() {
        // Every live user process has code mapped; an exiting one has
        // already dropped its memory.
        return Err(Error::TargetExited { pid: t.pid });
    }
    // A stub left by an earlier run that was killed mid-call: reuse it.
    // The kernel merges adjacent anonymous read+exec pages into one
    // mapping (a stub beside the empty page of a run killed between its
    // mmap and its write), so every page of a small one is looked at.
    for (a, b) in anon {
        if b - a > STUB_SCAN || t.stub.is_some() {
            continue;
        }
        let Ok(pages) = t.mem.read_vec(a, (b - a) as usize) else {
            continue;
        };
        let n = Native::STUB.len();
        if let Some(i) = pages
            .chunks_exact(4096)
            .position(|page| page[..n] == *Native::STUB && page[n..].iter().all(|b| *b == 0))
        {
            t.stub = Some(a + i as u64 * 4096);
            t.stub_adopted = true;
        }
    }
    for (a, b) in maps {
        let len = (b - a).min(64 << 20) as usize;
        let Ok(bytes) = t.mem.read_vec(a, len) else {
            continue;
        };
        if sc.is_none() {
            sc = find(&bytes, Native::SYSCALL_RET).map(|(i, _)| a + i as u64);
        }
        if sr.is_none() {
            sr = find(&bytes, Native::SIGRETURN).map(|(i, n)| (a + i as u64, a + (i + n) as u64));
        }
        if let (Some(syscall_ret), Some((sigreturn, sigreturn_end))) = (sc, sr) {
            let g = Gadgets {
                syscall_ret,
                sigreturn,
                sigreturn_end,
            };
            t.gadgets = Some(g);
            return Ok(g);
        }
    }
    if !crate::diagnose::alive(t.pid) {
        return Err(Error::TargetExited { pid: t.pid });
    }
    Err(Error::NoGadget {
        pid: t.pid,
        why: "no `syscall; ret` and `rt_sigreturn` code found in its executable mappings".into(),
    })
}

/// Signals left unblocked during a call: the synchronous faults. Blocking
/// them would make the kernel reset their handler when they fire (CRIU
/// issue 1429) and hide a crash of the callee.
fn call_mask() -> u64 {
    let bit = |s: Signal| 1u64 << (s as i32 - 1);
    !(bit(Signal::SIGSEGV)
        | bit(Signal::SIGBUS)
        | bit(Signal::SIGILL)
        | bit(Signal::SIGFPE)
        | bit(Signal::SIGTRAP)
        | bit(Signal::SIGSYS))
}

fn is_fault(s: i32) -> bool {
    matches!(
        s,
        libc::SIGSEGV | libc::SIGBUS | libc::SIGILL | libc::SIGFPE | libc::SIGTRAP | libc::SIGSYS
    )
}

/// Where [`drive`] left the thread.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum End {
    /// At the exit stop of our syscall (the frame's sigreturn not yet run).
    SyscallExit,
    /// At the entry stop of the frame's rt_sigreturn.
    Sigreturn,
}

#[derive(Clone, Copy)]
enum Op<'a> {
    Syscall { nr: i64, args: &'a [u64] },
    Call { func: u64, args: &'a [u64] },
}

/// Runs syscall `nr` in stopped thread `tid`; returns the raw result
/// (`-errno` on failure).
pub(crate) fn syscall(t: &mut Tracer, tid: i32, nr: i64, args: &[u64]) -> Result<i64> {
    t.check_stopped(tid)?;
    find_gadgets(t)?;
    // Only a thread that restarts through its restart block needs the stub
    // (which returns without the `rt_sigreturn` that would reset it); any
    // other runs the syscall at the borrowed `syscall; ret` just as safely,
    // which spares mapping (and later unmapping) the stub: two remote
    // syscalls while every thread is held.
    if t.stub.is_none() && Native::restarts_via_block(&Native::get_regs(tid)?) {
        ensure_stub(t, tid)?;
    }
    let via_stub = t.stub.is_some();
    run(t, tid, Op::Syscall { nr, args }, via_stub).map(|v| v as i64)
}

/// A syscall that borrows only the target's own code, never our stub (to
/// unmap the stub itself).
fn syscall_borrowed(t: &mut Tracer, tid: i32, nr: i64, args: &[u64]) -> Result<i64> {
    t.check_stopped(tid)?;
    find_gadgets(t)?;
    run(t, tid, Op::Syscall { nr, args }, false).map(|v| v as i64)
}

/// Calls `func(args…)` in stopped thread `tid` on its own stack.
pub(crate) fn call(t: &mut Tracer, tid: i32, func: u64, args: &[u64]) -> Result<u64> {
    if args.len() > 6 {
        return Err(Error::Unsupported(
            "remote calls take at most 6 (register) arguments".into(),
        ));
    }
    t.check_stopped(tid)?;
    find_gadgets(t)?;
    ensure_stub(t, tid)?;
    run(t, tid, Op::Call { func, args }, true)
}

/// Maps our return stub (once per attach): an anonymous page, written, then
/// made read+exec (never writable and executable at once). Its syscalls
/// return through libc's `rt_sigreturn`, which resets the restart block, so
/// they run in a thread that does not restart through one if there is any.
fn ensure_stub(t: &mut Tracer, tid: i32) -> Result<()> {
    if t.stub.is_some() || t.making_stub {
        return Ok(());
    }
    let helper = t
        .tids()
        .into_iter()
        .filter(|h| t.check_stopped(*h).is_ok())
        .find(|h| Native::get_regs(*h).is_ok_and(|r| !Native::restarts_via_block(&r)))
        .unwrap_or(tid);
    t.making_stub = true;
    // Mapped read+exec from the start and written through /proc/PID/mem
    // (as a debugger writes breakpoints): never writable by the target.
    let made = (|| {
        let prot = (libc::PROT_READ | libc::PROT_EXEC) as u64;
        let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
        let r = syscall(
            t,
            helper,
            libc::SYS_mmap,
            &[0, 4096, prot, flags, u64::MAX, 0],
        )?;
        let page = errno_result(r, "mmap (remote)", helper)? as u64;
        t.mem.write(page, Native::STUB)?;
        Ok(page)
    })();
    t.making_stub = false;
    t.stub = Some(made?);
    Ok(())
}

/// A held thread that does not restart through its restart block, the
/// best one to run syscalls in (see [`syscall`]).
pub(crate) fn syscall_thread(t: &Tracer) -> Option<i32> {
    t.tids()
        .into_iter()
        .filter(|h| t.check_stopped(*h).is_ok())
        .find(|h| Native::get_regs(*h).is_ok_and(|r| !Native::restarts_via_block(&r)))
}

/// Makes calls return through a copy of [`Native::STUB`] at `addr` that the
/// caller put in its own executable memory (and unmaps itself, later).
pub(crate) fn adopt_stub(t: &mut Tracer, addr: u64) -> Result<()> {
    if t.stub.is_some() {
        return Err(Error::Unsupported("a call stub is already in use".into()));
    }
    let page = t.mem.read_vec(addr, Native::STUB.len())?;
    if page != Native::STUB {
        return Err(Error::Unsupported(format!(
            "no call stub at {addr:#x} in process {}",
            t.pid
        )));
    }
    t.stub = Some(addr);
    // Never unmapped by us: it belongs to the caller's mapping.
    t.stub_adopted = true;
    Ok(())
}

/// Unmaps the stub through a thread that does not restart through its
/// restart block (its syscall returns through libc, not the stub).
pub(crate) fn unmap_stub(t: &mut Tracer) -> Result<bool> {
    let Some(stub) = t.stub.filter(|_| !t.stub_adopted) else {
        return Ok(true);
    };
    let Some(tid) = t
        .tids()
        .into_iter()
        .filter(|h| t.check_stopped(*h).is_ok())
        .find(|h| Native::get_regs(*h).is_ok_and(|r| !Native::restarts_via_block(&r)))
    else {
        return Ok(false);
    };
    let r = syscall_borrowed(t, tid, libc::SYS_munmap, &[stub, 4096])?;
    errno_result(r, "munmap (remote)", tid)?;
    t.stub = None;
    Ok(true)
}

/// Remote `mprotect`.
pub(crate) fn protect(t: &mut Tracer, tid: i32, addr: u64, len: u64, prot: i32) -> Result<()> {
    let r = syscall(t, tid, libc::SYS_mprotect, &[addr, len, prot as u64])?;
    errno_result(r, "mprotect (remote)", tid).map(|_| ())
}

pub(crate) fn errno_result(r: i64, op: &'static str, tid: i32) -> Result<i64> {
    if (-4095..0).contains(&r) {
        Err(Error::Os {
            op,
            pid: tid,
            errno: nix::errno::Errno::from_raw(-r as i32),
        })
    } else {
        Ok(r)
    }
}

/// The common engine.
fn run(t: &mut Tracer, tid: i32, op: Op, via_stub: bool) -> Result<u64> {
    let g = t.gadgets.expect("gadgets found first");
    let saved = SavedState::save(tid)?;
    let resume = Native::resume_view(&saved.regs);
    let stub = t.stub.filter(|_| via_stub);
    let (restorer, sigret_end, syscall_insn) = match (op, stub) {
        (Op::Call { .. }, Some(s)) => (s + Native::STUB_RET, s + Native::STUB_SIGRETURN_END, s),
        (Op::Syscall { .. }, Some(s)) => (
            s + Native::STUB_SYSCALL_RET,
            s + Native::STUB_SIGRETURN_END,
            s,
        ),
        (Op::Syscall { .. }, None) => (g.sigreturn, g.sigreturn_end, g.syscall_ret),
        (Op::Call { .. }, None) => {
            return Err(Error::Unsupported("a call needs the stub mapped".into()))
        }
    };
    let frame = Native::sigframe(
        &resume,
        &saved.fp,
        saved.fp_is_xstate,
        saved.sigmask,
        KEEP_ALTSTACK,
        restorer,
    )?;
    t.mem.write(frame.base, &frame.bytes)?;
    let mut regs = saved.regs;
    match op {
        Op::Syscall { nr, args } => {
            let mut a = [0u64; 6];
            a[..args.len().min(6)].copy_from_slice(&args[..args.len().min(6)]);
            Native::setup_syscall(&mut regs, syscall_insn, frame.sp, nr, &a);
        }
        Op::Call { func, args } => Native::setup_call(&mut regs, func, frame.sp, restorer, args),
    }
    // From here on the thread is changed: every exit path restores it.
    let outcome = Native::set_regs(tid, &regs)
        .and_then(|()| sys::setsigmask(tid, call_mask()))
        .and_then(|()| drive(t, tid, op, syscall_insn, sigret_end));
    // rt_sigreturn resets the restart block, so a thread that will restart
    // through it skips ours (the tool is here to restore it anyway; should
    // it die right then, the stub sigreturns again). Every other thread
    // runs it, which proves the frame right each time.
    let block = Native::restarts_via_block(&saved.regs);
    let keep_block = block && stub.is_some();
    let ran_sigreturn = matches!(outcome, Ok((_, _, End::Sigreturn)));
    let clobbered = matches!(outcome, Ok((_, true, _))) || (block && ran_sigreturn && !keep_block);
    let restore_regs = if clobbered || outcome.is_err() {
        Native::after_foreign_syscalls(&saved.regs)
    } else {
        saved.regs
    };
    match outcome {
        Ok((value, _, end)) => {
            let back = finish(t, tid, &resume, end, keep_block);
            let restored = saved.restore_with(tid, &restore_regs);
            restored.map_err(|e| restore_failed(t, tid, e))?;
            back?;
            wipe(t, &frame);
            Ok(value)
        }
        Err(e @ (Error::Timeout { .. } | Error::Interrupted { .. })) => {
            // The callee is still running. Pulling the thread out of it now
            // would leave whatever it holds (locks, half-made objects) as
            // it is; instead let it finish on its own, without syscall
            // stops: it returns through the frame and resumes as before.
            let _ = sys::interrupt(tid);
            let deadline = Instant::now() + crate::tracer::STOP_TIMEOUT;
            t.wait_ignoring_exit(tid, deadline)
                .map_err(|e2| restore_failed(t, tid, e2))?;
            if let Some(th) = t.threads.get_mut(&tid) {
                if th.state == TState::Stopped {
                    sys::cont(tid, 0)?;
                    th.state = TState::Running;
                }
            }
            // It will return into the stub: the stub must stay mapped.
            t.stub_adopted = true;
            Err(match e {
                Error::Timeout { after, .. } => Error::CallLeftRunning { tid, after },
                e => e,
            })
        }
        Err(e) => {
            if e.target_gone() {
                return Err(e);
            }
            saved
                .restore_with(tid, &restore_regs)
                .map_err(|e2| restore_failed(t, tid, e2))?;
            wipe(t, &frame);
            Err(e)
        }
    }
}

/// Zeroes a used frame, below the restored stack pointer and dead: it holds
/// a copy of the thread's registers, and a return address into the call
/// stub that, left there and later covered by some live frame, would look
/// like a call still due to return into the stub (which keeps a caller
/// from unmapping it). Best effort: a frame left as it is harms nothing.
fn wipe(t: &Tracer, frame: &crate::arch::Frame) {
    let _ = t.mem.write(frame.base, &vec![0u8; frame.bytes.len()]);
}

fn restore_failed(t: &Tracer, tid: i32, source: Error) -> Error {
    if source.target_gone() {
        return source;
    }
    Error::RestoreFailed {
        pid: t.pid,
        tid,
        source: Box::new(source),
    }
}

/// Follows the thread through the call with syscall stops until our
/// `rt_sigreturn` is entered; returns the result, and whether a syscall
/// made meanwhile may have overwritten the thread's restart block.
fn drive(
    t: &mut Tracer,
    tid: i32,
    op: Op,
    syscall_insn: u64,
    sigret_end: u64,
) -> Result<(u64, bool, End)> {
    let deadline = Instant::now() + t.timeout;
    let mut clobbered = false;
    let mut in_syscall = false;
    let mut ours = false;
    let mut inject: Option<i32> = None;
    loop {
        sys::cont_syscall(tid, inject.take().unwrap_or(0))?;
        let stop = sys::wait(tid, deadline, "running a remote call", true)?;
        match stop {
            Stop::Syscall => {
                let r = Native::get_regs(tid)?;
                if !in_syscall {
                    in_syscall = true;
                    let nr = Native::syscall_nr(&r);
                    if nr == libc::SYS_rt_sigreturn && r.pc() == sigret_end {
                        let value = match op {
                            Op::Call { .. } => Native::stub_result(&r),
                            Op::Syscall { .. } => -(libc::ENOSYS as i64) as u64,
                        };
                        return Ok((value, clobbered, End::Sigreturn));
                    }
                    clobbered |= Native::CLOBBERS_RESTART.contains(&nr);
                    ours = matches!(op, Op::Syscall { nr: n, .. } if n == nr)
                        && r.pc() == syscall_insn + Native::SYSCALL_INSN_LEN;
                } else {
                    in_syscall = false;
                    if ours {
                        // Done: the thread is restored from here, before it
                        // runs another instruction (should the tool die now,
                        // it returns through the frame).
                        return Ok((Native::syscall_ret(&r) as u64, clobbered, End::SyscallExit));
                    }
                }
            }
            Stop::Signal(sig) if is_fault(sig) => {
                let info = ptrace::getsiginfo(sys::pid(tid)).ok();
                // SAFETY: for the fault signals si_addr is the member the
                // kernel filled in (`_sigfault`), and `info` is a complete
                // siginfo_t returned by value.
                let addr = info.map(|i| unsafe { i.si_addr() } as u64).unwrap_or(0);
                let pc = Native::get_regs(tid).map(|r| r.pc()).unwrap_or(0);
                // The thread stays in this signal-delivery-stop; resuming it
                // later with no signal discards the fault.
                return Err(Error::RemoteCrash {
                    tid,
                    signal: signal_of(sig),
                    pc,
                    addr,
                });
            }
            // An unblockable (or job control) signal: pass it on untouched.
            Stop::Signal(sig) => inject = Some(sig),
            Stop::Trap | Stop::OtherEvent(_) => {}
            Stop::Group(_) => {
                if let Some(th) = t.threads.get_mut(&tid) {
                    th.state = TState::GroupStopped;
                }
                return Err(Error::GroupStop { pid: t.pid });
            }
            Stop::Clone(new) => {
                if new > 0 && !t.threads.contains_key(&new) {
                    t.threads
                        .insert(new, crate::tracer::Thread { state: TState::New });
                }
            }
            Stop::Exec => return Err(Error::TargetExeced { pid: t.pid }),
            Stop::Gone => {
                if let Some(th) = t.threads.get_mut(&tid) {
                    th.state = TState::Gone;
                }
                return Err(Error::TargetExited { pid: t.pid });
            }
        }
    }
}

/// From the entry stop of our `rt_sigreturn`: let it run (or, with `skip`,
/// skip it) and catch the thread at the trap right after; check the frame
/// put back what it should (a wrong frame would only show the day the tool
/// dies mid-call).
fn finish(
    t: &mut Tracer,
    tid: i32,
    resume: &crate::arch::Regs,
    end: End,
    skip: bool,
) -> Result<()> {
    let skip = skip && end == End::Sigreturn;
    if skip {
        let mut r = Native::get_regs(tid)?;
        Native::skip_syscall(&mut r);
        Native::set_regs(tid, &r)?;
    }
    sys::interrupt(tid)?;
    sys::cont(tid, 0)?;
    // The thread runs until the trap: wait for it even if the tool is asked
    // to exit meanwhile, since it must be restored at that stop.
    let deadline = Instant::now() + crate::tracer::STOP_TIMEOUT;
    t.wait_ignoring_exit(tid, deadline)?;
    if skip || end == End::SyscallExit {
        return Ok(());
    }
    let now = Native::get_regs(tid)?;
    if now.pc() != resume.pc() || now.sp() != resume.sp() {
        return Err(Error::Unsupported(format!(
            "the signal frame restored pc {:#x} sp {:#x}, expected {:#x} {:#x}",
            now.pc(),
            now.sp(),
            resume.pc(),
            resume.sp()
        )));
    }
    Ok(())
}
