//! Stack room for the bootstrap. The detour runs it on the stack of the
//! thread that enters a hooked function, and `--run`'s code after it: a
//! thread started with a small stack (`threading.stack_size(32 * 1024)`,
//! uWSGI's `--thread-stacksize`, musl's 128 KiB) and caught deep in it
//! would overflow it and crash the process.
//!
//! The stacks are found in `/proc/PID/maps` before anything is stopped: a
//! thread's stack is an anonymous read-write mapping right above its
//! guard page (an inaccessible mapping: glibc and musl make one), or, with
//! glibc 2.42+ on Linux 6.14+, begins after guard pages installed inside
//! the mapping (found in `/proc/PID/pagemap`); the
//! main thread's is `[stack]`, which may grow down to its rlimit. The
//! trampolines get a table of them ([`table`]) and let a thread claim only
//! where `rsp` lies at least [`ROOM`] above the bottom of one
//! (`detour::Asm::room`); any other thread, one whose stack was made after
//! the table or runs on an alternate signal stack included, runs the
//! original code, and another thread (or the pending call, or the
//! new-thread fallback, on a stack of its own) gets the bootstrap. A
//! mapping taken for a stack that is none (heap arenas also sit on
//! inaccessible reserves) costs nothing: no `rsp` is in it.
//!
//! Measured by how deep the bootstrap wrote below `rsp` (`--run pass`):
//! 9 KiB on 2.7, 18-35 KiB on 3.6-3.13 the first time (it compiles its
//! source), at most 18 KiB later. [`ROOM`] leaves the code run after it
//! more than 200 KiB.

use symbols::maps::Mapping;

/// How much stack a thread must have left below `rsp` to run the
/// bootstrap and the code.
pub(super) const ROOM: u64 = 256 * 1024;

/// What is assumed of a main thread's stack when its rlimit is unlimited
/// (or unreadable): the usual 8 MiB.
const MAIN_STACK: u64 = 8 << 20;

/// The kernel's gap between the main stack and the mapping below it
/// (`stack_guard_gap`, 256 pages).
const GUARD_GAP: u64 = 1 << 20;

/// How much anonymous memory is searched for guard pages (a pagemap read
/// of 8 bytes per page): 8 GiB, bounded work before the first stop.
const GUARD_SCAN: u64 = 8 << 30;

const PAGE: u64 = 4096;

/// Most stacks in the table (16 bytes each).
const MOST: usize = 8192;

/// The stacks of `pid`, `(bottom, top)`, as far as `/proc/PID/maps` and
/// the stack rlimit tell.
pub(super) fn find(pid: i32) -> Vec<(u64, u64)> {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
        return Vec::new();
    };
    let maps = symbols::maps::parse(&text);
    let anon = |m: &Mapping| m.path.is_none() && m.inode == 0;
    let mut out = Vec::new();
    let mut budget = GUARD_SCAN;
    for pair in maps.windows(2) {
        let (guard, m) = (&pair[0], &pair[1]);
        if !(anon(m) && m.perms == "rw-p") {
            continue;
        }
        if anon(guard) && guard.perms == "---p" && guard.end == m.start {
            out.push((m.start.0, m.end.0));
            continue;
        }
        // Guard pages installed with MADV_GUARD_INSTALL (glibc 2.42+)
        // stay inside the mapping: each run of them starts a stack, which
        // ends at the next run or at the mapping's end (stacks next to
        // each other may be one mapping).
        let len = m.end.0 - m.start.0;
        if len > budget {
            continue;
        }
        budget -= len;
        let guards = attach::procinfo::guard_pages(pid, m.start.0, m.end.0).unwrap_or_default();
        for (i, &g) in guards.iter().enumerate() {
            let bottom = g + PAGE;
            if guards.get(i + 1) == Some(&bottom) {
                continue; // inside a run of guard pages
            }
            let top = guards
                .iter()
                .skip(i + 1)
                .copied()
                .find(|&n| n > bottom)
                .unwrap_or(m.end.0);
            out.push((bottom, top));
        }
    }
    // The main thread's: `[stack]` (a pseudo-path symbols' parser drops).
    let main = text.lines().find(|l| l.ends_with("[stack]")).and_then(|l| {
        let (a, b) = l.split_whitespace().next()?.split_once('-')?;
        Some((
            u64::from_str_radix(a, 16).ok()?,
            u64::from_str_radix(b, 16).ok()?,
        ))
    });
    if let Some((start, top)) = main {
        let floor = maps
            .iter()
            .map(|m| m.end.0)
            .filter(|&end| end <= start)
            .max()
            .map_or(0, |end| end.saturating_add(GUARD_GAP));
        out.push((top.saturating_sub(main_limit(pid)).max(floor), top));
    }
    out.truncate(MOST);
    out
}

