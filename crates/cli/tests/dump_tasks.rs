//! `pyattach dump --tasks` on real asyncio targets (3.7–3.15): what it
//! reads from memory equals what the target says of itself
//! (`asyncio.all_tasks()`, each task's `get_stack()` and its whole
//! coroutine stack through `cr_await`), written by the fixture before its
//! loop gets stuck in a CPU-bound callback; gather, TaskGroup, a task
//! awaiting another, a deadlock and two loops in two threads are named as
//! such; versions without a reader say so with status 3.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::Value;
use testsupport::{pyattach_output, Python, PythonKind, Target};

fn run(args: &[&str]) -> (i32, String, String) {
    let out = pyattach_output(args, b"", Duration::from_secs(60));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The addresses in a JSON list, as a set.
fn set(v: &Value) -> HashSet<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

/// `[file, line, function]` of each frame.
fn frames(v: &Value) -> Vec<(String, u64, String)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|f| {
            if let Some(a) = f.as_array() {
                (
                    a[0].as_str().unwrap().to_string(),
                    a[1].as_u64().unwrap(),
                    a[2].as_str().unwrap().to_string(),
                )
            } else {
                (
                    f["filename"].as_str().unwrap_or("").to_string(),
                    f["line"].as_u64().unwrap_or(0),
                    f["function"].as_str().unwrap().to_string(),
                )
            }
        })
        .collect()
}

