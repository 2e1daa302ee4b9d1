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

use super::arm::{Armed, Attempt, Nudges};
use super::bootstrap::Mode;
use super::channel::{ChannelKind, Rendezvous};
use super::detour;
use super::error::RunError;
use super::fallback::Fallback;
use super::leftover::Leftover;
use super::nudge::{self, Prover, Selection, Warming};
use super::orphan::{alive, read_u32, set_flags, Orphan};
use super::plan::{self, Api, EntryCode, Image, Plan};
use super::protocol::Channel;
use crate::Target;

/// What to run and how.
#[derive(Clone, Debug)]
pub struct Options {
    pub mode: Mode,
    /// Only this thread (a tid of the target as pyattach sees it, in
    /// `/proc/PID/task`) may run the code.
    pub thread: Option<i32>,
    /// Deadline for a thread to reach a safe point and call back.
    pub timeout: Duration,
    pub channel: ChannelKind,
    /// The user vouches that seccomp filters pyattach cannot read kill
    /// for none of the syscalls an injection makes (`--trust-seccomp`;
    /// see `seccomp.rs`).
    pub trust_seccomp: bool,
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
    /// The thread that ran the bootstrap (its tid as pyattach sees it).
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

/// How long a bootstrap that fired waits for pyattach's ack: pyattach
/// answers within milliseconds when alive, and a pyattach killed at the
/// wrong moment must not hold the target's thread for long.
const ACK_WAIT: Duration = Duration::from_millis(800);

/// Runs the bootstrap for `opts.mode` in `pid` and returns the open
/// channel, discovering the interpreter with the default options (see
/// [`start_in`] for a [`Target`] opened with the user's).
pub fn start(pid: i32, opts: &Options) -> Result<(Channel, Report, Leftover), RunError> {
    let target = Target::open(pid, &DiscoverOptions::default())?;
    start_in(&target, opts)
}

/// [`start`] in an opened target: plan, arm, wait for a claim, disarm.
/// `opts.timeout` counts from when the target was opened (discovery is
/// part of the time it allows).
pub fn start_in(target: &Target, opts: &Options) -> Result<(Channel, Report, Leftover), RunError> {
    let pid = target.pid();
    let py = target.interpreter();
    let t0 = target.opened_at();
    let deadline = t0 + opts.timeout;
    let mut report = Report::default();
    let v = supported(py, pid)?;
    // Each thread's seccomp state (a file per thread: tens of ms with a
    // thousand threads), read beside the preparation.
    let seccomp = std::thread::spawn(move || super::seccomp::filtered(pid));
    // Python 2 does not retry on EINTR (PEP 475 came with 3.5): time.sleep
    // would return early and os.read raise. On 3, only calls proved to
    // return into a retry loop are cut short (see nudge.rs). Prepared
    // beside the work up to the second stop, which needs it, and started
    // first: it reads files the planning does not need.
    let warming = (v.0 >= 3 && nudge::any_blocked(pid, opts.thread))
        .then(|| Warming::start(target.shared_interpreter()));
    let mem = attach::ProcessMemory::open(pid)?;
    // The stacks with room for the bootstrap, for the trampolines to check.
    let stacks = super::stacks::find(pid);
    let ((plan, mut rv), entries) = make_plan(py, &mem, opts, &stacks, &mut report, pid)?;
    // Pages an earlier pyattach left when it was killed: unmapped in a
    // later stop of this run, once nothing can run in them.
    let orphans = Orphan::find(pid, &mem);
    let attempt = Attempt {
        pid,
        restart: crate::dump::restart_for(py.version.major),
        trust_seccomp: opts.trust_seccomp,
        orphans,
        entries,
    };
    // -- stop 1, in two: map | write | protect, patch, nudge (see arm.rs)
    let filtered = seccomp
        .join()
        .unwrap_or_else(|_| super::seccomp::filtered(pid));
    let mapped = attempt.map(target.identity(), &filtered, &plan, &mut report)?;
    // Tests kill pyattach here, with its pages mapped and not armed.
    super::hooks::hold_after_map();
    let image = plan.image(mapped.base());
    // Tests force the new-thread fallback alone (it is otherwise reached
    // only when no hook fires in half the timeout).
    let only_thread = super::hooks::new_thread_only() && plan.fallback.is_some();
    let prover = warming.map(|w| w.finish(py));
    let mut armed = attempt.arm(mapped, &image, &plan, &stacks, only_thread, &mut report)?;
    let nudges = Nudges {
        prover: prover.as_ref(),
        thread: opts.thread,
        py3: v.0 >= 3,
        none: only_thread,
    };
    let (selection, main_running) = armed.nudge(
        &nudges,
        plan.api.pending,
        image.code.pending_stub,
        image.call_stub,
        &mut report,
    )?;
    if super::hooks::fail_after_arm() {
        return Err(RunError::Unsupported {
            pid,
            why: "failing with the detours armed (test hook)".into(),
        });
    }
    // -- wait for a claim (half-way through: a new thread) ---------------
    let claimed = wait_for_claim(
        &mut armed,
        &plan,
        &image,
        &mem,
        Start {
            t0,
            deadline,
            only_thread,
            main_running,
            timeout: opts.timeout,
            restart: attempt.restart,
        },
        &mut report,
    )?;
    let cramped = report.cramped.clone();
    let describe =
        |st: &attach::Stopped| no_safe_point(st, py, opts, prover.as_ref(), &selection, &cramped);
    let when = (t0, deadline);
    let outcome = disarm(&mut armed, &mut rv, claimed, when, describe, &mut report)?;
    finish(
        armed,
        outcome,
        prover.as_ref(),
        &selection,
        &mem,
        t0,
        report,
    )
}

/// The (major, minor) version of a CPython pyattach can run code in.
fn supported(py: &Interpreter, pid: i32) -> Result<(u32, u32), RunError> {
    if !cfg!(target_arch = "x86_64") {
        return Err(RunError::Unsupported {
            pid,
            why: "running code is implemented for x86_64 only".into(),
        });
    }
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
    Ok(v)
}

/// Stop 2: the entries back. Once the bootstrap has called back, while it
/// waits for the ack: the stop then catches no thread running Python for
/// us (holding the GIL that the others, let go first, would wait for),
/// and the bootstrap's thread, the one that runs at once, is let go last
/// (a thread let go can take the CPU from pyattach before it lets the next
/// one go). Else now (a bootstrap that never called back, or nothing
/// claimed: then the claim is cancelled and the error, unless pyattach
/// was asked to stop, says why with `describe`, the threads held). Returns
/// the channel, or why there is none. `when`: the start and the deadline.
fn disarm(
    armed: &mut Armed,
    rv: &mut Rendezvous,
    claimed: bool,
    (t0, deadline): (Instant, Instant),
    describe: impl FnOnce(&attach::Stopped) -> String,
    report: &mut Report,
) -> Result<Result<Channel, RunError>, RunError> {
    let mut restored = None;
    let outcome = if claimed {
        rv.wait_then(
            deadline.max(Instant::now() + Duration::from_secs(2)),
            || restored = Some(armed.restore(report)),
        )
    } else {
        Err(RunError::NoCallback {
            pid: armed.pid(),
            secs: 0.0,
        })
    };
    let holders = match restored {
        Some(r) => {
            r?;
            None
        }
        None => armed.cancel(describe, report)?,
    };
    if let Some(holder) = holders {
        if let Some(sig) = attach::exit_requested() {
            return Err(RunError::Interrupted(sig));
        }
        return Err(RunError::NoSafePoint {
            pid: armed.pid(),
            secs: t0.elapsed().as_secs_f64(),
            holder,
        });
    }
    Ok(outcome)
}

/// The plan (with the channel's rendezvous, whose parameters the payload
/// carries) and every entry a pyattach may hook.
#[allow(clippy::type_complexity)]
fn make_plan(
    py: &Interpreter,
    mem: &attach::ProcessMemory,
    opts: &Options,
    stacks: &[(u64, u64)],
    report: &mut Report,
    pid: i32,
) -> Result<((Plan, Rendezvous), Vec<u64>), RunError> {
    let run = sym(py, crate::catalogue::RUN, pid)?;
    let lookup = |n: &str| py.symbol(n).map(|s| s.addr.0);
    let names = crate::catalogue::hook_entries(py.version.short());
    let chosen = plan::sites(&names, lookup, |entry| read_entry(py, mem, entry))?;
    report.skipped = chosen.skipped;
    report.replaced = chosen.replaced;
    if chosen.sites.is_empty() {
        return Err(RunError::Unsupported {
            pid,
            why: format!(
                "no entry point can be hooked ({})",
                report.skipped.join("; ")
            ),
        });
    }
    let fallback = if opts.thread.is_none() {
        Fallback::find(py)
    } else {
        None
    };
    let rv = Rendezvous::prepare(pid, opts.channel)?;
    report.channel = (if rv.is_pair() {
        "socketpair"
    } else {
        "unix socket"
    })
    .into();
    // The text for PyRun_SimpleString, then (after its NUL) the session's
    // parameters and the bootstrap's source, which the text reads from
    // there (the source only if the target has no bootstrap of this
    // pyattach defined yet). The text names their addresses, known once
    // the pages are mapped; its length does not depend on them.
    let mut params = rv.params(opts.mode.clone(), ACK_WAIT);
    params.wakeup_fd_fn = py
        .symbol(crate::catalogue::SET_WAKEUP_FD)
        .map_or(0, |s| s.addr.0);
    if py.version.short() < (3, 10) {
        let [handlers, flag] = crate::catalogue::TRIP_FLAGS.map(|n| py.symbol(n));
        // Only where they have the layout the bootstrap writes: an entry of
        // 16 bytes per signal (an int, a pointer) and an int.
        params.trip_flags = handlers
            .zip(flag)
            .filter(|(h, f)| h.size % 16 == 0 && h.size >= 16 * 32 && f.size == 4)
            .map(|(h, f)| (h.addr.0, f.addr.0));
    }
    // The stacks with room for the bootstrap, for the trampolines to check
    // (a table after the payload).
    let table = super::stacks::table(stacks);
    // The trampoline compares with what the target's gettid() returns:
    // the thread's id in the target's own pid namespace.
    let only_tid = opts
        .thread
        .map(|t| attach::procinfo::find_thread(pid, t).map_or(t, |(_, ns)| ns));
    let mut api = Api::find(run.0, lookup);
    if py.version.major != 2 {
        // Python 3's imports take per-module locks, not this one.
        api.import_lock = None;
    }
    let plan = Plan::new(chosen.sites, api, fallback, params, only_tid, table);
    if !plan.fits() {
        return Err(RunError::Unsupported {
            pid,
            why: "the trampolines do not fit in one page".into(),
        });
    }
    Ok(((plan, rv), chosen.entries))
}

/// What an entry point holds now: a `jmp` out of the module is a detour
/// left by a pyattach that was killed before it could restore the entry,
/// whose original bytes the module's file has.
fn read_entry(
    py: &Interpreter,
    mem: &attach::ProcessMemory,
    entry: u64,
) -> Result<EntryCode, RunError> {
    let code = mem.read_vec(entry, 32)?;
    let foreign_jump = code[0] == 0xe9 && {
        let rel = i32::from_le_bytes([code[1], code[2], code[3], code[4]]);
        let to = (entry + 5).wrapping_add(rel as i64 as u64);
        !py.module.contains(RemoteAddr(to))
    };
    let file = foreign_jump
        .then(|| py.read_module_bytes(RemoteAddr(entry), 32).ok())
        .flatten();
    Ok(EntryCode {
        code,
        foreign_jump,
        file,
    })
}

/// What [`wait_for_claim`] needs to know of the start.
struct Start {
    t0: Instant,
    deadline: Instant,
    only_thread: bool,
    main_running: bool,
    timeout: Duration,
    restart: attach::Restart,
}

/// Polls the claim flag until a thread claims, the deadline passes or
/// pyattach is asked to stop; half-way (sooner when nothing was done to
/// bring a thread to a hook), starts the new-thread fallback.
fn wait_for_claim(
    armed: &mut Armed,
    plan: &Plan,
    image: &Image,
    mem: &attach::ProcessMemory,
    s: Start,
    report: &mut Report,
) -> Result<bool, RunError> {
    let pid = armed.pid();
    let base = armed.base();
    // Sooner when nothing was done to bring a thread to a hook (no call
    // could be proved safe to cut short, no pending call, no thread
    // running): then only the threads' own wake-ups would.
    let idle = report.nudged.is_empty() && !report.pending_call && !s.main_running;
    let mut fallback_at = plan.fallback.map(|_| {
        if s.only_thread {
            s.t0
        } else if idle {
            s.t0 + (s.timeout / 2).min(IDLE_FALLBACK)
        } else {
            s.t0 + s.timeout / 2
        }
    });
    loop {
        if fallback_at.is_some_and(|at| Instant::now() >= at) {
            fallback_at = None;
            if let (Some(f), Some(thread_fn)) = (plan.fallback, image.code.thread_fn) {
                let mut st = attach::freeze_with(pid, s.restart)?;
                if read_u32(mem, base + detour::FLAG) == Some(detour::FREE) {
                    // Stays set even if the start fails: a thread may be
                    // created all the same (a call left running).
                    set_flags(&st, base, &[(detour::THREAD_STARTED, 1)]);
                    armed.thread_started();
                    if f.start(&mut st, thread_fn, base + detour::PTHREAD_T) {
                        report.new_thread = true;
                    }
                }
                report.stops.push(st.detach()?);
            }
        }
        let flag = read_u32(mem, base + detour::FLAG);
        if flag == Some(detour::CLAIMED) {
            return Ok(true);
        }
        if flag.is_none() || !alive(pid) {
            return Err(RunError::TargetExited { pid });
        }
        if attach::exit_requested().is_some() || Instant::now() >= s.deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// The error's account of why nothing claimed, with the threads held:
/// what runs native code, which blocked calls were left alone, and a
/// `--thread` with too little stack.
fn no_safe_point(
    st: &attach::Stopped,
    py: &Interpreter,
    opts: &Options,
    prover: Option<&Prover>,
    selection: &Selection,
    cramped: &[i32],
) -> String {
    let blocked = prover.map(|p| p.notes(selection));
    let gil = crate::dump::gil_now(py, st.memory());
    let mut holder = describe_running(st, py, &blocked.unwrap_or_default(), gil);
    if let Some(t) = opts.thread.filter(|t| cramped.contains(t)) {
        holder.push_str(&format!(
            " (thread {t} has less than {} KiB of stack left where it waits: too little to run the code on)",
            super::stacks::ROOM / 1024
        ));
    }
    holder
}

/// The end of a run whose entries are back: the pages for the caller to
/// unmap after the session, the channel, the report.
fn finish(
    armed: Armed,
    outcome: Result<Channel, RunError>,
    prover: Option<&Prover>,
    selection: &Selection,
    mem: &attach::ProcessMemory,
    t0: Instant,
    mut report: Report,
) -> Result<(Channel, Report, Leftover), RunError> {
    let base = armed.base();
    let pid = armed.pid();
    let site = read_u32(mem, base + detour::SITE).unwrap_or(0) as usize;
    let strategy = match site {
        0 => "pending call (Py_AddPendingCall) in the main thread".into(),
        n if n == detour::THREAD_SITE as usize => {
            "new thread (pthread_create + PyGILState_Ensure)".into()
        }
        n => format!("one-shot detour at {}", armed.site_name(n)),
    };
    // Dropped on the way out of an error, it takes the pages back.
    let leftover = armed.into_leftover();
    if let Some(sig) = attach::exit_requested() {
        return Err(RunError::Interrupted(sig));
    }
    let channel = match outcome {
        Ok(channel) => channel,
        Err(e) => {
            // A bootstrap that ran and failed (it could not import socket
            // or open its channel): its pages go as soon as its call has
            // returned, which it does at once (or after waiting for an ack
            // that will not come).
            let _ = leftover.remove(ACK_WAIT + Duration::from_millis(200));
            return Err(e);
        }
    };
    // The trampoline wrote what the target's gettid() says: its own pid
    // namespace's number.
    report.tid = read_u32(mem, base + detour::TID)
        .map(|t| attach::procinfo::host_tid(pid, t as i32).unwrap_or(t as i32));
    report.strategy = strategy;
    // Only now: naming the C library's functions can take a while.
    if let Some(p) = prover {
        report.blocked = p.notes(selection);
    }
    report.elapsed = t0.elapsed();
    Ok((channel, report, leftover))
}

fn sym(py: &Interpreter, name: &str, pid: i32) -> Result<RemoteAddr, RunError> {
    py.symbol(name)
        .map(|s| s.addr)
        .ok_or_else(|| RunError::Unsupported {
            pid,
            why: format!("{name} not found"),
        })
}

/// Threads not in a syscall (so running native code) and the function
/// each is in, with what the GIL says of them (`gil`: locked?, the
/// holder's tid): a holder lets no thread reach a safe point until it
/// returns into Python; a thread that released it (a long numpy or
/// compression call) reaches one itself when its call returns. Then the
/// blocked threads that were left alone (`blocked`: the report's lines),
/// and why.
fn describe_running(
    st: &attach::Stopped,
    py: &Interpreter,
    blocked: &[String],
    gil: (Option<bool>, Option<i32>),
) -> String {
    let mut parts = Vec::new();
    let mut unknown = false;
    for tid in st.threads() {
        let Ok(r) = st.regs(tid) else { continue };
        if r.syscall().is_some() {
            continue;
        }
        let place = py
            .symbolize(RemoteAddr(r.pc()))
            .map(|(s, off)| format!("{}+{off:#x}", s.name))
            .unwrap_or_else(|| format!("{:#x}", r.pc()));
        parts.push(match gil {
            (Some(true), Some(h)) if h == tid => format!(
                "thread {tid} holds the GIL and is running native code in {place}: no thread \
                 can reach a safe point until that call returns into Python"
            ),
            (Some(false), _) => format!(
                "thread {tid} is running native code in {place} with the GIL released (a long \
                 call into C: numpy, compression, a C library): it reaches a safe point when \
                 that call returns into Python, so a longer --timeout may be enough"
            ),
            (Some(true), Some(h)) => format!(
                "thread {tid} is running native code in {place} without the GIL (thread {h} \
                 holds it)"
            ),
            _ => {
                unknown = true;
                format!("thread {tid} is running native code in {place}")
            }
        });
    }
    // A holder blocked in a system call (a C library's own wait with the
    // GIL held) is the reason too.
    if let (Some(true), Some(h)) = gil {
        if st.regs(h).is_ok_and(|r| r.syscall().is_some()) {
            parts.push(format!(
                "thread {h} holds the GIL while blocked in a system call in native code: no \
                 thread can reach a safe point until that call returns into Python"
            ));
        }
    }
    parts.extend(
        blocked
            .iter()
            .filter(|b| b.contains(" left alone: "))
            .cloned(),
    );
    if parts.is_empty() {
        String::new()
    } else if unknown {
        format!(
            " ({}; a thread in native code reaches a safe point only when its call returns \
             into Python: a longer --timeout may be enough)",
            parts.join(", ")
        )
    } else {
        format!(" ({})", parts.join("; "))
    }
}
