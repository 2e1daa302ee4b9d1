//! The one list of the interpreter's symbols pyattach uses, per version,
//! with what each is for. Injection, Ctrl-C of blocked code and the dump
//! take their names from here, and `pyattach info` shows this list, so
//! `info` cannot look complete for a target `--run` cannot fully serve.

/// `PyRun_SimpleString`: runs the bootstrap's text.
pub const RUN: &str = "PyRun_SimpleString";

/// Calling a bootstrap already defined in the target directly:
/// `PySys_GetObject`, `PyDict_GetItemString`, `PyObject_CallFunction`,
/// `Py_DecRef`, `PyErr_Clear` (in this order; without one, every
/// injection goes through [`RUN`]).
pub const FAST_CALL: [&str; 5] = [
    "PySys_GetObject",
    "PyDict_GetItemString",
    "PyObject_CallFunction",
    "Py_DecRef",
    "PyErr_Clear",
];

/// Putting an exception pending in the caught thread aside while the
/// bootstrap runs: `PyErr_Fetch`, `PyErr_Restore`.
pub const KEEP_ERROR: [&str; 2] = ["PyErr_Fetch", "PyErr_Restore"];

/// And the exception being handled: `PyErr_GetExcInfo`, `PyErr_SetExcInfo`.
pub const KEEP_EXC_INFO: [&str; 2] = ["PyErr_GetExcInfo", "PyErr_SetExcInfo"];

/// A signal handler already due as a thread enters the bootstrap runs
/// first, from the trampoline, and its exception goes to the application:
/// `PyErr_CheckSignals`, `PyErr_NormalizeException`, `PyImport_AddModule`,
/// `PyModule_GetDict`, `PyRun_StringFlags` (in this order; without one,
/// the trampolines do without).
pub const DUE_SIGNALS: [&str; 5] = [
    "PyErr_CheckSignals",
    "PyErr_NormalizeException",
    "PyImport_AddModule",
    "PyModule_GetDict",
    "PyRun_StringFlags",
];

/// A signal deferred while pyattach's code ran in the main thread is
/// tripped again with the wakeup fd off (its arrival wrote its byte);
/// found where it is not exported, before 3.13.
pub const SET_WAKEUP_FD: &str = "PySignal_SetWakeupFd";

/// Before 3.10 (no `PyErr_SetInterruptEx`), a deferred signal is tripped
/// again by setting its handler's flag and the module's, static data of
/// `signalmodule.c`, and queueing `PyErr_CheckSignals` as a pending call.
pub const TRIP_FLAGS: [&str; 2] = ["Handlers", "is_tripped"];

/// Python 2: the thread holding the one import lock (`import.c`'s static
/// `import_lock_thread`, -1 when free) and the calling thread's ident. A
/// thread other than the holder is never taken for the bootstrap: every
/// import statement there would wait for the lock, seconds in a slow
/// import, and the entry text imports.
pub const IMPORT_LOCK: [&str; 2] = ["import_lock_thread", "PyThread_get_thread_ident"];

/// Queues the bootstrap for a main thread running Python.
pub const PENDING_CALL: &str = "Py_AddPendingCall";

/// The new-thread fallback's interpreter side: `PyGILState_Ensure`,
/// `PyGILState_Release`; `PyEval_ThreadsInitialized` (optional) says
/// whether the GIL exists yet.
pub const NEW_THREAD: [&str; 2] = ["PyGILState_Ensure", "PyGILState_Release"];
pub const THREADS_INITIALIZED: &str = "PyEval_ThreadsInitialized";

/// Ctrl-C of blocked code: the functions a retry loop calls after EINTR
/// (hooked), then what the hook calls to raise KeyboardInterrupt in one
/// thread.
pub const UNBLOCK_HOOKS: [&str; 3] = [
    "PyErr_CheckSignals",
    "Py_MakePendingCalls",
    // 3.12+ lock waits call it (in .symtab or a debug file only).
    "_PyEval_MakePendingCalls",
];
pub const RAISE: [&str; 4] = [
    "PyErr_SetNone",
    "PyExc_KeyboardInterrupt",
    "PyThread_get_thread_ident",
    "PyThreadState_SetAsyncExc",
];
/// 2.7: the bytecode countdown run out so a pending asynchronous exception
/// is raised at once.
pub const TICKER: &str = "_Py_Ticker";

