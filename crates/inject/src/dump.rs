//! Read-only stack dumps: every thread's Python stack read from the target's
//! memory, without running any code in it and without ptrace writes, so it
//! works when the target is deadlocked with the GIL held.
//!
//! The walk follows CPython's own structures: `_PyRuntime` (or `interp_head`
//! on 2.7/3.6) → interpreters → thread states → frames (`PyFrameObject` up to
//! 3.10, `_PyInterpreterFrame` from 3.11), decodes code objects and line
//! tables of every format, and marks the GIL holder. Offsets come from
//! [`symbols::offsets`]. Everything read from the target is treated as
//! untrusted: reads are bounded, chains are cycle-checked and depth-limited,
//! and what could not be read is reported in the dump rather than failing it.
//!
//! ```no_run
//! let d = inject::dump::dump(1234, &inject::dump::DumpOptions::default())?;
//! for t in &d.threads {
//!     println!("thread {:?} gil={}", t.native_id, t.holds_gil);
//!     for f in &t.frames {
//!         println!("  {} ({}:{:?})", f.function, f.filename.as_deref().unwrap_or("?"), f.line);
//!     }
//! }
//! # Ok::<(), inject::dump::DumpError>(())
//! ```

mod asyncio;
mod core;
mod error;
mod frames;
mod identity;
mod layout;
mod linetable;
mod locals;
mod mem;
mod names;
pub(crate) mod native;
mod objects;
mod procfs;
mod repr;
mod runtime;
mod tasks;
mod value;
mod walk;

use std::collections::HashMap;

use serde::Serialize;

pub use self::core::{dump_core, CoreFiles};
pub use asyncio::{Asyncio, Awaits, Deadlock, EventLoop, Task, TaskState};
pub use error::DumpError;
pub use mem::Memory;

/// The version of the JSON format (`pyattach dump --json`), documented in
/// `docs/dump-json.md`. Bumped on any incompatible change.
pub const JSON_FORMAT_VERSION: u32 = 1;

/// What to read besides the Python frames.
#[derive(Clone, Debug)]
pub struct DumpOptions {
    /// Stop every thread for the read (a consistent snapshot); `false` reads
    /// a running target and tolerates torn reads.
    pub freeze: bool,
    /// Local variables of each frame, with short reprs.
    pub locals: bool,
    /// Native frames too (unwound from the registers; needs `freeze`).
    pub native: bool,
    /// Frames per thread at most; deeper stacks are cut (and say so).
    pub max_depth: usize,
    /// asyncio tasks too (3.7–3.15), in [`StackDump::asyncio`].
    pub tasks: bool,
}

impl Default for DumpOptions {
    fn default() -> Self {
        DumpOptions {
            freeze: true,
            locals: false,
            native: false,
            max_depth: 4096,
            tasks: false,
        }
    }
}

/// A whole dump: one entry per Python thread.
#[derive(Clone, Debug, Serialize)]
pub struct StackDump {
    pub pid: i32,
    /// `major.minor.micro` of the interpreter.
    pub python_version: String,
    /// The file holding the interpreter (executable or libpython).
    pub module: String,
    /// Where the struct offsets came from: pyattach's table for the
    /// version, or the interpreter's own `_Py_DebugOffsets` (3.13+).
    pub offsets: symbols::offsets::OffsetsSource,
    /// The core file read instead of a live process (`dump --core`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub core: Option<String>,
    /// Whether the threads were stopped during the read.
    pub frozen: bool,
    /// Why they were not: `--nonblocking`, or what kept pyattach from
    /// stopping them (another tracer: strace, a debugger).
    pub not_paused: Option<String>,
    /// How long the target's threads were stopped, in microseconds.
    pub pause_us: Option<u64>,
    /// Whether the GIL is held at all (when the version tells).
    pub gil_locked: Option<bool>,
    /// False while there is no GIL yet: Python 3.6 creates it when the
    /// process starts its first thread, and its one thread runs without
    /// it until then (`gil_locked` is then `None`).
    pub gil_exists: bool,
    pub threads: Vec<ThreadStack>,
    /// With [`DumpOptions::tasks`]: every asyncio task, by event loop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asyncio: Option<Asyncio>,
    /// What could not be read or decoded (the dump is still useful).
    pub warnings: Vec<String>,
}

