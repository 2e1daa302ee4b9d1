//! Ctrl-C (SIGINT to pyattach) stops `--run` code blocked in a system
//! call in the target, as Ctrl-C stops a main thread's: KeyboardInterrupt
//! raised where the code waits, traceback and status 8 here, the target
//! running on. Found by scripts/torture ("Ctrl-C stops code blocked in
//! time.sleep(3600)"): the asynchronous exception alone never reached a
//! thread blocked in a call, and pyattach waited for ever.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use testsupport::{pyattach_bin, pythons, Python, Target};

/// Runs `code` (which prints "BLOCKING" just before it blocks) in `t`,
/// sends SIGINT to pyattach once the line is out, and returns pyattach's
/// status and stderr.
fn interrupt(t: &Target, code: &str, ctx: &str) -> (Option<i32>, String) {
    let mut child = Command::new(pyattach_bin())
        .args(["--run", code, &t.pid().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pyattach");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let seen = rx
        .recv_timeout(Duration::from_secs(30))
        .is_ok_and(|l| l == "BLOCKING");
    if !seen {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        panic!(
            "{ctx}: the code never started: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Let it settle in the blocking call.
    std::thread::sleep(Duration::from_millis(300));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let end = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{ctx}: Ctrl-C did not stop the code: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ticks_on(t: &Target, ctx: &str) {
    let n = t.output().matches("TICK").count();
    assert!(
        t.wait_for_output(&format!("TICK {}\n", n + 2), Duration::from_secs(10)),
        "{ctx}: the target stopped ticking"
    );
}

#[test]
fn ctrl_c_stops_code_blocked_in_time_sleep_on_every_interpreter() {
    for py in pythons() {
        let t = Target::run_state(&py, "sleep").unwrap();
        let code = "import time\nprint('BLOCKING')\ntime.sleep(3600)\nprint('not reached')\n";
        let (status, err) = interrupt(&t, code, &py.id);
        assert_eq!(status, Some(8), "{}: {err}", py.id);
        assert!(err.contains("KeyboardInterrupt"), "{}: {err}", py.id);
        // Python 2's sleep returns early on EINTR, and the exception comes
        // at the next line.
        if py.version.0 >= 3 {
            assert!(err.contains("time.sleep(3600)"), "{}: {err}", py.id);
        }
        assert!(t.is_alive(), "{}", py.id);
        ticks_on(&t, &py.id);
        // Nothing stays queued for the thread that ran the code (often the
        // target's main thread): another run there works.
        let out = Command::new(pyattach_bin())
            .args(["--run", "print('after')", &t.pid().to_string()])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", py.id);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "after\n", "{}", py.id);
    }
}

#[test]
fn ctrl_c_stops_code_blocked_in_reads_locks_and_waits() {
    let codes = [
        (
            "os.read",
            "import os\nr, w = os.pipe()\nprint('BLOCKING')\nos.read(r, 1)\n",
        ),
        (
            "Lock.acquire",
            "import threading\nl = threading.Lock()\nl.acquire()\nprint('BLOCKING')\nl.acquire()\n",
        ),
        (
            "Event.wait",
            "import threading\nprint('BLOCKING')\nthreading.Event().wait()\n",
        ),
        (
            "socket.recv",
            "import socket\na, b = socket.socketpair()\nprint('BLOCKING')\na.recv(1)\n",
        ),
        (
            "select",
            "import os, select\nr, w = os.pipe()\nprint('BLOCKING')\nselect.select([r], [], [])\n",
        ),
    ];
    let mut pys: Vec<Python> = ["3.6", "3.12", "3.13"]
        .into_iter()
        .filter_map(testsupport::python)
        .collect();
    pys.extend(testsupport::debian_python());
    for py in pys {
        let t = Target::run_state(&py, "sleep").unwrap();
        for (what, code) in codes {
            let ctx = format!("{} {what}", py.id);
            let (status, err) = interrupt(&t, code, &ctx);
            assert_eq!(status, Some(8), "{ctx}: {err}");
            assert!(err.contains("KeyboardInterrupt"), "{ctx}: {err}");
            assert!(t.is_alive(), "{ctx}");
        }
        ticks_on(&t, &py.id);
    }
}
