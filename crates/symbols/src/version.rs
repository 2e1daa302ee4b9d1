//! Which CPython version a module is: `Py_Version` (3.11+), else the
//! `PY_VERSION` string in `.rodata`, else the file name; every method that
//! answers is recorded, and disagreements are kept for `pyattach info`.

use serde::Serialize;
use std::fmt;

/// `PY_RELEASE_LEVEL` of CPython's `patchlevel.h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseLevel {
    Alpha,
    Beta,
    Candidate,
    Final,
}

/// How a version was learnt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionSource {
    /// The `Py_Version` constant (`PY_VERSION_HEX`, 3.11+).
    PyVersionSymbol,
    /// The `PY_VERSION` string (e.g. `"3.9.18"`) in the module's `.rodata`.
    VersionString,
    /// The module's file name (`libpython3.11.so.1.0`, `python2.7`): gives
    /// only major.minor.
    FileName,
}

/// One method's answer, kept to show how sure we are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VersionCheck {
    pub source: VersionSource,
    pub found: String,
    /// Agrees with the chosen version (for the file name: on major.minor).
    pub agrees: bool,
}

/// A CPython version, with how it was detected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PyVersion {
    pub major: u32,
    pub minor: u32,
    pub micro: u32,
    pub release_level: ReleaseLevel,
    pub serial: u32,
    /// The method the version was taken from.
    pub detected_by: VersionSource,
    /// Every method that answered, including the chosen one.
    pub checks: Vec<VersionCheck>,
}

impl PyVersion {
    /// Decodes `PY_VERSION_HEX`: `0xMMmmppLS`.
    pub fn from_hex(h: u32) -> Option<PyVersion> {
        let level = match (h >> 4) & 0xf {
            0xa => ReleaseLevel::Alpha,
            0xb => ReleaseLevel::Beta,
            0xc => ReleaseLevel::Candidate,
            0xf => ReleaseLevel::Final,
            _ => return None,
        };
        Some(PyVersion {
            major: h >> 24,
            minor: (h >> 16) & 0xff,
            micro: (h >> 8) & 0xff,
            release_level: level,
            serial: h & 0xf,
            detected_by: VersionSource::PyVersionSymbol,
            checks: Vec::new(),
        })
    }

    /// Parses a `PY_VERSION` string: `3.9.18`, `3.13.0rc1`, `2.7.18+`.
    pub fn parse(s: &str) -> Option<PyVersion> {
        let s = s.strip_suffix('+').unwrap_or(s);
        let mut parts = s.splitn(3, '.');
        let major: u32 = parts.next()?.parse().ok()?;
        let minor: u32 = parts.next()?.parse().ok()?;
        let rest = parts.next()?;
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 || digits > 3 {
            return None;
        }
        let micro: u32 = rest[..digits].parse().ok()?;
        let tail = &rest[digits..];
        let (level, serial) = if tail.is_empty() {
            (ReleaseLevel::Final, 0)
        } else {
            let (level, num) = if let Some(n) = tail.strip_prefix("rc") {
                (ReleaseLevel::Candidate, n)
            } else if let Some(n) = tail.strip_prefix('a') {
                (ReleaseLevel::Alpha, n)
            } else if let Some(n) = tail.strip_prefix('b') {
                (ReleaseLevel::Beta, n)
            } else {
                return None;
            };
            if num.is_empty() || num.len() > 2 || !num.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            (level, num.parse().ok()?)
        };
        if !(2..=3).contains(&major) || minor > 99 || s.len() > 12 {
            return None;
        }
        Some(PyVersion {
            major,
            minor,
            micro,
            release_level: level,
            serial,
            detected_by: VersionSource::VersionString,
            checks: Vec::new(),
        })
    }

    /// `(major, minor)` from a file name such as `libpython3.6m.so.1.0`.
    pub fn from_file_name(name: &str) -> Option<(u32, u32)> {
        let at = name.find("python")? + "python".len();
        let rest = &name[at..];
        let (maj, rest) = rest.split_once('.')?;
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let major = maj.parse().ok()?;
        let minor = rest[..end].parse().ok()?;
        Some((major, minor))
    }

