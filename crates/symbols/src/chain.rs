//! The ordered chain of symbol sources for one module: `.dynsym`, `.symtab`,
//! `.gnu_debugdata`, the build-id debug file, the `.gnu_debuglink` file and
//! debuginfod. Each later source is opened only when every earlier one has
//! failed to answer, and is kept once opened.

use crate::addr::{hex, FileAddr, RemoteAddr};
use crate::discover::{DiscoverOptions, Module};
use crate::elf::ElfSource;
use crate::table::{Entry, SymbolTable};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Where a symbol's address came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "path", rename_all = "snake_case")]
pub enum SymbolSource {
    /// The module's `.dynsym` (survives stripping).
    DynSym,
    /// The module's own `.symtab`.
    SymTab,
    /// The xz-compressed MiniDebugInfo in `.gnu_debugdata` (Fedora & co).
    GnuDebugData,
    /// `/usr/lib/debug/.build-id/xx/rest.debug` (Debian's `-dbg` packages).
    BuildIdFile(PathBuf),
    /// The file named by `.gnu_debuglink`, CRC-checked.
    DebugLink(PathBuf),
    /// A file served by a debuginfod server (through the fetcher hook).
    Debuginfod(PathBuf),
}

impl std::fmt::Display for SymbolSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SymbolSource::DynSym => write!(f, ".dynsym"),
            SymbolSource::SymTab => write!(f, ".symtab"),
            SymbolSource::GnuDebugData => write!(f, ".gnu_debugdata"),
            SymbolSource::BuildIdFile(p) => write!(f, "build-id file {}", p.display()),
            SymbolSource::DebugLink(p) => write!(f, "debuglink {}", p.display()),
            SymbolSource::Debuginfod(p) => write!(f, "debuginfod {}", p.display()),
        }
    }
}

/// A resolved symbol.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Symbol {
    pub name: String,
    /// Where it is in the target.
    pub addr: RemoteAddr,
    /// Where the ELF file says it is (before the load bias).
    pub file_addr: FileAddr,
    pub size: u64,
    /// True for functions (`STT_FUNC`).
    pub is_function: bool,
    pub source: SymbolSource,
}

/// One layer of the chain after the module's own file.
struct Layer {
    elf: ElfSource,
    source: SymbolSource,
}

pub(crate) struct ModuleSymbols {
    pub module: Module,
    /// The module's own file: kept open for the interpreter's module,
    /// reopened on first use for the others (a process may map hundreds of
    /// libraries; holding them all open would eat its file descriptors).
    main: OnceLock<Option<ElfSource>>,
    /// `/proc/PID/root`: the target's file system.
    root: PathBuf,
    opts: DiscoverOptions,
    layers: [OnceLock<Option<Layer>>; 4],
}

const LAYERS: usize = 4;

impl ModuleSymbols {
    pub fn new(
        module: Module,
        main: Option<ElfSource>,
        root: PathBuf,
        opts: DiscoverOptions,
    ) -> Self {
        let slot = OnceLock::new();
        if let Some(m) = main {
            let _ = slot.set(Some(m));
        }
        ModuleSymbols {
            module,
            main: slot,
            root,
            opts,
            layers: Default::default(),
        }
    }

    /// The module's own file, opened again if it was closed.
    pub fn main(&self) -> Option<&ElfSource> {
        self.main
            .get_or_init(|| crate::discover::reopen(&self.root, &self.module))
            .as_ref()
    }

    fn make(&self, entry: &Entry, name: &str, source: SymbolSource) -> Symbol {
        Symbol {
            name: name.to_string(),
            addr: self.module.to_remote(FileAddr(entry.value)),
            file_addr: FileAddr(entry.value),
            size: entry.size,
            is_function: entry.func,
            source,
        }
    }

    /// The layer `i` of the debug chain, opened on first use.
    fn layer(&self, i: usize) -> Option<&Layer> {
        self.layers[i]
            .get_or_init(|| match i {
                0 => self.main()?.debugdata().map(|elf| Layer {
                    elf,
                    source: SymbolSource::GnuDebugData,
                }),
                1 => self.open_build_id_file(),
                2 => self.open_debuglink(),
                _ => self.fetch_debuginfod(),
            })
            .as_ref()
    }