/// One Python thread.
#[derive(Clone, Debug, Serialize)]
pub struct ThreadStack {
    /// `threading.get_ident()`: the `pthread_t` of the thread.
    pub thread_id: u64,
    /// The kernel's thread id as the host sees it (`/proc/PID/task`, `ps
    /// -L`): the thread whose thread pointer is the `pthread_t`, not the
    /// `native_thread_id` the thread state claims (stale after a fork, and
    /// another namespace's number in a container; see `identity`).
    pub native_id: Option<i32>,
    /// The thread's id in the target's own pid namespace, when it differs
    /// from `native_id` (a container, `unshare --pid`).
    pub ns_id: Option<i32>,
    /// No thread of the process has this thread state: the thread it was
    /// made for is gone (a fork copies the parent's thread states, and
    /// only the forking thread lives on in the child). Its frames are
    /// where that thread was when the process forked.
    pub stale: bool,
    /// The `threading.Thread` name, when it could be read.
    pub name: Option<String>,
    /// The name the kernel has for the thread (`comm`).
    pub os_name: Option<String>,
    /// The interpreter this thread state belongs to (3.7+; 0 is the main
    /// one). A thread running a subinterpreter has a thread state in each.
    pub interpreter_id: Option<i64>,
    pub is_main: bool,
    pub holds_gil: bool,
    /// What the thread is doing, from `/proc` (before any freeze).
    pub state: ThreadState,
    /// Innermost first.
    pub frames: Vec<Frame>,
    /// Why the frames stop early (unreadable memory, a cycle, max depth).
    pub truncated: Option<String>,
}

/// What the kernel says a thread is doing.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ThreadState {
    /// `R`, `S`, `D`, `T`, `t`, `Z` … from `/proc/PID/task/TID/stat`.
    pub letter: Option<char>,
    /// `running`, `sleeping`, `disk sleep`, …
    pub description: Option<String>,
    /// The system call the thread is blocked in, by name (`futex`, `read`).
    pub syscall: Option<String>,
    /// The kernel function it sleeps in (`/proc/…/wchan`).
    pub wchan: Option<String>,
    /// Blocked taking the GIL (the holder is another thread).
    pub waiting_for_gil: bool,
}

/// Whether a frame is Python code or a native function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FrameKind {
    Python,
    Native,
}

/// One frame.
#[derive(Clone, Debug, Serialize)]
pub struct Frame {
    pub kind: FrameKind,
    /// `co_name` (Python) or the demangled symbol (native).
    pub function: String,
    /// `co_qualname` (3.11+).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qualname: Option<String>,
    pub filename: Option<String>,
    /// The line being executed (Python) or from DWARF (native).
    pub line: Option<u32>,
    /// `co_firstlineno`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_line: Option<u32>,
    /// Local variables (with `--locals`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locals: Option<Vec<Local>>,
    /// The file name of the module a native frame is in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// The program counter of a native frame.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<u64>,
}

/// A local variable with a short repr.
#[derive(Clone, Debug, Serialize)]
pub struct Local {
    pub name: String,
    /// The type's name (`int`, `dict`, …), or `None` if unbound.
    #[serde(rename = "type")]
    pub type_name: Option<String>,
    /// A bounded repr (`42`, `'abc…'`, `dict len=3`), or `None` if unbound.
    pub repr: Option<String>,
    pub is_arg: bool,
}

/// Dumps every Python thread of `pid`.
///
/// With `opts.freeze`, every thread is stopped (ptrace) only for the memory
/// walk: discovery, offsets and the kernel's view of the threads come
/// before, formatting after. The threads are released on every path (the
/// guard's `Drop`), and the pause is reported. If the target cannot be
/// frozen (another tracer, e.g. gdb or strace), the dump is read without
/// stopping it and says so.
pub fn dump(pid: i32, opts: &DumpOptions) -> Result<StackDump, DumpError> {
    let target = crate::Target::open(pid, &symbols::DiscoverOptions::default())?;
    dump_target(&target, opts)
}

/// [`dump`] of an opened target (discovered with the user's options).
pub fn dump_target(target: &crate::Target, opts: &DumpOptions) -> Result<StackDump, DumpError> {
    let leader = target.leader();
    let pid = target.pid();
    let mut d = dump_through(target, opts)?;
    if pid != leader {
        d.pid = leader;
        for t in &mut d.threads {
            t.is_main = t.native_id == Some(leader);
        }
        d.threads.sort_by_key(|t| !t.is_main);
    }
    Ok(d)
}

