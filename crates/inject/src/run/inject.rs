//! Getting a GIL-holding thread of the target to run the bootstrap.
//!
//! Strategy (x86_64), all within one deadline:
//! 1. **One-shot detour** at GIL-holding entry points (`PyEval_SaveThread`,
//!    `PyErr_CheckSignals`, and `PyEval_ReleaseThread` on 3.13+ where
//!    locks park through it):
//!    map pages near the module (every thread held for one remote
//!    `mmap`), write the payload and the trampolines while the target runs
//!    (nothing in it knows the pages yet), then, every thread held again,
//!    make the code page r-x (never writable and executable at once),
//!    replace each entry's first instructions with a `jmp`, let the
//!    target run and detach. The first thread to enter claims the flag and
//!    runs `PyRun_SimpleString(bootstrap)` on its own stack.
//! 2. **Nudges**, in the second stop: on Python 3, threads blocked in
//!    syscalls that CPython retries on EINTR (PEP 475: sleep,
//!    select/poll/epoll, read, wait, lock and futex waits) get `-EINTR`
//!    (never on 2.7, which does not retry), so they pass through
//!    `Py_BEGIN_ALLOW_THREADS` again at once; a main thread running Python
//!    (not in a syscall) gets a pending call (`Py_AddPendingCall`) of a stub
//!    that claims the same flag and runs the bootstrap at the eval breaker.
//! 3. Once the bootstrap has called back, and before pyattach acks it
//!    (the bootstrap waits, holding no lock), a brief stop puts the
//!    original bytes back. The pages stay mapped while a thread may still
//!    be returning through them; [`Leftover::remove`] unmaps them after
//!    the session, in a last brief stop, once that is certain.
//!
//! A pyattach killed before it could do 3 leaves its pages (inert: a
//! detour still in place fails its claim and runs the original code). The
//! next pyattach finds them by their header, takes the entries back (the
//! file's bytes, restored in its stop 2) and unmaps them in its last stop
//! once nothing can run in them any more (`reclaim`).
//!
//! If nothing claims the flag by the deadline, the flag is set to
//! "cancelled" while every thread is held, the entries are restored and the
//! pages unmapped (no thread can be inside them), and the error names the
//! threads running native code and where.

use std::time::{Duration, Instant};

use symbols::{DiscoverOptions, Interpreter, RemoteAddr};

use super::bootstrap::{self, Mode};
use super::channel::{ChannelKind, Rendezvous};
use super::detour::{self, Layout, Relocated};
use super::error::RunError;
use super::nudge::{self, Warming};
use super::protocol::Channel;

/// `PROT_READ | PROT_EXEC` (`<sys/mman.h>`; the same on every Linux arch).
pub(super) const PROT_RX: i32 = 0x1 | 0x4;

/// Where in the code page the strings the trampolines pass begin (the
/// page's last 64 bytes).
const STRINGS_AT: u64 = 4096 - 64;

/// What to run and how.
#[derive(Clone, Debug)]
pub struct Options {
    pub mode: Mode,
    /// Only this thread (a tid of the target) may run the code.
    pub thread: Option<i32>,
    /// Deadline for a thread to reach a safe point and call back.
    pub timeout: Duration,
    pub channel: ChannelKind,
}

/// When no thread was nudged, nor a pending call queued, how long the
/// threads' own wake-ups (a polling loop, a timeout) get to reach a hook
/// before the new-thread fallback starts.
const IDLE_FALLBACK: Duration = Duration::from_millis(500);

/// What happened, for `--verbose`.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// "detour at PyEval_SaveThread", "pending call", ...
    pub strategy: String,
    /// The thread that ran the bootstrap.
    pub tid: Option<i32>,
    /// Entry points hooked, and those that could not be (with why).
    pub hooked: Vec<String>,
    pub skipped: Vec<String>,
    /// Entries where a detour left by an earlier, killed pyattach was found
    /// (and replaced; restored to the file's bytes at the end).
    pub replaced: Vec<String>,
    /// Threads whose blocked syscall was made to return EINTR.
    pub nudged: Vec<i32>,
    /// Threads that could not run the bootstrap where they were stopped:
    /// too little stack left below them (see `stacks`).
    pub cramped: Vec<i32>,
    /// Each thread found blocked in a syscall that can be cut short:
    /// "thread N nudged: why" or "thread N left alone: why".
    pub blocked: Vec<String>,
    /// True if a pending call was queued for the main thread.
    pub pending_call: bool,
    /// True if the new-thread fallback was started.
    pub new_thread: bool,
    /// How long every thread was held, for each stop.
    pub stops: Vec<Duration>,
    /// Within the stops that set the detour up (map; then protect, patch,
    /// nudge): when each step was done (time since the threads were held
    /// that time), to see where the pause goes.
    pub steps: Vec<(&'static str, Duration)>,
    /// "socketpair" or "unix socket".
    pub channel: String,
    /// From the start to the open channel.
    pub elapsed: Duration,
}

struct Site {
    name: &'static str,
    entry: u64,
    reloc: Relocated,
}

