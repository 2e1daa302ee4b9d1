//! Do real call sites to a function exist in a module's code? A hook on the
//! entry of `PyEval_SaveThread` only fires if something calls it: LTO builds
//! inline some such functions into every caller and keep an unused copy.
//!
//! The module's executable sections are scanned for `call rel32` / `jmp
//! rel32` (a tail call) to the function or to its PLT entry, and for `call
//! *slot(%rip)` / `jmp *slot(%rip)` through its GOT slot (`-fno-plt`). Each
//! candidate is verified with capstone by decoding its enclosing function
//! from the start: a match of bytes is only a call if an instruction begins
//! there. Candidates in code without a known enclosing function are counted
//! as unverified.

use capstone::arch::x86::ArchMode;
use capstone::arch::BuildsCapstone;
use capstone::Capstone;
use serde::Serialize;
use std::collections::HashMap;
use symbols::{CodeSection, GotKind, Interpreter, Module, RemoteAddr};

/// Why call sites could not be looked for.
#[derive(Debug, thiserror::Error)]
pub enum CallSiteError {
    #[error("symbol {0} not found")]
    NoSymbol(String),
    #[error("cannot read the code of {module}: {source}")]
    Read {
        module: String,
        #[source]
        source: symbols::Error,
    },
    #[error("capstone: {0}")]
    Capstone(String),
}

/// How a call site reaches the function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// `call rel32` straight to the function.
    Direct,
    /// `call rel32` to the function's PLT entry.
    Plt,
    /// `call *slot(%rip)` through the function's GOT slot.
    Got,
}

/// One verified call site.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CallSite {
    pub addr: RemoteAddr,
    pub via: Via,
    /// A `jmp` (tail call) rather than a `call`.
    pub tail: bool,
    /// The function the call is in.
    pub caller: String,
}

/// What was found for one function in one module.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CallSites {
    pub function: String,
    pub module: String,
    pub target: RemoteAddr,
    pub plt_entry: Option<RemoteAddr>,
    pub got_slot: Option<RemoteAddr>,
    pub sites: Vec<CallSite>,
    /// Byte patterns that look like calls in code where no enclosing
    /// function is known, so they could not be decoded to be sure.
    pub unverified: usize,
}

impl CallSites {
    /// Verified calls (not tail jumps).
    pub fn calls(&self) -> usize {
        self.sites.iter().filter(|s| !s.tail).count()
    }
    /// No verified site and no plausible one either: every caller inlined
    /// the function (or nothing calls it).
    pub fn inlined_away(&self) -> bool {
        self.sites.is_empty() && self.unverified == 0
    }
}

fn capstone() -> Result<Capstone, CallSiteError> {
    Capstone::new()
        .x86()
        .mode(ArchMode::Mode64)
        .build()
        .map_err(|e| CallSiteError::Capstone(e.to_string()))
}

/// With a verify limit, larger enclosing functions are not decoded.
pub const MAX_DECODE: u64 = 4096;

/// `jmp *disp(%rip)` (`ff 25`) destination at offset `i` of `code` (at
/// address `at`), or a `call *disp(%rip)` (`ff 15`).
fn rip_slot(code: &[u8], i: usize, at: u64) -> Option<(u64, bool)> {
    let b = code.get(i..i + 6)?;
    if b[0] != 0xff || !matches!(b[1], 0x15 | 0x25) {
        return None;
    }
    let disp = i32::from_le_bytes([b[2], b[3], b[4], b[5]]) as i64 as u64;
    Some(((at + 6).wrapping_add(disp), b[1] == 0x25))
}

/// PLT entries by the GOT slot their `jmp *slot(%rip)` goes through. Each
/// entry is 16 bytes in `.plt` and `.plt.sec` (8 in `.plt.got`) and jumps
/// through its slot (`ff 25`, after `endbr64; bnd` with IBT).
pub(crate) fn plt_entries(py: &Interpreter, module: &Module) -> HashMap<u64, RemoteAddr> {
    let mut out = HashMap::new();
    for sec in py.code_sections(module) {
        let align = match sec.name.as_str() {
            ".plt" | ".plt.sec" => 16,
            ".plt.got" => 8,
            _ => continue,
        };
        let Ok(code) = py.read_module_bytes(sec.addr, sec.size as usize) else {
            continue;
        };
        for i in 0..code.len() {
            let at = sec.addr.0 + i as u64;
            if let Some((slot, true)) = rip_slot(&code, i, at) {
                out.entry(slot).or_insert(RemoteAddr(at & !(align - 1)));
            }
        }
    }
    out
}

