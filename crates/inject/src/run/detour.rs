//! The one-shot detour's machine code (x86_64): a trampoline per hooked
//! GIL-holding entry point and a pending-call stub, all sharing one claim
//! flag, so the bootstrap runs once whichever fires first.
//!
//! Layout of the mapping pyattach puts near the interpreter's module:
//! - data pages (read-write): [`FLAG`] (0 free, 1 claimed, 3 cancelled),
//!   [`RESULT`] (the bootstrap's: 0, or -1 if it failed), [`TID`] (the
//!   thread that claimed), [`SITE`] (which trampoline), what a later
//!   pyattach needs to reclaim the pages if this one is killed
//!   ([`PENDING_QUEUED`], [`THREAD_STARTED`], [`KEEP`], [`OWNER`],
//!   [`DATA_LEN`], [`MAGIC`]), and the payload at [`SCRIPT`] (the
//!   NUL-terminated text for `PyRun_SimpleString`, the parameters, the
//!   bootstrap's source);
//! - one code page (read-execute, never writable at the same time): the
//!   trampolines, then, in its last bytes, the strings they pass to the C
//!   API.
//!
//! Every trampoline is correct code on its own: if pyattach dies at any
//! moment, the worst that happens is one bootstrap that finds nobody to talk
//! to and leaves; after that every entry goes through the skip path (a
//! failed `lock cmpxchg`) and on to the original instructions.

use capstone::arch::x86::{ArchMode, X86OperandType, X86Reg};
use capstone::arch::{BuildsCapstone, DetailsArchInsn};
use capstone::{Capstone, RegId};

#[path = "detour_signals.rs"]
mod signals;
pub use signals::Signals;

/// The bytes [`Asm::run_bootstrap`] takes below `rsp` for what it puts
/// aside (see `detour_signals.rs` for the slots).
const FRAME: u8 = 96;

pub const FLAG: u64 = 0;
pub const RESULT: u64 = 4;
pub const TID: u64 = 8;
pub const SITE: u64 = 12;
/// `pthread_t` written by `pthread_create` for the new-thread fallback.
pub const PTHREAD_T: u64 = 16;
/// Set to 1 once `PyRun_SimpleString` has returned.
pub const DONE: u64 = 24;
/// Set to 1 by the pending-call stub when it is about to return (queued
/// and not yet run, it still needs the page).
pub const PENDING_RAN: u64 = 28;
/// Set to 1 by the new-thread function when it is about to return.
pub const THREAD_DONE: u64 = 32;
/// Set to 1 by pyattach before it queues the pending call (and back to 0
/// if the call was not queued), so that a later pyattach finding these
/// pages after this one was killed knows whether [`PENDING_RAN`] matters.
pub const PENDING_QUEUED: u64 = 36;
/// Set to 1 by pyattach before it starts the new-thread fallback (then
/// [`THREAD_DONE`] matters).
pub const THREAD_STARTED: u64 = 40;
/// Set to 1 while a remote call of pyattach may return into the code page
/// (its call stub); stays 1 if the call was left running.
pub const KEEP: u64 = 44;
/// The pid of the pyattach that made the pages: while it lives, they are
/// its own to remove.
pub const OWNER: u64 = 48;
/// The data pages' length (the code page follows them).
pub const DATA_LEN: u64 = 52;
/// [`MAGIC`]: these are pages of pyattach.
pub const MAGIC_AT: u64 = 56;
pub const MAGIC: &[u8; 8] = b"pyattach";
pub const SCRIPT: u64 = 64;
const PAGE: u64 = 4096;

/// Flag values.
pub const FREE: u32 = 0;
pub const CLAIMED: u32 = 1;
pub const CANCELLED: u32 = 3;

/// The data size for a payload of `len` bytes, in whole pages.
pub fn data_len_for(len: usize) -> u64 {
    (SCRIPT + len as u64 + 1).div_ceil(PAGE) * PAGE
}

/// The data pages' contents, made by pyattach process `owner`: the
/// header a later pyattach recognises them by (if this one is killed
/// before it can unmap them), and the payload (the NUL-terminated text for
/// `PyRun_SimpleString`, then what it reads).
pub fn data(payload: &[u8], owner: u32) -> Vec<u8> {
    let len = data_len_for(payload.len());
    let mut d = vec![0u8; len as usize];
    let h = header(len, owner);
    d[OWNER as usize..OWNER as usize + h.len()].copy_from_slice(&h);
    d[SCRIPT as usize..SCRIPT as usize + payload.len()].copy_from_slice(payload);
    d
}

/// The header alone (to be written at [`OWNER`]), for data pages of
/// `data_len` bytes made by pyattach process `owner`: written first, as
/// soon as the pages exist, so that they are known for ours even if this
/// pyattach is killed before it writes the rest.
pub fn header(data_len: u64, owner: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity((SCRIPT - OWNER) as usize);
    h.extend_from_slice(&owner.to_le_bytes());
    h.extend_from_slice(&(data_len as u32).to_le_bytes());
    h.extend_from_slice(MAGIC);
    debug_assert_eq!(OWNER + h.len() as u64, SCRIPT);
    h
}

