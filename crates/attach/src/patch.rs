//! Code patching primitives for the injector: fresh memory near a given
//! address (for a rel32 jump), and swapping bytes of code while every thread
//! is held and none is executing them.

use crate::arch::{Arch, Native};
use crate::tracer::Tracer;
use crate::{remote, Error, Result};

/// `MAP_FIXED_NOREPLACE` (Linux 4.17): place exactly at the hint or fail,
/// never replace an existing mapping.
const MAP_FIXED_NOREPLACE: u64 = 0x10_0000;
const PAGE: u64 = 4096;
/// The reach of a rel32 jump, with a margin for the jump's own length.
const REACH: u64 = (1 << 31) - (1 << 20);

/// Free gaps of the address space within reach of `near`, closest first.
fn gaps_near(pid: i32, near: u64, len: u64) -> Result<Vec<u64>> {
    let via = crate::procinfo::live_member(pid).unwrap_or(pid);
    let maps = std::fs::read_to_string(format!("/proc/{via}/maps"))
        .map_err(|_| Error::TargetExited { pid })?;
    let mut ranges: Vec<(u64, u64)> = maps
        .lines()
        .filter_map(|l| {
            let (a, b) = l.split_whitespace().next()?.split_once('-')?;
            Some((
                u64::from_str_radix(a, 16).ok()?,
                u64::from_str_radix(b, 16).ok()?,
            ))
        })
        .collect();
    ranges.sort_unstable();
    let lo = near.saturating_sub(REACH).max(0x1_0000);
    let hi = near.saturating_add(REACH).min(0x7fff_ffff_f000);
    let mut cands = Vec::new();
    let mut prev_end = lo;
    for (a, b) in ranges.iter().copied().chain(std::iter::once((hi, hi))) {
        let (ga, gb) = (prev_end.max(lo), a.min(hi));
        if gb > ga && gb - ga >= len + 2 * PAGE {
            // Leave a page free on each side; take the end of the gap
            // nearest to `near`.
            let first = ga + PAGE;
            let last = gb - PAGE - len;
            let pick = if near <= first {
                first
            } else if near >= last {
                last
            } else {
                near & !(PAGE - 1)
            };
            cands.push(pick);
        }
        prev_end = prev_end.max(b);
    }
    cands.sort_by_key(|c| c.abs_diff(near));
    Ok(cands)
}

/// Where `map_near` would try to map `len` bytes near `near`, read from
/// `/proc/PID/maps` (possibly before the threads are stopped: a place taken
/// meanwhile is simply skipped).
pub fn free_gaps_near(pid: i32, near: u64, len: u64) -> Result<Vec<u64>> {
    gaps_near(pid, near, len.div_ceil(PAGE) * PAGE)
}

pub(crate) fn map_near(
    t: &mut Tracer,
    tid: i32,
    near: u64,
    len: u64,
    hints: Option<&[u64]>,
) -> Result<u64> {
    if let Some(hints) = hints {
        if let Some(got) = map_at_one_of(t, tid, near, len, hints)? {
            return Ok(got);
        }
    }
    let len = len.div_ceil(PAGE) * PAGE;
    let gaps = gaps_near(t.pid, near, len)?;
    map_at_one_of(t, tid, near, len, &gaps)?.ok_or_else(|| {
        Error::Unsupported(format!(
            "no free memory within 2 GiB of {near:#x} in process {}",
            t.pid
        ))
    })
}

fn map_at_one_of(
    t: &mut Tracer,
    tid: i32,
    near: u64,
    len: u64,
    hints: &[u64],
) -> Result<Option<u64>> {
    let len = len.div_ceil(PAGE) * PAGE;
    let prot = (libc::PROT_READ | libc::PROT_WRITE) as u64;
    let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64 | MAP_FIXED_NOREPLACE;
    for &hint in hints.iter().take(8) {
        let r = remote::syscall(
            t,
            tid,
            libc::SYS_mmap,
            &[hint, len, prot, flags, u64::MAX, 0],
        )?;
        if (-4095..0).contains(&r) {
            continue; // raced with another mapping (EEXIST): next gap
        }
        let got = r as u64;
        if got.abs_diff(near) <= REACH {
            return Ok(Some(got));
        }
        // An old kernel took NOREPLACE as a mere hint and put it far away.
        unmap(t, tid, got, len)?;
    }
    Ok(None)
}

