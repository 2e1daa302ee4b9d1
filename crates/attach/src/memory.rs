//! Reading and writing another process's memory, with or without ptrace.
//!
//! `process_vm_readv`/`writev` move many ranges in one system call; some
//! hardened kernels lack them (ENOSYS) or refuse them (EPERM) while still
//! allowing `/proc/PID/mem`, so that file is the fallback. Writes into
//! read-only pages (code) fail with EFAULT through `process_vm_writev`; they go
//! through `/proc/PID/mem`, which writes with FOLL_FORCE for a tracer.

use std::fs::{File, OpenOptions};
use std::io::{IoSlice, IoSliceMut};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use nix::errno::Errno;
use nix::sys::uio::{process_vm_readv, process_vm_writev, RemoteIoVec};
use nix::unistd::Pid;

use crate::{Error, Result};

/// At most this many iovecs go into one `process_vm_*v` call (IOV_MAX).
const IOV_MAX: usize = 1024;

/// Memory of a process: open once, read and write by address. Needs no ptrace
/// attachment (only the same permission as ptrace); cheap to create.
#[derive(Debug)]
pub struct ProcessMemory {
    pid: i32,
    /// Set once `process_vm_*` proved unavailable, so later calls go straight
    /// to `/proc/PID/mem`.
    no_vm: AtomicBool,
    /// `/proc/PID/mem`, opened read-write on first need (read-only if that is
    /// all we are allowed).
    mem: OnceLock<std::result::Result<File, Errno>>,
}