/// [`dump`] of the process readable as `target.pid()`.
fn dump_through(target: &crate::Target, opts: &DumpOptions) -> Result<StackDump, DumpError> {
    let pid = target.pid();
    let identity = target.identity();
    let interp = target.interpreter();
    if opts.tasks {
        tasks_readable(interp, None)?;
    }
    let prep = walk::prepare(interp)?;
    if opts.tasks {
        tasks_readable(interp, Some(&prep))?;
    }
    if !opts.freeze {
        let mem = attach::ProcessMemory::open(pid).map_err(|e| DumpError::from_attach(pid, e))?;
        let (mut d, _) = walk::dump(interp, &prep, &mem, opts, None, None)?;
        d.not_paused = Some("--nonblocking".into());
        // Read without holding the process: it must still be the one
        // whose symbols were used.
        identity
            .check()
            .map_err(|e| DumpError::from_attach(pid, e))?;
        if opts.native {
            d.warnings.push(
                "native frames need the threads stopped: not shown with --nonblocking".into(),
            );
        }
        return Ok(d);
    }
    let unwinder = opts.native.then(|| native::Unwinder::new(interp));
    match attach::freeze_with(pid, restart_for(interp.version.major)) {
        Ok(stopped) => {
            if let Err(e) = identity.check() {
                // The offsets and symbols found are another program's.
                drop(stopped);
                return Err(DumpError::from_attach(pid, e));
            }
            let mut regs = HashMap::new();
            let mut pointers = walk::ThreadPointers::new();
            for tid in stopped.threads() {
                if let Ok(r) = stopped.regs(tid) {
                    pointers.insert(r.thread_pointer(), tid);
                    if opts.native {
                        regs.insert(tid, native::Regs::from_thread(&r));
                    }
                }
            }
            let native = unwinder.as_ref().map(|u| (u, &regs));
            let res = walk::dump(
                interp,
                &prep,
                stopped.memory(),
                opts,
                native,
                Some(&pointers),
            );
            let pause = stopped
                .detach()
                .map_err(|e| DumpError::from_attach(pid, e))?;
            let (mut d, extra) = res?;
            d.frozen = true;
            d.pause_us = Some(pause.as_micros() as u64);
            merge_native(interp, &mut d, extra);
            Ok(d)
        }
        Err(e @ (attach::Error::NoSuchProcess { .. } | attach::Error::TargetExited { .. })) => {
            Err(DumpError::from_attach(pid, e))
        }
        Err(e) => {
            let mem =
                attach::ProcessMemory::open(pid).map_err(|e| DumpError::from_attach(pid, e))?;
            let (mut d, _) = walk::dump(interp, &prep, &mem, opts, None, None)?;
            let why = match &e {
                attach::Error::AlreadyTraced {
                    tracer,
                    tracer_name,
                    ..
                } => format!("another tracer ({tracer_name}, pid {tracer}) holds it"),
                e => format!("it could not be stopped: {e}"),
            };
            d.warnings.insert(
                0,
                format!("could not stop the threads ({e}); read without stopping them"),
            );
            if opts.native {
                d.warnings.push(format!(
                    "native frames need the threads stopped, and {why}: not shown \
                     (detach the other tracer to see them)"
                ));
            }
            d.not_paused = Some(why);
            Ok(d)
        }
    }
}

/// Whether `dump --tasks` can read `interp`'s tasks: its version and build
/// (before anything else is read), then, once `prep` is there, the offsets
/// found. Live dumps and core files ask alike.
pub(crate) fn tasks_readable(
    interp: &symbols::Interpreter,
    prep: Option<&walk::Prepared>,
) -> Result<(), DumpError> {
    let v = &interp.version;
    // A debug build's interpreter state is laid out otherwise past what
    // its _Py_DebugOffsets describe (3.14d's asyncio_tasks_head is 8
    // bytes further: offsets_dwarf.rs).
    let why = match prep {
        None if interp.build.debug_build => {
            Some("the asyncio layout of debug builds is not known".to_string())
        }
        None => tasks::unsupported(v.major, v.minor),
        Some(p) => p
            .tasks_unreadable()
            .map(|why| format!("its asyncio tasks cannot be read: {why}")),
    };
    match why {
        Some(why) => Err(DumpError::Unsupported {
            version: format!("{}.{}.{}", v.major, v.minor, v.micro),
            why,
        }),
        None => Ok(()),
    }
}

