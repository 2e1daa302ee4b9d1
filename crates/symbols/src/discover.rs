//! From a pid to an [`Interpreter`]: the mapped modules, the one that holds
//! CPython, its load bias, version and symbol chain.

use crate::addr::{hex, FileAddr, RemoteAddr};
use crate::chain::{ModuleSymbols, Symbol, SymbolSource};
use crate::elf::ElfSource;
use crate::error::Error;
use crate::maps::{self, Mapping};
use crate::open::{self, FileId};
use crate::version::{PyVersion, VersionCheck, VersionSource};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Fetches the debug file of a build id (raw bytes) and returns where it now
/// is on this machine, or `None`. The CLI plugs its debuginfod client in here,
/// so this crate never touches the network.
pub type DebugFetcher = Arc<dyn Fn(&[u8]) -> Option<PathBuf> + Send + Sync>;

/// How far discovery may look for symbols.
#[derive(Clone)]
pub struct DiscoverOptions {
    /// Global debug directories (`/usr/lib/debug` by default), searched for
    /// `.build-id/xx/rest.debug` and `.gnu_debuglink` targets, first inside
    /// the target's file system, then in ours. Empty: no build-id lookup.
    pub debug_dirs: Vec<PathBuf>,
    /// Follow `.gnu_debuglink` (default true).
    pub use_debuglink: bool,
    /// Last resort: a debuginfod client. `None` (the default): no network.
    pub debuginfod: Option<DebugFetcher>,
}

impl Default for DiscoverOptions {
    fn default() -> Self {
        DiscoverOptions {
            debug_dirs: vec![PathBuf::from("/usr/lib/debug")],
            use_debuglink: true,
            debuginfod: None,
        }
    }
}

impl std::fmt::Debug for DiscoverOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscoverOptions")
            .field("debug_dirs", &self.debug_dirs)
            .field("use_debuglink", &self.use_debuglink)
            .field("debuginfod", &self.debuginfod.is_some())
            .finish()
    }
}

/// A mapped executable range of a module.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Range {
    pub start: RemoteAddr,
    pub end: RemoteAddr,
}

/// An ELF file mapped into the target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Module {
    /// Path in the target's mount namespace, as `/proc/PID/maps` shows it.
    pub path: PathBuf,
    /// The path we read it through (`/proc/PID/root/…` or
    /// `/proc/PID/map_files/…`).
    pub path_via_proc_root: PathBuf,
    /// Lowest mapped address.
    pub base: RemoteAddr,
    /// End of the image: the highest mapping or the end of `.bss`.
    pub end: RemoteAddr,
    /// Added to a file address to get the address in the target.
    pub load_bias: u64,
    /// GNU build id, lowercase hex.
    pub build_id: Option<String>,
    /// The file's device (major, minor) and inode, as the mapping says: a
    /// file reopened by path must still be this one.
    pub dev: (u32, u32),
    pub inode: u64,
    pub is_main_executable: bool,
    /// The mappings that are executable.
    pub code: Vec<Range>,
}

impl Module {
    pub fn to_remote(&self, a: FileAddr) -> RemoteAddr {
        RemoteAddr(a.0.wrapping_add(self.load_bias))
    }
    pub fn to_file(&self, a: RemoteAddr) -> FileAddr {
        FileAddr(a.0.wrapping_sub(self.load_bias))
    }
    pub fn contains(&self, a: RemoteAddr) -> bool {
        self.base <= a && a < self.end
    }
    /// The file name, e.g. `libpython3.12.so.1.0`.
    pub fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// How the interpreter was built.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BuildInfo {
    /// CPython lives in a `libpython*.so` rather than in the executable.
    pub shared_library: bool,
    /// A `--with-pydebug` build (`Py_REF_DEBUG`: `_Py_NegativeRefcount`).
    pub debug_build: bool,
    /// A free-threaded build (`Py_GIL_DISABLED`, 3.13+): no GIL, other
    /// struct layouts. Seen in `_Py_DebugOffsets.free_threaded` as the
    /// file initializes `_PyRuntime`, or the `t` ABI flag in the name
    /// (`python3.14t`, `libpython3.14t.so`).
    pub free_threaded: bool,
}

