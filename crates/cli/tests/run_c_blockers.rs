//! The first law for C code that blocks on its own (issue 17): threads
//! blocked in a C library's `read`, `recv`, `poll`, `nanosleep`, `sleep`,
//! `sem_wait` and `pthread_cond_wait` (ctypes), which would report EINTR to
//! their caller, must come out of `--run` and a prompt session still
//! blocked, and return exactly what they would have (the test wakes them
//! afterwards: tests/fixtures/py/c_blockers.py); the code still runs,
//! through the main thread's Python. A thread holding the GIL in a C
//! `sleep` (ctypes.PyDLL) is left alone too: "no safe point", naming it,
//! and its sleep runs to the end. Every Python 3 interpreter of the matrix,
//! all at once (each target sleeps its C sleeps through).

use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use nix::libc;
use testsupport::{pythons, Python, Target};

/// How long the C sleeps last: longer than the pyattach runs take on a
/// loaded machine (a stripped interpreter waits for the new-thread
/// fallback, half of --timeout), so that they are still asleep after.
const SLEEP_S: u64 = 15;

/// What each blocking call returns, with its errno, when woken as the
/// fixture does (a byte, a datagram, sem_post, a signalled condition) or
/// when its sleep runs out: `RESULT name value errno`.
const EXPECTED: &[(&str, &str)] = &[
    ("c_read", "1 0"),
    ("c_recv", "1 0"),
    ("c_poll", "1 0"),
    ("c_nanosleep", "0 0"),
    ("c_sleep", "0 0"),
    ("c_sem_wait", "0 0"),
    ("c_cond_wait", "1 0"),
];

/// Runs pyattach with `args` (and `stdin` piped in); kills it by pid if
/// it hangs.
fn pyattach(args: &[&str], stdin: &str) -> Output {
    testsupport::pyattach_output(args, stdin.as_bytes(), Duration::from_secs(60))
}

/// The fixture in `mode` under `py`, and the file that wakes its calls.
fn start(py: &Python, mode: &str) -> (Target, PathBuf) {
    let go = std::env::temp_dir().join(format!(
        "pyattach-cblock-{}-{mode}-{}",
        py.id,
        std::process::id()
    ));
    let _ = std::fs::remove_file(&go);
    let t = Target::python(
        py,
        "c_blockers.py",
        &[mode, &SLEEP_S.to_string(), go.to_str().unwrap()],
    );
    (t, go)
}

/// The native tid of the fixture's thread `name` (its `TID` line).
fn tid_of(t: &Target, name: &str) -> i32 {
    let needle = format!("TID {name} ");
    assert!(
        t.wait_for_output(&needle, Duration::from_secs(20)),
        "no TID line for {name}: {}",
        t.output()
    );
    let out = t.output();
    let line = out.lines().find(|l| l.starts_with(&needle)).unwrap();
    line[needle.len()..].trim().parse().unwrap()
}

/// Waits until thread `tid` of `pid` is in one of the syscalls `nrs` (what
/// /proc says), so that pyattach finds it blocked in its C call.
fn wait_blocked(pid: i32, tid: i32, nrs: &[i64]) {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let s =
            std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall")).unwrap_or_default();
        let nr = s.split_whitespace().next().and_then(|n| n.parse().ok());
        if nr.is_some_and(|n: i64| nrs.contains(&n)) {
            return;
        }
        assert!(
            Instant::now() < end,
            "thread {tid} of {pid} never blocked in {nrs:?} (/proc says {s:?})"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The syscalls each C call blocks in.
fn syscalls(name: &str) -> &'static [i64] {
    const SLEEPS: &[i64] = &[
        libc::SYS_nanosleep,
        libc::SYS_clock_nanosleep,
        libc::SYS_restart_syscall,
    ];
    match name {
        "c_read" => &[libc::SYS_read],
        "c_recv" => &[libc::SYS_recvfrom],
        "c_poll" => &[libc::SYS_poll, libc::SYS_ppoll, libc::SYS_restart_syscall],
        "c_sem_wait" | "c_cond_wait" => &[libc::SYS_futex],
        _ => SLEEPS,
    }
}

/// Waits for the C calls to be blocked; their tids by name.
fn blocked(t: &Target, names: &[&str]) -> Vec<(String, i32)> {
    names
        .iter()
        .map(|&n| {
            let tid = tid_of(t, n);
            wait_blocked(t.pid(), tid, syscalls(n));
            (n.to_string(), tid)
        })
        .collect()
}

/// Asserts that no call has returned yet, wakes them, and checks what each
/// returned.
fn wake_and_check(py: &Python, t: &Target, go: &PathBuf, names: &[(&str, &str)]) {
    let said = t.output();
    let early: Vec<&str> = said.lines().filter(|l| l.starts_with("RESULT")).collect();
    assert!(
        early.is_empty(),
        "{}: calls returned before they were woken: {early:?}",
        py.id
    );
    std::fs::write(go, b"").unwrap();
    for (name, want) in names {
        let line = format!("RESULT {name} {want}\n");
        assert!(
            t.wait_for_output(&line, Duration::from_secs(SLEEP_S + 30)),
            "{}: expected {line:?}; the target said:\n{}",
            py.id,
            t.output()
        );
    }
    assert!(
        t.wait_for_output("WOKEN", Duration::from_secs(SLEEP_S + 30)),
        "{}: the main thread did not go on: {}",
        py.id,
        t.output()
    );
    let _ = std::fs::remove_file(go);
}

fn python3s() -> Vec<Python> {
    pythons().into_iter().filter(|p| p.version.0 >= 3).collect()
}

/// `--run`, then a prompt session fed by a pipe, then the calls are woken.
fn c_calls_stay_blocked(py: &Python) {
    let (t, go) = start(py, "nogil");
    let names: Vec<&str> = EXPECTED.iter().map(|(n, _)| *n).collect();
    let tids = blocked(&t, &names);
    let pid = t.pid().to_string();
    let out = pyattach(&["-v", "--run", "print('ran', 6 * 7)", &pid], "");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("ran 42"),
        "{}: --run failed: {err}",
        py.id
    );
    for (name, tid) in &tids {
        assert!(
            !err.contains(&format!("thread {tid} nudged")),
            "{}: {name} (thread {tid}) was nudged: {err}",
            py.id
        );
    }
    let out = pyattach(&[&pid], "print('prompt', 6 * 7)\n");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("prompt 42"),
        "{}: the prompt session failed: {}",
        py.id,
        String::from_utf8_lossy(&out.stderr)
    );
    wake_and_check(py, &t, &go, EXPECTED);
}