fn check(py: &Python) {
    let ctx = &py.id;
    let report = std::env::temp_dir().join(format!(
        "pyattach-tasks-{}-{}.jsonl",
        std::process::id(),
        py.id
    ));
    // A chrooted sid Python writes it under the root.
    let host_report = match (py.id.starts_with("sid"), testsupport::sid_root()) {
        (true, Some(root)) => root.join(report.strip_prefix("/").unwrap()),
        _ => report.clone(),
    };
    let _ = std::fs::remove_file(&host_report);
    let t = Target::python(py, "tasks.py", &[report.to_str().unwrap()]);
    let pid = t.pid().to_string();
    let (code, out, err) = run(&["dump", "--tasks", "--json", &pid]);
    assert_eq!(code, 0, "{ctx}: {err}");
    let j: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{ctx}: {e}: {out}"));
    let a = &j["asyncio"];
    assert!(a["warnings"].as_array().unwrap().is_empty(), "{ctx}: {a:#}");
    let mine: HashMap<u64, (&Value, &Value)> = a["loops"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|lp| {
            lp["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |t| (t["address"].as_u64().unwrap(), (t, lp)))
        })
        .collect();

    let text = std::fs::read_to_string(&host_report).expect("the fixture's report");
    let _ = std::fs::remove_file(&host_report);
    // 3.14+ unlink a native task from its thread's list once it is done
    // (all_tasks() never shows those either): the kept done and cancelled
    // ones are not read there.
    let unlinks = py.version >= (3, 14, 0);
    let theirs: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| !unlinks || r["state"] == "pending")
        .collect();
    let mut by_label = HashMap::new();
    for r in &theirs {
        let addr = r["address"].as_u64().unwrap();
        let (task, lp) = mine
            .get(&addr)
            .unwrap_or_else(|| panic!("{ctx}: task {} not in the dump: {a:#}", r["label"]));
        let what = format!("{ctx}: task {}", r["label"]);
        assert_eq!(task["state"], r["state"], "{what}");
        assert_eq!(task["name"], r["name"], "{what}");
        assert_eq!(lp["address"], r["loop"], "{what}");
        let stack = frames(&task["coroutine"]);
        let own = frames(&r["get_stack"]);
        assert_eq!(task["running"], r["running"], "{what}");
        if r["running"] == true {
            // Running: its coroutine's frame (the innermost of
            // get_stack(), which goes on to the thread's outer frames),
            // then what that calls, from the thread's stack.
            assert_eq!(stack.first(), frames(&r["stack"]).first(), "{what}");
            assert_eq!(stack.first(), own.last(), "{what}: get_stack()");
            assert_eq!(stack.last().unwrap().2, "spin_in_task", "{what}");
            assert_eq!(lp["current_task"], r["address"], "{what}");
        } else {
            assert_eq!(stack, frames(&r["stack"]), "{what}");
            assert_eq!(stack.first(), own.first(), "{what}: get_stack()");
        }
        if !r["thread"].is_null() {
            assert_eq!(lp["thread"], r["thread"], "{what}");
        }
        if let Some(l) = r["label"].as_str() {
            by_label.insert(l.to_string(), addr);
        }
    }
    // Every task read is one the target reported (all_tasks() and the
    // done ones it keeps): nothing invented, nothing missed.
    let reported: HashSet<u64> = theirs
        .iter()
        .map(|r| r["address"].as_u64().unwrap())
        .collect();
    assert_eq!(
        mine.keys().copied().collect::<HashSet<_>>(),
        reported,
        "{ctx}"
    );

    let task = |l: &str| mine[&by_label[l]].0;
    let addr = |l: &str| Value::from(by_label[l]);
    let main = task("main");
    assert_eq!(main["awaits"]["kind"], "gather", "{ctx}: {main:#}");
    assert_eq!(
        set(&main["awaits"]["tasks"]),
        HashSet::from([by_label["gather-1"], by_label["gather-2"]]),
        "{ctx}"
    );
    let g1 = task("gather-1");
    assert_eq!(g1["awaits"]["kind"], "task", "{ctx}");
    assert_eq!(g1["awaits"]["task"], addr("leaf"), "{ctx}");
    assert_eq!(task("leaf")["awaited_by"][0], addr("gather-1"), "{ctx}");
    assert_eq!(task("gather-2")["awaits"]["kind"], "future", "{ctx}");
    if !unlinks {
        assert_eq!(task("finished")["state"], "done", "{ctx}");
        assert_eq!(task("cancelled")["state"], "cancelled", "{ctx}");
    }
    if py.version >= (3, 11, 0) {
        let g = task("grouper");
        assert_eq!(g["awaits"]["kind"], "task_group", "{ctx}: {g:#}");
        assert_eq!(
            set(&g["awaits"]["tasks"]),
            HashSet::from([by_label["tg-1"], by_label["tg-2"]]),
            "{ctx}"
        );
    }
    let deadlocks = a["deadlocks"].as_array().unwrap();
    assert_eq!(deadlocks.len(), 1, "{ctx}: {deadlocks:?}");
    assert_eq!(
        set(&deadlocks[0]["tasks"]),
        HashSet::from([by_label["dl-a"], by_label["dl-b"]]),
        "{ctx}"
    );

    // Three loops: the main thread's, stuck in the callback, loop-b's, and
    // loop-c's, running its task.
    let threads = j["threads"].as_array().unwrap();
    let tid_named = |n: &str| {
        threads
            .iter()
            .find(|th| th["name"] == n)
            .map(|th| th["native_id"].clone())
            .unwrap_or_else(|| panic!("{ctx}: no thread {n}"))
    };
    let main_loop = mine[&by_label["main"]].1;
    let b_loop = mine[&by_label["b-main"]].1;
    assert_ne!(main_loop["address"], b_loop["address"], "{ctx}");
    assert_eq!(main_loop["thread"], Value::from(t.pid()), "{ctx}");
    assert_eq!(b_loop["thread"], tid_named("loop-b"), "{ctx}");
    assert_eq!(
        mine[&by_label["busy"]].1["thread"],
        tid_named("loop-c"),
        "{ctx}"
    );
    let main_thread = threads.iter().find(|th| th["is_main"] == true).unwrap();
    assert_eq!(main_thread["frames"][0]["function"], "spin", "{ctx}");

    // The text view: the tree, the deadlock, the stuck loop's thread.
    let (code, out, err) = run(&["dump", "--tasks", &pid]);
    assert_eq!(code, 0, "{ctx}: {err}");
    assert!(out.contains("Deadlock: Task "), "{ctx}: {out}");
    // A task's name is the target's: shown escaped, never sent raw.
    assert!(
        !out.contains('\x1b') && !out.contains('\x07'),
        "{ctx}: {out:?}"
    );
    if py.version >= (3, 8, 0) {
        assert!(
            out.contains("Task \"evil\\x1b]0;pwned\\x07\\x1b[2J\""),
            "{ctx}: {out}"
        );
    }
    assert!(out.contains("now in spin ("), "{ctx}: {out}");
    assert!(out.contains("run by thread"), "{ctx}: {out}");
    if py.version >= (3, 8, 0) {
        assert!(
            out.contains("awaits gather(Task \"gather-1\", Task \"gather-2\")")
                || out.contains("awaits gather(Task \"gather-2\", Task \"gather-1\")"),
            "{ctx}: {out}"
        );
        // gather-1 is not the last of Task-1's: a bar goes on past it.
        assert!(
            out.contains("   │  └─ Task \"leaf\" [pending]"),
            "{ctx}: {out}"
        );
    }
    assert!(t.is_alive(), "{ctx}: the target died");
}

