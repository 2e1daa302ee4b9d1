//! What the bootstrap must not change in the target (issue #19), each on a
//! real process of tests/fixtures/py/first_law.py that notices the change,
//! on every interpreter of the matrix.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{case, fd_count, finish, pyattach, spawn, text};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use testsupport::{pythons, Python, Target};

fn scratch(tag: &str, py: &Python) -> PathBuf {
    let p = std::env::temp_dir().join(format!(
        "pyattach-firstlaw-{tag}-{}-{}",
        py.id,
        std::process::id()
    ));
    let _ = std::fs::remove_file(&p);
    p
}

/// Waits up to `secs` for the target to exit; its exit code.
fn exit_code(t: &mut Target, secs: u64) -> Option<i32> {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if let Some(status) = t.child_mut().try_wait().unwrap() {
            return Some(status.code().unwrap_or(-1));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// #19 item 5: `__main__` defines its own compile, eval, exec, getattr and
/// `__import__`; pyattach calls none of them and its code runs.
#[test]
fn names_main_defines_do_not_shadow_the_builtins_pyattach_uses() {
    for py in pythons() {
        let t = case(&py, "shadow", &[]);
        let pid = t.pid().to_string();
        // The first run goes through the entry text, the next through the
        // bootstrap kept in the target; then a prompt.
        for _ in 0..2 {
            let out = pyattach(&["--run", "print('ran')", &pid], None);
            let (stdout, stderr) = text(&out);
            assert_eq!(out.status.code(), Some(0), "{}: {stderr}", py.id);
            assert_eq!(stdout, "ran\n", "{}: {stderr}", py.id);
        }
        let out = pyattach(&[&pid], Some("print('prompt')\n"));
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{}: {stderr}", py.id);
        assert!(stdout.contains("prompt"), "{}: {stdout} {stderr}", py.id);
        assert!(t.ticks_on(2), "{}", py.id);
        assert!(!t.output().contains("SHADOW"), "{}: {}", py.id, t.output());
    }
}

/// #19 item 1: a single-threaded script imports threading only after
/// `--run`, a prompt session, and `--run` code that imports threading
/// (in its own thread); its main thread is still threading's main thread,
/// and new threads are not daemons.
#[test]
fn threading_imported_after_sessions_knows_the_real_main_thread() {
    for py in pythons() {
        let flag = scratch("threading", &py);
        let t = case(
            &py,
            "late_threading",
            &[("PYATTACH_FLAG", flag.to_str().unwrap())],
        );
        let pid = t.pid().to_string();
        let out = pyattach(&["--run", "x = 1", &pid], None);
        assert_eq!(out.status.code(), Some(0), "{}: {}", py.id, text(&out).1);
        let out = pyattach(&[&pid], Some("y = 2\n"));
        assert_eq!(out.status.code(), Some(0), "{}: {}", py.id, text(&out).1);
        // Code that imports threading itself, in a thread of its own.
        let code = "import threading\nprint(threading.current_thread().name)";
        let out = pyattach(&["--run", code, &pid], None);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{}: {stderr}", py.id);
        assert_ne!(stdout, "MainThread\n", "{}", py.id);
        std::fs::write(&flag, "").unwrap();
        assert!(
            t.wait_for_output("THREADING", Duration::from_secs(10)),
            "{}: {}",
            py.id,
            t.output()
        );
        let _ = std::fs::remove_file(&flag);
        assert!(
            t.output().contains("THREADING ok"),
            "{}: {}",
            py.id,
            t.output()
        );
    }
}

/// #19 item 3: a SIGTERM handler raising SystemExit(0), the signal sent
/// while `--run` code runs in the main thread (`--thread`: the handler's
/// call waits for the code, then runs in the application), or in a thread
/// of its own: the process exits, with status 0 and through its own
/// `finally`, every time. (A signal already due as the bootstrap is
/// entered: see the next test.)
#[test]
fn a_sigterm_handlers_system_exit_reaches_the_application() {
    for py in pythons() {
        for (main, delay) in [(true, 300), (true, 600), (true, 900), (false, 300)] {
            let mut t = case(&py, "sigterm", &[]);
            let pid = t.pid().to_string();
            let mut args = vec!["--run", "import time; time.sleep(1)"];
            if main {
                args.extend_from_slice(&["--thread", &pid]);
            }
            args.push(&pid);
            let child = spawn(&args, None);
            std::thread::sleep(Duration::from_millis(delay));
            kill(Pid::from_raw(t.pid()), Signal::SIGTERM).unwrap();
            let code = exit_code(&mut t, 15);
            let out = finish(child, "during SIGTERM");
            let ctx = format!(
                "{} main={main} delay={delay}: pyattach {:?} {}\ntarget: {}",
                py.id,
                out.status,
                text(&out).1,
                t.output()
            );
            assert_eq!(code, Some(0), "{ctx}");
            assert!(
                t.wait_for_output("EXITING", Duration::from_secs(5)),
                "{ctx}"
            );
        }
    }
}

/// #19 item 3: code run in the main thread arms a 10 ms SIGALRM timer and
/// sleeps; the application's handler raises an exception it counts. The
/// code is not cut short by them, and every exception a handler raised
/// reached the application (the signals that came while the code ran are
/// one pending signal, handled once it is done).
#[test]
fn every_exception_a_sigalrm_handler_raises_reaches_the_application() {
    let code = "import signal, time\n\
                signal.setitimer(signal.ITIMER_REAL, 0.01, 0.01)\n\
                time.sleep(0.3)\n\
                signal.setitimer(signal.ITIMER_REAL, 0, 0)\n\
                print('slept')";
    for py in pythons() {
        let t = case(&py, "sigalrm", &[]);
        let pid = t.pid().to_string();
        for _ in 0..3 {
            // The last alarm may be on its way back to the application:
            // not pending as the next injection comes in (not covered).
            std::thread::sleep(Duration::from_millis(200));
            let out = pyattach(&["--run", code, "--thread", &pid, &pid], None);
            let (stdout, stderr) = text(&out);
            assert_eq!(out.status.code(), Some(0), "{}: {stdout} {stderr}", py.id);
            assert_eq!(stdout, "slept\n", "{}", py.id);
        }
        std::thread::sleep(Duration::from_millis(200));
        let out = pyattach(
            &["--run", "print('%d %d' % (fired[0], len(caught)))", &pid],
            None,
        );
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{}: {stderr}", py.id);
        let (fired, caught) = stdout.trim().split_once(' ').expect(&stdout);
        assert!(fired.parse::<u32>().unwrap() >= 3, "{}: {stdout}", py.id);
        assert_eq!(fired, caught, "{}: fired, caught", py.id);
        assert!(t.is_alive(), "{}", py.id);
    }
}

/// #19 item 3, a signal already due as the bootstrap begins: the target
/// sends itself SIGALRM every 10 ms (armed by a first `--run`, which also
/// leaves the bootstrap defined) and its handler raises Alarm(n), so a
/// handler is often due as a thread enters pyattach's code (caught at the
/// PyErr_CheckSignals that follows a sleep the signal cut short, or at the
/// eval breaker it set). Over `--run` in a thread of its own, in the main
/// thread (`--thread`) and a prompt session, every Alarm the handler
/// raised reached the application exactly once, and every run succeeded.
/// (Before, most runs on 3.x found their bootstrap's first instruction
/// raising: no callback, and the Alarm lost.) An exception handed back to
/// the main thread as an asynchronous one no longer lands in the next
/// injection's code (a replay hands it to that injection instead, and one
/// set just before is raised and kept as the injection enters). Ignored
/// until the open race is closed: a handler due as the trampoline claims
/// (its exception taken by the trampoline) while an earlier replayed
/// exception is still pending for the thread: the second raises at the
/// bootstrap's first instruction and the trampoline, holding one already,
/// drops it (seen with the bootstrap instrumented on 3.10); and a replayed
/// exception raised inside the application's own handler, cutting it short
/// (its Alarm never raised). Also seen here, not yet understood: a session
/// that ends early ("the target closed the session"), and, 2 runs in 8, a
/// pyattach that waits past the harness's 60 s because the target still
/// holds its end of the channel with no session thread left (it closes
/// once the target's garbage collector runs: a reference cycle). Measured
/// over 8 runs: 1 Alarm lost in all (5 before the replay lock).
/// `cargo test -- --ignored`.
#[test]
#[ignore = "open race: see the doc comment"]
fn alarms_due_as_the_bootstrap_begins_reach_the_application_once() {
    for py in pythons() {
        eprintln!("alarm_storm on {}", py.id);
        let t = case(&py, "alarm_storm", &[]);
        let pid = t.pid().to_string();
        let run = |code: &str| {
            let out = pyattach(&["--run", code, &pid], None);
            assert_eq!(out.status.code(), Some(0), "{}: {}", py.id, text(&out).1);
            text(&out).0
        };
        run("import signal; signal.setitimer(signal.ITIMER_REAL, 0.01, 0.01)");
        for i in 0..6 {
            let out = match i % 3 {
                0 => pyattach(&["--run", "pass", &pid], None),
                1 => pyattach(&["--run", "x = 1", "--thread", &pid, &pid], None),
                _ => pyattach(&[&pid], Some("x = 2\n")),
            };
            assert_eq!(
                out.status.code(),
                Some(0),
                "{} #{i}: {}",
                py.id,
                text(&out).1
            );
        }
        run("import signal; signal.setitimer(signal.ITIMER_REAL, 0, 0)");
        std::thread::sleep(Duration::from_millis(300));
        let stdout = run("n = next(COUNT) - 1\n\
             print('%d %r %d' % (n, sorted(set(range(1, n + 1)) - set(caught)), \
             len(caught) - len(set(caught))))");
        let (fired, rest) = stdout.trim().split_once(' ').expect(&stdout);
        assert!(fired.parse::<u32>().unwrap() >= 10, "{}: {stdout}", py.id);
        assert_eq!(
            rest, "[] 0",
            "{}: fired, lost, caught twice: {stdout}",
            py.id
        );
        assert!(t.is_alive(), "{}", py.id);
    }
}

/// #19 item 7: a target that cannot start a thread: pyattach says so at
/// once (no hang, no --timeout wait), the target's streams stay its own,
/// and nothing of the attempt stays open.
#[test]
fn a_target_that_cannot_start_a_thread_is_told_and_left_as_it_was() {
    for py in pythons() {
        let t = case(&py, "nothread", &[]);
        let pid = t.pid().to_string();
        let fds = fd_count(t.pid());
        for main in [false, true] {
            let mut args = vec!["--run", "print('ran')", "--timeout", "20"];
            if main {
                args.extend_from_slice(&["--thread", &pid]);
            }
            args.push(&pid);
            let started = Instant::now();
            let out = pyattach(&args, None);
            let (stdout, stderr) = text(&out);
            assert_eq!(
                out.status.code(),
                Some(1),
                "{} main={main}: {stderr}",
                py.id
            );
            assert!(
                stderr.contains("could not start a thread"),
                "{} main={main}: {stderr}",
                py.id
            );
            assert_eq!(stdout, "", "{}", py.id);
            assert!(started.elapsed() < Duration::from_secs(15), "{}", py.id);
        }
        // Its prints still go to its own stdout, from its main thread.
        assert!(t.ticks_on(3), "{}", py.id);
        assert!(!t.output().contains("ran"), "{}", py.id);
        let end = Instant::now() + Duration::from_secs(5);
        while fd_count(t.pid()) != fds && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(fd_count(t.pid()), fds, "{}: descriptors left", py.id);
    }
}

/// What the bootstrap imports, with what those modules import (formatting
/// a traceback too): the modules a session may leave in `sys.modules` (the
/// README's list).
fn documented_imports(py: &Python) -> Vec<String> {
    let script = std::env::temp_dir().join(format!(
        "pyattach-firstlaw-imports-{}-{}.py",
        py.id,
        std::process::id()
    ));
    std::fs::write(
        &script,
        "import sys\nb = set(sys.modules)\n\
         import socket, struct, fcntl, traceback, linecache, code, keyword, ctypes, time\n\
         try:\n    import _thread\nexcept ImportError:\n    import thread, imp\n\
         try:\n    1 / 0\nexcept ZeroDivisionError:\n    traceback.format_exc()\n\
         sys.stdout.write(' '.join(sorted(set(sys.modules) - b)))\n",
    )
    .unwrap();
    let out = std::process::Command::new(&py.exe)
        .arg(&script)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&script);
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// #19 item 13: after `--run` (one raising) and a prompt session, `sys`
/// holds nothing new but the documented `_pyattach_claims` and
/// `_pyattach_code`, `sys.modules` nothing but the documented imports, and
/// `linecache` none of the sessions' sources.
#[test]
fn sessions_leave_only_what_the_readme_lists() {
    for py in pythons() {
        let allowed = documented_imports(&py);
        let flag = scratch("leftovers", &py);
        let t = case(
            &py,
            "leftovers",
            &[("PYATTACH_FLAG", flag.to_str().unwrap())],
        );
        let pid = t.pid().to_string();
        assert_eq!(
            pyattach(&["--run", "x = 1", &pid], None).status.code(),
            Some(0)
        );
        assert_eq!(
            pyattach(&["--run", "1 / 0", &pid], None).status.code(),
            Some(8)
        );
        assert_eq!(pyattach(&[&pid], Some("y = 2\n")).status.code(), Some(0));
        std::fs::write(&flag, "").unwrap();
        assert!(
            t.wait_for_output("LINECACHE", Duration::from_secs(10)),
            "{}: {}",
            py.id,
            t.output()
        );
        let _ = std::fs::remove_file(&flag);
        let out = t.output();
        let line = |p: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(p))
                .unwrap_or_default()
                .to_string()
        };
        let sys_new = line("SYS ");
        let sys_new: Vec<&str> = sys_new
            .trim_matches(|c| c == '[' || c == ']')
            .split(", ")
            .map(|s| s.trim_matches('\''))
            .filter(|s| !s.is_empty())
            .collect();
        assert_eq!(
            sys_new,
            ["_pyattach_claims", "_pyattach_code"],
            "{}: {out}",
            py.id
        );
        let modules = line("MODULES ");
        let extra: Vec<&str> = modules
            .split_whitespace()
            .filter(|m| !allowed.iter().any(|a| a == m))
            .collect();
        assert!(
            extra.is_empty(),
            "{}: undocumented imports {extra:?}",
            py.id
        );
        assert_eq!(line("LINECACHE "), "[]", "{}: {out}", py.id);
    }
}

