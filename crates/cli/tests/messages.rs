//! Messages that must say what is true and what to do, on real targets:
//! `--run` against a thread in a long C call with the GIL released (and
//! one holding it), a 3.6 process that never started a thread (no GIL
//! yet), a non-dumpable process seen by its own non-root user, a target
//! strace holds (the fix for another user's root process, said once, is
//! checked in info.rs).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use testsupport::{pyattach_bin, pyattach_output, Target};

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = pyattach_output(args, b"", Duration::from_secs(60));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn no_safe_point_says_whether_the_gil_is_held_or_released() {
    let Some(py) = testsupport::python("3.12") else {
        return testsupport::note("skipping: pyenv 3.12 is missing");
    };
    for (state, said) in [
        ("nogilspin", "with the GIL released"),
        ("gilspin", "holds the GIL and is running native code"),
    ] {
        let Some(t) = Target::run_state(&py, state) else {
            return;
        };
        let pid = t.pid().to_string();
        let (code, _, err) = run(&["--run", "print(1)", "--timeout", "1", &pid]);
        assert_eq!(code, Some(1), "{err}");
        assert!(err.contains(said), "{state}: {err}");
        assert!(!err.contains("never reaches a safe point"), "{err}");
        if state == "nogilspin" {
            assert!(err.contains("longer --timeout"), "{err}");
            // What dump says agrees.
            assert!(err.contains("GIL: released"), "{err}");
        }
        assert!(t.is_alive());
    }
    // A holder blocked in a C library's call with the GIL (libc sleep
    // through ctypes.PyDLL) is named as the reason.
    let t = Target::python(&py, "dump_target.py", &["gil"]);
    let pid = t.pid().to_string();
    let end = Instant::now() + Duration::from_secs(20);
    let err = loop {
        let (code, _, err) = run(&["--run", "print(1)", "--timeout", "1", &pid]);
        assert_eq!(code, Some(1), "{err}");
        // The holder takes the GIL just after READY.
        if err.contains("holds the GIL while blocked in a system call") || Instant::now() > end {
            break err;
        }
    };
    assert!(
        err.contains("holds the GIL while blocked in a system call"),
        "{err}"
    );
    assert!(t.is_alive());
}

#[test]
fn a_36_process_without_threads_has_no_gil_yet() {
    let Some(py) = testsupport::python("3.6") else {
        return testsupport::note("skipping: pyenv 3.6 is missing");
    };
    let t = Target::python(&py, "sleeper.py", &[]);
    let pid = t.pid().to_string();
    let (code, out, err) = run(&["dump", &pid]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("GIL: none yet"), "{out}");
    assert!(!out.contains("without a Python thread state"), "{out}");
    let (_, out, _) = run(&["dump", "--json", &pid]);
    let j: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["gil_exists"], false, "{out}");
    assert_eq!(j["gil_locked"], Value::Null, "{out}");
    // Once a thread has started, the GIL exists and is told as usual.
    let t = Target::python(&py, "dump_target.py", &["threads", "1"]);
    let (_, out, _) = run(&["dump", "--json", &t.pid().to_string()]);
    let j: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["gil_exists"], true, "{out}");
    assert_eq!(j["gil_locked"], false, "{out}");
}

#[test]
fn a_non_dumpable_process_is_named_as_such_with_the_fix() {
    let Some(py) = testsupport::debian_python() else {
        return testsupport::note("skipping: Debian's python3.11 is missing");
    };
    let Some(mut cmd) = testsupport::as_nobody() else {
        return;
    };
    cmd.arg(&py.exe)
        .arg("-u")
        .arg(testsupport::fixture("py/not_dumpable.py"))
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let t = Target::spawn(cmd);
    let pid = t.pid().to_string();
    for args in [
        &["info", &pid][..],
        &["dump", &pid],
        &["--run", "pass", &pid],
    ] {
        let o = testsupport::as_nobody()
            .unwrap()
            .arg(pyattach_bin())
            .args(args)
            .env_remove("DEBUGINFOD_URLS")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(5), "{args:?}: {err}");
        assert!(err.contains("not dumpable"), "{args:?}: {err}");
        assert!(err.contains("PR_SET_DUMPABLE"), "{args:?}: {err}");
        assert!(
            err.contains("CAP_SYS_PTRACE") && err.contains("sudo"),
            "{err}"
        );
        assert!(!err.contains("a security module"), "{err}");
    }
    assert!(t.is_alive());
}

#[test]
fn a_target_strace_holds_is_said_so_not_nonblocking() {
    if Command::new("strace").arg("-V").output().is_err() {
        return testsupport::note("skipping: strace is missing");
    }
    let Some(p) = testsupport::python("3.12").or_else(testsupport::debian_python) else {
        return testsupport::note("skipping: no Python 3.12 nor Debian's 3.11");
    };
    let t = Target::python(&p, "sleeper.py", &[]);
    let strace = testsupport::KillChild(
        Command::new("strace")
            .args(["-q", "-o", "/dev/null", "-p", &t.pid().to_string()])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let strace_pid = strace.0.id() as i32;
    let traced = || {
        std::fs::read_to_string(format!("/proc/{}/status", t.pid()))
            .unwrap_or_default()
            .contains(&format!("TracerPid:\t{strace_pid}\n"))
    };
    let end = Instant::now() + Duration::from_secs(20);
    while !traced() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(traced());
    let (code, out, err) = run(&["dump", "--native", &t.pid().to_string()]);
    assert_eq!(code, Some(0), "{err}");
    let header = out.lines().next().unwrap();
    assert!(
        header.contains(&format!(
            "not paused: another tracer (strace, pid {strace_pid}) holds it"
        )),
        "{header}"
    );
    assert!(!out.contains("--nonblocking"), "{out}");
    assert!(
        out.contains("native frames need the threads stopped") && out.contains("detach"),
        "{out}"
    );
    let (_, out, _) = run(&["dump", "--json", &t.pid().to_string()]);
    let j: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["frozen"], false);
    assert!(
        j["not_paused"].as_str().unwrap().contains("strace"),
        "{out}"
    );
    drop(strace);
    assert!(t.is_alive());
}
