//! `/proc/PID/maps`, parsed.

use crate::addr::RemoteAddr;
use crate::error::Error;
use std::path::PathBuf;

/// One line of `/proc/PID/maps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub start: RemoteAddr,
    pub end: RemoteAddr,
    pub perms: String,
    pub offset: u64,
    /// The file's device (major, minor; `0:0` for anonymous memory).
    pub dev: (u32, u32),
    pub inode: u64,
    /// The file's path in the target's mount namespace, without the
    /// ` (deleted)` suffix; `None` for anonymous mappings and `[heap]` & co.
    pub path: Option<PathBuf>,
    /// The kernel said the file was deleted (or replaced) since it was mapped.
    pub deleted: bool,
}

impl Mapping {
    pub fn is_exec(&self) -> bool {
        self.perms.as_bytes().get(2) == Some(&b'x')
    }
}

/// Parses the text of a maps file. Malformed lines are skipped: the kernel
/// writes this file, so a bad line means a format we do not understand, not
/// a reason to fail.
pub fn parse(text: &str) -> Vec<Mapping> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Mapping> {
    let mut rest = line;
    let mut field = || {
        let t = rest.trim_start();
        let end = t.find(' ').unwrap_or(t.len());
        let (f, r) = t.split_at(end);
        rest = r;
        f
    };
    let range = field();
    let perms = field().to_string();
    let offset = u64::from_str_radix(field(), 16).ok()?;
    let (major, minor) = field().split_once(':')?;
    let dev = (
        u32::from_str_radix(major, 16).ok()?,
        u32::from_str_radix(minor, 16).ok()?,
    );
    let inode = field().parse::<u64>().ok()?;
    let (start, end) = range.split_once('-')?;
    let start = u64::from_str_radix(start, 16).ok()?;
    let end = u64::from_str_radix(end, 16).ok()?;
    let name = rest.trim_start();
    let (path, deleted) = if name.starts_with('/') {
        match name.strip_suffix(" (deleted)") {
            Some(p) => (Some(PathBuf::from(p)), true),
            None => (Some(PathBuf::from(name)), false),
        }
    } else {
        (None, false)
    };
    Some(Mapping {
        start: RemoteAddr(start),
        end: RemoteAddr(end),
        perms,
        offset,
        dev,
        inode,
        path,
        deleted,
    })
}

/// Reads and parses `/proc/PID/maps`.
pub fn read(pid: i32) -> Result<Vec<Mapping>, Error> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/maps")).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::NoSuchProcess(pid)
        } else {
            Error::Proc {
                pid,
                what: "maps",
                source: e,
            }
        }
    })?;
    Ok(parse(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines() {
        let m = parse(
            "00400000-00452000 r-xp 00000000 08:02 173521      /usr/bin/dbus daemon\n\
             7f00-7f10 rw-p 00001000 00:00 0 \n\
             7f10-7f20 r--p 00002000 08:02 42 /tmp/x.so (deleted)\n\
             garbage\n",
        );
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].path.as_deref(), Some("/usr/bin/dbus daemon".as_ref()));
        assert!(m[0].is_exec());
        assert_eq!((m[0].dev, m[0].inode), ((8, 2), 173521));
        assert_eq!(m[1].path, None);
        assert_eq!(m[1].offset, 0x1000);
        assert!(m[2].deleted);
        assert_eq!(m[2].path.as_deref(), Some("/tmp/x.so".as_ref()));
    }
}
