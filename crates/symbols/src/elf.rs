//! One ELF file, opened without mmap: only the parts asked for are read
//! (object's `ReadCache`), and what was extracted (headers, symbol tables)
//! is kept, so a file is never parsed twice.

use crate::error::Error;
use crate::table::{Entry, SymbolTable};
use object::elf;
use object::read::elf::{ElfFile64, Rela, SectionHeader, Sym};
use object::read::StringTable;
use object::{
    Endianness, Object, ObjectSection, ReadCache, ReadRef, SectionFlags, SectionIndex, SectionKind,
};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// Largest `.gnu_debugdata` payload we accept after decompression, so a
/// hostile file cannot make us allocate without bound.
const MAX_DEBUGDATA: usize = 256 << 20;

enum Backing {
    /// Headers and tables through the cache; large raw ranges (code for
    /// capstone, `.rodata`) straight from the second handle, uncached.
    File(Mutex<ReadCache<File>>, OnceLock<Option<Mutex<File>>>),
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

fn parse<'d, R: ReadRef<'d>>(data: R, path: &Path) -> Result<ElfFile64<'d, Endianness, R>, Error> {
    ElfFile64::<Endianness, R>::parse(data).map_err(|e| bad(path, e))
}

fn header<'d, R: ReadRef<'d>>(data: R, path: &Path) -> Result<Header, Error> {
    let file = parse(data, path)?;
    let endian = file.endian();
    let mut segments = Vec::new();
    for ph in file.elf_program_headers() {
        if ph.p_type.get(endian) == elf::PT_LOAD {
            segments.push(Segment {
                vaddr: ph.p_vaddr.get(endian),
                memsz: ph.p_memsz.get(endian),
                offset: ph.p_offset.get(endian),
                filesz: ph.p_filesz.get(endian),
            });
        }
    }
    let mut sections = Vec::new();
    let mut has_debugdata = false;
    for s in file.sections() {
        let Ok(name) = s.name() else { continue };
        if name == ".gnu_debugdata" {
            has_debugdata = true;
        }
        let exec = matches!(s.flags(), SectionFlags::Elf { sh_flags, .. } if sh_flags.contains(elf::SHF_EXECINSTR));
        sections.push(Section {
            name: name.to_string(),
            addr: s.address(),
            size: s.size(),
            exec,
        });
    }
    // A broken note or debuglink only loses that piece of information.
    let build_id = file.build_id().ok().flatten().map(<[u8]>::to_vec);
    let debuglink = file
        .gnu_debuglink()
        .ok()
        .flatten()
        .map(|(n, crc)| (String::from_utf8_lossy(n).into_owned(), crc));
    Ok(Header {
        segments,
        sections,
        build_id,
        debuglink,
        has_debugdata,
        dynsym_at: symbol_sections(&file, elf::SHT_DYNSYM),
        symtab_at: symbol_sections(&file, elf::SHT_SYMTAB),
        endian,
    })
}

/// Where the first section of type `want` and its string table lie in the
/// file (`None` for a `NOBITS` placeholder, as in a separate debug file).
fn symbol_sections<'d, R: ReadRef<'d>>(
    file: &ElfFile64<'d, Endianness, R>,
    want: elf::SectionType,
) -> Option<SymbolSections> {
    let endian = file.endian();
    let sections = file.elf_section_table();
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
    let Ok(file) = parse(data, path) else {
        return out;
    };
    let endian = file.endian();
    let sections = file.elf_section_table();
    let Some((dynsym_index, dynsym)) = sections
        .iter()
        .enumerate()
        .find(|(_, s)| s.sh_type(endian) == elf::SHT_DYNSYM)
    else {
        return out;
    };
    let (Ok(symdata), Ok(strsh)) = (
        dynsym.data(endian, data),
        sections.section(SectionIndex(dynsym.sh_link(endian) as usize)),
    ) else {
        return out;
    };
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
        if sh.sh_type(endian) != elf::SHT_RELA || sh.sh_link(endian) as usize != dynsym_index {
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

/// `(file offset, size)` of a section with contents in the file.
fn section_range<'d, R: ReadRef<'d>>(data: R, path: &Path, name: &str) -> Option<(u64, u64)> {
    let file = parse(data, path).ok()?;
    let s = file.section_by_name(name)?;
    if s.kind() == SectionKind::UninitializedData {
        return None;
    }
    s.file_range()
}

macro_rules! with_data {
    ($self:expr, $d:ident => $body:expr) => {
        match &$self.backing {
            Backing::File(m, _) => {
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
    /// Opens `path` and reads its headers.
    pub fn open(path: &Path) -> Result<ElfSource, Error> {
        let f = File::open(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::build(
            path.to_path_buf(),
            Backing::File(Mutex::new(ReadCache::new(f)), OnceLock::new()),
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
        let (off, size) = with_data!(self, d => section_range(d, &self.path, name))?;
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
            Backing::File(_, raw) => {
                use std::io::{Read, Seek, SeekFrom};
                // A second handle, opened on first use, so large reads
                // bypass (and do not bloat) the cache. `read_to_end` fills
                // the spare capacity: no pass zeroing a buffer first.
                let raw = raw.get_or_init(|| File::open(&self.path).ok().map(Mutex::new));
                let mut f = raw.as_ref()?.lock().unwrap_or_else(|p| p.into_inner());
                f.seek(SeekFrom::Start(off)).ok()?;
                let mut out = Vec::with_capacity(len);
                (&mut *f).take(len as u64).read_to_end(&mut out).ok()?;
                (out.len() == len).then_some(out)
            }
        }
    }

    /// The whole file's bytes (for the `.gnu_debuglink` CRC).
    pub fn crc32(&self) -> Option<u32> {
        match &self.backing {
            Backing::Bytes(b) => Some(crc32fast::hash(b)),
            Backing::File(..) => {
                let mut f = File::open(&self.path).ok()?;
                let mut h = crc32fast::Hasher::new();
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    let n = std::io::Read::read(&mut f, &mut buf).ok()?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
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