/// #19 item 8: while a session is open, every other thread uses its
/// streams through the proxies as it would the originals (iteration, the
/// with statement, buffer, fileno, ...); after it, a handler that captured
/// the proxy writes to the original, and a stream swapped in and back
/// across the session's end leaves the original in `sys.stdout`.
#[test]
fn stream_proxies_behave_as_the_originals_and_go_away() {
    for py in pythons() {
        let t = case(&py, "streams", &[]);
        let pid = t.pid().to_string();
        let out = pyattach(&["--run", "import time; time.sleep(1.5)", &pid], None);
        assert_eq!(out.status.code(), Some(0), "{}: {}", py.id, text(&out).1);
        assert!(
            t.wait_for_output("ORIGINAL", Duration::from_secs(10)),
            "{}: {}",
            py.id,
            t.output()
        );
        let output = t.output();
        let uses: Vec<&str> = output.lines().filter(|l| l.starts_with("STREAM")).collect();
        assert_eq!(uses.len(), 13, "{}: {output}", py.id);
        for l in uses {
            assert!(l.contains(" same "), "{}: {l}\n{output}", py.id);
        }
        assert!(output.contains("LOGGED\nAFTER\n"), "{}: {output}", py.id);
        assert!(output.contains("ORIGINAL True"), "{}: {output}", py.id);
    }
}

