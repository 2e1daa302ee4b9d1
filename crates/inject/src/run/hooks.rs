//! Test hooks: ways for pyattach's own tests to reach states a real run
//! reaches only by chance (killed between two stops; a strategy that is
//! otherwise a fallback). They read the environment, so they exist only
//! in builds with the `test-hooks` feature, which the CLI's tests enable
//! and release builds never do: no user's environment can change what a
//! shipped pyattach does.

/// Sleeps as long as `PYATTACH_TEST_HOLD_AFTER_MAP_MS` says, after the
/// pages are mapped and before they are armed (tests kill pyattach there).
#[cfg(feature = "test-hooks")]
pub(super) fn hold_after_map() {
    if let Some(ms) = std::env::var_os("PYATTACH_TEST_HOLD_AFTER_MAP_MS") {
        let ms = ms.to_str().and_then(|v| v.parse().ok()).unwrap_or(0);
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

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
