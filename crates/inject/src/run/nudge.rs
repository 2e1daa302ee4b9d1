//! Which blocked threads may have their system call cut short (EINTR).
//!
//! Cutting a blocking call short makes a thread come back through
//! `Py_BEGIN_ALLOW_THREADS` (where the detour waits) at once, instead of
//! whenever its call returns. That is harmless only where the caller is
//! CPython's own loop that retries the call on EINTR (PEP 475: the EINTR
//! looks like a signal whose handler did nothing) or, for a futex, a
//! lock wait that treats it as a spurious wake-up. A C library's `read`,
//! `recv`, `sleep` or `sem_wait` reports EINTR to its caller, which may
//! fail or return early: the first law forbids it.
//!
//! So a thread is nudged only when its native stack proves it: unwound a
//! few frames from the system call (the dump's `.eh_frame` unwinder), the
//! call must be made by the C library on behalf of one of the interpreter's
//! retrying functions ([`RETRIES`], per version, from the CPython source),
//! found in the interpreter's module or one of its own extension modules.
//! A frame without a symbol (a stripped binary without its debug file), a
//! C library calling on its own behalf, ctypes: the thread is left alone,
//! and the reason goes in `-v`.
//!
//! Every function in the table makes its call between
//! `Py_BEGIN_ALLOW_THREADS` and `Py_END_ALLOW_THREADS`, so a proved thread
//! never holds the GIL: the thread that holds it in native code (a C
//! extension blocking in `sleep` with the GIL held) is never nudged.

use std::sync::Arc;

use symbols::{Interpreter, Module, RemoteAddr};

use crate::dump::native::{Preloaded, Regs, Unwinder};

/// The blocking syscalls a thread may be nudged out of, with their names.
pub(super) const NUDGE: &[(i64, &str)] = &[
    (libc::SYS_read, "read"),
    (libc::SYS_poll, "poll"),
    (libc::SYS_select, "select"),
    (libc::SYS_nanosleep, "nanosleep"),
    (libc::SYS_accept, "accept"),
    (libc::SYS_recvfrom, "recvfrom"),
    (libc::SYS_recvmsg, "recvmsg"),
    (libc::SYS_wait4, "wait4"),
    (libc::SYS_futex, "futex"),
    (libc::SYS_clock_nanosleep, "clock_nanosleep"),
    (libc::SYS_epoll_wait, "epoll_wait"),
    (libc::SYS_waitid, "waitid"),
    (libc::SYS_pselect6, "pselect6"),
    (libc::SYS_ppoll, "ppoll"),
    (libc::SYS_epoll_pwait, "epoll_pwait"),
    (libc::SYS_accept4, "accept4"),
    (libc::SYS_epoll_pwait2, "epoll_pwait2"),
];

/// True if `nr` is a syscall of [`NUDGE`].
pub(super) fn blocking(nr: i64) -> bool {
    NUDGE.iter().any(|&(n, _)| n == nr)
}

/// From /proc, without stopping anything: is a thread of `pid` (`only`
/// that one) blocked in a syscall of [`NUDGE`]? If none is, the proof's
/// preparation (symbols and CFI: milliseconds) is not worth it; a thread
/// that blocks after this look is only left alone.
pub(super) fn any_blocked(pid: i32, only: Option<i32>) -> bool {
    let blocked = |tid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall")).map_or(
            // Unreadable: let the stop decide.
            true,
            |s| {
                s.split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<i64>().ok())
                    .is_some_and(blocking)
            },
        )
    };
    if let Some(tid) = only {
        return blocked(tid);
    }
    if blocked(pid) {
        return true;
    }
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return true;
    };
    tasks
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .any(|tid| tid != pid && blocked(tid))
}

fn name(nr: i64) -> String {
    NUDGE
        .iter()
        .chain(&[(libc::SYS_restart_syscall, "restart_syscall")])
        .find(|&&(n, _)| n == nr)
        .map_or_else(|| format!("syscall {nr}"), |&(_, s)| s.to_string())
}

