//! Addresses in the target and in ELF files are different types, converted
//! only through a module's load bias, so the two can never be mixed up.

use serde::{Serialize, Serializer};
use std::fmt;

/// An address in the target process's address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RemoteAddr(pub u64);

/// An address as an ELF file states it (`st_value`, `p_vaddr`, `sh_addr`):
/// before the loader placed the file in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct FileAddr(pub u64);

impl RemoteAddr {
    /// `self + off`, wrapping like the hardware does.
    pub fn offset(self, off: u64) -> RemoteAddr {
        RemoteAddr(self.0.wrapping_add(off))
    }
}

impl fmt::Display for RemoteAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl fmt::Display for FileAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// Serialized as a `"0x…"` string: JSON numbers lose precision above 2^53.
impl Serialize for RemoteAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl Serialize for FileAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// Lowercase hex of a build id, as debuginfod and `.build-id/` paths use it.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
