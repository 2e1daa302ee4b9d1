//! The one place that turns errors into messages, advice and exit codes.
//!
//! Exit codes (documented in the README):
//! 0 success, 1 failure, 2 usage (clap), 3 not a supported CPython.

/// Prints `result`'s error, if any, and returns the process exit code.
pub fn finish(result: anyhow::Result<i32>) -> i32 {
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("pyattach: {err:#}");
            1
        }
    }
}
