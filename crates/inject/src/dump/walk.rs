//! The walk: runtime → interpreters → thread states → frames.

use std::collections::{HashMap, HashSet};

use symbols::offsets::{Field, Offsets};
use symbols::Interpreter;

use super::frames::{FrameWalk, Walker};
use super::identity;
use super::layout::Layout;
use super::locals;
use super::mem::{le_u64, Memory, Reader};
use super::native;
use super::objects::Objects;
use super::procfs;
use super::runtime::{
    addrs, gil_absent, global_gil, interpreters_head, load_offsets, thread_names, Addrs,
};
use super::tasks;
use super::{DumpError, DumpOptions, Frame, StackDump, ThreadStack};

use super::runtime::MAX_INTERPRETERS;
/// Thread states per interpreter: more is garbage.
const MAX_THREADS: usize = 100_000;

struct RawThread {
    entries: Vec<bool>,
    /// Each frame's address (for `--tasks`).
    addrs: Vec<u64>,
    native: Option<Vec<u64>>,
    tstate: u64,
    /// The interpreter's address and id (3.7+).
    interp: (u64, Option<i64>),
    thread_id: u64,
    /// What the thread state claims (3.11+), then what the kernel says
    /// (see `identity`).
    native_id: Option<i32>,
    ns_id: Option<i32>,
    stale: bool,
    frames: Vec<Frame>,
    truncated: Option<String>,
}

/// What is known before the threads are stopped: the offsets and the
/// kernel's view of each thread (a stopped thread shows as stopped, not as
/// what it was doing).
pub struct Prepared {
    offsets: Offsets,
    addrs: Addrs,
    /// Python thread names by interpreter and ident, read before the freeze.
    names: HashMap<(u64, u64), String>,
    kernel: HashMap<i32, procfs::KernelThread>,
}

pub fn prepare(interp: &Interpreter) -> Result<Prepared, DumpError> {
    let mem = attach::ProcessMemory::open(interp.pid)
        .map_err(|e| DumpError::from_attach(interp.pid, e))?;
    prepare_with(interp, &mem, procfs::kernel_threads(interp.pid))
}

/// [`prepare`] from any memory (a core file's) and what is known of the
/// threads beside it.
pub fn prepare_with(
    interp: &Interpreter,
    mem: &dyn Memory,
    kernel: HashMap<i32, procfs::KernelThread>,
) -> Result<Prepared, DumpError> {
    let offsets = load_offsets(interp, mem)?;
    let futex = kernel
        .values()
        .any(|k| k.state.syscall.as_deref() == Some("futex"));
    let addrs = addrs(interp, &offsets, futex);
    let names = thread_names(&offsets, &addrs, mem);
    Ok(Prepared {
        addrs,
        names,
        offsets,
        kernel,
    })
}

impl Prepared {
    /// Why `--tasks` cannot read this interpreter's tasks, if it cannot.
    pub fn tasks_unreadable(&self) -> Option<String> {
        tasks::layout_missing(&self.offsets)
    }
}

/// Per thread, in the order of the dump's threads: what `--native` needs.
pub struct Extra {
    pub entries: Vec<bool>,
    pub native: Option<Vec<u64>>,
}