/// The addresses where instructions begin when `code` (at `start`) is
/// decoded from its first byte, up to `until`.
fn instruction_starts(cs: &Capstone, code: &[u8], start: u64, until: u64) -> Vec<u64> {
    let mut out = Vec::new();
    let Ok(mut it) = cs.disasm_iter(code, start) else {
        return out;
    };
    while let Some(i) = it.next() {
        let a = i.address();
        if a > until {
            break;
        }
        out.push(a);
    }
    out
}

/// Bytes of code read per step: below malloc's mmap threshold, so the
/// buffer is reused instead of faulting in fresh pages for a whole `.text`.
const CHUNK: u64 = 64 << 10;

/// `(address, function index, via, tail)` of every byte pattern in `sec`
/// that calls or jumps to one of the targets, in address order.
fn scan(
    py: &Interpreter,
    sec: &CodeSection,
    rel_targets: &[(u64, usize, Via)],
    got_targets: &[(u64, usize)],
) -> Result<Vec<(u64, usize, Via, bool)>, RemoteAddr> {
    let mut candidates = Vec::new();
    let end = sec.addr.0 + sec.size;
    let mut start = sec.addr.0;
    while start < end {
        // Each step owns positions [start, start + CHUNK) and reads 5 bytes
        // more for the operands of an instruction at its last byte.
        let own = CHUNK.min(end - start) as usize;
        let len = (CHUNK + 5).min(end - start) as usize;
        let code = py
            .read_module_bytes(RemoteAddr(start), len)
            .map_err(|_| RemoteAddr(start))?;
        // `call`/`jmp rel32` (e8/e9): the bytes are found with SIMD, each
        // then checked for a destination we look for.
        for i in memchr::memchr2_iter(0xe8, 0xe9, &code[..own]) {
            if i + 5 > code.len() {
                break;
            }
            let at = start + i as u64;
            let rel = i32::from_le_bytes([code[i + 1], code[i + 2], code[i + 3], code[i + 4]]);
            let dest = (at + 5).wrapping_add(rel as i64 as u64);
            if let Some(&(_, k, via)) = rel_targets.iter().find(|t| t.0 == dest) {
                candidates.push((at, k, via, code[i] == 0xe9));
            }
        }
        // `call`/`jmp *slot(%rip)` (ff 15/25), only for GLOB_DAT slots.
        if !got_targets.is_empty() {
            for i in memchr::memchr_iter(0xff, &code[..own]) {
                let at = start + i as u64;
                if let Some((dest, tail)) = rip_slot(&code, i, at) {
                    if let Some(&(_, k)) = got_targets.iter().find(|t| t.0 == dest) {
                        candidates.push((at, k, Via::Got, tail));
                    }
                }
            }
        }
        start += own as u64;
    }
    candidates.sort_by_key(|c| c.0);
    Ok(candidates)
}

/// Finds the call sites of `function` (a symbol of the interpreter's module)
/// in `module`'s code.
pub fn find_call_sites(
    py: &Interpreter,
    module: &Module,
    function: &str,
) -> Result<CallSites, CallSiteError> {
    find_many(py, module, &[function], None)
        .pop()
        .unwrap_or_else(|| Err(CallSiteError::NoSymbol(function.to_string())))
}

