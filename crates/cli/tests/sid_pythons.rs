//! Debian sid's own Python 3.14 and 3.15 (stripped, interpreter in the
//! executable, debug files from the -dbg packages), run with `chroot` in the
//! root `scripts/setup` builds, so pyattach reads them through
//! `/proc/PID/root`: `dump` (threads, names, lines, locals, native frames,
//! JSON), `info`, and `--run`.

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use testsupport::{pyattach_bin, Target};

/// A target that knows where it is: `main` and a `worker` thread, each
/// with locals of the kinds the dump decodes, sleeping at known lines.
const SCRIPT: &str = r#"
import os, sys, threading, time
def worker(n):
    x = n; f = 1.5; s = 'w\u00e9'
    ready.set()
    while True:
        time.sleep(0.05)
ready = threading.Event()
threading.Thread(target=worker, args=(5,), name='worker', daemon=True).start()
ready.wait()
def main():
    big = 10 ** 30
    sys.stdout.write('READY %d\n' % os.getpid()); sys.stdout.flush()
    while True:
        time.sleep(0.05)
main()
"#;

fn start(root: &Path, exe: &str) -> Target {
    let mut cmd = Command::new("chroot");
    cmd.arg(root)
        .arg(format!("/usr/bin/python{exe}"))
        .args(["-u", "-c", SCRIPT]);
    Target::spawn(cmd)
}

fn pyattach(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(pyattach_bin())
        .args(args)
        .output()
        .expect("run pyattach");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn dump_info_and_run_work_on_debian_3_14_and_3_15() {
    let Some(root) = testsupport::sid_root() else {
        return testsupport::note(
            "the sid root with Python 3.14 and 3.15 is missing (scripts/setup)",
        );
    };
    for v in ["3.14", "3.15"] {
        check(&root, v, v);
    }
}

/// Debian's debug builds (`python3.13d`…`python3.15d`, from the -dbg
/// packages): read through their own `_Py_DebugOffsets` over the release
/// build's rows (offsets_dwarf.rs checks both against their DWARF).
#[test]
fn dump_info_and_run_work_on_debians_debug_builds() {
    let Some(root) = testsupport::sid_root() else {
        return testsupport::note("the sid root is missing (scripts/setup)");
    };
    for v in ["3.13", "3.14", "3.15"] {
        let exe = format!("{v}d");
        if !root.join(format!("usr/bin/python{exe}")).exists() {
            testsupport::note(&format!("python{exe} is missing from the sid root"));
            continue;
        }
        check(&root, v, &exe);
        let t = start(&root, &exe);
        let (code, out, err) = pyattach(&["info", &t.pid().to_string()]);
        assert_eq!(code, 0, "{exe}: {err}");
        assert!(out.contains("debug build"), "{exe}: {out}");
        assert!(out.contains("dump reads it"), "{exe}: {out}");
        let code = "import sys; print(hasattr(sys, 'gettotalrefcount'))";
        let (status, out, err) = pyattach(&["--run", code, &t.pid().to_string()]);
        assert_eq!(
            (status, out.trim()),
            (0, "True"),
            "{exe}: the debug build: {err}"
        );
    }
}

/// `dump` (plain, --locals, --native, --json), `info` and `--run` on the
/// sid interpreter `python{exe}` of version `v`.
fn check(root: &Path, v: &str, exe: &str) {
    {
        let t = start(root, exe);
        let pid = t.pid().to_string();
        // chroot execs the interpreter: the pid is Python's. READY comes
        // just before the main thread's loop: dumped until it sleeps there.
        let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let (code, out, err) = loop {
            let (code, out, err) = pyattach(&["dump", "--locals", &pid]);
            if code != 0 || out.contains("main (<string>:15)") || std::time::Instant::now() > end {
                break (code, out, err);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert_eq!(code, 0, "{v}: {err}");
        assert!(out.contains(&format!("Python {v}.")), "{v}: {out}");
        for want in [
            "\"MainThread\" (main)",
            "main (<string>:15)",
            "big = 1000000000000000000000000000000  (local, int)",
            "\"worker\"",
            "worker (<string>:7)",
            "n = 5  (arg, int)",
            "f = 1.5  (local, float)",
            "s = 'wé'  (local, str)",
        ] {
            assert!(out.contains(want), "{v}: no {want:?} in\n{out}");
        }

        let (code, out, err) = pyattach(&["dump", "--native", &pid]);
        assert_eq!(code, 0, "{v}: {err}");
        assert!(out.contains("time_sleep"), "{v}: {out}");

        let (code, out, err) = pyattach(&["dump", "--json", &pid]);
        assert_eq!(code, 0, "{v}: {err}");
        let j: Value = serde_json::from_str(&out).expect("JSON");
        assert_eq!(
            j["python_version"].as_str().map(|s| s.starts_with(v)),
            Some(true)
        );

        let (code, out, err) = pyattach(&["info", &pid]);
        assert_eq!(code, 0, "{v}: {err}");
        assert!(out.contains(&format!("CPython {v}.")), "{v}: {out}");

        let (code, out, err) =
            pyattach(&["--run", "import sys; print(sys.version_info[:2])", &pid]);
        assert_eq!(code, 0, "{v}: {err}");
        let minor = &v[2..];
        assert_eq!(out.trim(), format!("(3, {minor})"), "{v}: {err}");

        assert!(t.is_alive(), "{v}");
    }
}

/// The fixture `py/NAME`, copied into the sid root (chroot sees only what
/// is inside it) under a name of this test process; removed on drop.
struct InRoot {
    host: std::path::PathBuf,
    inside: String,
}

impl InRoot {
    fn copy(root: &Path, name: &str) -> InRoot {
        let inside = format!("/tmp/pyattach-test-{}-{name}", std::process::id());
        let host = root.join(inside.trim_start_matches('/'));
        std::fs::copy(testsupport::fixture(&format!("py/{name}")), &host)
            .unwrap_or_else(|e| panic!("copy {name} into {}: {e}", root.display()));
        InRoot { host, inside }
    }
}

impl Drop for InRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.host);
    }
}