    /// Resolves `name` through the chain.
    pub fn lookup(&self, name: &str) -> Option<Symbol> {
        let main = self.main()?;
        if let Some(e) = main.dynsym().get(name) {
            return Some(self.make(e, name, SymbolSource::DynSym));
        }
        if let Some(e) = main.symtab().get(name) {
            return Some(self.make(e, name, SymbolSource::SymTab));
        }
        for i in 0..LAYERS {
            if let Some(layer) = self.layer(i) {
                let hit = layer
                    .elf
                    .symtab()
                    .get(name)
                    .or_else(|| layer.elf.dynsym().get(name));
                if let Some(e) = hit {
                    return Some(self.make(e, name, layer.source.clone()));
                }
            }
        }
        None
    }

    /// The function symbol whose range holds `addr`, and the offset into it.
    /// `.dynsym` first: a sized exported function that covers the address is
    /// the answer, and it spares parsing a large `.symtab`; then `.symtab`
    /// and the debug files for static functions.
    pub fn symbolize(&self, addr: RemoteAddr) -> Option<(Symbol, u64)> {
        let fa = self.module.to_file(addr).0;
        let found = |t: &SymbolTable, source: SymbolSource| {
            t.containing(fa).map(|(n, e)| {
                (
                    self.make(e, &String::from_utf8_lossy(n), source),
                    fa - e.value,
                )
            })
        };
        let main = self.main()?;
        if let Some(hit) = found(main.dynsym(), SymbolSource::DynSym) {
            return Some(hit);
        }
        if let Some(hit) = found(main.symtab(), SymbolSource::SymTab) {
            return Some(hit);
        }
        for i in 0..LAYERS {
            if let Some(layer) = self.layer(i) {
                if let Some(hit) = found(layer.elf.symtab(), layer.source.clone()) {
                    return Some(hit);
                }
            }
        }
        None
    }

    /// Which debug sources were found for this module (opening them all).
    pub fn debug_sources(&self) -> Vec<SymbolSource> {
        (0..LAYERS)
            .filter_map(|i| self.layer(i).map(|l| l.source.clone()))
            .collect()
    }

    /// Opens a file of the target's file system (`p` as the target names
    /// it), checked and resolved inside its root (see `open.rs`).
    fn open_in_root(&self, p: &Path) -> Option<ElfSource> {
        let opened = crate::open::open_in_root(&self.root, p, None).ok()?;
        ElfSource::from_opened(self.root.join(p.strip_prefix("/").unwrap_or(p)), opened).ok()
    }

    /// A debug file is accepted only if its build id matches the module's
    /// (when both have one): a stale file would give wrong addresses.
    fn matches(&self, elf: &ElfSource) -> bool {
        let Some(main) = self.main() else {
            return false;
        };
        match (&main.build_id, &elf.build_id) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        }
    }

    fn open_build_id_file(&self) -> Option<Layer> {
        let id = self.main()?.build_id.as_ref()?;
        if id.len() < 2 {
            return None;
        }
        let h = hex(id);
        let rel = format!(".build-id/{}/{}.debug", &h[..2], &h[2..]);
        for dir in &self.opts.debug_dirs {
            // The target's own file system first (containers), then ours.
            let path = dir.join(&rel);
            let found = [self.open_in_root(&path), ElfSource::open(&path).ok()];
            for elf in found.into_iter().flatten() {
                if self.matches(&elf) {
                    return Some(Layer {
                        elf,
                        source: SymbolSource::BuildIdFile(path),
                    });
                }
            }
        }
        None
    }

    fn open_debuglink(&self) -> Option<Layer> {
        if !self.opts.use_debuglink {
            return None;
        }
        let (name, crc) = self.main()?.debuglink.as_ref()?;
        if name.contains('/') {
            return None;
        }
        let dir = self.module.path.parent()?;
        // gdb's search order: the module's directory, its .debug/, then each
        // global debug directory with the module's directory appended.
        let mut candidates = vec![dir.join(name), dir.join(".debug").join(name)];
        for d in &self.opts.debug_dirs {
            candidates.push(d.join(dir.strip_prefix("/").unwrap_or(dir)).join(name));
        }
        for target_path in candidates {
            let Some(elf) = self.open_in_root(&target_path) else {
                continue;
            };
            if elf.crc32() == Some(*crc) && self.matches(&elf) {
                return Some(Layer {
                    elf,
                    source: SymbolSource::DebugLink(target_path),
                });
            }
        }
        None
    }

    fn fetch_debuginfod(&self) -> Option<Layer> {
        let fetch = self.opts.debuginfod.as_ref()?;
        let id = self.main()?.build_id.as_ref()?;
        let path = fetch(id)?;
        let elf = ElfSource::open(&path).ok()?;
        if elf.build_id.as_ref() != Some(id) {
            return None;
        }
        Some(Layer {
            elf,
            source: SymbolSource::Debuginfod(path),
        })
    }
}