/// Where calls to each of `functions` go (the function, its PLT entry),
/// or which GOT slot they read; and the result to fill in for each.
#[allow(clippy::type_complexity)]
fn targets(
    py: &Interpreter,
    module: &Module,
    functions: &[&str],
    slots: &[symbols::GotSlot],
    plts: &HashMap<u64, RemoteAddr>,
) -> (
    Vec<Result<CallSites, CallSiteError>>,
    Vec<(u64, usize, Via)>,
    Vec<(u64, usize)>,
) {
    let mut results: Vec<Result<CallSites, CallSiteError>> = Vec::new();
    // Destination address -> (function index, how).
    // A handful of entries: a linear search beats hashing on this hot path.
    let mut rel_targets: Vec<(u64, usize, Via)> = Vec::new();
    let mut got_targets: Vec<(u64, usize)> = Vec::new();
    for (k, &function) in functions.iter().enumerate() {
        let Some(sym) = py.symbol(function) else {
            results.push(Err(CallSiteError::NoSymbol(function.to_string())));
            continue;
        };
        let jump_slot = slots
            .iter()
            .find(|g| g.name == function && g.kind == GotKind::JumpSlot)
            .map(|g| g.addr);
        let plt = jump_slot.and_then(|s| plts.get(&s.0).copied());
        // Only -fno-plt code calls through a GLOB_DAT slot.
        let got_slot = slots
            .iter()
            .find(|g| g.name == function && g.kind == GotKind::GlobDat)
            .map(|g| g.addr);
        rel_targets.push((sym.addr.0, k, Via::Direct));
        if let Some(p) = plt {
            rel_targets.push((p.0, k, Via::Plt));
        }
        if let Some(g) = got_slot {
            got_targets.push((g.0, k));
        }
        results.push(Ok(CallSites {
            function: function.to_string(),
            module: module.file_name(),
            target: sym.addr,
            plt_entry: plt,
            got_slot,
            sites: Vec::new(),
            unverified: 0,
        }));
    }

    (results, rel_targets, got_targets)
}

