//! A signal that arrives while pyattach's code runs in the main thread is
//! deferred and its Python handler run once the thread is back in the
//! application; its arrival has already written its byte to the wakeup
//! fd, so the re-trip must not write another (asyncio runs the callbacks
//! of `add_signal_handler` from those bytes: twice for one signal). Found
//! by `scripts/torture` ("real-time signals: each delivered once": sent
//! 1115, counted 1116). 3.10+, where pyattach finds
//! `PySignal_SetWakeupFd` (exported from 3.13, in `.symtab` before); before
//! 3.10, where pyattach sets the handler's and the module's flags itself
//! (`Handlers`, `is_tripped`; before, the signal was sent again and its C
//! handler ran twice: "wakeup bytes 2" on 2.7 and 3.6-3.9). Debian's
//! LTO-built 3.11 has no such function (open, said by a note).

use std::process::{Command, Stdio};
use std::time::Duration;

use testsupport::{pythons, PythonKind, Target};

#[test]
fn a_deferred_signal_writes_its_wakeup_byte_once() {
    for py in pythons()
        .into_iter()
        .filter(|py| py.kind != PythonKind::Embedded)
    {
        if py.kind == PythonKind::DebianStripped {
            testsupport::note(&format!(
                "{}: its LTO build has no PySignal_SetWakeupFd (3.13+ exports it): the re-trip writes the byte again",
                py.id
            ));
            continue;
        }
        let t = Target::python(&py, "wakeup_count.py", &[]);
        let pid = t.pid().to_string();
        // The code runs in the main thread (--thread) for a second: the
        // signal comes in while it does.
        let run = Command::new(testsupport::pyattach_bin())
            .args([
                "--thread",
                &pid,
                "--run",
                "import time; time.sleep(1)",
                &pid,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pyattach");
        std::thread::sleep(Duration::from_millis(500));
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(t.pid()),
            nix::sys::signal::Signal::SIGUSR1,
        )
        .expect("SIGUSR1");
        let out = run.wait_with_output().expect("pyattach");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {}",
            py.id,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            t.wait_for_output("wakeup bytes", Duration::from_secs(30)),
            "{}: the target did not report: {}",
            py.id,
            t.output()
        );
        assert!(
            t.output().contains("wakeup bytes 1 handled 1\n"),
            "{}: one SIGUSR1, seen as: {}",
            py.id,
            t.output()
        );
    }
}