// What each retrying function may be blocked in (glibc's `select` is
// `pselect6`, `sleep`'s `nanosleep` is `clock_nanosleep`).
const SLEEP: &[i64] = &[
    libc::SYS_select,
    libc::SYS_pselect6,
    libc::SYS_nanosleep,
    libc::SYS_clock_nanosleep,
];
const READ: &[i64] = &[libc::SYS_read];
const SELECT: &[i64] = &[libc::SYS_select, libc::SYS_pselect6];
const POLL: &[i64] = &[libc::SYS_poll, libc::SYS_ppoll];
const EPOLL: &[i64] = &[
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_pwait2,
];
/// `recv` is `recvfrom`; `sock_call_ex` waits in `poll` first when the
/// socket has a timeout.
const SOCKET: &[i64] = &[
    libc::SYS_recvfrom,
    libc::SYS_recvmsg,
    libc::SYS_accept,
    libc::SYS_accept4,
    libc::SYS_poll,
    libc::SYS_ppoll,
];
const WAIT: &[i64] = &[libc::SYS_wait4, libc::SYS_waitid];
const FUTEX: &[i64] = &[libc::SYS_futex];

/// One way CPython makes a blocking call and handles EINTR itself.
struct Retry {
    /// The interpreter's frames the C library's call returns into,
    /// innermost first, each with the names the function goes by
    /// (compiler suffixes such as `.constprop.0` dropped; a method with and
    /// without its Argument Clinic `_impl`, which the compiler may inline).
    frames: &'static [&'static [&'static str]],
    calls: &'static [i64],
    /// First and last version (major, minor) whose source was checked.
    versions: ((u32, u32), (u32, u32)),
}

/// 3.14 and 3.15: the same PEP 475 loops (a language guarantee), by the
/// same names (a name that changed matches nothing, and nothing is cut
/// short); their lock waits park instead, and have entries of their own.
const PY3: ((u32, u32), (u32, u32)) = ((3, 6), (3, 15));

/// Python 3: the PEP 475 loops, which retry on EINTR once
/// `PyErr_CheckSignals` (or, for locks, `Py_MakePendingCalls`) has found
/// nothing to raise. Python 2.7 does not retry: its entries are the calls
/// that hand EINTR back to Python code (an early return or an exception),
/// which only Ctrl-C uses, on the code it is interrupting anyway.
const RETRIES: &[Retry] = &[
    // Modules/timemodule.c: pysleep (inlined into time_sleep).
    Retry {
        frames: &[&["time_sleep", "pysleep"]],
        calls: SLEEP,
        versions: PY3,
    },
    // Python/fileutils.c: _Py_read (os.read, FileIO; sys.stdin).
    Retry {
        frames: &[&["_Py_read", "os_read", "os_read_impl"]],
        calls: READ,
        versions: PY3,
    },
    // Modules/socketmodule.c: sock_call_ex, and the static callbacks and
    // methods it is inlined into (called from nowhere else).
    Retry {
        frames: &[&[
            "sock_call_ex",
            "sock_call",
            "internal_select",
            "sock_recv",
            "sock_recv_guts",
            "sock_recv_impl",
            "sock_recv_into",
            "sock_recvfrom",
            "sock_recvfrom_guts",
            "sock_recvfrom_impl",
            "sock_recvfrom_into",
            "sock_recvmsg",
            "sock_recvmsg_guts",
            "sock_recvmsg_impl",
            "sock_recvmsg_into",
            "sock_accept",
            "sock_accept_impl",
        ]],
        calls: SOCKET,
        versions: PY3,
    },
    // Modules/selectmodule.c.
    Retry {
        frames: &[&["select_select", "select_select_impl"]],
        calls: SELECT,
        versions: PY3,
    },
    Retry {
        frames: &[&["poll_poll", "select_poll_poll", "select_poll_poll_impl"]],
        calls: POLL,
        versions: PY3,
    },
    Retry {
        frames: &[&[
            "pyepoll_poll",
            "select_epoll_poll",
            "select_epoll_poll_impl",
        ]],
        calls: EPOLL,
        versions: PY3,
    },
    // Modules/posixmodule.c.
    Retry {
        frames: &[&[
            "os_waitpid",
            "os_waitpid_impl",
            "os_wait",
            "os_wait_impl",
            "os_wait3",
            "os_wait3_impl",
            "os_wait4",
            "os_wait4_impl",
            "os_waitid",
            "os_waitid_impl",
        ]],
        calls: WAIT,
        versions: PY3,
    },
    // Python/thread_pthread.h: PyThread_acquire_lock_timed returns
    // PY_LOCK_INTR on EINTR when its caller asked for it (and retries
    // itself otherwise); Modules/_threadmodule.c's acquire_timed (3.13:
    // PyThread_acquire_lock_timed_with_retries, Python/thread.c) and
    // Modules/_queuemodule.c's SimpleQueue.get run pending calls and
    // retry. Exported, it can have other callers: the caller is checked.
    Retry {
        frames: &[
            &["PyThread_acquire_lock_timed"],
            &[
                "acquire_timed",
                // acquire_timed's only callers, where LTO inlines it
                // (Debian's 3.11: lock_PyThread_acquire_lock.lto_priv.0).
                "lock_PyThread_acquire_lock",
                "rlock_acquire",
                "PyThread_acquire_lock_timed_with_retries",
                "_queue_SimpleQueue_get",
                "_queue_SimpleQueue_get_impl",
            ],
        ],
        calls: FUTEX,
        versions: ((3, 6), (3, 13)),
    },
    // SimpleQueue.get parks (Python/parking_lot.c) from 3.13 on, and
    // retries on Py_PARK_INTR after running pending calls (Debian's 3.14
    // and 3.15 _queue modules: the same calls, park then
    // Py_MakePendingCalls, in _queue_SimpleQueue_get_impl).
    Retry {
        frames: &[
            &["_PySemaphore_Wait"],
            &["_PyParkingLot_Park"],
            &["_queue_SimpleQueue_get", "_queue_SimpleQueue_get_impl"],
        ],
        calls: FUTEX,
        versions: ((3, 13), (3, 15)),
    },
    // 3.14 and 3.15 park every Python lock (Python/lock.c,
    // Python/parking_lot.c): _PyParkingLot_Park detaches the thread state
    // (PyEval_ReleaseThread, where the detour waits) around
    // _PySemaphore_Wait, whose sem_wait/sem_clockwait failing with EINTR is
    // Py_PARK_INTR; it takes its entry off the bucket (or, already being
    // woken, waits again), reattaches and returns it. _PyMutex_LockTimed
    // then runs pending calls (_PY_LOCK_HANDLE_SIGNALS: on a worker, none)
    // and parks again with the time left. Lock.acquire and RLock.acquire
    // (3.15: Argument Clinic names) pass _PY_LOCK_HANDLE_SIGNALS |
    // _PY_LOCK_DETACH; LTO inlines _PyMutex_LockTimed (and
    // _PyRecursiveMutex_LockTimed) into them, as in Debian's builds.
    Retry {
        frames: &[
            &["_PySemaphore_Wait"],
            &["_PyParkingLot_Park"],
            &[
                "lock_PyThread_acquire_lock",
                "_thread_lock_acquire",
                "_thread_lock_acquire_impl",
                "rlock_acquire",
                "_thread_RLock_acquire",
                "_thread_RLock_acquire_impl",
            ],
        ],
        calls: FUTEX,
        versions: ((3, 14), (3, 15)),
    },
    // The same, not inlined: _PyMutex_LockTimed is exported, and
    // PyThread_acquire_lock_timed calls it with _PY_FAIL_IF_INTERRUPTED
    // (EINTR handed back): the caller is checked.
    Retry {
        frames: &[
            &["_PySemaphore_Wait"],
            &["_PyParkingLot_Park"],
            &["_PyMutex_LockTimed"],
            &[
                "lock_PyThread_acquire_lock",
                "_thread_lock_acquire",
                "_thread_lock_acquire_impl",
            ],
        ],
        calls: FUTEX,
        versions: ((3, 14), (3, 15)),
    },
    // Thread.join (3.13+, Modules/_threadmodule.c ThreadHandle_join): waits
    // on an event with detach set (3.13: _PySemaphore_Wait detaches);
    // PyEvent_WaitTimed (Python/lock.c, exported) parks once and says
    // whether the event is set, and ThreadHandle_join runs pending calls
    // and waits again while time is left.
    Retry {
        frames: &[
            &["_PySemaphore_Wait"],
            &["_PyParkingLot_Park"],
            &["PyEvent_WaitTimed"],
            &["ThreadHandle_join", "PyThreadHandleObject_join"],
        ],
        calls: FUTEX,
        versions: ((3, 13), (3, 15)),
    },
    // Python 2.7: Modules/timemodule.c floatsleep returns early,
    // posixmodule.c, socketmodule.c and selectmodule.c raise EINTR.
    Retry {
        frames: &[&["time_sleep", "floatsleep"]],
        calls: SLEEP,
        versions: ((2, 7), (2, 7)),
    },
    Retry {
        frames: &[&["posix_read"]],
        calls: READ,
        versions: ((2, 7), (2, 7)),
    },
    Retry {
        frames: &[&[
            "sock_recv",
            "sock_recv_guts",
            "sock_recv_into",
            "sock_recvfrom",
            "sock_recvfrom_guts",
            "sock_recvfrom_into",
            "sock_accept",
            "internal_select",
            "internal_select_ex",
        ]],
        calls: SOCKET,
        versions: ((2, 7), (2, 7)),
    },
    Retry {
        frames: &[&["select_select"]],
        calls: SELECT,
        versions: ((2, 7), (2, 7)),
    },
    Retry {
        frames: &[&["poll_poll"]],
        calls: POLL,
        versions: ((2, 7), (2, 7)),
    },
    Retry {
        frames: &[&["pyepoll_poll"]],
        calls: EPOLL,
        versions: ((2, 7), (2, 7)),
    },
    Retry {
        frames: &[&["posix_waitpid", "posix_wait"]],
        calls: WAIT,
        versions: ((2, 7), (2, 7)),
    },
];

/// The extension modules the functions of [`RETRIES`] live in when they
/// are not built into the interpreter (pyenv's `lib-dynload`).
const EXTENSIONS: &[&str] = &["time", "_socket", "select", "_queue"];

/// Frames unwound from the syscall: the C library's (four for glibc's
/// `sem_wait`: the syscall, its cancellable wrapper, the futex wait and
/// `sem_wait` itself) and the deepest chain of [`RETRIES`].
const DEPTH: usize = 8;

/// Enough nudged threads for one of them to reach a hook soon: each comes
/// back through a hooked function as soon as it has the GIL, so more would
/// only wake more of the target, and hold it longer while they are judged.
const ENOUGH: usize = 4;

/// Threads judged at a time (one batched read of their stacks).
const BATCH: usize = 8;

/// What unwinding a blocked thread found, and whether it proves the call
/// safe to cut short. Put in words by [`Prover::explain`] once the threads
/// are let go: naming a C library's internal function can mean reading its
/// debug file.
#[derive(Clone, Debug)]
pub(super) struct Verdict {
    pub nudge: bool,
    nr: i64,
    /// The thread's program counters, innermost first.
    pcs: Vec<u64>,
    /// How many of them are the C library's.
    libc: usize,
    /// How many frames after those the explanation shows.
    shown: usize,
    why: Why,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Why {
    /// The frames shown are a chain of [`RETRIES`].
    Retries,
    /// The syscall instruction is not in the C library.
    NotLibc,
    /// Unwinding ended in the C library.
    NoCaller,
    /// `restart_syscall`: never cut short.
    Restarted,
    /// The last frame shown is the interpreter's, without a symbol.
    NoSymbol,
    /// The last frame shown is not a function of the table.
    Unknown,
}

/// The blocked threads of one stop, judged: which to nudge.
#[derive(Debug, Default)]
pub(super) struct Selection {
    pub nudge: Vec<i32>,
    judged: Vec<(i32, Verdict)>,
    /// Blocked threads not judged, [`ENOUGH`] being nudged already.
    unexamined: usize,
}

/// Judges blocked threads of one interpreter. Made (see [`Warming`])
/// before the threads are stopped: the CFI of the modules a proof goes
/// through is loaded then, so that the stop only unwinds.
pub(super) struct Prover<'a> {
    py: &'a Interpreter,
    unwinder: Unwinder<'a>,
    retries: Vec<&'static Retry>,
}

/// A [`Prover`]'s preparation under way on a thread of its own, started
/// as soon as the interpreter is known: it reads files only (symbol tables,
/// debug files, CFI), and the work before the stop that needs it (the
/// channel, the payload, the first stop, the write of the pages) takes as
/// long, so that it costs no wall time.
pub(super) struct Warming(std::thread::JoinHandle<Preloaded>);

impl Warming {
    pub fn start(py: Arc<Interpreter>) -> Warming {
        Warming(std::thread::spawn(move || prepare(&py)))
    }

