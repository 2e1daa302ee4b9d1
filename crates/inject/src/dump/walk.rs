//! The walk: runtime → interpreters → thread states → frames.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use symbols::offsets::{consts, Field, Offsets, DEBUG_OFFSETS_LEN};
use symbols::Interpreter;

use super::linetable::{self, Format};
use super::locals;
use super::mem::{le_u32, le_u64, Memory, Reader};
use super::names;
use super::native;
use super::objects::Objects;
use super::procfs;
use super::{DumpError, DumpOptions, Frame, FrameKind, StackDump, ThreadStack};

/// Interpreters, thread states per interpreter: more is garbage.
const MAX_INTERPRETERS: usize = 256;
const MAX_THREADS: usize = 100_000;

/// How frames are laid out in a version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    /// `PyFrameObject` chain (≤3.10).
    FrameObject,
    /// `_PyInterpreterFrame` chain (3.11+).
    Interpreter,
}

/// The offsets the walk needs, resolved once.
struct Layout {
    minor: (u32, u32),
    style: Style,
    interp_next: u64,
    interp_tstate_head: u64,
    interp_gil: Option<u64>,
    gil_locked: Option<u64>,
    gil_last_holder: Option<u64>,
    tstate_next: u64,
    tstate_thread_id: u64,
    tstate_native_id: Option<u64>,
    tstate_len: usize,
    /// ≤3.10: `frame`; 3.11–3.12: `cframe`; 3.13: `current_frame`.
    tstate_frame: u64,
    cframe_current: Option<u64>,
    frame_back: u64,
    frame_code: u64,
    frame_instr: u64,
    frame_owner: Option<u64>,
    /// `is_entry` (3.11).
    frame_is_entry: Option<u64>,
    frame_len: usize,
    code_filename: u64,
    code_name: u64,
    code_qualname: Option<u64>,
    code_firstlineno: u64,
    code_linetable: u64,
    code_adaptive: Option<u64>,
    code_len: usize,
    format: Format,
}

/// Offsets beyond this are garbage (they may come from the target's memory).
const MAX_OFFSET: u64 = 1 << 16;

fn need(o: &Offsets, f: Field) -> Result<u64, String> {
    match o.get(f) {
        Some(v) if v < MAX_OFFSET => Ok(v),
        Some(v) => Err(format!("implausible offset {v} for {}", f.name())),
        None => Err(format!(
            "no offset for {} in {}.{}",
            f.name(),
            o.major,
            o.minor
        )),
    }
}

fn opt(o: &Offsets, f: Field) -> Option<u64> {
    o.get(f).filter(|&v| v < MAX_OFFSET)
}