    /// Finds `PY_VERSION` among the NUL-terminated strings of `.rodata`.
    /// The linker merges a string into the tail of a longer one, so
    /// `"2.7.18"` may only exist as the end of `".../versions/2.7.18"`: a
    /// whole string wins, a tail after `/` or `-` is the fallback. With a
    /// hint (major.minor from the file name) only matching strings count;
    /// without one, the answer must be unique.
    pub fn scan(rodata: &[u8], hint: Option<(u32, u32)>) -> Option<PyVersion> {
        let mut whole: Vec<PyVersion> = Vec::new();
        let mut tails: Vec<PyVersion> = Vec::new();
        let consider = |bytes: &[u8], into: &mut Vec<PyVersion>| {
            if bytes.len() < 5 || bytes.len() > 12 || !bytes[0].is_ascii_digit() {
                return;
            }
            let Ok(s) = std::str::from_utf8(bytes) else {
                return;
            };
            if let Some(v) = PyVersion::parse(s) {
                if hint.is_none_or(|h| h == (v.major, v.minor)) && !into.contains(&v) {
                    into.push(v);
                }
            }
        };
        // `.rodata` is a few hundred KB when `Py_Version` is missing (before
        // 3.11), and a version holds a digit, a dot and a digit: only the
        // NUL-separated pieces around such a dot (found with memchr) are
        // considered, each once, in file order.
        let digit = |b: Option<&u8>| b.is_some_and(u8::is_ascii_digit);
        let mut done = 0;
        for dot in memchr::memchr_iter(b'.', rodata) {
            if dot < done || dot == 0 || !digit(rodata.get(dot - 1)) || !digit(rodata.get(dot + 1))
            {
                continue;
            }
            let start = memchr::memrchr(0, &rodata[..dot]).map_or(0, |i| i + 1);
            let end = memchr::memchr(0, &rodata[dot..]).map_or(rodata.len(), |i| dot + i);
            done = end + 1;
            let piece = &rodata[start..end];
            consider(piece, &mut whole);
            if let Some(cut) = memchr::memrchr2(b'/', b'-', piece) {
                consider(&piece[cut + 1..], &mut tails);
            }
        }
        let found = if whole.is_empty() { tails } else { whole };
        if hint.is_some() || found.len() == 1 {
            found.into_iter().next()
        } else {
            None
        }
    }

    /// `(major, minor)`.
    pub fn short(&self) -> (u32, u32) {
        (self.major, self.minor)
    }

    /// A Python 3 newer than the last one pyattach knows (3.15): found and
    /// described, its stacks not read, code run where no layout is needed.
    pub fn is_newer_than_known(&self) -> bool {
        self.major == 3 && self.minor > 15
    }

    /// Whether pyattach supports this version (2.7 and 3.6 to 3.15).
    pub fn is_supported(&self) -> bool {
        matches!(self.short(), (2, 7)) || (self.major == 3 && (6..=15).contains(&self.minor))
    }
}

impl fmt::Display for PyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.micro)?;
        match self.release_level {
            ReleaseLevel::Alpha => write!(f, "a{}", self.serial),
            ReleaseLevel::Beta => write!(f, "b{}", self.serial),
            ReleaseLevel::Candidate => write!(f, "rc{}", self.serial),
            ReleaseLevel::Final => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes() {
        let v = PyVersion::from_hex(0x030c01f0).unwrap();
        assert_eq!(v.to_string(), "3.12.1");
        assert_eq!(
            PyVersion::from_hex(0x030d00c1).unwrap().to_string(),
            "3.13.0rc1"
        );
        assert!(PyVersion::from_hex(0x030d0001).is_none());
        assert_eq!(PyVersion::parse("2.7.18+").unwrap().to_string(), "2.7.18");
        assert_eq!(
            PyVersion::parse("3.13.0b2").unwrap().to_string(),
            "3.13.0b2"
        );
        assert!(PyVersion::parse("1.2.11").is_none());
        assert!(PyVersion::parse("3.6.x").is_none());
        assert_eq!(
            PyVersion::from_file_name("libpython3.6m.so.1.0"),
            Some((3, 6))
        );
        assert_eq!(PyVersion::from_file_name("python2.7"), Some((2, 7)));
        assert_eq!(PyVersion::from_file_name("python"), None);
        let ro = b"\0abc\x003.9.18\0zz\x003.8.1\0";
        assert_eq!(PyVersion::scan(ro, Some((3, 9))).unwrap().micro, 18);
        assert!(PyVersion::scan(ro, None).is_none());
        let merged = b"\0/home/u/.pyenv/versions/2.7.18\0";
        assert_eq!(PyVersion::scan(merged, None).unwrap().to_string(), "2.7.18");
    }
}