    /// The prover, once its preparation is done (waiting for it).
    pub fn finish(self, py: &Interpreter) -> Prover<'_> {
        let cfi = self.0.join().unwrap_or_else(|_| Preloaded::none());
        Prover::with(py, cfi)
    }
}

/// What a [`Prover`] needs from files: the CFI of the modules a proof
/// unwinds through, and the symbol indexes of those it names.
fn prepare(py: &Interpreter) -> Preloaded {
    // Symbolizing the first address of the interpreter's modules (the ELF
    // header: no function) builds their symbol indexes and opens their
    // debug files now rather than while the threads are held (the C
    // library's frames are only named afterwards). One thread does it all:
    // it runs beside pyattach's own work, on a machine that may have few
    // cores, and must not take one from the thread that holds the target.
    for m in py.modules().iter().filter(|m| own(py, m)) {
        let _ = py.symbolize(m.base);
    }
    // Unwinding goes through the C library and the interpreter's module;
    // the chains end at frames of its extension modules.
    Preloaded::load(py, |m| *m == py.module || is_libc(m))
}

impl<'a> Prover<'a> {
    /// A prover prepared on this thread (see [`Warming`] for one prepared
    /// while other work goes on).
    pub fn new(py: &'a Interpreter) -> Self {
        Prover::with(py, prepare(py))
    }