/// An executable section of a module (`.text`, `.plt`, `.plt.sec`, …).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CodeSection {
    pub name: String,
    pub addr: RemoteAddr,
    pub size: u64,
}

/// Which relocation fills a GOT slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GotKind {
    /// `R_X86_64_JUMP_SLOT`: read by the symbol's PLT entry.
    JumpSlot,
    /// `R_X86_64_GLOB_DAT`: read by code built with `-fno-plt` (or taking
    /// the symbol's address).
    GlobDat,
}

/// A GOT slot that will hold a symbol's address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GotSlot {
    pub name: String,
    pub addr: RemoteAddr,
    pub kind: GotKind,
}

/// The CPython found in a process.
pub struct Interpreter {
    pub pid: i32,
    pub version: PyVersion,
    pub build: BuildInfo,
    /// The process's executable (path in the target's file system).
    pub executable: PathBuf,
    /// The module holding the interpreter (the executable or a libpython).
    pub module: Module,
    /// The mapped files that were not read, each with why (a FIFO, not the
    /// file mapped, …): their symbols are missing.
    pub refused: Vec<String>,
    modules: Vec<Module>,
    syms: Vec<ModuleSymbols>,
    interp: usize,
    /// The target's file system: `/proc/PID/root`, or for a core file
    /// the directory its files are looked for in.
    root: PathBuf,
}

impl std::fmt::Debug for Interpreter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interpreter")
            .field("pid", &self.pid)
            .field("version", &self.version)
            .field("executable", &self.executable)
            .field("module", &self.module)
            .finish_non_exhaustive()
    }
}

fn proc_err(pid: i32, what: &'static str, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        Error::NoSuchProcess(pid)
    } else {
        Error::Proc {
            pid,
            what,
            source: e,
        }
    }
}

/// The state letter of `/proc/PID/stat` (`R`, `S`, `Z`, …).
fn state(pid: i32) -> Result<char, Error> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| proc_err(pid, "stat", e))?;
    Ok(stat
        .rsplit(')')
        .next()
        .and_then(|r| r.trim_start().chars().next())
        .unwrap_or('?'))
}

/// The load bias of a file whose lowest mapping is `first`.
///
/// The kernel maps each `PT_LOAD` from `page_down(p_offset)` to
/// `bias + page_down(p_vaddr)`, so the mapping of file offset `first.offset`
/// tells the bias through the segment that starts on that page.
fn load_bias(elf: &ElfSource, first: &Mapping) -> u64 {
    const PAGE: u64 = 0xfff;
    for seg in &elf.segments {
        if seg.offset & !PAGE == first.offset {
            return first.start.0.wrapping_sub(seg.vaddr & !PAGE);
        }
    }
    // A mapping inside a segment (its start was unmapped): use the segment
    // that covers the offset.
    for seg in &elf.segments {
        if first.offset >= seg.offset & !PAGE
            && first.offset < seg.offset.saturating_add(seg.filesz)
        {
            let vaddr = (seg.vaddr & !PAGE).wrapping_add(first.offset - (seg.offset & !PAGE));
            return first.start.0.wrapping_sub(vaddr);
        }
    }
    first.start.0.wrapping_sub(first.offset)
}

/// Opens a mapped file: the very file mapped through
/// `/proc/PID/map_files` where our privileges allow (`CAP_SYS_ADMIN` or
/// `CAP_CHECKPOINT_RESTORE`), else its path inside the target's root,
/// checked to be the mapped file (device and inode). Each file is checked
/// before it is read (see `open.rs`); a refusal says why.
fn open_mapped(pid: i32, path: &Path, first: &Mapping) -> Result<(ElfSource, PathBuf), Error> {
    let magic = PathBuf::from(format!(
        "/proc/{pid}/map_files/{:x}-{:x}",
        first.start.0, first.end.0
    ));
    let refusal = match open::open_path(&magic) {
        Ok(o) => return Ok((ElfSource::from_opened(path.to_path_buf(), o)?, magic)),
        Err(r) if r.is_permission() => r,
        Err(r) => return Err(r.into_error(path)),
    };
    if first.deleted {
        return Err(Error::Refused {
            path: path.to_path_buf(),
            reason: format!(
                "it was deleted or replaced since it was mapped, and reading the mapped \
                 file needs CAP_SYS_ADMIN ({refusal})"
            ),
        });
    }
    let root = PathBuf::from(format!("/proc/{pid}/root"));
    let id = FileId {
        major: first.dev.0,
        minor: first.dev.1,
        inode: first.inode,
    };
    let opened = open::open_in_root(&root, path, Some(id)).map_err(|r| r.into_error(path))?;
    let via = root.join(path.strip_prefix("/").unwrap_or(path));
    Ok((ElfSource::from_opened(path.to_path_buf(), opened)?, via))
}

