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

use testsupport::{pyattach_bin, pythons, Python, PythonKind, Target};

/// Runs `code` (which prints "BLOCKING" just before it blocks) in `t`,
/// sends SIGINT to pyattach once the line is out, and returns pyattach's
/// status and stderr. On an interpreter without the symbols that prove the
/// call safe to cut short (Debian's stripped build without its debug
/// file), pyattach may instead say it could not, naming the frame without
/// a symbol: then it is sent SIGTERM, and the status is `None`.
fn interrupt(t: &Target, py: &Python, code: &str, ctx: &str) -> (Option<i32>, String) {
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
    let stderr = child.stderr.take().unwrap();
    let said = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = said.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut s = sink.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    });
    let said = move || said.lock().unwrap().clone();
    let seen = rx
        .recv_timeout(Duration::from_secs(30))
        .is_ok_and(|l| l == "BLOCKING");
    if !seen {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{ctx}: the code never started: {}", said());
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
        let unproved = said().contains("could not cut") && said().contains("has no symbol");
        if unproved && py.kind != PythonKind::Pyenv {
            let pa = nix::unistd::Pid::from_raw(child.id() as i32);
            nix::sys::signal::kill(pa, nix::sys::signal::Signal::SIGTERM).unwrap();
            let _ = child.wait();
            return (None, said());
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{ctx}: Ctrl-C did not stop the code: {}", said());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = child.wait().unwrap().code();
    let _ = reader.join();
    (status, said())
}

fn ticks_on(t: &Target, ctx: &str) {
    assert!(t.ticks_on(2), "{ctx}: the target stopped ticking");
}

#[test]
fn ctrl_c_stops_code_blocked_in_time_sleep_on_every_interpreter() {
    for py in pythons() {
        let t = Target::run_state(&py, "sleep").unwrap();
        let code = "import time\nprint('BLOCKING')\ntime.sleep(3600)\nprint('not reached')\n";
        let (status, err) = interrupt(&t, &py, code, &py.id);
        // Stripped: the code stays blocked (in whichever thread ran it,
        // the ticker maybe), the target runs on (checked below).
        if status.is_some() {
            assert_eq!(status, Some(8), "{}: {err}", py.id);
            assert!(err.contains("KeyboardInterrupt"), "{}: {err}", py.id);
            // Python 2's sleep returns early on EINTR, and the exception
            // comes at the next line.
            if py.version.0 >= 3 {
                assert!(err.contains("time.sleep(3600)"), "{}: {err}", py.id);
            }
            ticks_on(&t, &py.id);
        }
        assert!(t.is_alive(), "{}", py.id);
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
        let mut t = Target::run_state(&py, "sleep").unwrap();
        for (what, code) in codes {
            let ctx = format!("{} {what}", py.id);
            let (status, err) = interrupt(&t, &py, code, &ctx);
            if status.is_none() {
                // The code stays blocked in one of the two threads for
                // good: the next code gets a target of its own.
                assert!(t.is_alive(), "{ctx}");
                t = Target::run_state(&py, "sleep").unwrap();
                continue;
            }
            assert_eq!(status, Some(8), "{ctx}: {err}");
            assert!(err.contains("KeyboardInterrupt"), "{ctx}: {err}");
            assert!(t.is_alive(), "{ctx}");
        }
        ticks_on(&t, &py.id);
    }
}

/// Every executable mapping of `pid` with its bytes (code as it runs).
fn code_of(pid: i32) -> Vec<(String, Vec<u8>)> {
    use std::io::{Read, Seek, SeekFrom};
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut out = Vec::new();
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (range, perms) = (f.next().unwrap(), f.next().unwrap());
        if !perms.contains('x') || line.ends_with("[vsyscall]") {
            continue;
        }
        let (a, b) = range.split_once('-').unwrap();
        let (a, b) = (
            u64::from_str_radix(a, 16).unwrap(),
            u64::from_str_radix(b, 16).unwrap(),
        );
        let mut bytes = vec![0u8; (b - a) as usize];
        mem.seek(SeekFrom::Start(a)).unwrap();
        let _ = mem.read_exact(&mut bytes);
        out.push((line.to_string(), bytes));
    }
    out
}

