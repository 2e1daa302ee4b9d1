//! Helpers shared by the cli's tests: running code in a target, and a
//! terminal (`pty`).
#![allow(dead_code)]

pub mod pty;

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use testsupport::{pyattach_bin, Python, PythonKind, Target};

/// Starts pyattach with `args`, stdout and stderr piped, `stdin` written
/// to it (then closed).
pub fn spawn(args: &[&str], stdin: Option<&str>) -> Child {
    let mut child = Command::new(pyattach_bin())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .spawn()
        .expect("spawn pyattach");
    if let Some(text) = stdin {
        use std::io::Write;
        let mut si = child.stdin.take().unwrap();
        si.write_all(text.as_bytes()).unwrap();
    }
    child
}

/// Waits for a pyattach started by [`spawn`]; kills it (by its pid) and
/// fails if it takes more than 60 s.
pub fn finish(mut child: Child, what: &str) -> Output {
    let end = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "pyattach {what} hung: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.wait_with_output().unwrap()
}

/// Runs pyattach with `args` to its end.
pub fn pyattach(args: &[&str], stdin: Option<&str>) -> Output {
    finish(spawn(args, stdin), &format!("{args:?}"))
}

/// stdout and stderr of `out`, as text.
pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// tests/fixtures/py/first_law.py in `case` under `py`, with `env`.
pub fn case(py: &Python, case: &str, env: &[(&str, &str)]) -> Target {
    let mut cmd = Command::new(&py.exe);
    if py.kind != PythonKind::Embedded {
        cmd.arg("-u");
    }
    cmd.arg(testsupport::fixture("py/first_law.py"))
        .env("PYATTACH_CASE", case)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .envs(env.iter().copied());
    Target::spawn(cmd)
}

/// The port in a ready line `READY <pid> <port>`.
pub fn port(t: &Target) -> u16 {
    t.ready_line
        .split_whitespace()
        .nth(2)
        .and_then(|p| p.parse().ok())
        .expect("READY <pid> <port>")
}

/// How many descriptors process `pid` has open.
pub fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}
