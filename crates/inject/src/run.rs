//! Running code inside the target.
