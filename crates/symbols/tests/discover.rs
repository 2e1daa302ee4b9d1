//! Discovery on every interpreter of the matrix: the right module, the
//! version the interpreter itself prints, symbols at addresses whose bytes in
//! the live process equal the bytes of the file, each from the right source.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use symbols::{discover, DiscoverOptions, Interpreter, SymbolSource};
use testsupport::{pythons, PythonKind, Target};

/// Reads the target's memory through /proc/PID/mem (tests run as the
/// target's owner, which may read it).
fn read_mem(pid: i32, addr: u64, len: usize) -> Vec<u8> {
    let mut f = std::fs::File::open(format!("/proc/{pid}/mem")).expect("open mem");
    f.seek(SeekFrom::Start(addr)).unwrap();
    let mut buf = vec![0; len];
    f.read_exact(&mut buf).expect("read mem");
    buf
}

/// The function's first bytes in the process equal those of the module's
/// file at the same place: the load bias is right.
fn check_code(py: &Interpreter, name: &str) {
    let sym = py
        .symbol(name)
        .unwrap_or_else(|| panic!("{name} not found"));
    assert!(sym.is_function, "{name} is a function");
    let file = py.read_module_bytes(sym.addr, 32).unwrap();
    let live = read_mem(py.pid, sym.addr.0, 32);
    assert_eq!(file, live, "{name} at {}: file and memory differ", sym.addr);
    assert!(py.module.contains(sym.addr));
}

fn needed(v: (u32, u32)) -> Vec<&'static str> {
    let mut n = vec![
        "PyRun_SimpleString",
        "PyEval_SaveThread",
        "PyEval_RestoreThread",
        "PyGILState_Ensure",
        "PyGILState_Release",
        "Py_AddPendingCall",
    ];
    if v >= (3, 7) {
        n.push("_PyRuntime");
    } else {
        n.push("_PyThreadState_Current");
        n.push("interp_head");
    }
    n
}

#[test]
fn finds_interpreter_version_and_symbols_everywhere() {
    let all = pythons();
    assert!(!all.is_empty(), "no interpreter at all: run scripts/setup");
    for p in all {
        eprintln!("--- {}", p.id);
        let t = Target::python(&p, "sleeper.py", &[]);
        let fds = || std::fs::read_dir("/proc/self/fd").unwrap().count();
        let before = fds();
        let py = discover(t.pid(), &DiscoverOptions::default())
            .unwrap_or_else(|e| panic!("{}: {e}", p.id));
        // Only the files that may hold CPython stay open, whatever the
        // number of mapped libraries.
        // (At most the executable and a libpython, each with its cache
        // handle and its raw read handle.)
        assert!(fds() <= before + 4, "{}: {} fds held", p.id, fds() - before);
        assert_eq!(
            (py.version.major, py.version.minor, py.version.micro),
            p.version,
            "{}: version",
            p.id
        );
        assert!(
            py.version.checks.iter().all(|c| c.agrees),
            "{:?}",
            py.version
        );
        let expect_method = if p.version >= (3, 11, 0) {
            symbols::VersionSource::PyVersionSymbol
        } else {
            symbols::VersionSource::VersionString
        };
        assert_eq!(py.version.detected_by, expect_method, "{}", p.id);
        let name = py.module.file_name();
        match p.kind {
            PythonKind::Pyenv | PythonKind::Embedded => {
                assert!(name.starts_with("libpython"), "{}: module {name}", p.id);
                assert!(!py.module.is_main_executable && py.build.shared_library);
            }
            PythonKind::DebianStripped => {
                assert!(py.module.is_main_executable, "{}: module {name}", p.id);
                assert_eq!(py.module.path, PathBuf::from("/usr/bin/python3.11"));
            }
        }
        if p.kind == PythonKind::Embedded {
            assert!(py.executable.ends_with("embed"), "{:?}", py.executable);
        } else {
            assert_eq!(
                std::fs::canonicalize(&p.exe).unwrap(),
                std::fs::canonicalize(&py.executable).unwrap()
            );
        }
        assert!(py.module.build_id.is_some());
        assert!(py
            .modules()
            .iter()
            .any(|m| m.file_name().starts_with("libc")));

        for s in needed(py.version.short()) {
            let sym = py
                .symbol(s)
                .unwrap_or_else(|| panic!("{}: {s} not found", p.id));
            assert!(py.module.contains(sym.addr), "{}: {s}", p.id);
            // Exported API comes from .dynsym on every build; pyenv's
            // static `interp_head` only from .symtab.
            let want = if s == "interp_head" {
                SymbolSource::SymTab
            } else {
                SymbolSource::DynSym
            };
            assert_eq!(sym.source, want, "{}: {s}", p.id);
        }
        for f in [
            "PyRun_SimpleString",
            "PyEval_SaveThread",
            "PyGILState_Ensure",
        ] {
            check_code(&py, f);
        }
        let sym = py.symbol("PyEval_SaveThread").unwrap();
        let (within, off) = py.symbolize(sym.addr.offset(3)).unwrap();
        assert_eq!((within.name.as_str(), off), ("PyEval_SaveThread", 3));
        // libc, for the injector.
        let pc = py
            .symbol_in("libc", "pthread_create")
            .expect("pthread_create");
        let libc = py.modules().iter().find(|m| m.contains(pc.addr)).unwrap();
        assert!(libc.file_name().starts_with("libc"));
        assert_eq!(
            py.read_module_bytes(pc.addr, 16).unwrap(),
            read_mem(t.pid(), pc.addr.0, 16)
        );
        if p.kind == PythonKind::Pyenv {
            // A static function: only in the pyenv build's own .symtab.
            let s = py.symbol("builtin_print").expect("builtin_print");
            assert_eq!(s.source, SymbolSource::SymTab);
            check_code(&py, "builtin_print");
        }
    }
}

#[test]
fn an_interpreter_can_be_shared_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Interpreter>();
    send_sync::<symbols::Error>();
}