/// The first bytes of every trampoline [`code`] emits: [`Asm::save_args`].
const SAVE_ARGS: [u8; 13] = [
    0x50, 0x51, 0x52, 0x56, 0x57, 0x41, 0x50, 0x41, 0x51, 0x41, 0x52, 0x41, 0x53,
];

/// The scan of [`Asm::room`] after its `lea rcx, [rip+table]`.
const ROOM_LOOP: [u8; 30] = [
    0x48, 0x8b, 0x01, //             0: mov rax, [rcx]       lowest rsp with room
    0x48, 0x8b, 0x51, 0x08, //       3: mov rdx, [rcx+8]     top of the stack
    0x48, 0x85, 0xd2, //             7: test rdx, rdx
    0x0f, 0x84, 0, 0, 0, 0, //      10: jz exit              end of the table
    0x48, 0x83, 0xc1, 0x10, //      16: add rcx, 16
    0x48, 0x39, 0xd4, //            20: cmp rsp, rdx
    0x73, 0xe7, //                  23: jae 0                above this stack
    0x48, 0x39, 0xc4, //            25: cmp rsp, rax
    0x72, 0xe2, //                  28: jb 0                 below its room
];
/// Where in [`ROOM_LOOP`] the `jz exit`'s rel32 sits.
const ROOM_EXIT: usize = 12;

/// The length of [`Asm::import_lock_free`]'s code.
const IMPORT_LOCK_LEN: usize = 60;

/// If `code` (read at address `at`, the start of an executable page) is
/// the first trampoline of a code page made by [`code`], the address of
/// its data pages (what its claim's `lock cmpxchg` points at); else `None`.
/// `code` must hold at least 192 bytes.
pub fn data_of_code_page(at: u64, code: &[u8]) -> Option<u64> {
    let mut i = SAVE_ARGS.len();
    if code.get(..i)? != SAVE_ARGS {
        return None;
    }
    // The stack check: lea rcx, [rip+disp32]; ROOM_LOOP.
    if code.get(i..i + 3)? == [0x48, 0x8d, 0x0d] {
        if *code.get(i + 7..i + 7 + ROOM_EXIT)? != ROOM_LOOP[..ROOM_EXIT] {
            return None;
        }
        i += 7 + ROOM_LOOP.len();
    }
    // Python 2's import-lock check (Asm::import_lock_free): mov rcx, imm64;
    // cmp qword [rcx], -1; ...; jne rel32.
    if code.get(i..i + 2)? == [0x48, 0xb9] {
        if code.get(i + 10..i + 14)? != [0x48, 0x83, 0x39, 0xff]
            || code.get(i + IMPORT_LOCK_LEN - 6..i + IMPORT_LOCK_LEN - 4)? != [0x0f, 0x85]
        {
            return None;
        }
        i += IMPORT_LOCK_LEN;
    }
    // The `--thread` check: mov eax, SYS_gettid; syscall; cmp eax, imm32; jne rel32.
    if code.get(i..i + 7)? == [0xb8, 0xba, 0, 0, 0, 0x0f, 0x05] {
        if code.get(i + 7)? != &0x3d || code.get(i + 12..i + 14)? != [0x0f, 0x85] {
            return None;
        }
        i += 18;
    }
    // xor eax, eax; mov ecx, CLAIMED; lock cmpxchg [rip+disp32], ecx
    let claim = [0x31, 0xc0, 0xb9, 1, 0, 0, 0, 0xf0, 0x0f, 0xb1, 0x0d];
    if code.get(i..i + claim.len())? != claim {
        return None;
    }
    i += claim.len();
    let disp = i32::from_le_bytes(code.get(i..i + 4)?.try_into().ok()?);
    let next = at + i as u64 + 4;
    Some(next.wrapping_add(disp as i64 as u64).wrapping_sub(FLAG))
}

/// The original instructions moved out of a hooked entry, rewritten to run
/// at their new place.
#[derive(Clone, Debug)]
pub struct Relocated {
    /// How many bytes of the entry they covered (>= 5, the `jmp rel32`).
    pub len: usize,
    /// The entry's original bytes over that length.
    pub original: Vec<u8>,
    insns: Vec<Moved>,
}

/// One moved instruction: its old address, its bytes, and where in them a
/// rel32 displacement sits with the absolute address it must keep meaning.
type Moved = (u64, Vec<u8>, Option<(usize, i64)>);

/// Why an entry cannot be hooked.
#[derive(Debug, thiserror::Error)]
pub enum DetourError {
    #[error("capstone: {0}")]
    Capstone(String),
    #[error("instruction `{0}` in the first bytes cannot be moved")]
    Unmovable(String),
    #[error("the entry does not decode")]
    Undecodable,
    #[error("the entry already jumps elsewhere (a detour of an earlier pyattach still in place?)")]
    AlreadyPatched,
}

