//! The trampolines of Ctrl-C for blocked code (`run/unblock.rs`): the
//! first call in one thread of a hooked function raises KeyboardInterrupt.

use super::*;

/// Where things are for [`raising_code`].
#[derive(Clone, Copy, Debug)]
pub struct RaiseLayout {
    /// Start of the data page ([`FLAG`], [`DONE`]).
    pub data: u64,
    /// Start of the code page.
    pub code: u64,
    /// The only thread whose call raises.
    pub tid: i32,
    /// `PyErr_SetNone`.
    pub set_none: u64,
    /// The variable `PyExc_KeyboardInterrupt` (a `PyObject *`).
    pub exc_var: u64,
    /// `PyThread_get_thread_ident` and `PyThreadState_SetAsyncExc`.
    pub get_ident: u64,
    pub set_async_exc: u64,
}

/// Trampolines that make the first call in thread `l.tid` of one of the
/// hooked functions (each `int f(void)` called with the GIL held and
/// returning -1 with an exception set on error: `PyErr_CheckSignals`,
/// `Py_MakePendingCalls`) raise KeyboardInterrupt instead: set it and
/// return -1 to the caller, as a Ctrl-C in the main thread would. Every
/// other call runs the function as usual. Returns the bytes and the
/// trampolines' addresses.
pub fn raising_code(l: &RaiseLayout, sites: &[(u64, &Relocated)]) -> (Vec<u8>, Vec<u64>) {
    let mut a = Asm {
        at: l.code,
        b: Vec::new(),
        calls: Vec::new(),
    };
    let mut tramps = Vec::new();
    for (entry, reloc) in sites {
        tramps.push(a.here());
        a.save_args();
        let skip = a.claim(l.data, Some(l.tid));
        // The KeyboardInterrupt pyattach queued for the thread as an
        // asynchronous exception is this one: unqueue it, or the code
        // would see a second one a few bytecodes later.
        a.raw(&[0x48, 0xb8]); //                48 b8 imm64    mov rax, PyThread_get_thread_ident
        a.raw(&l.get_ident.to_le_bytes());
        a.call_rax_and_forget();
        a.raw(&[0x48, 0x89, 0xc7]); //           48 89 c7       mov rdi, rax
        a.raw(&[0x31, 0xf6]); //                31 f6          xor esi, esi
        a.raw(&[0x48, 0xb8]); //                48 b8 imm64    mov rax, PyThreadState_SetAsyncExc
        a.raw(&l.set_async_exc.to_le_bytes());
        a.call_rax_and_forget();
        a.raw(&[0x48, 0xbf]); //                48 bf imm64    mov rdi, &PyExc_KeyboardInterrupt
        a.raw(&l.exc_var.to_le_bytes());
        a.raw(&[0x48, 0x8b, 0x3f]); //           48 8b 3f       mov rdi, [rdi]
        a.raw(&[0x48, 0xb8]); //                48 b8 imm64    mov rax, PyErr_SetNone
        a.raw(&l.set_none.to_le_bytes());
        a.call_rax_and_forget();
        a.set_flag(l.data + DONE);
        a.restore_args();
        a.raw(&[0xb8, 0xff, 0xff, 0xff, 0xff]); // b8 imm32     mov eax, -1
        a.raw(&[0xc3]); //                      c3             ret
        a.land(&skip);
        a.restore_args();
        a.moved_then_back(*entry, reloc);
    }
    (a.b, tramps)
}
