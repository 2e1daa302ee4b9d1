//! Process trees: `pyattach dump PID PID…` and `dump --subprocesses` (a
//! process and its Python descendants, each dumped and labelled; processes
//! that are not Python are skipped when found, reported when given), and
//! `--run CODE --subprocesses` (the code run in each, its output labelled,
//! the status the first failure's).

use std::time::Duration;

use testsupport::{pyattach_output, Target};

/// Kills a tree by pid when the test ends, parent first (a gunicorn master
/// would respawn a worker killed before it), children after (they also
/// die with their parent, which the `Target` kills and reaps later).
struct Children(Vec<i32>);

impl Drop for Children {
    fn drop(&mut self) {
        for &pid in &self.0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// The tree fixture under `py`: the target, its two workers, its helper.
fn tree(py: &testsupport::Python) -> (Target, Vec<i32>, i32, Children) {
    let t = Target::python(py, "tree.py", &[]);
    let pids: Vec<i32> = t
        .ready_line
        .split_whitespace()
        .skip(1)
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 4, "{}", t.ready_line);
    let guard = Children(pids.clone());
    (t, pids[1..3].to_vec(), pids[3], guard)
}

fn run(args: &[&str]) -> (String, String, i32) {
    let out = pyattach_output(args, b"", Duration::from_secs(120));
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

fn check(py: &testsupport::Python) {
    let (t, workers, helper, _guard) = tree(py);
    let master = t.pid().to_string();
    let ctx = &py.id;

    let (out, err, code) = run(&["dump", "--subprocesses", "--json", &master]);
    assert_eq!(code, 0, "{ctx}: {err}\n{out}");
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    let list = list.as_array().expect("a list");
    let pids: Vec<i64> = list.iter().map(|e| e["pid"].as_i64().unwrap()).collect();
    let mut want: Vec<i64> = vec![t.pid() as i64];
    want.extend(workers.iter().map(|&w| w as i64));
    assert_eq!(
        pids, want,
        "{ctx}: the master, then its Python children, not the helper {helper}"
    );
    for (i, e) in list.iter().enumerate() {
        let funcs: Vec<&str> = e["threads"][0]["frames"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["function"].as_str().unwrap())
            .collect();
        let role = if i == 0 { "master_loop" } else { "worker_loop" };
        assert!(funcs.contains(&role), "{ctx}: {} {funcs:?}", pids[i]);
        let parent = if i == 0 { None } else { Some(t.pid() as i64) };
        assert_eq!(e["parent_pid"].as_i64(), parent, "{ctx}");
        assert!(
            e["command_line"].as_str().unwrap().contains("tree.py"),
            "{ctx}: {e}"
        );
    }

    // Text: each process labelled.
    let (out, err, code) = run(&["dump", "--subprocesses", &master]);
    assert_eq!(code, 0, "{ctx}: {err}");
    assert_eq!(out.matches("Command line: ").count(), 3, "{ctx}: {out}");
    assert_eq!(
        out.matches(&format!("(descendant of {master})")).count(),
        2,
        "{ctx}: {out}"
    );

    // Several pids given: a worker and the helper (not Python): the worker
    // is dumped, the helper reported, the status says so.
    let w = workers[0].to_string();
    let (out, err, code) = run(&["dump", &w, &helper.to_string()]);
    assert_eq!(code, 3, "{ctx}: {err}\n{out}");
    assert!(out.contains("worker_loop"), "{ctx}: {out}");
    assert!(
        err.contains(&format!("cannot dump process {helper}")) && err.contains("not CPython"),
        "{ctx}: {err}"
    );
    assert!(t.is_alive(), "{ctx}: the master died");
}

#[test]
fn a_tree_of_python_processes_is_dumped_each_labelled() {
    let mut ran = 0;
    for v in ["2.7", "3.6", "3.12", "3.13"] {
        if let Some(py) = testsupport::python(v) {
            check(&py);
            ran += 1;
        }
    }
    // Debian sid's builds, in their root (seen through /proc/PID/root).
    for py in testsupport::sid_pythons() {
        check(&py);
    }
    assert!(ran > 0, "no interpreter of the matrix found");
}

/// A gunicorn master and its four sync workers: `--subprocesses` finds
/// each worker, under the master.
#[test]
fn gunicorn_workers_are_found_under_their_master() {
    let Some(py) = testsupport::python("3.12") else {
        testsupport::note("no pyenv 3.12");
        return;
    };
    let has = std::process::Command::new(&py.exe)
        .args(["-c", "import gunicorn"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has {
        testsupport::note("3.12 lacks gunicorn (run scripts/setup)");
        return;
    }
    let t = Target::python(&py, "tree_gunicorn.py", &[]);
    let end = std::time::Instant::now() + Duration::from_secs(60);
    let workers = loop {
        let w: Vec<i32> = t
            .output()
            .lines()
            .filter_map(|l| l.strip_prefix("WORKER ")?.parse().ok())
            .collect();
        if w.len() == 4 {
            break w;
        }
        assert!(std::time::Instant::now() < end, "workers: {}", t.output());
        std::thread::sleep(Duration::from_millis(20));
    };
    let _guard = Children([t.pid()].into_iter().chain(workers.clone()).collect());
    let master = t.pid().to_string();
    let (out, err, code) = run(&["dump", "--subprocesses", "--json", &master]);
    assert_eq!(code, 0, "{err}\n{out}");
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut found: Vec<i32> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["parent_pid"].as_i64() == Some(t.pid() as i64))
        .map(|e| e["pid"].as_i64().unwrap() as i32)
        .collect();
    found.sort_unstable();
    let mut want = workers.clone();
    want.sort_unstable();
    assert_eq!(found, want, "{out}");
    assert_eq!(list[0]["pid"].as_i64(), Some(t.pid() as i64));
}

fn check_run(py: &testsupport::Python) {
    let (t, workers, helper, _guard) = tree(py);
    let master = t.pid();
    let ctx = &py.id;
    // Workers raise; the master prints. Every process gets its turn.
    let code = format!(
        "import os\nif os.getpid() != {master}:\n    raise ValueError('in %d' % os.getpid())\nprint('ran in %d' % os.getpid())\n"
    );
    let (stdout, stderr, status) = run(&["--run", &code, "--subprocesses", &master.to_string()]);
    assert_eq!(status, 8, "{ctx}: {stdout}{stderr}");
    assert!(
        stdout.starts_with(&format!("==> process {master}: ")),
        "{ctx}: {stdout}"
    );
    assert!(
        stdout.contains(&format!("ran in {master}\n")),
        "{ctx}: {stdout}"
    );
    for w in &workers {
        assert!(
            stdout.contains(&format!("==> process {w} (descendant of {master}): ")),
            "{ctx}: {stdout}"
        );
        assert!(
            stderr.contains(&format!("ValueError: in {w}")),
            "{ctx}: {stderr}"
        );
    }
    assert_eq!(stdout.matches("==> process").count(), 3, "{ctx}: {stdout}");
    assert!(t.is_alive(), "{ctx}: the master died");
    for &w in workers.iter().chain([&helper]) {
        assert!(
            std::path::Path::new(&format!("/proc/{w}")).exists(),
            "{ctx}: child {w} died"
        );
    }
}

#[test]
fn code_runs_in_each_python_process_of_a_tree() {
    let mut ran = 0;
    for v in ["2.7", "3.12"] {
        if let Some(py) = testsupport::python(v) {
            check_run(&py);
            ran += 1;
        }
    }
    assert!(ran > 0, "no interpreter of the matrix found");
}

#[test]
fn pdb_across_a_tree_is_a_usage_error() {
    let (_, err, status) = run(&["--run", "breakpoint()", "--subprocesses", "1"]);
    assert_eq!(status, 2, "{err}");
    assert!(err.contains("one process at a time"), "{err}");
}