/// Decodes the instructions at `entry` (bytes `code`, read from the target)
/// until they cover 5 bytes, and checks each can run elsewhere: anything
/// relative to `rip` other than a memory operand (branches, calls, loops)
/// is refused.
pub fn relocate(entry: u64, code: &[u8]) -> Result<Relocated, DetourError> {
    let cs = Capstone::new()
        .x86()
        .mode(ArchMode::Mode64)
        .detail(true)
        .build()
        .map_err(|e| DetourError::Capstone(e.to_string()))?;
    let insns = cs
        .disasm_all(code, entry)
        .map_err(|e| DetourError::Capstone(e.to_string()))?;
    let mut out = Vec::new();
    let mut len = 0usize;
    for insn in insns.iter() {
        if len >= 5 {
            break;
        }
        let detail = cs
            .insn_detail(insn)
            .map_err(|e| DetourError::Capstone(e.to_string()))?;
        let groups: Vec<String> = detail
            .groups()
            .iter()
            .filter_map(|g| cs.group_name(*g))
            .collect();
        let text = format!(
            "{} {}",
            insn.mnemonic().unwrap_or("?"),
            insn.op_str().unwrap_or("")
        );
        // A plain `call rel32` (e8) moves: its displacement is re-aimed and
        // the callee returns into the trampoline, which carries on with the
        // next moved instruction. Other branches do not.
        if insn.bytes().len() == 5 && insn.bytes()[0] == 0xe8 {
            let rel = i32::from_le_bytes(insn.bytes()[1..5].try_into().expect("4 bytes"));
            let target = (insn.address() + 5).wrapping_add(rel as i64 as u64);
            out.push((
                insn.address(),
                insn.bytes().to_vec(),
                Some((1, target as i64)),
            ));
            len += 5;
            continue;
        }
        // A `jmp rel32` (e9) or `jmp rel8` (eb) that ends the bytes the
        // patch covers moves too, as a `jmp rel32` re-aimed at the same
        // place: CET builds start small functions with `endbr64; jmp
        // other` (Debian's `PyEval_ReleaseThread`, through which 3.13+
        // parks threads). Only as the last instruction: the bytes after an
        // unconditional jump are another path's, never this one's, and
        // the patch must not cover them.
        let jmp_rel = match insn.bytes() {
            [0xe9, d @ ..] if d.len() == 4 => {
                Some(i32::from_le_bytes(d.try_into().expect("4 bytes")) as i64)
            }
            [0xeb, d] => Some(*d as i8 as i64),
            _ => None,
        };
        if let Some(rel) = jmp_rel {
            if len + insn.len() < 5 {
                return Err(DetourError::Unmovable(text));
            }
            let target = (insn.address() + insn.len() as u64).wrapping_add(rel as u64);
            out.push((
                insn.address(),
                vec![0xe9, 0, 0, 0, 0],
                Some((1, target as i64)),
            ));
            len += insn.len();
            break;
        }
        if groups.iter().any(|g| {
            matches!(
                g.as_str(),
                "jump" | "call" | "ret" | "branch_relative" | "int" | "iret"
            )
        }) {
            return Err(DetourError::Unmovable(text));
        }
        let fix = rip_relative(insn, &detail, &text)?;
        out.push((insn.address(), insn.bytes().to_vec(), fix));
        len += insn.len();
    }
    if len < 5 {
        return Err(DetourError::Undecodable);
    }
    Ok(Relocated {
        len,
        original: code[..len].to_vec(),
        insns: out,
    })
}

/// Where in `insn` a `rip`-relative memory operand's 32-bit displacement
/// sits, and the absolute address it means (to keep meaning it once the
/// instruction is moved); `None` if it has none.
fn rip_relative(
    insn: &capstone::Insn,
    detail: &capstone::InsnDetail,
    text: &str,
) -> Result<Option<(usize, i64)>, DetourError> {
    let arch = detail.arch_detail();
    let x86 = arch.x86().ok_or(DetourError::Undecodable)?;
    let mut fix = None;
    for op in x86.operands() {
        if let X86OperandType::Mem(m) = op.op_type {
            if m.base() == RegId(X86Reg::X86_REG_RIP as u16) {
                let span = x86
                    .encoding()
                    .disp
                    .ok_or_else(|| DetourError::Unmovable(text.to_string()))?;
                if span.size != 4 {
                    return Err(DetourError::Unmovable(text.to_string()));
                }
                // The absolute address the operand means.
                let target = (insn.address() + insn.len() as u64).wrapping_add(m.disp() as u64);
                fix = Some((span.offset as usize, target as i64));
            }
        }
    }
    Ok(fix)
}

/// The bytes that replace a hooked entry: `jmp rel32` to the trampoline,
/// then `int3`s over the rest of the moved instructions (never executed:
/// nothing jumps into the middle of an entry's first instructions).
pub fn entry_patch(entry: u64, tramp: u64, len: usize) -> Vec<u8> {
    let mut p = vec![0xe9]; // e9 rel32  jmp tramp
    p.extend_from_slice(&rel32(entry + 5, tramp).to_le_bytes());
    p.resize(len, 0xcc);
    p
}

fn rel32(from_next: u64, to: u64) -> i32 {
    let d = to.wrapping_sub(from_next) as i64;
    i32::try_from(d).expect("trampoline within ±2 GiB (map_near)")
}

/// Assembles code at a known address.
struct Asm {
    at: u64,
    b: Vec<u8>,
    /// Calls of the bootstrap subroutine, emitted once after the rest
    /// (see [`Asm::bootstrap_subroutine`]): fixups.
    calls: Vec<usize>,
}

