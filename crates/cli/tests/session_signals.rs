//! pyattach asked to leave by SIGTERM or SIGHUP (a terminal closed, a
//! supervisor stopping it) in the middle of a prompt session or of `--run`
//! code that blocks: it stops the code, ends the session in the target,
//! takes its pages back, and exits with 128+N. The target is left as
//! before: no extra thread, no code page of pyattach's, still ticking.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use testsupport::{exec_anon, pyattach_bin, Python, Target};

fn threads(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .count()
}

/// Starts pyattach with `args`, feeds it `input`, waits for `needle` on
/// its stdout, sends it `sig`; returns its exit status and stderr.
fn leave_by(args: &[&str], input: &[u8], needle: &str, sig: Signal, ctx: &str) -> Option<i32> {
    let mut child = Command::new(pyattach_bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kept open: the session must not end by end of input.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(l) if l.contains(needle) => break,
            _ if Instant::now() > end => {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!(
                    "{ctx}: never saw {needle:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            _ => {}
        }
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).unwrap();
    let end = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            panic!("{ctx}: pyattach did not leave on {sig}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(stdin);
    child.wait().unwrap().code()
}

fn check(py: &Python) {
    for (what, sig) in [
        ("prompt", Signal::SIGTERM),
        ("--run", Signal::SIGHUP),
        ("prompt", Signal::SIGHUP),
        ("--run", Signal::SIGTERM),
    ] {
        let t = Target::run_state(py, "sleep").unwrap();
        let pid = t.pid();
        let ctx = format!("{} {what} {sig}", py.id);
        let (pages, nthreads) = (exec_anon(pid), threads(pid));
        let pid_s = pid.to_string();
        let code =
            "import time\nprint('BLOCKING')\nimport sys; sys.stdout.flush()\ntime.sleep(3600)\n";
        let status = if what == "prompt" {
            leave_by(&[&pid_s], b"print('IN' + 'SIDE')\n", "INSIDE", sig, &ctx)
        } else {
            leave_by(&["--run", code, &pid_s], b"", "BLOCKING", sig, &ctx)
        };
        assert_eq!(status, Some(128 + sig as i32), "{ctx}");
        // The target's end of the session is gone at once, or within the
        // moment its thread takes to notice.
        let end = Instant::now() + Duration::from_secs(10);
        while threads(pid) != nthreads {
            assert!(
                Instant::now() < end,
                "{ctx}: {} threads, {nthreads} before",
                threads(pid)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            exec_anon(pid),
            pages,
            "{ctx}: pyattach's code page is still mapped"
        );
        assert!(t.ticks_on(2), "{ctx}: the target stopped ticking");
    }
}

#[test]
fn a_session_left_by_sigterm_or_sighup_takes_its_pages_back() {
    let mut ran = 0;
    for v in ["2.7", "3.8", "3.12", "3.13"] {
        if let Some(py) = testsupport::python(v) {
            check(&py);
            ran += 1;
        }
    }
    assert!(ran > 0, "no interpreter of the matrix found");
}
