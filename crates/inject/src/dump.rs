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
mod error;
mod frames;
mod layout;
mod linetable;
mod locals;
mod mem;
mod names;
pub(crate) mod native;
mod objects;
mod procfs;
mod runtime;
mod tasks;
mod walk;

use std::collections::HashMap;

use serde::Serialize;

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
    /// Whether the threads were stopped during the read.
    pub frozen: bool,
    /// How long the target's threads were stopped, in microseconds.
    pub pause_us: Option<u64>,
    /// Whether the GIL is held at all (when the version tells).
    pub gil_locked: Option<bool>,
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
    /// The kernel's thread id (`native_thread_id` on 3.11+, else mapped from
    /// the `pthread_t`, see `procfs::map_pthreads`).
    pub native_id: Option<i32>,
    /// The `threading.Thread` name, when it could be read.
    pub name: Option<String>,
    /// The name the kernel has for the thread (`comm`).
    pub os_name: Option<String>,
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
        let v = &interp.version;
        if let Some(why) = tasks::unsupported(v.major, v.minor) {
            return Err(DumpError::Unsupported {
                version: format!("{}.{}.{}", v.major, v.minor, v.micro),
                why,
            });
        }
    }
    let prep = walk::prepare(interp)?;
    if let Some(why) = prep.tasks_unreadable().filter(|_| opts.tasks) {
        let v = &interp.version;
        return Err(DumpError::Unsupported {
            version: format!("{}.{}.{}", v.major, v.minor, v.micro),
            why: format!("its asyncio tasks cannot be read: {why}"),
        });
    }
    if !opts.freeze {
        let mem = attach::ProcessMemory::open(pid).map_err(|e| DumpError::from_attach(pid, e))?;
        let (mut d, _) = walk::dump(interp, &prep, &mem, opts, None)?;
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
            if opts.native {
                for tid in stopped.threads() {
                    if let Ok(r) = stopped.regs(tid) {
                        regs.insert(tid, native::Regs::from_thread(&r));
                    }
                }
            }
            let native = unwinder.as_ref().map(|u| (u, &regs));
            let res = walk::dump(interp, &prep, stopped.memory(), opts, native);
            let pause = stopped
                .detach()
                .map_err(|e| DumpError::from_attach(pid, e))?;
            let (mut d, extra) = res?;
            d.frozen = true;
            d.pause_us = Some(pause.as_micros() as u64);
            // Only for native frames: naming the debug files opens them.
            let lines = if opts.native {
                native::Lines::new(interp)
            } else {
                native::Lines::default()
            };
            for (t, x) in d.threads.iter_mut().zip(extra) {
                if let Some(pcs) = x.native {
                    let py = std::mem::take(&mut t.frames);
                    t.frames = native::merge(interp, &lines, &pcs, py, &x.entries);
                }
            }
            Ok(d)
        }
        Err(e @ (attach::Error::NoSuchProcess { .. } | attach::Error::TargetExited { .. })) => {
            Err(DumpError::from_attach(pid, e))
        }
        Err(e) => {
            let mem =
                attach::ProcessMemory::open(pid).map_err(|e| DumpError::from_attach(pid, e))?;
            let (mut d, _) = walk::dump(interp, &prep, &mem, opts, None)?;
            d.warnings.insert(
                0,
                format!("could not stop the threads ({e}); read without stopping them"),
            );
            Ok(d)
        }
    }
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
    Ok(walk::dump(interp, &prep, mem, opts, None)?.0)
}
