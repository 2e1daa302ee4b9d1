//! `pyattach dump` and `--run` on a target whose threads poll the waits a
//! ptrace stop would make fail (`signal.sigtimedwait`, `epoll.poll`): no
//! result of theirs may change, on any interpreter (issue: 2.7's
//! `epoll.poll` raised IOError EINTR at every dump; 3.x's `sigtimedwait`
//! returned an unfilled siginfo).

use std::time::Duration;

use testsupport::{pythons, Target};

const ROUNDS: usize = 30;

/// Runs pyattach with `args` to its end; returns its status and stderr.
fn pyattach(args: &[&str]) -> (Option<i32>, String) {
    let out = testsupport::pyattach_output(args, b"", Duration::from_secs(60));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The calls the loops made, from the last `LOOPS n` line.
fn calls(t: &Target) -> u64 {
    t.output()
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("LOOPS "))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn dumps_and_runs_change_no_wait_result() {
    let mut changed = Vec::new();
    for py in pythons() {
        let t = Target::python(&py, "waits.py", &[]);
        let pid = t.pid().to_string();
        for _ in 0..ROUNDS {
            let (code, err) = pyattach(&["dump", &pid]);
            assert_eq!(code, Some(0), "{}: dump failed: {err}", py.id);
            let (code, err) = pyattach(&["--run", "pass", &pid]);
            assert_eq!(code, Some(0), "{}: --run failed: {err}", py.id);
        }
        assert!(t.ticks_on(2), "{}: the target stopped ticking", py.id);
        let before = calls(&t);
        assert!(t.ticks_on(2), "{}: the target stopped ticking", py.id);
        assert!(calls(&t) > before, "{}: the waits stopped", py.id);
        let out = t.output();
        let deviations: Vec<&str> = out.lines().filter(|l| l.starts_with("DEVIATION")).collect();
        eprintln!("{}: {} deviations", py.id, deviations.len());
        if !deviations.is_empty() {
            changed.push(format!(
                "{}: {} results changed, e.g. {:?}",
                py.id,
                deviations.len(),
                &deviations[..deviations.len().min(2)]
            ));
        }
    }
    assert!(changed.is_empty(), "{changed:#?}");
}
