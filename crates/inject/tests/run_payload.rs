//! The payload pyattach writes into the target (entry text, parameters,
//! bootstrap source), run the way the injected trampoline runs it:
//! `PyRun_SimpleString` at its address in the target's memory, from the
//! main thread holding the GIL (tests/fixtures/py/run_payload.py does it
//! itself, so no ptrace is needed). On every interpreter: the first
//! injection loads the bootstrap from memory, later ones reuse it; the
//! code runs and its output comes back; `__main__` gets no new name and
//! nothing escapes to `PyRun_SimpleString` (it returns 0).

use std::path::PathBuf;
use std::time::{Duration, Instant};

mod common;

use inject::run::{bootstrap, Channel, ChannelKind, Mode, Rendezvous};
use testsupport::{pythons, Python, PythonKind, Target};

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn start(py: &Python) -> (Target, Scratch, u64, String) {
    let dir = std::env::temp_dir().join(format!(
        "pyattach-test-payload-{}-{}",
        py.id,
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut cmd = std::process::Command::new(&py.exe);
    if py.kind != PythonKind::Embedded {
        cmd.arg("-u");
    }
    cmd.arg(testsupport::fixture("py/run_payload.py"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYATTACH_TEST_TRIGGER", dir.join("trigger"));
    let t = Target::spawn(cmd);
    let addr: u64 = t
        .ready_line
        .split_whitespace()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("{}: {}", py.id, t.ready_line));
    assert!(t.wait_for_output("MAIN ", Duration::from_secs(10)));
    let main = t
        .output()
        .lines()
        .find_map(|l| l.strip_prefix("MAIN "))
        .unwrap()
        .to_string();
    (t, Scratch(dir), addr, main)
}

/// Has the target run the payload for `code` and returns what the code
/// printed (stdout, then stderr) and whether it raised.
fn inject(t: &Target, dir: &Scratch, addr: u64, code: &str) -> (String, bool) {
    let mut rv = Rendezvous::prepare(t.pid(), ChannelKind::Auto).expect("prepare");
    let params = rv.params(Mode::run(code.to_string()), Duration::from_secs(5));
    let payload = bootstrap::payload(&params, addr);
    let tmp = dir.0.join("trigger.tmp");
    std::fs::write(&tmp, &payload).unwrap();
    std::fs::rename(&tmp, dir.0.join("trigger")).unwrap();
    let mut ch: Channel = rv
        .wait(Instant::now() + Duration::from_secs(20))
        .expect("bootstrap called back");
    let (out, raised) = common::output_of(&mut ch);
    (out, raised.expect("a result"))
}

#[test]
fn payload_runs_from_memory_on_every_interpreter_and_leaves_main_alone() {
    // Expressions only: the code runs in __main__'s globals, and binds
    // nothing there itself.
    let names =
        "__import__('sys').stdout.write(' '.join(sorted(vars(__import__('__main__')))) + '\\n')";
    for py in pythons() {
        let (t, dir, addr, main) = start(&py);
        for round in 0..3 {
            let ctx = format!("{} round {round}", py.id);
            let (out, raised) = inject(&t, &dir, addr, names);
            assert!(!raised, "{ctx}: {out}");
            assert_eq!(out.trim_end(), main, "{ctx}: __main__ changed");
            let results = t.output().matches("RESULT 0\n").count();
            let end = Instant::now() + Duration::from_secs(10);
            while t.output().matches("RESULT 0\n").count() < round + 1 && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(10));
            }
            assert!(
                t.output().matches("RESULT 0\n").count() == round + 1,
                "{ctx}: PyRun_SimpleString failed ({results}): {}",
                t.output()
            );
        }
        // A raising snippet: its traceback comes back, nothing escapes.
        let (out, raised) = inject(&t, &dir, addr, "1/0");
        assert!(
            raised && out.contains("ZeroDivisionError"),
            "{}: {out}",
            py.id
        );
        // The bootstrap was defined once, under this pyattach's key.
        let (out, _) = inject(
            &t,
            &dir,
            addr,
            "__import__('sys').stdout.write('%d\\n' % len(__import__('sys')._pyattach_code))",
        );
        assert_eq!(out.trim(), "1", "{}", py.id);
        assert!(
            !t.output().contains("Traceback"),
            "{}: {}",
            py.id,
            t.output()
        );
        assert!(t.is_alive());
    }
}