impl Asm {
    fn here(&self) -> u64 {
        self.at + self.b.len() as u64
    }
    fn raw(&mut self, bytes: &[u8]) {
        self.b.extend_from_slice(bytes);
    }
    /// An instruction ending with a rip-relative disp32 to `target`.
    fn rip(&mut self, opcode: &[u8], target: u64, trailing: &[u8]) {
        self.raw(opcode);
        let next = self.here() + 4 + trailing.len() as u64;
        self.raw(&rel32(next, target).to_le_bytes());
        self.raw(trailing);
    }
    /// `call rax`, then wipes the return address the call left just below
    /// `rsp`. A stale copy of it, later inside some live frame of this
    /// thread, would look like a thread still due to return into the page
    /// and keep the page mapped for ever (see `Leftover::remove`).
    fn call_rax_and_forget(&mut self) {
        self.raw(&[0xff, 0xd0]); //                         ff d0       call rax
        self.forget_return();
    }
    /// `mov qword [rsp-8], 0`: the slot `ret` just popped (flags untouched).
    fn forget_return(&mut self) {
        self.raw(&[0x48, 0xc7, 0x44, 0x24, 0xf8, 0, 0, 0, 0]);
    }
    /// `mov dword [rip+disp], 1`.
    fn set_flag(&mut self, at: u64) {
        self.rip(&[0xc7, 0x05], at, &1u32.to_le_bytes());
    }
    /// `jne rel32` to a label patched later; returns the fixup position.
    fn jne_fwd(&mut self) -> usize {
        self.raw(&[0x0f, 0x85, 0, 0, 0, 0]); // 0f 85 rel32  jne
        self.b.len() - 4
    }
    fn land(&mut self, fixups: &[usize]) {
        let here = self.here();
        for &f in fixups {
            let next = self.at + f as u64 + 4;
            self.b[f..f + 4].copy_from_slice(&rel32(next, here).to_le_bytes());
        }
    }
    /// Claims the flag (only in thread `only_tid`, if given): falls through
    /// if this thread won. Clobbers rax, rcx, r11. Returns the fixups to
    /// the "not claimed" exit.
    fn claim(&mut self, data: u64, only_tid: Option<i32>) -> Vec<usize> {
        let mut out = Vec::new();
        if let Some(tid) = only_tid {
            self.raw(&[0xb8, 0xba, 0, 0, 0]); // b8 ba 00 00 00  mov eax, SYS_gettid (186)
            self.raw(&[0x0f, 0x05]); //          0f 05           syscall
            self.raw(&[0x3d]); //                3d imm32        cmp eax, tid
            self.raw(&tid.to_le_bytes());
            out.push(self.jne_fwd());
        }
        self.raw(&[0x31, 0xc0]); //                31 c0          xor eax, eax
        self.raw(&[0xb9, 1, 0, 0, 0]); //          b9 01 00 00 00 mov ecx, CLAIMED
        self.rip(&[0xf0, 0x0f, 0xb1, 0x0d], data + FLAG, &[]); // f0 0f b1 0d  lock cmpxchg [rip+FLAG], ecx
        out.push(self.jne_fwd());
        out
    }
    /// Falls through only if `rsp` lies in one of the stacks of `table`
    /// with room enough below it: the table's entries are `(lowest, top)`
    /// pairs (the lowest `rsp` with room enough, the end of the stack),
    /// ending with a `top` of 0. A thread elsewhere (a stack too small, a
    /// stack born after the table, an alternate signal stack) takes the
    /// original code: the bootstrap never runs where it could overflow the
    /// stack. Clobbers rax, rcx, rdx. Returns the fixup to the exit.
    fn room(&mut self, table: u64) -> usize {
        self.rip(&[0x48, 0x8d, 0x0d], table, &[]); // 48 8d 0d    lea rcx, [rip+table]
        self.raw(&ROOM_LOOP); // see ROOM_LOOP
        self.b.len() - ROOM_LOOP.len() + ROOM_EXIT
    }
    /// Falls through only if Python 2's import lock is free or held by
    /// this thread (`lock`: where its holder's ident is kept, -1 when free,
    /// and `PyThread_get_thread_ident`): a thread taken while another one
    /// is inside an import would wait for it at the bootstrap's first
    /// import (seconds in a slow one; for good in one that never ends).
    /// Another thread claims once the import is done, or the new-thread
    /// fallback, whose waiting stalls nobody. Expects a 16-byte aligned
    /// `rsp`; clobbers the caller-saved registers. Returns the fixup to the
    /// exit.
    fn import_lock_free(&mut self, lock: (u64, u64)) -> usize {
        let (holder, ident) = lock;
        let start = self.b.len();
        self.mov_imm(&[0x48, 0xb9], holder); //       48 b9 imm64     mov rcx, &import_lock_thread
        self.raw(&[0x48, 0x83, 0x39, 0xff]); //       48 83 39 ff     cmp qword [rcx], -1
        self.raw(&[0x0f, 0x84, 0, 0, 0, 0]); //       0f 84 rel32     je free
        let free = self.b.len() - 4;
        self.mov_imm(&[0x48, 0xb8], ident); //        48 b8 imm64     mov rax, PyThread_get_thread_ident
        self.call_rax_and_forget();
        self.mov_imm(&[0x48, 0xb9], holder); //       48 b9 imm64     mov rcx, &import_lock_thread
        self.raw(&[0x48, 0x3b, 0x01]); //             48 3b 01        cmp rax, [rcx]
        let held = self.jne_fwd();
        self.land(&[free]);
        debug_assert_eq!(self.b.len() - start, IMPORT_LOCK_LEN);
        held
    }
    /// Claims the flag and, if this thread won, records who and runs the
    /// bootstrap (see [`Asm::run_bootstrap`]). Expects a 16-byte aligned
    /// `rsp`; clobbers the caller-saved registers. Returns the fixups to
    /// the "not claimed" exit.
    fn claim_and_run(&mut self, l: &Layout, site: u32, only_tid: Option<i32>) -> Vec<usize> {
        let out = self.claim(l.data, only_tid);
        self.raw(&[0xb8, 0xba, 0, 0, 0]); //       b8 ba 00 00 00 mov eax, SYS_gettid
        self.raw(&[0x0f, 0x05]); //                0f 05          syscall
        self.rip(&[0x89, 0x05], l.data + TID, &[]); // 89 05      mov [rip+TID], eax
        self.rip(&[0xc7, 0x05], l.data + SITE, &site.to_le_bytes()); // c7 05 .. imm32  mov dword [rip+SITE], site
        self.raw(&[0xe8, 0, 0, 0, 0]); // e8 rel32  call the bootstrap subroutine
        self.calls.push(self.b.len() - 4);
        self.forget_return();
        self.rip(&[0x89, 0x05], l.data + RESULT, &[]); // 89 05   mov [rip+RESULT], eax
        self.set_flag(l.data + DONE);
        out
    }
    /// Runs the bootstrap; `eax` is 0, or -1 if it failed (nothing is
    /// raised into the caller either way). With [`Fast`], the bootstrap's
    /// `start` kept in the target by an earlier injection is called
    /// directly, `start(blob, blob_len)`: nothing to compile, nothing run
    /// in `__main__`; else (and when there is none yet)
    /// `PyRun_SimpleString(script)`, whose text defines it. An exception
    /// the interrupted code had set is put aside meanwhile and back after
    /// (`PyErr_Fetch`/`PyErr_Restore`): the bootstrap must neither see it
    /// nor clear it. So is, on Python 3, the exception the thread was
    /// handling (`PyErr_GetExcInfo`/`PyErr_SetExcInfo`): a thread caught
    /// inside an `except` block (a retry loop's sleep) would otherwise lend
    /// it to the code run, as the context of the code's own exceptions and
    /// as what `sys.exc_info()` says. Expects a 16-byte aligned `rsp`.
    fn run_bootstrap(&mut self, l: &Layout) {
        if let Some(x) = l.keep_error {
            // [rsp, +8, +16]: the error set; [+24, +32, +40]: the one handled.
            self.raw(&[0x48, 0x83, 0xec, FRAME]); //      48 83 ec imm8   sub rsp, FRAME
            self.raw(&[0x48, 0x89, 0xe7]); //             48 89 e7        mov rdi, rsp
            self.raw(&[0x48, 0x8d, 0x74, 0x24, 0x08]); // 48 8d 74 24 08  lea rsi, [rsp+8]
            self.raw(&[0x48, 0x8d, 0x54, 0x24, 0x10]); // 48 8d 54 24 10  lea rdx, [rsp+16]
            self.mov_imm(&[0x48, 0xb8], x.fetch); //      mov rax, PyErr_Fetch
            self.call_rax_and_forget();
            if let Some((get, set)) = x.exc_info {
                self.raw(&[0x48, 0x8d, 0x7c, 0x24, 0x18]); // lea rdi, [rsp+24]
                self.raw(&[0x48, 0x8d, 0x74, 0x24, 0x20]); // lea rsi, [rsp+32]
                self.raw(&[0x48, 0x8d, 0x54, 0x24, 0x28]); // lea rdx, [rsp+40]
                self.mov_imm(&[0x48, 0xb8], get); //          mov rax, PyErr_GetExcInfo (new references)
                self.call_rax_and_forget();
                self.raw(&[0x31, 0xff, 0x31, 0xf6, 0x31, 0xd2]); // xor edi, edi; xor esi, esi; xor edx, edx
                self.mov_imm(&[0x48, 0xb8], set); //          mov rax, PyErr_SetExcInfo (none handled)
                self.call_rax_and_forget();
            }
        }
        let mut slow = Vec::new();
        let mut done = Vec::new();
        if let (Some(f), Some(x), Some(s)) = (l.fast, l.keep_error, l.signals) {
            self.call_start_with_signals(l, f, x, s);
        } else if let Some(f) = l.fast {
            slow.extend(self.lookup_start(&f));
            self.call_start(&f, None);
            let failed = self.jz_if_rax_null();
            self.raw(&[0x48, 0x89, 0xc7]); //             48 89 c7        mov rdi, rax
            self.mov_imm(&[0x48, 0xb8], f.decref); //     mov rax, Py_DecRef
            self.call_rax_and_forget();
            self.raw(&[0x31, 0xc0]); //                   31 c0           xor eax, eax
            done.push(self.jmp_fwd());
            self.land(&[failed]);
            self.mov_imm(&[0x48, 0xb8], f.clear); //      mov rax, PyErr_Clear
            self.call_rax_and_forget();
            self.raw(&[0xb8, 0xff, 0xff, 0xff, 0xff]); // b8 imm32        mov eax, -1
            done.push(self.jmp_fwd());
        }
        if l.fast.is_none() || l.keep_error.is_none() || l.signals.is_none() {
            self.land(&slow);
            self.run_script(l);
        }
        self.land(&done);
        if let Some(x) = l.keep_error {
            self.raw(&[0x50]); //                         50              push rax (the result)
            self.raw(&[0x48, 0x83, 0xec, 0x08]); //       48 83 ec 08     sub rsp, 8 (align)
                                                 // The saved triples are now 16 bytes further up.
            if let Some((_, set)) = x.exc_info {
                self.raw(&[0x48, 0x8b, 0x7c, 0x24, 0x28]); // mov rdi, [rsp+40]
                self.raw(&[0x48, 0x8b, 0x74, 0x24, 0x30]); // mov rsi, [rsp+48]
                self.raw(&[0x48, 0x8b, 0x54, 0x24, 0x38]); // mov rdx, [rsp+56]
                self.mov_imm(&[0x48, 0xb8], set); //          mov rax, PyErr_SetExcInfo (takes them)
                self.call_rax_and_forget();
            }
            self.raw(&[0x48, 0x8b, 0x7c, 0x24, 0x10]); // 48 8b 7c 24 10  mov rdi, [rsp+16]
            self.raw(&[0x48, 0x8b, 0x74, 0x24, 0x18]); // 48 8b 74 24 18  mov rsi, [rsp+24]
            self.raw(&[0x48, 0x8b, 0x54, 0x24, 0x20]); // 48 8b 54 24 20  mov rdx, [rsp+32]
            self.mov_imm(&[0x48, 0xb8], x.restore); //    mov rax, PyErr_Restore
            self.call_rax_and_forget();
            self.raw(&[0x48, 0x83, 0xc4, 0x08]); //       48 83 c4 08     add rsp, 8
            self.raw(&[0x58]); //                         58              pop rax
            self.raw(&[0x48, 0x83, 0xc4, FRAME]); //      48 83 c4 imm8   add rsp, FRAME
        }
    }
    /// `rax` = the bootstrap's `start` kept in the target (borrowed), or
    /// a jump to the returned fixups if there is none yet.
    fn lookup_start(&mut self, f: &Fast) -> [usize; 2] {
        self.mov_imm(&[0x48, 0xbf], f.name); //       mov rdi, "_pyattach_code"
        self.mov_imm(&[0x48, 0xb8], f.sys_get); //    mov rax, PySys_GetObject
        self.call_rax_and_forget();
        let a = self.jz_if_rax_null();
        self.raw(&[0x48, 0x89, 0xc7]); //             48 89 c7        mov rdi, rax
        self.mov_imm(&[0x48, 0xbe], f.key); //        mov rsi, key
        self.mov_imm(&[0x48, 0xb8], f.dict_get); //   mov rax, PyDict_GetItemString
        self.call_rax_and_forget();
        [a, self.jz_if_rax_null()]
    }
    /// `start(blob, blob_len)`, `start` in `rax`; with `exc`, the slot of
    /// an exception to pass as a third argument if it is not NULL.
    /// `rax`: the call's result.
    fn call_start(&mut self, f: &Fast, exc: Option<u8>) {
        self.raw(&[0x48, 0x89, 0xc7]); //             48 89 c7        mov rdi, rax
        self.mov_imm(&[0x48, 0xbe], f.fmt); //        mov rsi, "KK"
        if let Some(slot) = exc {
            self.mov_imm(&[0x49, 0xbb], f.fmt_exc); // mov r11, "KKO"
            self.raw(&[0x4c, 0x8b, 0x44, 0x24, slot]); // 4c 8b 44 24 d8 mov r8, [rsp+slot]
            self.raw(&[0x4d, 0x85, 0xc0]); //         4d 85 c0        test r8, r8
            self.raw(&[0x49, 0x0f, 0x45, 0xf3]); //   49 0f 45 f3     cmovnz rsi, r11
        }
        self.mov_imm(&[0x48, 0xba], f.blob); //       mov rdx, blob
        self.mov_imm(&[0x48, 0xb9], f.blob_len); //   mov rcx, blob_len
        self.mov_imm(&[0x49, 0xba], f.call); //       mov r10, PyObject_CallFunction
        self.raw(&[0x31, 0xc0]); //                   31 c0           xor eax, eax (no vector args)
        self.raw(&[0x41, 0xff, 0xd2]); //             41 ff d2        call r10
        self.forget_return();
    }
    /// `PyRun_SimpleString(script)`: the text that defines the bootstrap
    /// (and calls it).
    fn run_script(&mut self, l: &Layout) {
        self.mov_imm(&[0x48, 0xbf], l.data + SCRIPT); // mov rdi, script
        self.mov_imm(&[0x48, 0xb8], l.run); //           mov rax, PyRun_SimpleString
        self.call_rax_and_forget();
    }
    /// [`Asm::run_bootstrap`] once, as a subroutine every claim calls (a
    /// copy per trampoline would not fit in the code page).
    fn bootstrap_subroutine(&mut self, l: &Layout) {
        if self.calls.is_empty() {
            return;
        }
        let calls = std::mem::take(&mut self.calls);
        self.land(&calls);
        self.raw(&[0x48, 0x83, 0xec, 0x08]); // 48 83 ec 08  sub rsp, 8 (aligns rsp to 16)
        self.run_bootstrap(l);
        self.raw(&[0x48, 0x83, 0xc4, 0x08]); // 48 83 c4 08  add rsp, 8
        self.raw(&[0xc3]); //                   c3           ret
    }
    /// `mov reg, imm64` with the given opcode bytes (REX.W + B8+r).
    fn mov_imm(&mut self, opcode: &[u8], v: u64) {
        self.raw(opcode);
        self.raw(&v.to_le_bytes());
    }
    /// `test rax, rax; jz rel32` to a label patched later.
    fn jz_if_rax_null(&mut self) -> usize {
        self.raw(&[0x48, 0x85, 0xc0]); // 48 85 c0  test rax, rax
        self.raw(&[0x0f, 0x84, 0, 0, 0, 0]); // 0f 84 rel32  jz
        self.b.len() - 4
    }
    /// `jmp rel32` to a label patched later.
    fn jmp_fwd(&mut self) -> usize {
        self.raw(&[0xe9, 0, 0, 0, 0]); // e9 rel32  jmp
        self.b.len() - 4
    }
    /// At a function's entry only the argument registers (and rax, the
    /// vector count of a varargs call) carry meaning; callee-saved ones are
    /// kept by whatever is called. Nine pushes after the return address
    /// leave rsp 16-byte aligned for a call.
    fn save_args(&mut self) {
        self.raw(&[0x50, 0x51, 0x52, 0x56, 0x57]); // push rax, rcx, rdx, rsi, rdi
        self.raw(&[0x41, 0x50, 0x41, 0x51, 0x41, 0x52, 0x41, 0x53]); // push r8, r9, r10, r11
    }
    fn restore_args(&mut self) {
        self.raw(&[0x41, 0x5b, 0x41, 0x5a, 0x41, 0x59, 0x41, 0x58]); // pop r11, r10, r9, r8
        self.raw(&[0x5f, 0x5e, 0x5a, 0x59, 0x58]); // pop rdi, rsi, rdx, rcx, rax
    }
    /// The entry's moved instructions, rip-relative operands re-aimed, then
    /// a jump back to the rest of the function.
    fn moved_then_back(&mut self, entry: u64, reloc: &Relocated) {
        for (_, bytes, fix) in &reloc.insns {
            let start = self.b.len();
            self.raw(bytes);
            if let Some((off, target)) = fix {
                let next = self.at + (start + bytes.len()) as u64;
                let d = rel32(next, *target as u64);
                self.b[start + off..start + off + 4].copy_from_slice(&d.to_le_bytes());
            }
            if bytes[0] == 0xe8 {
                // A moved call returned here: wipe its return address.
                self.forget_return();
            }
        }
        self.raw(&[0xe9]); // e9 rel32  jmp entry + len
        let next = self.here() + 4;
        self.raw(&rel32(next, entry + reloc.len as u64).to_le_bytes());
        while self.b.len() % 16 != 0 {
            self.raw(&[0xcc]);
        }
    }
}