impl ProcessMemory {
    /// Memory of `pid`. Fails if the process does not exist.
    pub fn open(pid: i32) -> Result<ProcessMemory> {
        if std::fs::metadata(format!("/proc/{pid}")).is_err() {
            return Err(Error::NoSuchProcess { pid });
        }
        // A main thread that has exited has no memory any more; a thread
        // that runs on has the process's.
        let pid = crate::procinfo::live_member(pid).unwrap_or(pid);
        Ok(ProcessMemory {
            pid,
            no_vm: AtomicBool::new(false),
            mem: OnceLock::new(),
        })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Uses `/proc/PID/mem` only, as on kernels without `process_vm_*`
    /// (for tests of that path).
    #[doc(hidden)]
    pub fn proc_mem_only(self) -> ProcessMemory {
        self.no_vm.store(true, Ordering::Relaxed);
        self
    }

    /// Fills `buf` from `addr`. All or nothing: an unmapped byte anywhere is
    /// [`Error::BadAddress`].
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Result<()> {
        self.read_many(&mut [(addr, buf)])
    }

    /// Reads `len` bytes at `addr` into a new vector.
    pub fn read_vec(&self, addr: u64, len: usize) -> Result<Vec<u8>> {
        let mut v = vec![0; len];
        self.read(addr, &mut v)?;
        Ok(v)
    }

    /// Reads a little-endian u64 at `addr`.
    pub fn read_u64(&self, addr: u64) -> Result<u64> {
        let mut b = [0; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Fills every buffer from its address with as few system calls as
    /// possible (one per 1024 ranges). Fails on the first range that is not
    /// entirely mapped, naming it.
    pub fn read_many(&self, ranges: &mut [(u64, &mut [u8])]) -> Result<()> {
        for chunk in ranges.chunks_mut(IOV_MAX) {
            self.read_chunk(chunk)?;
        }
        Ok(())
    }

    fn read_chunk(&self, ranges: &mut [(u64, &mut [u8])]) -> Result<()> {
        let mut start = 0;
        while start < ranges.len() {
            if self.no_vm.load(Ordering::Relaxed) {
                return ranges[start..]
                    .iter_mut()
                    .try_for_each(|(a, b)| self.mem_read(*a, b));
            }
            let remote: Vec<RemoteIoVec> = ranges[start..]
                .iter()
                .map(|(a, b)| RemoteIoVec {
                    base: *a as usize,
                    len: b.len(),
                })
                .collect();
            let mut local: Vec<IoSliceMut> = ranges[start..]
                .iter_mut()
                .map(|(_, b)| IoSliceMut::new(b))
                .collect();
            let want: usize = remote.iter().map(|r| r.len).sum();
            match process_vm_readv(Pid::from_raw(self.pid), &mut local, &remote) {
                Ok(n) if n == want => return Ok(()),
                Ok(mut n) => {
                    // Partial: whole iovecs are transferred in order, so skip
                    // the complete ones and retry from the first short one;
                    // a zero-byte transfer there names the fault.
                    let mut i = start;
                    while i < ranges.len() && n >= ranges[i].1.len() {
                        n -= ranges[i].1.len();
                        i += 1;
                    }
                    if i >= ranges.len() {
                        return Ok(());
                    }
                    if i == start {
                        return Err(self.bad("read", ranges[i].0, ranges[i].1.len(), n));
                    }
                    start = i;
                }
                Err(Errno::EFAULT) => {
                    let (a, b) = &ranges[start];
                    return Err(self.bad("read", *a, b.len(), 0));
                }
                Err(Errno::ENOSYS | Errno::EPERM) => {
                    self.no_vm.store(true, Ordering::Relaxed);
                }
                Err(e) => return Err(Error::from_errno("read memory of", self.pid, e)),
            }
        }
        Ok(())
    }

    /// Writes `data` at `addr`. Writable pages go through
    /// `process_vm_writev`; read-only ones (code) through `/proc/PID/mem`,
    /// which the kernel allows for a process with ptrace access.
    pub fn write(&self, addr: u64, data: &[u8]) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        if !self.no_vm.load(Ordering::Relaxed) {
            let local = [IoSlice::new(data)];
            let remote = [RemoteIoVec {
                base: addr as usize,
                len: data.len(),
            }];
            match process_vm_writev(Pid::from_raw(self.pid), &local, &remote) {
                Ok(n) if n == data.len() => return Ok(()),
                // Partial or EFAULT: a read-only or unmapped page; let
                // /proc/PID/mem decide which.
                Ok(_) | Err(Errno::EFAULT) => {}
                Err(Errno::ENOSYS | Errno::EPERM) => self.no_vm.store(true, Ordering::Relaxed),
                Err(e) => return Err(Error::from_errno("write memory of", self.pid, e)),
            }
        }
        self.mem_write(addr, data)
    }

    fn mem_file(&self) -> Result<&File> {
        let pid = self.pid;
        let r = self.mem.get_or_init(|| {
            let path = format!("/proc/{pid}/mem");
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .or_else(|_| File::open(&path))
                .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
        });
        match r {
            Ok(f) => Ok(f),
            Err(Errno::ENOENT) => Err(Error::TargetExited { pid }),
            Err(e) => Err(Error::from_errno("open /proc/PID/mem of", pid, *e)),
        }
    }

    fn mem_read(&self, addr: u64, buf: &mut [u8]) -> Result<()> {
        let f = self.mem_file()?;
        let mut done = 0;
        while done < buf.len() {
            match f.read_at(&mut buf[done..], addr + done as u64) {
                Ok(0) => return Err(self.bad("read", addr, buf.len(), done)),
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io_err("read", addr, buf.len(), done, e)),
            }
        }
        Ok(())
    }

    fn mem_write(&self, addr: u64, data: &[u8]) -> Result<()> {
        let f = self.mem_file()?;
        let mut done = 0;
        while done < data.len() {
            match f.write_at(&data[done..], addr + done as u64) {
                Ok(0) => return Err(self.bad("write", addr, data.len(), done)),
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io_err("write", addr, data.len(), done, e)),
            }
        }
        Ok(())
    }

    fn io_err(
        &self,
        op: &'static str,
        addr: u64,
        len: usize,
        done: usize,
        e: std::io::Error,
    ) -> Error {
        match e.raw_os_error() {
            Some(libc::EIO) | Some(libc::EFAULT) => self.bad(op, addr, len, done),
            Some(n) => Error::from_errno(
                if op == "read" {
                    "read memory of"
                } else {
                    "write memory of"
                },
                self.pid,
                Errno::from_raw(n),
            ),
            None => Error::Os {
                op,
                pid: self.pid,
                errno: Errno::EIO,
            },
        }
    }

    fn bad(&self, op: &'static str, addr: u64, len: usize, done: usize) -> Error {
        // A vanished process also shows up as a failed access.
        if std::fs::metadata(format!("/proc/{}", self.pid)).is_err() {
            return Error::TargetExited { pid: self.pid };
        }
        Error::BadAddress {
            pid: self.pid,
            op,
            addr,
            len,
            done,
        }
    }
}