/// Opens a module's file again the way discovery first reached it, with
/// the same checks.
fn reopen_file(root: &Path, module: &Module) -> Result<open::Opened, Error> {
    let via = &module.path_via_proc_root;
    let opened = if via.starts_with(root) {
        // A core file does not say which inode was mapped.
        let id = (module.inode != 0).then_some(FileId {
            major: module.dev.0,
            minor: module.dev.1,
            inode: module.inode,
        });
        open::open_in_root(root, &module.path, id)
    } else {
        open::open_path(via)
    };
    opened.map_err(|r| r.into_error(&module.path))
}

/// [`reopen_file`], its headers read.
pub(crate) fn reopen(root: &Path, module: &Module) -> Option<ElfSource> {
    ElfSource::from_opened(module.path.clone(), reopen_file(root, module).ok()?).ok()
}

/// The part of `path` (as our `/proc/PID/maps` or `/proc/PID/exe` shows
/// it) below the target's root. The kernel writes those paths as seen
/// from *our* root: for a target chrooted in our mount namespace, they
/// start with the chroot's directory (`/proc/PID/root` then reads as that
/// directory); in a container's own mount namespace they are already the
/// target's (its root reads as `/`).
fn below_root(root_dir: &Path, path: PathBuf) -> PathBuf {
    if root_dir == Path::new("/") {
        return path;
    }
    match path.strip_prefix(root_dir) {
        Ok(rest) => Path::new("/").join(rest),
        Err(_) => path,
    }
}

/// Whether a mapping may be an ELF module worth opening: anonymous
/// shared memory and device mappings never are.
fn may_be_elf(path: &Path) -> bool {
    !(path.starts_with("/dev/") || path.starts_with("/memfd:") || path.starts_with("/SYSV"))
}

/// The definition of a C API name (`PyAPI_FUNC`/`PyAPI_DATA`, default
/// visibility) in `main`. A module whose `.dynsym` exports the API
/// (`Py_Initialize`) exports all of it, so a name missing there is absent:
/// the `.symtab` (a libpython's holds 15,000 symbols) is read only for a
/// module that does not export the API.
fn api_symbol<'a>(main: &'a ElfSource, name: &str) -> Option<&'a crate::table::Entry> {
    let dynsym = main.dynsym();
    match dynsym.get(name) {
        Some(e) => Some(e),
        None if dynsym.get("Py_Initialize").is_some() => None,
        None => main.symtab().get(name),
    }
}

fn defines(ms: &ModuleSymbols, name: &str) -> bool {
    ms.main()
        .is_some_and(|m| m.dynsym().get(name).is_some() || m.symtab().get(name).is_some())
}

/// Finds the CPython interpreter in process `pid`.
///
/// Reads `/proc/PID/{stat,exe,maps}` and the mapped files; never stops or
/// writes to the target.
pub fn discover(pid: i32, opts: &DiscoverOptions) -> Result<Interpreter, Error> {
    if pid <= 0 {
        return Err(Error::NoSuchProcess(pid));
    }
    if matches!(state(pid)?, 'Z' | 'X') {
        return Err(Error::Zombie(pid));
    }
    let executable =
        std::fs::read_link(format!("/proc/{pid}/exe")).map_err(|e| proc_err(pid, "exe", e))?;
    let root_dir =
        std::fs::read_link(format!("/proc/{pid}/root")).map_err(|e| proc_err(pid, "root", e))?;
    let executable = below_root(
        &root_dir,
        PathBuf::from(
            executable
                .to_string_lossy()
                .trim_end_matches(" (deleted)")
                .to_string(),
        ),
    );
    let mut mappings = maps::read(pid)?;
    for m in &mut mappings {
        m.path = m.path.take().map(|p| below_root(&root_dir, p));
    }
    if mappings.is_empty() && matches!(state(pid)?, 'Z' | 'X') {
        return Err(Error::Zombie(pid));
    }
    let root = PathBuf::from(format!("/proc/{pid}/root"));
    from_mappings(pid, executable, &mappings, root, &Opener::Live, opts)
}

