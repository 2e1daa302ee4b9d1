//! Processes that forked: `pyattach dump` names each thread by what the
//! kernel says (its thread pointer, the `pthread_t`), not by a thread
//! state's stale `native_thread_id`, and shows the thread states a fork
//! copied from the parent as stale. Real targets: a daemon forked from a
//! worker thread (2.7, 3.12), a child forked through libc's `fork()` as
//! uWSGI's master forks (3.11, 3.12), and a uWSGI worker (Debian's
//! `uwsgi-plugin-python3`), each dumped frozen, with `--native`, and with
//! `--nonblocking` (no registers: the tid glibc keeps decides).

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use testsupport::{pyattach_bin, Python, Target};

fn dump(args: &[&str]) -> (String, String) {
    let out = Command::new(pyattach_bin())
        .arg("dump")
        .args(args)
        .output()
        .expect("run pyattach");
    let text = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert_eq!(out.status.code(), Some(0), "dump {args:?}: {}", text.1);
    text
}

/// `forked.py MODE` under `py`: (the target, the child's pid).
fn forked(py: &Python, mode: &str) -> (Target, i32) {
    let t = Target::python(py, "forked.py", &[mode]);
    let child = t
        .ready_line
        .split_whitespace()
        .nth(2)
        .and_then(|p| p.parse().ok())
        .expect("READY PARENT CHILD");
    (t, child)
}

/// The child's only live thread is itself, named and described by the
/// kernel, with the frames of the code it runs; every other thread state
/// is marked stale, and `--native` merges its Python frames.
fn check_child(child: i32, live_fn: &str, name: &str, stale_expected: bool) {
    let pid = child.to_string();
    for flags in [&[][..], &["--nonblocking"][..]] {
        let mut args = vec!["--json"];
        args.extend_from_slice(flags);
        args.push(&pid);
        let (out, _) = dump(&args);
        let j: Value = serde_json::from_str(&out).expect("JSON");
        let threads = j["threads"].as_array().unwrap();
        let live: Vec<&Value> = threads.iter().filter(|t| t["stale"] == false).collect();
        assert_eq!(live.len(), 1, "{flags:?}: one live thread in\n{out}");
        let t = live[0];
        assert_eq!(t["native_id"], child, "{flags:?}: the kernel's tid\n{out}");
        assert_eq!(t["ns_id"], Value::Null, "{out}");
        assert_eq!(t["is_main"], true, "{out}");
        assert_eq!(t["name"], name, "{out}");
        assert!(t["state"]["letter"].is_string(), "a state: {out}");
        assert_eq!(t["frames"][0]["function"], live_fn, "{out}");
        let stale: Vec<&Value> = threads.iter().filter(|t| t["stale"] == true).collect();
        assert_eq!(
            !stale.is_empty(),
            stale_expected,
            "{flags:?}: stale states\n{out}"
        );
        for s in stale {
            assert_eq!(s["native_id"], Value::Null, "{out}");
            assert_eq!(s["is_main"], false, "{out}");
        }
    }
    let (text, _) = dump(&["--native", &pid]);
    let head = text
        .lines()
        .find(|l| l.starts_with("Thread "))
        .unwrap_or_else(|| panic!("no thread in\n{text}"));
    assert!(
        head.starts_with(&format!("Thread {child} ")) && head.contains("(main)"),
        "{head}\n{text}"
    );
    assert!(head.contains("[sleeping"), "a state: {head}");
    assert!(
        text.contains("time_sleep") || text.contains("floatsleep"),
        "native frames:\n{text}"
    );
    assert!(text.contains(&format!("{live_fn} (")), "{text}");
    assert_eq!(
        text.contains("Stale thread state"),
        stale_expected,
        "{text}"
    );
}

#[test]
fn a_daemon_forked_from_a_worker_thread() {
    for v in ["2.7", "3.12"] {
        let Some(py) = testsupport::python(v) else {
            testsupport::note(&format!("skipping {v}: pyenv {v} is missing"));
            continue;
        };
        let (t, child) = forked(&py, "thread");
        let _kill = testsupport::KillPid(child);
        // 2.7 keeps the parent's thread states after a fork; 3.7+ drops
        // them in the child.
        check_child(child, "daemon_loop", "forker", v == "2.7");
        assert!(t.is_alive());
    }
}

#[test]
fn a_child_forked_without_cpythons_after_fork_code() {
    let pys = ["3.11", "3.12"].map(testsupport::python);
    let pys = pys
        .into_iter()
        .flatten()
        .chain(testsupport::debian_python());
    for py in pys {
        let (t, child) = forked(&py, "libc");
        let _kill = testsupport::KillPid(child);
        // The thread state still says the parent's pid.
        check_child(child, "daemon_loop", "MainThread", false);
        let (out, _) = dump(&["--json", &child.to_string()]);
        assert!(
            !out.contains(&format!("\"native_id\": {}", t.pid())),
            "{out}"
        );
    }
}

/// A uWSGI master with one worker, its app loaded in the master before
/// the fork (uWSGI's default): the worker's thread state says the
/// master's pid.
#[test]
fn a_uwsgi_worker() {
    let plugin = std::path::Path::new("/usr/lib/uwsgi/plugins/python3_plugin.so");
    let Some(uwsgi) = ["/usr/bin/uwsgi-core", "/usr/bin/uwsgi"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
    else {
        return testsupport::note("skipping: uwsgi is not installed (uwsgi-core)");
    };
    if !plugin.exists() {
        return testsupport::note("skipping: uwsgi-plugin-python3 is not installed");
    }
    let mut cmd = Command::new(uwsgi);
    cmd.args(["--plugin", "python3", "--http-socket", "127.0.0.1:0"])
        .args(["--master", "--workers", "1", "--die-on-term", "--wsgi-file"])
        .arg(testsupport::fixture("py/uwsgi_app.py"))
        .stderr(std::process::Stdio::null());
    let master = Target::spawn(cmd);
    let end = Instant::now() + Duration::from_secs(30);
    let worker = loop {
        let kids = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", master.pid()))
            .unwrap_or_default();
        if let Some(w) = kids.split_whitespace().next().and_then(|w| w.parse().ok()) {
            break w;
        }
        assert!(Instant::now() < end, "no uWSGI worker");
        std::thread::sleep(Duration::from_millis(20));
    };
    let _kill = testsupport::KillPid(worker);
    // The worker parks in epoll_wait in uWSGI's C loop: no Python frames.
    let pid = worker.to_string();
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let (out, _) = dump(&["--json", &pid]);
        let j: Value = serde_json::from_str(&out).expect("JSON");
        let t = &j["threads"][0];
        if t["state"]["syscall"] == "epoll_wait" || Instant::now() > end {
            assert_eq!(t["native_id"], worker, "{out}");
            assert_eq!(t["is_main"], true, "{out}");
            assert_eq!(t["state"]["syscall"], "epoll_wait", "{out}");
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (text, _) = dump(&["--native", &pid]);
    assert!(text.contains(&format!("Thread {worker} ")), "{text}");
    assert!(
        text.contains("(main)") && text.contains("uwsgi_worker_run"),
        "{text}"
    );
    assert!(master.is_alive());
}
