//! Pages left by earlier pyattach runs that were killed before they could
//! unmap them ("orphans"), and the rules for unmapping any injection's
//! pages: nothing can run in them any more (flags settled, no entry jumping
//! there, no thread's instruction pointer or return address inside).

use super::detour;
use super::error::RunError;

/// Writes `u32` flags into the data page at `base` (best effort: they only
/// help a later pyattach decide whether it may unmap the pages).
pub(super) fn set_flags(st: &attach::Stopped, base: u64, flags: &[(u64, u32)]) {
    for &(off, v) in flags {
        let _ = st.memory().write(base + off, &v.to_le_bytes());
    }
}

/// The pages of an earlier pyattach that was killed before it could unmap
/// them: its data pages at `data`, its code page at `code`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Orphan {
    data: u64,
    code: u64,
}

impl Orphan {
    /// Finds them (while the target runs): an anonymous read-execute page
    /// that begins with one of our trampolines, whose claim points at
    /// anonymous read-write pages just below it, which carry our header
    /// (magic, their length), made by a pyattach that is no longer alive;
    /// or, from one killed before it armed its detour, read-write pages
    /// starting a mapping with that header, a page more than its length
    /// (the mapping may go on: memory merged with them later).
    /// Anything else, pages of older builds included, is left alone.
    pub fn find(pid: i32, mem: &attach::ProcessMemory) -> Vec<Orphan> {
        let Ok(maps) = symbols::maps::read(pid) else {
            return Vec::new();
        };
        let anon = |m: &symbols::maps::Mapping| m.path.is_none() && m.inode == 0;
        // The remote munmap borrows a `syscall; ret` and an `rt_sigreturn`
        // from the target's code, searched in ld.so and libc first: with
        // neither mapped they might be found in an orphan's code page (its
        // call stub has both), which the munmap would pull from under the
        // thread. Leave the pages then.
        let libc = maps.iter().any(|m| {
            m.is_exec()
                && m.path.as_ref().is_some_and(|p| {
                    let p = p.to_string_lossy();
                    p.contains("/ld-") || p.contains("/libc.") || p.contains("/libc-")
                })
        });
        if !libc {
            return Vec::new();
        }
        let mut out = Vec::new();
        for (i, m) in maps.iter().enumerate() {
            // Mapped and not armed yet (killed between the two stops that
            // set the detour up): read-write pages starting with the header,
            // of the header's length and a page, never executable, so
            // nothing can have run in them. The mapping may reach further:
            // anonymous read-write memory the target mapped right above
            // them later was merged with them by the kernel, and stays.
            if anon(m) && m.perms == "rw-p" {
                let Some(len) = read_u32(mem, m.start.0 + detour::DATA_LEN) else {
                    continue;
                };
                let o = Orphan {
                    data: m.start.0,
                    code: m.start.0 + u64::from(len),
                };
                if o.code > o.data
                    && o.code % 4096 == 0
                    && o.code + 4096 <= m.end.0
                    && o.header(mem).is_some_and(|owner| !alive(owner as i32))
                {
                    out.push(o);
                }
                continue;
            }
            if !(anon(m) && m.perms == "r-xp" && i > 0) {
                continue;
            }
            let code = m.start.0;
            let Ok(bytes) = mem.read_vec(code, 192) else {
                continue;
            };
            let Some(data) = detour::data_of_code_page(code, &bytes) else {
                continue;
            };
            // The read-write pages right below (possibly merged by the
            // kernel with a neighbour of the same kind).
            let below = &maps[i - 1];
            if !(anon(below) && below.perms == "rw-p")
                || below.end.0 != code
                || below.start.0 > data
                || data >= code
                || code - data > 64 * 4096
                || data % 4096 != 0
            {
                continue;
            }
            let o = Orphan { data, code };
            if o.header(mem).is_some_and(|owner| !alive(owner as i32)) {
                out.push(o);
            }
        }
        out
    }

    /// The owner's pid, if the data pages carry our header and their
    /// length matches.
    fn header(&self, mem: &attach::ProcessMemory) -> Option<u32> {
        let mut magic = [0u8; 8];
        mem.read(self.data + detour::MAGIC_AT, &mut magic).ok()?;
        let len = read_u32(mem, self.data + detour::DATA_LEN)?;
        (&magic == detour::MAGIC && u64::from(len) == self.code - self.data)
            .then(|| read_u32(mem, self.data + detour::OWNER))?
    }

    /// True if the flags say nothing is still due to run in the pages: no
    /// bootstrap still inside `PyRun_SimpleString`, no pending call queued
    /// and not yet run, no new thread started and not finished, no remote
    /// call left running.
    pub fn settled(&self, mem: &attach::ProcessMemory) -> bool {
        let get = |off| read_u32(mem, self.data + off);
        let set = |off| get(off) == Some(1);
        let claim_over = match get(detour::FLAG) {
            Some(detour::FREE) | Some(detour::CANCELLED) => true,
            Some(detour::CLAIMED) => set(detour::DONE),
            _ => false,
        };
        claim_over
            && get(detour::KEEP) == Some(0)
            && (get(detour::PENDING_QUEUED) == Some(0) || set(detour::PENDING_RAN))
            && (get(detour::THREAD_STARTED) == Some(0) || set(detour::THREAD_DONE))
    }

