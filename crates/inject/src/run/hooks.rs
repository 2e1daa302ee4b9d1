//! Test hooks: ways for pyattach's own tests to reach states a real run
//! reaches only by chance (killed between two stops; a strategy that is
//! otherwise a fallback). They read the environment, so they exist only
//! in builds with the `test-hooks` feature, which the CLI's tests enable
//! and release builds never do: no user's environment can change what a
//! shipped pyattach does.

/// Sleeps as long as `PYATTACH_TEST_HOLD_AFTER_MAP_MS` says, after the
/// pages are mapped (with their header) and the target released, before
/// they are armed: tests kill pyattach there. It first says so on stderr
/// (`pyattach: test hook: held after map`), so a test kills it in that
/// state whatever the machine's load, rather than by a guess of time.
#[cfg(feature = "test-hooks")]
pub(super) fn hold_after_map() {
    if let Some(ms) = std::env::var_os("PYATTACH_TEST_HOLD_AFTER_MAP_MS") {
        let ms = ms.to_str().and_then(|v| v.parse().ok()).unwrap_or(0);
        use std::io::Write;
        let mut err = std::io::stderr();
        let _ = writeln!(err, "pyattach: test hook: {HELD_AFTER_MAP}");
        let _ = err.flush();
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// What [`hold_after_map`] says once it holds.
#[cfg(feature = "test-hooks")]
pub const HELD_AFTER_MAP: &str = "held after map";

/// Without the feature: nothing.
#[cfg(not(feature = "test-hooks"))]
pub(super) fn hold_after_map() {}

/// True if `PYATTACH_TEST_STRATEGY=new-thread` asks for the new-thread
/// fallback alone (otherwise reached only when no hook fires in time).
#[cfg(feature = "test-hooks")]
pub(super) fn new_thread_only() -> bool {
    std::env::var_os("PYATTACH_TEST_STRATEGY").is_some_and(|v| v == "new-thread")
}

/// Without the feature: never.
#[cfg(not(feature = "test-hooks"))]
pub(super) fn new_thread_only() -> bool {
    false
}

/// True if `PYATTACH_TEST_FAIL_AFTER_ARM` asks the run to fail once its
/// detours are live (the guard that takes them back is what is tested).
#[cfg(feature = "test-hooks")]
pub(super) fn fail_after_arm() -> bool {
    std::env::var_os("PYATTACH_TEST_FAIL_AFTER_ARM").is_some()
}

/// Without the feature: never.
#[cfg(not(feature = "test-hooks"))]
pub(super) fn fail_after_arm() -> bool {
    false
}