#[test]
fn tasks_equal_what_asyncio_reports() {
    let pythons: Vec<Python> = testsupport::pythons()
        .into_iter()
        .chain(testsupport::sid_pythons())
        .filter(|p| {
            p.kind != PythonKind::Embedded && p.version >= (3, 7, 0) && p.version < (3, 16, 0)
        })
        .collect();
    assert!(!pythons.is_empty(), "no Python 3.7-3.15 to test");
    for py in &pythons {
        check(py);
        eprintln!("dump --tasks on {}: as the target reports", py.id);
    }
}

#[test]
fn versions_without_a_reader_say_so() {
    for v in ["2.7", "3.6"] {
        let Some(py) = testsupport::python(v) else {
            testsupport::note(&format!("pyenv {v} is missing"));
            continue;
        };
        let t = Target::python(&py, "sleeper.py", &[]);
        let (code, out, err) = run(&["dump", "--tasks", &t.pid().to_string()]);
        assert_eq!(code, 3, "{v}: {out}{err}");
        assert!(
            err.contains("asyncio tasks are read on 3.7 to 3.15"),
            "{v}: {err}"
        );
        assert!(t.is_alive(), "{v}");
    }
}

/// pstree's tree as (task name → its frames as `qualname file:line`, and
/// its parent task's name).
type Tree = HashMap<String, (Vec<String>, Option<String>)>;

fn parse_pstree(text: &str) -> Tree {
    let mut out: Tree = HashMap::new();
    // (depth, name) of the task nodes on the current path.
    let mut path: Vec<(usize, String)> = Vec::new();
    for line in text.lines() {
        let Some(depth) = line.find(|c: char| c.is_alphanumeric() || c == '(' || c == '_') else {
            continue;
        };
        let item = line[depth..].trim();
        if let Some(name) = item.strip_prefix("(T) ") {
            while path.last().is_some_and(|(d, _)| *d >= depth) {
                path.pop();
            }
            let parent = path.last().map(|(_, n)| n.clone());
            out.insert(name.to_string(), (Vec::new(), parent));
            path.push((depth, name.to_string()));
        } else if let Some((_, task)) = path.last() {
            out.get_mut(task).unwrap().0.push(item.to_string());
        }
    }
    out
}

