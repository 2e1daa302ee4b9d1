//! `--native`: each thread's native stack, unwound from its registers with
//! the modules' `.eh_frame` call frame information (gimli, through the
//! `.eh_frame_hdr` binary-search table), falling back to the frame-pointer
//! chain where a module has none; symbolized through the symbol chain and
//! demangled; then merged with the Python frames at the evaluation-loop
//! frames, as `py-spy dump --native` does.
//!
//! Unwinding reads the stack while the threads are frozen; symbolization
//! (whose first `.symtab` use parses the table), source lines (addr2line
//! over the module's DWARF or its build-id debug file) and merging happen
//! after they are released.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;

use gimli::{
    BaseAddresses, CfaRule, EhFrame, EhFrameHdr, LittleEndian, Register, RegisterRule,
    UnwindContext, UnwindSection,
};
use symbols::{Interpreter, Module, RemoteAddr, SymbolSource};

use super::mem::{Memory, Reader};
use super::{Frame, FrameKind};

/// Deepest native stack unwound.
const MAX_NATIVE: usize = 2048;

/// x86_64 DWARF register numbers.
const RBP: u16 = 6;
const RSP: u16 = 7;
const RA: u16 = 16;
/// The callee-saved registers CFI may restore (rbx, rbp, r12–r15).
const SAVED: [u16; 6] = [3, 6, 12, 13, 14, 15];

/// The registers unwinding needs, by DWARF number.
#[derive(Clone, Copy, Debug, Default)]
pub struct Regs {
    r: [u64; 17],
}

impl Regs {
    #[cfg(target_arch = "x86_64")]
    pub fn from_thread(t: &attach::Regs) -> Regs {
        let mut r = [0u64; 17];
        r[3] = t.rbx;
        r[6] = t.rbp;
        r[7] = t.rsp;
        r[12] = t.r12;
        r[13] = t.r13;
        r[14] = t.r14;
        r[15] = t.r15;
        r[16] = t.rip;
        Regs { r }
    }

    /// From `struct user_regs_struct` as words in the kernel's order (a
    /// core file's `NT_PRSTATUS`): r15 r14 r13 r12 rbp rbx … rip (16) …
    /// rsp (19).
    pub fn from_user_regs(w: &[u64; symbols::USER_REGS_WORDS]) -> Regs {
        let mut r = [0u64; 17];
        r[15] = w[0];
        r[14] = w[1];
        r[13] = w[2];
        r[12] = w[3];
        r[6] = w[4];
        r[3] = w[5];
        r[16] = w[16];
        r[7] = w[19];
        Regs { r }
    }
}

/// A module's call frame information.
struct Cfi {
    eh_frame: Vec<u8>,
    hdr: Vec<u8>,
    bases: BaseAddresses,
    bias: u64,
}

/// Largest `.eh_frame` read: a libpython's is a few hundred KiB; a file
/// of the target's that claims more is not believed.
const MAX_EH_FRAME: u64 = 32 << 20;

fn load(interp: &Interpreter, m: &Module) -> Option<Cfi> {
    use object::read::elf::{FileHeader, SectionHeader};
    // Checked: a regular file, the one mapped (the target's files are
    // hostile input).
    let f = interp.open_module(m).ok()?;
    let cache = object::ReadCache::new(f);
    // The section headers only: `object::File::parse` would read the
    // symbol tables too (most of the time, for a large libpython).
    let header = object::elf::FileHeader64::<object::Endianness>::parse(&cache).ok()?;
    let endian = header.endian().ok()?;
    let sections = header.sections(endian, &cache).ok()?;
    let section = |name: &[u8]| sections.section_by_name(endian, name).map(|(_, s)| s);
    let (eh, hdr) = (section(b".eh_frame")?, section(b".eh_frame_hdr")?);
    if eh.sh_size(endian) > MAX_EH_FRAME || hdr.sh_size(endian) > MAX_EH_FRAME {
        return None;
    }
    let text = section(b".text").map_or(0, |s| s.sh_addr(endian));
    Some(Cfi {
        eh_frame: eh.data(endian, &cache).ok()?.to_vec(),
        hdr: hdr.data(endian, &cache).ok()?.to_vec(),
        bases: BaseAddresses::default()
            .set_eh_frame_hdr(hdr.sh_addr(endian))
            .set_eh_frame(eh.sh_addr(endian))
            .set_text(text),
        bias: m.load_bias,
    })
}

/// The CFI of some modules, read from their files: milliseconds for a
/// large libpython, which a caller can spend on a thread of its own while
/// it does other work (an [`Unwinder`], which caches as it goes, stays on
/// one thread).
pub struct Preloaded(Vec<(PathBuf, Option<Cfi>)>);

