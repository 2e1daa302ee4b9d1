//! What the kernel says about each thread, and how a `pthread_t` maps to a
//! kernel tid on versions without `native_thread_id` (≤3.10).
//!
//! Thread names and states come from `attach::procinfo`; the system call a
//! thread is blocked in comes from `/proc/PID/task/TID/syscall` (read here
//! until `attach::procinfo` offers it).

use std::collections::{HashMap, HashSet};

use super::mem::{le_u32, Memory};
use super::ThreadState;

/// The kernel's view of one thread.
#[derive(Clone, Debug, Default)]
pub struct KernelThread {
    pub comm: String,
    pub state: ThreadState,
    /// Stack pointer at the blocking syscall (from `/proc/…/syscall`).
    pub sp: Option<u64>,
    /// The thread's id in the target's own pid namespace (see
    /// [`attach::procinfo::ThreadInfo::ns_tid`]).
    pub ns_tid: i32,
}

/// Every thread of `pid` by tid, read before any freeze (a stopped thread
/// shows as stopped, not as what it was doing).
pub fn kernel_threads(pid: i32) -> HashMap<i32, KernelThread> {
    let mut out = HashMap::new();
    let Ok(list) = attach::procinfo::threads(pid) else {
        return out;
    };
    for t in list {
        let (syscall, sp) = syscall_of(pid, t.tid);
        out.insert(
            t.tid,
            KernelThread {
                comm: t.name,
                state: ThreadState {
                    letter: Some(t.state),
                    description: Some(t.state_name.to_string()),
                    syscall,
                    wchan: t.wchan,
                    waiting_for_gil: false,
                },
                sp,
                ns_tid: t.ns_tid,
            },
        );
    }
    out
}

/// `(syscall name, stack pointer)` of a thread blocked in a syscall.
fn syscall_of(pid: i32, tid: i32) -> (Option<String>, Option<u64>) {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall")) else {
        return (None, None);
    };
    let mut it = s.split_whitespace();
    let Some(nr) = it.next().and_then(|n| n.parse::<i64>().ok()) else {
        return (None, None); // "running"
    };
    if nr < 0 {
        return (None, None); // -1: blocked, but not in a syscall
    }
    let fields: Vec<&str> = it.collect();
    // nr, 6 args, sp, pc.
    let sp = fields
        .get(6)
        .and_then(|v| u64::from_str_radix(v.trim_start_matches("0x"), 16).ok());
    (Some(syscall_name(nr)), sp)
}

/// The name of a system call of this architecture (numbers from libc).
pub fn syscall_name(nr: i64) -> String {
    macro_rules! names {
        ($($n:ident),* $(,)?) => {
            $(if nr == libc::$n as i64 {
                return stringify!($n)[4..].to_string();
            })*
        };
    }
    names!(
        SYS_read,
        SYS_write,
        SYS_openat,
        SYS_close,
        SYS_futex,
        SYS_ppoll,
        SYS_pselect6,
        SYS_epoll_pwait,
        SYS_clock_nanosleep,
        SYS_nanosleep,
        SYS_wait4,
        SYS_waitid,
        SYS_accept4,
        SYS_accept,
        SYS_connect,
        SYS_recvfrom,
        SYS_recvmsg,
        SYS_sendto,
        SYS_sendmsg,
        SYS_readv,
        SYS_writev,
        SYS_pread64,
        SYS_pwrite64,
        SYS_ioctl,
        SYS_flock,
        SYS_fcntl,
        SYS_fsync,
        SYS_fdatasync,
        SYS_rt_sigtimedwait,
        SYS_rt_sigsuspend,
        SYS_sched_yield,
        SYS_epoll_pwait2,
        SYS_io_getevents,
        SYS_msgrcv,
        SYS_semtimedop,
        SYS_mmap,
        SYS_munmap,
        SYS_brk,
        // A timed wait (poll, nanosleep, futex) resumed by the kernel after
        // a signal or stop: an earlier pyattach freeze leaves threads in it.
        SYS_restart_syscall,
    );
    #[cfg(target_arch = "x86_64")]
    names!(
        SYS_poll,
        SYS_select,
        SYS_epoll_wait,
        SYS_pause,
        SYS_open,
        SYS_wait4,
    );
    format!("syscall {nr}")
}

/// How far into glibc's/musl's `struct pthread` (which `pthread_t` points
/// at) the tid may sit; glibc x86_64 has it at 0x2d0.
const PTHREAD_SCAN: usize = 0x800;
const GLIBC_TID_OFFSET: usize = 0x2d0;