/// A call that retries on EINTR by itself (glibc's mutex wait) goes back to
/// waiting without passing a hooked check: pyattach says so, and every
/// hook and page it placed for the attempt is gone again.
#[test]
fn ctrl_c_that_cannot_cut_a_call_short_says_so_and_leaves_nothing() {
    for v in ["3.12", "3.13"] {
        let Some(py) = testsupport::python(v) else {
            continue;
        };
        let t = Target::run_state(&py, "sleep").unwrap();
        let pid = t.pid();
        let code = "import ctypes, sys\nlibc = ctypes.CDLL(None)\n\
                    m = ctypes.create_string_buffer(64)\nlibc.pthread_mutex_lock(m)\n\
                    print('BLOCKING')\nsys.stdout.flush()\nlibc.pthread_mutex_lock(m)\n";
        let mut child = Command::new(pyattach_bin())
            // In the main thread: the code stays blocked there for good,
            // and the ticker thread must stay free to show the target runs.
            .args([
                "--thread",
                &pid.to_string(),
                "--run",
                code,
                &pid.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx2.send(l);
            }
        });
        let wait_for = |needle: &str| -> String {
            let end = Instant::now() + Duration::from_secs(20);
            let mut seen = String::new();
            while Instant::now() < end {
                if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
                    seen.push_str(&l);
                    seen.push('\n');
                    if l.contains(needle) {
                        return seen;
                    }
                }
            }
            panic!("{v}: {needle:?} never came; saw:\n{seen}");
        };
        wait_for("BLOCKING");
        std::thread::sleep(Duration::from_millis(300));
        let before = code_of(pid);
        let pa = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pa, nix::sys::signal::Signal::SIGINT).unwrap();
        // A C library's own wait: not cut short at all.
        let said = wait_for("could not cut");
        assert!(said.contains("not known to be safe"), "{v}: {said}");
        // Hooks taken back, pages unmapped: the code is as it was.
        let after = code_of(pid);
        let lines = |c: &[(String, Vec<u8>)]| c.iter().map(|(l, _)| l.clone()).collect::<Vec<_>>();
        assert_eq!(lines(&after), lines(&before), "{v}: mappings");
        assert!(after == before, "{v}: code bytes differ");
        assert!(t.is_alive(), "{v}");
        ticks_on(&t, v);
        // The code itself stays blocked (it is the user's): leaving ends
        // pyattach, and the target runs on.
        nix::sys::signal::kill(pa, nix::sys::signal::Signal::SIGTERM).unwrap();
        let end = Instant::now() + Duration::from_secs(20);
        while child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < end,
                "{v}: pyattach did not leave on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(t.is_alive(), "{v}");
        ticks_on(&t, v);
    }
}

/// Runs pyattach with `args` to its end; a run that outlives the 30 s bound
/// (generous: only to catch a pyattach that never leaves) is killed and
/// fails the test.
fn run_bounded(args: &[&str], ctx: &str) -> std::process::Output {
    let started = Instant::now();
    let mut child = Command::new(pyattach_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("{ctx}: pyattach did not end within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// `--timeout` given with `--run` bounds the code as well: code still
/// running then is stopped as Ctrl-C would (status 124), busy or blocked;
/// code done in time is not touched.
#[test]
fn timeout_stops_code_that_runs_past_it() {
    for v in ["2.7", "3.12"] {
        let Some(py) = testsupport::python(v) else {
            continue;
        };
        let t = Target::run_state(&py, "sleep").unwrap();
        let pid = t.pid().to_string();
        for code in ["while True: pass", "import time\ntime.sleep(3600)"] {
            let ctx = format!("{v} {code:?}");
            let out = run_bounded(&["--timeout", "2", "--run", code, &pid], &ctx);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(124), "{ctx}: {err}");
            assert!(err.contains("KeyboardInterrupt"), "{ctx}: {err}");
            assert!(err.contains("ran past --timeout"), "{ctx}: {err}");
            assert!(t.is_alive(), "{ctx}");
            ticks_on(&t, &ctx);
        }
        let out = Command::new(pyattach_bin())
            .args(["--timeout", "20", "--run", "print('in time')", &pid])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{v}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "in time\n", "{v}");
    }
}

/// Code that does not stop on the KeyboardInterrupt of its `--timeout`
/// (here: it catches it) is left to run after a grace period; pyattach
/// says so, status 124, and the target's other threads run on.
#[test]
fn timeout_leaves_code_that_will_not_stop_and_says_so() {
    let Some(py) = testsupport::python("3.12") else {
        return;
    };
    let t = Target::run_state(&py, "sleep").unwrap();
    let pid = t.pid().to_string();
    let code = "import time\nwhile True:\n    try:\n        time.sleep(0.05)\n    \
                except KeyboardInterrupt:\n        print('caught')\n";
    // In the main thread: the ticker thread must stay free.
    let out = run_bounded(
        &["--thread", &pid, "--timeout", "1", "--run", code, &pid],
        "3.12",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(124), "{err}");
    assert!(err.contains("did not stop"), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("caught"));
    assert!(t.is_alive());
    ticks_on(&t, "3.12");
}