/// Runs the bootstrap for `opts.mode` in `pid` and returns the open
/// channel.
pub fn start(pid: i32, opts: &Options) -> Result<(Channel, Report, Leftover), RunError> {
    // A process whose main thread has exited (`pthread_exit`) while others
    // run on is reached through one of those (its `/proc/TID` has the
    // memory, maps and descriptors the zombie leader's has not).
    let pid = attach::procinfo::live_member(pid).unwrap_or(pid);
    let t0 = Instant::now();
    let deadline = t0 + opts.timeout;
    let mut report = Report::default();
    if !cfg!(target_arch = "x86_64") {
        return Err(RunError::Unsupported {
            pid,
            why: "running code is implemented for x86_64 only".into(),
        });
    }
    // Which process the pid names now: discovery takes milliseconds, and
    // the pid could be another process's by the time it is attached.
    let identity = attach::procinfo::Identity::of(pid)?;
    // Each thread's seccomp state (a file per thread: tens of ms with a
    // thousand threads), read beside discovery and the preparation.
    let seccomp = std::thread::spawn(move || super::seccomp::filtered(pid));
    let py = std::sync::Arc::new(symbols::discover(pid, &DiscoverOptions::default())?);
    let v = (py.version.major, py.version.minor);
    if v < (2, 7) || (v.0 == 3 && v.1 < 6) {
        return Err(RunError::Unsupported {
            pid,
            why: format!("CPython {}.{}", v.0, v.1),
        });
    }
    if py.build.free_threaded {
        return Err(RunError::Unsupported {
            pid,
            why: "a free-threaded CPython (Py_GIL_DISABLED): --run relies on the GIL".into(),
        });
    }
    let run = sym(&py, "PyRun_SimpleString", pid)?;
    let mem = attach::ProcessMemory::open(pid)?;
    // PyErr_CheckSignals: called with the GIL held by every EINTR retry
    // loop (and a place where Python signal handlers run anyway), so a
    // nudged thread reaches it even where LTO inlined PyEval_SaveThread
    // into the caller (Debian's python3.11 in os.read).
    let mut names = vec!["PyEval_SaveThread", "PyErr_CheckSignals"];
    if v >= (3, 13) {
        names.push("PyEval_ReleaseThread");
        // Py_MakePendingCalls: where a parked lock wait (Lock.acquire,
        // Thread.join) goes with the GIL after EINTR, off the parking lot
        // and owning nothing of the wait; LTO builds (Debian's) inline
        // PyEval_ReleaseThread into _PyParkingLot_Park (see nudge.rs).
        names.push("Py_MakePendingCalls");
    }
    let mut sites = Vec::new();
    let mut entries = Vec::new();
    for name in names {
        let Some(s) = py.symbol(name) else {
            report.skipped.push(format!("{name}: no symbol"));
            continue;
        };
        entries.push(s.addr.0);
        let mut code = mem.read_vec(s.addr.0, 32)?;
        if code[0] == 0xe9 {
            let rel = i32::from_le_bytes([code[1], code[2], code[3], code[4]]);
            let to = (s.addr.0 + 5).wrapping_add(rel as i64 as u64);
            if !py.module.contains(RemoteAddr(to)) {
                // A detour left by a pyattach that was killed before it
                // could restore the entry: take the original bytes from the
                // module's file; the entry gets them back at the end.
                match py.read_module_bytes(s.addr, 32) {
                    Ok(orig) if orig[0] != 0xe9 => {
                        report.replaced.push(name.to_string());
                        code = orig;
                    }
                    _ => {
                        report
                            .skipped
                            .push(format!("{name}: {}", detour::DetourError::AlreadyPatched));
                        continue;
                    }
                }
            }
        }
        match detour::relocate(s.addr.0, &code) {
            Ok(reloc) => sites.push(Site {
                name,
                entry: s.addr.0,
                reloc,
            }),
            Err(e) => report.skipped.push(format!("{name}: {e}")),
        }
    }
    if sites.is_empty() {
        return Err(RunError::Unsupported {
            pid,
            why: format!(
                "no entry point can be hooked ({})",
                report.skipped.join("; ")
            ),
        });
    }
    let pending = py.symbol("Py_AddPendingCall").map(|s| s.addr.0);
    // Pages an earlier pyattach left when it was killed: unmapped in a
    // later stop of this run, once nothing can run in them.
    let orphans = Orphan::find(pid, &mem);
    // Python 2 does not retry on EINTR (PEP 475 came with 3.5): time.sleep
    // would return early and os.read raise. On 3, only calls proved to
    // return into a retry loop are cut short (see nudge.rs).
    // Prepared beside the work up to the second stop, which needs it.
    let warming =
        (v.0 >= 3 && nudge::any_blocked(pid, opts.thread)).then(|| Warming::start(py.clone()));
    let fallback = if opts.thread.is_none() {
        Fallback::find(&py)
    } else {
        None
    };

    let mut rv = Rendezvous::prepare(pid, opts.channel)?;
    report.channel = if rv.is_pair() {
        "socketpair"
    } else {
        "unix socket"
    }
    .into();
    // How long a bootstrap that fired waits for pyattach's ack: pyattach
    // answers within milliseconds when alive, and a pyattach killed at the
    // wrong moment must not hold the target's thread for long.
    let wait = Duration::from_millis(800);
    // The text for PyRun_SimpleString, then (after its NUL) the session's
    // parameters and the bootstrap's source, which the text reads from
    // there (the source only if the target has no bootstrap of this
    // pyattach defined yet). The text names their addresses, known once
    // the pages are mapped; its length does not depend on them.
    let mut params = rv.params(opts.mode.clone(), wait);
    params.wakeup_fd_fn = py.symbol("PySignal_SetWakeupFd").map_or(0, |s| s.addr.0);
    let payload_len = bootstrap::payload_len(&params);

    // -- stop 1, in two: map | write | protect, patch, nudge ------------
    // Everything that can be known beforehand is (the code borrowed by
    // remote syscalls included). The threads are held for one remote
    // syscall (mmap), let go while the pages are written (nothing in the
    // target knows them until an entry jumps there), then held again for
    // the mprotect, the patches and the nudges: the target's longest pause
    // is that of one stop, not of both, and never spans the write of the
    // payload (tens of KB).
    // The stacks with room for the bootstrap, for the trampolines to check
    // (a table after the payload).
    let stacks = super::stacks::find(pid);
    let table = super::stacks::table(&stacks);
    let table_at = detour::SCRIPT + payload_len.next_multiple_of(16) as u64;
    let data_len = detour::data_len_for(payload_len.next_multiple_of(16) + table.len());
    let total = data_len + 4096;
    // The C API the trampolines call besides PyRun_SimpleString (public,
    // exported by every build; without one of them they do without).
    let api = |names: &[&str]| -> Option<Vec<u64>> {
        names
            .iter()
            .map(|n| py.symbol(n).map(|s| s.addr.0))
            .collect()
    };
    let fast_api = api(&[
        "PySys_GetObject",
        "PyDict_GetItemString",
        "PyObject_CallFunction",
        "Py_DecRef",
        "PyErr_Clear",
    ]);
    let keep_error = api(&["PyErr_Fetch", "PyErr_Restore"]).map(|f| detour::KeepError {
        fetch: f[0],
        restore: f[1],
        exc_info: api(&["PyErr_GetExcInfo", "PyErr_SetExcInfo"]).map(|g| (g[0], g[1])),
    });
    let signals = api(&[
        "PyErr_CheckSignals",
        "PyErr_NormalizeException",
        "PyImport_AddModule",
        "PyModule_GetDict",
        "PyRun_StringFlags",
    ]);
    let layout_at = |base: u64| {
        let code = base + data_len;
        let (name, fmt, fmt_exc, main_name, key) = detour::fast_strings_at(code + STRINGS_AT);
        let (blob, blob_len) = bootstrap::blob_at(&params, base + detour::SCRIPT);
        Layout {
            data: base,
            code,
            run: run.0,
            only_tid: opts.thread,
            stacks: Some(base + table_at),
            ensure: fallback.map_or(0, |f| f.ensure),
            release: fallback.map_or(0, |f| f.release),
            fast: fast_api.as_ref().map(|f| detour::Fast {
                sys_get: f[0],
                dict_get: f[1],
                call: f[2],
                decref: f[3],
                clear: f[4],
                name,
                key,
                fmt,
                fmt_exc,
                blob,
                blob_len,
            }),
            keep_error,
            signals: signals.as_ref().map(|f| detour::Signals {
                check: f[0],
                normalize: f[1],
                add_module: f[2],
                get_dict: f[3],
                run_string: f[4],
                main_name,
            }),
        }
    };
    let pairs: Vec<(u64, &Relocated)> = sites.iter().map(|s| (s.entry, &s.reloc)).collect();
    // The code page: the trampolines, then the code remote calls return
    // into (no page of its own to map and unmap), then, in its last bytes,
    // the strings the trampolines pass. Its size does not depend on where
    // it goes (checked here at the first entry's own page).
    let code_page = |code: &detour::Code| {
        let mut page = code.bytes.clone();
        page.resize(page.len().next_multiple_of(16), 0xcc);
        let stub_at = page.len() as u64;
        page.extend_from_slice(attach::CALL_STUB);
        let fits = page.len() as u64 <= STRINGS_AT;
        page.resize(STRINGS_AT as usize, 0xcc);
        page.extend_from_slice(&detour::fast_strings(bootstrap::key()));
        (page, stub_at, fits)
    };
    if !code_page(&detour::code(&layout_at(sites[0].entry & !0xfff), &pairs)).2 {
        return Err(RunError::Unsupported {
            pid,
            why: "the trampolines do not fit in one page".into(),
        });
    }
    let hints = attach::free_gaps_near(pid, sites[0].entry, total)?;
    // The pid cannot change hands once its threads are seized (a traced
    // process that exits stays a zombie until released): checked then,
    // before they are held.
    let restart = crate::dump::restart_for(py.version.major);
    let filtered = seccomp
        .join()
        .unwrap_or_else(|_| super::seccomp::filtered(pid));
    let mut seized = attach::Process::attach(pid)?;
    seized.restart_waits(restart);
    if let Err(e) = identity.check() {
        seized.detach()?;
        return Err(e.into());
    }
    seized.prepare_calls()?;
    let mut st = seized.stop_all()?;
    if let Err(e) = super::seccomp::check(&st, pid, &filtered) {
        st.detach()?;
        return Err(e);
    }
    report.steps.push(("stopped", st.paused()));
    // Syscalls in a thread that does not restart through its restart block
    // need no call stub of their own.
    let helper = st.syscall_thread().unwrap_or(pid);
    let base = st.map_near_hinted(helper, sites[0].entry, total, &hints)?;
    // Ours from now on, should this pyattach be killed before it is done:
    // a later one recognises the pages by it (see Orphan::find).
    let header = detour::header(data_len, std::process::id());
    if let Err(e) = st.memory().write(base + detour::OWNER, &header) {
        let _ = st.unmap(helper, base, total);
        return Err(e.into());
    }
    report.steps.push(("mapped", st.paused()));
    report.stops.push(st.paused());
    // Until an entry jumps there, nothing can run in the pages: a failure
    // on the way (the code page cannot be made executable under
    // PR_SET_MDWE or a seccomp filter, a thread exits, pyattach is asked
    // to stop) takes them back at once, in a stop of its own.
    let running = match st.resume_all() {
        Ok(running) => running,
        Err(e) => {
            take_back(pid, restart, base, total, &orphans, &entries);
            return Err(e.into());
        }
    };
    if let Some(ms) = std::env::var_os("PYATTACH_TEST_HOLD_AFTER_MAP_MS") {
        // Tests kill pyattach here, with its pages mapped and not armed.
        let ms = ms.to_str().and_then(|v| v.parse().ok()).unwrap_or(0);
        std::thread::sleep(Duration::from_millis(ms));
    }
    let layout = layout_at(base);
    let code = detour::code(&layout, &pairs);
    let (tramps, stub) = (code.tramps.clone(), code.pending_stub);
    let mut payload = bootstrap::payload(&params, base + detour::SCRIPT);
    debug_assert_eq!(payload.len(), payload_len);
    // One write: the data pages (the payload, then the stacks' table),
    // then the code page.
    payload.resize(payload_len.next_multiple_of(16), 0);
    payload.extend_from_slice(&table);
    let mut image = detour::data(&payload, std::process::id());
    let (page, stub_at, _) = code_page(&code);
    image.extend_from_slice(&page);
    let call_stub = layout.code + stub_at;
    // Tests force the new-thread fallback alone with this variable (it is
    // otherwise reached only when no hook fires in half the timeout).
    let only_thread = std::env::var_os("PYATTACH_TEST_STRATEGY").is_some_and(|v| v == "new-thread")
        && fallback.is_some();
    let prover = warming.map(|w| w.finish(&py));
    let mut patched = Vec::new();
    let armed = (|| -> Result<(attach::Stopped, i32), RunError> {
        running.memory().write(base, &image)?;
        let mut st = running.stop_all()?;
        report.steps.push(("written, stopped again", st.paused()));
        let helper = st.syscall_thread().unwrap_or(pid);
        if let Err(e) = st.protect(helper, layout.code, 4096, PROT_RX) {
            // PR_SET_MDWE refuses to make memory executable (EACCES), not
            // an executable mapping made as such: the code page is made
            // anew, read+exec, and written as debuggers write breakpoints.
            // A seccomp filter refusing PROT_EXEC refuses this too.
            if !matches!(e, attach::Error::Os { .. }) {
                return Err(e.into());
            }
            st.map_code(helper, layout.code, 4096, &page)?;
            report.steps.push(("mapped executable (MDWE)", st.paused()));
        }
        report.steps.push(("protected", st.paused()));
        for tid in st.threads() {
            if st
                .regs(tid)
                .is_ok_and(|r| !super::stacks::roomy(&stacks, r.sp()))
            {
                report.cramped.push(tid);
            }
        }
        if !only_thread {
            let jumps: Vec<Vec<u8>> = sites
                .iter()
                .zip(&tramps)
                .map(|(s, &tramp)| detour::entry_patch(s.entry, tramp, s.reloc.len))
                .collect();
            let ranges: Vec<(u64, &[u8])> = sites
                .iter()
                .zip(&jumps)
                .map(|(s, j)| (s.entry, j.as_slice()))
                .collect();
            for (s, r) in sites.iter().zip(st.patch_many(&ranges)?) {
                match r {
                    Ok(_) => {
                        patched.push(s);
                        report.hooked.push(format!("{} at {:#x}", s.name, s.entry));
                    }
                    Err(e) => report.skipped.push(format!("{}: {e}", s.name)),
                }
            }
        }
        Ok((st, helper))
    })();
    let (mut st, helper) = match armed {
        Ok(held) => held,
        Err(e) => {
            take_back(pid, restart, base, total, &orphans, &entries);
            return Err(e);
        }
    };
    if patched.is_empty() && !only_thread {
        let _ = st.unmap(helper, base, total);
        st.detach()?;
        return Err(RunError::Unsupported {
            pid,
            why: format!(
                "no entry point could be patched ({})",
                report.skipped.join("; ")
            ),
        });
    }
    report.steps.push(("patched", st.paused()));
    let threads = st.threads();
    let mut keep_pages = false;
    let mut main_running = false;
    let mut caller = None;
    let selection = match &prover {
        Some(p) if !only_thread => p.select(&st, opts.thread),
        _ => Default::default(),
    };
    for &tid in &threads {
        if only_thread || opts.thread.is_some_and(|t| t != tid) {
            continue;
        }
        let regs = st.regs(tid)?;
        // A main thread in a futex wait is most often one that runs Python
        // but waits for the GIL this instant (a CPU-bound main thread
        // spends part of every switch interval there): no detour catches
        // it, the pending call does, once it has the GIL. On Python 3 the
        // wait is also cut short below, and lock waits run pending calls
        // on EINTR. On 2.7 (no EINTR) only when that thread was asked for.
        if tid == pid && regs.syscall() == Some(202) && (v.0 >= 3 || opts.thread == Some(pid)) {
            main_running = true;
        }
        match regs.syscall() {
            Some(nr) if selection.nudge.contains(&tid) => {
                if st.interrupt_syscall(tid)? {
                    report.nudged.push(tid);
                    st.release_last(tid);
                }
                if nr != 202 && caller.is_none() {
                    caller = Some(tid);
                }
            }
            Some(_) => {}
            None if tid == pid => main_running = true,
            None => {}
        }
    }
    report.steps.push(("nudged", st.paused()));
    if main_running && opts.thread.is_none_or(|t| t == pid) {
        if let Some(add) = pending {
            // Queue the stub from a thread parked in a syscall (it holds no
            // interpreter lock), else from the main thread itself. A call
            // that cannot take the pending-calls lock soon is abandoned
            // (restored) rather than waited for.
            st.set_call_timeout(Duration::from_millis(300));
            let by = caller.unwrap_or(pid);
            if st.adopt_call_stub(call_stub).is_ok() {
                // Said in the page first, for a later pyattach should this
                // one be killed during the call.
                set_flags(&st, base, &[(detour::PENDING_QUEUED, 1), (detour::KEEP, 1)]);
                match st.call(by, add, &[stub, 0]) {
                    Ok(r) if r as i32 == 0 => {
                        report.pending_call = true;
                        st.release_last(pid);
                        set_flags(&st, base, &[(detour::KEEP, 0)]);
                    }
                    // It returns into the call stub some day: the pages
                    // must stay.
                    Err(attach::Error::CallLeftRunning { .. }) => keep_pages = true,
                    _ => set_flags(&st, base, &[(detour::PENDING_QUEUED, 0), (detour::KEEP, 0)]),
                }
            }
        }
    }
    report.steps.push(("queued", st.paused()));
    report.stops.push(st.detach()?);

    // -- wait for a claim (half-way through: a new thread) ---------------
    // Sooner when nothing was done to bring a thread to a hook (no call
    // could be proved safe to cut short, no pending call, no thread
    // running): then only the threads' own wake-ups would.
    let idle = report.nudged.is_empty() && !report.pending_call && !main_running;
    let mut fallback_at = fallback.map(|_| {
        if only_thread {
            t0
        } else if idle {
            t0 + (opts.timeout / 2).min(IDLE_FALLBACK)
        } else {
            t0 + opts.timeout / 2
        }
    });
    let claimed = loop {
        if fallback_at.is_some_and(|at| Instant::now() >= at) {
            fallback_at = None;
            if let (Some(f), Some(thread_fn)) = (fallback, code.thread_fn) {
                let mut st = attach::freeze_with(pid, restart)?;
                if read_u32(&mem, base + detour::FLAG) == Some(detour::FREE) {
                    // Stays set even if the start fails: a thread may be
                    // created all the same (a call left running).
                    set_flags(&st, base, &[(detour::THREAD_STARTED, 1)]);
                    if f.start(&mut st, thread_fn, base + detour::PTHREAD_T) {
                        report.new_thread = true;
                    }
                }
                report.stops.push(st.detach()?);
            }
        }
        let flag = read_u32(&mem, base + detour::FLAG);
        if flag == Some(detour::CLAIMED) {
            break true;
        }
        if flag.is_none() || !alive(pid) {
            return Err(RunError::TargetExited { pid });
        }
        if attach::exit_requested().is_some() || Instant::now() >= deadline {
            break false;
        }
        std::thread::sleep(Duration::from_micros(200));
    };
    // -- stop 2: restore the entries -------------------------------------
    // Once the bootstrap has called back, while it waits for the ack: the
    // stop then catches no thread running Python for us (holding the GIL
    // that the others, let go first, would wait for), and the bootstrap's
    // thread, the one that runs at once, is let go last (a thread let go
    // can take the CPU from pyattach before it lets the next one go).
    let restore = |report: &mut Report| -> Result<(), RunError> {
        let mut st = attach::freeze_with(pid, restart)?;
        restore_entries(&mut st, &patched)?;
        if let Some(tid) = read_u32(&mem, base + detour::TID) {
            st.release_last(tid as i32);
        }
        report.stops.push(st.detach()?);
        Ok(())
    };
    let mut restored = None;
    let outcome = if claimed {
        rv.wait_then(
            deadline.max(Instant::now() + Duration::from_secs(2)),
            || restored = Some(restore(&mut report)),
        )
    } else {
        Err(RunError::NoCallback { pid, secs: 0.0 })
    };
    // Else now (a bootstrap that never called back, or nothing claimed).
    let mut holders = None;
    if let Some(r) = restored {
        r?;
    } else {
        let mut st = attach::freeze_with(pid, restart)?;
        let flag = read_u32(&mem, base + detour::FLAG);
        let cancel = flag == Some(detour::FREE);
        if cancel {
            st.memory()
                .write(base + detour::FLAG, &detour::CANCELLED.to_le_bytes())?;
        }
        restore_entries(&mut st, &patched)?;
        if cancel {
            // A pending call left running (its timeout) returns into the
            // page; one still queued, or a new thread still starting, will
            // run code in it (the stub finds the flag cancelled and
            // returns).
            let waiting = Waiting {
                pending: report.pending_call,
                thread: report.new_thread,
            };
            if !keep_pages && waiting.settled(&mem, base) && !busy(&st, layout.code) {
                let helper = st.syscall_thread().unwrap_or(pid);
                let _ = st.unmap(helper, base, total);
            }
            reclaim(&mut st, &orphans, &entries);
            let blocked = prover.as_ref().map(|p| p.notes(&selection));
            let mut holder = describe_running(&st, &py, &blocked.unwrap_or_default());
            if let Some(t) = opts.thread.filter(|t| report.cramped.contains(t)) {
                holder.push_str(&format!(
                    " (thread {t} has less than {} KiB of stack left where it waits: too little to run the code on)",
                    super::stacks::ROOM / 1024
                ));
            }
            holders = Some(holder);
        }
        report.stops.push(st.detach()?);
    }
    let leftover = Leftover {
        pid,
        base,
        total,
        code: layout.code,
        keep: keep_pages,
        waiting: Waiting {
            pending: report.pending_call,
            thread: report.new_thread,
        },
        orphans,
        entries,
        restart,
    };
    if let Some(sig) = attach::exit_requested() {
        return Err(RunError::Interrupted(sig.as_str().to_string()));
    }
    if let Some(holder) = holders {
        return Err(RunError::NoSafePoint {
            pid,
            secs: t0.elapsed().as_secs_f64(),
            holder,
        });
    }
    let channel = match outcome {
        Ok(channel) => channel,
        Err(e) => {
            // A bootstrap that ran and failed (it could not import socket
            // or open its channel): its pages go as soon as its call has
            // returned, which it does at once (or after waiting for an ack
            // that will not come).
            let _ = leftover.remove(wait + Duration::from_millis(200));
            return Err(e);
        }
    };
    report.tid = read_u32(&mem, base + detour::TID).map(|t| t as i32);
    let site = read_u32(&mem, base + detour::SITE).unwrap_or(0) as usize;
    report.strategy = match site {
        0 => "pending call (Py_AddPendingCall) in the main thread".into(),
        n if n == detour::THREAD_SITE as usize => {
            "new thread (pthread_create + PyGILState_Ensure)".into()
        }
        n => format!(
            "one-shot detour at {}",
            patched.get(n - 1).map_or("?", |s| s.name)
        ),
    };
    // Only now: naming the C library's functions can take a while.
    if let Some(p) = &prover {
        report.blocked = p.notes(&selection);
    }
    report.elapsed = t0.elapsed();
    Ok((channel, report, leftover))
}