    fn with(py: &'a Interpreter, cfi: Preloaded) -> Self {
        let v = (py.version.major, py.version.minor);
        Prover {
            py,
            unwinder: Unwinder::with(py, cfi),
            retries: RETRIES
                .iter()
                .filter(|r| r.versions.0 <= v && v <= r.versions.1)
                .collect(),
        }
    }

    /// The threads of `st` (or only `only`) blocked in a syscall of
    /// [`NUDGE`], judged, main thread first, until [`ENOUGH`] are to be
    /// nudged. Threads resuming a call through `restart_syscall` (one a
    /// stop interrupted) are judged too, and never nudged: a thread holding
    /// the GIL in C code is often one, and the failure message names it.
    pub fn select(&self, st: &attach::Stopped, only: Option<i32>) -> Selection {
        let mut blocked: Vec<(i32, attach::Regs)> = st
            .threads()
            .into_iter()
            .filter(|&tid| only.is_none_or(|t| t == tid))
            .filter_map(|tid| Some((tid, st.regs(tid).ok()?)))
            .filter(|(_, r)| {
                r.syscall()
                    .is_some_and(|n| blocking(n) || n == libc::SYS_restart_syscall)
            })
            .collect();
        // The main thread first: the one most often in a plain sleep.
        blocked.sort_by_key(|&(tid, _)| tid != st.pid());
        let mut out = Selection::default();
        for (n, batch) in blocked.chunks(BATCH).enumerate() {
            if out.nudge.len() >= ENOUGH {
                out.unexamined = blocked.len() - n * BATCH;
                break;
            }
            for ((tid, _), v) in batch.iter().zip(self.judge(st.memory(), batch)) {
                if v.nudge && out.nudge.len() < ENOUGH {
                    out.nudge.push(*tid);
                }
                out.judged.push((*tid, v));
            }
        }
        out
    }

