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

/// Maps each `pthread_t` to its kernel tid, without ptrace: `pthread_t` is
/// the address of the thread's `struct pthread`, which holds the tid. The
/// offset of that field is found rather than assumed: it is the one at which
/// every thread's struct holds a distinct tid of the process (glibc's 0x2d0
/// is preferred when several fit, which only happens with one thread).
pub fn map_pthreads(mem: &dyn Memory, pthreads: &[u64], tids: &HashSet<i32>) -> HashMap<u64, i32> {
    let mut blocks = Vec::new();
    for &p in pthreads {
        let mut b = vec![0u8; PTHREAD_SCAN];
        if p != 0 && mem.read(p, &mut b).is_ok() {
            blocks.push((p, b));
        }
    }
    if blocks.is_empty() {
        return HashMap::new();
    }
    let fits = |off: usize| {
        let mut seen = HashSet::new();
        blocks.iter().all(|(_, b)| {
            let v = le_u32(b, off) as i32;
            tids.contains(&v) && seen.insert(v)
        })
    };
    let off = if fits(GLIBC_TID_OFFSET) {
        Some(GLIBC_TID_OFFSET)
    } else {
        (0..PTHREAD_SCAN - 4).step_by(4).find(|&o| fits(o))
    };
    match off {
        Some(o) => blocks
            .iter()
            .map(|(p, b)| (*p, le_u32(b, o) as i32))
            .collect(),
        None => HashMap::new(),
    }
}