/// Where things are, for assembling the code page.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// Start of the data pages.
    pub data: u64,
    /// Start of the code page.
    pub code: u64,
    /// `PyRun_SimpleString`.
    pub run: u64,
    /// Only this thread may claim (`--thread`).
    pub only_tid: Option<i32>,
    /// The stacks with room for the bootstrap (see [`Asm::room`]): a table
    /// in the data pages; `None`: every thread may claim, whatever its
    /// stack.
    pub stacks: Option<u64>,
    /// `PyGILState_Ensure` and `PyGILState_Release`, for the new-thread
    /// fallback (0 when absent: no thread function is emitted).
    pub ensure: u64,
    pub release: u64,
    /// Calling the bootstrap kept in the target directly (else always
    /// through `PyRun_SimpleString`).
    pub fast: Option<Fast>,
    /// Putting a pending exception aside while the bootstrap runs.
    pub keep_error: Option<KeepError>,
    /// Running Python signal handlers already due before the bootstrap,
    /// their exception handed to it (needs `fast` and `keep_error`).
    pub signals: Option<Signals>,
    /// Python 2: where the import lock's holder is kept, and
    /// `PyThread_get_thread_ident` (see [`Asm::import_lock_free`]).
    pub import_lock: Option<(u64, u64)>,
}