    /// True if one of `entries` (those a pyattach may hook) still jumps
    /// into the pages.
    fn entered(&self, mem: &attach::ProcessMemory, entries: &[u64]) -> bool {
        entries.iter().any(|&e| {
            let Ok(b) = mem.read_vec(e, 5) else {
                return true;
            };
            if b[0] != 0xe9 {
                return false;
            }
            let rel = i32::from_le_bytes([b[1], b[2], b[3], b[4]]);
            let to = (e + 5).wrapping_add(rel as i64 as u64);
            (self.data..self.code + 4096).contains(&to)
        })
    }
}

/// Unmaps, with every thread held (`st`), each of `orphans` that nothing
/// can run in any more, by the rules [`Leftover::remove`] follows for our
/// own pages: still ours by their header (and their owner still dead), the
/// flags settled, no entry of `entries` jumping there, no thread's
/// instruction pointer inside, no return address into them on any stack.
/// Anything uncertain leaves them (inert). Returns how many went.
pub(super) fn reclaim(st: &mut attach::Stopped, orphans: &[Orphan], entries: &[u64]) -> usize {
    let mem = st.memory();
    let candidates: Vec<&Orphan> = orphans
        .iter()
        .filter(|o| {
            o.header(mem).is_some_and(|owner| !alive(owner as i32))
                && o.settled(mem)
                && !o.entered(mem, entries)
        })
        .collect();
    let codes: Vec<u64> = candidates.iter().map(|o| o.code).collect();
    let busy = busy_pages(st, &codes);
    let mut gone = 0;
    for (o, busy) in candidates.into_iter().zip(busy) {
        let helper = st.syscall_thread().unwrap_or(st.pid());
        if !busy && st.unmap(helper, o.data, o.code + 4096 - o.data).is_ok() {
            gone += 1;
        }
    }
    gone
}

/// Takes back the pages at `base` of an attempt that failed before any
/// entry jumped there (nothing can have run in them), in a stop of its
/// own, if they still carry this pyattach's header; `orphans` go in the
/// same stop. Best effort: pages left stay inert, and a later pyattach
/// reclaims them once this one is gone.
pub(super) fn take_back(
    pid: i32,
    restart: attach::Restart,
    base: u64,
    total: u64,
    orphans: &[Orphan],
    entries: &[u64],
) {
    let Ok(mut st) = stop_with(pid, restart) else {
        return;
    };
    let ours = Orphan {
        data: base,
        code: base + total - 4096,
    };
    if ours.header(st.memory()) == Some(std::process::id()) {
        let helper = st.syscall_thread().unwrap_or(pid);
        let _ = st.unmap(helper, base, total);
    }
    reclaim(&mut st, orphans, entries);
    let _ = st.detach();
}

/// Attaches and stops every thread, having found beforehand (while the
/// target runs) the code that remote syscalls borrow.
pub(super) fn stop(pid: i32) -> Result<attach::Stopped, RunError> {
    stop_with(pid, attach::Restart::default())
}

/// [`stop`], with the waits the stop cuts short treated by `restart`.
pub(super) fn stop_with(pid: i32, restart: attach::Restart) -> Result<attach::Stopped, RunError> {
    let mut p = attach::Process::attach(pid)?;
    p.restart_waits(restart);
    p.prepare_calls()?;
    Ok(p.stop_all()?)
}

/// True if a thread could still run in the injection's pages: its
/// instruction pointer is in the code page, or its stack holds a return
/// address into them (a thread inside a moved `call` of an entry's
/// prologue, or a signal frame of a thread interrupted in a trampoline).
/// The code page wipes every return address into it once used, and attach
/// wipes its call frames, so a stale copy cannot keep the pages mapped.
pub(super) fn busy(st: &attach::Stopped, code: u64) -> bool {
    busy_pages(st, &[code])[0]
}

/// [`busy`] for several code pages at once (each thread's registers and
/// stack read once).
fn busy_pages(st: &attach::Stopped, codes: &[u64]) -> Vec<bool> {
    let mut out = vec![false; codes.len()];
    if codes.is_empty() {
        return out;
    }
    let inside = |a: u64| codes.iter().position(|&c| (c..c + 4096).contains(&a));
    let mut sps = Vec::new();
    for tid in st.threads() {
        let Ok(r) = st.regs(tid) else {
            return vec![true; codes.len()];
        };
        if let Some(i) = inside(r.pc()) {
            out[i] = true;
        }
        sps.push(r.sp());
    }
    for stack in super::stacks::tops(st.memory(), &sps, 8192)
        .into_iter()
        .flatten()
    {
        for w in stack.chunks_exact(8) {
            if let Some(i) = inside(u64::from_le_bytes(w.try_into().expect("8 bytes"))) {
                out[i] = true;
            }
        }
    }
    out
}

pub(super) fn read_u32(mem: &attach::ProcessMemory, addr: u64) -> Option<u32> {
    let mut b = [0u8; 4];
    mem.read(addr, &mut b).ok()?;
    Some(u32::from_le_bytes(b))
}

pub(super) fn alive(pid: i32) -> bool {
    attach::procinfo::status(pid).is_ok_and(|s| !s.is_zombie())
}
