//! Core files: the memory, threads and mapped files of a process that
//! crashed (the kernel's core dump) or was saved by `gcore`, read without
//! the process.
//!
//! An ELF core holds a `PT_LOAD` per mapping (its bytes, or none for pages
//! the dumper left out: file-backed code and read-only data, which are
//! then read from the mapped file itself) and notes: `NT_PRSTATUS` per
//! thread (tid, registers, the signal that stopped it), `NT_PRPSINFO` (pid,
//! command), `NT_AUXV` and `NT_FILE` (each file-backed mapping with its
//! path and offset). Every field is hostile input: the file is bounded,
//! each read checked, nothing trusted to fit.
//!
//! Files the core names are opened inside a root directory (`/` unless the
//! user says where the crashed program's files are, e.g. a container's
//! image), with the checks a live target's files get (`open.rs`).

use crate::error::Error;
use crate::maps::Mapping;
use crate::open;
use crate::RemoteAddr;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const NT_PRSTATUS: u32 = 1;
const NT_PRPSINFO: u32 = 3;
const NT_AUXV: u32 = 6;
const NT_FILE: u32 = 0x4649_4c45;
const AT_PHDR: u64 = 3;
/// Notes read at most: a process with 100,000 threads has about 50 MiB.
const MAX_NOTES: u64 = 64 << 20;
/// Program headers at most (one per mapping: `vm.max_map_count` is 65,530).
const MAX_PHDRS: usize = 1 << 20;
/// `struct elf_prstatus` on x86_64: the registers start at 112, 27 words.
const PRSTATUS_REGS: usize = 112;
pub const USER_REGS_WORDS: usize = 27;

/// A thread saved in the core.
#[derive(Clone, Debug)]
pub struct CoreThread {
    pub tid: i32,
    /// The signal that ended the process (0 in `gcore`'s cores). The
    /// kernel writes it into every thread's status, and the thread that
    /// took it first.
    pub signal: u16,
    /// `struct user_regs_struct` in the kernel's order (r15 … gs).
    pub regs: [u64; USER_REGS_WORDS],
}

impl CoreThread {
    /// `orig_rax`: the system call the thread was in, or -1.
    pub fn syscall(&self) -> i64 {
        self.regs[15] as i64
    }
}

/// A file-backed mapping named by `NT_FILE`.
#[derive(Clone, Debug)]
pub struct CoreMapping {
    pub start: u64,
    pub end: u64,
    /// Offset into the file, in bytes.
    pub offset: u64,
    pub path: PathBuf,
}

/// A core file, its headers parsed; memory read on demand.
#[derive(Debug)]
pub struct CoreFile {
    pub path: PathBuf,
    file: File,
    /// `PT_LOAD`s: (vaddr, memsz, file offset, filesz).
    loads: Vec<(u64, u64, u64, u64)>,
    pub pid: i32,
    /// `pr_fname`: the first 16 bytes of the command's name.
    pub command: String,
    /// `pr_psargs`: the command line, cut at 80 bytes.
    pub args: String,
    pub threads: Vec<CoreThread>,
    pub mappings: Vec<CoreMapping>,
    auxv: Vec<(u64, u64)>,
    /// Where the files the core names are looked for.
    root: PathBuf,
    /// Mapped files opened to read pages the core left out.
    files: RefCell<HashMap<PathBuf, Option<File>>>,
}

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}
fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// The notes of a `PT_NOTE` segment: (type, descriptor).
fn notes(b: &[u8]) -> Vec<(u32, &[u8])> {
    let mut out = Vec::new();
    let mut o = 0usize;
    let align = |n: usize| n.checked_add(3).map(|n| n & !3);
    while let (Some(namesz), Some(descsz), Some(kind)) =
        (u32_at(b, o), u32_at(b, o + 4), u32_at(b, o + 8))
    {
        let Some(desc) = align(namesz as usize).and_then(|n| n.checked_add(o + 12)) else {
            break;
        };
        let Some(end) = desc.checked_add(descsz as usize) else {
            break;
        };
        let Some(d) = b.get(desc..end) else { break };
        out.push((kind, d));
        match align(end) {
            Some(next) if next > o => o = next,
            _ => break,
        }
    }
    out
}

/// `NT_FILE`: count, page size, then (start, end, page offset) per file,
/// then the NUL-terminated names.
fn file_note(d: &[u8]) -> Vec<CoreMapping> {
    let (Some(count), Some(page)) = (u64_at(d, 0), u64_at(d, 8)) else {
        return Vec::new();
    };
    let count = count.min(d.len().saturating_sub(16) as u64 / 24) as usize;
    let mut names = d.get(16 + count * 24..).unwrap_or(&[]).split(|&c| c == 0);
    (0..count)
        .filter_map(|i| {
            let at = 16 + i * 24;
            let (start, end, pgoff) = (u64_at(d, at)?, u64_at(d, at + 8)?, u64_at(d, at + 16)?);
            let name = names.next()?;
            let offset = pgoff.checked_mul(page)?;
            (start < end).then(|| CoreMapping {
                start,
                end,
                offset,
                path: PathBuf::from(String::from_utf8_lossy(name).into_owned()),
            })
        })
        .collect()
}