/// Finds the CPython interpreter of the process saved in `core`: its
/// modules are the files the core names, opened inside `core.root()`;
/// `exe`, if given, stands for the executable the core names.
pub fn discover_core(
    core: &crate::CoreFile,
    exe: Option<&Path>,
    opts: &DiscoverOptions,
) -> Result<Interpreter, Error> {
    // A file the user named must be there (its absence would only show
    // as missing symbols).
    if let Some(e) = exe {
        open::open_path(e).map_err(|r| r.into_error(e))?;
    }
    let executable = core
        .executable()
        .map(Path::to_path_buf)
        .or_else(|| exe.map(Path::to_path_buf))
        .ok_or_else(|| Error::NotACore {
            path: core.path.clone(),
            reason: "it names no executable (no NT_FILE or NT_AUXV note)".into(),
        })?;
    let opener = Opener::Core {
        root: core.root(),
        exe: exe.map(|e| (executable.as_path(), e)),
    };
    from_mappings(
        core.pid,
        executable.clone(),
        &core.maps(),
        core.root().to_path_buf(),
        &opener,
        opts,
    )
}

/// How the files of a process's mappings are reached.
enum Opener<'a> {
    /// A live process: the very file mapped, or its path checked inside
    /// `/proc/PID/root` (see [`open_mapped`]).
    Live,
    /// A core file: paths inside `root`; `exe` replaces a path (the
    /// executable's) by a file the user named.
    Core {
        root: &'a Path,
        exe: Option<(&'a Path, &'a Path)>,
    },
}

impl Opener<'_> {
    fn open(&self, pid: i32, path: &Path, first: &Mapping) -> Result<(ElfSource, PathBuf), Error> {
        match self {
            Opener::Live => open_mapped(pid, path, first),
            Opener::Core {
                exe: Some((named, given)),
                ..
            } if path == *named => {
                let opened = open::open_path(given).map_err(|r| r.into_error(given))?;
                Ok((
                    ElfSource::from_opened(path.to_path_buf(), opened)?,
                    given.to_path_buf(),
                ))
            }
            Opener::Core { root, .. } => {
                let opened =
                    open::open_in_root(root, path, None).map_err(|r| r.into_error(path))?;
                let via = root.join(path.strip_prefix("/").unwrap_or(path));
                Ok((ElfSource::from_opened(path.to_path_buf(), opened)?, via))
            }
        }
    }
}