/// The main thread's stack rlimit (`Max stack size` in `/proc/PID/limits`).
fn main_limit(pid: i32) -> u64 {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/limits")) else {
        return MAIN_STACK;
    };
    text.lines()
        .find_map(|l| l.strip_prefix("Max stack size"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(MAIN_STACK)
}

/// The trampolines' table: `(bottom + ROOM, top)` of each stack with room
/// at all, then `(0, 0)`.
pub(super) fn table(stacks: &[(u64, u64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 * (stacks.len() + 1));
    for &(bottom, top) in stacks {
        if bottom + ROOM < top {
            out.extend_from_slice(&(bottom + ROOM).to_le_bytes());
            out.extend_from_slice(&top.to_le_bytes());
        }
    }
    out.extend_from_slice(&[0; 16]);
    out
}

/// True if a thread at `rsp` may run the bootstrap there (what the
/// trampolines check).
pub(super) fn roomy(stacks: &[(u64, u64)], rsp: u64) -> bool {
    stacks
        .iter()
        .any(|&(bottom, top)| bottom + ROOM <= rsp && rsp < top)
}

/// The `len` bytes above each of `sps` (stack pointers of held threads),
/// `None` where they are not all mapped. One `process_vm_readv` for up to
/// 1,024 threads rather than one each: in a stop, with a thousand threads
/// held, the reads were most of what held them. A range that is not
/// mapped fails the batch, which is then read one range at a time.
pub(super) fn tops(mem: &attach::ProcessMemory, sps: &[u64], len: usize) -> Vec<Option<Vec<u8>>> {
    let mut bufs = vec![vec![0u8; len]; sps.len()];
    let mut ranges: Vec<(u64, &mut [u8])> = sps
        .iter()
        .zip(bufs.iter_mut())
        .map(|(&sp, b)| (sp, b.as_mut_slice()))
        .collect();
    if mem.read_many(&mut ranges).is_ok() {
        return bufs.into_iter().map(Some).collect();
    }
    sps.iter().map(|&sp| mem.read_vec(sp, len).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_tops_are_read_together_and_alone_where_one_is_unmapped() {
        let here = std::process::id() as i32;
        let mem = attach::ProcessMemory::open(here).unwrap();
        let a = vec![7u8; 64];
        let b = vec![9u8; 64];
        let (pa, pb) = (a.as_ptr() as u64, b.as_ptr() as u64);
        assert_eq!(
            tops(&mem, &[pa, pb], 64),
            vec![Some(a.clone()), Some(b.clone())]
        );
        // Page 0 is never mapped: that thread's top is missing, the
        // others are read all the same.
        assert_eq!(tops(&mem, &[pa, 8, pb], 64), vec![Some(a), None, Some(b)]);
    }

    #[test]
    fn room_is_counted_from_the_bottom_of_the_stack() {
        let stacks = [
            (0x10_0000, 0x10_0000 + 64 * 1024),
            (0x40_0000, 0x40_0000 + (1 << 20)),
        ];
        assert!(!roomy(&stacks, 0x10_0000 + 60 * 1024));
        assert!(roomy(&stacks, 0x40_0000 + 300 * 1024));
        assert!(!roomy(&stacks, 0x40_0000 + 200 * 1024));
        assert!(!roomy(&stacks, 0x90_0000));
        let t = table(&stacks);
        // The small stack has no entry; the big one and the end do.
        assert_eq!(t.len(), 32);
        assert_eq!(&t[0..8], &(0x40_0000u64 + ROOM).to_le_bytes());
        assert_eq!(&t[16..32], &[0; 16]);
    }
}
