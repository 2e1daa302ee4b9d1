//! The later links of the symbol chain on Debian's stripped python3.11:
//! `.dynsym` only, the build-id file from python3.11-dbg, a CRC-checked
//! `.gnu_debuglink` file, and MiniDebugInfo in `.gnu_debugdata`. (debuginfod
//! is tested end to end in the CLI's tests, which own the HTTP client.)

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;
use symbols::{discover, DiscoverOptions, SymbolSource};
use testsupport::{debian_python, note, Python, Target};

/// A static function of CPython: absent from `.dynsym`, present in the debug
/// file's `.symtab`.
const STATIC_FN: &str = "_pythread_pthread_set_stacksize";

fn debug_file(py: &Python) -> Option<PathBuf> {
    let id = symbols::inspect_file(&py.exe).ok()?.build_id?;
    let p = PathBuf::from(format!(
        "/usr/lib/debug/.build-id/{}/{}.debug",
        &id[..2],
        &id[2..]
    ));
    if p.exists() {
        Some(p)
    } else {
        note(&format!(
            "{} is missing (python3.11-dbg; run scripts/setup)",
            p.display()
        ));
        None
    }
}

fn read_mem(pid: i32, addr: u64, len: usize) -> Vec<u8> {
    let mut f = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    f.seek(SeekFrom::Start(addr)).unwrap();
    let mut buf = vec![0; len];
    f.read_exact(&mut buf).unwrap();
    buf
}