/// Entry points entered only by the thread holding the GIL, on its own
/// stack, that the one-shot detour hooks (in this order): every
/// `Py_BEGIN_ALLOW_THREADS`; every EINTR retry loop (so a nudged thread
/// gets there even where LTO inlined `PyEval_SaveThread` into the caller,
/// Debian's python3.11 in os.read); and from 3.13, where locks park
/// through it, `PyEval_ReleaseThread`, and `Py_MakePendingCalls`: where a
/// parked lock wait (Lock.acquire, Thread.join) goes with the GIL after
/// EINTR, off the parking lot and owning nothing of the wait (LTO builds,
/// Debian's, inline `PyEval_ReleaseThread` into `_PyParkingLot_Park`; see
/// nudge.rs).
pub fn hook_entries(v: (u32, u32)) -> Vec<&'static str> {
    let mut names = vec!["PyEval_SaveThread", "PyErr_CheckSignals"];
    if v >= (3, 13) {
        names.push("PyEval_ReleaseThread");
        names.push("Py_MakePendingCalls");
    }
    names
}

/// Every entry any version hooks, for `info`'s call-site check.
pub const SAFE_POINTS: &[&str] = &[
    "PyEval_SaveThread",
    "PyEval_ReleaseThread",
    "PyErr_CheckSignals",
    "Py_MakePendingCalls",
];

/// Every symbol pyattach looks up in CPython `v` (major, minor), with its
/// role.
pub fn needed(v: (u32, u32)) -> Vec<(&'static str, &'static str)> {
    let mut n = vec![(RUN, "runs the bootstrap")];
    for name in hook_entries(v) {
        n.push((name, "safe point (hooked entry)"));
    }
    n.extend(FAST_CALL.map(|f| (f, "direct call of the bootstrap")));
    n.extend(KEEP_ERROR.map(|f| (f, "keeps a pending exception")));
    n.extend(KEEP_EXC_INFO.map(|f| (f, "keeps the handled exception")));
    n.extend(DUE_SIGNALS.map(|f| (f, "signals due as code enters")));
    n.push((SET_WAKEUP_FD, "deferred signals, wakeup fd"));
    if v < (3, 10) {
        n.extend(TRIP_FLAGS.map(|f| (f, "deferred signals (< 3.10)")));
    }
    n.push((PENDING_CALL, "nudge for busy main threads"));
    n.extend(NEW_THREAD.map(|f| (f, "new-thread strategy")));
    n.push((THREADS_INITIALIZED, "new-thread strategy (GIL?)"));
    for name in UNBLOCK_HOOKS {
        if name != "_PyEval_MakePendingCalls" || v >= (3, 12) {
            n.push((name, "Ctrl-C of blocked code"));
        }
    }
    n.extend(RAISE.map(|f| (f, "Ctrl-C: raising in a thread")));
    if v.0 == 2 {
        n.push((TICKER, "Ctrl-C of blocked code (2.7)"));
        n.extend(IMPORT_LOCK.map(|f| (f, "import lock held? (2.7)")));
    }
    if v >= (3, 7) {
        n.push(("_PyRuntime", "interpreters and threads"));
    } else {
        n.push(("interp_head", "interpreters"));
        n.push(("_PyThreadState_Current", "GIL holder"));
    }
    // A name with two roles is listed once, with the first.
    let mut seen = std::collections::HashSet::new();
    n.retain(|(name, _)| seen.insert(*name));
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_version_lists_what_run_and_ctrl_c_need_once() {
        for minor in 6..=15 {
            let n = needed((3, minor));
            let names: Vec<_> = n.iter().map(|(name, _)| *name).collect();
            for need in [RUN, PENDING_CALL, "PyEval_SaveThread", "PyErr_CheckSignals"] {
                assert!(names.contains(&need), "3.{minor}: {need}");
            }
            let mut sorted = names.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), names.len(), "3.{minor}: a name twice");
            assert_eq!(names.contains(&"PyEval_ReleaseThread"), minor >= 13);
            assert_eq!(names.contains(&"_PyEval_MakePendingCalls"), minor >= 12);
        }
        let two: Vec<_> = needed((2, 7)).iter().map(|(name, _)| *name).collect();
        assert!(two.contains(&TICKER) && two.contains(&"interp_head"));
    }
}