/// Puts each thread's native frames (unwound while the threads were
/// held) around its Python frames.
fn merge_native(interp: &symbols::Interpreter, d: &mut StackDump, extra: Vec<walk::Extra>) {
    if extra.iter().all(|x| x.native.is_none()) {
        return;
    }
    // Only for native frames: naming the debug files opens them.
    let lines = native::Lines::new(interp);
    // The thread states of one OS thread (a thread running a
    // subinterpreter has one in each interpreter) share its native stack:
    // merged once, innermost interpreter first, then split between them.
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut by_tid: HashMap<i32, usize> = HashMap::new();
    for (i, (t, x)) in d.threads.iter().zip(&extra).enumerate() {
        if x.native.is_none() {
            continue;
        }
        match t.native_id.and_then(|n| by_tid.get(&n)) {
            Some(&g) => groups[g].push(i),
            None => {
                if let Some(n) = t.native_id {
                    by_tid.insert(n, groups.len());
                }
                groups.push(vec![i]);
            }
        }
    }
    for mut g in groups {
        // A subinterpreter is entered from a call in an older one.
        g.sort_by_key(|&i| std::cmp::Reverse(d.threads[i].interpreter_id.unwrap_or(0)));
        let mut py = Vec::new();
        let mut entries = Vec::new();
        let mut counts = Vec::new();
        for &i in &g {
            counts.push(d.threads[i].frames.len());
            py.append(&mut d.threads[i].frames);
            entries.extend_from_slice(&extra[i].entries);
        }
        let pcs = extra[g[0]].native.as_deref().unwrap_or_default();
        let merged = native::merge(interp, &lines, pcs, py, &entries);
        for (at, frames) in split_by_python(merged, &counts).into_iter().enumerate() {
            d.threads[g[at]].frames = frames;
        }
    }
}

/// Cuts a merged stack into one part per thread state, the k-th holding
/// `counts[k]` Python frames and the native frames after them up to the
/// next state's first Python frame (the C path into the inner
/// interpreter); the last takes the rest.
fn split_by_python(merged: Vec<Frame>, counts: &[usize]) -> Vec<Vec<Frame>> {
    let mut out: Vec<Vec<Frame>> = vec![Vec::new(); counts.len()];
    let (mut part, mut seen) = (0, 0);
    for f in merged {
        if f.kind == FrameKind::Python {
            while part + 1 < counts.len() && seen >= counts[part] {
                part += 1;
                seen = 0;
            }
            seen += 1;
        }
        out[part].push(f);
    }
    out
}

/// How the stops of pyattach treat the waits they cut short with EINTR
/// (`epoll_wait`, `sigtimedwait`, …; see [`attach::Restart`]) in a CPython
/// of `major` version. Python 3 retries them with the time left (PEP 475),
/// so only short or endless ones, which restart exactly or nearly, are
/// restarted; Python 2 raises the EINTR into the application (2.7's
/// `epoll.poll` raises IOError), so every one is restarted: better late
/// than failed.
pub(crate) fn restart_for(major: u32) -> attach::Restart {
    if major < 3 {
        attach::Restart::Always
    } else {
        attach::Restart::default()
    }
}

/// Dumps with an already discovered interpreter and a memory reader (a live
/// process that the caller froze or not, or, later, a core file).
pub fn dump_with(
    interp: &symbols::Interpreter,
    mem: &dyn Memory,
    opts: &DumpOptions,
) -> Result<StackDump, DumpError> {
    let prep = walk::prepare(interp)?;
    Ok(walk::dump(interp, &prep, mem, opts, None, None)?.0)
}

/// The GIL as the target's memory shows it now (its threads held by the
/// caller): whether it is locked (`None`: the version does not tell, or
/// there is none yet) and the tid of the thread holding it.
pub(crate) fn gil_now(
    interp: &symbols::Interpreter,
    mem: &dyn Memory,
) -> (Option<bool>, Option<i32>) {
    let opts = DumpOptions {
        freeze: false,
        locals: false,
        native: false,
        max_depth: 1,
        tasks: false,
    };
    match dump_with(interp, mem, &opts) {
        Ok(d) => (
            d.gil_locked,
            d.threads
                .iter()
                .find(|t| t.holds_gil)
                .and_then(|t| t.native_id),
        ),
        Err(_) => (None, None),
    }
}
