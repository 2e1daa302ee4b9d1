//! A signal whose Python handler is already due when a trampoline claims
//! (the thread was caught in `PyErr_CheckSignals`, or at the eval breaker
//! the signal set): its handler would run at the first instruction of the
//! bootstrap, before the bootstrap defers handlers, and its exception
//! (SIGTERM's `SystemExit`, a timeout's) would be lost there (cleared with
//! the failed call, or printed by `PyRun_SimpleString`). So the handlers
//! due run first, from the trampoline, with no Python code of pyattach's
//! on the stack (`PyErr_CheckSignals`, which does nothing outside the main
//! thread); an exception they raise is normalised and handed to the
//! bootstrap's `start` as its third argument, which has it raised again in
//! the application once the thread is back there (`bootstrap/signals.py`).
//! A handler that still raises at `start`'s first instruction (a signal
//! that came meanwhile) makes the call fail: the call is made again with
//! that exception, at most [`CALLS`] times in all. The same for the text
//! that defines `start` in a target that has none yet, run with
//! `PyRun_StringFlags` (`PyRun_SimpleString` would print such an
//! exception to the target's stderr and drop it).

use super::{Asm, Fast, KeepError, Layout};

/// `PyErr_CheckSignals` and `PyErr_NormalizeException`; what running the
/// text without `PyRun_SimpleString` needs: `PyImport_AddModule`,
/// `PyModule_GetDict`, `PyRun_StringFlags`, and where the string
/// `__main__` is.
#[derive(Clone, Copy, Debug)]
pub struct Signals {
    pub check: u64,
    pub normalize: u64,
    pub add_module: u64,
    pub get_dict: u64,
    pub run_string: u64,
    pub main_name: u64,
}

// Slots below `rsp` in [`super::FRAME`] (0..48 are `run_bootstrap`'s).
/// The exception for the application: type, value, traceback (new
/// references, or NULL).
const E_T: u8 = 48;
const E_V: u8 = 56;
const E_TB: u8 = 64;
/// The result (dword).
const RES: u8 = 80;
/// Calls of `start` made (dword).
const COUNT: u8 = 84;
/// At most this many calls of `start`.
const CALLS: u8 = 3;

