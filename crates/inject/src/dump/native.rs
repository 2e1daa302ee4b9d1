//! `--native`: each thread's native stack, unwound from its registers with
//! the modules' `.eh_frame` call frame information (gimli, through the
//! `.eh_frame_hdr` binary-search table), falling back to the frame-pointer
//! chain where a module has none; symbolized through the symbol chain and
//! demangled; then merged with the Python frames at the evaluation-loop
//! frames, as `py-spy dump --native` does.
//!
//! Code without a frame of its own is stepped out of too: a thread stopped
//! in a PLT stub (`_PyTrash_begin@plt`, 2–6 % of the samples of a busy
//! recursion on 3.8–3.10) has its caller's return address at the stack
//! pointer. The linker describes `.plt` with a CFA expression
//! (`rsp + 8 + ((rip & 15) >= 11 ? 8 : 0)`), which is evaluated; where a
//! module has no CFI for its PLT, the same rule is applied from the
//! layout of the stubs. The frame is named `NAME@plt` from the GOT slot
//! its stub jumps through.
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
    BaseAddresses, CfaRule, EhFrame, EhFrameHdr, EndianSlice, EvaluationResult, LittleEndian,
    Location, Register, RegisterRule, UnwindContext, UnwindSection, Value,
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

/// A module's call frame information, and where its PLT stubs are.
struct Cfi {
    /// `.eh_frame` and `.eh_frame_hdr`, when the module has them.
    eh: Option<(Vec<u8>, Vec<u8>)>,
    bases: BaseAddresses,
    bias: u64,
    plt: Vec<PltSection>,
}

/// The flavours of PLT section (the x86-64 psABI and ld's IBT variant).
#[derive(Clone, Copy, Debug, PartialEq)]
enum PltKind {
    /// `.plt` of lazy binding: PLT0 (`push GOT+8; jmp *GOT+16`), then
    /// 16-byte entries `jmp *slot; push n; jmp PLT0`.
    Lazy,
    /// `.plt` beside a `.plt.sec` (IBT): PLT0, then entries `endbr64;
    /// push n; bnd jmp PLT0`.
    LazyIbt,
    /// `.plt.sec` and `.plt.got`: entries that only jump through a slot.
    Jump,
}

/// A PLT section, in file addresses.
#[derive(Clone, Copy, Debug)]
struct PltSection {
    start: u64,
    end: u64,
    kind: PltKind,
}

/// The CFA of a stub of `sec` at file address `pc`, from the layout of the
/// stubs: the caller's return address is at `rsp`, below what the stub
/// pushed (for lazy binding, the relocation index, and in PLT0 the GOT's
/// second word too). The same rule as ld's CFI for `.plt`, for modules
/// that have none.
fn plt_cfa(sec: &PltSection, pc: u64, rsp: u64) -> u64 {
    let off = pc.wrapping_sub(sec.start);
    let pushed = match sec.kind {
        PltKind::Jump => 0,
        // PLT0: the entry pushed the index; `push GOT+8` is 6 bytes.
        PltKind::Lazy | PltKind::LazyIbt if off < 16 => 1 + u64::from(off >= 6),
        // `jmp *slot` (6 bytes) then `push n` (5): pushed from offset 11.
        PltKind::Lazy => u64::from(off & 15 >= 11),
        // `endbr64` (4) then `push n` (5): pushed from offset 9.
        PltKind::LazyIbt => u64::from(off & 15 >= 9),
    };
    rsp.wrapping_add(8 + 8 * pushed)
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
    let ibt = section(b".plt.sec").is_some();
    let plt: Vec<PltSection> = [
        (
            &b".plt"[..],
            if ibt { PltKind::LazyIbt } else { PltKind::Lazy },
        ),
        (b".plt.sec", PltKind::Jump),
        (b".plt.got", PltKind::Jump),
    ]
    .into_iter()
    .filter_map(|(name, kind)| {
        let s = section(name)?;
        let start = s.sh_addr(endian);
        Some(PltSection {
            start,
            end: start.checked_add(s.sh_size(endian))?,
            kind,
        })
    })
    .collect();
    let mut bases = BaseAddresses::default();
    let eh = (|| {
        let (eh, hdr) = (section(b".eh_frame")?, section(b".eh_frame_hdr")?);
        if eh.sh_size(endian) > MAX_EH_FRAME || hdr.sh_size(endian) > MAX_EH_FRAME {
            return None;
        }
        let text = section(b".text").map_or(0, |s| s.sh_addr(endian));
        bases = BaseAddresses::default()
            .set_eh_frame_hdr(hdr.sh_addr(endian))
            .set_eh_frame(eh.sh_addr(endian))
            .set_text(text);
        Some((
            eh.data(endian, &cache).ok()?.to_vec(),
            hdr.data(endian, &cache).ok()?.to_vec(),
        ))
    })();
    if eh.is_none() && plt.is_empty() {
        return None;
    }
    Some(Cfi {
        eh,
        bases,
        bias: m.load_bias,
        plt,
    })
}