impl Preloaded {
    /// Loads the CFI of the modules of `interp` that `pick` picks.
    pub fn load(interp: &Interpreter, pick: impl Fn(&Module) -> bool) -> Preloaded {
        Preloaded(
            interp
                .modules()
                .iter()
                .filter(|m| pick(m))
                .map(|m| (m.path.clone(), load(interp, m)))
                .collect(),
        )
    }

    /// No CFI at all: modules are then loaded as they are reached.
    pub fn none() -> Preloaded {
        Preloaded(Vec::new())
    }
}

/// What a CFI row says at one address: the CFA (register, offset), and
/// the rules for the return address and then the [`SAVED`] registers.
struct Rule {
    cfa: (u16, i64),
    regs: [Option<RegisterRule<usize>>; 7],
}

/// Unwinds native stacks of one process; caches each module's CFI, and the
/// rows looked up in it.
pub struct Unwinder<'a> {
    interp: &'a Interpreter,
    cfi: RefCell<HashMap<PathBuf, Option<Rc<Cfi>>>>,
    rules: RefCell<HashMap<u64, Option<Rc<Rule>>>>,
    ctx: RefCell<UnwindContext<usize>>,
    /// Whether modules not loaded yet are loaded when reached, and frames
    /// without CFI followed by their frame pointers.
    guess: Cell<bool>,
}

impl<'a> Unwinder<'a> {
    /// Loads every module's CFI now, before any freeze: a few milliseconds
    /// of wall time that would otherwise lengthen the pause.
    pub fn new(interp: &'a Interpreter) -> Self {
        let u = Self::only(interp, |_| true);
        u.guess.set(true);
        u
    }

    /// An unwinder that knows the CFI of the modules `pick` picks (loaded
    /// now) and no other: unwinding ends at a frame of any other module
    /// (no file read, no frame-pointer guess), which is what a few frames
    /// through known modules, with the threads held, want.
    pub fn only(interp: &'a Interpreter, pick: impl Fn(&Module) -> bool) -> Self {
        Self::with(interp, Preloaded::load(interp, pick))
    }

    /// [`Unwinder::only`] with CFI loaded beforehand, on any thread.
    pub fn with(interp: &'a Interpreter, cfi: Preloaded) -> Self {
        Unwinder {
            interp,
            cfi: RefCell::new(
                cfi.0
                    .into_iter()
                    .map(|(p, c)| (p, c.map(Rc::new)))
                    .collect(),
            ),
            rules: RefCell::new(HashMap::new()),
            ctx: RefCell::new(UnwindContext::new()),
            guess: Cell::new(false),
        }
    }

    fn cfi_for(&self, m: &Module) -> Option<Rc<Cfi>> {
        if let Some(c) = self.cfi.borrow().get(&m.path) {
            return c.clone();
        }
        if !self.guess.get() {
            return None;
        }
        let c = load(self.interp, m).map(Rc::new);
        self.cfi.borrow_mut().insert(m.path.clone(), c.clone());
        c
    }

    /// The CFI row for `lookup` in module `c`, kept per address: the
    /// threads of a process share most of their return addresses, and
    /// finding and running a row's CFI program is most of a step's cost.
    fn rule(&self, c: &Cfi, lookup: u64) -> Option<Rc<Rule>> {
        if let Some(r) = self.rules.borrow().get(&lookup) {
            return r.clone();
        }
        let found = (|| {
            let eh = EhFrame::new(&c.eh_frame, LittleEndian);
            let hdr = EhFrameHdr::new(&c.hdr, LittleEndian)
                .parse(&c.bases, 8)
                .ok()?;
            let table = hdr.table()?;
            let mut ctx = self.ctx.borrow_mut();
            let row = table
                .unwind_info_for_address(
                    &eh,
                    &c.bases,
                    &mut ctx,
                    lookup.wrapping_sub(c.bias),
                    EhFrame::cie_from_offset,
                )
                .ok()?;
            let cfa = match row.cfa() {
                CfaRule::RegisterAndOffset { register, offset } => (register.0, *offset),
                CfaRule::Expression(_) => return None,
            };
            let mut regs: [Option<RegisterRule<usize>>; 7] = Default::default();
            regs[0] = row.register(Register(RA));
            for (i, &reg) in SAVED.iter().enumerate() {
                regs[i + 1] = row.register(Register(reg));
            }
            Some(Rc::new(Rule { cfa, regs }))
        })();
        self.rules.borrow_mut().insert(lookup, found.clone());
        found
    }