/// What calling the bootstrap's `start` directly needs: C API functions of
/// the target, and where pyattach wrote their arguments.
#[derive(Clone, Copy, Debug)]
pub struct Fast {
    /// `PySys_GetObject`, `PyDict_GetItemString`, `PyObject_CallFunction`,
    /// `Py_DecRef`, `PyErr_Clear`.
    pub sys_get: u64,
    pub dict_get: u64,
    pub call: u64,
    pub decref: u64,
    pub clear: u64,
    /// NUL-terminated: the `sys` attribute (`_pyattach_code`), the key of
    /// this bootstrap in it, the call's format (`KK`).
    pub name: u64,
    pub key: u64,
    pub fmt: u64,
    /// `KKO`: the same with an exception for the application.
    pub fmt_exc: u64,
    /// The parameters' blob and its length: `start`'s arguments.
    pub blob: u64,
    pub blob_len: u64,
}

/// `PyErr_Fetch` and `PyErr_Restore`; `PyErr_GetExcInfo` and
/// `PyErr_SetExcInfo` where the interpreter has them (3.3+).
#[derive(Clone, Copy, Debug)]
pub struct KeepError {
    pub fetch: u64,
    pub restore: u64,
    pub exc_info: Option<(u64, u64)>,
}

/// The strings [`Fast`] points at, `key` being the bootstrap's, in the
/// order and at the offsets [`fast_strings_at`] gives.
pub fn fast_strings(key: &str) -> Vec<u8> {
    let mut out = b"_pyattach_code\0KK\0KKO\0__main__\0".to_vec();
    out.extend_from_slice(key.as_bytes());
    out.push(0);
    out
}