/// A thread holds the GIL in a C sleep: no safe point, the thread named,
/// and its sleep (and every other C call) left whole.
fn gil_held_in_c_sleep_is_left_alone(py: &Python) {
    let (t, go) = start(py, "gil");
    let mut names: Vec<&str> = EXPECTED.iter().map(|(n, _)| *n).collect();
    names.push("gil_sleep");
    let tids = blocked(&t, &names);
    let gil = tids.last().unwrap().1;
    let pid = t.pid().to_string();
    for stdin in ["", "print('prompt')\n"] {
        let args: &[&str] = if stdin.is_empty() {
            &["--timeout", "1.5", "--run", "print('ran')", &pid]
        } else {
            &["--timeout", "1.5", &pid]
        };
        let out = pyattach(args, stdin);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("reached a point where Python code can run"),
            "{}: {args:?} should find no safe point: {err}",
            py.id
        );
        assert!(
            err.contains(&format!("thread {gil} left alone")) && err.contains("sleep (libc"),
            "{}: the message should name the GIL holder {gil} and its C function: {err}",
            py.id
        );
    }
    let mut expected = EXPECTED.to_vec();
    expected.push(("gil_sleep", "0 0"));
    wake_and_check(py, &t, &go, &expected);
}

fn on_every_python3(check: fn(&Python)) {
    let pys = python3s();
    assert!(!pys.is_empty(), "no Python 3 interpreter to test");
    std::thread::scope(|s| {
        for py in &pys {
            s.spawn(move || check(py));
        }
    });
}

#[test]
fn c_library_calls_stay_blocked_through_run_and_prompt() {
    on_every_python3(c_calls_stay_blocked);
}

#[test]
fn gil_held_in_a_c_sleep_gets_no_safe_point_and_no_nudge() {
    on_every_python3(gil_held_in_c_sleep_is_left_alone);
}

/// Where the proof needs symbols the interpreter lacks (Debian's stripped
/// python3.11 and the libpython3.11 of the embedding program, without their
/// debug file), a target whose only thread sleeps in `time.sleep(3600)` is
/// left alone, `-v` says why, and the code still runs: through the
/// new-thread fallback.
#[test]
fn stripped_interpreter_leaves_unproved_calls_and_still_runs_the_code() {
    let stripped: Vec<Python> = pythons()
        .into_iter()
        .filter(|p| p.kind != testsupport::PythonKind::Pyenv)
        .collect();
    if stripped.is_empty() {
        testsupport::note("no stripped interpreter (Debian's python3.11) on this machine");
    }
    for py in stripped {
        let t = Target::run_state(&py, "longsleep").unwrap();
        let pid = t.pid().to_string();
        let out = pyattach(&["-v", "--run", "print('ran')", &pid], "");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout) == "ran\n",
            "{}: {err}",
            py.id
        );
        let main = format!("thread {} ", t.pid());
        let line = err
            .lines()
            .find(|l| l.contains(&main) && (l.contains("nudged") || l.contains("left alone")))
            .unwrap_or_else(|| panic!("{}: no word on the main thread: {err}", py.id));
        if line.contains("has no symbol") {
            assert!(
                line.contains("left alone") && err.contains("new thread"),
                "{}: {err}",
                py.id
            );
        } else {
            testsupport::note(&format!(
                "{} has its debug file: the call was proved",
                py.id
            ));
            assert!(line.contains("nudged"), "{}: {err}", py.id);
        }
        assert!(t.is_alive(), "{}", py.id);
    }
}
