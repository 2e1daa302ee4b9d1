//! x86_64: registers (`struct user_regs_struct`), syscall restart
//! (arch/x86/kernel/signal.c), the SysV call setup and the 64-bit
//! `rt_sigframe` (arch/x86/include/asm/sigframe.h, uapi sigcontext.h).

use super::{AltStack, Arch, Frame, WaitTimeout};
use crate::{sys, Result};

macro_rules! regs {
    ($($f:ident),* $(,)?) => {
        /// General registers of an x86_64 thread, in the kernel's
        /// `user_regs_struct` order, including `orig_rax` (the syscall
        /// number while in a syscall, else -1) and the fs/gs bases.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct Regs { $(pub $f: u64,)* }

        impl Regs {
            const N: usize = [$(stringify!($f)),*].len();
            fn from_bytes(b: &[u8]) -> Regs {
                let mut it = b.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap()));
                Regs { $($f: it.next().unwrap_or(0),)* }
            }
            fn to_bytes(self) -> Vec<u8> {
                let mut v = Vec::with_capacity(Self::N * 8);
                $(v.extend_from_slice(&self.$f.to_le_bytes());)*
                v
            }
        }
    };
}

regs!(
    r15, r14, r13, r12, rbp, rbx, r11, r10, r9, r8, rax, rcx, rdx, rsi, rdi, orig_rax, rip, cs,
    eflags, rsp, ss, fs_base, gs_base, ds, es, fs, gs,
);

// The layout the kernel copies must be exactly this size.
const _: () = assert!(Regs::N * 8 == std::mem::size_of::<libc::user_regs_struct>());

impl Regs {
    /// The instruction pointer.
    pub fn pc(&self) -> u64 {
        self.rip
    }
    /// The stack pointer.
    pub fn sp(&self) -> u64 {
        self.rsp
    }
    /// The thread pointer (`fs_base`): glibc's and musl's `struct pthread`
    /// of the thread, which is what `pthread_self()` returns and CPython
    /// stores as the thread state's `thread_id`.
    pub fn thread_pointer(&self) -> u64 {
        self.fs_base
    }
    /// The syscall the thread is in (`orig_rax`), if any.
    pub fn syscall(&self) -> Option<i64> {
        let nr = self.orig_rax as i64;
        (nr >= 0).then_some(nr)
    }
}

/// The x86_64 implementation of [`Arch`].
pub struct X86_64;

const NT_PRSTATUS: libc::c_int = 1;
const ERESTARTSYS: i64 = -512;
const ERESTARTNOINTR: i64 = -513;
const ERESTARTNOHAND: i64 = -514;
const ERESTART_RESTARTBLOCK: i64 = -516;
const EINTR: i64 = -(libc::EINTR as i64);
/// eflags bits cleared for a call: TF (single step) and DF (the ABI wants
/// the direction flag clear at a call).
const EFLAGS_TF: u64 = 1 << 8;
const EFLAGS_DF: u64 = 1 << 10;
/// `uc_flags`: UC_FP_XSTATE | UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS, as the
/// kernel sets them for a 64-bit frame.
const UC_FLAGS: u64 = 1 | 2 | 4;
/// `struct _fpx_sw_bytes` magics (uapi/asm/sigcontext.h).
const FP_XSTATE_MAGIC2: u32 = 0x4650_5845;
/// Offsets in the frame: `pretcode` then `struct ucontext` (uc_flags,
/// uc_link, uc_stack{ss_sp, ss_flags, ss_size}, uc_mcontext (256 bytes),
/// uc_sigmask).
const UC: usize = 8;
const UC_STACK: usize = UC + 16;
const UC_MCONTEXT: usize = UC + 40;
const UC_SIGMASK: usize = UC_MCONTEXT + 256;
const FRAME_LEN: usize = UC_SIGMASK + 8;
/// The SysV red zone below the stack pointer that a leaf function may use.
const RED_ZONE: u64 = 128;

