//! Subinterpreters (3.11+): every thread of every interpreter is dumped
//! with its interpreter's id (the main interpreter's first) and the name
//! its own interpreter's `threading` gives it; a thread that runs a
//! subinterpreter shows a stack in each, said so, and with `--native` each
//! interpreter's Python frames merge with their own evaluation loop.

use std::time::{Duration, Instant};

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

fn funcs(t: &Value, kind: &str) -> Vec<String> {
    t["frames"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == kind)
        .map(|f| f["function"].as_str().unwrap().to_string())
        .collect()
}

fn by_name<'a>(d: &'a Value, name: &str, interp: i64) -> &'a Value {
    d["threads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name && t["interpreter_id"] == interp)
        .unwrap_or_else(|| panic!("no thread {name:?} in interpreter {interp}: {d}"))
}

fn check(py: &Python) {
    let ctx = &py.id;
    let t = Target::python(py, "subinterpreters.py", &[]);
    let pid = t.pid().to_string();
    // Interpreter 1's main code reaches its sleep just after READY.
    let end = Instant::now() + Duration::from_secs(20);
    let d = loop {
        let (code, out, err) = run(&["dump", "--json", &pid]);
        assert_eq!(code, 0, "{ctx}: {err}");
        let d: Value = serde_json::from_str(&out).unwrap();
        let settled = d["threads"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| funcs(t, "python").first().map(String::as_str) == Some("in_sub"));
        if settled || Instant::now() > end {
            break d;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let threads = d["threads"].as_array().unwrap();
    let ids: Vec<i64> = threads
        .iter()
        .map(|t| t["interpreter_id"].as_i64().expect("an interpreter id"))
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] <= w[1]),
        "{ctx}: main interpreter first: {ids:?}"
    );
    assert_eq!(threads[0]["is_main"], true, "{ctx}");
    // Names from each interpreter's own threading module.
    let host = by_name(&d, "host", 0);
    by_name(&d, "main-worker", 0);
    let sub_worker = by_name(&d, "sub-worker", 1);
    assert_eq!(funcs(sub_worker, "python")[0], "sub_worker", "{ctx}");
    assert_eq!(funcs(host, "python")[0], "host", "{ctx}");
    let inner = threads
        .iter()
        .find(|t| t["native_id"] == host["native_id"] && t["interpreter_id"] == 1)
        .unwrap_or_else(|| panic!("{ctx}: host's thread has no state in interpreter 1: {d}"));
    assert_eq!(funcs(inner, "python"), ["in_sub", "<module>"], "{ctx}");

    let (code, text, err) = run(&["dump", &pid]);
    assert_eq!(code, 0, "{ctx}: {err}");
    assert!(
        text.contains("\"host\" (interpreter 0, now running interpreter 1)"),
        "{ctx}: {text}"
    );
    assert!(
        text.contains("(interpreter 1, entered from interpreter 0)"),
        "{ctx}: {text}"
    );

    // --native: each state's Python frames, in order, at its own loops.
    let (code, out, err) = run(&["dump", "--native", "--json", &pid]);
    assert_eq!(code, 0, "{ctx}: {err}");
    let n: Value = serde_json::from_str(&out).unwrap();
    for plain in threads {
        let same = n["threads"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| {
                t["native_id"] == plain["native_id"]
                    && t["interpreter_id"] == plain["interpreter_id"]
            })
            .unwrap();
        assert_eq!(
            funcs(same, "python"),
            funcs(plain, "python"),
            "{ctx}: thread {} of interpreter {}",
            plain["native_id"],
            plain["interpreter_id"]
        );
        if py.kind == PythonKind::Pyenv {
            let natives = funcs(same, "native");
            let eval = natives
                .iter()
                .filter(|f| f.starts_with("_PyEval_EvalFrameDefault"));
            assert!(
                eval.count() <= 1,
                "{ctx}: evaluation loops left unmerged: {natives:?}"
            );
        }
    }
    if py.kind == PythonKind::Pyenv {
        let inner = n["threads"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["native_id"] == host["native_id"] && t["interpreter_id"] == 1)
            .unwrap();
        let all: Vec<&str> = inner["frames"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["function"].as_str().unwrap())
            .collect();
        let sleep = all.iter().position(|f| *f == "time_sleep");
        let in_sub = all.iter().position(|f| *f == "in_sub").unwrap();
        assert!(sleep.is_some_and(|s| s < in_sub), "{ctx}: {all:?}");
        assert!(
            !all.contains(&"host"),
            "{ctx}: the outer interpreter's frames: {all:?}"
        );
    }
    assert!(t.is_alive(), "{ctx}");
}

#[test]
fn every_interpreters_threads_are_dumped_named_and_labelled() {
    let mut seen = 0;
    for py in testsupport::pythons()
        .into_iter()
        .chain(testsupport::sid_pythons())
    {
        if py.version < (3, 11, 0) {
            continue;
        }
        check(&py);
        seen += 1;
    }
    assert!(seen > 0, "no interpreter with subinterpreters to test");
}