impl Layout {
    fn new(o: &Offsets) -> Result<Layout, String> {
        let v = (o.major, o.minor);
        let style = if v >= (3, 11) {
            Style::Interpreter
        } else {
            Style::FrameObject
        };
        let (tstate_frame, cframe_current) = if v <= (3, 10) {
            (need(o, Field::TstateFrame)?, None)
        } else if v <= (3, 12) {
            (
                need(o, Field::TstateCframe)?,
                Some(need(o, Field::CframeCurrentFrame)?),
            )
        } else {
            (need(o, Field::TstateCurrentFrame)?, None)
        };
        let (frame_back, frame_code, frame_instr, frame_owner) = match style {
            Style::FrameObject => (
                need(o, Field::FrameBack)?,
                need(o, Field::FrameCode)?,
                need(o, Field::FrameLasti)?,
                None,
            ),
            Style::Interpreter => (
                need(o, Field::IframePrevious)?,
                need(o, Field::IframeCode)?,
                need(o, Field::IframeInstr)?,
                opt(o, Field::IframeOwner),
            ),
        };
        let format = if v >= (3, 11) {
            Format::Locations
        } else if v == (3, 10) {
            Format::Linetable310
        } else {
            Format::Lnotab {
                signed: v >= (3, 6),
            }
        };
        let tstate_next = need(o, Field::TstateNext)?;
        let tstate_thread_id = need(o, Field::TstateThreadId)?;
        let tstate_native_id = opt(o, Field::TstateNativeThreadId);
        let tstate_len = [
            tstate_next,
            tstate_thread_id,
            tstate_native_id.unwrap_or(0),
            tstate_frame,
        ]
        .into_iter()
        .max()
        .unwrap() as usize
            + 8;
        let frame_is_entry = opt(o, Field::IframeIsEntry);
        let frame_len = [
            frame_back,
            frame_code,
            frame_instr,
            frame_owner.unwrap_or(0),
            frame_is_entry.unwrap_or(0),
        ]
        .into_iter()
        .max()
        .unwrap() as usize
            + 8;
        let code_filename = need(o, Field::CodeFilename)?;
        let code_name = need(o, Field::CodeName)?;
        let code_qualname = opt(o, Field::CodeQualname);
        let code_firstlineno = need(o, Field::CodeFirstlineno)?;
        let code_linetable = need(o, Field::CodeLinetable)?;
        let code_adaptive = if style == Style::Interpreter {
            Some(need(o, Field::CodeCodeAdaptive)?)
        } else {
            None
        };
        let code_len = [
            code_filename,
            code_name,
            code_qualname.unwrap_or(0),
            code_firstlineno,
            code_linetable,
            opt(o, Field::CodeArgcount).unwrap_or(0),
            opt(o, Field::CodeNlocals).unwrap_or(0),
            opt(o, Field::CodeVarnames).unwrap_or(0),
            opt(o, Field::CodeLocalsplusnames).unwrap_or(0),
            opt(o, Field::CodeLocalspluskinds).unwrap_or(0),
        ]
        .into_iter()
        .max()
        .unwrap() as usize
            + 8;
        Ok(Layout {
            minor: v,
            style,
            interp_next: need(o, Field::InterpNext)?,
            interp_tstate_head: need(o, Field::InterpTstateHead)?,
            interp_gil: opt(o, Field::InterpGil),
            gil_locked: opt(o, Field::GilLocked),
            gil_last_holder: opt(o, Field::GilLastHolder),
            tstate_next,
            tstate_thread_id,
            tstate_native_id,
            tstate_len,
            tstate_frame,
            cframe_current,
            frame_back,
            frame_code,
            frame_instr,
            frame_owner,
            frame_is_entry,
            frame_len,
            code_filename,
            code_name,
            code_qualname,
            code_firstlineno,
            code_linetable,
            code_adaptive,
            code_len,
            format,
        })
    }
}

/// A decoded code object.
struct Code {
    /// With `--locals`: the names of its local slots.
    locals: Option<Vec<locals::LocalName>>,
    name: String,
    qualname: Option<String>,
    filename: String,
    first_line: i32,
    table: Vec<u8>,
}

/// The offsets for this interpreter: `_Py_DebugOffsets` from the target's
/// memory on 3.13+ (else from the file), over the version's table.
fn load_offsets(interp: &Interpreter, mem: &dyn Memory) -> Result<Offsets, DumpError> {
    let v = &interp.version;
    let unsupported = |why: &str| DumpError::Unsupported {
        version: format!("{}.{}.{}", v.major, v.minor, v.micro),
        why: why.to_string(),
    };
    if interp.build.debug_build {
        return Err(unsupported("debug builds have other struct layouts"));
    }
    if (v.major, v.minor) >= (3, 13) {
        if let Some(rt) = interp.symbol("_PyRuntime") {
            let mut b = vec![0u8; DEBUG_OFFSETS_LEN];
            let bytes = match mem.read(rt.addr.0, &mut b) {
                Ok(()) => Some(b),
                Err(_) => interp.read_module_bytes(rt.addr, DEBUG_OFFSETS_LEN).ok(),
            };
            if let Some(b) = bytes {
                match Offsets::from_debug_offsets(&b) {
                    Ok(o) => return Ok(o),
                    Err(e) => {
                        if Offsets::for_version(v.major, v.minor).is_none() {
                            return Err(unsupported(&e.to_string()));
                        }
                    }
                }
            }
        }
    }
    Offsets::for_version(v.major, v.minor)
        .ok_or_else(|| unsupported("no struct offsets for this version"))
}

