//! Symbol addresses checked against an independent source: the DWARF of the
//! build (pyenv builds carry it; Debian's comes in the build-id debug file).
//! The function DWARF places at our file address must be the one we named.

use std::path::Path;
use symbols::{discover, DiscoverOptions, Interpreter, SymbolSource};
use testsupport::{pythons, PythonKind, Target};

const FUNCTIONS: &[&str] = &[
    "PyRun_SimpleString",
    "PyEval_SaveThread",
    "PyEval_RestoreThread",
    "PyGILState_Ensure",
    "PyGILState_Release",
    "Py_AddPendingCall",
    "PyErr_CheckSignals",
];

/// The outermost function DWARF gives for `addr` in the file at `path`.
fn dwarf_function(loader: &addr2line::Loader, addr: u64) -> Option<String> {
    let mut frames = loader.find_frames(addr).ok()?;
    let mut last = None;
    while let Ok(Some(f)) = frames.next() {
        if let Some(name) = f.function {
            last = Some(name.raw_name().ok()?.into_owned());
        }
    }
    last
}

fn check(py: &Interpreter, id: &str, dwarf_file: &Path) -> usize {
    let loader = addr2line::Loader::new(dwarf_file)
        .unwrap_or_else(|e| panic!("{id}: DWARF of {}: {e}", dwarf_file.display()));
    let mut checked = 0;
    for &name in FUNCTIONS {
        let sym = py.symbol(name).unwrap_or_else(|| panic!("{id}: {name}"));
        let dwarf = dwarf_function(&loader, sym.file_addr.0);
        assert_eq!(
            dwarf.as_deref(),
            Some(name),
            "{id}: {name} at {}",
            sym.file_addr
        );
        checked += 1;
    }
    // A static function from .symtab or a debug file, too.
    let static_fn = "builtin_print";
    if let Some(sym) = py.symbol(static_fn) {
        assert_ne!(sym.source, SymbolSource::DynSym);
        assert_eq!(
            dwarf_function(&loader, sym.file_addr.0).as_deref(),
            Some(static_fn),
            "{id}"
        );
        checked += 1;
    }
    checked
}

#[test]
fn symbol_addresses_agree_with_dwarf() {
    for p in pythons() {
        if p.kind == PythonKind::Embedded {
            continue; // the same libpython3.11 as Debian's python3.11
        }
        let t = Target::python(&p, "sleeper.py", &[]);
        let py = discover(t.pid(), &DiscoverOptions::default()).unwrap();
        let dwarf_file = match (&p.kind, py.debug_sources().first()) {
            (PythonKind::Pyenv, _) => py.module.path.clone(),
            (_, Some(SymbolSource::BuildIdFile(f))) => f.clone(),
            _ => {
                testsupport::note(&format!("{}: no DWARF (python3.11-dbg missing)", p.id));
                continue;
            }
        };
        let n = check(&py, &p.id, &dwarf_file);
        eprintln!("{}: {n} addresses agree with DWARF", p.id);
    }
}