/// Replaces `[addr, addr+len)`, a mapping of the caller's, with fresh
/// read+exec memory holding `code` (written through `/proc/PID/mem`, as a
/// debugger writes breakpoints): never writable and executable at once,
/// and never made executable after the fact, which `PR_SET_MDWE`'s
/// "refuse exec gain" forbids (an executable mapping made as such is
/// allowed).
pub(crate) fn map_code(t: &mut Tracer, tid: i32, addr: u64, len: u64, code: &[u8]) -> Result<()> {
    let prot = (libc::PROT_READ | libc::PROT_EXEC) as u64;
    let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED) as u64;
    let r = remote::syscall(
        t,
        tid,
        libc::SYS_mmap,
        &[addr, len, prot, flags, u64::MAX, 0],
    )?;
    remote::errno_result(r, "mmap (remote)", tid)?;
    t.mem.write(addr, code)
}

pub(crate) fn unmap(t: &mut Tracer, tid: i32, addr: u64, len: u64) -> Result<()> {
    let r = remote::syscall(t, tid, libc::SYS_munmap, &[addr, len])?;
    remote::errno_result(r, "munmap (remote)", tid).map(|_| ())
}

pub(crate) fn patch(t: &mut Tracer, addr: u64, new: &[u8]) -> Result<Vec<u8>> {
    // Reap threads born during earlier calls, so every thread is held.
    t.stop_all()?;
    let end = addr + new.len() as u64;
    for tid in t.tids() {
        let r = Native::get_regs(tid)?;
        let pc = r.pc();
        // Strictly inside: a thread at `addr` will simply run the new bytes.
        // A thread in a syscall may restart at pc - len(syscall).
        let restart_pc = pc.wrapping_sub(Native::SYSCALL_INSN_LEN);
        let inside = |p: u64| p > addr && p < end;
        if inside(pc) || (r.syscall().is_some() && inside(restart_pc)) {
            return Err(Error::ThreadInPatch { tid, addr, end });
        }
    }
    let old = t.mem.read_vec(addr, new.len())?;
    t.mem.write(addr, new)?;
    Ok(old)
}

/// [`patch`] of several ranges with one look at every thread's registers
/// (a register read per thread, not per thread and range: it matters with
/// hundreds of threads). Each range is written only if no thread is inside
/// it; the results come in the order of `patches`.
pub(crate) fn patch_many(t: &mut Tracer, patches: &[(u64, &[u8])]) -> Result<Vec<Result<Vec<u8>>>> {
    t.stop_all()?;
    let mut busy: Vec<Option<i32>> = vec![None; patches.len()];
    for tid in t.tids() {
        let r = Native::get_regs(tid)?;
        let pc = r.pc();
        let restart_pc = pc.wrapping_sub(Native::SYSCALL_INSN_LEN);
        for (i, (addr, new)) in patches.iter().enumerate() {
            let end = addr + new.len() as u64;
            let inside = |p: u64| p > *addr && p < end;
            if inside(pc) || (r.syscall().is_some() && inside(restart_pc)) {
                busy[i].get_or_insert(tid);
            }
        }
    }
    let mut out = Vec::with_capacity(patches.len());
    for ((addr, new), busy) in patches.iter().zip(busy) {
        out.push(match busy {
            Some(tid) => Err(Error::ThreadInPatch {
                tid,
                addr: *addr,
                end: addr + new.len() as u64,
            }),
            None => t.mem.read_vec(*addr, new.len()).and_then(|old| {
                t.mem.write(*addr, new)?;
                Ok(old)
            }),
        });
    }
    Ok(out)
}

/// Unmaps our call stub, if any (best effort: a page left mapped harms
/// nothing).
pub(crate) fn unmap_stub(t: &mut Tracer) {
    if let Err(e) = remote::unmap_stub(t) {
        if !e.target_gone() {
            eprintln!("pyattach: could not unmap the call stub: {e}");
        }
    }
}
