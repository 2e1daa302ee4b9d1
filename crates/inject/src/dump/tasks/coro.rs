//! The coroutine stack of each task: the frame of its coroutine, then,
//! while that is suspended in an `await`, the object on top of the frame's
//! value stack (what `cr_await` shows, as `_PyGen_yf` finds it), and so on
//! down to the future it waits on. Walked a level at a time over all
//! tasks, each level's objects loaded with batched reads.

use std::collections::HashSet;

use symbols::offsets::{Field, Offsets};

use super::super::frames::FrameWalk;
use super::super::layout::need;
use super::super::Frame;
use super::{Reading, ThreadFrames, MAX_CHAIN};

/// Where a generator's frame and its stack top are.
pub(super) enum Gen {
    /// ≤3.10: `gi_frame` points at a `PyFrameObject`.
    Object {
        gi_frame: u64,
        back: u64,
        lasti: u64,
        /// ≤3.9: `f_stacktop`; 3.10: `(f_stackdepth, f_valuestack)`.
        top: Top,
    },
    /// 3.11+: the `_PyInterpreterFrame` is inside the generator.
    Inline {
        iframe: u64,
        frame_state: u64,
        /// 3.11–3.13: `stacktop`; 3.14+: `stackpointer`.
        top: Top,
    },
}

/// Where the top of a frame's value stack is.
pub(super) enum Top {
    /// A pointer just above it (`f_stacktop`, `stackpointer`).
    Pointer(u64),
    /// A depth and a pointer to the stack's base (3.10).
    Depth(u64, u64),
    /// A depth over the frame's own `localsplus` (3.11–3.13).
    Inline(u64, u64),
}

impl Gen {
    pub(super) fn new(o: &Offsets) -> Result<Gen, String> {
        let v = (o.major, o.minor);
        Ok(if v <= (3, 10) {
            Gen::Object {
                gi_frame: need(o, Field::GenFrame)?,
                back: need(o, Field::FrameBack)?,
                lasti: need(o, Field::FrameLasti)?,
                top: if v <= (3, 9) {
                    Top::Pointer(need(o, Field::FrameStacktop)?)
                } else {
                    Top::Depth(
                        need(o, Field::FrameStackdepth)?,
                        need(o, Field::FrameValuestack)?,
                    )
                },
            }
        } else {
            Gen::Inline {
                iframe: need(o, Field::GenIframe)?,
                frame_state: need(o, Field::GenFrameState)?,
                top: if v <= (3, 13) {
                    Top::Inline(
                        need(o, Field::IframeStacktop)?,
                        need(o, Field::IframeLocalsplus)?,
                    )
                } else {
                    Top::Pointer(need(o, Field::IframeStackpointer)?)
                },
            }
        })
    }
}

/// How far a generator got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum GenState {
    Created,
    Suspended,
    Running,
}

/// What a generator's `gi_frame_state` means in version `v`; `None` once
/// it finished.
pub(super) fn gen_state(v: (u32, u32), s: i8) -> Option<GenState> {
    // 3.11–3.12: created -2, suspended -1, running 0, completed 1,
    // cleared 4. 3.13–3.14: created -3, suspended -2 or -1 (in a
    // `yield from`), then the same. 3.15: created 0, suspended 1 to 3,
    // running 4, cleared 5.
    let (created, suspended, running) = match v {
        (3, 11 | 12) => (-2, -1..=-1, 0),
        (3, 13 | 14) => (-3, -2..=-1, 0),
        _ => (0, 1..=3, 4),
    };
    match s {
        s if s == created => Some(GenState::Created),
        s if suspended.contains(&s) => Some(GenState::Suspended),
        s if s == running => Some(GenState::Running),
        _ => None,
    }
}

/// One task's coroutine chain being walked.
struct CoroWalk {
    obj: u64,
    out: Vec<Frame>,
    seen: HashSet<u64>,
    truncated: Option<String>,
    done: bool,
}

impl Reading<'_, '_> {
    /// Loads the pages of the generators `coros` and (≤3.10) their frames.
    fn prefetch_gens(&self, coros: &[u64]) {
        let r = self.r();
        let frame_len = self.w.l.frame_len;
        match self.l.gen {
            Gen::Object { gi_frame, .. } => {
                r.prefetch(
                    &coros
                        .iter()
                        .map(|&c| (c, gi_frame as usize + 8))
                        .collect::<Vec<_>>(),
                );
                let frames: Vec<(u64, usize)> = coros
                    .iter()
                    .filter_map(|&c| r.u64(c.wrapping_add(gi_frame)).ok())
                    .map(|f| (f, frame_len))
                    .collect();
                r.prefetch(&frames);
            }
            Gen::Inline { iframe, .. } => {
                let len = iframe as usize + frame_len + 16;
                r.prefetch(&coros.iter().map(|&c| (c, len)).collect::<Vec<_>>());
            }
        }
    }