/// The addresses of the globals the walk starts from, resolved through the
/// symbol chain before the threads are stopped (a first `.symtab` lookup
/// parses the whole table).
struct Addrs {
    /// `_PyRuntime` (3.7+).
    runtime: Option<u64>,
    /// The `interp_head` static (2.7, 3.6), or why it is unknown.
    interp_head: Result<u64, String>,
    /// `_PyThreadState_Current` (2.7, 3.6).
    tstate_current: Option<u64>,
    /// The `gil_locked` static (3.6).
    gil_locked: Option<u64>,
    /// Code ranges of the functions that block taking the GIL.
    gil_waits: Vec<(u64, u64)>,
    /// `sizeof(Py_UNICODE)` of a 2.7 build, from its exported names.
    py2_unicode: Option<u64>,
}

fn addrs(interp: &Interpreter, o: &Offsets) -> Addrs {
    let sym = |n: &str| interp.symbol(n).map(|s| s.addr.0);
    let old = o.get(Field::RuntimeInterpretersHead).is_none();
    Addrs {
        runtime: if old { None } else { sym("_PyRuntime") },
        interp_head: if old {
            interp_head_addr(interp)
        } else {
            Err("unused".into())
        },
        tstate_current: if old {
            sym("_PyThreadState_Current")
        } else {
            None
        },
        gil_locked: if old { sym("gil_locked") } else { None },
        gil_waits: ["take_gil", "PyEval_RestoreThread", "PyEval_AcquireThread"]
            .iter()
            .filter_map(|n| interp.symbol(n))
            .filter(|s| s.size > 0)
            .map(|s| (s.addr.0, s.addr.0 + s.size))
            .collect(),
        py2_unicode: if o.major != 2 {
            None
        } else if sym("PyUnicodeUCS4_FromString").is_some() {
            Some(4)
        } else if sym("PyUnicodeUCS2_FromString").is_some() {
            Some(2)
        } else {
            None
        },
    }
}

/// The address of `interp_head` (2.7, 3.6): through the symbol chain or,
/// when stripped, from the code of `PyInterpreterState_Head`.
fn interp_head_addr(interp: &Interpreter) -> Result<u64, String> {
    if let Some(s) = interp.symbol("interp_head") {
        return Ok(s.addr.0);
    }
    // `PyInterpreterState_Head` is `return interp_head;`: on x86_64
    // `48 8b 05 <rel32>  mov rax, [rip+rel32]` then `c3  ret`.
    let f = interp
        .symbol("PyInterpreterState_Head")
        .ok_or("neither interp_head nor PyInterpreterState_Head is known")?;
    let code = interp
        .read_module_bytes(f.addr, 8)
        .map_err(|e| e.to_string())?;
    if code.len() == 8 && code[..3] == [0x48, 0x8b, 0x05] && code[7] == 0xc3 {
        let rel = i32::from_le_bytes(code[3..7].try_into().unwrap()) as i64;
        return Ok((f.addr.0 as i64).wrapping_add(7).wrapping_add(rel) as u64);
    }
    Err("cannot find interp_head in PyInterpreterState_Head".into())
}

/// `threading._active` of the first interpreter, if it can be found.
fn find_active(o: &Offsets, a: &Addrs, mem: &dyn Memory) -> Option<u64> {
    let l = names::DictLayout::new(o)?;
    let objs = Objects::new(Reader::new(mem), o).ok()?;
    let head = interpreters_head(a, o, &objs.r).ok()?;
    let modules = objs
        .r
        .u64(head.wrapping_add(o.get(Field::InterpModules)?))
        .ok()?;
    names::active_dict(&l, &objs, modules).ok().flatten()
}

/// Where the interpreter list starts: `_PyRuntime.interpreters.head` (3.7+)
/// or `interp_head` (2.7, 3.6).
fn interpreters_head(a: &Addrs, o: &Offsets, r: &Reader) -> Result<u64, String> {
    if let Some(off) = o.get(Field::RuntimeInterpretersHead) {
        let rt = a.runtime.ok_or("the _PyRuntime symbol is missing")?;
        return r.u64(rt.wrapping_add(off));
    }
    r.u64(a.interp_head.clone()?)
}

