//! One ELF file, opened without mmap: only the parts asked for are read
//! (object's `ReadCache`), and what was extracted (headers, symbol tables)
//! is kept, so a file is never parsed twice.

use crate::error::Error;
use crate::open::Opened;
use crate::table::{Entry, SymbolTable};
use object::elf;
use object::read::elf::{FileHeader, Rela, SectionHeader, SectionTable, Sym};
use object::read::StringTable;
use object::{Endianness, ReadCache, ReadRef, SectionIndex};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// Largest `.gnu_debugdata` payload we accept after decompression, so a
/// hostile file cannot make us allocate without bound.
const MAX_DEBUGDATA: usize = 32 << 20;

/// Largest single piece of a file read at once (a section, a symbol
/// table): a libpython's `.symtab` is under a megabyte, so a header that
/// claims more is a trap to make us allocate, refused before any read.
pub(crate) const MAX_READ: u64 = 32 << 20;

enum Backing {
    /// Headers and tables through the cache; large raw ranges (code for
    /// capstone, `.rodata`) straight from the same file with `pread`,
    /// uncached, never past the size it had when opened.
    File(Mutex<ReadCache<File>>, File, u64),
    Bytes(Vec<u8>),
}

/// A `PT_LOAD` program header.
#[derive(Clone, Debug)]
pub(crate) struct Segment {
    pub vaddr: u64,
    pub memsz: u64,
    pub offset: u64,
    pub filesz: u64,
}

/// A section header, reduced to what we use.
#[derive(Clone, Debug)]
pub(crate) struct Section {
    pub name: String,
    pub addr: u64,
    pub size: u64,
    pub exec: bool,
    /// `(offset, size)` in the file, unless `NOBITS`.
    pub file_range: Option<(u64, u64)>,
}

/// An opened ELF file and what has been extracted from it so far.
pub(crate) struct ElfSource {
    pub path: PathBuf,
    backing: Backing,
    pub segments: Vec<Segment>,
    pub sections: Vec<Section>,
    pub build_id: Option<Vec<u8>>,
    /// `.gnu_debuglink`: file name and CRC32 of the debug file.
    pub debuglink: Option<(String, u32)>,
    has_debugdata: bool,
    /// Where `.dynsym`/`.symtab` and their string tables are in the file.
    dynsym_at: Option<SymbolSections>,
    symtab_at: Option<SymbolSections>,
    endian: Endianness,
    dynsym: OnceLock<SymbolTable>,
    symtab: OnceLock<SymbolTable>,
}

/// `(file offset, size)` of a symbol section and of its string table.
#[derive(Clone, Copy, Debug)]
struct SymbolSections {
    symbols: (u64, u64),
    strings: (u64, u64),
}

impl std::fmt::Debug for ElfSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElfSource")
            .field("path", &self.path)
            .finish()
    }
}

struct Header {
    segments: Vec<Segment>,
    sections: Vec<Section>,
    build_id: Option<Vec<u8>>,
    debuglink: Option<(String, u32)>,
    has_debugdata: bool,
    dynsym_at: Option<SymbolSections>,
    symtab_at: Option<SymbolSections>,
    endian: Endianness,
}

