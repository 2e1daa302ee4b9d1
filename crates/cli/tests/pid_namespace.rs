//! A target in a pid namespace of its own (`unshare --pid --fork
//! --mount-proc`, as a container), seen from the host: `dump` shows each
//! thread by the host's tid (with the namespace's beside it), name, state
//! and native frames; `--thread` takes the host's tid (as `ps -L` here
//! shows it) and the namespace's. Needs root (unshare); skipped with a
//! note otherwise.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use testsupport::{pyattach_output, Python, Target};

/// `dump_target.py threads 2` under `py` in a new pid namespace: the
/// target (unshare, which kills the namespace's init, the Python process,
/// when it dies), the Python process's host pid, and a guard for it.
fn in_namespace(py: &Python) -> Option<(Target, i32, testsupport::KillPid)> {
    if !testsupport::is_root() {
        testsupport::note("skipping: a new pid namespace needs root");
        return None;
    }
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--mount-proc", "--kill-child"])
        .arg(&py.exe)
        .arg("-u")
        .arg(testsupport::fixture("py/dump_target.py"))
        .args(["threads", "2"])
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let t = Target::spawn(cmd);
    // The target sees itself as pid 1; the host sees unshare's child.
    assert_eq!(t.ready_line, "READY 1", "{}", t.ready_line);
    let kids = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", t.pid())).unwrap();
    let pid: i32 = kids.split_whitespace().next().unwrap().parse().unwrap();
    Some((t, pid, testsupport::KillPid(pid)))
}

/// `(host tid, namespace tid)` of each thread of `pid`, main first.
fn tids(pid: i32) -> Vec<(i32, i32)> {
    let mut v: Vec<(i32, i32)> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .map(|e| {
            let tid: i32 = e.file_name().to_str().unwrap().parse().unwrap();
            let st = std::fs::read_to_string(e.path().join("status")).unwrap();
            let ns = st
                .lines()
                .find_map(|l| l.strip_prefix("NSpid:"))
                .and_then(|v| v.split_whitespace().last())
                .unwrap()
                .parse()
                .unwrap();
            (tid, ns)
        })
        .collect();
    v.sort_by_key(|&(t, _)| (t != pid, t));
    v
}

#[test]
fn dump_shows_host_tids_names_states_and_native_frames() {
    for v in ["2.7", "3.12"] {
        let Some(py) = testsupport::python(v) else {
            testsupport::note(&format!("skipping {v}: pyenv {v} is missing"));
            continue;
        };
        let Some((t, pid, _guard)) = in_namespace(&py) else {
            return;
        };
        let ids = tids(pid);
        assert_eq!(ids[0].1, 1, "{ids:?}");
        for flags in [&[][..], &["--nonblocking"][..]] {
            let mut args = vec!["dump", "--json"];
            args.extend_from_slice(flags);
            let p = pid.to_string();
            args.push(&p);
            let out = pyattach_output(&args, b"", Duration::from_secs(60));
            let text = String::from_utf8_lossy(&out.stdout);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let j: Value = serde_json::from_str(&text).unwrap();
            let threads = j["threads"].as_array().unwrap();
            assert_eq!(threads.len(), 3, "{text}");
            for th in threads {
                let host = th["native_id"].as_i64().unwrap_or(-1) as i32;
                let ns = ids.iter().find(|&&(h, _)| h == host).map(|&(_, n)| n);
                assert!(
                    ns.is_some(),
                    "{flags:?}: {host} is no host tid of {ids:?}\n{text}"
                );
                assert_eq!(th["ns_id"], ns.unwrap(), "{text}");
                assert!(th["state"]["letter"].is_string(), "{text}");
                assert!(th["name"].is_string(), "{text}");
            }
            assert_eq!(threads[0]["native_id"], pid, "{text}");
            assert_eq!(threads[0]["is_main"], true, "{text}");
            assert_eq!(threads[0]["name"], "MainThread", "{text}");
        }
        let out = pyattach_output(
            &["dump", "--native", &pid.to_string()],
            b"",
            Duration::from_secs(60),
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!(
                "Thread {pid} (tid 1 in its pid namespace) \"MainThread\" (main) ["
            )),
            "{text}"
        );
        // info lists both numbers of each thread.
        let out = pyattach_output(&["info", &pid.to_string()], b"", Duration::from_secs(60));
        let info = String::from_utf8_lossy(&out.stdout);
        assert!(info.contains("ns tid"), "{info}");
        assert!(
            info.lines().any(|l| l
                .split_whitespace()
                .take(2)
                .eq([pid.to_string(), "1".into()])),
            "{info}"
        );
        assert!(
            text.contains("time_sleep") || text.contains("floatsleep"),
            "native frames:\n{text}"
        );
        assert!(t.is_alive());
    }
}

#[test]
fn thread_takes_the_host_tid_and_the_namespace_tid() {
    let Some(py) = testsupport::python("3.12") else {
        return testsupport::note("skipping: pyenv 3.12 is missing");
    };
    let Some((t, pid, _guard)) = in_namespace(&py) else {
        return;
    };
    let (host, ns) = tids(pid)[1];
    assert_ne!(host, ns);
    let code = "import threading; print(threading.current_thread().name)";
    let p = pid.to_string();
    let mut names = Vec::new();
    for id in [host, ns] {
        let id = id.to_string();
        let out = pyattach_output(
            &["-v", "--thread", &id, "--run", code, &p],
            b"",
            Duration::from_secs(60),
        );
        let (so, se) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert_eq!(out.status.code(), Some(0), "--thread {id}: {se}");
        // -v names the thread by the host's tid.
        assert!(
            se.contains(&format!(
                "the code ran in thread {host}, the thread that was caught"
            )),
            "{se}"
        );
        names.push(so.trim().to_string());
    }
    assert!(names[0].starts_with("worker-"), "{names:?}");
    assert_eq!(names[0], names[1]);
    // Neither a host tid of another process's nor a namespace tid it has.
    let out = pyattach_output(
        &["--thread", "99", "--run", "pass", &p],
        b"",
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("process {pid} has no thread 99")),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(t.is_alive());
}