/// [`find_call_sites`] for several functions in one pass over the code.
///
/// Decoding is what costs (capstone decodes about a million instructions a
/// second, and a call may sit deep in a 13 KB function). With
/// `verify_limit: Some(n)`, at most `n` sites per function are verified,
/// only in enclosing functions of up to [`MAX_DECODE`] bytes, and the other
/// byte matches are counted in [`CallSites::unverified`]: enough to know
/// that real calls exist, fast enough for `pyattach info`. `None` decodes
/// all.
pub fn find_many(
    py: &Interpreter,
    module: &Module,
    functions: &[&str],
    verify_limit: Option<usize>,
) -> Vec<Result<CallSites, CallSiteError>> {
    let cs = match capstone() {
        Ok(cs) => cs,
        Err(e) => {
            let msg = e.to_string();
            return functions
                .iter()
                .map(|_| Err(CallSiteError::Capstone(msg.clone())))
                .collect();
        }
    };
    let slots = py.got_slots(module);
    let plts = if slots.iter().any(|g| functions.contains(&g.name.as_str())) {
        plt_entries(py, module)
    } else {
        HashMap::new()
    };
    let (mut results, rel_targets, got_targets) = targets(py, module, functions, &slots, &plts);
    for sec in py.code_sections(module) {
        if sec.name.starts_with(".plt") {
            continue;
        }
        let base = sec.addr.0;
        let candidates = match scan(py, &sec, &rel_targets, &got_targets) {
            Ok(c) => c,
            Err(source) => {
                for r in results.iter_mut() {
                    if r.is_ok() {
                        *r = Err(CallSiteError::Read {
                            module: module.file_name(),
                            source: symbols::Error::NotInFile(source),
                        });
                    }
                }
                return results;
            }
        };
        // Decode each enclosing function once, from its start. With a
        // limit, functions above MAX_DECODE bytes are not decoded and
        // sites past the limit are not even located: both stay unverified.
        let mut decoded: HashMap<u64, Vec<u64>> = HashMap::new();
        for &(at, k, via, tail) in &candidates {
            let Ok(out) = &mut results[k] else { continue };
            if verify_limit.is_some_and(|n| out.sites.len() >= n) {
                out.unverified += 1;
                continue;
            }
            let caller = match py.symbolize(RemoteAddr(at)) {
                Some((caller, _)) if caller.addr.0 >= base && caller.addr.0 <= at => caller,
                _ => {
                    out.unverified += 1;
                    continue;
                }
            };
            if verify_limit.is_some() && caller.size > MAX_DECODE {
                out.unverified += 1;
                continue;
            }
            let starts = decoded.entry(caller.addr.0).or_insert_with(|| {
                let end = caller.addr.0.saturating_add(caller.size.max(1));
                let last = candidates
                    .iter()
                    .filter(|c| c.0 >= caller.addr.0 && c.0 < end)
                    .map(|c| c.0)
                    .max()
                    .unwrap_or(at)
                    .max(at);
                let len = (last + 16).min(base + sec.size) - caller.addr.0;
                match py.read_module_bytes(caller.addr, len as usize) {
                    Ok(code) => instruction_starts(&cs, &code, caller.addr.0, last),
                    Err(_) => Vec::new(),
                }
            });
            if starts.binary_search(&at).is_ok() {
                out.sites.push(CallSite {
                    addr: RemoteAddr(at),
                    via,
                    tail,
                    caller: caller.name,
                });
            } else if starts.is_empty() {
                out.unverified += 1;
            }
        }
        for out in results.iter_mut().flatten() {
            out.sites.sort_by_key(|s| s.addr);
        }
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_rip_relative_jumps() {
        // ff 25 disp32: jmp *disp(%rip), relative to the next instruction.
        let jmp = [0xff, 0x25, 0x10, 0, 0, 0];
        assert_eq!(rip_slot(&jmp, 0, 0x1000), Some((0x1016, true)));
        assert_eq!(
            rip_slot(&[0xff, 0x15, 0xfa, 0xff, 0xff, 0xff], 0, 0x1000),
            Some((0x1000, false))
        );
        assert_eq!(rip_slot(&jmp[..5], 0, 0x1000), None);
    }
}

#[cfg(test)]
mod live {
    use super::*;
    use std::io::{Read, Seek, SeekFrom};
    use symbols::{discover, DiscoverOptions};
    use testsupport::{pythons, Target};

    #[test]
    fn safe_points_have_real_calls_on_every_interpreter() {
        for p in pythons() {
            let t = Target::python(&p, "sleeper.py", &[]);
            let py = discover(t.pid(), &DiscoverOptions::default()).unwrap();
            let mut mem = std::fs::File::open(format!("/proc/{}/mem", t.pid())).unwrap();
            for f in [
                "PyEval_SaveThread",
                "PyEval_RestoreThread",
                "PyGILState_Ensure",
            ] {
                let cs = find_call_sites(&py, &py.module, f).unwrap();
                eprintln!(
                    "{} {f}: {} calls, {} sites, plt {:?}, {} unverified",
                    p.id,
                    cs.calls(),
                    cs.sites.len(),
                    cs.plt_entry,
                    cs.unverified
                );
                assert!(cs.calls() > 0, "{}: no call to {f}", p.id);
                assert!(!cs.inlined_away());
                // Every site holds, in the live process, a call or jump whose
                // destination is the function or its PLT entry / GOT slot.
                for s in &cs.sites {
                    let mut b = [0u8; 6];
                    mem.seek(SeekFrom::Start(s.addr.0)).unwrap();
                    mem.read_exact(&mut b).unwrap();
                    let (len, rel) = match b[0] {
                        0xe8 | 0xe9 => (5, i32::from_le_bytes([b[1], b[2], b[3], b[4]])),
                        _ => (6, i32::from_le_bytes([b[2], b[3], b[4], b[5]])),
                    };
                    let dest = RemoteAddr((s.addr.0 + len).wrapping_add(rel as i64 as u64));
                    let want = match s.via {
                        Via::Direct => Some(cs.target),
                        Via::Plt => cs.plt_entry,
                        Via::Got => cs.got_slot,
                    };
                    assert_eq!(Some(dest), want, "{}: {f} site {}", p.id, s.addr);
                }
            }
            assert!(matches!(
                find_call_sites(&py, &py.module, "no_such_function_here"),
                Err(CallSiteError::NoSymbol(_))
            ));
        }
    }
}
