//! What differs between architectures, behind one trait: the register
//! layout, how a stopped syscall restarts, how a call or syscall is set up,
//! the signal frame the kernel's `rt_sigreturn` reads, and the machine code
//! of the return stub. One file per architecture; the rest of the crate is
//! written against [`Arch`] through the [`Native`] alias.
//!
//! Adding an architecture (aarch64 is laid out in `aarch64.rs`):
//! 1. `Regs` from the kernel's `NT_PRSTATUS` layout, decoded field by field
//!    with a size assert; the FP/vector register set note(s), including
//!    SVE/SME state where it is live.
//! 2. Syscall restart as the kernel leaves it at a ptrace stop (read
//!    `arch/*/kernel/signal.c`): `resume_view`, `after_foreign_syscalls`,
//!    `force_eintr`, `restarts_via_block`, `restart_timeout`.
//! 3. The call ABI (`setup_call`, `setup_syscall`) and the return stub's
//!    machine code, commented byte by byte, with its offsets.
//! 4. The kernel's `rt_sigframe` for `sigframe`, checked by a unit test of
//!    its layout and by the `tool` tests, which kill the tool mid-call.
//! 5. Run the whole `attach` test suite on that machine.

use crate::Result;

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "x86_64")]
mod x86_64;

#[cfg(target_arch = "aarch64")]
pub use aarch64::{Aarch64 as Native, Regs};
#[cfg(target_arch = "x86_64")]
pub use x86_64::{Regs, X86_64 as Native};

/// The thread's alternate signal stack (`stack_t`), as `sigaltstack(2)`
/// reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct AltStack {
    pub sp: u64,
    pub flags: i32,
    pub size: u64,
}

/// The `uc_stack` of every frame pyattach writes: a mode that is not a
/// mode (`SS_ONSTACK | SS_DISABLE`). The frame's `rt_sigreturn` hands
/// `uc_stack` to `restore_altstack`, which ignores every error of
/// `do_sigaltstack` but EFAULT (kernel/signal.c, since Linux 3.8; before,
/// the arch code did the same), and an invalid mode is refused (EINVAL)
/// before anything changes: the thread keeps its alternate stack as it
/// is, whatever it is, without pyattach asking for it first (which cost a
/// remote `sigaltstack` per thread while every thread was held).
pub(crate) const KEEP_ALTSTACK: AltStack = AltStack {
    sp: 0,
    flags: 3,
    size: 0,
};

/// How long a wait may last, from its arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WaitTimeout {
    /// No timeout: the wait ends only when what it waits for comes.
    Infinite,
    /// Milliseconds.
    Millis(i64),
    /// A `struct timespec` at this address in the target.
    Timespec(u64),
    /// Not in the arguments (a socket's `SO_RCVTIMEO`).
    Unknown,
}

/// A signal frame laid out in the target's stack: `bytes` go at `base`;
/// the thread must enter the callee (or the syscall gadget) with its stack
/// pointer at `sp`.
pub(crate) struct Frame {
    pub base: u64,
    pub bytes: Vec<u8>,
    pub sp: u64,
}