impl Arch for X86_64 {
    const FP_NOTE: libc::c_int = 0x202; // NT_X86_XSTATE
    const FP_FALLBACK_NOTE: libc::c_int = 2; // NT_PRFPREG: fxsave, 512 bytes
    const FP_MAX: usize = 64 * 1024;
    const SYSCALL_RET: &'static [&'static [u8]] = &[&[0x0f, 0x05, 0xc3]]; // syscall; ret
    const SIGRETURN: &'static [&'static [u8]] = &[
        &[0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05], // mov $15,%rax; syscall
        &[0xb8, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05],             // mov $15,%eax; syscall
    ];
    const STUB: &'static [u8] = &[
        0x0f, 0x05, // 0: syscall
        0xc3, //       2: ret
        0x48, 0x89, 0xc7, // 3: mov %rax,%rdi   (a call returns here)
        0xb8, 0x0f, 0x00, 0x00, 0x00, // 6: mov $15,%eax (a syscall returns here)
        0x0f, 0x05, // 11: syscall         (rt_sigreturn)
        // Reached only if the tool skipped the rt_sigreturn above and then
        // died: the frame is still at rsp - 8, so sigreturn again.
        0xb8, 0x0f, 0x00, 0x00, 0x00, // 13: mov $15,%eax
        0x0f, 0x05, // 18: syscall
        0x0f, 0x0b, // 20: ud2 (never reached: rt_sigreturn does not return)
    ];
    const STUB_RET: u64 = 3;
    const STUB_SYSCALL_RET: u64 = 6;
    const STUB_SIGRETURN_END: u64 = 13;
    const SYSCALL_INSN_LEN: u64 = 2;

    fn get_regs(tid: i32) -> Result<Regs> {
        let mut buf = [0u8; Regs::N * 8];
        let n = sys::getregset(tid, NT_PRSTATUS, &mut buf)?;
        Ok(Regs::from_bytes(&buf[..n]))
    }

    fn set_regs(tid: i32, regs: &Regs) -> Result<()> {
        sys::setregset(tid, NT_PRSTATUS, &regs.to_bytes())
    }

    fn resume_view(r: &Regs) -> Regs {
        let mut v = *r;
        if (r.orig_rax as i64) >= 0 {
            match r.rax as i64 {
                ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND => {
                    v.rax = r.orig_rax;
                    v.rip = r.rip.wrapping_sub(2);
                }
                // Its restart would run `restart_syscall`, which reads
                // kernel state a later syscall may replace; interrupted is
                // the one safe answer (CRIU's get_task_regs does the same).
                ERESTART_RESTARTBLOCK => v.rax = EINTR as u64,
                _ => {}
            }
        }
        v.orig_rax = u64::MAX;
        v
    }

    fn after_foreign_syscalls(r: &Regs) -> Regs {
        let mut v = *r;
        if (r.orig_rax as i64) >= 0 && r.rax as i64 == ERESTART_RESTARTBLOCK {
            v.rax = EINTR as u64;
        }
        v
    }

    fn force_eintr(r: &mut Regs) -> bool {
        // Never ERESTARTNOINTR: those syscalls must not see EINTR.
        let restartable = matches!(
            r.rax as i64,
            ERESTARTSYS | ERESTARTNOHAND | ERESTART_RESTARTBLOCK
        );
        if (r.orig_rax as i64) < 0 || !restartable {
            return false;
        }
        r.rax = EINTR as u64;
        true
    }

    const WAIT_ONLY: &'static [i64] = &[
        libc::SYS_rt_sigtimedwait,
        libc::SYS_epoll_wait,
        libc::SYS_epoll_pwait,
        libc::SYS_epoll_pwait2,
        libc::SYS_semop,
        libc::SYS_semtimedop,
        libc::SYS_io_getevents,
        // With SO_RCVTIMEO / SO_SNDTIMEO only (else -ERESTARTSYS); EINTR
        // only when nothing was received or sent.
        libc::SYS_accept,
        libc::SYS_accept4,
        libc::SYS_recvfrom,
        libc::SYS_recvmsg,
        libc::SYS_sendto,
        libc::SYS_sendmsg,
    ];

    fn interrupted(r: &Regs) -> Option<i64> {
        // A handler frame set up since would show its own rip and rax 0;
        // a restart made, orig_rax in rax.
        let nr = r.orig_rax as i64;
        (nr >= 0 && r.rax as i64 == EINTR).then_some(nr)
    }

    fn restart_unless_handled(r: &mut Regs) {
        // arch/x86/kernel/signal.c: with a handler, handle_signal turns
        // it into -EINTR; without, arch_do_signal_or_restart rewinds rip
        // over the `syscall` and puts orig_rax back in rax.
        r.rax = ERESTARTNOHAND as u64;
    }

    fn wait_timeout(r: &Regs) -> WaitTimeout {
        let at = |p: u64| {
            if p == 0 {
                WaitTimeout::Infinite
            } else {
                WaitTimeout::Timespec(p)
            }
        };
        // Arguments: rdi, rsi, rdx, r10, r8, r9.
        match r.orig_rax as i64 {
            libc::SYS_rt_sigtimedwait => at(r.rdx),
            libc::SYS_epoll_wait | libc::SYS_epoll_pwait => match r.r10 as i32 {
                ms if ms < 0 => WaitTimeout::Infinite,
                ms => WaitTimeout::Millis(ms.into()),
            },
            libc::SYS_epoll_pwait2 | libc::SYS_semtimedop => at(r.r10),
            libc::SYS_semop => WaitTimeout::Infinite,
            libc::SYS_io_getevents => at(r.r8),
            _ => WaitTimeout::Unknown,
        }
    }

    fn setup_syscall(r: &mut Regs, insn: u64, sp: u64, nr: i64, args: &[u64]) {
        let a = |i: usize| args.get(i).copied().unwrap_or(0);
        r.rax = nr as u64;
        r.rdi = a(0);
        r.rsi = a(1);
        r.rdx = a(2);
        r.r10 = a(3);
        r.r8 = a(4);
        r.r9 = a(5);
        r.rip = insn;
        r.rsp = sp;
        r.orig_rax = u64::MAX;
        r.eflags &= !(EFLAGS_TF | EFLAGS_DF);
    }

    fn setup_call(r: &mut Regs, func: u64, sp: u64, _ret: u64, args: &[u64]) {
        // The return address is already at `sp` (the frame's pretcode), so
        // at entry (rsp + 8) % 16 == 0, exactly as after a real `call`.
        let a = |i: usize| args.get(i).copied().unwrap_or(0);
        r.rdi = a(0);
        r.rsi = a(1);
        r.rdx = a(2);
        r.rcx = a(3);
        r.r8 = a(4);
        r.r9 = a(5);
        r.rax = 0; // %al: no vector registers used by a varargs callee
        r.rip = func;
        r.rsp = sp;
        // Not in a syscall: otherwise the kernel would "restart" one at
        // func - 2 when the thread resumes (gdb's amd64_linux_write_pc).
        r.orig_rax = u64::MAX;
        r.eflags &= !(EFLAGS_TF | EFLAGS_DF);
    }

    fn skip_syscall(r: &mut Regs) {
        r.orig_rax = u64::MAX;
    }

    // The kernel's users of current->restart_block: hrtimer and posix-cpu
    // nanosleeps, futex waits with a timeout, poll, and rt_sigreturn /
    // restart_syscall, which reset it.
    const CLOBBERS_RESTART: &'static [i64] = &[
        libc::SYS_nanosleep,
        libc::SYS_clock_nanosleep,
        libc::SYS_futex,
        libc::SYS_poll,
        libc::SYS_ppoll,
        libc::SYS_rt_sigreturn,
        libc::SYS_restart_syscall,
    ];

    fn restarts_via_block(r: &Regs) -> bool {
        (r.orig_rax as i64) >= 0 && r.rax as i64 == ERESTART_RESTARTBLOCK
    }

    fn restart_timeout(r: &Regs) -> Option<(u64, bool)> {
        if r.rax as i64 != ERESTARTNOHAND {
            return None;
        }
        let (ptr, timeval) = match r.orig_rax as i64 {
            libc::SYS_select => (r.r8, true),
            libc::SYS_pselect6 => (r.r8, false),
            libc::SYS_ppoll => (r.rdx, false),
            _ => return None,
        };
        (ptr != 0).then_some((ptr, timeval))
    }

    fn syscall_nr(r: &Regs) -> i64 {
        r.orig_rax as i64
    }

    fn syscall_ret(r: &Regs) -> i64 {
        r.rax as i64
    }

    fn stub_result(r: &Regs) -> u64 {
        r.rdi
    }

    fn sigframe(
        resume: &Regs,
        fp: &[u8],
        fp_is_xstate: bool,
        sigmask: u64,
        alt: AltStack,
        restorer: u64,
    ) -> Result<Frame> {
        let top = resume.rsp - RED_ZONE;
        // The FP area: XRSTOR needs 64-byte alignment; the kernel checks a
        // second magic right after the state (xstate_size from the
        // _fpx_sw_bytes the ptrace buffer already carries).
        let fp_len = fp.len() + if fp_is_xstate { 4 } else { 0 };
        let fp_at = (top - fp_len as u64) & !63;
        // The frame below it; `sp` (where pretcode lies, i.e. the return
        // address) must be 8 mod 16, as after a call.
        let sp = ((fp_at - FRAME_LEN as u64) & !15) - 8;
        let base = sp;
        let mut b = vec![0u8; (top - base) as usize];
        let put = |b: &mut Vec<u8>, off: usize, v: u64| {
            b[off..off + 8].copy_from_slice(&v.to_le_bytes());
        };
        put(&mut b, 0, restorer);
        put(&mut b, UC, UC_FLAGS);
        put(&mut b, UC + 8, 0); // uc_link
        put(&mut b, UC_STACK, alt.sp);
        b[UC_STACK + 8..UC_STACK + 12].copy_from_slice(&alt.flags.to_le_bytes());
        put(&mut b, UC_STACK + 16, alt.size);
        let r = resume;
        let gp = [
            r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15, r.rdi, r.rsi, r.rbp, r.rbx,
            r.rdx, r.rax, r.rcx, r.rsp, r.rip, r.eflags,
        ];
        for (i, v) in gp.iter().enumerate() {
            put(&mut b, UC_MCONTEXT + 8 * i, *v);
        }
        // cs, gs, fs, ss as u16s (gs/fs selectors are not restored on 64-bit).
        let seg = UC_MCONTEXT + 8 * gp.len();
        b[seg..seg + 2].copy_from_slice(&(r.cs as u16).to_le_bytes());
        b[seg + 6..seg + 8].copy_from_slice(&(r.ss as u16).to_le_bytes());
        // err, trapno, oldmask, cr2 stay 0; then the fpstate pointer.
        put(&mut b, UC_MCONTEXT + 8 * (gp.len() + 5), fp_at);
        put(&mut b, UC_SIGMASK, sigmask);
        let off = (fp_at - base) as usize;
        b[off..off + fp.len()].copy_from_slice(fp);
        if fp_is_xstate {
            b[off + fp.len()..off + fp.len() + 4].copy_from_slice(&FP_XSTATE_MAGIC2.to_le_bytes());
        }
        Ok(Frame { base, bytes: b, sp })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_layout_matches_the_kernel() {
        // struct ucontext: flags, link, stack_t (24), sigcontext (256), mask.
        assert_eq!(UC_MCONTEXT - UC, 40);
        assert_eq!(UC_SIGMASK - UC, 296);
        let mut r = Regs {
            rsp: 0x7fff_0000_1238,
            rip: 0x1111,
            rax: 0x2222,
            cs: 0x33,
            ss: 0x2b,
            ..Regs::default()
        };
        r.orig_rax = u64::MAX;
        let fp = vec![0xabu8; 832];
        let alt = AltStack {
            sp: 0x5000,
            flags: 0,
            size: 0x1000,
        };
        let f = X86_64::sigframe(&r, &fp, true, 0x55, alt, 0x7777).unwrap();
        // Below the red zone, return address at sp, 8 mod 16 as after a call.
        assert_eq!(f.sp % 16, 8);
        assert!(f.base + f.bytes.len() as u64 <= r.rsp - RED_ZONE);
        let word = |off: usize| u64::from_le_bytes(f.bytes[off..off + 8].try_into().unwrap());
        assert_eq!(word(0), 0x7777);
        assert_eq!(word(UC), UC_FLAGS);
        assert_eq!(word(UC_STACK), 0x5000);
        assert_eq!(word(UC_STACK + 16), 0x1000);
        assert_eq!(word(UC_MCONTEXT + 13 * 8), 0x2222); // rax
        assert_eq!(word(UC_MCONTEXT + 15 * 8), r.rsp); // rsp
        assert_eq!(word(UC_MCONTEXT + 16 * 8), 0x1111); // rip
        assert_eq!(word(UC_SIGMASK), 0x55);
        let fp_at = word(UC_MCONTEXT + 23 * 8);
        assert_eq!(fp_at % 64, 0, "XRSTOR needs 64-byte alignment");
        let off = (fp_at - f.base) as usize;
        assert_eq!(&f.bytes[off..off + fp.len()], &fp[..]);
        assert_eq!(
            u32::from_le_bytes(
                f.bytes[off + fp.len()..off + fp.len() + 4]
                    .try_into()
                    .unwrap()
            ),
            FP_XSTATE_MAGIC2
        );
    }

    #[test]
    fn restart_is_prepared_as_the_kernel_would() {
        let r = Regs {
            orig_rax: 0, // read
            rax: (-512i64) as u64,
            rip: 0x1002,
            ..Regs::default()
        };
        let v = X86_64::resume_view(&r);
        assert_eq!((v.rax, v.rip, v.orig_rax), (0, 0x1000, u64::MAX));
        let sleep = Regs {
            orig_rax: 35, // nanosleep
            rax: (-516i64) as u64,
            rip: 0x1002,
            ..Regs::default()
        };
        let v = X86_64::resume_view(&sleep);
        assert_eq!((v.rax as i64, v.rip), (-4, 0x1002));
        let mut s = sleep;
        assert!(X86_64::force_eintr(&mut s));
        assert_eq!(s.rax as i64, -4);
        let mut noint = Regs {
            orig_rax: 61,
            rax: (-513i64) as u64,
            ..Regs::default()
        };
        assert!(
            !X86_64::force_eintr(&mut noint),
            "ERESTARTNOINTR must restart"
        );
    }
}
