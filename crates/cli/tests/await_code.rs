//! `await` at the prompt and in `--run` (3.8+): the code runs as a task on
//! the event loop the target already runs, its output comes here while
//! the application's own output from that loop stays the application's,
//! a timeout (as Ctrl-C) cancels that task alone, and its traceback shows
//! the user's frames only.

use std::time::Duration;

use testsupport::{pyattach_output, Python, PythonKind, Target};

fn run(args: &[&str], stdin: &[u8]) -> (String, String, Option<i32>) {
    let o = pyattach_output(args, stdin, Duration::from_secs(60));
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        o.status.code(),
    )
}

fn check(py: &Python) {
    let ctx = &py.id;
    let t = Target::python(py, "asyncio_app.py", &[]);
    let pid = t.pid().to_string();

    let (out, err, code) = run(&["--run", "r = await value()\nprint('got', r)", &pid], b"");
    assert_eq!((out.as_str(), code), ("got 42\n", Some(0)), "{ctx}: {err}");

    // The prompt shows the awaited value as it shows any other.
    let (out, err, code) = run(&[&pid], b"await value()\nprint('after', _)\n");
    assert_eq!(code, Some(0), "{ctx}: {err}");
    assert!(out.contains("42\nafter 42\n"), "{ctx}: {out}{err}");

    // Output of the awaited code comes here; the loop's own ticks, printed
    // meanwhile in the same thread, stay in the application's output.
    let before = t.output().matches("TICK").count();
    let code_text = "for i in range(5):\n    print('mine', i)\n    await asyncio.sleep(0.06)\n";
    let (out, err, code) = run(&["--run", code_text, &pid], b"");
    assert_eq!(code, Some(0), "{ctx}: {err}");
    assert_eq!(
        out, "mine 0\nmine 1\nmine 2\nmine 3\nmine 4\n",
        "{ctx}: {err}"
    );
    assert!(
        t.ticks_counted(before + 3, Duration::from_secs(20)),
        "{ctx}: the application's ticks stopped"
    );
    assert!(!t.output().contains("mine"), "{ctx}: {}", t.output());

    // Past --timeout: the awaited task is cancelled, the loop runs on.
    let (_, err, code) = run(&["--run", "await slow()", "--timeout", "2", &pid], b"");
    assert_eq!(code, Some(124), "{ctx}: {err}");
    let (out, err, _) = run(&["--run", "print(len(asyncio.all_tasks(loop)))", &pid], b"");
    assert_eq!(out, "0\n", "{ctx}: a task was left: {err}");

    // A traceback shows the code's frames, not the machinery's.
    let (_, err, code) = run(&["--run", "await asyncio.sleep(0)\n1/0", &pid], b"");
    assert_eq!(code, Some(8), "{ctx}: {err}");
    assert!(err.contains("ZeroDivisionError"), "{ctx}: {err}");
    assert!(err.contains("<pyattach-run>\", line 2"), "{ctx}: {err}");
    for noise in ["concurrent", "_pyattach_task", "<pyattach>"] {
        assert!(!err.contains(noise), "{ctx}: {noise} in {err}");
    }
    let before = t.output().matches("TICK").count();
    assert!(
        t.ticks_counted(before + 3, Duration::from_secs(20)),
        "{ctx}: the application's ticks stopped"
    );
}

/// Every 3.8+ interpreter of the matrix, Debian sid's 3.13–3.15 (in
/// their root) included.
fn await_pythons() -> Vec<Python> {
    testsupport::pythons()
        .into_iter()
        .chain(testsupport::sid_pythons())
        .filter(|p| p.kind != PythonKind::Embedded && p.version >= (3, 8, 0))
        .collect()
}

#[test]
fn awaited_code_runs_on_the_targets_own_loop() {
    let pys = await_pythons();
    assert!(!pys.is_empty(), "no Python 3.8+ in the matrix");
    for py in &pys {
        check(py);
    }
}

#[test]
fn several_loops_are_named_and_no_loop_is_said() {
    let Some(py) = testsupport::python("3.12") else {
        testsupport::note("no pyenv 3.12");
        return;
    };
    let t = Target::python(&py, "asyncio_app.py", &["loops=2"]);
    let (out, err, code) = run(
        &["--run", "print(await value())", &t.pid().to_string()],
        b"",
    );
    assert_eq!((out.as_str(), code), ("42\n", Some(0)), "{err}");
    assert!(
        err.contains(&format!(
            "awaiting on the event loop of thread {} \"MainThread\"; loops also run in threads ",
            t.pid()
        )) && err.contains("\"second-loop\""),
        "{err}"
    );

    let t = Target::run_state(&py, "sleep").unwrap();
    let (_, err, code) = run(&["--run", "await value()", &t.pid().to_string()], b"");
    assert_eq!(code, Some(8), "{err}");
    assert!(err.contains("none is"), "{err}");
}