    /// A line for each thread of `s`: what was decided and why.
    pub fn notes(&self, s: &Selection) -> Vec<String> {
        let mut notes: Vec<String> = s
            .judged
            .iter()
            .map(|(tid, v)| {
                let what = match v.nudge {
                    true if s.nudge.contains(tid) => "nudged",
                    true => "not nudged (enough are)",
                    false => "left alone",
                };
                format!("thread {tid} {what}: {}", self.explain(v))
            })
            .collect();
        if s.unexamined > 0 {
            notes.push(format!(
                "{} more blocked threads not examined ({ENOUGH} nudged are enough)",
                s.unexamined
            ));
        }
        notes
    }

    /// Whether thread `tid` of `st`, if blocked in a syscall of [`NUDGE`]
    /// (or resuming one), may have it cut short.
    pub fn verdict(&self, st: &attach::Stopped, tid: i32) -> Option<Verdict> {
        let regs = st.regs(tid).ok()?;
        let nr = regs.syscall()?;
        (blocking(nr) || nr == libc::SYS_restart_syscall)
            .then(|| self.judge(st.memory(), &[(tid, regs)]).remove(0))
    }

    /// A verdict for each `(tid, registers)` of threads stopped in a
    /// syscall of [`NUDGE`] (one batched read of their stacks).
    fn judge(&self, mem: &attach::ProcessMemory, threads: &[(i32, attach::Regs)]) -> Vec<Verdict> {
        let regs: Vec<Regs> = threads.iter().map(|(_, r)| to_unwind(r)).collect();
        let stacks = self.unwinder.innermost(mem, &regs, DEPTH);
        threads
            .iter()
            .zip(stacks)
            .map(|((_, r), pcs)| self.prove(r.syscall().unwrap_or(-1), pcs))
            .collect()
    }

