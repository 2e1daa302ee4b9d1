//! The prompt with piped input (`… | pyattach PID`), on every interpreter
//! of the matrix: lines run as CPython's prompt runs them, a line that is
//! not UTF-8 gets a message and the session goes on, the stacks shown on
//! connect name each thread by the tid `--thread` takes, and the session
//! leaves no interactive marker in the target (`sys.ps1`/`ps2`,
//! `sys.last_*`, `builtins._`, hooks, linecache), also where the target
//! has no `code` (or `codeop`) module, as a frozen app may not.

use std::process::Output;
use std::time::Duration;

use testsupport::{pythons, Python, Target};

/// Runs pyattach with `args` and `stdin`; kills it (by pid) if it hangs.
fn pyattach(args: &[&str], stdin: &[u8]) -> Output {
    testsupport::pyattach_output(args, stdin, Duration::from_secs(60))
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// `--run CODE`, which must succeed; its stdout.
fn run(t: &Target, code: &str) -> String {
    let o = pyattach(&["--run", code, &t.pid().to_string()], b"");
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "--run {code:?}: {out}{err}");
    out
}

/// What a prompt could leave behind, as the target sees it.
const SNAPSHOT: &str = "import sys, linecache
try:
    import builtins
except ImportError:
    import __builtin__ as builtins
print('SNAP %r' % ((sorted(dir(sys)), builtins.__dict__.get('_', 'MISSING'),
      sys.displayhook is sys.__displayhook__, sys.excepthook is sys.__excepthook__,
      sorted(k for k in linecache.cache if k.startswith('<'))),))
";

/// Finds each of `wanted` in `hay`, in order.
fn in_order(hay: &str, wanted: &[&str]) -> bool {
    let mut at = 0;
    for w in wanted {
        match hay[at..].find(w) {
            Some(i) => at += i + w.len(),
            None => return false,
        }
    }
    true
}

fn session(py: &Python, t: &Target, input: &[u8], wanted: &[&str]) -> String {
    let o = pyattach(&[&t.pid().to_string()], input);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{}: {out}\n{err}", py.id);
    assert!(
        in_order(&out, wanted),
        "{}: wanted {wanted:?} in order\nstdout: {out}\nstderr: {err}",
        py.id
    );
    err
}

#[test]
fn piped_prompt_runs_like_cpythons_and_leaves_no_marker() {
    for py in pythons() {
        let Some(t) = Target::run_state(&py, "sleep") else {
            continue;
        };
        // The application's own `_` (gettext.install puts one there).
        run(
            &t,
            "try:\n    import builtins\nexcept ImportError:\n    import __builtin__ as builtins\nbuiltins._ = 'app-underscore'\n",
        );
        let before = run(&t, SNAPSHOT);
        let err = session(
            &py,
            &t,
            b"print(1)\n\xff\nprint(2)\nimport sys\nprint('ps1 %s' % hasattr(sys, 'ps1'))\n\
              x = 41\nx + 1\n1/0\ndef f():\n    return 5\n\nprint('f %d' % f())\n\
              print('_ %r' % (_,))\n",
            &["1\n", "2\n", "ps1 False\n", "42\n", "f 5\n", "_ 42\n"],
        );
        assert!(
            in_order(&err, &["not valid UTF-8", "ZeroDivisionError"]),
            "{}: {err}",
            py.id
        );
        // The stacks on connect: each thread by its tid (the main
        // thread's is the pid) and name; none of pyattach's own.
        assert!(
            err.contains(&format!("Thread {} \"MainThread\"", t.pid())),
            "{}: {err}",
            py.id
        );
        assert!(err.contains("ticker"), "{}: {err}", py.id);
        assert!(!err.contains("<pyattach>"), "{}: {err}", py.id);
        assert_eq!(
            run(&t, SNAPSHOT),
            before,
            "{}: the prompt left a mark",
            py.id
        );

        // A frozen app without `code`, then without `codeop` too: the
        // same rule for "more input?". And no `_` of the application's:
        // none after either.
        run(
            &t,
            "import sys\nsys.modules['code'] = None\ntry:\n    import builtins\nexcept ImportError:\n    import __builtin__ as builtins\ndel builtins._\n",
        );
        let before = run(&t, SNAPSHOT);
        assert!(before.contains("'MISSING'"), "{}: {before}", py.id);
        session(&py, &t, b"print(6 * 7)\n", &["42\n"]);
        run(&t, "import sys\nsys.modules['codeop'] = None\n");
        session(
            &py,
            &t,
            b"def g():\n    return 7\n\nprint('g %d' % g())\nfor i in range(2):\n    print('i %d' % i)\n\n\
              if 1:\n    x = 1\n\n  y = 2\nprint('after')\n(1 +\n 2)\n",
            &["g 7\n", "i 0\n", "i 1\n", "after\n", "3\n"],
        );
        run(
            &t,
            "import sys\ndel sys.modules['code']\ndel sys.modules['codeop']\n",
        );
        assert_eq!(
            run(&t, SNAPSHOT),
            before,
            "{}: the prompt left a mark",
            py.id
        );
        assert!(t.ticks_on(2), "{}: the target stopped ticking", py.id);
    }
}

#[test]
fn random_bytes_are_never_a_silent_exit() {
    let Some(py) = testsupport::python("3.12") else {
        return;
    };
    let Some(t) = Target::run_state(&py, "sleep") else {
        return;
    };
    // 200 KB of noise (a fixed LCG: the same bytes every run).
    let mut x: u32 = 12345;
    let noise: Vec<u8> = (0..200_000)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 16) as u8
        })
        .collect();
    let o = pyattach(&[&t.pid().to_string()], &noise);
    let (out, err) = text(&o);
    assert!(err.contains("not valid UTF-8"), "{out}\n{err}");
    assert!(o.status.code().is_some(), "{err}");
    // The target is fine and a new session works.
    session(&py, &t, b"print('still %s' % 'here')\n", &["still here\n"]);
    assert!(t.ticks_on(2));
}

#[test]
fn a_session_whose_target_exits_says_why_and_fails() {
    let Some(py) = testsupport::python("3.12") else {
        return;
    };
    let Some(t) = Target::run_state(&py, "sleep") else {
        return;
    };
    let o = pyattach(&[&t.pid().to_string()], b"import os; os._exit(0)\n");
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(9), "{out}\n{err}");
    assert!(
        err.contains(&format!("the target process {} exited", t.pid())),
        "{err}"
    );
}
