//! Opening files the target controls: its mapped modules and debug files,
//! reached through `/proc/PID/map_files` and `/proc/PID/root`.
//!
//! The person running pyattach is often root and the target's file system
//! belongs to someone else (a container, a compromised service). A path
//! there may have become a FIFO (an open would block), a device (an open
//! may act), a directory, a symlink to one of our files, a 10 GB sparse
//! file or another file than the one mapped. So every open here:
//! - resolves the path inside the target's root (`openat2` with
//!   `RESOLVE_IN_ROOT`, as if chrooted; on kernels without it, a walk that
//!   refuses every symlink), never through a link into our file system;
//! - first takes an `O_PATH` handle, which opens nothing, and `fstat`s it:
//!   only a regular file of at most [`MAX_FILE`] bytes is then opened, through
//!   that very handle, `O_NONBLOCK | O_NOCTTY`;
//! - for a mapped module, checks that the file is the one the kernel maps
//!   (device and inode of `/proc/PID/maps`).

use rustix::fs::{self as rfs, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path};

/// Largest file pyattach opens. A libpython's debug file weighs tens of
/// megabytes; a larger "interpreter" is a trap (a sparse file whose CRC
/// alone would read for minutes).
pub(crate) const MAX_FILE: u64 = 1 << 30;

/// Why a file was not read.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// Not a regular file: what it is instead.
    NotRegular(&'static str),
    /// More than [`MAX_FILE`] bytes.
    TooLarge(u64),
    /// Device and inode differ from the mapping's.
    NotMapped {
        found: (u32, u32, u64),
        mapped: (u32, u32, u64),
    },
    /// A symlink, on a kernel that cannot resolve it inside the root.
    Symlink,
    /// The open itself failed (absent, no permission…).
    Io(std::io::Error),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NotRegular(what) => write!(f, "it is {what}, not a regular file"),
            Refusal::TooLarge(n) => write!(
                f,
                "it is {n} bytes, more than the {MAX_FILE} pyattach reads"
            ),
            Refusal::NotMapped { found, mapped } => write!(
                f,
                "it is not the file the process mapped (device {}:{} inode {}; mapped: \
                 device {}:{} inode {}): replaced since",
                found.0, found.1, found.2, mapped.0, mapped.1, mapped.2
            ),
            Refusal::Symlink => write!(
                f,
                "it is reached through a symbolic link, which this kernel (no openat2) \
                 cannot resolve inside the target's root"
            ),
            Refusal::Io(e) => write!(f, "{e}"),
        }
    }
}

impl Refusal {
    /// Whether the open failed for lack of privilege (map_files without
    /// `CAP_SYS_ADMIN`/`CAP_CHECKPOINT_RESTORE`).
    pub fn is_permission(&self) -> bool {
        matches!(self, Refusal::Io(e) if e.kind() == std::io::ErrorKind::PermissionDenied)
    }
}

impl Refusal {
    /// The error that names the file.
    pub fn into_error(self, path: &Path) -> crate::Error {
        match self {
            Refusal::Io(source) => crate::Error::Io {
                path: path.to_path_buf(),
                source,
            },
            r => crate::Error::Refused {
                path: path.to_path_buf(),
                reason: r.to_string(),
            },
        }
    }
}

impl From<Errno> for Refusal {
    fn from(e: Errno) -> Self {
        Refusal::Io(e.into())
    }
}

/// The device and inode a mapping names in `/proc/PID/maps`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileId {
    pub major: u32,
    pub minor: u32,
    pub inode: u64,
}

/// An opened regular file and its size when opened (reads stop there even
/// if it grows).
pub(crate) struct Opened {
    pub file: File,
    pub size: u64,
}

fn kind(t: FileType) -> &'static str {
    match t {
        FileType::RegularFile => "a regular file",
        FileType::Directory => "a directory",
        FileType::Symlink => "a symbolic link",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Unknown => "of an unknown type",
    }
}

/// Checks an `O_PATH` handle and opens the file it names for reading,
/// through `/proc/self/fd` (the very inode, no second path lookup).
fn open_checked(handle: OwnedFd, id: Option<FileId>) -> Result<Opened, Refusal> {
    let st = rfs::fstat(&handle)?;
    let t = FileType::from_raw_mode(st.st_mode);
    if t != FileType::RegularFile {
        return Err(Refusal::NotRegular(kind(t)));
    }
    let size = u64::try_from(st.st_size).unwrap_or(0);
    if size > MAX_FILE {
        return Err(Refusal::TooLarge(size));
    }
    if let Some(want) = id {
        let found = (rfs::major(st.st_dev), rfs::minor(st.st_dev), st.st_ino);
        let mapped = (want.major, want.minor, want.inode);
        // overlayfs shows the underlying file's device in maps on some
        // kernels, its own in fstat: the inode still tells.
        let same = found == mapped || (found.2 == mapped.2 && is_overlay(found.0, found.1));
        if !same {
            return Err(Refusal::NotMapped { found, mapped });
        }
    }
    let fd = rfs::open(
        format!("/proc/self/fd/{}", handle.as_raw_fd()),
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
        Mode::empty(),
    )?;
    let again = rfs::fstat(&fd)?;
    if (again.st_dev, again.st_ino) != (st.st_dev, st.st_ino) {
        return Err(Refusal::NotRegular("replaced while opened"));
    }
    Ok(Opened {
        file: File::from(fd),
        size,
    })
}

