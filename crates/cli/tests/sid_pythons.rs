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
