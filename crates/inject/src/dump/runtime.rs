//! Where the walk starts: the offsets of this interpreter, `_PyRuntime` or
//! `interp_head`, the GIL's state, and `threading._active`.

use std::collections::HashMap;
use symbols::offsets::{DebugOffsetsError, Field, Offsets, DEBUG_OFFSETS_LEN};

use symbols::Interpreter;

use super::mem::{Memory, Reader};
use super::names;
use super::objects::Objects;
use super::DumpError;

/// The offsets for this interpreter: `_Py_DebugOffsets` from the target's
/// memory on 3.13+ (else from the file), over the version's table.
pub(super) fn load_offsets(interp: &Interpreter, mem: &dyn Memory) -> Result<Offsets, DumpError> {
    let v = &interp.version;
    let unsupported = |why: &str| DumpError::Unsupported {
        version: format!("{}.{}.{}", v.major, v.minor, v.micro),
        why: why.to_string(),
    };
    // From 3.13 a debug build describes its own layout (`_Py_DebugOffsets`),
    // and the rest matches the release build's unless `Py_TRACE_REFS` grew
    // every object's header (offsets_dwarf.rs checks Debian's).
    if interp.build.debug_build
        && ((v.major, v.minor) < (3, 13) || interp.symbol("_Py_PrintReferences").is_some())
    {
        return Err(unsupported("debug builds have other struct layouts"));
    }
    if interp.build.free_threaded {
        return Err(unsupported(
            "free-threaded builds (Py_GIL_DISABLED) have other struct layouts",
        ));
    }
    if v.is_newer_than_known() {
        // Its `_Py_DebugOffsets` may parse, but what they leave out (dict
        // keys, code objects' line tables, ...) needs rows of its own.
        return Err(unsupported(&format!(
            "pyattach knows the struct layouts of 2.7 and 3.6 to 3.15, not those of {}.{} \
             (its _Py_DebugOffsets layout and the per-version rows)",
            v.major, v.minor
        )));
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
                    // The table is for the default build: never use it
                    // for a free-threaded one.
                    Err(e @ DebugOffsetsError::FreeThreaded) => {
                        return Err(unsupported(&e.to_string()))
                    }
                    Err(e) => {
                        if Offsets::for_version(v.major, v.minor).is_none() {
                            return Err(unsupported(&e.to_string()));
                        }
                    }
                }
            }
        }
    }
    let mut o = Offsets::for_version(v.major, v.minor)
        .ok_or_else(|| unsupported("no struct offsets for this version"))?;
    if (v.major, v.minor) == (3, 7) && v.micro < 4 {
        // 3.7.4 grew `_PyRuntime.ceval` (py-spy's bindings record 1392
        // rather than 1480 for `gilstate.tstate_current` before it); the
        // table is 3.7.4+'s, and no DWARF of 3.7.0–3.7.3 checks another
        // value, so the GIL is not reported there rather than guessed.
        o.remove(Field::RuntimeGil);
        o.remove(Field::RuntimeTstateCurrent);
    }
    Ok(o)
}

/// The addresses of the globals the walk starts from, resolved through the
/// symbol chain before the threads are stopped (a first `.symtab` lookup
/// parses the whole table).
pub(super) struct Addrs {
    /// `_PyRuntime` (3.7+).
    pub(super) runtime: Option<u64>,
    /// The `interp_head` static (2.7, 3.6), or why it is unknown.
    pub(super) interp_head: Result<u64, String>,
    /// `_PyThreadState_Current` (2.7, 3.6).
    pub(super) tstate_current: Option<u64>,
    /// The `gil_locked` static (3.6).
    pub(super) gil_locked: Option<u64>,
    /// Code ranges of the functions that block taking the GIL.
    pub(super) gil_waits: Vec<(u64, u64)>,
    /// `sizeof(Py_UNICODE)` of a 2.7 build, from its exported names.
    pub(super) py2_unicode: Option<u64>,
}

