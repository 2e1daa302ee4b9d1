//! Whether this process may ptrace a target, and if not, why and how to fix it.