/// #19 item 12: on Python 2 every import statement takes the process's one
/// import lock; a thread caught while another one is inside a slow import
/// must not wait for it in the bootstrap. The code runs once the import is
/// done, in a thread of its own, and the main thread (10 ms sleeps) never
/// stalls. (The first injection: see the next test.)
#[test]
fn python2_never_waits_in_the_bootstrap_for_another_threads_import() {
    let Some(py) = testsupport::python("2.7") else {
        return;
    };
    let t = case(&py, "slow_import", &[]);
    let _dir = SlowModDir(t.pid());
    let pid = t.pid().to_string();
    let imports = |t: &Target| t.output().matches("IMPORTING").count();
    let next_import = |t: &Target| {
        let n = imports(t);
        let end = Instant::now() + Duration::from_secs(10);
        while imports(t) == n && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(imports(t) > n, "{}", t.output());
    };
    // The first injection, between two imports (2 s each, 0.5 s apart).
    next_import(&t);
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(
        pyattach(&["--run", "pass", &pid], None).status.code(),
        Some(0)
    );
    let seen = t.output().len();
    for _ in 0..3 {
        next_import(&t);
        std::thread::sleep(Duration::from_millis(300));
        let out = pyattach(&["--run", "print(1)", "--timeout", "10", &pid], None);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert_eq!(stdout, "1\n", "{stderr}");
    }
    let after = t.output()[seen..].to_string();
    assert!(!after.contains("STALLED"), "{after}");
}