/// `gil_waits` only when some thread is blocked in a futex: `take_gil` is
/// static, and its lookup parses the whole `.symtab` (milliseconds).
pub(super) fn addrs(interp: &Interpreter, o: &Offsets, gil_waits: bool) -> Addrs {
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
        // 2.7's GIL is a plain lock: no `gil_locked` (a static, whose
        // lookup would read the whole `.symtab` for nothing).
        gil_locked: if old && o.major == 3 {
            sym("gil_locked")
        } else {
            None
        },
        gil_waits: ["take_gil", "PyEval_RestoreThread", "PyEval_AcquireThread"]
            .iter()
            .filter(|_| gil_waits)
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

/// The address of `interp_head` (2.7, 3.6): from the code of the exported
/// `PyInterpreterState_Head` (a `.dynsym` lookup and 8 bytes of the file),
/// else through the symbol chain (`interp_head` is static: its lookup reads
/// the whole `.symtab` or a debug file).
pub(super) fn interp_head_addr(interp: &Interpreter) -> Result<u64, String> {
    if let Some(addr) = interp_head_from_code(interp) {
        return Ok(addr);
    }
    if let Some(s) = interp.symbol("interp_head") {
        return Ok(s.addr.0);
    }
    Err("neither interp_head nor the code of PyInterpreterState_Head gives it".into())
}

/// `PyInterpreterState_Head` is `return interp_head;`: on x86_64
/// `48 8b 05 <rel32>  mov rax, [rip+rel32]` then `c3  ret`.
fn interp_head_from_code(interp: &Interpreter) -> Option<u64> {
    let f = interp.symbol("PyInterpreterState_Head")?;
    let code = interp.read_module_bytes(f.addr, 8).ok()?;
    if code.len() == 8 && code[..3] == [0x48, 0x8b, 0x05] && code[7] == 0xc3 {
        let rel = i32::from_le_bytes(code[3..7].try_into().ok()?) as i64;
        return Some((f.addr.0 as i64).wrapping_add(7).wrapping_add(rel) as u64);
    }
    None
}

/// ident → name of the threads in `threading._active` of the first
/// interpreter, when it can be found.
///
/// Read before the freeze: names change rarely, and reading each Thread's
/// attributes costs a few page reads per thread that would otherwise
/// lengthen the pause (milliseconds with 200 threads). A thread started
/// in between is shown with its kernel name.
/// The `threading` names of every interpreter's threads, by interpreter
/// (its address) and ident: each interpreter has its own `threading`, and
/// an ident may stand in several (a thread running a subinterpreter).
pub(super) fn thread_names(
    o: &Offsets,
    a: &Addrs,
    mem: &dyn Memory,
) -> HashMap<(u64, u64), String> {
    let names = || -> Option<HashMap<(u64, u64), String>> {
        let l = names::DictLayout::new(o)?;
        let mut objs = Objects::new(Reader::new(mem), o).ok()?;
        if let Some(n) = a.py2_unicode {
            objs.set_unicode_char_size(n);
        }
        let modules_at = o.get(Field::InterpModules)?;
        let next_at = o.get(Field::InterpNext)?;
        let mut out = HashMap::new();
        let mut seen = std::collections::HashSet::new();
        let mut ip = interpreters_head(a, o, &objs.r).ok()?;
        while ip != 0 && seen.len() < MAX_INTERPRETERS && seen.insert(ip) {
            if let Ok(modules) = objs.r.u64(ip.wrapping_add(modules_at)) {
                if let Ok(Some(active)) = names::active_dict(&l, &objs, modules) {
                    let names = names::thread_names(&l, &objs, active);
                    out.extend(names.into_iter().map(|(id, n)| ((ip, id), n)));
                }
            }
            ip = objs.r.u64(ip.wrapping_add(next_at)).unwrap_or(0);
        }
        Some(out)
    };
    names().unwrap_or_default()
}

/// Interpreters followed at most (more is a loop or garbage).
pub(super) const MAX_INTERPRETERS: usize = 256;

/// Where the interpreter list starts: `_PyRuntime.interpreters.head` (3.7+)
/// or `interp_head` (2.7, 3.6).
pub(super) fn interpreters_head(a: &Addrs, o: &Offsets, r: &Reader) -> Result<u64, String> {
    if let Some(off) = o.get(Field::RuntimeInterpretersHead) {
        let rt = a.runtime.ok_or("the _PyRuntime symbol is missing")?;
        return r.u64(rt.wrapping_add(off));
    }
    r.u64(a.interp_head.clone()?)
}

/// Whether the GIL has not been created yet: Python 3.6 makes it when the
/// process starts its first thread (`PyEval_InitThreads`), and its
/// `gil_locked` is -1 until then; the one thread runs without it.
pub(super) fn gil_absent(a: &Addrs, r: &Reader) -> bool {
    a.gil_locked
        .and_then(|s| r.i32(s).ok())
        .is_some_and(|v| v < 0)
}

/// The thread state holding the GIL (0 if none) and whether the GIL is
/// locked, for the versions with one process-wide answer (≤3.11).
pub(super) fn global_gil(a: &Addrs, o: &Offsets, r: &Reader) -> (Option<u64>, Option<bool>) {
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