/// On 3.14 and 3.15, the tree `python -m asyncio pstree` draws (without
/// the deadlocked pair, which it refuses to draw) has the same tasks, each
/// with the same frames and under the same parent, as `--tasks`.
#[test]
fn tasks_equal_python_m_asyncio_pstree() {
    let Some(root) = testsupport::sid_root() else {
        return testsupport::note("the sid root with Python 3.14 and 3.15 is missing");
    };
    let sid = testsupport::sid_pythons(); // mirrors the fixtures into the root
    for py in sid.iter().filter(|p| p.version >= (3, 14, 0)) {
        let ctx = &py.id;
        let v = format!("{}.{}", py.version.0, py.version.1);
        let fixture = testsupport::fixture("py/tasks.py");
        let report = format!("/tmp/pyattach-pstree-{}-{ctx}.jsonl", std::process::id());
        // The target and pstree share a mount namespace with /proc mounted
        // in the root (pstree reads /proc/PID/maps); nothing stays mounted.
        let mut cmd = std::process::Command::new("unshare");
        cmd.args(["-m", "--propagation", "private", "sh", "-c"]).arg(format!(
            "mount -t proc proc '{r}/proc' && exec chroot '{r}' /usr/bin/python{v} -u '{f}' '{report}' no-deadlock",
            r = root.display(),
            f = fixture.display()
        ));
        let t = Target::spawn(cmd);
        let pid = t.pid().to_string();
        let (code, out, err) = run(&["dump", "--tasks", "--json", &pid]);
        assert_eq!(code, 0, "{ctx}: {err}");
        let j: Value = serde_json::from_str(&out).unwrap();
        let tree = std::process::Command::new("timeout")
            .args(["60", "nsenter", "-t", &pid, "-m", "chroot"])
            .arg(&root)
            .args([
                &format!("/usr/bin/python{v}"),
                "-m",
                "asyncio",
                "pstree",
                &pid,
            ])
            .output()
            .expect("run pstree");
        let text = String::from_utf8_lossy(&tree.stdout).into_owned();
        assert!(
            tree.status.success(),
            "{ctx}: {text}{}",
            String::from_utf8_lossy(&tree.stderr)
        );
        let theirs = parse_pstree(&text);
        for n in [
            "Task-1", "gather-1", "gather-2", "leaf", "grouper", "tg-1", "tg-2",
        ] {
            assert!(theirs.contains_key(n), "{ctx}: pstree has no {n}: {text}");
        }
        let tasks: Vec<&Value> = j["asyncio"]["loops"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|lp| lp["tasks"].as_array().unwrap())
            .collect();
        let name_of: HashMap<u64, String> = tasks
            .iter()
            .map(|t| {
                (
                    t["address"].as_u64().unwrap(),
                    t["name"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        for (name, (frames, parent)) in &theirs {
            let mine = tasks
                .iter()
                .find(|t| t["name"] == name.as_str())
                .unwrap_or_else(|| panic!("{ctx}: no task {name} in the dump"));
            let my_frames: Vec<String> = mine["coroutine"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| {
                    format!(
                        "{} {}:{}",
                        f["qualname"].as_str().unwrap(),
                        f["filename"].as_str().unwrap(),
                        f["line"]
                    )
                })
                .collect();
            if mine["running"] == true {
                // pstree stops at the coroutine; --tasks goes on with the
                // functions it runs, from its thread's stack.
                assert!(
                    my_frames.starts_with(frames),
                    "{ctx}: frames of {name}: {my_frames:?} {frames:?}"
                );
                assert!(my_frames.len() > frames.len(), "{ctx}: {name}");
            } else {
                assert_eq!(&my_frames, frames, "{ctx}: frames of {name}");
            }
            let my_parents: Vec<&String> = mine["awaited_by"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| &name_of[&a.as_u64().unwrap()])
                .collect();
            match parent {
                Some(p) => assert_eq!(my_parents, vec![p], "{ctx}: parent of {name}"),
                None => assert!(my_parents.is_empty(), "{ctx}: {name} has {my_parents:?}"),
            }
        }
        assert!(t.is_alive(), "{ctx}");
        let _ = std::fs::remove_file(root.join(report.trim_start_matches('/')));
        eprintln!("dump --tasks on {ctx}: as python -m asyncio pstree draws it");
    }
}
