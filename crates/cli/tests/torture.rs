//! The torture suite (`scripts/torture`) in its reduced form, as CI runs it:
//! the binary under test against the HTTP counter target, under load, killed
//! at random moments, with signals streaming in, with the target forking,
//! exec'ing and exiting, with hostile code, a reused pid, and another user
//! trying to reach the session's channel (the last two need root; without it
//! the script prints its own skip note).
//!
//! Losses the script lists as KNOWN (reported, fixes pending elsewhere) are
//! printed but do not fail this test (`--allow-known`); every other loss
//! does. The full counts run by hand: `scripts/torture`.

use std::process::Command;
use std::sync::Mutex;

use testsupport::{pyattach_bin, repo_root};

/// The host interpreter that runs the script (not the target): it needs 3.9+.
fn host_python() -> Option<String> {
    let ok = |exe: &str| {
        Command::new(exe)
            .args(["-c", "import sys; sys.exit(sys.version_info < (3, 9))"])
            .status()
            .is_ok_and(|s| s.success())
    };
    ["python3", "/usr/bin/python3"]
        .into_iter()
        .find(|e| ok(e))
        .map(str::to_string)
}

/// One section at a time: they measure stalls and CPU use of the target,
/// which the others' load on two cores would blur.
static SERIAL: Mutex<()> = Mutex::new(());

fn torture(target: &testsupport::Python, sections: &str) {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(host) = host_python() else {
        testsupport::note("no python3 (3.9+) to run scripts/torture");
        return;
    };
    let out = Command::new(host)
        .arg(repo_root().join("scripts/torture"))
        .args([
            "--quick",
            "--allow-known",
            "--seed",
            "1",
            "--only",
            sections,
        ])
        .arg("--python")
        .arg(&target.exe)
        .arg("--bin")
        .arg(pyattach_bin())
        .output()
        .expect("run scripts/torture");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}{stderr}");
    let summary = stdout
        .lines()
        .rev()
        .find(|l| l.contains(" passed, "))
        .unwrap_or("");
    assert!(
        out.status.success() && summary.contains(" 0 failed"),
        "torture ({}, {sections}) lost something: {summary}\n{stdout}{stderr}",
        target.id
    );
}

fn py312() -> Option<testsupport::Python> {
    let py = testsupport::python("3.12");
    if py.is_none() {
        testsupport::note("pyenv 3.12 is missing");
    }
    py
}

#[test]
fn torture_load_kill_signals() {
    if let Some(py) = py312() {
        torture(&py, "load,kill,signals");
    }
}

#[test]
fn torture_lifecycle_pidreuse_security() {
    if let Some(py) = py312() {
        torture(&py, "lifecycle,pidreuse,security");
    }
}

#[test]
fn torture_hostile() {
    if let Some(py) = py312() {
        torture(&py, "hostile");
    }
}

/// The oldest interpreter takes the other bootstrap paths (Python 2 streams,
/// `thread`): load and kills against it too.
#[test]
fn torture_load_kill_py27() {
    match testsupport::python("2.7") {
        Some(py) => torture(&py, "load,kill"),
        None => testsupport::note("pyenv 2.7 is missing"),
    }
}