impl Asm {
    /// The bootstrap run through `start(blob, len[, exc])`, defined first
    /// by the text when the target has none yet; `eax` is its result.
    /// Expects `run_bootstrap`'s frame.
    pub(super) fn call_start_with_signals(
        &mut self,
        l: &Layout,
        f: Fast,
        x: KeepError,
        s: Signals,
    ) {
        self.raw(&[0x31, 0xc0]); //                   31 c0           xor eax, eax
        for slot in [E_T, E_V, E_TB] {
            self.raw(&[0x48, 0x89, 0x44, 0x24, slot]); // 48 89 44 24 d8  mov [rsp+slot], rax
        }
        self.raw(&[0xc7, 0x44, 0x24, COUNT, 0, 0, 0, 0]); // c7 44 24 d8 imm32  mov dword [rsp+COUNT], 0
        self.raw(&[0xc7, 0x44, 0x24, RES, 0xff, 0xff, 0xff, 0xff]); // mov dword [rsp+RES], -1
        self.mov_imm(&[0x48, 0xb8], s.check); //      mov rax, PyErr_CheckSignals
        self.call_rax_and_forget();
        self.raw(&[0x85, 0xc0]); //                   85 c0           test eax, eax
        self.raw(&[0x0f, 0x84, 0, 0, 0, 0]); //       0f 84 rel32     jz
        let no_signal = self.b.len() - 4;
        self.fetch_exception(x, s);
        self.land(&[no_signal]);
        // One attempt: at most CALLS in all.
        let again = self.here();
        self.raw(&[0x83, 0x7c, 0x24, COUNT, CALLS]); // 83 7c 24 d8 ib cmp dword [rsp+COUNT], CALLS
        self.raw(&[0x0f, 0x8d, 0, 0, 0, 0]); //       0f 8d rel32     jge done
        let mut done = vec![self.b.len() - 4];
        self.raw(&[0xff, 0x44, 0x24, COUNT]); //      ff 44 24 d8     inc dword [rsp+COUNT]
        let slow = self.lookup_start(&f);
        self.call_start(&f, Some(E_V));
        let mut failed = vec![self.jz_if_rax_null()];
        self.decref_rax(&f);
        done.push(self.jmp_fwd());
        // None yet: the text defines it and runs this injection, in
        // `__main__`'s globals as `PyRun_SimpleString` would, but an
        // exception that escapes it (a handler's, at its first
        // instruction, before its `try`) is not printed but kept.
        self.land(&slow);
        self.mov_imm(&[0x48, 0xbf], s.main_name); //  mov rdi, "__main__"
        self.mov_imm(&[0x48, 0xb8], s.add_module); // mov rax, PyImport_AddModule
        self.call_rax_and_forget();
        failed.push(self.jz_if_rax_null());
        self.raw(&[0x48, 0x89, 0xc7]); //             48 89 c7        mov rdi, rax
        self.mov_imm(&[0x48, 0xb8], s.get_dict); //   mov rax, PyModule_GetDict
        self.call_rax_and_forget();
        self.raw(&[0x48, 0x89, 0xc2]); //             48 89 c2        mov rdx, rax
        self.raw(&[0x48, 0x89, 0xc1]); //             48 89 c1        mov rcx, rax
        self.mov_imm(&[0x48, 0xbf], l.data + super::SCRIPT); // mov rdi, script
        self.raw(&[0xbe, 0x01, 0x01, 0, 0]); //       be 01 01 00 00  mov esi, Py_file_input (257)
        self.raw(&[0x45, 0x31, 0xc0]); //             45 31 c0        xor r8d, r8d (no flags)
        self.mov_imm(&[0x48, 0xb8], s.run_string); // mov rax, PyRun_StringFlags
        self.call_rax_and_forget();
        failed.push(self.jz_if_rax_null());
        self.decref_rax(&f);
        // The text ran this injection; an exception for the application
        // is handed over by a call of `start`, whose claim then fails.
        self.raw(&[0x48, 0x83, 0x7c, 0x24, E_V, 0]); // 48 83 7c 24 d8 00  cmp qword [rsp+E_V], 0
        self.raw(&[0x0f, 0x84, 0, 0, 0, 0]); //       0f 84 rel32     je done
        done.push(self.b.len() - 4);
        self.jmp_back(&[0xe9], again);
        // The attempt failed: only a handler can make it raise (at the
        // first instructions). Its exception becomes the one handed over,
        // unless there already is one (kept: the first is the one the
        // application would have seen).
        self.land(&failed);
        self.raw(&[0x48, 0x83, 0x7c, 0x24, E_V, 0]); // cmp qword [rsp+E_V], 0
        self.raw(&[0x0f, 0x85, 0, 0, 0, 0]); //       0f 85 rel32     jne
        let have_one = self.b.len() - 4;
        self.fetch_exception(x, s);
        self.jmp_back(&[0xe9], again);
        self.land(&[have_one]);
        self.mov_imm(&[0x48, 0xb8], f.clear); //      mov rax, PyErr_Clear
        self.call_rax_and_forget();
        self.jmp_back(&[0xe9], again);
        self.land(&done);
        for slot in [E_T, E_V, E_TB] {
            self.raw(&[0x48, 0x8b, 0x7c, 0x24, slot]); // 48 8b 7c 24 d8 mov rdi, [rsp+slot]
            self.mov_imm(&[0x48, 0xb8], f.decref); //     mov rax, Py_DecRef (NULL-safe)
            self.call_rax_and_forget();
        }
        self.raw(&[0x8b, 0x44, 0x24, RES]); //        8b 44 24 d8     mov eax, [rsp+RES]
    }

    /// `Py_DecRef(rax)`, then the result is 0.
    fn decref_rax(&mut self, f: &Fast) {
        self.raw(&[0x48, 0x89, 0xc7]); //             48 89 c7        mov rdi, rax
        self.mov_imm(&[0x48, 0xb8], f.decref); //     mov rax, Py_DecRef
        self.call_rax_and_forget();
        self.raw(&[0xc7, 0x44, 0x24, RES, 0, 0, 0, 0]); // mov dword [rsp+RES], 0
    }

    /// A jump (`opcode` rel32) back to `to`.
    fn jmp_back(&mut self, opcode: &[u8], to: u64) {
        self.raw(opcode);
        let next = self.here() + 4;
        self.raw(&super::rel32(next, to).to_le_bytes());
    }

    /// The exception set → the E slots, normalised (a handler's
    /// `sys.exit(0)` sets the type and a bare argument).
    fn fetch_exception(&mut self, x: KeepError, s: Signals) {
        for f in [x.fetch, s.normalize] {
            self.raw(&[0x48, 0x8d, 0x7c, 0x24, E_T]); //  48 8d 7c 24 d8  lea rdi, [rsp+E_T]
            self.raw(&[0x48, 0x8d, 0x74, 0x24, E_V]); //  48 8d 74 24 d8  lea rsi, [rsp+E_V]
            self.raw(&[0x48, 0x8d, 0x54, 0x24, E_TB]); // 48 8d 54 24 d8  lea rdx, [rsp+E_TB]
            self.mov_imm(&[0x48, 0xb8], f); //            mov rax, PyErr_Fetch / PyErr_NormalizeException
            self.call_rax_and_forget();
        }
    }
}