/// Whether the mount of device `major:minor` is an overlayfs (from our
/// own `/proc/self/mountinfo`: the kernel's text, not the target's).
fn is_overlay(major: u32, minor: u32) -> bool {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let dev = format!("{major}:{minor}");
    text.lines().any(|l| {
        l.split(' ').nth(2) == Some(dev.as_str())
            && l.split(" - ").nth(1).and_then(|r| r.split(' ').next()) == Some("overlay")
    })
}

/// Opens a file of our own file system (a debuginfod download, a file
/// named on the command line) or a kernel magic link
/// (`/proc/PID/map_files/START-END`: the very file mapped, whatever its
/// path became), with the same checks.
pub(crate) fn open_path(path: &Path) -> Result<Opened, Refusal> {
    let handle = rfs::open(path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())?;
    open_checked(handle, None)
}

/// Opens `path` (absolute in the target's file system) inside `root`
/// (`/proc/PID/root`, or any directory standing for it), resolving every
/// symlink as the target would see it. With `id`, the file must be that
/// mapped file.
pub(crate) fn open_in_root(
    root: &Path,
    path: &Path,
    id: Option<FileId>,
) -> Result<Opened, Refusal> {
    let dir = rfs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let rel = path.strip_prefix("/").unwrap_or(path);
    let handle = match rfs::openat2(
        &dir,
        rel,
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    ) {
        Err(Errno::NOSYS) => walk(dir, rel)?,
        r => r?,
    };
    open_checked(handle, id)
}

/// Without `openat2`: one component at a time, `O_NOFOLLOW`, refusing any
/// symlink and never climbing above `root`.
fn walk(root: OwnedFd, rel: &Path) -> Result<OwnedFd, Refusal> {
    let mut stack: Vec<OwnedFd> = vec![root];
    for c in rel.components() {
        match c {
            Component::Normal(name) => {
                let at = stack.last().map(AsFd::as_fd).ok_or(Refusal::Symlink)?;
                let next = rfs::openat(
                    at,
                    name,
                    OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                if FileType::from_raw_mode(rfs::fstat(&next)?.st_mode) == FileType::Symlink {
                    return Err(Refusal::Symlink);
                }
                stack.push(next);
            }
            Component::ParentDir if stack.len() > 1 => {
                stack.pop();
            }
            _ => {}
        }
    }
    stack.pop().ok_or(Refusal::Symlink)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn root() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("pyattach-open-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("usr/bin")).unwrap();
        d
    }

    #[test]
    fn refuses_what_is_not_a_plain_file_in_the_root() {
        let r = root();
        let bin = r.join("usr/bin");
        std::fs::write(bin.join("ok"), b"\x7fELF").unwrap();
        let status = std::process::Command::new("mkfifo")
            .arg(bin.join("fifo"))
            .status()
            .unwrap();
        assert!(status.success());
        std::os::unix::fs::symlink("/etc/hostname", bin.join("host")).unwrap();
        std::os::unix::fs::symlink("ok", bin.join("rel")).unwrap();
        File::create(bin.join("sparse"))
            .unwrap()
            .set_len(10 << 30)
            .unwrap();
        let open = |p: &str| open_in_root(&r, Path::new(p), None);
        assert_eq!(open("/usr/bin/ok").unwrap().size, 4);
        assert!(matches!(
            open("/usr/bin/fifo"),
            Err(Refusal::NotRegular("a FIFO"))
        ));
        assert!(matches!(
            open("/usr/bin"),
            Err(Refusal::NotRegular("a directory"))
        ));
        assert!(matches!(open("/dev/null"), Err(Refusal::Io(_))));
        assert!(matches!(open("/usr/bin/sparse"), Err(Refusal::TooLarge(_))));
        // An absolute link resolves inside the root, where there is no
        // /etc/hostname; a relative one works.
        assert!(matches!(open("/usr/bin/host"), Err(Refusal::Io(_))));
        assert!(open("/usr/bin/../../../usr/bin/rel").is_ok());
        // The identity check.
        let meta = std::fs::metadata(bin.join("ok")).unwrap();
        let id = FileId {
            major: rfs::major(meta.dev()),
            minor: rfs::minor(meta.dev()),
            inode: meta.ino(),
        };
        assert!(open_in_root(&r, Path::new("/usr/bin/rel"), Some(id)).is_ok());
        let other = FileId {
            inode: id.inode + 1,
            ..id
        };
        assert!(matches!(
            open_in_root(&r, Path::new("/usr/bin/ok"), Some(other)),
            Err(Refusal::NotMapped { .. })
        ));
        std::fs::remove_dir_all(&r).unwrap();
    }
}
