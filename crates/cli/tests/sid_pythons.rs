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

fn start(root: &Path, v: &str) -> Target {
    let mut cmd = Command::new("chroot");
    cmd.arg(root)
        .arg(format!("/usr/bin/python{v}"))
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
        let t = start(&root, v);
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
/// `Event.wait()`, `Lock.acquire()` and `Thread.join()`: their futex wait
/// is proved to retry (nudge.rs) and cut short, and the code runs at
/// `Py_MakePendingCalls`, where the retry loop goes with the GIL (Debian's
/// LTO inlines `PyEval_ReleaseThread` into `_PyParkingLot_Park`). Each
/// waiter checks that it returns only when `release_all()` lets it, and
/// with the right result. Debian's 3.13: `Thread.join` only, since its LTO
/// inlines `Lock.acquire` into the generic method call, which proves
/// nothing (the waiters are there all the same and must not return early).
#[test]
fn thread_reaches_workers_parked_in_lock_waits() {
    let Some(root) = testsupport::sid_root() else {
        return testsupport::note("the sid root is missing (scripts/setup)");
    };
    let script = InRoot::copy(&root, "parked.py");
    let limit = std::time::Duration::from_secs(30);
    for (v, reached) in [
        ("3.13", &["join"][..]),
        ("3.14", &["event", "lock", "join"][..]),
        ("3.15", &["event", "lock", "join"][..]),
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
        for what in ["event", "lock", "join"] {
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
        let out =
            testsupport::pyattach_output(&["--run", "release_all()", &pid.to_string()], b"", limit);
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