/// #19 item 12, the first injection (the entry text compiles and defines
/// the bootstrap, whose every import statement takes Python 2's one import
/// lock): made while a worker is inside a 2 s import, it takes no thread
/// but the import's holder (the trampolines read the lock's holder), so
/// the main thread (10 ms sleeps) never stalls; the code runs once the
/// import is done, or in the new-thread fallback.
#[test]
fn python2_first_injection_takes_no_thread_while_another_imports() {
    let Some(py) = testsupport::python("2.7") else {
        return;
    };
    for _ in 0..3 {
        let t = case(&py, "slow_import", &[]);
        let _dir = SlowModDir(t.pid());
        let pid = t.pid().to_string();
        let end = Instant::now() + Duration::from_secs(10);
        while !t.output().contains("IMPORTING") && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(200));
        let out = pyattach(&["--run", "print(1)", "--timeout", "10", &pid], None);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert_eq!(stdout, "1\n", "{stderr}");
        // A stall shows once the sleep returns: past the import.
        std::thread::sleep(Duration::from_millis(2500));
        assert!(!t.output().contains("STALLED"), "{}", t.output());
    }
}

/// #19 item 11: the socket module cannot be imported (`sys.modules['socket']
/// = None`): pyattach fails within its --timeout, twice in a row, and the
/// target is left as it was: its signal handlers its own, no descriptor
/// more, its output its own.
#[test]
fn a_refused_socket_import_fails_in_bounded_time_and_leaves_nothing() {
    for py in pythons() {
        let t = case(&py, "nosocket", &[]);
        let pid = t.pid().to_string();
        let fds = fd_count(t.pid());
        for _ in 0..2 {
            let started = Instant::now();
            let out = pyattach(&["--run", "print('ran')", "--timeout", "2", &pid], None);
            assert_eq!(out.status.code(), Some(1), "{}: {}", py.id, text(&out).1);
            assert!(started.elapsed() < Duration::from_secs(10), "{}", py.id);
        }
        assert!(t.ticks_on(3), "{}", py.id);
        let output = t.output();
        assert!(output.contains("HANDLER True"), "{}", py.id);
        assert!(!output.contains("HANDLER False"), "{}: {output}", py.id);
        assert!(!output.contains("ran"), "{}", py.id);
        assert_eq!(fd_count(t.pid()), fds, "{}: descriptors left", py.id);
    }
}

/// The directory the slow_import target writes its module into, removed
/// when the test is done with the target (which is killed and never
/// cleans up itself).
struct SlowModDir(i32);

impl Drop for SlowModDir {
    fn drop(&mut self) {
        let dir = std::env::temp_dir().join(format!("pyattach-slowmod-{}", self.0));
        let _ = std::fs::remove_dir_all(dir);
    }
}
