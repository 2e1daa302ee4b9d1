//! A thread's id given where a process id is expected: `info TID`, `dump
//! TID` and `--run CODE TID` say whose thread it is and what to run
//! instead, exit with status 2 (usage), and leave the target untouched
//! (no mapping added, no tracer, every thread running on). `0` and
//! negative numbers are usage errors too, never pids.

use std::time::Duration;

use testsupport::{pyattach_output, Target};

fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = pyattach_output(args, b"", Duration::from_secs(60));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_tid_given_as_the_pid_is_named_and_nothing_is_touched() {
    for v in ["2.7", "3.12"] {
        let Some(py) = testsupport::python(v) else {
            testsupport::note(&format!("skipping {v}: pyenv {v} is missing"));
            continue;
        };
        let t = Target::python(&py, "dump_target.py", &["threads", "2"]);
        let pid = t.pid();
        let tid = testsupport::thread_states(pid)
            .into_iter()
            .map(|(tid, _)| tid)
            .find(|&tid| tid != pid)
            .expect("a worker thread");
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
        let (p, s) = (pid.to_string(), tid.to_string());
        let said = format!("{tid} is a thread of process {pid}, not a process");
        for (args, advice) in [
            (
                vec!["--run", "x = 1", &s],
                format!("use `--thread {tid} {pid}`"),
            ),
            (vec![&s], format!("use `--thread {tid} {pid}`")),
            (vec!["dump", &s], format!("use `pyattach dump {pid}`")),
            (
                vec!["dump", "--json", &p, &s],
                format!("use `pyattach dump {pid}`"),
            ),
            (vec!["info", &s], format!("use `pyattach info {pid}`")),
        ] {
            let (code, err) = run(&args);
            assert_eq!(code, Some(2), "{args:?}: {err}");
            assert!(
                err.contains(&said) && err.contains(&advice),
                "{args:?}: {err}"
            );
        }
        // Nothing was done to the target: the same mappings, no tracer,
        // no thread left stopped.
        let after = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
        assert_eq!(maps, after);
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        assert!(status.contains("TracerPid:\t0"), "{status}");
        assert!(
            t.thread_states().iter().all(|&(_, s)| s != 't' && s != 'T'),
            "{:?}",
            t.thread_states()
        );
        // The process's own pid still works.
        let (code, err) = run(&["dump", &p]);
        assert_eq!(code, Some(0), "{err}");
        assert!(t.is_alive());
    }
}

#[test]
fn zero_and_negative_pids_are_usage_errors() {
    for args in [
        &["0"][..],
        &["--", "-5"],
        &["dump", "0"],
        &["dump", "--", "-1"],
        &["info", "0"],
        &["--run", "pass", "0"],
    ] {
        let (code, err) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(
            err.contains("a process id is a positive number"),
            "{args:?}: {err}"
        );
    }
}