    /// One step: the caller's registers, or `None` at the end of the stack.
    fn step(&self, r: &Reader, regs: &Regs, first: bool) -> Option<Regs> {
        let pc = regs.r[RA as usize];
        let sp = regs.r[RSP as usize];
        let module = self
            .interp
            .modules()
            .iter()
            .find(|m| m.contains(RemoteAddr(pc)));
        let cfi = module.and_then(|m| self.cfi_for(m));
        let mut next = *regs;
        let via_cfi = cfi.and_then(|c| {
            // A return address points after the call: look up the call.
            let lookup = if first { pc } else { pc.wrapping_sub(1) };
            let rule = self.rule(&c, lookup)?;
            let cfa = regs
                .r
                .get(rule.cfa.0 as usize)?
                .wrapping_add(rule.cfa.1 as u64);
            let value = |i: usize, reg: u16| -> Option<Option<u64>> {
                Some(match &rule.regs[i] {
                    None | Some(RegisterRule::SameValue) => Some(regs.r[reg as usize]),
                    Some(RegisterRule::Undefined) => None,
                    Some(RegisterRule::Offset(n)) => Some(r.u64(cfa.wrapping_add(*n as u64)).ok()?),
                    Some(RegisterRule::ValOffset(n)) => Some(cfa.wrapping_add(*n as u64)),
                    Some(RegisterRule::Register(o)) => Some(*regs.r.get(o.0 as usize)?),
                    Some(_) => return None,
                })
            };
            let ra = value(0, RA)??;
            for (i, &reg) in SAVED.iter().enumerate() {
                next.r[reg as usize] = value(i + 1, reg).flatten().unwrap_or(0);
            }
            next.r[RA as usize] = ra;
            next.r[RSP as usize] = cfa;
            Some(())
        });
        if via_cfi.is_none() {
            if !self.guess.get() {
                return None;
            }
            // Frame pointers: [rbp] is the caller's rbp, [rbp+8] the return.
            let bp = regs.r[RBP as usize];
            if bp <= sp || bp.wrapping_sub(sp) > 1 << 24 {
                return None;
            }
            next.r[RBP as usize] = r.u64(bp).ok()?;
            next.r[RA as usize] = r.u64(bp.wrapping_add(8)).ok()?;
            next.r[RSP as usize] = bp.wrapping_add(16);
        }
        let (npc, nsp) = (next.r[RA as usize], next.r[RSP as usize]);
        if npc < 0x1000 || nsp <= sp {
            return None;
        }
        Some(next)
    }

    /// The program counters of a thread's stack, innermost first.
    pub fn unwind(&self, r: &Reader, regs: Regs) -> Vec<u64> {
        self.unwind_n(r, regs, MAX_NATIVE)
    }

    /// The innermost `depth` program counters of each of several stopped
    /// threads (at most: fewer where unwinding ends), read with one batched
    /// read of the top of their stacks.
    pub fn innermost(&self, mem: &dyn Memory, threads: &[Regs], depth: usize) -> Vec<Vec<u64>> {
        let r = Reader::new(mem);
        let tops: Vec<(u64, usize)> = threads.iter().map(|t| (t.r[RSP as usize], 2048)).collect();
        r.prefetch(&tops);
        threads
            .iter()
            .map(|t| self.unwind_n(&r, *t, depth))
            .collect()
    }

    fn unwind_n(&self, r: &Reader, regs: Regs, depth: usize) -> Vec<u64> {
        let mut out = vec![regs.r[RA as usize]];
        let mut cur = regs;
        while out.len() < depth {
            match self.step(r, &cur, out.len() == 1) {
                Some(n) => {
                    out.push(n.r[RA as usize]);
                    cur = n;
                }
                None => break,
            }
        }
        out
    }
}

/// Demangles Rust and C++ names; C names pass through.
fn demangle(name: &str) -> String {
    if let Ok(d) = rustc_demangle::try_demangle(name) {
        return format!("{d:#}");
    }
    if name.starts_with("_Z") {
        if let Ok(s) = cpp_demangle::Symbol::new(name) {
            if let Ok(d) = s.demangle() {
                return d;
            }
        }
    }
    name.to_string()
}

/// Source files and lines of native code from the DWARF of each module,
/// loaded lazily with addr2line. Only the interpreter's module is also
/// looked up in the debug files its symbols came from (a stripped distro
/// Python with its -dbg package, or a file from debuginfod: found by
/// discovery, with the user's options): doing so for every system library
/// (libc's debug file is compressed) would cost a tenth of a second for
/// lines nobody reads.
#[derive(Default)]
pub struct Lines {
    loaders: RefCell<HashMap<PathBuf, Option<Rc<addr2line::Loader>>>>,
    /// The interpreter module's debug files, in chain order.
    debug_files: Vec<PathBuf>,
}

