//! Per-version CPython struct offsets (filled in by the stack-reading work).