    /// The frame of the generator or coroutine `g` and how far it got;
    /// `None` once it finished.
    fn gen_frame(&self, g: u64) -> Option<(u64, GenState)> {
        let r = self.r();
        match self.l.gen {
            Gen::Object {
                gi_frame,
                back,
                lasti,
                ..
            } => {
                let f = r.u64(g.wrapping_add(gi_frame)).ok().filter(|&f| f != 0)?;
                let state = if r.i32(f.wrapping_add(lasti)).ok()? < 0 {
                    GenState::Created
                } else if r.u64(f.wrapping_add(back)).ok()? != 0 {
                    GenState::Running
                } else {
                    GenState::Suspended
                };
                Some((f, state))
            }
            Gen::Inline {
                iframe,
                frame_state,
                ..
            } => {
                let s = r.bytes(g.wrapping_add(frame_state), 1).ok()?[0] as i8;
                Some((g.wrapping_add(iframe), gen_state(self.l.v, s)?))
            }
        }
    }

    /// What a suspended frame awaits: the top of its value stack.
    fn stack_top(&self, f: u64) -> Option<u64> {
        let r = self.r();
        let at = match self.l.gen {
            Gen::Object {
                top: Top::Pointer(p),
                ..
            } => r.u64(f.wrapping_add(p)).ok()?.checked_sub(8)?,
            Gen::Object {
                top: Top::Inline(..),
                ..
            } => return None,
            Gen::Object {
                top: Top::Depth(depth, stack),
                ..
            } => {
                let n = r.i32(f.wrapping_add(depth)).ok()?;
                if !(1..1 << 16).contains(&n) {
                    return None;
                }
                r.u64(f.wrapping_add(stack))
                    .ok()?
                    .wrapping_add((n as u64 - 1) * 8)
            }
            Gen::Inline {
                top: Top::Inline(depth, localsplus),
                ..
            } => {
                let n = r.i32(f.wrapping_add(depth)).ok()?;
                if !(1..1 << 16).contains(&n) {
                    return None;
                }
                f.wrapping_add(localsplus).wrapping_add((n as u64 - 1) * 8)
            }
            Gen::Inline {
                top: Top::Pointer(p),
                ..
            } => {
                // 3.15 keeps a slot for the value sent above the awaited
                // object (what `cr_await` shows is one down); 3.14 not.
                let below = if self.l.v >= (3, 15) { 16 } else { 8 };
                r.u64(f.wrapping_add(p)).ok()?.checked_sub(below)?
            }
            _ => return None,
        };
        let v = r.u64(at).ok()?;
        // 3.14+: a `_PyStackRef`, whose low bits are tags.
        let v = if self.l.v >= (3, 14) { v & !7 } else { v };
        Some(v).filter(|&x| x != 0)
    }

    /// The coroutine stack of each of `coros`, outermost first: each
    /// suspended coroutine, then what it awaits, down to a future. A
    /// coroutine that runs right now has its frames on a thread's stack
    /// instead. Walked a level at a time over all tasks, each level's
    /// objects loaded with batched reads.
    pub(super) fn coroutines(
        &mut self,
        coros: &[u64],
        threads: &[ThreadFrames],
    ) -> Vec<(Vec<Frame>, Option<String>)> {
        let mut walks: Vec<CoroWalk> = coros
            .iter()
            .map(|&c| CoroWalk {
                obj: c,
                out: Vec::new(),
                seen: HashSet::new(),
                truncated: None,
                done: c == 0,
            })
            .collect();
        for _ in 0..MAX_CHAIN {
            let level: Vec<u64> = walks.iter().filter(|w| !w.done).map(|w| w.obj).collect();
            if level.is_empty() {
                break;
            }
            self.prefetch_gens(&level);
            for w in walks.iter_mut().filter(|w| !w.done) {
                self.coroutine_step(w, threads);
            }
        }
        walks
            .into_iter()
            .map(|w| {
                let cut = (!w.done).then(|| format!("stopped after {MAX_CHAIN} coroutines"));
                (w.out, w.truncated.or(cut))
            })
            .collect()
    }

    /// One coroutine of a task's chain: its frame, then on to what it
    /// awaits, or done.
    fn coroutine_step(&mut self, c: &mut CoroWalk, threads: &[ThreadFrames]) {
        c.done = true;
        let obj = c.obj;
        if !c.seen.insert(obj) {
            c.truncated = Some(format!("await chain loops at {obj:#x}"));
            return;
        }
        let tn = self.w.obj.type_name(obj);
        if !matches!(tn.as_deref(), Some("coroutine" | "generator")) {
            return;
        }
        let Some((f, state)) = self.gen_frame(obj) else {
            return;
        };
        if state == GenState::Running {
            // Innermost first on the thread: from its innermost frame out
            // to this coroutine's.
            for t in threads {
                if let Some(i) = t.addrs.iter().position(|&a| a == f) {
                    c.out.extend(t.frames[..=i].iter().rev().cloned());
                    return;
                }
            }
        }
        let mut fw = FrameWalk::new(Ok(f));
        self.w.step(&mut fw);
        match fw.out.pop() {
            Some(mut fr) => {
                if state == GenState::Created {
                    fr.line = fr.first_line;
                }
                c.out.push(fr);
            }
            None => {
                c.truncated = fw.truncated;
                return;
            }
        }
        if state == GenState::Suspended {
            if let Some(next) = self.stack_top(f) {
                c.obj = next;
                c.done = false;
            }
        }
    }
}
