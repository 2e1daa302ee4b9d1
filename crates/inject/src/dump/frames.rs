//! A thread's Python frames: `PyFrameObject` (≤3.10) or
//! `_PyInterpreterFrame` (3.11+) chains, their code objects and lines;
//! every thread walked a level at a time with batched reads.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use symbols::offsets::consts;

use super::layout::{Layout, Style};
use super::linetable;
use super::locals;
use super::mem::{le_u32, le_u64};
use super::objects::Objects;
use super::{Frame, FrameKind};

/// A decoded code object.
pub(super) struct Code {
    /// With `--locals`: the names of its local slots.
    pub(super) locals: Option<Vec<locals::LocalName>>,
    pub(super) name: String,
    pub(super) qualname: Option<String>,
    pub(super) filename: String,
    pub(super) first_line: i32,
    pub(super) table: Vec<u8>,
}

pub(super) struct Walker<'a> {
    pub(super) l: Layout,
    pub(super) locals: Option<locals::LocalsLayout>,
    pub(super) obj: Objects<'a>,
    pub(super) codes: HashMap<u64, Option<Rc<Code>>>,
    pub(super) max_depth: usize,
}

impl Walker<'_> {
    pub(super) fn code(&mut self, addr: u64) -> Option<Rc<Code>> {
        if let Some(c) = self.codes.get(&addr) {
            return c.clone();
        }
        let c = self.read_code(addr).ok().map(Rc::new);
        self.codes.insert(addr, c.clone());
        c
    }

    pub(super) fn read_code(&self, addr: u64) -> Result<Code, String> {
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
    pub(super) fn first_frame(&self, f: u64) -> Result<u64, String> {
        match self.l.cframe_current {
            Some(cur) if f != 0 => self.obj.r.u64(f.wrapping_add(cur)),
            _ => Ok(f),
        }
    }

    /// Advances `w` by one frame (or past one shim frame).
    pub(super) fn step(&mut self, w: &mut FrameWalk) {
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
        let mut code_addr = le_u64(&b, self.l.frame_code as usize);
        if self.l.minor >= (3, 14) {
            // 3.14+: `f_executable` is a `_PyStackRef`, whose low bits are
            // tags (a deferred reference), not part of the address.
            code_addr &= !7;
        }
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
        w.addrs.push(f);
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
    pub(super) fn walk_all(&mut self, walks: &mut [FrameWalk]) {
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
pub(super) struct FrameWalk {
    pub(super) f: u64,
    pub(super) out: Vec<Frame>,
    /// Each frame's address in the target.
    pub(super) addrs: Vec<u64>,
    /// For each frame: the first one its C evaluation-loop call runs (for
    /// `--native`).
    pub(super) entries: Vec<bool>,
    pub(super) seen: HashSet<u64>,
    pub(super) truncated: Option<String>,
    pub(super) done: bool,
}

impl FrameWalk {
    pub(super) fn new(f: Result<u64, String>) -> FrameWalk {
        let (f, truncated) = match f {
            Ok(f) => (f, None),
            Err(e) => (0, Some(e)),
        };
        FrameWalk {
            f,
            out: Vec::new(),
            addrs: Vec::new(),
            entries: Vec::new(),
            seen: HashSet::new(),
            truncated,
            done: f == 0,
        }
    }

    pub(super) fn stop(&mut self, why: String) {
        self.truncated = Some(why);
        self.done = true;
    }
}
