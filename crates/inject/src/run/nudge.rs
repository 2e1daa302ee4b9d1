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

use symbols::{Interpreter, Module, RemoteAddr};

use crate::dump::native::{Regs, Unwinder};

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

const PY3: ((u32, u32), (u32, u32)) = ((3, 6), (3, 13));

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
                "PyThread_acquire_lock_timed_with_retries",
                "_queue_SimpleQueue_get",
                "_queue_SimpleQueue_get_impl",
            ],
        ],
        calls: FUTEX,
        versions: PY3,
    },
    // 3.13's SimpleQueue.get parks (Python/parking_lot.c), and retries on
    // Py_PARK_INTR after running pending calls.
    Retry {
        frames: &[
            &["_PySemaphore_Wait"],
            &["_PyParkingLot_Park"],
            &["_queue_SimpleQueue_get", "_queue_SimpleQueue_get_impl"],
        ],
        calls: FUTEX,
        versions: ((3, 13), (3, 13)),
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

/// Frames unwound from the syscall: the C library's (at most a few) and
/// the deepest chain of [`RETRIES`].
const DEPTH: usize = 8;

/// Whether to cut a thread's blocking call short, and why (for `-v`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Verdict {
    pub nudge: bool,
    pub why: String,
}

/// Judges blocked threads of one interpreter. Made before the threads are
/// stopped: the CFI of the modules a proof goes through is loaded then,
/// so that the stop only unwinds.
pub(super) struct Prover<'a> {
    py: &'a Interpreter,
    unwinder: Unwinder<'a>,
    retries: Vec<&'static Retry>,
}

impl<'a> Prover<'a> {
    pub fn new(py: &'a Interpreter) -> Self {
        let v = (py.version.major, py.version.minor);
        let preload = |m: &Module| *m == py.module || is_libc(m) || extension(m).is_some();
        Prover {
            py,
            unwinder: Unwinder::preloading(py, preload),
            retries: RETRIES
                .iter()
                .filter(|r| r.versions.0 <= v && v <= r.versions.1)
                .collect(),
        }
    }

    /// The threads of `st` (or only `only`) blocked in a syscall of
    /// [`NUDGE`], judged: those to nudge, and a line for each thread
    /// saying what was decided and why. Threads resuming a call through
    /// `restart_syscall` (one a stop interrupted) are described too, and
    /// never nudged: a thread holding the GIL in C code is often one.
    pub fn select(&self, st: &attach::Stopped, only: Option<i32>) -> (Vec<i32>, Vec<String>) {
        let blocked: Vec<(i32, attach::Regs)> = st
            .threads()
            .into_iter()
            .filter(|&tid| only.is_none_or(|t| t == tid))
            .filter_map(|tid| Some((tid, st.regs(tid).ok()?)))
            .filter(|(_, r)| {
                r.syscall()
                    .is_some_and(|n| blocking(n) || n == libc::SYS_restart_syscall)
            })
            .collect();
        let verdicts = self.judge(st.memory(), &blocked);
        let mut nudge = Vec::new();
        let mut notes = Vec::new();
        for ((tid, _), v) in blocked.iter().zip(verdicts) {
            if v.nudge {
                nudge.push(*tid);
            }
            let what = if v.nudge { "nudged" } else { "left alone" };
            notes.push(format!("thread {tid} {what}: {}", v.why));
        }
        (nudge, notes)
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
    pub fn judge(
        &self,
        mem: &attach::ProcessMemory,
        threads: &[(i32, attach::Regs)],
    ) -> Vec<Verdict> {
        let regs: Vec<Regs> = threads.iter().map(|(_, r)| to_unwind(r)).collect();
        let stacks = self.unwinder.innermost(mem, &regs, DEPTH);
        threads
            .iter()
            .zip(stacks)
            .map(|((_, r), pcs)| {
                let nr = r.syscall().unwrap_or(-1);
                match self.prove(nr, &pcs) {
                    Ok(why) => Verdict { nudge: true, why },
                    Err(why) => Verdict { nudge: false, why },
                }
            })
            .collect()
    }

    /// Why the call of syscall `nr`, made at `pcs[0]` and returning
    /// through `pcs[1..]`, may be cut short (or why not).
    fn prove(&self, nr: i64, pcs: &[u64]) -> Result<String, String> {
        let sys = name(nr);
        let in_libc = |i: usize| self.module(pcs[i], i == 0).is_some_and(is_libc);
        let libc = (0..pcs.len()).take_while(|&i| in_libc(i)).count();
        if libc == 0 {
            return Err(format!(
                "{sys} made by {}, not by the C library",
                self.place(pcs[0], true)
            ));
        }
        if pcs.len() == libc {
            return Err(format!(
                "{sys}: its caller could not be found (unwinding stopped in {})",
                self.place(pcs[libc - 1], libc == 1)
            ));
        }
        let sys = format!("{sys} in {}", self.place(pcs[libc - 1], libc == 1));
        let names: Vec<Option<String>> = pcs[libc..].iter().map(|&pc| self.own(pc)).collect();
        let fits = |r: &Retry| {
            r.calls.contains(&nr)
                && r.frames.iter().enumerate().all(|(i, alts)| {
                    names
                        .get(i)
                        .and_then(|n| n.as_deref())
                        .is_some_and(|n| alts.contains(&n))
                })
        };
        if let Some(r) = self.retries.iter().find(|r| fits(r)) {
            let chain: Vec<&str> = names[..r.frames.len()]
                .iter()
                .map(|n| n.as_deref().unwrap_or("?"))
                .collect();
            return Ok(format!(
                "{sys} returns into {}, which handles EINTR",
                chain.join(" <- ")
            ));
        }
        // Where the proof stops: past the frames that begin a chain of the
        // table (an exported function whose caller is checked).
        let held = |k: usize| {
            self.retries.iter().any(|r| {
                r.calls.contains(&nr)
                    && r.frames.len() > k + 1
                    && (0..=k).all(|i| {
                        names[i]
                            .as_deref()
                            .is_some_and(|n| r.frames[i].contains(&n))
                    })
            })
        };
        let stop = (0..names.len() - 1).take_while(|&k| held(k)).count();
        let path: Vec<String> = pcs[libc..=libc + stop]
            .iter()
            .map(|&pc| self.place(pc, false))
            .collect();
        let last = pcs[libc + stop];
        let m = self.module(last, false);
        let unnamed = m.is_some_and(|m| *m == self.py.module || extension(m).is_some())
            && self
                .py
                .symbolize(RemoteAddr(last.wrapping_sub(1)))
                .is_none();
        let why = if nr == libc::SYS_restart_syscall {
            "a call resumed after a stop, never cut short"
        } else if unnamed {
            "which has no symbol (a stripped build: with its debug file pyattach could tell \
             whether it retries)"
        } else {
            "not a CPython loop known to retry it"
        };
        Err(format!("{sys} returns into {}, {why}", path.join(" <- ")))
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
        if *m != self.py.module && extension(m).is_none() {
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