/// True once thread `tid` of `pid` is blocked in futex (202 on x86_64).
fn in_futex(pid: i32, tid: &str) -> bool {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < end {
        let s =
            std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall")).unwrap_or_default();
        if s.split_whitespace().next() == Some(&nix::libc::SYS_futex.to_string()) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    false
}

/// `--thread` reaches workers parked (Python/parking_lot.c) in
/// `Event.wait()`, `Lock.acquire()`, `RLock.acquire()`, `Thread.join()`
/// and `SimpleQueue.get()`: their futex wait
/// is proved to retry (nudge.rs) and cut short, and the code runs at
/// `Py_MakePendingCalls`, where the retry loop goes with the GIL (Debian's
/// LTO inlines `PyEval_ReleaseThread` into `_PyParkingLot_Park`). Each
/// waiter checks that it returns only when `release_all()` lets it, and
/// with the right result. Debian's 3.13: `Thread.join` and
/// `SimpleQueue.get` only, since its LTO
/// inlines the lock acquires into the generic method call, which proves
/// nothing (the waiters are there all the same and must not return early).
/// Debian's debug build `python3.15d`, which inlines nothing, proves the
/// chains through `_PyMutex_LockTimed`.
#[test]
fn thread_reaches_workers_parked_in_lock_waits() {
    let Some(root) = testsupport::sid_root() else {
        return testsupport::note("the sid root is missing (scripts/setup)");
    };
    let script = InRoot::copy(&root, "parked.py");
    let limit = std::time::Duration::from_secs(30);
    for (v, reached) in [
        ("3.13", &["join", "queue"][..]),
        ("3.14", &["event", "lock", "rlock", "join", "queue"][..]),
        ("3.15", &["event", "lock", "rlock", "join", "queue"][..]),
        // The debug build inlines nothing: the chains through
        // _PyMutex_LockTimed (RLock's, one frame deeper, is not listed).
        ("3.15d", &["event", "lock", "join", "queue"][..]),
    ] {
        if !root.join(format!("usr/bin/python{v}")).exists() {
            testsupport::note(&format!("no python{v} in the sid root (scripts/setup)"));
            continue;
        }
        let mut cmd = Command::new("chroot");
        cmd.arg(&root)
            .arg(format!("/usr/bin/python{v}"))
            .args(["-u", &script.inside]);
        let t = Target::spawn(cmd);
        let pid = t.pid();
        let tid = |what: &str| -> String {
            t.ready_line
                .split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{what}=")))
                .unwrap_or_else(|| panic!("{v}: no {what} in {:?}", t.ready_line))
                .to_string()
        };
        for what in ["event", "lock", "rlock", "join", "queue"] {
            assert!(in_futex(pid, &tid(what)), "{v}: {what} never parked");
        }
        for &what in reached {
            let code = "import threading; print(threading.current_thread().name)";
            let out = testsupport::pyattach_output(
                &["--thread", &tid(what), "--run", code, &pid.to_string()],
                b"",
                limit,
            );
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim(),
                format!("on_{what}"),
                "{v} {what}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            // Back in its wait, not returned from it.
            assert!(in_futex(pid, &tid(what)), "{v}: {what} left its wait");
        }
        // In the main thread, which holds the RLock.
        let pid = pid.to_string();
        let args = ["--thread", &pid, "--run", "release_all()", &pid];
        let out = testsupport::pyattach_output(&args, b"", limit);
        assert!(
            out.status.success(),
            "{v}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            t.wait_for_output("ALL DONE", std::time::Duration::from_secs(10)),
            "{v}: {}",
            t.output()
        );
        assert!(!t.output().contains("DEVIATION"), "{v}: {}", t.output());
    }
}

/// The file offset of `Py_Version` in the ELF file `exe`, from
/// `readelf` (its dynamic symbol, then the LOAD segment holding it).
fn py_version_offset(exe: &Path) -> Option<usize> {
    let run = |args: &[&str]| -> Option<String> {
        let o = Command::new("readelf").args(args).arg(exe).output().ok()?;
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
    let syms = run(&["-Ws", "--dyn-syms"])?;
    let addr = syms.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.last() == Some(&"Py_Version")).then(|| hex(f[1]))?
    })?;
    let phdrs = run(&["-lW"])?;
    phdrs.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.first() != Some(&"LOAD") {
            return None;
        }
        let (off, va, filesz) = (hex(f[1])?, hex(f[2])?, hex(f[4])?);
        (va <= addr && addr < va + filesz).then(|| (addr - va + off) as usize)
    })
}