/// The value of a DWARF expression that computes a CFA (`.plt`'s), given
/// the registers; memory is read from the stack.
fn eval_cfa(expr: &[u8], regs: &Regs, r: &Reader) -> Option<u64> {
    let encoding = gimli::Encoding {
        address_size: 8,
        format: gimli::Format::Dwarf32,
        version: 4,
    };
    let mut ev = gimli::Expression(EndianSlice::new(expr, LittleEndian)).evaluation(encoding);
    let mut res = ev.evaluate().ok()?;
    // Each resumption answers one request; a CFA needs a few.
    for _ in 0..32 {
        res = match res {
            EvaluationResult::Complete => break,
            EvaluationResult::RequiresRegister { register, .. } => {
                let v = *regs.r.get(register.0 as usize)?;
                ev.resume_with_register(Value::Generic(v)).ok()?
            }
            EvaluationResult::RequiresMemory {
                address, size: 8, ..
            } => ev
                .resume_with_memory(Value::Generic(r.u64(address).ok()?))
                .ok()?,
            _ => return None,
        };
    }
    if !matches!(res, EvaluationResult::Complete) {
        return None;
    }
    match ev.as_result().first()?.location {
        Location::Address { address } => Some(address),
        _ => None,
    }
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

/// What a CFI row says at one address: the CFA, and the rules for the
/// return address and then the [`SAVED`] registers.
struct Rule {
    cfa: Cfa,
    regs: [Option<RegisterRule<usize>>; 7],
}

/// How the CFA is found: a register plus an offset, or a DWARF expression
/// (kept, since its value depends on the registers of each step).
enum Cfa {
    Register(u16, i64),
    Expression(Vec<u8>),
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
            let (eh_frame, hdr) = c.eh.as_ref()?;
            let eh = EhFrame::new(eh_frame, LittleEndian);
            let hdr = EhFrameHdr::new(hdr, LittleEndian).parse(&c.bases, 8).ok()?;
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
                CfaRule::RegisterAndOffset { register, offset } => {
                    Cfa::Register(register.0, *offset)
                }
                CfaRule::Expression(e) => Cfa::Expression(e.get(&eh).ok()?.0.slice().to_vec()),
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
        let via_cfi = cfi.as_ref().and_then(|c| {
            // A return address points after the call: look up the call.
            let lookup = if first { pc } else { pc.wrapping_sub(1) };
            let rule = self.rule(c, lookup)?;
            let cfa = match &rule.cfa {
                Cfa::Register(reg, off) => regs.r.get(*reg as usize)?.wrapping_add(*off as u64),
                Cfa::Expression(e) => eval_cfa(e, regs, r)?,
            };
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
        // A PLT stub the CFI does not describe: the return address is
        // on top of what the stub pushed. Only where a thread stopped: no
        // stub calls anything.
        let plt = cfi.as_ref().filter(|_| first).and_then(|c| {
            let fa = pc.wrapping_sub(c.bias);
            c.plt
                .iter()
                .find(|s| (s.start..s.end).contains(&fa))
                .map(|s| plt_cfa(s, fa, sp))
        });
        if let (None, Some(cfa)) = (via_cfi, plt) {
            next.r[RA as usize] = r.u64(cfa.wrapping_sub(8)).ok()?;
            next.r[RSP as usize] = cfa;
        } else if via_cfi.is_none() {
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
/// loaded lazily with addr2line; and the names of PLT stubs. Only the interpreter's module is also
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
    /// Per module, its PLT sections and `NAME@plt` by stub address.
    plt: RefCell<HashMap<PathBuf, Rc<PltNames>>>,
}

/// A module's PLT sections (remote start, end, stub size) and the name of
/// each stub, from the GOT slot it jumps through.
#[derive(Default)]
struct PltNames {
    sections: Vec<(u64, u64, u64)>,
    names: HashMap<u64, String>,
}

impl PltNames {
    fn of(py: &Interpreter, m: &Module) -> PltNames {
        let sections: Vec<(u64, u64, u64)> = py
            .code_sections(m)
            .into_iter()
            .filter_map(|s| {
                let size = match s.name.as_str() {
                    ".plt" | ".plt.sec" => 16,
                    ".plt.got" => 8,
                    _ => return None,
                };
                Some((s.addr.0, s.addr.0.saturating_add(s.size), size))
            })
            .collect();
        if sections.is_empty() {
            return PltNames::default();
        }
        let slots: HashMap<u64, String> = py
            .got_slots(m)
            .into_iter()
            .map(|g| (g.addr.0, g.name))
            .collect();
        let names = crate::callsites::plt_entries(py, m)
            .into_iter()
            .filter_map(|(slot, stub)| Some((stub.0, format!("{}@plt", slots.get(&slot)?))))
            .collect();
        PltNames { sections, names }
    }

    /// `NAME@plt` of the stub holding `addr`.
    fn name(&self, addr: u64) -> Option<String> {
        let &(_, _, size) = self
            .sections
            .iter()
            .find(|(start, end, _)| (*start..*end).contains(&addr))?;
        self.names.get(&(addr & !(size - 1))).cloned()
    }
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
            plt: RefCell::default(),
        }
    }

    /// `NAME@plt` when `addr` lies in a PLT stub of `m`.
    fn plt_name(&self, py: &Interpreter, m: &Module, addr: u64) -> Option<String> {
        let known = self.plt.borrow().get(&m.path).cloned();
        let names = known.unwrap_or_else(|| {
            let n = Rc::new(PltNames::of(py, m));
            self.plt.borrow_mut().insert(m.path.clone(), n.clone());
            n
        });
        names.name(addr)
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
            .map(|(s, _)| demangle(&s.name))
            .or_else(|| lines.plt_name(interp, m?, at)),
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
///
/// A thread caught as the evaluation loop starts a frame (before it links
/// the frame into the thread state) or ends one (after it unlinked it) has
/// one evaluation-loop frame more than the Python stack has entries: that
/// innermost one runs no frame yet, or no more, and stays a native frame,
/// so each Python frame still lands at its own loop.
pub fn merge(
    interp: &Interpreter,
    lines: &Lines,
    pcs: &[u64],
    python: Vec<Frame>,
    entries: &[bool],
) -> Vec<Frame> {
    let native: Vec<Symbolized> = pcs
        .iter()
        .enumerate()
        .map(|(i, &pc)| symbolize(interp, lines, pc, i == 0))
        .collect();
    let evals = native
        .iter()
        .filter(|s| s.name.as_deref().is_some_and(is_eval))
        .count();
    let calls = entries
        .iter()
        .enumerate()
        .filter(|&(i, &e)| e || i + 1 == entries.len())
        .count();
    let mut idle = if calls > 0 {
        evals.saturating_sub(calls)
    } else {
        0
    };
    let mut out = Vec::new();
    let mut py = python.into_iter().zip(entries.iter().copied()).peekable();
    for (s, &pc) in native.into_iter().zip(pcs) {
        let Symbolized {
            name,
            module,
            location,
        } = s;
        if name.as_deref().is_some_and(is_eval) && py.peek().is_some() {
            if idle == 0 {
                for (f, entry) in py.by_ref() {
                    out.push(f);
                    if entry {
                        break;
                    }
                }
                continue;
            }
            idle -= 1;
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

#[cfg(test)]
#[path = "native_tests.rs"]
mod tests;
