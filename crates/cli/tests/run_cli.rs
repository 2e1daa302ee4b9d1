//! `pyattach --run` end to end, on real processes: every interpreter of the
//! matrix in every target state of tests/fixtures/py/run_states.py. The
//! code writes the target's pid to a file (checked), its output comes back,
//! and the target keeps working afterwards.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::pyattach;
use testsupport::{pyattach_bin, pythons, Python, Target};

mod common;

fn scratch(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("pyattach-runcli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

fn state_target(py: &Python, state: &str) -> Option<Target> {
    Target::run_state(py, state)
}

/// `--run` in `state`: pid file written, output back, target working after.
fn check_state(py: &Python, state: &str) {
    let Some(t) = state_target(py, state) else {
        return;
    };
    let pidfile = scratch(&format!("{}-{state}", py.id));
    let code = format!(
        "import os\nopen({:?}, 'w').write(str(os.getpid()))\nprint('hello from %d' % os.getpid())\n",
        pidfile.to_str().unwrap()
    );
    let pid = t.pid().to_string();
    // Python 2 does not retry syscalls cut short by EINTR, so pyattach
    // never nudges it: a thread blocked for good there never reaches a
    // safe point, and the clean timeout is the right answer.
    let blocked_py2 = py.version.0 == 2
        && matches!(
            state,
            "longsleep" | "read" | "join" | "lock" | "event" | "child"
        );
    let timeout = if blocked_py2 { "1" } else { "10" };
    let out = pyattach(&["--run", &code, "--timeout", timeout, &pid], None);
    let ctx = format!(
        "{} {state}: status {:?}\nstdout: {}\nstderr: {}",
        py.id,
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if blocked_py2 && out.status.code() == Some(1) {
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("reached a point"),
            "{ctx}"
        );
        assert!(!pidfile.exists(), "{ctx}");
    } else {
        assert_eq!(out.status.code(), Some(0), "{ctx}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("hello from {pid}\n"),
            "{ctx}"
        );
        assert_eq!(
            std::fs::read_to_string(&pidfile).unwrap_or_default(),
            pid,
            "{ctx}"
        );
    }
    let _ = std::fs::remove_file(&pidfile);
    // The target keeps working: alive, no thread left stopped, ticking on,
    // and none of the session's output on its own stdout.
    assert!(t.is_alive(), "{ctx}");
    assert!(
        t.thread_states()
            .iter()
            .all(|(_, s)| *s != 't' && *s != 'T'),
        "{ctx}: {:?}",
        t.thread_states()
    );
    if !matches!(state, "longsleep" | "read") {
        assert!(
            t.ticks_counted(2, Duration::from_secs(20)),
            "{ctx}: no ticks after"
        );
    }
    assert!(!t.output().contains("hello from"), "{ctx}");
}

fn each_python(state: &str) {
    for py in pythons() {
        if state == "asyncio" && py.version.0 < 3 {
            continue;
        }
        check_state(&py, state);
    }
}

macro_rules! state_tests {
    ($($name:ident => $state:expr,)*) => {
        $(
            #[test]
            fn $name() {
                each_python($state);
            }
        )*
    };
}

state_tests! {
    run_in_sleep => "sleep",
    run_in_longsleep => "longsleep",
    run_in_cpu_bound => "cpu",
    run_in_threads20 => "threads20",
    run_in_read => "read",
    run_in_join => "join",
    run_in_lock => "lock",
    run_in_event => "event",
    run_in_child_wait => "child",
    run_in_asyncio => "asyncio",
    run_in_recursion => "recursion",
}

#[test]
fn run_in_threads200() {
    for v in ["2.7", "3.12"] {
        if let Some(py) = testsupport::python(v) {
            check_state(&py, "threads200");
        }
    }
}

#[test]
fn raising_code_gives_traceback_and_status_8_then_target_runs_on() {
    for py in pythons() {
        let Some(t) = state_target(&py, "sleep") else {
            continue;
        };
        let pid = t.pid().to_string();
        // The first injection into the process: its set-up handles no
        // exception around the code (which would chain into the code's
        // traceback and show in sys.exc_info()).
        let code = "import sys\nprint(sys.exc_info()[0])\ndef f():\n    1 / 0\nf()\n";
        let out = pyattach(&["--run", code, &pid], None);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(8), "{}: {err}", py.id);
        assert!(err.contains("ZeroDivisionError"), "{}: {err}", py.id);
        assert!(err.contains("in f"), "{}: {err}", py.id);
        assert!(!err.contains("During handling"), "{}: {err}", py.id);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "None\n", "{}", py.id);
        // Code from stdin and from a file; the output keeps its order.
        let out = pyattach(
            &["--run", "-", "-v", &pid],
            Some("import sys\nprint(1)\nsys.stderr.write('2\\n')\nprint(3)\n"),
        );
        assert_eq!(out.status.code(), Some(0), "{}", py.id);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "1\n3\n", "{}", py.id);
        // Nothing of the injection stays mapped in the target.
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("injected pages unmapped"), "{}: {err}", py.id);
        assert!(t.is_alive());
    }
}