/// Discovery from a process's mappings (paths in its own file system),
/// whose files `opener` reaches.
fn from_mappings(
    pid: i32,
    executable: PathBuf,
    mappings: &[Mapping],
    root: PathBuf,
    opener: &Opener,
    opts: &DiscoverOptions,
) -> Result<Interpreter, Error> {
    // Group the mappings by file, in address order.
    let mut groups: Vec<(PathBuf, u64, Vec<&Mapping>)> = Vec::new();
    for m in mappings {
        let Some(path) = &m.path else { continue };
        match groups
            .iter_mut()
            .find(|(p, ino, _)| p == path && *ino == m.inode)
        {
            Some(g) => g.2.push(m),
            None => groups.push((path.clone(), m.inode, vec![m])),
        }
    }

    let mut modules = Vec::new();
    let mut syms = Vec::new();
    let mut refused = Vec::new();
    for (path, _, maps) in groups {
        let Some(first) = maps.iter().min_by_key(|m| m.offset).copied() else {
            continue;
        };
        if !may_be_elf(&path) {
            continue;
        }
        let (elf, via) = match opener.open(pid, &path, first) {
            Ok(x) => x,
            // Mapped data files (locale archives, caches) are not ELF.
            Err(Error::BadElf { .. }) => continue,
            Err(e) => {
                refused.push(e.to_string());
                continue;
            }
        };
        let bias = load_bias(&elf, first);
        // `.bss` lies past the file's last mapping, in anonymous memory.
        let image_end = elf
            .segments
            .iter()
            .map(|s| s.vaddr.saturating_add(s.memsz))
            .max()
            .map(|e| (e.wrapping_add(bias).wrapping_add(0xfff)) & !0xfff)
            .unwrap_or(0);
        let module = Module {
            is_main_executable: path == executable,
            base: maps.iter().map(|m| m.start).min().unwrap_or_default(),
            end: maps
                .iter()
                .map(|m| m.end)
                .max()
                .unwrap_or_default()
                .max(RemoteAddr(image_end)),
            load_bias: bias,
            build_id: elf.build_id.as_deref().map(hex),
            dev: first.dev,
            inode: first.inode,
            code: maps
                .iter()
                .filter(|m| m.is_exec())
                .map(|m| Range {
                    start: m.start,
                    end: m.end,
                })
                .collect(),
            path,
            path_via_proc_root: via,
        };
        // Keep open only the files that may hold the interpreter.
        let keep = module.is_main_executable || module.file_name().starts_with("libpython");
        modules.push(module.clone());
        syms.push(ModuleSymbols::new(
            module,
            keep.then_some(elf),
            root.clone(),
            opts.clone(),
        ));
    }

    // The executable if it holds CPython, else a libpython, else any module
    // that defines the embedding API.
    let is_py =
        |ms: &ModuleSymbols| defines(ms, "Py_Initialize") && defines(ms, "PyRun_SimpleString");
    let interp = syms
        .iter()
        .position(|ms| ms.module.is_main_executable && is_py(ms))
        .or_else(|| {
            syms.iter()
                .position(|ms| ms.module.file_name().starts_with("libpython") && is_py(ms))
        })
        .or_else(|| syms.iter().position(is_py))
        .ok_or_else(|| Error::NotPython {
            pid,
            exe: executable.clone(),
            refused: refused.iter().map(|r| format!("; {r}")).collect(),
        })?;

    let ms = &syms[interp];
    let version = ms
        .main()
        .and_then(|m| detect_version(m, &ms.module.file_name()))
        .ok_or_else(|| Error::UnknownVersion(ms.module.path.clone()))?;
    // A newer CPython is described rather than refused: `info` shows what
    // was found, `--run` (which needs no struct layout) is tried, and the
    // stack reader names the layout it lacks.
    if !version.is_supported() && !version.is_newer_than_known() {
        return Err(Error::UnsupportedVersion {
            version: version.to_string(),
            path: ms.module.path.clone(),
        });
    }
    let build = BuildInfo {
        shared_library: !ms.module.is_main_executable,
        // `Py_REF_DEBUG`'s hook is part of the C API.
        debug_build: ms
            .main()
            .is_some_and(|m| api_symbol(m, "_Py_NegativeRefcount").is_some()),
        free_threaded: has_t_abi_flag(&ms.module.file_name())
            || ms.main().is_some_and(|m| {
                api_symbol(m, "_PyRuntime")
                    .and_then(|s| m.read_vaddr(s.value, 24))
                    .is_some_and(|b| debug_offsets_free_threaded(&b))
            }),
    };
    Ok(Interpreter {
        pid,
        version,
        build,
        executable,
        module: ms.module.clone(),
        refused,
        modules,
        syms,
        interp,
        root,
    })
}

/// Whether the `_Py_DebugOffsets` header at the start of `_PyRuntime`
/// (cookie `xdebugpy`, version, then `free_threaded`, the same place in
/// every layout from 3.13 on) says `Py_GIL_DISABLED`.
pub(crate) fn debug_offsets_free_threaded(b: &[u8]) -> bool {
    b.len() >= 24 && &b[..8] == b"xdebugpy" && b[16..24].iter().any(|&x| x != 0)
}

/// The `t` ABI flag of a free-threaded build in a module's name:
/// `python3.14t`, `python3.14td`, `libpython3.14t.so.1.0`.
pub(crate) fn has_t_abi_flag(file_name: &str) -> bool {
    let rest = file_name
        .strip_prefix("libpython")
        .or_else(|| file_name.strip_prefix("python"))
        .unwrap_or("");
    let flags = rest.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.');
    let flags = flags.split('.').next().unwrap_or("");
    rest.starts_with(|c: char| c.is_ascii_digit())
        && flags.contains('t')
        && flags.chars().all(|c| "dmut".contains(c))
}