/// A CPython newer than pyattach knows (Debian's 3.15 with its
/// `Py_Version` made to say 3.16, under a name that agrees): `info` shows
/// what it found and says what is missing, `dump` names the layouts it
/// lacks (status 3), and `--run`, which needs none, runs the code.
#[test]
fn a_newer_cpython_is_described_and_run_in() {
    let Some(root) = testsupport::sid_root() else {
        return testsupport::note("the sid root is missing (scripts/setup)");
    };
    let real = root.join("usr/bin/python3.15");
    let Some(off) = py_version_offset(&real) else {
        return testsupport::note("readelf is missing or python3.15 has no Py_Version");
    };
    let mut bin = std::fs::read(&real).expect("read python3.15");
    let word = u32::from_le_bytes(bin[off..off + 4].try_into().unwrap());
    assert_eq!(word >> 16, 0x030f, "Py_Version of 3.15: {word:#x}");
    bin[off..off + 4].copy_from_slice(&(0x0310_0000 | (word & 0xffff)).to_le_bytes());
    let dir = format!("/tmp/pyattach-test-{}-newer", std::process::id());
    let host_dir = root.join(&dir[1..]);
    std::fs::create_dir_all(&host_dir).expect("mkdir");
    struct Rm(std::path::PathBuf);
    impl Drop for Rm {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _rm = Rm(host_dir.clone());
    let exe = host_dir.join("python3.16");
    std::fs::write(&exe, &bin).expect("write python3.16");
    let mode = <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755);
    std::fs::set_permissions(&exe, mode).expect("chmod");
    let mut cmd = Command::new("chroot");
    cmd.arg(&root)
        .arg(format!("{dir}/python3.16"))
        .args(["-u", "-c", SCRIPT]);
    let t = Target::spawn(cmd);
    let pid = t.pid().to_string();

    let (code, out, err) = pyattach(&["info", &pid]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("CPython 3.16."), "{out}");
    assert!(out.contains("newer than this pyattach knows"), "{out}");
    assert!(out.contains("PyRun_SimpleString"), "{out}");

    let (code, _, err) = pyattach(&["dump", &pid]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("not those of 3.16"), "{err}");

    let (code, out, err) = pyattach(&["--run", "import sys; print(sys.version_info[:2])", &pid]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "(3, 15)", "{err}");
    assert!(t.is_alive());
}
