//! `pyattach dump` end to end: the binary's human and JSON output on real
//! targets, colour rules, and exit codes.

use std::process::Command;

use serde_json::Value;
use testsupport::{pyattach_bin, Target};

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(pyattach_bin());
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run pyattach");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn json_is_versioned_and_complete() {
    for v in ["2.7", "3.12"] {
        let Some(py) = testsupport::python(v) else {
            testsupport::note(&format!("pyenv {v} is missing"));
            continue;
        };
        let t = Target::python(&py, "dump_target.py", &["mixed"]);
        let pid = t.pid().to_string();
        let (code, out, err) = run(&["dump", "--json", &pid], &[]);
        assert_eq!(code, 0, "{err}");
        let j: Value = serde_json::from_str(&out).expect("JSON");
        assert_eq!(j["format_version"], 1);
        assert_eq!(j["pid"], t.pid());
        assert_eq!(j["frozen"], true);
        assert!(j["pause_us"].as_u64().is_some());
        let threads = j["threads"].as_array().unwrap();
        assert_eq!(threads[0]["is_main"], true);
        assert_eq!(threads[0]["frames"][0]["function"], "main_park");
        assert_eq!(threads[0]["frames"][0]["kind"], "python");
        assert!(threads
            .iter()
            .any(|th| th["frames"][0]["function"] == "level3"
                && th["frames"][2]["function"] == "level1"));
        assert!(t.is_alive());
    }
}

#[test]
fn human_output_marks_the_gil_holder_and_is_plain_when_piped() {
    let Some(py) = testsupport::python("3.11") else {
        return testsupport::note("pyenv 3.11 is missing");
    };
    let t = Target::python(&py, "dump_target.py", &["gil"]);
    let pid = t.pid().to_string();
    // The holder takes the GIL just after READY.
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let (code, out, err) = loop {
        let r = run(&["dump", &pid], &[]);
        let held = r.1.contains("holds the GIL") && r.1.contains("waiting for the GIL");
        if held || std::time::Instant::now() > end {
            break r;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains('\x1b'), "no colour when piped:\n{out}");
    let holder = out
        .lines()
        .find(|l| l.contains("holds the GIL"))
        .unwrap_or_else(|| panic!("no holder in\n{out}"));
    assert!(holder.starts_with("Thread "), "{holder}");
    assert!(
        out.contains("hold_gil (") && out.contains("dump_target.py:"),
        "{out}"
    );
    assert!(out.contains("waiting for the GIL"), "{out}");
    assert!(out.contains("paused"), "{out}");
    // --nonblocking says so.
    let (code, out, _) = run(&["dump", "--nonblocking", &pid], &[("NO_COLOR", "1")]);
    assert_eq!(code, 0);
    assert!(out.contains("not paused"), "{out}");
    assert!(t.is_alive());
}

#[test]
fn bad_pids_fail_cleanly() {
    let (code, _, err) = run(&["dump", "999999999"], &[]);
    assert_eq!(code, 4, "no such process: {err}");
    assert!(err.contains("999999999"), "{err}");
    // A process that is not Python.
    let mut sleep = Command::new("sleep").arg("30").spawn().unwrap();
    let (code, _, err) = run(&["dump", &sleep.id().to_string()], &[]);
    let _ = sleep.kill();
    let _ = sleep.wait();
    assert_eq!(code, 3, "not CPython: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// pyattach killed (SIGKILL, SIGINT, SIGTERM) at random moments of a
/// frozen dump: the target never stays stopped and keeps working.
#[test]
fn killing_pyattach_mid_dump_never_leaves_the_target_stopped() {
    let Some(py) = testsupport::python("3.12") else {
        return testsupport::note("pyenv 3.12 is missing");
    };
    let t = Target::python(&py, "dump_target.py", &["threads", "100"]);
    let pid = t.pid().to_string();
    let sigs = ["KILL", "INT", "TERM"];
    for i in 0..30u64 {
        let mut child = Command::new(pyattach_bin())
            .args(["dump", "--native", &pid])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Spread the kills over discovery, the freeze and the release.
        std::thread::sleep(std::time::Duration::from_micros(500 + (i * 1_237) % 25_000));
        // kill(1) on our own child, by pid.
        let _ = Command::new("kill")
            .args([
                &format!("-{}", sigs[i as usize % 3]),
                &child.id().to_string(),
            ])
            .status();
        let _ = child.wait();
        // Give the kernel a moment to finish an implicit detach.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        loop {
            let stopped = t
                .thread_states()
                .into_iter()
                .filter(|(_, s)| matches!(s, 't' | 'T'))
                .count();
            if stopped == 0 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "round {i}: {stopped} threads left stopped"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(t.is_alive(), "round {i}: the target died");
    }
    // And a normal dump afterwards still works and sees every thread.
    let (code, out, err) = run(&["dump", "--json", &pid], &[]);
    assert_eq!(code, 0, "{err}");
    let j: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["threads"].as_array().unwrap().len(), 101);
}

#[test]
fn condense_groups_identical_idle_threads() {
    let Some(py) = testsupport::python("3.10") else {
        return testsupport::note("pyenv 3.10 is missing");
    };
    let t = Target::python(&py, "dump_target.py", &["threads", "20"]);
    let pid = t.pid().to_string();
    let (code, out, err) = run(&["dump", "--condense", &pid], &[]);
    assert_eq!(code, 0, "{err}");
    let headers = out.lines().filter(|l| l.starts_with("Thread ")).count();
    assert_eq!(headers, 2, "main + one worker group:\n{out}");
    assert!(
        out.contains("(and 19 more threads with this stack"),
        "{out}"
    );
    let (_, full, _) = run(&["dump", &pid], &[]);
    assert_eq!(
        full.lines().filter(|l| l.starts_with("Thread ")).count(),
        21
    );
}
