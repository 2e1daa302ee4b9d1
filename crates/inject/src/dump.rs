//! Read-only stack dumps.