/// The pages of an injection, still mapped while the thread that ran the
/// bootstrap may be returning through them.
#[derive(Debug)]
pub struct Leftover {
    pid: i32,
    base: u64,
    total: u64,
    code: u64,
    /// Code queued or started in stop 1 that runs in the page later,
    /// whichever strategy claimed.
    waiting: Waiting,
    /// A remote call left running returns into the page some day.
    keep: bool,
    /// Pages left by earlier, killed pyattach runs, to unmap in the same
    /// stop, and the entries that may jump into them.
    orphans: Vec<Orphan>,
    entries: Vec<u64>,
    /// How the last stop treats the waits it cuts short.
    restart: attach::Restart,
}

/// Entrances into the code page that stay open after the entries are
/// restored: a pending call the main thread has not run yet, and a new
/// thread that has not finished. Each sets its flag in the data page as
/// its last act before returning.
#[derive(Clone, Copy, Debug)]
struct Waiting {
    pending: bool,
    thread: bool,
}

impl Waiting {
    fn settled(self, mem: &attach::ProcessMemory, base: u64) -> bool {
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
    pub fn remove(self, wait: Duration) -> Result<Option<Duration>, RunError> {
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

/// Writes `u32` flags into the data page at `base` (best effort: they only
/// help a later pyattach decide whether it may unmap the pages).
fn set_flags(st: &attach::Stopped, base: u64, flags: &[(u64, u32)]) {
    for &(off, v) in flags {
        let _ = st.memory().write(base + off, &v.to_le_bytes());
    }
}

/// The pages of an earlier pyattach that was killed before it could unmap
/// them: its data pages at `data`, its code page at `code`.
#[derive(Clone, Copy, Debug)]
struct Orphan {
    data: u64,
    code: u64,
}

impl Orphan {
    /// Finds them (while the target runs): an anonymous read-execute page
    /// that begins with one of our trampolines, whose claim points at
    /// anonymous read-write pages just below it, which carry our header
    /// (magic, their length), made by a pyattach that is no longer alive;
    /// or, from one killed before it armed its detour, one read-write
    /// mapping with that header and a page more than its length.
    /// Anything else, pages of older builds included, is left alone.
    fn find(pid: i32, mem: &attach::ProcessMemory) -> Vec<Orphan> {
        let Ok(maps) = symbols::maps::read(pid) else {
            return Vec::new();
        };
        let anon = |m: &symbols::maps::Mapping| m.path.is_none() && m.inode == 0;
        // The remote munmap borrows a `syscall; ret` and an `rt_sigreturn`
        // from the target's code, searched in ld.so and libc first: with
        // neither mapped they might be found in an orphan's code page (its
        // call stub has both), which the munmap would pull from under the
        // thread. Leave the pages then.
        let libc = maps.iter().any(|m| {
            m.is_exec()
                && m.path.as_ref().is_some_and(|p| {
                    let p = p.to_string_lossy();
                    p.contains("/ld-") || p.contains("/libc.") || p.contains("/libc-")
                })
        });
        if !libc {
            return Vec::new();
        }
        let mut out = Vec::new();
        for (i, m) in maps.iter().enumerate() {
            // Mapped and not armed yet (killed between the two stops that
            // set the detour up): one read-write mapping of exactly the
            // header's length and a page, never executable, so nothing can
            // have run in it.
            if anon(m) && m.perms == "rw-p" {
                let o = Orphan {
                    data: m.start.0,
                    code: m.end.0.saturating_sub(4096),
                };
                if o.code > o.data && o.header(mem).is_some_and(|owner| !alive(owner as i32)) {
                    out.push(o);
                }
                continue;
            }
            if !(anon(m) && m.perms == "r-xp" && i > 0) {
                continue;
            }
            let code = m.start.0;
            let Ok(bytes) = mem.read_vec(code, 128) else {
                continue;
            };
            let Some(data) = detour::data_of_code_page(code, &bytes) else {
                continue;
            };
            // The read-write pages right below (possibly merged by the
            // kernel with a neighbour of the same kind).
            let below = &maps[i - 1];
            if !(anon(below) && below.perms == "rw-p")
                || below.end.0 != code
                || below.start.0 > data
                || data >= code
                || code - data > 64 * 4096
                || data % 4096 != 0
            {
                continue;
            }
            let o = Orphan { data, code };
            if o.header(mem).is_some_and(|owner| !alive(owner as i32)) {
                out.push(o);
            }
        }
        out
    }

    /// The owner's pid, if the data pages carry our header and their
    /// length matches.
    fn header(&self, mem: &attach::ProcessMemory) -> Option<u32> {
        let mut magic = [0u8; 8];
        mem.read(self.data + detour::MAGIC_AT, &mut magic).ok()?;
        let len = read_u32(mem, self.data + detour::DATA_LEN)?;
        (&magic == detour::MAGIC && u64::from(len) == self.code - self.data)
            .then(|| read_u32(mem, self.data + detour::OWNER))?
    }

    /// True if the flags say nothing is still due to run in the pages: no
    /// bootstrap still inside `PyRun_SimpleString`, no pending call queued
    /// and not yet run, no new thread started and not finished, no remote
    /// call left running.
    fn settled(&self, mem: &attach::ProcessMemory) -> bool {
        let get = |off| read_u32(mem, self.data + off);
        let set = |off| get(off) == Some(1);
        let claim_over = match get(detour::FLAG) {
            Some(detour::FREE) | Some(detour::CANCELLED) => true,
            Some(detour::CLAIMED) => set(detour::DONE),
            _ => false,
        };
        claim_over
            && get(detour::KEEP) == Some(0)
            && (get(detour::PENDING_QUEUED) == Some(0) || set(detour::PENDING_RAN))
            && (get(detour::THREAD_STARTED) == Some(0) || set(detour::THREAD_DONE))
    }

    /// True if one of `entries` (those a pyattach may hook) still jumps
    /// into the pages.
    fn entered(&self, mem: &attach::ProcessMemory, entries: &[u64]) -> bool {
        entries.iter().any(|&e| {
            let Ok(b) = mem.read_vec(e, 5) else {
                return true;
            };
            if b[0] != 0xe9 {
                return false;
            }
            let rel = i32::from_le_bytes([b[1], b[2], b[3], b[4]]);
            let to = (e + 5).wrapping_add(rel as i64 as u64);
            (self.data..self.code + 4096).contains(&to)
        })
    }
}

/// Unmaps, with every thread held (`st`), each of `orphans` that nothing
/// can run in any more, by the rules [`Leftover::remove`] follows for our
/// own pages: still ours by their header (and their owner still dead), the
/// flags settled, no entry of `entries` jumping there, no thread's
/// instruction pointer inside, no return address into them on any stack.
/// Anything uncertain leaves them (inert). Returns how many went.
fn reclaim(st: &mut attach::Stopped, orphans: &[Orphan], entries: &[u64]) -> usize {
    let mem = st.memory();
    let candidates: Vec<&Orphan> = orphans
        .iter()
        .filter(|o| {
            o.header(mem).is_some_and(|owner| !alive(owner as i32))
                && o.settled(mem)
                && !o.entered(mem, entries)
        })
        .collect();
    let codes: Vec<u64> = candidates.iter().map(|o| o.code).collect();
    let busy = busy_pages(st, &codes);
    let mut gone = 0;
    for (o, busy) in candidates.into_iter().zip(busy) {
        let helper = st.syscall_thread().unwrap_or(st.pid());
        if !busy && st.unmap(helper, o.data, o.code + 4096 - o.data).is_ok() {
            gone += 1;
        }
    }
    gone
}

/// Takes back the pages at `base` of an attempt that failed before any
/// entry jumped there (nothing can have run in them), in a stop of its
/// own, if they still carry this pyattach's header; `orphans` go in the
/// same stop. Best effort: pages left stay inert, and a later pyattach
/// reclaims them once this one is gone.
fn take_back(
    pid: i32,
    restart: attach::Restart,
    base: u64,
    total: u64,
    orphans: &[Orphan],
    entries: &[u64],
) {
    let Ok(mut st) = stop_with(pid, restart) else {
        return;
    };
    let ours = Orphan {
        data: base,
        code: base + total - 4096,
    };
    if ours.header(st.memory()) == Some(std::process::id()) {
        let helper = st.syscall_thread().unwrap_or(pid);
        let _ = st.unmap(helper, base, total);
    }
    reclaim(&mut st, orphans, entries);
    let _ = st.detach();
}

/// Attaches and stops every thread, having found beforehand (while the
/// target runs) the code that remote syscalls borrow.
pub(super) fn stop(pid: i32) -> Result<attach::Stopped, RunError> {
    stop_with(pid, attach::Restart::default())
}

/// [`stop`], with the waits the stop cuts short treated by `restart`.
fn stop_with(pid: i32, restart: attach::Restart) -> Result<attach::Stopped, RunError> {
    let mut p = attach::Process::attach(pid)?;
    p.restart_waits(restart);
    p.prepare_calls()?;
    Ok(p.stop_all()?)
}

/// True if a thread could still run in the injection's pages: its
/// instruction pointer is in the code page, or its stack holds a return
/// address into them (a thread inside a moved `call` of an entry's
/// prologue, or a signal frame of a thread interrupted in a trampoline).
/// The code page wipes every return address into it once used, and attach
/// wipes its call frames, so a stale copy cannot keep the pages mapped.
pub(super) fn busy(st: &attach::Stopped, code: u64) -> bool {
    busy_pages(st, &[code])[0]
}

/// [`busy`] for several code pages at once (each thread's registers and
/// stack read once).
fn busy_pages(st: &attach::Stopped, codes: &[u64]) -> Vec<bool> {
    let mut out = vec![false; codes.len()];
    if codes.is_empty() {
        return out;
    }
    let inside = |a: u64| codes.iter().position(|&c| (c..c + 4096).contains(&a));
    let mut sps = Vec::new();
    for tid in st.threads() {
        let Ok(r) = st.regs(tid) else {
            return vec![true; codes.len()];
        };
        if let Some(i) = inside(r.pc()) {
            out[i] = true;
        }
        sps.push(r.sp());
    }
    for stack in super::stacks::tops(st.memory(), &sps, 8192)
        .into_iter()
        .flatten()
    {
        for w in stack.chunks_exact(8) {
            if let Some(i) = inside(u64::from_le_bytes(w.try_into().expect("8 bytes"))) {
                out[i] = true;
            }
        }
    }
    out
}

fn sym(py: &Interpreter, name: &str, pid: i32) -> Result<RemoteAddr, RunError> {
    py.symbol(name)
        .map(|s| s.addr)
        .ok_or_else(|| RunError::Unsupported {
            pid,
            why: format!("{name} not found"),
        })
}

/// Puts the entries' original bytes back (each that no thread is inside:
/// none can be, past the first instruction of a `jmp`); the first error,
/// if any.
fn restore_entries(st: &mut attach::Stopped, sites: &[&Site]) -> Result<(), RunError> {
    let ranges: Vec<(u64, &[u8])> = sites
        .iter()
        .map(|s| (s.entry, s.reloc.original.as_slice()))
        .collect();
    for r in st.patch_many(&ranges)? {
        r?;
    }
    Ok(())
}

/// Threads not in a syscall (so running, possibly holding the GIL in
/// native code) and the function each is in; then the blocked threads
/// that were left alone (`blocked`: the report's lines), and why.
fn describe_running(st: &attach::Stopped, py: &Interpreter, blocked: &[String]) -> String {
    let mut parts = Vec::new();
    for tid in st.threads() {
        let Ok(r) = st.regs(tid) else { continue };
        if r.syscall().is_some() {
            continue;
        }
        let place = py
            .symbolize(RemoteAddr(r.pc()))
            .map(|(s, off)| format!("{}+{off:#x}", s.name))
            .unwrap_or_else(|| format!("{:#x}", r.pc()));
        parts.push(format!("thread {tid} is running native code in {place}"));
    }
    parts.extend(
        blocked
            .iter()
            .filter(|b| b.contains(" left alone: "))
            .cloned(),
    );
    if parts.is_empty() {
        String::new()
    } else {
        format!(
            " ({}; a thread holding the GIL there never reaches a safe point)",
            parts.join(", ")
        )
    }
}

pub(super) fn read_u32(mem: &attach::ProcessMemory, addr: u64) -> Option<u32> {
    let mut b = [0u8; 4];
    mem.read(addr, &mut b).ok()?;
    Some(u32::from_le_bytes(b))
}

fn alive(pid: i32) -> bool {
    attach::procinfo::status(pid).is_ok_and(|s| !s.is_zombie())
}

/// The new-thread fallback: `pthread_create` of a function that takes the
/// GIL with `PyGILState_Ensure` and runs the bootstrap. Started only from a
/// thread parked in a plain blocking syscall (not a futex: it could be
/// waiting for a libc lock that pthread_create needs), and only once the
/// GIL exists (`PyEval_ThreadsInitialized`: on 2.7 a process that never
/// started a thread has none, and a second thread would run unserialised).
#[derive(Clone, Copy)]
struct Fallback {
    create: u64,
    detach: Option<u64>,
    ensure: u64,
    release: u64,
    initialized: Option<u64>,
}

/// Syscalls a thread can be parked in while holding no libc lock.
const PARKED: &[i64] = &[
    0, 7, 23, 35, 43, 45, 47, 61, 230, 232, 247, 270, 271, 281, 288, 441,
];

impl Fallback {
    fn find(py: &Interpreter) -> Option<Fallback> {
        let f = |n: &str| py.symbol(n).map(|s| s.addr.0);
        let libc = |n: &str| {
            py.symbol_in("libc", n)
                .or_else(|| py.symbol_in("libpthread", n))
        };
        Some(Fallback {
            create: libc("pthread_create")?.addr.0,
            detach: libc("pthread_detach").map(|s| s.addr.0),
            ensure: f("PyGILState_Ensure")?,
            release: f("PyGILState_Release")?,
            initialized: f("PyEval_ThreadsInitialized"),
        })
    }

    /// Starts the thread; false if no suitable caller or the GIL is absent.
    fn start(&self, st: &mut attach::Stopped, thread_fn: u64, out: u64) -> bool {
        let caller = st.threads().into_iter().find(|&tid| {
            st.regs(tid)
                .ok()
                .and_then(|r| r.syscall())
                .is_some_and(|nr| PARKED.contains(&nr))
        });
        let Some(tid) = caller else {
            return false;
        };
        st.set_call_timeout(Duration::from_millis(500));
        if let Some(init) = self.initialized {
            if !st.call(tid, init, &[]).is_ok_and(|r| r as i32 != 0) {
                return false;
            }
        }
        if !st
            .call(tid, self.create, &[out, 0, thread_fn, 0])
            .is_ok_and(|r| r as i32 == 0)
        {
            return false;
        }
        if let (Some(detach), Ok(Some(t))) = (self.detach, read_u64(st.memory(), out)) {
            let _ = st.call(tid, detach, &[t]);
        }
        true
    }
}

fn read_u64(mem: &attach::ProcessMemory, addr: u64) -> attach::Result<Option<u64>> {
    let mut b = [0u8; 8];
    mem.read(addr, &mut b)?;
    Ok(Some(u64::from_le_bytes(b)))
}
