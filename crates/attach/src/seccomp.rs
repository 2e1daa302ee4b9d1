//! What a thread's seccomp filters answer to a syscall, found before the
//! syscall is made: a filter whose action is KILL kills the target the
//! moment a remote syscall of ours (or code we make it run) hits it, and
//! nothing can undo that.
//!
//! The filters are read with `PTRACE_SECCOMP_GET_FILTER` (a held thread;
//! the tool needs `CAP_SYS_ADMIN` and must not run under seccomp itself)
//! and run here on the syscall's `seccomp_data`, as the kernel would run
//! them: every filter of the thread, the action of highest precedence
//! wins (`kernel/seccomp.c`, `seccomp_run_filters`). Classic BPF as
//! seccomp admits it (`seccomp_check_filter`); any other instruction makes
//! the answer unknown, never "allowed".

use nix::errno::Errno;

use crate::{Error, Result};

/// `PTRACE_SECCOMP_GET_FILTER` (linux/ptrace.h).
const PTRACE_SECCOMP_GET_FILTER: libc::c_uint = 0x420c;
/// `AUDIT_ARCH_X86_64` / `AUDIT_ARCH_AARCH64` (linux/audit.h): what a
/// filter compares `seccomp_data.arch` with.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xc000_00b7;

/// `SECCOMP_RET_*` (linux/seccomp.h).
const RET_ACTION_FULL: u32 = 0xffff_0000;
const RET_DATA: u32 = 0x0000_ffff;
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_KILL_THREAD: u32 = 0;
const RET_TRAP: u32 = 0x0003_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_USER_NOTIF: u32 = 0x7fc0_0000;
const RET_TRACE: u32 = 0x7ff0_0000;
const RET_LOG: u32 = 0x7ffc_0000;
const RET_ALLOW: u32 = 0x7fff_0000;

/// One classic BPF instruction (`struct sock_filter`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Insn {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

/// The filters of one thread, newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filters {
    progs: Vec<Vec<Insn>>,
}

/// What the filters do with a syscall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Runs (`ALLOW`, `LOG`).
    Allow,
    /// Fails with this errno without running (`ERRNO`; `TRACE` with no
    /// seccomp tracer: ENOSYS).
    Errno(u16),
    /// The thread or process is killed, or gets SIGSYS (`KILL_PROCESS`,
    /// `KILL_THREAD`, `TRAP`, and unknown actions, which the kernel treats
    /// as KILL_PROCESS).
    Kill,
    /// Waits for a supervisor's answer (`USER_NOTIF`): anything may come.
    Supervised,
}

impl Filters {
    /// Reads the filters of held thread `tid` (`PTRACE_SECCOMP_GET_FILTER`
    /// from index 0, the newest, until ENOENT).
    pub(crate) fn read(tid: i32) -> Result<Filters> {
        let mut progs = Vec::new();
        for index in 0usize.. {
            let n = get_filter(tid, index, None)?;
            let Some(n) = n else { break };
            let mut raw = vec![0u8; n * 8];
            get_filter(tid, index, Some(&mut raw))?;
            progs.push(
                raw.chunks_exact(8)
                    .map(|c| Insn {
                        code: u16::from_le_bytes([c[0], c[1]]),
                        jt: c[2],
                        jf: c[3],
                        k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
                    })
                    .collect(),
            );
        }
        Ok(Filters { progs })
    }

    /// True if the thread has no filter.
    pub fn is_empty(&self) -> bool {
        self.progs.is_empty()
    }