/// Maps each `pthread_t` to its kernel tid (as `tids` are given: the ids
/// the target itself sees), without ptrace: `pthread_t` is the address of
/// the thread's `struct pthread`, which holds the tid (fork updates it in
/// the child). The offset of that field is found rather than assumed: it
/// is the one at which the most threads' structs hold distinct tids of the
/// process (at least half of them, or at least one at glibc's 0x2d0, which
/// wins ties: after a fork from a thread, one live thread may sit among
/// the parent's stale ones). `None` when no offset fits: then nothing can
/// be said about any thread.
pub fn map_pthreads(
    mem: &dyn Memory,
    pthreads: &[u64],
    tids: &HashSet<i32>,
) -> Option<HashMap<u64, i32>> {
    let mut blocks = Vec::new();
    for &p in pthreads {
        let mut b = vec![0u8; PTHREAD_SCAN];
        if p != 0 && mem.read(p, &mut b).is_ok() {
            blocks.push((p, b));
        }
    }
    if blocks.is_empty() {
        return None;
    }
    // How many threads an offset maps to distinct tids of the process; a
    // thread state whose thread has already exited maps to none, so the
    // best offset need not fit every thread, only most.
    let score = |off: usize| {
        let mut seen = HashSet::new();
        blocks
            .iter()
            .filter(|(_, b)| {
                let v = le_u32(b, off) as i32;
                tids.contains(&v) && seen.insert(v)
            })
            .count()
    };
    let best = (0..PTHREAD_SCAN - 4)
        .step_by(4)
        .map(|o| (score(o), o))
        .max_by_key(|&(n, o)| (n, o == GLIBC_TID_OFFSET, std::cmp::Reverse(o)));
    let off = match best {
        Some((n, _)) if n > 0 && score(GLIBC_TID_OFFSET) == n => GLIBC_TID_OFFSET,
        Some((n, o)) if n > 0 && n * 2 >= blocks.len() => o,
        _ => return None,
    };
    Some(
        blocks
            .iter()
            .map(|(p, b)| (*p, le_u32(b, off) as i32))
            .filter(|(_, t)| tids.contains(t))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Memory made of a few `struct pthread` blocks.
    struct Blocks(HashMap<u64, Vec<u8>>);

    impl Memory for Blocks {
        fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), String> {
            let b = self.0.get(&addr).ok_or("unmapped")?;
            buf.copy_from_slice(&b[..buf.len()]);
            Ok(())
        }
    }

    fn block(tid_at: usize, tid: u32, noise: u32) -> Vec<u8> {
        let mut b = vec![0u8; PTHREAD_SCAN];
        b[tid_at..tid_at + 4].copy_from_slice(&tid.to_le_bytes());
        b[0x10..0x14].copy_from_slice(&noise.to_le_bytes());
        b
    }

    #[test]
    fn finds_the_tid_field_and_tolerates_an_exited_thread() {
        let tids: HashSet<i32> = [100, 101, 102].into_iter().collect();
        // musl-like layout: the tid elsewhere than glibc's 0x2d0; a noise
        // word that is a tid for one thread only.
        let mem = Blocks(HashMap::from([
            (0x1000, block(0x30, 100, 101)),
            (0x2000, block(0x30, 101, 7)),
            (0x3000, block(0x30, 999, 7)), // its thread has exited
            (0x4000, block(0x30, 102, 7)),
        ]));
        let m = map_pthreads(&mem, &[0x1000, 0x2000, 0x3000, 0x4000, 0x5000], &tids).unwrap();
        assert_eq!(m.get(&0x1000), Some(&100));
        assert_eq!(m.get(&0x2000), Some(&101));
        assert_eq!(m.get(&0x4000), Some(&102));
        assert_eq!(m.get(&0x3000), None);
        assert_eq!(m.get(&0x5000), None);
    }

    #[test]
    fn one_thread_prefers_glibc_offset() {
        let tids: HashSet<i32> = [42].into_iter().collect();
        let mut b = block(GLIBC_TID_OFFSET, 42, 0);
        b[0x8..0xc].copy_from_slice(&42u32.to_le_bytes());
        let mem = Blocks(HashMap::from([(0x1000, b)]));
        let m = map_pthreads(&mem, &[0x1000], &tids).unwrap();
        assert_eq!(m.get(&0x1000), Some(&42));
    }

    #[test]
    fn one_live_thread_among_stale_ones_after_a_fork() {
        // The forking thread's struct holds the child's tid; the parent's
        // other threads' structs (copied by fork) hold the parent's tids.
        let tids: HashSet<i32> = [500].into_iter().collect();
        let mem = Blocks(HashMap::from([
            (0x1000, block(GLIBC_TID_OFFSET, 400, 0)),
            (0x2000, block(GLIBC_TID_OFFSET, 500, 0)),
            (0x3000, block(GLIBC_TID_OFFSET, 402, 0)),
            (0x4000, block(GLIBC_TID_OFFSET, 403, 0)),
        ]));
        let m = map_pthreads(&mem, &[0x1000, 0x2000, 0x3000, 0x4000], &tids).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m.get(&0x2000), Some(&500));
        // Nothing that holds a tid of the process: no answer at all.
        assert!(map_pthreads(&mem, &[0x1000, 0x3000], &tids).is_none());
    }

    #[test]
    fn syscall_names_come_from_libc_numbers() {
        assert_eq!(syscall_name(libc::SYS_futex), "futex");
        assert_eq!(syscall_name(libc::SYS_read), "read");
        assert_eq!(syscall_name(99999), "syscall 99999");
    }
}