/// The thread state holding the GIL (0 if none) and whether the GIL is
/// locked, for the versions with one process-wide answer (≤3.11).
fn global_gil(a: &Addrs, o: &Offsets, r: &Reader) -> (Option<u64>, Option<bool>) {
    if let Some(off) = o.get(Field::RuntimeTstateCurrent) {
        let Some(rt) = a.runtime else {
            return (None, None);
        };
        let holder = r.u64(rt.wrapping_add(off)).ok();
        let locked = match (o.get(Field::RuntimeGil), o.get(Field::GilLocked)) {
            (Some(g), Some(l)) => r
                .i32(rt.wrapping_add(g).wrapping_add(l))
                .ok()
                .map(|v| v != 0),
            _ => None,
        };
        return (holder, locked);
    }
    if o.major == 2 || (o.major, o.minor) == (3, 6) {
        let holder = a.tstate_current.and_then(|s| r.u64(s).ok());
        let locked = a
            .gil_locked
            .and_then(|s| r.i32(s).ok())
            .map(|v| v != 0)
            .or(holder.map(|h| h != 0));
        return (holder, locked);
    }
    (None, None)
}

struct RawThread {
    entries: Vec<bool>,
    native: Option<Vec<u64>>,
    tstate: u64,
    thread_id: u64,
    native_id: Option<i32>,
    frames: Vec<Frame>,
    truncated: Option<String>,
}

struct Walker<'a> {
    l: Layout,
    locals: Option<locals::LocalsLayout>,
    obj: Objects<'a>,
    codes: HashMap<u64, Option<Rc<Code>>>,
    max_depth: usize,
}

impl Walker<'_> {
    fn code(&mut self, addr: u64) -> Option<Rc<Code>> {
        if let Some(c) = self.codes.get(&addr) {
            return c.clone();
        }
        let c = self.read_code(addr).ok().map(Rc::new);
        self.codes.insert(addr, c.clone());
        c
    }

    fn read_code(&self, addr: u64) -> Result<Code, String> {
        if self.obj.type_name(addr).as_deref() != Some("code") {
            return Err(format!("{addr:#x} is not a code object"));
        }
        let l = &self.l;
        let b = self.obj.r.bytes(addr, l.code_len)?;
        debug_assert!(b.len() >= l.code_len);
        let s = |off: u64| self.obj.string(le_u64(&b, off as usize));
        let name = s(l.code_name)?;
        let filename = s(l.code_filename)?;
        let qualname = l.code_qualname.and_then(|q| s(q).ok());
        let first_line = le_u32(&b, l.code_firstlineno as usize) as i32;
        let table = self
            .obj
            .bytes(le_u64(&b, l.code_linetable as usize), super::mem::MAX_READ)
            .unwrap_or_default();
        let locals = self
            .locals
            .as_ref()
            .and_then(|ll| locals::names(ll, &self.obj, &b).ok());
        Ok(Code {
            locals,
            name,
            qualname,
            filename,
            first_line,
            table,
        })
    }

    /// The innermost frame from the thread state's frame field.
    fn first_frame(&self, f: u64) -> Result<u64, String> {
        match self.l.cframe_current {
            Some(cur) if f != 0 => self.obj.r.u64(f.wrapping_add(cur)),
            _ => Ok(f),
        }
    }

    /// Advances `w` by one frame (or past one shim frame).
    fn step(&mut self, w: &mut FrameWalk) {
        let f = w.f;
        if f == 0 {
            w.done = true;
            return;
        }
        if w.out.len() >= self.max_depth {
            w.stop(format!(
                "stopped at the maximum depth of {}",
                self.max_depth
            ));
            return;
        }
        if !w.seen.insert(f) {
            w.stop(format!("frame chain loops at {f:#x}"));
            return;
        }
        let b = match self.obj.r.bytes(f, self.l.frame_len) {
            Ok(b) => b,
            Err(e) => return w.stop(e),
        };
        let back = le_u64(&b, self.l.frame_back as usize);
        let code_addr = le_u64(&b, self.l.frame_code as usize);
        if let Some(owner) = self.l.frame_owner {
            // 3.12+: shim frames on the C stack hold no Python code.
            if self.l.minor >= (3, 12) && b[owner as usize] >= consts::FRAME_OWNED_BY_CSTACK {
                // The Python frame this shim precedes was the first of its
                // C evaluation call.
                if let Some(e) = w.entries.last_mut() {
                    *e = true;
                }
                w.f = back;
                return;
            }
        }
        let Some(code) = self.code(code_addr) else {
            return w.stop(format!(
                "frame at {f:#x} has no readable code object ({code_addr:#x})"
            ));
        };
        let offset = match self.l.style {
            Style::FrameObject => {
                let lasti = le_u32(&b, self.l.frame_instr as usize) as i32 as i64;
                if self.l.minor == (3, 10) && lasti >= 0 {
                    lasti * 2
                } else {
                    lasti
                }
            }
            Style::Interpreter => {
                let instr = le_u64(&b, self.l.frame_instr as usize) as i64;
                let start = code_addr.wrapping_add(self.l.code_adaptive.unwrap_or(0)) as i64;
                instr.wrapping_sub(start).div_euclid(2)
            }
        };
        let line = linetable::line_for(self.l.format, &code.table, code.first_line, offset);
        let frame_locals = match (&self.locals, &code.locals) {
            (Some(ll), Some(names)) => locals::read(ll, &self.obj, f, names).ok(),
            _ => None,
        };
        w.entries.push(match (self.l.style, self.l.frame_is_entry) {
            (Style::FrameObject, _) => true,
            (_, Some(e)) => b[e as usize] != 0,
            _ => false,
        });
        w.out.push(Frame {
            kind: FrameKind::Python,
            function: code.name.clone(),
            qualname: code.qualname.clone(),
            filename: Some(code.filename.clone()),
            line: line.and_then(|l| u32::try_from(l).ok()),
            first_line: u32::try_from(code.first_line).ok(),
            locals: frame_locals,
            module: None,
            address: None,
        });
        w.f = back;
    }

    /// Walks every thread's frames a level at a time, prefetching the pages
    /// of each level's frames in one batched read.
    fn walk_all(&mut self, walks: &mut [FrameWalk]) {
        loop {
            let level: Vec<(u64, usize)> = walks
                .iter()
                .filter(|w| !w.done && w.f != 0)
                .map(|w| (w.f, self.l.frame_len))
                .collect();
            if level.is_empty() {
                break;
            }
            self.obj.r.prefetch(&level);
            for w in walks.iter_mut().filter(|w| !w.done) {
                self.step(w);
            }
        }
    }
}