/// Where the strings of [`fast_strings`] are once written at `at`:
/// (name, fmt, fmt_exc, `__main__`, key).
pub fn fast_strings_at(at: u64) -> (u64, u64, u64, u64, u64) {
    (at, at + 15, at + 18, at + 22, at + 31)
}

/// [`SITE`] value of the new-thread fallback.
pub const THREAD_SITE: u32 = 0xfe;

/// The assembled code page.
pub struct Code {
    pub bytes: Vec<u8>,
    /// One trampoline per hooked entry, in order.
    pub tramps: Vec<u64>,
    /// `int stub(void *)` for `Py_AddPendingCall`.
    pub pending_stub: u64,
    /// `void *fn(void *)` for `pthread_create`, if `ensure` was given.
    pub thread_fn: Option<u64>,
}

/// The code page: one trampoline per hooked entry (`sites`: entry address
/// and its relocated instructions), then the pending-call stub. Returns the
/// bytes and the address of each trampoline and of the stub.
pub fn code(l: &Layout, sites: &[(u64, &Relocated)]) -> Code {
    let mut a = Asm {
        at: l.code,
        b: Vec::new(),
        calls: Vec::new(),
    };
    let mut tramps = Vec::new();
    for (i, (entry, reloc)) in sites.iter().enumerate() {
        tramps.push(a.here());
        a.save_args();
        let mut skip = Vec::new();
        if let Some(table) = l.stacks {
            skip.push(a.room(table));
        }
        if let Some(lock) = l.import_lock {
            skip.push(a.import_lock_free(lock));
        }
        skip.extend(a.claim_and_run(l, i as u32 + 1, l.only_tid));
        a.land(&skip);
        a.restore_args();
        a.moved_then_back(*entry, reloc);
    }
    // int stub(void *): a pending call. Runs in the main thread at the eval
    // loop's breaker, GIL held; always returns 0 (non-zero would make the
    // eval loop raise SystemError with no exception set).
    let stub = a.here();
    a.raw(&[0x53]); // 53  push rbx   (aligns rsp to 16)
    let mut out = Vec::new();
    if let Some(table) = l.stacks {
        out.push(a.room(table));
    }
    if let Some(lock) = l.import_lock {
        out.push(a.import_lock_free(lock));
    }
    out.extend(a.claim_and_run(l, 0, None));
    a.land(&out);
    a.set_flag(l.data + PENDING_RAN);
    a.raw(&[0x5b]); // 5b     pop rbx
    a.raw(&[0x31, 0xc0]); // 31 c0  xor eax, eax
    a.raw(&[0xc3]); // c3     ret
                    // void *fn(void *): the new-thread fallback, started with
                    // pthread_create. Takes the GIL like any C thread calling into Python,
                    // and only then claims: a thread that gets the GIL after pyattach gave
                    // up (flag cancelled) just gives it back and ends.
    let thread_fn = (l.ensure != 0).then(|| {
        let f = a.here();
        a.raw(&[0x53]); //                53             push rbx (aligns rsp)
        a.raw(&[0x48, 0xb8]); //          48 b8 imm64    mov rax, PyGILState_Ensure
        a.raw(&l.ensure.to_le_bytes());
        a.call_rax_and_forget();
        a.raw(&[0x89, 0xc3]); //          89 c3          mov ebx, eax
        let out = a.claim_and_run(l, THREAD_SITE, None);
        a.land(&out);
        a.raw(&[0x89, 0xdf]); //          89 df          mov edi, ebx
        a.raw(&[0x48, 0xb8]); //          48 b8 imm64    mov rax, PyGILState_Release
        a.raw(&l.release.to_le_bytes());
        a.call_rax_and_forget();
        a.set_flag(l.data + THREAD_DONE);
        a.raw(&[0x5b]); //                5b             pop rbx
        a.raw(&[0x31, 0xc0]); //          31 c0          xor eax, eax
        a.raw(&[0xc3]); //                c3             ret
        f
    });
    a.bootstrap_subroutine(l);
    Code {
        bytes: a.b,
        tramps,
        pending_stub: stub,
        thread_fn,
    }
}

mod raise;
pub use raise::{raising_code, RaiseLayout};

#[cfg(test)]
mod tests;
