//! aarch64, laid out so it can follow x86_64; NOT yet built or tested on an
//! arm64 machine. Differences that shape it (research/injection.md §1.3,
//! §2.4): registers through `NT_PRSTATUS` (`user_pt_regs`) and `NT_PRFPREG`
//! (SVE/SME state still to add); no `orig_x0` in the regset, and the kernel
//! has already rewound an interrupted syscall to its `svc` when the tracer
//! sees the stop, so the restart needs no fix-up but also cannot be told
//! apart from a fresh syscall; args in x0–x7, return address in x30, no red
//! zone (128 bytes skipped anyway), sp 16-aligned; the frame is
//! `struct rt_sigframe { siginfo; ucontext }` with FPSIMD/ESR/extra records
//! in `uc_mcontext.__reserved`.

use super::{AltStack, Arch, Frame, WaitTimeout};
use crate::{sys, Error, Result};

/// General registers of an aarch64 thread (`struct user_pt_regs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Regs {
    pub x: [u64; 31],
    pub sp: u64,
    pub pc: u64,
    pub pstate: u64,
}

impl Regs {
    pub fn pc(&self) -> u64 {
        self.pc
    }
    pub fn sp(&self) -> u64 {
        self.sp
    }
    /// aarch64 does not expose the syscall a stopped thread is in.
    pub fn syscall(&self) -> Option<i64> {
        None
    }
    fn from_bytes(b: &[u8]) -> Regs {
        let w = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap());
        let mut r = Regs::default();
        for i in 0..31 {
            r.x[i] = w(i);
        }
        r.sp = w(31);
        r.pc = w(32);
        r.pstate = w(33);
        r
    }
    fn to_bytes(self) -> Vec<u8> {
        let mut v = Vec::with_capacity(34 * 8);
        for x in self.x {
            v.extend_from_slice(&x.to_le_bytes());
        }
        for x in [self.sp, self.pc, self.pstate] {
            v.extend_from_slice(&x.to_le_bytes());
        }
        v
    }
}

/// The aarch64 implementation of [`Arch`].
pub struct Aarch64;

const NT_PRSTATUS: libc::c_int = 1;
const SVC_0: [u8; 4] = 0xd400_0001u32.to_le_bytes();
/// PSTATE.BTYPE (bits 10–11), cleared for a call.
const PSTATE_BTYPE: u64 = 3 << 10;

impl Arch for Aarch64 {
    const FP_NOTE: libc::c_int = 2; // NT_PRFPREG: vregs[32], fpsr, fpcr
    const FP_FALLBACK_NOTE: libc::c_int = 2;
    const FP_MAX: usize = 528;
    // svc #0; ret
    const SYSCALL_RET: &'static [&'static [u8]] =
        &[&[0x01, 0x00, 0x00, 0xd4, 0xc0, 0x03, 0x5f, 0xd6]];
    // mov x8, #139 (rt_sigreturn); svc #0   (glibc's __default_rt_sa_restorer)
    const SIGRETURN: &'static [&'static [u8]] =
        &[&[0x68, 0x11, 0x80, 0xd2, 0x01, 0x00, 0x00, 0xd4]];
    const STUB: &'static [u8] = &[
        0x01, 0x00, 0x00, 0xd4, // 0: svc #0
        0xc0, 0x03, 0x5f, 0xd6, // 4: ret
        0x1f, 0x20, 0x03, 0xd5, // 8: nop (result stays in x0)   (calls return here)
        0x68, 0x11, 0x80, 0xd2, // 12: mov x8, #139               (syscalls return here)
        0x01, 0x00, 0x00, 0xd4, // 16: svc #0 (rt_sigreturn)
        0x68, 0x11, 0x80, 0xd2, // 20: mov x8, #139 (again, if the first was skipped)
        0x01, 0x00, 0x00, 0xd4, // 24: svc #0
        0x00, 0x00, 0x20, 0xd4, // 28: brk #0 (never reached)
    ];
    const STUB_RET: u64 = 8;
    const STUB_SYSCALL_RET: u64 = 12;
    const STUB_SIGRETURN_END: u64 = 20;
    const SYSCALL_INSN_LEN: u64 = 4;

    fn get_regs(tid: i32) -> Result<Regs> {
        let mut buf = [0u8; 34 * 8];
        let n = sys::getregset(tid, NT_PRSTATUS, &mut buf)?;
        Ok(Regs::from_bytes(&buf[..n.min(buf.len())]))
    }

    fn set_regs(tid: i32, regs: &Regs) -> Result<()> {
        sys::setregset(tid, NT_PRSTATUS, &regs.to_bytes())
    }

    fn resume_view(regs: &Regs) -> Regs {
        // The kernel already rewound an interrupted syscall (pc at `svc`).
        *regs
    }

    fn after_foreign_syscalls(regs: &Regs) -> Regs {
        *regs
    }

    fn force_eintr(_regs: &mut Regs) -> bool {
        // Needs the instruction at pc (`svc #0`) and an allow-list of x8
        // (research §2.5); not done yet.
        let _ = SVC_0;
        false
    }

    const WAIT_ONLY: &'static [i64] = &[];

    fn interrupted(_r: &Regs) -> Option<i64> {
        // arch/arm64/kernel/signal.c rewinds a restartable syscall before
        // get_signal reports any stop: at the stop, the choice between
        // EINTR and a restart is already made, and cannot be left to the
        // kernel any more.
        None
    }

    fn restart_unless_handled(_r: &mut Regs) {}

    fn wait_timeout(_r: &Regs) -> WaitTimeout {
        WaitTimeout::Unknown
    }

    fn setup_syscall(r: &mut Regs, insn: u64, sp: u64, nr: i64, args: &[u64]) {
        for (i, a) in args.iter().take(6).enumerate() {
            r.x[i] = *a;
        }
        r.x[8] = nr as u64;
        r.pc = insn;
        r.sp = sp;
    }

    fn setup_call(r: &mut Regs, func: u64, sp: u64, ret: u64, args: &[u64]) {
        for (i, a) in args.iter().take(8).enumerate() {
            r.x[i] = *a;
        }
        r.x[30] = ret;
        r.pc = func;
        r.sp = sp;
        r.pstate &= !PSTATE_BTYPE;
    }

    fn skip_syscall(r: &mut Regs) {
        // NT_ARM_SYSTEM_CALL (0x404) set to -1 at the entry stop; to add.
        let _ = r;
    }

    const CLOBBERS_RESTART: &'static [i64] = &[];

    fn restarts_via_block(_r: &Regs) -> bool {
        // The kernel restarts before the tracer sees the stop on arm64.
        false
    }

    fn restart_timeout(_r: &Regs) -> Option<(u64, bool)> {
        // The restart class is not visible on arm64 (research §2.4).
        None
    }

    fn syscall_nr(r: &Regs) -> i64 {
        r.x[8] as i64
    }

    fn syscall_ret(r: &Regs) -> i64 {
        r.x[0] as i64
    }

    fn stub_result(r: &Regs) -> u64 {
        r.x[0]
    }

    fn sigframe(
        _resume: &Regs,
        _fp: &[u8],
        _fp_is_xstate: bool,
        _sigmask: u64,
        _alt: AltStack,
        _restorer: u64,
    ) -> Result<Frame> {
        // The arm64 frame (siginfo, ucontext with fpsimd_context and
        // esr/extra records, 16-aligned) is still to write; until then
        // remote calls are refused on aarch64.
        Err(Error::Unsupported(
            "remote calls on aarch64 (the signal frame is not written yet)".into(),
        ))
    }
}