/// One thread's frame walk in progress.
struct FrameWalk {
    f: u64,
    out: Vec<Frame>,
    /// For each frame: the first one its C evaluation-loop call runs (for
    /// `--native`).
    entries: Vec<bool>,
    seen: HashSet<u64>,
    truncated: Option<String>,
    done: bool,
}

impl FrameWalk {
    fn new(f: Result<u64, String>) -> FrameWalk {
        let (f, truncated) = match f {
            Ok(f) => (f, None),
            Err(e) => (0, Some(e)),
        };
        FrameWalk {
            f,
            out: Vec::new(),
            entries: Vec::new(),
            seen: HashSet::new(),
            truncated,
            done: f == 0,
        }
    }

    fn stop(&mut self, why: String) {
        self.truncated = Some(why);
        self.done = true;
    }
}

/// What is known before the threads are stopped: the offsets and the
/// kernel's view of each thread (a stopped thread shows as stopped, not as
/// what it was doing).
pub struct Prepared {
    offsets: Offsets,
    addrs: Addrs,
    /// `threading._active` of the main interpreter, found before the
    /// freeze (it moves only if the module is reloaded).
    active: Option<u64>,
    kernel: HashMap<i32, procfs::KernelThread>,
}

pub fn prepare(interp: &Interpreter) -> Result<Prepared, DumpError> {
    let mem = attach::ProcessMemory::open(interp.pid)
        .map_err(|e| DumpError::from_attach(interp.pid, e))?;
    let offsets = load_offsets(interp, &mem)?;
    let addrs = addrs(interp, &offsets);
    let active = find_active(&offsets, &addrs, &mem);
    Ok(Prepared {
        addrs,
        active,
        offsets,
        kernel: procfs::kernel_threads(interp.pid),
    })
}

/// Per thread, in the order of the dump's threads: what `--native` needs.
pub struct Extra {
    pub entries: Vec<bool>,
    pub native: Option<Vec<u64>>,
}