pub(crate) fn detect_version(main: &ElfSource, file_name: &str) -> Option<PyVersion> {
    let name_hint = PyVersion::from_file_name(file_name);
    let mut chosen: Option<PyVersion> = None;
    let mut checks = Vec::new();
    if let Some(sym) = api_symbol(main, "Py_Version") {
        if let Some(b) = main.read_vaddr(sym.value, 4) {
            let hex = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            if let Some(v) = PyVersion::from_hex(hex) {
                checks.push((VersionSource::PyVersionSymbol, v.to_string(), v.short()));
                chosen = Some(v);
            }
        }
    }
    if chosen.is_none() {
        if let Some(ro) = main.section_data(".rodata") {
            if let Some(v) = PyVersion::scan(&ro, name_hint) {
                checks.push((VersionSource::VersionString, v.to_string(), v.short()));
                chosen = Some(v);
            }
        }
    }
    if let Some((maj, min)) = name_hint {
        checks.push((VersionSource::FileName, format!("{maj}.{min}"), (maj, min)));
        if chosen.is_none() {
            chosen = Some(PyVersion {
                major: maj,
                minor: min,
                micro: 0,
                release_level: crate::version::ReleaseLevel::Final,
                serial: 0,
                detected_by: VersionSource::FileName,
                checks: Vec::new(),
            });
        }
    }
    let mut v = chosen?;
    v.detected_by = checks
        .first()
        .map(|c| c.0)
        .unwrap_or(VersionSource::FileName);
    let short = v.short();
    v.checks = checks
        .into_iter()
        .map(|(source, found, s)| VersionCheck {
            source,
            found,
            agrees: s == short,
        })
        .collect();
    Some(v)
}

impl Interpreter {
    /// Resolves a symbol of the interpreter's module through the chain.
    pub fn symbol(&self, name: &str) -> Option<Symbol> {
        self.syms[self.interp].lookup(name)
    }

    /// Resolves a symbol in the first module whose file name contains
    /// `module_name_contains` (e.g. `("libc", "pthread_create")`).
    pub fn symbol_in(&self, module_name_contains: &str, name: &str) -> Option<Symbol> {
        self.syms
            .iter()
            .filter(|ms| ms.module.file_name().contains(module_name_contains))
            .find_map(|ms| ms.lookup(name))
    }

    /// Every ELF module mapped in the target, in address order.
    pub fn modules(&self) -> &[Module] {
        &self.modules
    }

    fn module_at(&self, addr: RemoteAddr) -> Option<&ModuleSymbols> {
        self.syms.iter().find(|ms| ms.module.contains(addr))
    }

    /// The bytes of the mapped module's *file* at `addr` (code, initialized
    /// data as it was before the program ran): nothing is read from the
    /// target's memory.
    pub fn read_module_bytes(&self, addr: RemoteAddr, len: usize) -> Result<Vec<u8>, Error> {
        let ms = self.module_at(addr).ok_or(Error::NotInFile(addr))?;
        ms.main()
            .ok_or(Error::NotInFile(addr))?
            .read_vaddr(ms.module.to_file(addr).0, len)
            .ok_or(Error::NotInFile(addr))
    }

    /// The function symbol that holds `addr` in any module (best source
    /// first), and the offset of `addr` into it.
    pub fn symbolize(&self, addr: RemoteAddr) -> Option<(Symbol, u64)> {
        self.module_at(addr)?.symbolize(addr)
    }

    /// The executable sections of `module` (`.text`, `.plt`, `.plt.sec`…).
    pub fn code_sections(&self, module: &Module) -> Vec<CodeSection> {
        let Some(ms) = self.syms.iter().find(|ms| ms.module == *module) else {
            return Vec::new();
        };
        let Some(main) = ms.main() else {
            return Vec::new();
        };
        main.sections
            .iter()
            .filter(|s| s.exec && s.size > 0)
            .map(|s| CodeSection {
                name: s.name.clone(),
                addr: module.to_remote(FileAddr(s.addr)),
                size: s.size,
            })
            .collect()
    }

