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
use symbols::{Interpreter, Module, RemoteAddr};

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

/// Parses the `[rip ± 0x…]` memory operand of capstone's Intel syntax.
fn rip_target(insn_end: u64, op: &str) -> Option<u64> {
    let i = op.find("[rip ")?;
    let rest = &op[i + 5..];
    let (neg, rest) = match rest.as_bytes().first()? {
        b'+' => (false, &rest[1..]),
        b'-' => (true, &rest[1..]),
        _ => return None,
    };
    let hex = rest.trim_start().strip_prefix("0x")?;
    let end = hex.find(']')?;
    let d = u64::from_str_radix(&hex[..end], 16).ok()?;
    Some(if neg {
        insn_end.wrapping_sub(d)
    } else {
        insn_end.wrapping_add(d)
    })
}

/// The PLT entry whose `jmp *slot(%rip)` goes through `slot`.
fn plt_entry(
    py: &Interpreter,
    module: &Module,
    cs: &Capstone,
    slot: RemoteAddr,
) -> Option<RemoteAddr> {
    for sec in py.code_sections(module) {
        let align = match sec.name.as_str() {
            ".plt" | ".plt.sec" => 16,
            ".plt.got" => 8,
            _ => continue,
        };
        let bytes = py.read_module_bytes(sec.addr, sec.size as usize).ok()?;
        let insns = cs.disasm_all(&bytes, sec.addr.0).ok()?;
        for i in insns.iter() {
            if i.mnemonic() != Some("jmp") {
                continue;
            }
            let end = i.address() + i.len() as u64;
            if rip_target(end, i.op_str().unwrap_or("")) == Some(slot.0) {
                return Some(RemoteAddr(i.address() & !(align - 1)));
            }
        }
    }
    None
}

/// Whether an instruction begins at `at` when `code` (starting at `start`)
/// is decoded from its first byte.
fn starts_instruction(cs: &Capstone, code: &[u8], start: u64, at: u64) -> bool {
    let Ok(mut it) = cs.disasm_iter(code, start) else {
        return false;
    };
    while let Some(i) = it.next() {
        let a = i.address();
        if a == at {
            return true;
        }
        if a > at {
            return false;
        }
    }
    false
}

/// Finds the call sites of `function` (a symbol of the interpreter's module)
/// in `module`'s code.
pub fn find_call_sites(
    py: &Interpreter,
    module: &Module,
    function: &str,
) -> Result<CallSites, CallSiteError> {
    let sym = py
        .symbol(function)
        .ok_or_else(|| CallSiteError::NoSymbol(function.to_string()))?;
    let cs = capstone()?;
    let got_slot = py
        .got_slots(module)
        .into_iter()
        .find(|(n, _)| n == function)
        .map(|(_, a)| a);
    let plt = got_slot.and_then(|s| plt_entry(py, module, &cs, s));
    let mut out = CallSites {
        function: function.to_string(),
        module: module.file_name(),
        target: sym.addr,
        plt_entry: plt,
        got_slot,
        sites: Vec::new(),
        unverified: 0,
    };
    for sec in py.code_sections(module) {
        if sec.name.starts_with(".plt") {
            continue;
        }
        let code = py
            .read_module_bytes(sec.addr, sec.size as usize)
            .map_err(|source| CallSiteError::Read {
                module: module.file_name(),
                source,
            })?;
        let base = sec.addr.0;
        let mut i = 0usize;
        while i + 5 <= code.len() {
            let at = base + i as u64;
            let rel = |o: usize| {
                i32::from_le_bytes([code[o], code[o + 1], code[o + 2], code[o + 3]]) as i64 as u64
            };
            let hit = match code[i] {
                op @ (0xe8 | 0xe9) => {
                    let dest = RemoteAddr((at + 5).wrapping_add(rel(i + 1)));
                    let via = if dest == sym.addr {
                        Some(Via::Direct)
                    } else if Some(dest) == plt {
                        Some(Via::Plt)
                    } else {
                        None
                    };
                    via.map(|v| (v, op == 0xe9))
                }
                0xff if i + 6 <= code.len() && matches!(code[i + 1], 0x15 | 0x25) => {
                    let dest = RemoteAddr((at + 6).wrapping_add(rel(i + 2)));
                    (Some(dest) == got_slot).then_some((Via::Got, code[i + 1] == 0x25))
                }
                _ => None,
            };
            if let Some((via, tail)) = hit {
                match py.symbolize(RemoteAddr(at)) {
                    Some((caller, _)) if caller.addr.0 >= base => {
                        let from = (caller.addr.0 - base) as usize;
                        let to = (i + 16).min(code.len());
                        if from <= i && starts_instruction(&cs, &code[from..to], caller.addr.0, at)
                        {
                            out.sites.push(CallSite {
                                addr: RemoteAddr(at),
                                via,
                                tail,
                                caller: caller.name,
                            });
                        }
                    }
                    _ => out.unverified += 1,
                }
            }
            i += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rip_operands() {
        assert_eq!(rip_target(0x1000, "qword ptr [rip + 0x2fe2]"), Some(0x3fe2));
        assert_eq!(rip_target(0x1000, "qword ptr [rip - 0x10]"), Some(0xff0));
        assert_eq!(rip_target(0x1000, "qword ptr [rax + 8]"), None);
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