    /// Whether the call of syscall `nr`, made at `pcs[0]` and returning
    /// through `pcs[1..]`, may be cut short. Symbolizes only the
    /// interpreter's frames (their indexes built beforehand).
    fn prove(&self, nr: i64, pcs: Vec<u64>) -> Verdict {
        let in_libc = |i: usize| self.module(pcs[i], i == 0).is_some_and(is_libc);
        let libc = (0..pcs.len()).take_while(|&i| in_libc(i)).count();
        let verdict = |pcs, shown, why| Verdict {
            nudge: why == Why::Retries,
            nr,
            pcs,
            libc,
            shown,
            why,
        };
        if libc == 0 {
            return verdict(pcs, 0, Why::NotLibc);
        }
        if pcs.len() == libc {
            return verdict(pcs, 0, Why::NoCaller);
        }
        let names: Vec<Option<String>> = pcs[libc..].iter().map(|&pc| self.own(pc)).collect();
        // How many frames, from the first, match the start of a chain of
        // the table for this syscall (`whole`: all of it).
        let matched = |r: &Retry, k: usize| {
            r.calls.contains(&nr)
                && r.frames.len() >= k
                && (0..k).all(|i| {
                    names
                        .get(i)
                        .and_then(|n| n.as_deref())
                        .is_some_and(|n| r.frames[i].contains(&n))
                })
        };
        if nr != libc::SYS_restart_syscall {
            if let Some(r) = self.retries.iter().find(|r| matched(r, r.frames.len())) {
                return verdict(pcs, r.frames.len(), Why::Retries);
            }
        }
        // Where the proof stops: past the frames that begin a longer chain
        // (an exported function whose caller is checked).
        let stop = (1..names.len())
            .take_while(|&k| {
                self.retries
                    .iter()
                    .any(|r| r.frames.len() > k && matched(r, k))
            })
            .count();
        let last = pcs[libc + stop];
        let unnamed =
            self.module(last, false).is_some_and(|m| own(self.py, m)) && names[stop].is_none();
        let why = if nr == libc::SYS_restart_syscall {
            Why::Restarted
        } else if unnamed {
            Why::NoSymbol
        } else {
            Why::Unknown
        };
        verdict(pcs, stop + 1, why)
    }