    /// The GOT slots of `module` (`JUMP_SLOT` and `GLOB_DAT` relocations):
    /// a call through the PLT or `call *slot(%rip)` reaches the symbol
    /// through its slot.
    pub fn got_slots(&self, module: &Module) -> Vec<GotSlot> {
        let Some(ms) = self.syms.iter().find(|ms| ms.module == *module) else {
            return Vec::new();
        };
        let Some(main) = ms.main() else {
            return Vec::new();
        };
        main.got_slots()
            .into_iter()
            .map(|(name, a, plt)| GotSlot {
                name,
                addr: module.to_remote(FileAddr(a)),
                kind: if plt {
                    GotKind::JumpSlot
                } else {
                    GotKind::GlobDat
                },
            })
            .collect()
    }

    /// Opens `module`'s file again, checked as discovery checked it (a
    /// regular file of bounded size, the very file mapped): for readers of
    /// sections this crate does not parse (`.eh_frame`, DWARF).
    pub fn open_module(&self, module: &Module) -> Result<std::fs::File, Error> {
        reopen_file(&self.root, module).map(|o| o.file)
    }

    /// The debug sources found for the interpreter's module (opens each
    /// source of the chain, so it may use the debuginfod fetcher).
    pub fn debug_sources(&self) -> Vec<SymbolSource> {
        self.syms[self.interp].debug_sources()
    }
}

/// What can be learnt from one ELF file on its own: the same parsing that
/// discovery does, for tests, fuzzing and tools. Never panics on any input.
#[derive(Clone, Debug, Serialize)]
pub struct FileSummary {
    pub build_id: Option<String>,
    pub debuglink: Option<String>,
    pub dynamic_symbols: usize,
    pub symbols: usize,
    /// Symbols in the `.gnu_debugdata` MiniDebugInfo, if present.
    pub debugdata_symbols: Option<usize>,
    pub got_slots: usize,
    pub version: Option<PyVersion>,
}

/// Parses the ELF file at `path` the way discovery would.
pub fn inspect_file(path: &Path) -> Result<FileSummary, Error> {
    summarize(&ElfSource::open(path)?, path)
}

/// Parses the file at `path` of a file system whose root is `root` (a
/// stand-in for `/proc/PID/root`), opened and checked as discovery opens a
/// target's files: for tests and fuzzing of that path.
pub fn inspect_in_root(root: &Path, path: &Path) -> Result<FileSummary, Error> {
    let opened = open::open_in_root(root, path, None).map_err(|r| r.into_error(path))?;
    summarize(&ElfSource::from_opened(path.to_path_buf(), opened)?, path)
}

/// Parses an ELF image held in memory (for fuzzing).
pub fn inspect_bytes(bytes: Vec<u8>) -> Result<FileSummary, Error> {
    let path = PathBuf::from("<memory>");
    summarize(&ElfSource::from_bytes(path.clone(), bytes)?, &path)
}

fn summarize(elf: &ElfSource, path: &Path) -> Result<FileSummary, Error> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let symtab = elf.symtab();
    // Exercise the address index too.
    if let Some(e) = symtab.get("main").or_else(|| symtab.get("Py_Initialize")) {
        let _ = symtab.containing(e.value);
    }
    Ok(FileSummary {
        build_id: elf.build_id.as_deref().map(hex),
        debuglink: elf.debuglink.as_ref().map(|d| d.0.clone()),
        dynamic_symbols: elf.dynsym().len(),
        symbols: symtab.len(),
        debugdata_symbols: elf.debugdata().map(|d| d.symtab().len()),
        got_slots: elf.got_slots().len(),
        version: detect_version(elf, &name),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_threaded_builds_are_told_by_name_and_by_debug_offsets() {
        for (name, t) in [
            ("python3.14t", true),
            ("python3.14td", true),
            ("libpython3.14t.so.1.0", true),
            ("python3.14", false),
            ("python3.14d", false),
            ("libpython3.12.so.1.0", false),
            ("python3", false),
            ("python_test", false),
            ("pythontest3", false),
        ] {
            assert_eq!(has_t_abi_flag(name), t, "{name}");
        }
        let mut b = b"xdebugpy".to_vec();
        b.extend_from_slice(&0x030e0af0u64.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes());
        assert!(!debug_offsets_free_threaded(&b));
        b[16] = 1;
        assert!(debug_offsets_free_threaded(&b));
        b[0] = b'X';
        assert!(!debug_offsets_free_threaded(&b), "no cookie: 3.12 or older");
        assert!(!debug_offsets_free_threaded(&b[..20]));
    }
}