#[test]
fn gil_held_in_native_code_times_out_cleanly() {
    let Some(py) = testsupport::python("3.12") else {
        return;
    };
    let Some(t) = state_target(&py, "gilspin") else {
        return;
    };
    let pid = t.pid().to_string();
    let started = Instant::now();
    let out = pyattach(&["--run", "print(1)", "--timeout", "1", &pid], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("reached a point where Python code can run"),
        "{err}"
    );
    assert!(err.contains("running native code"), "{err}");
    assert!(err.contains("pyattach dump"), "{err}");
    // In place of the code's output: the stack dump, which needs nothing
    // from the target, shows the GIL holder in its Python frames.
    assert!(err.contains("what every thread is doing"), "{err}");
    assert!(err.contains("run_states.py"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(t.is_alive());
    assert!(
        t.thread_states().iter().any(|(_, s)| *s == 'R'),
        "still spinning: {:?}",
        t.thread_states()
    );
    // The entry was restored: the same bytes as in the file.
    let out = pyattach(&["--run", "print(1)", "--timeout", "1", &pid], None);
    assert_eq!(out.status.code(), Some(1));
}

/// Found by review: a pending call queued for a main thread that holds the
/// GIL in native code runs the stub in the injection's page whenever that
/// code returns, long after pyattach gave up; unmapping the page at the
/// timeout made the target crash then. The page stays until the stub ran.
#[test]
fn pending_call_outliving_a_timeout_finds_its_page() {
    for v in ["2.7", "3.12"] {
        let Some(py) = testsupport::python(v) else {
            continue;
        };
        let Some(mut t) = state_target(&py, "gilspin3") else {
            return;
        };
        let pid = t.pid().to_string();
        let out = pyattach(&["-v", "--run", "print(1)", "--timeout", "1", &pid], None);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{v}: {err}");
        assert!(err.contains("running native code"), "{v}: {err}");
        // The spin ends, the main thread runs the pending call, and then
        // Python: the ticker ticks on.
        assert!(
            t.wait_for_output("TICK 3", Duration::from_secs(20)),
            "{v}: status {:?} threads {:?} output {:?}\n{err}",
            t.child_mut().try_wait(),
            t.thread_states(),
            t.output()
        );
        assert!(t.output().contains("SPUN"), "{v}");
        assert!(t.is_alive(), "{v}");
    }
}

/// Found by scripts/torture ("target memory mappings after load"): on a
/// threaded server the claiming thread's stack kept a stale copy of a
/// return address into the trampoline, so the pages were judged in use
/// and left mapped, two more mappings with every `--run`.
#[test]
fn injection_pages_are_unmapped_on_a_threaded_server() {
    for v in ["2.7", "3.12", "3.13"] {
        let Some(py) = testsupport::python(v) else {
            continue;
        };
        let t = Target::python(&py, "http_counter.py", &[]);
        let pid = t.pid().to_string();
        let maps = || {
            std::fs::read_to_string(format!("/proc/{pid}/maps"))
                .unwrap()
                .lines()
                .count()
        };
        // The first run imports what the bootstrap needs: count after it.
        assert_eq!(
            pyattach(&["--run", "pass", &pid], None).status.code(),
            Some(0)
        );
        let before = maps();
        for i in 0..5 {
            let out = pyattach(&["-v", "--run", "pass", &pid], None);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(0), "{v} run {i}: {err}");
            assert!(
                err.contains("injected pages unmapped"),
                "{v} run {i}: {err}"
            );
        }
        // A run starts two short-lived threads (the code's and the
        // channel's reader); glibc keeps the stacks of exited threads for
        // the next ones, one more if a run's threads were still leaving as
        // the next started: a stack and its guard page, two lines at most.
        // The pages of an injection left behind would add two every run.
        assert!(
            maps() <= before + 2,
            "{v}: mappings grew {before} -> {}",
            maps()
        );
        assert!(t.is_alive(), "{v}");
    }
}

/// Found by scripts/bench on a loaded machine: `--run --thread MAIN` on a
/// CPU-bound main thread failed about one time in twenty, when the stop
/// caught that thread waiting for the GIL (a futex wait), for which no
/// pending call was queued. Here a second CPU-bound thread makes the main
/// thread wait for the GIL about half the time (the failure still depends
/// on timing, so this test may pass on a quiet machine without the fix).
#[test]
fn cpu_bound_main_thread_is_reached_even_while_it_waits_for_the_gil() {
    for v in ["2.7", "3.12"] {
        let Some(py) = testsupport::python(v) else {
            continue;
        };
        let t = state_target(&py, "cpu_contended").unwrap();
        let pid = t.pid().to_string();
        for i in 0..40 {
            let out = pyattach(
                &["--run", "pass", "--thread", &pid, "--timeout", "3", &pid],
                None,
            );
            assert_eq!(
                out.status.code(),
                Some(0),
                "{v} run {i}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(t.is_alive());
    }
}

#[test]
fn repl_reads_piped_stdin() {
    for py in pythons() {
        let Some(t) = state_target(&py, "sleep") else {
            continue;
        };
        let pid = t.pid().to_string();
        let out = pyattach(
            &[&pid],
            Some("x = 6 * 7\nprint('%d %s' % (x, counter[0] > 0))\nfor i in range(2):\n    print(i)\n\n"),
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{}: {stderr}", py.id);
        assert_eq!(stdout, "42 True\n0\n1\n", "{}: {stderr}", py.id);
        // The stacks of the threads come first, on stderr when piped.
        assert!(stderr.contains("ticker"), "{}: {stderr}", py.id);
        assert!(t.is_alive());
    }
}

#[test]
fn two_sessions_at_once() {
    let Some(py) = testsupport::python("3.12") else {
        return;
    };
    let t = state_target(&py, "sleep").unwrap();
    let pid = t.pid().to_string();
    let a = {
        let pid = pid.clone();
        std::thread::spawn(move || {
            pyattach(
                &["--run", "import time\ntime.sleep(1)\nprint('a')", &pid],
                None,
            )
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let b = pyattach(&["--run", "print('b')", "--timeout", "10", &pid], None);
    let a = a.join().unwrap();
    for (o, want) in [(&a, "a\n"), (&b, "b\n")] {
        let err = String::from_utf8_lossy(&o.stderr);
        let ok = o.status.code() == Some(0) && String::from_utf8_lossy(&o.stdout) == want;
        let told = o.status.code() == Some(1) && err.contains("session");
        assert!(ok || told, "{want}: {:?} {err}", o.status);
    }
    assert!(t.is_alive());
}

#[test]
fn new_thread_fallback_on_every_interpreter() {
    for py in pythons() {
        let Some(t) = state_target(&py, "join") else {
            continue;
        };
        let pid = t.pid().to_string();
        let out = Command::new(pyattach_bin())
            .args([
                "--run",
                "import threading\nprint(threading.current_thread().name != 'MainThread')",
                "-v",
                &pid,
            ])
            .env("PYATTACH_TEST_STRATEGY", "new-thread")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{}: {err}", py.id);
        assert!(err.contains("new thread"), "{}: {err}", py.id);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "True\n",
            "{}: {err}",
            py.id
        );
        assert!(t.is_alive());
        // The thread is gone afterwards: only the fixture's own remain.
        let end = Instant::now() + Duration::from_secs(5);
        let before = 3; // main, ticker, the joined sleeper
        while t.thread_states().len() > before && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(t.thread_states().len(), before, "{}", py.id);
    }
}

#[test]
fn thread_option_picks_the_thread() {
    for v in ["2.7", "3.12"] {
        let Some(py) = testsupport::python(v) else {
            continue;
        };
        let t = state_target(&py, "sleep").unwrap();
        let pid = t.pid();
        let ticker = t
            .thread_states()
            .into_iter()
            .map(|(tid, _)| tid)
            .find(|&tid| tid != pid)
            .expect("the ticker thread");
        for (tid, want) in [(ticker, "False"), (pid, "True")] {
            let out = pyattach(
                &[
                    "--run",
                    "import threading\nprint(threading.current_thread().name == 'MainThread')",
                    "--thread",
                    &tid.to_string(),
                    &pid.to_string(),
                ],
                None,
            );
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim(),
                want,
                "{v} thread {tid}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// A thread caught inside an `except` block (a retry loop's sleep) lends
/// the code run in it nothing: no context chained to the code's own
/// exceptions, nothing in `sys.exc_info()`; and it is still handling its
/// exception afterwards. (Python 2 keeps no such context.)
#[test]
fn code_run_in_an_except_block_sees_no_exception_of_the_target() {
    for py in pythons().into_iter().filter(|p| p.version.0 >= 3) {
        let Some(t) = state_target(&py, "except_sleep") else {
            continue;
        };
        let pid = t.pid().to_string();
        for _ in 0..2 {
            // The first run goes through the entry text, the next straight
            // to the bootstrap kept in the target.
            let code = "import sys\nprint(sys.exc_info()[0])\n1 / 0\n";
            let out = pyattach(&["--thread", &pid, "--run", code, &pid], None);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(8), "{}: {err}", py.id);
            assert_eq!(String::from_utf8_lossy(&out.stdout), "None\n", "{}", py.id);
            assert!(err.contains("ZeroDivisionError"), "{}: {err}", py.id);
            assert!(!err.contains("ValueError"), "{}: {err}", py.id);
        }
        assert!(t.ticks_on(3), "{}", py.id);
        assert!(
            !t.output().contains("LOST EXC_INFO"),
            "{}: {}",
            py.id,
            t.output()
        );
    }
}