    /// `v` in words, naming the functions (symbolizing the C library's
    /// frames too, which may read its debug file).
    pub fn explain(&self, v: &Verdict) -> String {
        let sys = name(v.nr);
        let (pcs, libc) = (&v.pcs, v.libc);
        match v.why {
            Why::NotLibc => {
                return format!(
                    "{sys} made by {}, not by the C library",
                    self.place(pcs[0], true)
                )
            }
            Why::NoCaller => {
                return format!(
                    "{sys}: its caller could not be found (unwinding stopped in {})",
                    self.place(pcs[libc - 1], libc == 1)
                )
            }
            _ => {}
        }
        let path: Vec<String> = pcs[libc..libc + v.shown]
            .iter()
            .map(|&pc| self.place(pc, false))
            .collect();
        let why = match v.why {
            Why::Retries => "which handles EINTR",
            Why::Restarted => "a call resumed after a stop, never cut short",
            Why::NoSymbol => {
                "which has no symbol (a stripped build: with its debug file pyattach could \
                 tell whether it retries)"
            }
            _ => "not a CPython loop known to retry it",
        };
        format!(
            "{sys} in {} returns into {}, {why}",
            self.place(pcs[libc - 1], libc == 1),
            path.join(" <- ")
        )
    }

    /// The module holding `pc` (a return address unless `first`).
    fn module(&self, pc: u64, first: bool) -> Option<&Module> {
        let at = if first { pc } else { pc.wrapping_sub(1) };
        self.py
            .modules()
            .iter()
            .find(|m| m.contains(RemoteAddr(at)))
    }

    /// The function a return address is in, if it is the interpreter's
    /// own (its module or one of its extension modules), without compiler
    /// suffixes.
    fn own(&self, pc: u64) -> Option<String> {
        let m = self.module(pc, false)?;
        if !own(self.py, m) {
            return None;
        }
        let (s, _) = self.py.symbolize(RemoteAddr(pc.wrapping_sub(1)))?;
        Some(s.name.split('.').next().unwrap_or(&s.name).to_string())
    }

    /// `function (module)` or `0xADDR (module)`, for messages.
    fn place(&self, pc: u64, first: bool) -> String {
        let at = if first { pc } else { pc.wrapping_sub(1) };
        let func = self
            .py
            .symbolize(RemoteAddr(at))
            .map_or_else(|| format!("{pc:#x}"), |(s, _)| s.name);
        match self.module(pc, first) {
            Some(m) => format!("{func} ({})", m.file_name()),
            None => func,
        }
    }
}

/// True if `m` is the interpreter's module or one of its own extension
/// modules (those whose functions [`RETRIES`] names).
fn own(py: &Interpreter, m: &Module) -> bool {
    *m == py.module || extension(m).is_some()
}

fn is_libc(m: &Module) -> bool {
    let f = m.file_name();
    f.starts_with("libc.so") || f.starts_with("libc-") || f.starts_with("libpthread")
}

/// Which of [`EXTENSIONS`] `m` is, if it is one of CPython's own
/// (`lib-dynload/select.cpython-312-x86_64-linux-gnu.so`, `select.so`).
fn extension(m: &Module) -> Option<&'static str> {
    let in_dynload = m
        .path
        .parent()
        .and_then(|p| p.file_name())
        .is_some_and(|d| d == "lib-dynload");
    let f = m.file_name();
    EXTENSIONS
        .iter()
        .copied()
        .find(|e| in_dynload && f.strip_prefix(e).is_some_and(|r| r.starts_with('.')))
}

#[cfg(target_arch = "x86_64")]
fn to_unwind(r: &attach::Regs) -> Regs {
    Regs::from_thread(r)
}

#[cfg(not(target_arch = "x86_64"))]
fn to_unwind(_: &attach::Regs) -> Regs {
    Regs::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_retry_is_of_calls_that_are_nudged_and_versions_in_order() {
        for r in RETRIES {
            assert!(!r.frames.is_empty() && r.frames.iter().all(|f| !f.is_empty()));
            assert!(r.calls.iter().all(|&nr| blocking(nr)), "{:?}", r.frames);
            assert!(r.versions.0 <= r.versions.1, "{:?}", r.frames);
            // Names as the table compares them: compiler suffixes dropped.
            assert!(r
                .frames
                .iter()
                .flat_map(|f| f.iter())
                .all(|n| !n.contains('.')));
            // Unwound deep enough past glibc's four frames of sem_wait.
            assert!(r.frames.len() + 4 <= DEPTH, "{:?}", r.frames);
        }
        assert!(!blocking(libc::SYS_restart_syscall));
        assert_eq!(name(libc::SYS_restart_syscall), "restart_syscall");
    }
}