/// A scratch directory removed on drop.
struct Scratch(PathBuf);
impl Scratch {
    fn new(tag: &str) -> Scratch {
        let d = testsupport::build_dir().join(format!("{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("bin/.debug")).unwrap();
        Scratch(d)
    }
}
impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn no_debug_dirs() -> DiscoverOptions {
    DiscoverOptions {
        debug_dirs: vec![],
        ..DiscoverOptions::default()
    }
}

fn copy_of(py: &Python, exe: &Path) -> Python {
    std::fs::copy(&py.exe, exe).unwrap();
    Python {
        exe: exe.to_path_buf(),
        ..py.clone()
    }
}

fn run(cmd: &mut Command) {
    let st = cmd.status().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(st.success(), "{cmd:?} failed");
}

#[test]
fn dynsym_only_then_build_id_file() {
    let Some(py) = debian_python() else { return };
    let Some(dbg) = debug_file(&py) else { return };
    let t = Target::python(&py, "sleeper.py", &[]);

    let bare = discover(t.pid(), &no_debug_dirs()).unwrap();
    assert_eq!(
        bare.symbol("PyRun_SimpleString").unwrap().source,
        SymbolSource::DynSym
    );
    assert_eq!(
        bare.symbol("_PyRuntime").unwrap().source,
        SymbolSource::DynSym
    );
    assert!(bare.symbol(STATIC_FN).is_none(), "stripped: no {STATIC_FN}");
    assert!(bare.debug_sources().is_empty());

    let full = discover(t.pid(), &DiscoverOptions::default()).unwrap();
    let s = full.symbol(STATIC_FN).expect("from the build-id file");
    assert_eq!(s.source, SymbolSource::BuildIdFile(dbg.clone()));
    assert_eq!(
        full.read_module_bytes(s.addr, 24).unwrap(),
        read_mem(t.pid(), s.addr.0, 24)
    );
    // .dynsym still answers first for exported names.
    assert_eq!(
        full.symbol("PyEval_SaveThread").unwrap().source,
        SymbolSource::DynSym
    );
}

#[test]
fn debuglink_is_crc_checked() {
    let Some(py) = debian_python() else { return };
    let Some(dbg) = debug_file(&py) else { return };
    let dir = Scratch::new("debuglink");
    let copy = copy_of(&py, &dir.0.join("bin/python3.11"));
    let link = symbols::inspect_file(&copy.exe)
        .unwrap()
        .debuglink
        .expect("debuglink");
    let linked = dir.0.join("bin/.debug").join(&link);
    std::fs::copy(&dbg, &linked).unwrap();

    let t = Target::python(&copy, "sleeper.py", &[]);
    let py_ = discover(t.pid(), &no_debug_dirs()).unwrap();
    let s = py_.symbol(STATIC_FN).expect("through .gnu_debuglink");
    assert_eq!(s.source, SymbolSource::DebugLink(linked.clone()));
    assert_eq!(
        py_.read_module_bytes(s.addr, 16).unwrap(),
        read_mem(t.pid(), s.addr.0, 16)
    );

    // One flipped byte at the end: the CRC no longer matches, the file is refused.
    let mut bytes = std::fs::read(&linked).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&linked, bytes).unwrap();
    let again = discover(t.pid(), &no_debug_dirs()).unwrap();
    assert!(
        again.symbol(STATIC_FN).is_none(),
        "a file with a bad CRC must be ignored"
    );
}

#[test]
fn minidebuginfo_in_gnu_debugdata() {
    let Some(py) = debian_python() else { return };
    let Some(dbg) = debug_file(&py) else { return };
    for tool in ["objcopy", "xz"] {
        if Command::new(tool).arg("--version").output().is_err() {
            note(&format!("{tool} is missing"));
            return;
        }
    }
    let dir = Scratch::new("debugdata");
    let copy = copy_of(&py, &dir.0.join("bin/python3.11"));
    // Fedora's recipe, reduced: a symbols-only ELF, xz-compressed, added as
    // a section of the stripped program.
    let keep = dir.0.join("keep");
    std::fs::write(&keep, format!("{STATIC_FN}\n")).unwrap();
    let mini = dir.0.join("mini");
    run(Command::new("objcopy")
        .arg("-S")
        .arg(format!("--keep-symbols={}", keep.display()))
        .arg(&dbg)
        .arg(&mini));
    run(Command::new("xz").arg("-kf").arg(&mini));
    run(Command::new("objcopy")
        .arg(format!(
            "--add-section=.gnu_debugdata={}.xz",
            mini.display()
        ))
        .arg(&copy.exe));

    let t = Target::python(&copy, "sleeper.py", &[]);
    let opts = DiscoverOptions {
        use_debuglink: false,
        ..no_debug_dirs()
    };
    let py_ = discover(t.pid(), &opts).unwrap();
    let s = py_.symbol(STATIC_FN).expect("from .gnu_debugdata");
    assert_eq!(s.source, SymbolSource::GnuDebugData);
    assert_eq!(
        py_.read_module_bytes(s.addr, 16).unwrap(),
        read_mem(t.pid(), s.addr.0, 16)
    );
    let sum = symbols::inspect_file(&copy.exe).unwrap();
    assert_eq!(sum.debugdata_symbols, Some(1));
}

#[test]
fn deleted_executable_is_read_through_map_files() {
    // A package upgrade replaces the binary under a running service: maps
    // then says "(deleted)" and only /proc/PID/map_files still reaches it.
    let Some(py) = debian_python() else { return };
    let dir = Scratch::new("deleted");
    let copy = copy_of(&py, &dir.0.join("bin/python3.11"));
    let t = Target::python(&copy, "sleeper.py", &[]);
    std::fs::remove_file(&copy.exe).unwrap();
    let found = discover(t.pid(), &no_debug_dirs()).unwrap();
    assert_eq!(found.module.path, copy.exe);
    assert!(
        found
            .module
            .path_via_proc_root
            .starts_with(format!("/proc/{}/map_files", t.pid())),
        "{:?}",
        found.module.path_via_proc_root
    );
    let s = found.symbol("PyEval_SaveThread").unwrap();
    assert_eq!(
        found.read_module_bytes(s.addr, 16).unwrap(),
        read_mem(t.pid(), s.addr.0, 16)
    );
    assert_eq!(
        (
            found.version.major,
            found.version.minor,
            found.version.micro
        ),
        py.version
    );
}

#[test]
fn lto_private_statics_resolve_by_their_c_name() {
    // Debian's LTO build names the static drop_gil `drop_gil.lto_priv.0`.
    let Some(py) = debian_python() else { return };
    if debug_file(&py).is_none() {
        return;
    }
    let t = Target::python(&py, "sleeper.py", &[]);
    let found = discover(t.pid(), &DiscoverOptions::default()).unwrap();
    let s = found
        .symbol("drop_gil")
        .expect("drop_gil via drop_gil.lto_priv.0");
    assert!(matches!(s.source, SymbolSource::BuildIdFile(_)));
    assert_eq!(found.symbolize(s.addr).unwrap().0.addr, s.addr);
    assert_eq!(
        found.read_module_bytes(s.addr, 16).unwrap(),
        read_mem(t.pid(), s.addr.0, 16)
    );
}