fn bad(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::BadElf {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// The ELF header, its endianness and section table. `ElfFile64::parse`
/// is not used: it reads both symbol tables up front (368 KB of
/// libpython's `.symtab` on every run, even when no symbol is asked of it).
type Sections<'d, R> = SectionTable<'d, elf::FileHeader64<Endianness>, R>;

fn parse<'d, R: ReadRef<'d>>(
    data: R,
    path: &Path,
) -> Result<
    (
        &'d elf::FileHeader64<Endianness>,
        Endianness,
        Sections<'d, R>,
    ),
    Error,
> {
    let fh = elf::FileHeader64::<Endianness>::parse(data).map_err(|e| bad(path, e))?;
    let endian = fh.endian().map_err(|e| bad(path, e))?;
    let sections = fh.sections(endian, data).map_err(|e| bad(path, e))?;
    Ok((fh, endian, sections))
}

fn header<'d, R: ReadRef<'d>>(data: R, path: &Path) -> Result<Header, Error> {
    let (fh, endian, table) = parse(data, path)?;
    let mut segments = Vec::new();
    for ph in fh.program_headers(endian, data).map_err(|e| bad(path, e))? {
        if ph.p_type.get(endian) == elf::PT_LOAD {
            segments.push(Segment {
                vaddr: ph.p_vaddr.get(endian),
                memsz: ph.p_memsz.get(endian),
                offset: ph.p_offset.get(endian),
                filesz: ph.p_filesz.get(endian),
            });
        }
    }
    // The section names in one read (through the cache they would cost a
    // read per name).
    let shstrtab = fh
        .shstrndx(endian, data)
        .ok()
        .and_then(|i| table.section(SectionIndex(i as usize)).ok())
        .filter(|sh| small(sh, endian))
        .and_then(|sh| sh.data(endian, data).ok())
        .unwrap_or(&[]);
    let names = StringTable::new(shstrtab, 0, shstrtab.len() as u64);
    let mut sections = Vec::new();
    let mut has_debugdata = false;
    let mut build_id = None;
    let mut debuglink = None;
    for sh in table.iter().skip(1) {
        let Ok(name) = names.get(sh.sh_name(endian)) else {
            continue;
        };
        let name = String::from_utf8_lossy(name).into_owned();
        // A broken note or debuglink only loses that piece of information.
        match name.as_str() {
            ".gnu_debugdata" => has_debugdata = true,
            ".gnu_debuglink" if debuglink.is_none() && sh.sh_size(endian) <= NOTE_MAX => {
                debuglink = sh
                    .data(endian, data)
                    .ok()
                    .and_then(|d| debuglink_of(d, endian));
            }
            _ => {}
        }
        if build_id.is_none() && sh.sh_size(endian) <= NOTE_MAX {
            build_id = build_id_of(sh, endian, data);
        }
        let file_range = sh.file_range(endian);
        sections.push(Section {
            name,
            addr: sh.sh_addr(endian),
            size: sh.sh_size(endian),
            exec: sh.sh_flags(endian).contains(elf::SHF_EXECINSTR),
            file_range,
        });
    }
    Ok(Header {
        segments,
        sections,
        build_id,
        debuglink,
        has_debugdata,
        dynsym_at: symbol_sections(&table, endian, elf::SHT_DYNSYM),
        symtab_at: symbol_sections(&table, endian, elf::SHT_SYMTAB),
        endian,
    })
}

/// Largest note or `.gnu_debuglink` section read (a build id note is 36
/// bytes): a file cannot make us read every section in search of one.
const NOTE_MAX: u64 = 4096;

/// Whether a section is small enough to read ([`MAX_READ`]).
fn small(sh: &elf::SectionHeader64<Endianness>, endian: Endianness) -> bool {
    sh.sh_size(endian) <= MAX_READ
}

/// The GNU build id, if `sh` is a note section that holds one.
fn build_id_of<'d, R: ReadRef<'d>>(
    sh: &elf::SectionHeader64<Endianness>,
    endian: Endianness,
    data: R,
) -> Option<Vec<u8>> {
    let mut notes = sh.notes(endian, data).ok()??;
    while let Ok(Some(note)) = notes.next() {
        if note.name() == elf::ELF_NOTE_GNU && note.n_type(endian) == elf::NT_GNU_BUILD_ID {
            return Some(note.desc().to_vec());
        }
    }
    None
}

/// `.gnu_debuglink`: a NUL-terminated file name, then the CRC32 of the
/// debug file at the next multiple of 4.
fn debuglink_of(d: &[u8], endian: Endianness) -> Option<(String, u32)> {
    let len = memchr::memchr(0, d)?;
    let at = (len + 1).next_multiple_of(4);
    let crc: [u8; 4] = d.get(at..at + 4)?.try_into().ok()?;
    let crc = match endian {
        Endianness::Little => u32::from_le_bytes(crc),
        Endianness::Big => u32::from_be_bytes(crc),
    };
    Some((String::from_utf8_lossy(&d[..len]).into_owned(), crc))
}

/// Where the first section of type `want` and its string table lie in the
/// file (`None` for a `NOBITS` placeholder, as in a separate debug file).
fn symbol_sections<'d, R: ReadRef<'d>>(
    sections: &Sections<'d, R>,
    endian: Endianness,
    want: elf::SectionType,
) -> Option<SymbolSections> {
    let sh = sections.iter().find(|s| s.sh_type(endian) == want)?;
    let strsh = sections
        .section(SectionIndex(sh.sh_link(endian) as usize))
        .ok()?;
    Some(SymbolSections {
        symbols: sh.file_range(endian)?,
        strings: strsh.file_range(endian)?,
    })
}

/// Decodes a symbol section (`symbols`, the raw `Elf64_Sym` array) over
/// its string table. Both were read in one piece each, straight from the
/// file: decoding keeps one small record per defined symbol and no name is
/// copied or validated.
fn table(symbols: &[u8], strings: Vec<u8>, endian: Endianness) -> SymbolTable {
    let mut t = SymbolTable::new(strings);
    let count = symbols.len() / std::mem::size_of::<elf::Sym64<Endianness>>();
    let Ok((syms, _)) = object::pod::slice_from_bytes::<elf::Sym64<Endianness>>(symbols, count)
    else {
        return t;
    };
    for sym in syms.iter().skip(1) {
        let shndx = sym.st_shndx(endian);
        if shndx == elf::SHN_UNDEF || (shndx.is_reserved() && shndx != elf::SHN_XINDEX) {
            continue;
        }
        let size = sym.st_size(endian);
        let func = match sym.st_type() {
            elf::STT_FUNC | elf::STT_GNU_IFUNC => true,
            elf::STT_OBJECT => false,
            elf::STT_NOTYPE if size > 0 => false,
            _ => continue,
        };
        t.insert_at(
            sym.st_name(endian),
            Entry {
                value: sym.st_value(endian),
                size,
                global: matches!(sym.st_bind(), elf::STB_GLOBAL | elf::STB_WEAK),
                func,
            },
        );
    }
    t
}

/// `JUMP_SLOT`/`GLOB_DAT` relocations against `.dynsym`, decoded in memory
/// like the symbol tables (a libpython has tens of thousands of `RELATIVE`
/// relocations to skip).
fn got_slots<'d, R: ReadRef<'d>>(data: R, path: &Path) -> Vec<(String, u64, bool)> {
    let mut out = Vec::new();
    let Ok((_, endian, sections)) = parse(data, path) else {
        return out;
    };
    let Some((dynsym_index, dynsym)) = sections
        .iter()
        .enumerate()
        .find(|(_, s)| s.sh_type(endian) == elf::SHT_DYNSYM)
    else {
        return out;
    };
    if !small(dynsym, endian) {
        return out;
    }
    let (Ok(symdata), Ok(strsh)) = (
        dynsym.data(endian, data),
        sections.section(SectionIndex(dynsym.sh_link(endian) as usize)),
    ) else {
        return out;
    };
    if !small(strsh, endian) {
        return out;
    }
    let Ok(strdata) = strsh.data(endian, data) else {
        return out;
    };
    let sym_size = std::mem::size_of::<elf::Sym64<Endianness>>();
    let Ok((syms, _)) =
        object::pod::slice_from_bytes::<elf::Sym64<Endianness>>(symdata, symdata.len() / sym_size)
    else {
        return out;
    };
    let strings = StringTable::new(strdata, 0, strdata.len() as u64);
    for sh in sections.iter() {
        if sh.sh_type(endian) != elf::SHT_RELA
            || sh.sh_link(endian) as usize != dynsym_index
            || !small(sh, endian)
        {
            continue;
        }
        let Ok(reldata) = sh.data(endian, data) else {
            continue;
        };
        let rel_size = std::mem::size_of::<elf::Rela64<Endianness>>();
        let Ok((relas, _)) = object::pod::slice_from_bytes::<elf::Rela64<Endianness>>(
            reldata,
            reldata.len() / rel_size,
        ) else {
            continue;
        };
        for r in relas {
            let ty = r.r_type(endian, false);
            if ty != elf::R_X86_64_JUMP_SLOT && ty != elf::R_X86_64_GLOB_DAT {
                continue;
            }
            let Some(sym) = syms.get(r.r_sym(endian, false) as usize) else {
                continue;
            };
            if let Ok(name) = sym.name(endian, strings) {
                if let Ok(name) = std::str::from_utf8(name) {
                    out.push((
                        name.to_string(),
                        r.r_offset(endian),
                        ty == elf::R_X86_64_JUMP_SLOT,
                    ));
                }
            }
        }
    }
    out
}

macro_rules! with_data {
    ($self:expr, $d:ident => $body:expr) => {
        match &$self.backing {
            Backing::File(m, ..) => {
                let guard = m.lock().unwrap_or_else(|p| p.into_inner());
                let $d = &*guard;
                $body
            }
            Backing::Bytes(b) => {
                let $d = b.as_slice();
                $body
            }
        }
    };
}

impl ElfSource {
    /// Opens `path`, a file of our own file system or a kernel magic link
    /// (checked: a regular file of bounded size), and reads its headers.
    pub fn open(path: &Path) -> Result<ElfSource, Error> {
        let opened = crate::open::open_path(path).map_err(|r| r.into_error(path))?;
        Self::from_opened(path.to_path_buf(), opened)
    }

    /// Reads the headers of a file opened by [`crate::open`]; `path` names
    /// it in messages.
    pub fn from_opened(path: PathBuf, opened: Opened) -> Result<ElfSource, Error> {
        let raw = opened.file.try_clone().map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        Self::build(
            path,
            Backing::File(Mutex::new(ReadCache::new(opened.file)), raw, opened.size),
        )
    }

    /// An ELF file held in memory (a decompressed `.gnu_debugdata`).
    pub fn from_bytes(path: PathBuf, bytes: Vec<u8>) -> Result<ElfSource, Error> {
        Self::build(path, Backing::Bytes(bytes))
    }

    fn build(path: PathBuf, backing: Backing) -> Result<ElfSource, Error> {
        let mut src = ElfSource {
            path,
            backing,
            segments: Vec::new(),
            sections: Vec::new(),
            build_id: None,
            debuglink: None,
            has_debugdata: false,
            dynsym_at: None,
            symtab_at: None,
            endian: Endianness::Little,
            dynsym: OnceLock::new(),
            symtab: OnceLock::new(),
        };
        let h = with_data!(src, d => header(d, &src.path))?;
        src.dynsym_at = h.dynsym_at;
        src.symtab_at = h.symtab_at;
        src.endian = h.endian;
        src.segments = h.segments;
        src.sections = h.sections;
        src.build_id = h.build_id;
        src.debuglink = h.debuglink;
        src.has_debugdata = h.has_debugdata;
        Ok(src)
    }

    pub fn dynsym(&self) -> &SymbolTable {
        self.dynsym.get_or_init(|| self.load_table(self.dynsym_at))
    }

    pub fn symtab(&self) -> &SymbolTable {
        self.symtab.get_or_init(|| self.load_table(self.symtab_at))
    }

    /// Reads a symbol section and its string table with one read each,
    /// bypassing the header cache (they are read once, and a libpython's
    /// `.symtab` and `.strtab` weigh most of a megabyte).
    fn load_table(&self, at: Option<SymbolSections>) -> SymbolTable {
        let read = |(off, size): (u64, u64)| self.read_at(off, usize::try_from(size).ok()?);
        let Some(at) = at else {
            return SymbolTable::default();
        };
        match (read(at.symbols), read(at.strings)) {
            (Some(symbols), Some(strings)) => table(&symbols, strings, self.endian),
            _ => SymbolTable::default(),
        }
    }

    /// `(symbol name, GOT slot address, is JUMP_SLOT)` of every
    /// `JUMP_SLOT`/`GLOB_DAT` relocation: how calls through the PLT or the
    /// GOT are recognized.
    pub fn got_slots(&self) -> Vec<(String, u64, bool)> {
        with_data!(self, d => got_slots(d, &self.path))
    }

    pub fn section_data(&self, name: &str) -> Option<Vec<u8>> {
        // A section with contents in the file (not `NOBITS`).
        let (off, size) = self
            .sections
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.file_range)?;
        self.read_at(off, usize::try_from(size).ok()?)
    }

    /// The decompressed MiniDebugInfo ELF of `.gnu_debugdata`, if any.
    pub fn debugdata(&self) -> Option<ElfSource> {
        if !self.has_debugdata {
            return None;
        }
        let xz = self.section_data(".gnu_debugdata")?;
        let mut out = Capped(Vec::new());
        lzma_rs::xz_decompress(&mut &xz[..], &mut out).ok()?;
        let mut path = self.path.clone().into_os_string();
        path.push("#.gnu_debugdata");
        ElfSource::from_bytes(path.into(), out.0).ok()
    }

    /// Reads `len` bytes of the file image at file address `addr`, which must
    /// lie in the file-backed part of one `PT_LOAD` segment.
    pub fn read_vaddr(&self, addr: u64, len: usize) -> Option<Vec<u8>> {
        let end = addr.checked_add(len as u64)?;
        let seg = self
            .segments
            .iter()
            .find(|s| addr >= s.vaddr && end <= s.vaddr.saturating_add(s.filesz))?;
        let off = seg.offset.checked_add(addr - seg.vaddr)?;
        self.read_at(off, len)
    }

    /// Reads `len` bytes at file offset `off`.
    pub fn read_at(&self, off: u64, len: usize) -> Option<Vec<u8>> {
        match &self.backing {
            Backing::Bytes(b) => {
                let end = off.checked_add(len as u64)?;
                b.get(usize::try_from(off).ok()?..usize::try_from(end).ok()?)
                    .map(<[u8]>::to_vec)
            }
            Backing::File(_, raw, size) => {
                // `pread` on a second descriptor of the same open file:
                // large reads bypass (and do not bloat) the cache, and the
                // cache's file offset is left alone.
                let end = off.checked_add(len as u64)?;
                if len as u64 > MAX_READ || end > *size {
                    return None;
                }
                let mut out = vec![0u8; len];
                raw.read_exact_at(&mut out, off).ok()?;
                Some(out)
            }
        }
    }

    /// The whole file's bytes (for the `.gnu_debuglink` CRC).
    pub fn crc32(&self) -> Option<u32> {
        match &self.backing {
            Backing::Bytes(b) => Some(crc32fast::hash(b)),
            Backing::File(_, raw, size) => {
                // Up to the size it had when opened: a file that grows
                // while read does not keep us reading.
                let mut h = crc32fast::Hasher::new();
                let mut buf = vec![0u8; 1 << 16];
                let mut at = 0u64;
                while at < *size {
                    let n = raw.read_at(&mut buf, at).ok()?;
                    if n == 0 {
                        return None;
                    }
                    let n = n.min(usize::try_from(*size - at).unwrap_or(n));
                    h.update(&buf[..n]);
                    at += n as u64;
                }
                Some(h.finalize())
            }
        }
    }
}

/// A writer that refuses to grow past [`MAX_DEBUGDATA`].
struct Capped(Vec<u8>);

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > MAX_DEBUGDATA {
            return Err(std::io::Error::other(".gnu_debugdata too large"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