    /// What syscall `nr` with `args` made at `ip` meets; `None` if a filter
    /// holds an instruction this evaluator does not know (or runs off its
    /// end), so the answer is unknown.
    pub fn verdict(&self, nr: i64, args: &[u64; 6], ip: u64) -> Option<Verdict> {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&(nr as i32).to_le_bytes());
        data[4..8].copy_from_slice(&AUDIT_ARCH.to_le_bytes());
        data[8..16].copy_from_slice(&ip.to_le_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        let mut ret = RET_ALLOW;
        for prog in &self.progs {
            let cur = run(prog, &data)?;
            // The kernel compares the actions as signed numbers, so that
            // KILL_PROCESS (the sign bit) comes first.
            if ((cur & RET_ACTION_FULL) as i32) < ((ret & RET_ACTION_FULL) as i32) {
                ret = cur;
            }
        }
        Some(match ret & RET_ACTION_FULL {
            RET_ALLOW | RET_LOG => Verdict::Allow,
            RET_ERRNO => Verdict::Errno((ret & RET_DATA).min(4095) as u16),
            RET_TRACE => Verdict::Errno(libc::ENOSYS as u16),
            RET_USER_NOTIF => Verdict::Supervised,
            RET_KILL_PROCESS | RET_KILL_THREAD | RET_TRAP => Verdict::Kill,
            _ => Verdict::Kill,
        })
    }
}

/// `PTRACE_SECCOMP_GET_FILTER` of filter `index`: its length in
/// instructions (`None` past the last filter), copied into `buf` if given.
fn get_filter(tid: i32, index: usize, buf: Option<&mut [u8]>) -> Result<Option<usize>> {
    let data = buf.map_or(std::ptr::null_mut(), |b| {
        b.as_mut_ptr().cast::<libc::c_void>()
    });
    // SAFETY: with a null `data` the kernel only returns the filter's
    // length; otherwise `data` points at a buffer the caller sized from
    // that length (8 bytes per instruction), which the kernel fills.
    let r = unsafe {
        libc::ptrace(
            PTRACE_SECCOMP_GET_FILTER,
            tid,
            index as *mut libc::c_void,
            data,
        )
    };
    match Errno::result(r) {
        Ok(n) => Ok(Some(n as usize)),
        Err(Errno::ENOENT) => Ok(None),
        Err(Errno::ESRCH) => Err(Error::TargetExited { pid: tid }),
        // EACCES: the tool lacks CAP_SYS_ADMIN or runs under seccomp
        // itself; EINVAL, EIO: a kernel without the request.
        Err(e) => Err(Error::Unsupported(format!(
            "cannot read the seccomp filters of thread {tid} ({e}): that needs CAP_SYS_ADMIN and a pyattach not itself under seccomp"
        ))),
    }
}