impl CoreFile {
    /// Opens and parses `path`, which must be an x86_64 ELF core file.
    pub fn open(path: &Path) -> Result<CoreFile, Error> {
        let not_core = |why: &str| Error::NotACore {
            path: path.to_path_buf(),
            reason: why.to_string(),
        };
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(not_core("it is not a regular file"));
        }
        let size = meta.len();
        let mut h = [0u8; 64];
        file.read_exact_at(&mut h, 0)
            .map_err(|_| not_core("it is shorter than an ELF header"))?;
        if &h[..4] != b"\x7fELF" {
            return Err(not_core("it is not an ELF file"));
        }
        if h[4] != 2 || h[5] != 1 {
            return Err(not_core("it is not a 64-bit little-endian ELF file"));
        }
        if u16_at(&h, 16) != Some(4) {
            return Err(not_core(
                "it is an ELF file but not a core file (e_type is not ET_CORE)",
            ));
        }
        if u16_at(&h, 18) != Some(62) {
            return Err(not_core("it is not an x86_64 core file"));
        }
        let phoff = u64_at(&h, 32).unwrap_or(0);
        let phentsize = u16_at(&h, 54).unwrap_or(0) as u64;
        let phnum = u16_at(&h, 56).unwrap_or(0) as usize;
        if phentsize < 56 || phnum == 0 || phnum > MAX_PHDRS {
            return Err(not_core("its program headers are missing or malformed"));
        }
        let table = phentsize
            .checked_mul(phnum as u64)
            .filter(|&n| phoff.checked_add(n).is_some_and(|e| e <= size))
            .ok_or_else(|| not_core("its program headers lie past its end"))?;
        let mut ph = vec![0u8; table as usize];
        file.read_exact_at(&mut ph, phoff).map_err(io)?;
        let mut loads = Vec::new();
        let mut note_bytes = Vec::new();
        for i in 0..phnum {
            let p = &ph[i * phentsize as usize..];
            let (kind, off, vaddr, filesz, memsz) = (
                u32_at(p, 0).unwrap_or(0),
                u64_at(p, 8).unwrap_or(0),
                u64_at(p, 16).unwrap_or(0),
                u64_at(p, 32).unwrap_or(0),
                u64_at(p, 40).unwrap_or(0),
            );
            match kind {
                PT_LOAD => {
                    // Bytes past the file's end (a truncated core) are absent.
                    let filesz = filesz.min(size.saturating_sub(off)).min(memsz);
                    loads.push((vaddr, memsz, off, filesz));
                }
                PT_NOTE if filesz <= MAX_NOTES && off.saturating_add(filesz) <= size => {
                    let mut b = vec![0u8; filesz as usize];
                    file.read_exact_at(&mut b, off).map_err(io)?;
                    note_bytes.push(b);
                }
                _ => {}
            }
        }
        loads.sort_by_key(|l| l.0);
        let mut core = CoreFile {
            path: path.to_path_buf(),
            file,
            loads,
            pid: 0,
            command: String::new(),
            args: String::new(),
            threads: Vec::new(),
            mappings: Vec::new(),
            auxv: Vec::new(),
            root: PathBuf::from("/"),
            files: RefCell::default(),
        };
        for b in &note_bytes {
            for (kind, d) in notes(b) {
                core.note(kind, d);
            }
        }
        if core.threads.is_empty() {
            return Err(not_core("it holds no thread (no NT_PRSTATUS note)"));
        }
        if core.pid == 0 {
            core.pid = core.threads[0].tid;
        }
        Ok(core)
    }

    fn note(&mut self, kind: u32, d: &[u8]) {
        match kind {
            NT_PRSTATUS => {
                let mut regs = [0u64; USER_REGS_WORDS];
                for (i, r) in regs.iter_mut().enumerate() {
                    *r = u64_at(d, PRSTATUS_REGS + i * 8).unwrap_or(0);
                }
                if let Some(tid) = u32_at(d, 32) {
                    self.threads.push(CoreThread {
                        tid: tid as i32,
                        signal: u16_at(d, 12).unwrap_or(0),
                        regs,
                    });
                }
            }
            // `struct elf_prpsinfo`: pr_pid at 24, pr_fname[16] at 40,
            // pr_psargs[80] at 56.
            NT_PRPSINFO => {
                self.pid = u32_at(d, 24).unwrap_or(0) as i32;
                self.command = cstr(d.get(40..56).unwrap_or(&[]));
                self.args = cstr(d.get(56..136).unwrap_or(&[])).trim_end().to_string();
            }
            NT_AUXV => {
                self.auxv = d
                    .chunks_exact(16)
                    .map(|c| (u64_at(c, 0).unwrap_or(0), u64_at(c, 8).unwrap_or(0)))
                    .take_while(|&(k, _)| k != 0)
                    .collect();
            }
            NT_FILE => self.mappings = file_note(d),
            _ => {}
        }
    }

    /// Looks for the files the core names inside `root` instead of `/`.
    /// A path that already starts with `root` (gcore run from outside a
    /// chroot names files as it sees them) is taken below it.
    pub fn set_root(&mut self, root: PathBuf) {
        if root != Path::new("/") {
            for m in &mut self.mappings {
                if let Ok(rest) = m.path.strip_prefix(&root) {
                    m.path = Path::new("/").join(rest);
                }
            }
        }
        self.root = root;
        self.files.borrow_mut().clear();
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of the program's executable: the mapping that holds its
    /// program headers (`AT_PHDR`).
    pub fn executable(&self) -> Option<&Path> {
        let phdr = self.auxv.iter().find(|a| a.0 == AT_PHDR)?.1;
        self.mappings
            .iter()
            .find(|m| m.start <= phdr && phdr < m.end)
            .map(|m| m.path.as_path())
    }

    /// The file-backed mappings as `/proc/PID/maps` would list them (no
    /// device, inode or permissions: a core does not keep them; a mapping
    /// the core holds no bytes for is taken for code).
    pub fn maps(&self) -> Vec<Mapping> {
        self.mappings
            .iter()
            .map(|m| {
                let dumped = self
                    .loads
                    .iter()
                    .any(|l| l.0 <= m.start && m.start < l.0.saturating_add(l.1) && l.3 > 0);
                Mapping {
                    start: RemoteAddr(m.start),
                    end: RemoteAddr(m.end),
                    perms: if dumped { "rw-p" } else { "r-xp" }.into(),
                    offset: m.offset,
                    dev: (0, 0),
                    inode: 0,
                    path: Some(m.path.clone()),
                    deleted: false,
                }
            })
            .collect()
    }

    /// Fills `buf` from the process's memory at `addr`, all or nothing:
    /// from the core's bytes, or for pages it left out, from the file
    /// mapped there.
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), String> {
        let mut done = 0usize;
        while done < buf.len() {
            let at = addr
                .checked_add(done as u64)
                .ok_or_else(|| format!("{addr:#x}: past the end of the address space"))?;
            let n = self.read_some(at, &mut buf[done..])?;
            done += n;
        }
        Ok(())
    }

    fn read_some(&self, at: u64, buf: &mut [u8]) -> Result<usize, String> {
        let i = self.loads.partition_point(|l| l.0 <= at);
        let load = i
            .checked_sub(1)
            .map(|i| self.loads[i])
            .filter(|l| at - l.0 < l.1);
        if let Some((vaddr, memsz, off, filesz)) = load {
            let into = at - vaddr;
            if into < filesz {
                let n = (memsz - into).min(filesz - into).min(buf.len() as u64) as usize;
                self.file
                    .read_exact_at(&mut buf[..n], off + into)
                    .map_err(|e| format!("{at:#x}: reading the core file: {e}"))?;
                return Ok(n);
            }
        }
        // Not dumped (code and read-only data, which gdb leaves out and
        // the kernel leaves as empty segments): the file mapped there.
        let m = self
            .mappings
            .iter()
            .find(|m| m.start <= at && at < m.end)
            .ok_or_else(|| format!("{at:#x} is not in the core file"))?;
        // Up to the next dumped segment, which holds what the file may not.
        let next = self.loads.get(i).map_or(u64::MAX, |l| l.0);
        let n = (buf.len() as u64).min(m.end - at).min(next - at) as usize;
        let mut files = self.files.borrow_mut();
        let f = files.entry(m.path.clone()).or_insert_with(|| {
            open::open_in_root(&self.root, &m.path, None)
                .ok()
                .map(|o| o.file)
        });
        let f = f.as_ref().ok_or_else(|| {
            format!(
                "{at:#x}: the core file leaves this page to {}, which cannot be read",
                m.path.display()
            )
        })?;
        f.read_exact_at(&mut buf[..n], m.offset + (at - m.start))
            .map_err(|e| format!("{at:#x}: reading {}: {e}", m.path.display()))?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_stop_at_malformed_sizes() {
        let mut b = Vec::new();
        b.extend_from_slice(&5u32.to_le_bytes());
        b.extend_from_slice(&4u32.to_le_bytes());
        b.extend_from_slice(&NT_AUXV.to_le_bytes());
        b.extend_from_slice(b"CORE\0\0\0\0");
        b.extend_from_slice(&[1, 2, 3, 4]);
        b.extend_from_slice(&u32::MAX.to_le_bytes());
        b.extend_from_slice(&u32::MAX.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        let n = notes(&b);
        assert_eq!(n.len(), 1);
        assert_eq!(n[0], (NT_AUXV, &[1u8, 2, 3, 4][..]));
    }

    #[test]
    fn file_note_bounds_its_count() {
        let mut d = Vec::new();
        d.extend_from_slice(&u64::MAX.to_le_bytes());
        d.extend_from_slice(&4096u64.to_le_bytes());
        for v in [0x1000u64, 0x2000, 2] {
            d.extend_from_slice(&v.to_le_bytes());
        }
        d.extend_from_slice(b"/usr/bin/python3\0");
        let m = file_note(&d);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].offset, 8192);
        assert_eq!(m[0].path, Path::new("/usr/bin/python3"));
    }
}