type NativeInput<'a, 'b> = Option<(&'a native::Unwinder<'b>, &'a HashMap<i32, native::Regs>)>;

/// Each stopped thread's thread pointer (its `pthread_t`) → its tid.
pub type ThreadPointers = HashMap<u64, i32>;

pub fn dump(
    interp: &Interpreter,
    prep: &Prepared,
    mem: &dyn Memory,
    opts: &DumpOptions,
    native: NativeInput,
    thread_pointers: Option<&ThreadPointers>,
) -> Result<(StackDump, Vec<Extra>), DumpError> {
    let pid = interp.pid;
    let v = &interp.version;
    let offsets = &prep.offsets;
    let kernel = &prep.kernel;
    let unsupported = |why: String| DumpError::Unsupported {
        version: format!("{}.{}.{}", v.major, v.minor, v.micro),
        why,
    };
    let layout = Layout::new(offsets).map_err(unsupported)?;
    let mut objs = Objects::new(Reader::new(mem), offsets).map_err(unsupported)?;
    if let Some(n) = prep.addrs.py2_unicode {
        objs.set_unicode_char_size(n);
    }
    let mut warnings = Vec::new();

    let r = Reader::new(mem);
    let head = interpreters_head(&prep.addrs, offsets, &r)
        .map_err(|why| DumpError::NoInterpreter { pid, why })?;
    if head == 0 {
        return Err(DumpError::NoInterpreter {
            pid,
            why: "no interpreter yet (not initialized, or finalized)".into(),
        });
    }
    let gil_exists = !gil_absent(&prep.addrs, &r);
    let (holder, locked) = if gil_exists {
        global_gil(&prep.addrs, offsets, &r)
    } else {
        (None, None)
    };
    let mut gil = Gil { holder, locked };

    let mut w = Walker {
        l: layout,
        locals: if opts.locals {
            locals::LocalsLayout::new(offsets)
        } else {
            None
        },
        obj: objs,
        codes: HashMap::new(),
        max_depth: opts.max_depth,
    };
    // Per thread: `tstate->frame`, `->cframe` or `->current_frame`.
    let (mut raw, first) = thread_states(&w.l, &r, head, &mut gil, &mut warnings);
    let (holder, gil_locked) = (gil.holder, gil.locked);
    // 3.11–3.12 go through each thread's `_PyCFrame` (on its C stack).
    if let Some(cur) = w.l.cframe_current {
        let cframes: Vec<(u64, usize)> = first
            .iter()
            .filter(|&&c| c != 0)
            .map(|&c| (c.wrapping_add(cur), 8))
            .collect();
        w.obj.r.prefetch(&cframes);
    }
    let mut walks: Vec<FrameWalk> = first
        .iter()
        .map(|&f| FrameWalk::new(w.first_frame(f)))
        .collect();
    w.walk_all(&mut walks);
    for (t, fw) in raw.iter_mut().zip(walks) {
        t.frames = fw.out;
        t.entries = fw.entries;
        t.addrs = fw.addrs;
        t.truncated = fw.truncated;
    }

    native_ids(&mut raw, kernel, mem, thread_pointers);
    let asyncio = opts.tasks.then(|| read_tasks(&mut w, offsets, head, &raw));

    if let Some((u, regs)) = native {
        for t in raw.iter_mut() {
            if let Some(r) = t.native_id.and_then(|n| regs.get(&n)) {
                t.native = Some(u.unwind(&w.obj.r, *r));
            }
        }
    }
    let mut threads = thread_stacks(raw, prep, mem, gil_locked, holder, pid);
    // The main interpreter's first, the main thread first, then the others
    // in the order they started, and the stale thread states last.
    threads.reverse();
    threads.sort_by_key(|t| (t.0.stale, t.0.interpreter_id.unwrap_or(0), !t.0.is_main));
    let (threads, extra): (Vec<ThreadStack>, Vec<Extra>) = threads.into_iter().unzip();

    Ok((
        StackDump {
            pid,
            python_version: format!("{}.{}.{}", v.major, v.minor, v.micro),
            module: interp.module.path.display().to_string(),
            offsets: offsets.source,
            frozen: false,
            not_paused: None,
            pause_us: None,
            gil_locked: gil_locked.or(holder.map(|h| h != 0)),
            core: None,
            gil_exists,
            threads,
            asyncio,
            warnings,
        },
        extra,
    ))
}

/// The asyncio tasks of the main interpreter; what could not be read
/// at all is a warning in the result.
fn read_tasks(w: &mut Walker, o: &Offsets, head: u64, raw: &[RawThread]) -> super::Asyncio {
    let threads: Vec<tasks::ThreadFrames> = raw
        .iter()
        .map(|t| tasks::ThreadFrames {
            tstate: t.tstate,
            native_id: t.native_id,
            addrs: &t.addrs,
            frames: &t.frames,
        })
        .collect();
    // The main interpreter's (the list starts with the newest one).
    let main = raw
        .iter()
        .find(|t| t.interp.1 == Some(0))
        .map_or(head, |t| t.interp.0);
    let modules = o
        .get(Field::InterpModules)
        .ok_or_else(|| "no offset for the interpreter's modules".to_string())
        .and_then(|m| w.obj.r.u64(main.wrapping_add(m)));
    match modules.and_then(|m| tasks::read(w, o, main, m, &threads)) {
        Ok(a) => a,
        Err(e) => super::Asyncio {
            warnings: vec![format!("cannot read the asyncio tasks: {e}")],
            ..super::Asyncio::default()
        },
    }
}

/// The host's tid of each thread state, what the kernel says rather than
/// what the state claims (see `identity`).
fn native_ids(
    raw: &mut [RawThread],
    kernel: &HashMap<i32, procfs::KernelThread>,
    mem: &dyn Memory,
    thread_pointers: Option<&ThreadPointers>,
) {
    let claims: Vec<identity::Claim> = raw
        .iter()
        .map(|t| identity::Claim {
            thread_id: t.thread_id,
            native_id: t.native_id,
        })
        .collect();
    for (t, id) in raw
        .iter_mut()
        .zip(identity::identify(&claims, kernel, mem, thread_pointers))
    {
        t.native_id = id.tid;
        t.ns_id = id.ns_tid;
        t.stale = id.stale;
    }
}

/// The GIL as last seen: its holder's thread state (0: none), and
/// whether it is locked.
struct Gil {
    holder: Option<u64>,
    locked: Option<bool>,
}

/// Every thread state of every interpreter, from `head`, with the address
/// each thread's frame chain starts from; the GIL of 3.12+ (per
/// interpreter) into `gil`, and what could not be read into `warnings`.
fn thread_states(
    l: &Layout,
    r: &Reader,
    head: u64,
    gil: &mut Gil,
    warnings: &mut Vec<String>,
) -> (Vec<RawThread>, Vec<u64>) {
    let mut raw = Vec::new();
    let mut first = Vec::new();
    let mut interps_seen = HashSet::new();
    let mut ip = head;
    while ip != 0 && interps_seen.len() < MAX_INTERPRETERS {
        if !interps_seen.insert(ip) {
            warnings.push(format!("interpreter list loops at {ip:#x}"));
            break;
        }
        let ib = match r.bytes(
            ip,
            [
                l.interp_next,
                l.interp_tstate_head,
                l.interp_gil.unwrap_or(0),
                l.interp_id.unwrap_or(0),
            ]
            .into_iter()
            .max()
            .unwrap() as usize
                + 8,
        ) {
            Ok(b) => b,
            Err(e) => {
                warnings.push(format!("interpreter at {ip:#x}: {e}"));
                break;
            }
        };
        // 3.12+: each interpreter points at the GIL it uses.
        if let (Some(g), Some(lk), Some(lh)) = (l.interp_gil, l.gil_locked, l.gil_last_holder) {
            let at = le_u64(&ib, g as usize);
            if at != 0 && gil.holder.is_none() {
                let locked = r.i32(at.wrapping_add(lk)).ok().map(|v| v != 0);
                let last = r.u64(at.wrapping_add(lh)).ok();
                gil.locked = locked;
                gil.holder = match (locked, last) {
                    (Some(true), Some(t)) => Some(t),
                    (Some(false), _) => Some(0),
                    _ => None,
                };
            }
        }
        let interp = (ip, l.interp_id.map(|o| le_u64(&ib, o as usize) as i64));
        let mut ts = le_u64(&ib, l.interp_tstate_head as usize);
        let mut ts_seen = HashSet::new();
        while ts != 0 {
            if !ts_seen.insert(ts) || ts_seen.len() > MAX_THREADS {
                warnings.push(format!("thread list loops at {ts:#x}"));
                break;
            }
            let tb = match r.bytes(ts, l.tstate_len) {
                Ok(b) => b,
                Err(e) => {
                    warnings.push(format!("thread state at {ts:#x}: {e}"));
                    break;
                }
            };
            raw.push(RawThread {
                entries: Vec::new(),
                addrs: Vec::new(),
                native: None,
                tstate: ts,
                interp,
                thread_id: le_u64(&tb, l.tstate_thread_id as usize),
                native_id: l
                    .tstate_native_id
                    .map(|o| le_u64(&tb, o as usize) as i32)
                    .filter(|&t| t > 0),
                ns_id: None,
                stale: false,
                frames: Vec::new(),
                truncated: None,
            });
            first.push(le_u64(&tb, l.tstate_frame as usize));
            ts = le_u64(&tb, l.tstate_next as usize);
        }
        ip = le_u64(&ib, l.interp_next as usize);
    }

    (raw, first)
}

/// The dump's threads, from the raw ones: names, the kernel's view of
/// each, who holds or waits for the GIL.
fn thread_stacks(
    raw: Vec<RawThread>,
    prep: &Prepared,
    mem: &dyn Memory,
    gil_locked: Option<bool>,
    holder: Option<u64>,
    pid: i32,
) -> Vec<(ThreadStack, Extra)> {
    let kernel = &prep.kernel;
    let thread_names = &prep.names;
    let waits = &prep.addrs.gil_waits;
    raw.into_iter()
        .map(|t| {
            let k = t.native_id.and_then(|n| kernel.get(&n));
            let holds_gil = holder.is_some_and(|h| h != 0 && h == t.tstate);
            let mut state = k.map(|k| k.state.clone()).unwrap_or_default();
            if !holds_gil && gil_locked != Some(false) && state.syscall.as_deref() == Some("futex")
            {
                if let Some(sp) = k.and_then(|k| k.sp) {
                    state.waiting_for_gil = stack_mentions(mem, sp, waits);
                }
            }
            let extra = Extra {
                entries: t.entries,
                native: t.native,
            };
            let stack = ThreadStack {
                thread_id: t.thread_id,
                native_id: t.native_id,
                ns_id: t.ns_id,
                stale: t.stale,
                name: thread_names.get(&(t.interp.0, t.thread_id)).cloned(),
                interpreter_id: t.interp.1,
                os_name: k.map(|k| k.comm.clone()).filter(|c| !c.is_empty()),
                is_main: t.native_id == Some(pid),
                holds_gil,
                state,
                frames: t.frames,
                truncated: t.truncated,
            };
            (stack, extra)
        })
        .collect()
}

/// Whether the first KiB of a blocked thread's stack holds a return address
/// into one of `ranges` (the functions that wait for the GIL): cheap, needs
/// no unwinding, and the window is small enough that a stale word is
/// unlikely.
fn stack_mentions(mem: &dyn Memory, sp: u64, ranges: &[(u64, u64)]) -> bool {
    if ranges.is_empty() {
        return false;
    }
    let mut b = vec![0u8; 1024];
    if mem.read(sp, &mut b).is_err() {
        return false;
    }
    b.chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .any(|a| ranges.iter().any(|&(s, e)| a > s && a < e))
}