/// Runs one filter on `data` (a `struct seccomp_data`).
fn run(prog: &[Insn], data: &[u8; 64]) -> Option<u32> {
    let word = |k: u32| -> Option<u32> {
        let k = k as usize;
        (k % 4 == 0 && k + 4 <= data.len())
            .then(|| u32::from_le_bytes(data[k..k + 4].try_into().expect("4 bytes")))
    };
    let (mut a, mut x) = (0u32, 0u32);
    let mut mem = [0u32; 16];
    let mut pc = 0usize;
    // Jumps go forward only: the program ends within its length.
    while let Some(i) = prog.get(pc) {
        pc += 1;
        let src = if i.code & 0x08 != 0 { x } else { i.k };
        match i.code {
            0x20 => a = word(i.k)?,                  // ld [k]
            0x80 => a = data.len() as u32,           // ld len
            0x81 => x = data.len() as u32,           // ldx len
            0x00 => a = i.k,                         // ld #k
            0x01 => x = i.k,                         // ldx #k
            0x60 => a = *mem.get(i.k as usize)?,     // ld M[k]
            0x61 => x = *mem.get(i.k as usize)?,     // ldx M[k]
            0x02 => *mem.get_mut(i.k as usize)? = a, // st M[k]
            0x03 => *mem.get_mut(i.k as usize)? = x, // stx M[k]
            0x07 => x = a,                           // tax
            0x87 => a = x,                           // txa
            0x06 => return Some(i.k),                // ret #k
            0x16 => return Some(a),                  // ret a
            0x84 => a = a.wrapping_neg(),            // neg
            c if c & 0x07 == 0x04 => {
                a = match c & 0xf0 {
                    0x00 => a.wrapping_add(src),
                    0x10 => a.wrapping_sub(src),
                    0x20 => a.wrapping_mul(src),
                    0x30 => a.checked_div(src)?,
                    0x40 => a | src,
                    0x50 => a & src,
                    0x60 => a.checked_shl(src).unwrap_or(0),
                    0x70 => a.checked_shr(src).unwrap_or(0),
                    0x90 => a.checked_rem(src)?,
                    0xa0 => a ^ src,
                    _ => return None,
                }
            }
            0x05 => pc = pc.checked_add(i.k as usize)?, // ja
            c if c & 0x07 == 0x05 => {
                let taken = match c & 0xf0 {
                    0x10 => a == src,
                    0x20 => a > src,
                    0x30 => a >= src,
                    0x40 => a & src != 0,
                    _ => return None,
                };
                pc += usize::from(if taken { i.jt } else { i.jf });
            }
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stmt(code: u16, k: u32) -> Insn {
        Insn {
            code,
            jt: 0,
            jf: 0,
            k,
        }
    }
    fn jeq(k: u32, jt: u8, jf: u8) -> Insn {
        Insn {
            code: 0x15,
            jt,
            jf,
            k,
        }
    }

    /// Kills on `mprotect` with PROT_EXEC, EPERM for socketpair, allows
    /// the rest: the shape libseccomp gives such a filter.
    fn filter() -> Filters {
        let prog = vec![
            stmt(0x20, 4),
            jeq(AUDIT_ARCH, 1, 0),
            stmt(0x06, RET_KILL_PROCESS),
            stmt(0x20, 0),
            jeq(libc::SYS_mprotect as u32, 0, 4),
            stmt(0x20, 32),
            Insn {
                code: 0x45,
                jt: 0,
                jf: 1,
                k: libc::PROT_EXEC as u32,
            },
            stmt(0x06, RET_KILL_PROCESS),
            stmt(0x06, RET_ALLOW),
            jeq(libc::SYS_socketpair as u32, 0, 1),
            stmt(0x06, RET_ERRNO | 1),
            stmt(0x06, RET_ALLOW),
        ];
        Filters { progs: vec![prog] }
    }

    #[test]
    fn evaluates_as_the_kernel_does() {
        let f = filter();
        let exec = [0, 4096, (libc::PROT_READ | libc::PROT_EXEC) as u64, 0, 0, 0];
        let rw = [
            0,
            4096,
            (libc::PROT_READ | libc::PROT_WRITE) as u64,
            0,
            0,
            0,
        ];
        assert_eq!(f.verdict(libc::SYS_mprotect, &exec, 0), Some(Verdict::Kill));
        assert_eq!(f.verdict(libc::SYS_mprotect, &rw, 0), Some(Verdict::Allow));
        assert_eq!(
            f.verdict(libc::SYS_socketpair, &[1, 1, 0, 0, 0, 0], 0),
            Some(Verdict::Errno(1))
        );
        assert_eq!(
            f.verdict(libc::SYS_getpid, &[0; 6], 0),
            Some(Verdict::Allow)
        );
        assert_eq!(
            Filters::default().verdict(libc::SYS_getpid, &[0; 6], 0),
            Some(Verdict::Allow)
        );
    }

    #[test]
    fn the_strictest_filter_wins_and_unknown_code_is_unknown() {
        let mut f = filter();
        f.progs.push(vec![stmt(0x06, RET_ERRNO | 13)]);
        assert_eq!(
            f.verdict(libc::SYS_getpid, &[0; 6], 0),
            Some(Verdict::Errno(13))
        );
        let exec = [0, 4096, libc::PROT_EXEC as u64, 0, 0, 0];
        assert_eq!(f.verdict(libc::SYS_mprotect, &exec, 0), Some(Verdict::Kill));
        f.progs.push(vec![stmt(0xff, 0)]);
        assert_eq!(f.verdict(libc::SYS_getpid, &[0; 6], 0), None);
        let runs_off = Filters {
            progs: vec![vec![stmt(0x20, 0)]],
        };
        assert_eq!(runs_off.verdict(libc::SYS_getpid, &[0; 6], 0), None);
    }
}