type NativeInput<'a, 'b> = Option<(&'a native::Unwinder<'b>, &'a HashMap<i32, native::Regs>)>;

pub fn dump(
    interp: &Interpreter,
    prep: &Prepared,
    mem: &dyn Memory,
    opts: &DumpOptions,
    native: NativeInput,
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
    let (mut holder, mut gil_locked) = global_gil(&prep.addrs, offsets, &r);

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
    let mut raw = Vec::new();
    // Per thread: `tstate->frame`, `->cframe` or `->current_frame`.
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
                w.l.interp_next,
                w.l.interp_tstate_head,
                w.l.interp_gil.unwrap_or(0),
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
        if let (Some(g), Some(lk), Some(lh)) = (w.l.interp_gil, w.l.gil_locked, w.l.gil_last_holder)
        {
            let gil = le_u64(&ib, g as usize);
            if gil != 0 && holder.is_none() {
                let locked = r.i32(gil.wrapping_add(lk)).ok().map(|v| v != 0);
                let last = r.u64(gil.wrapping_add(lh)).ok();
                gil_locked = locked;
                holder = match (locked, last) {
                    (Some(true), Some(t)) => Some(t),
                    (Some(false), _) => Some(0),
                    _ => None,
                };
            }
        }
        let mut ts = le_u64(&ib, w.l.interp_tstate_head as usize);
        let mut ts_seen = HashSet::new();
        while ts != 0 {
            if !ts_seen.insert(ts) || ts_seen.len() > MAX_THREADS {
                warnings.push(format!("thread list loops at {ts:#x}"));
                break;
            }
            let tb = match r.bytes(ts, w.l.tstate_len) {
                Ok(b) => b,
                Err(e) => {
                    warnings.push(format!("thread state at {ts:#x}: {e}"));
                    break;
                }
            };
            raw.push(RawThread {
                entries: Vec::new(),
                native: None,
                tstate: ts,
                thread_id: le_u64(&tb, w.l.tstate_thread_id as usize),
                native_id: w
                    .l
                    .tstate_native_id
                    .map(|o| le_u64(&tb, o as usize) as i32)
                    .filter(|&t| t > 0),
                frames: Vec::new(),
                truncated: None,
            });
            first.push(le_u64(&tb, w.l.tstate_frame as usize));
            ts = le_u64(&tb, w.l.tstate_next as usize);
        }
        ip = le_u64(&ib, w.l.interp_next as usize);
    }

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
        t.truncated = fw.truncated;
    }

    // ≤3.10 has no native_thread_id: map pthread_t → tid.
    if raw.iter().any(|t| t.native_id.is_none()) {
        let tids: HashSet<i32> = kernel.keys().copied().collect();
        let ids: Vec<u64> = raw.iter().map(|t| t.thread_id).collect();
        let map = procfs::map_pthreads(mem, &ids, &tids);
        for t in raw.iter_mut().filter(|t| t.native_id.is_none()) {
            t.native_id = map.get(&t.thread_id).copied();
        }
    }

    if let Some((u, regs)) = native {
        for t in raw.iter_mut() {
            if let Some(r) = t.native_id.and_then(|n| regs.get(&n)) {
                t.native = Some(u.unwind(&w.obj.r, *r));
            }
        }
    }
    let thread_names = match (prep.active, names::DictLayout::new(offsets)) {
        (Some(a), Some(l)) => names::thread_names(&l, &w.obj, a),
        _ => HashMap::new(),
    };
    let waits = &prep.addrs.gil_waits;
    let mut threads: Vec<(ThreadStack, Extra)> = raw
        .into_iter()
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
                name: thread_names.get(&t.thread_id).cloned(),
                os_name: k.map(|k| k.comm.clone()),
                is_main: t.native_id == Some(pid),
                holds_gil,
                state,
                frames: t.frames,
                truncated: t.truncated,
            };
            (stack, extra)
        })
        .collect();
    // Main thread first, then the others in the order they started.
    threads.reverse();
    threads.sort_by_key(|t| !t.0.is_main);
    let (threads, extra): (Vec<ThreadStack>, Vec<Extra>) = threads.into_iter().unzip();

    Ok((
        StackDump {
            pid,
            python_version: format!("{}.{}.{}", v.major, v.minor, v.micro),
            module: interp.module.path.display().to_string(),
            frozen: false,
            pause_us: None,
            gil_locked: gil_locked.or(holder.map(|h| h != 0)),
            threads,
            warnings,
        },
        extra,
    ))
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