impl Lines {
    /// Lines for the modules of `interp`.
    pub fn new(interp: &Interpreter) -> Lines {
        let debug_files = interp
            .debug_sources()
            .into_iter()
            .filter_map(|s| match s {
                SymbolSource::BuildIdFile(p)
                | SymbolSource::DebugLink(p)
                | SymbolSource::Debuginfod(p) => Some(p),
                SymbolSource::DynSym | SymbolSource::SymTab | SymbolSource::GnuDebugData => None,
            })
            // Ours only (a debug directory, the debuginfod cache): one in
            // the target's file system is the target's, not opened again
            // by path.
            .filter(|p| !p.starts_with("/proc"))
            .collect();
        Lines {
            loaders: RefCell::default(),
            debug_files,
        }
    }

    fn loader(&self, py: &Interpreter, m: &Module, interp: bool) -> Option<Rc<addr2line::Loader>> {
        if let Some(l) = self.loaders.borrow().get(&m.path) {
            return l.clone();
        }
        // A stripped module's DWARF lives in its debug file (ours).
        let debug_file = self
            .debug_files
            .iter()
            .filter(|_| interp)
            .find_map(|p| addr2line::Loader::new(p).ok());
        let l = debug_file
            .or_else(|| {
                // The module's own file is the target's: opened checked,
                // and handed to addr2line as that very descriptor.
                use std::os::fd::AsRawFd;
                let f = py.open_module(m).ok()?;
                addr2line::Loader::new(format!("/proc/self/fd/{}", f.as_raw_fd())).ok()
            })
            .map(Rc::new);
        self.loaders.borrow_mut().insert(m.path.clone(), l.clone());
        l
    }

    /// `(file, line)` of the code at `addr`, when DWARF has them.
    fn find(&self, py: &Interpreter, m: &Module, interp: bool, addr: u64) -> Option<(String, u32)> {
        let l = self.loader(py, m, interp)?;
        let loc = l.find_location(addr.wrapping_sub(m.load_bias)).ok()??;
        Some((loc.file?.to_string(), loc.line?))
    }
}

/// What is known of the native code at `pc` (a return address unless
/// `first`): symbol, module, and source location.
struct Symbolized {
    name: Option<String>,
    module: Option<String>,
    location: Option<(String, u32)>,
}

fn symbolize(interp: &Interpreter, lines: &Lines, pc: u64, first: bool) -> Symbolized {
    let at = if first { pc } else { pc.wrapping_sub(1) };
    let m = interp.modules().iter().find(|m| m.contains(RemoteAddr(at)));
    Symbolized {
        name: interp
            .symbolize(RemoteAddr(at))
            .map(|(s, _)| demangle(&s.name)),
        module: m.map(|m| m.file_name()),
        location: m.and_then(|m| lines.find(interp, m, *m == interp.module, at)),
    }
}

/// Whether a native function runs Python frames: the evaluation loop, or a
/// piece of it split off by the compiler (`.cold`, LTO clones).
fn is_eval(name: &str) -> bool {
    let base = name.split('.').next().unwrap_or(name);
    base == "_PyEval_EvalFrameDefault" || base == "PyEval_EvalFrameEx"
}

/// Interleaves native frames (innermost first) with the Python frames:
/// each evaluation-loop frame is replaced by the Python frames it runs, up
/// to and including the next one marked as an entry (≤3.10 every frame is
/// one; 3.11+ one C call runs several). Python frames left over (unmatched
/// eval frames, e.g. a stripped module) go at the end.
pub fn merge(
    interp: &Interpreter,
    lines: &Lines,
    pcs: &[u64],
    python: Vec<Frame>,
    entries: &[bool],
) -> Vec<Frame> {
    let mut out = Vec::new();
    let mut py = python.into_iter().zip(entries.iter().copied()).peekable();
    for (i, &pc) in pcs.iter().enumerate() {
        let Symbolized {
            name,
            module,
            location,
        } = symbolize(interp, lines, pc, i == 0);
        if name.as_deref().is_some_and(is_eval) && py.peek().is_some() {
            for (f, entry) in py.by_ref() {
                out.push(f);
                if entry {
                    break;
                }
            }
            continue;
        }
        out.push(Frame {
            kind: FrameKind::Native,
            function: name.unwrap_or_else(|| format!("{pc:#x}")),
            qualname: None,
            filename: location.as_ref().map(|l| l.0.clone()),
            line: location.map(|l| l.1),
            first_line: None,
            locals: None,
            module,
            address: Some(pc),
        });
    }
    out.extend(py.map(|(f, _)| f));
    out
}