/// Per-architecture operations (all associated functions: there is one
/// native architecture per build).
pub(crate) trait Arch {
    /// Register set note for the extended (FP/vector) state, and the
    /// smaller one to fall back to when the kernel lacks it (ENODEV).
    const FP_NOTE: libc::c_int;
    const FP_FALLBACK_NOTE: libc::c_int;
    /// Upper bound of the extended state's size (the kernel says the real
    /// size when it fills the buffer).
    const FP_MAX: usize;
    /// Byte patterns of existing code we can borrow: a `syscall; ret` and a
    /// `rt_sigreturn` sequence (e.g. glibc's `__restore_rt`), and where in
    /// each pattern execution starts and where the syscall instruction ends.
    const SYSCALL_RET: &'static [&'static [u8]];
    const SIGRETURN: &'static [&'static [u8]];
    /// Our own return stub for function calls (written to a page we map):
    /// moves the return value aside and calls `rt_sigreturn`.
    const STUB: &'static [u8];
    /// Offsets in [`Arch::STUB`] of the return address for calls, of the
    /// one for syscalls (the stub starts with a `syscall; ret`), and of the
    /// end of its `rt_sigreturn` syscall instruction.
    const STUB_RET: u64;
    const STUB_SYSCALL_RET: u64;
    const STUB_SIGRETURN_END: u64;
    /// Length of the syscall instruction.
    const SYSCALL_INSN_LEN: u64;

    fn get_regs(tid: i32) -> Result<Regs>;
    fn set_regs(tid: i32, regs: &Regs) -> Result<()>;

    /// The registers user space will see when the thread resumes from this
    /// stop: an interrupted syscall already rewound for its restart (or
    /// turned into `-EINTR` where a restart would be unsafe), and no
    /// syscall in progress. This is what goes into the signal frame.
    fn resume_view(regs: &Regs) -> Regs;
    /// Registers to restore after an operation that may have made syscalls
    /// of its own: a restart that depends on kernel state those syscalls
    /// may have overwritten (the restart block) becomes `-EINTR`, as CRIU does.
    fn after_foreign_syscalls(regs: &Regs) -> Regs;
    /// Makes a thread stopped inside an interruptible syscall return
    /// `-EINTR` from it instead of restarting it. False if it is not in one.
    fn force_eintr(regs: &mut Regs) -> bool;
    /// The syscall a thread at a ptrace stop has just returned `-EINTR`
    /// from, if it has and the kernel has not acted on that return yet (no
    /// handler frame set up, no restart made): the moment when
    /// [`Arch::restart_unless_handled`] can still decide. `None` where the
    /// architecture decides before the stop (arm64 rewinds a restart
    /// before it reports signal stops).
    fn interrupted(regs: &Regs) -> Option<i64>;
    /// Syscalls that return `-EINTR` (not `-ERESTART*`) when a stop cuts
    /// them short, and for which `-EINTR` means they consumed nothing, so
    /// that a restart is equivalent to a late wake-up (see `restart`).
    const WAIT_ONLY: &'static [i64];
    /// Makes the syscall a thread is stopped in return as the kernel's
    /// `-ERESTARTNOHAND` does when the thread resumes: `-EINTR` if a
    /// signal handler runs first, a restart with the same arguments if
    /// not. The kernel makes that choice itself, at the resume, with the
    /// pending signals of that instant.
    fn restart_unless_handled(regs: &mut Regs);
    /// The timeout of the wait (one of [`Arch::WAIT_ONLY`]) a thread is
    /// stopped in, as its arguments give it.
    fn wait_timeout(regs: &Regs) -> WaitTimeout;

    /// Sets up `regs` to run syscall `nr` at the gadget `insn`.
    fn setup_syscall(regs: &mut Regs, insn: u64, sp: u64, nr: i64, args: &[u64]);
    /// Sets up `regs` to call `func` (SysV / AAPCS64) with `sp` holding the
    /// return address already.
    fn setup_call(regs: &mut Regs, func: u64, sp: u64, ret: u64, args: &[u64]);
    /// At a syscall-entry stop: make the kernel skip the syscall.
    fn skip_syscall(regs: &mut Regs);
    /// Syscalls that overwrite the thread's restart block (so that an
    /// interrupted sleep can no longer be restarted exactly).
    const CLOBBERS_RESTART: &'static [i64];
    /// True if the thread was stopped in a syscall that will restart
    /// through its restart block.
    fn restarts_via_block(regs: &Regs) -> bool;
    /// For a thread stopped in `select`/`pselect6`/`ppoll` that the kernel
    /// will restart: where its timeout lies in user memory and whether it
    /// is a `timeval` (else a `timespec`). The kernel already wrote the
    /// time left at the interruption there; the restart waits that long
    /// again, so the time the thread was held must come off it.
    fn restart_timeout(regs: &Regs) -> Option<(u64, bool)>;
    /// The syscall number at a syscall-entry stop.
    fn syscall_nr(regs: &Regs) -> i64;
    /// The return value of a syscall at its exit stop.
    fn syscall_ret(regs: &Regs) -> i64;
    /// A call's return value as our stub left it at its `rt_sigreturn`.
    fn stub_result(regs: &Regs) -> u64;

    /// A signal frame that restores `resume` (with FP state `fp` of length
    /// `fp_len` from `FP_NOTE`, and `sigmask`) via `rt_sigreturn`, placed
    /// below the red zone under `top`, returning through `restorer`.
    fn sigframe(
        resume: &Regs,
        fp: &[u8],
        fp_is_xstate: bool,
        sigmask: u64,
        altstack: AltStack,
        restorer: u64,
    ) -> Result<Frame>;
}
