//! Threads with small stacks (`threading.stack_size(32 * 1024)`, 64 KiB
//! ones deep in their stack) never run the bootstrap, which would overflow
//! them and crash the process: `--run` gets in through another way (here
//! the new-thread fallback: the main thread never reaches a safe point),
//! the target survives and every thread still works.

use std::process::Command;
use std::time::Duration;

use testsupport::{Python, PythonKind, Target};

fn target(py: &Python, kib: u32, depth: u32) -> Target {
    let spec = format!("{kib} {depth}");
    let mut cmd = Command::new(&py.exe);
    if py.kind != PythonKind::Embedded {
        cmd.arg("-u");
    }
    cmd.arg(testsupport::fixture("py/small_stacks.py"))
        .args(spec.split(' '))
        .env("PYATTACH_STACK", &spec)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    Target::spawn(cmd)
}

/// `pyattach --timeout 1 -v --run CODE PID`: status, stdout, stderr.
fn run(pid: i32, code: &str) -> (Option<i32>, String, String) {
    let args = ["--timeout", "1", "-v", "--run", code, &pid.to_string()];
    let out = testsupport::pyattach_output(&args, b"", Duration::from_secs(60));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The small threads' wait counts, asked from the target.
fn counts(pid: i32, ctx: &str) -> Vec<u64> {
    let (code, out, err) = run(pid, "print(' '.join(map(str, counts)))");
    assert_eq!(code, Some(0), "{ctx}: {err}");
    out.split_whitespace().map(|n| n.parse().unwrap()).collect()
}

#[test]
fn run_never_uses_a_thread_without_stack_room() {
    for py in testsupport::pythons() {
        for (kib, depth) in [(32, 8), (64, 30)] {
            let ctx = format!("{} {kib} KiB at depth {depth}", py.id);
            let t = target(&py, kib, depth);
            for i in 0..2 {
                let (code, _, err) = run(t.pid(), "pass");
                assert!(t.is_alive(), "{ctx}: the target died (run {i}): {err}");
                assert_eq!(code, Some(0), "{ctx}: run {i}: {err}");
                assert!(
                    err.contains("too little stack left"),
                    "{ctx}: -v does not say which threads were passed over: {err}"
                );
            }
            let before = counts(t.pid(), &ctx);
            std::thread::sleep(Duration::from_millis(300));
            let after = counts(t.pid(), &ctx);
            assert!(t.is_alive(), "{ctx}: the target died");
            assert_eq!(before.len(), 3, "{ctx}");
            for (i, (b, a)) in before.iter().zip(&after).enumerate() {
                assert!(a > b, "{ctx}: thread {i} stopped waiting ({b} -> {a})");
            }
        }
    }
}

/// Asked for one of those threads (`--thread`), pyattach does not run the
/// code there and says why.
#[test]
fn a_thread_asked_for_without_stack_room_is_refused_with_the_reason() {
    let Some(py) = testsupport::python("3.12") else {
        return;
    };
    let t = target(&py, 32, 8);
    let tid = std::fs::read_dir(format!("/proc/{}/task", t.pid()))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&tid| tid != t.pid())
        .min()
        .unwrap();
    let args = [
        "--timeout",
        "1",
        "--thread",
        &tid.to_string(),
        "--run",
        "pass",
        &t.pid().to_string(),
    ];
    let out = testsupport::pyattach_output(&args, b"", Duration::from_secs(60));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("thread {tid} has less than 256 KiB of stack left")),
        "{err}"
    );
    assert!(t.is_alive(), "the target died");
    let before = counts(t.pid(), "after --thread");
    std::thread::sleep(Duration::from_millis(300));
    let after = counts(t.pid(), "after --thread");
    assert!(
        before.iter().zip(&after).all(|(b, a)| a > b),
        "{before:?} -> {after:?}"
    );
}
