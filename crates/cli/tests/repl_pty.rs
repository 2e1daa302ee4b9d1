//! The REPL and pdb on a terminal: pyattach runs under `script`, which
//! gives it a pty; the test types keys (Tab, Ctrl-C, Ctrl-D included) and
//! reads the screen.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::pty::Pty;
use testsupport::Target;

fn ticks_on(t: &Target) {
    assert!(t.ticks_on(2), "the target stopped ticking");
}

#[test]
fn repl_on_a_terminal_with_completion_and_ctrl_c() {
    for v in ["2.7", "3.12", "3.13"] {
        let Some(py) = testsupport::python(v) else {
            continue;
        };
        let t = Target::run_state(&py, "sleep").unwrap();
        let Some(mut pty) = Pty::spawn(&[&t.pid().to_string()]) else {
            return;
        };
        pty.expect("ticker"); // every thread's stack on connect
        pty.expect(">>> ");
        pty.send("x = 6 * 7\r");
        pty.expect(">>> ");
        pty.send("print(x)\r");
        pty.expect("42");
        pty.expect(">>> ");
        // Tab: the target completes `coun` to `counter`.
        pty.send("coun\t");
        pty.expect("counter");
        pty.send("[0] > 0\r");
        pty.expect("True");
        pty.expect(">>> ");
        // Ctrl-C in the middle of an endless loop typed at the prompt.
        pty.send("while True: pass\r\r");
        std::thread::sleep(Duration::from_millis(300));
        pty.send("\x03");
        pty.expect("KeyboardInterrupt");
        pty.expect(">>> ");
        // And in the middle of a call blocked in the kernel.
        pty.send("import time; time.sleep(3600)\r");
        std::thread::sleep(Duration::from_millis(500));
        pty.send("\x03");
        pty.expect("KeyboardInterrupt");
        pty.expect(">>> ");
        pty.send("print('still %s' % 'here')\r");
        pty.expect("still here");
        pty.expect(">>> ");
        pty.send("\x04");
        assert_eq!(pty.wait_exit(), Some(0), "{v}: {}", pty.rest());
        assert!(t.is_alive());
        ticks_on(&t);
        assert!(!t.output().contains("still here"));
    }
}

#[test]
fn pdb_on_a_terminal_stops_in_the_target_frame() {
    for v in ["2.7", "3.12"] {
        let Some(py) = testsupport::python(v) else {
            continue;
        };
        let t = Target::run_state(&py, "sleep").unwrap();
        let code = if py.version.0 == 2 {
            "import pdb; pdb.set_trace()"
        } else {
            "breakpoint()"
        };
        let Some(mut pty) = Pty::spawn(&["--run", code, &t.pid().to_string()]) else {
            return;
        };
        pty.expect("(Pdb) ");
        pty.send("where\r");
        // The target's own frames (its ticker thread or main loop, whichever
        // got there first) are on the stack below ours.
        pty.expect("run_states.py");
        pty.expect("(Pdb) ");
        pty.send("p counter[0] > 0\r");
        pty.expect("True");
        pty.expect("(Pdb) ");
        pty.send("c\r");
        assert_eq!(pty.wait_exit(), Some(0), "{v}: {}", pty.rest());
        assert!(t.is_alive());
        ticks_on(&t);
    }
}

/// 30 lines as people paste them: several statements, blocks ended by
/// blank lines, one blank line inside a function (which ends it at a
/// prompt: the next line is an IndentationError), a bracket open across
/// lines. What each prints is built at run time (`'OUT' + ':…'`), so
/// the echo of the typed text never matches it.
const PASTE: &[&str] = &[
    "a = 1",
    "b = 2",
    "print('OUT' + ':sum %d' % (a + b))",
    "def f(x):",
    "    y = x * 2",
    "",
    "    return y + 1",
    "",
    "print('OUT' + ':f %r' % (f(3),))",
    "class C:",
    "    def m(self):",
    "        return 'm'",
    "",
    "print('OUT' + ':C %s' % C().m())",
    "for i in range(3):",
    "    print('OUT' + ':i %d' % i)",
    "",
    "if a:",
    "    print('OUT' + ':yes')",
    "else:",
    "    print('OUT' + ':no')",
    "",
    "total = 0",
    "for i in range(4): total += i",
    "",
    "print('OUT' + ':total %d' % total)",
    "s = 'x'; t = 'y'; print('OUT' + ':st %s' % (s + t))",
    "x = [1,",
    "     2]",
    "print('OUT' + ':len %d' % len(x))",
];

/// What CPython's own prompt (`code.InteractiveConsole`, fed line by line)
/// prints for PASTE under `py`: the OUT lines in order, and the last line
/// of each error.
fn reference(py: &testsupport::Python) -> (Vec<String>, Vec<String>) {
    // The embedding program runs only a script: its libpython's own
    // interpreter stands in.
    let exe = match py.kind {
        testsupport::PythonKind::Embedded => {
            testsupport::debian_python()
                .expect("the embedding fixture needs Debian's python3.11")
                .exe
        }
        _ => py.exe.clone(),
    };
    let mut child = Command::new(exe)
        .args([
            "-c",
            "import code, sys\nc = code.InteractiveConsole()\nfor l in sys.stdin.read().split('\\n'):\n    c.push(l)\n",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the reference prompt");
    let mut input = PASTE.join("\n");
    input.push_str("\n\n");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let out: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| l.starts_with("OUT:"))
        .map(str::to_string)
        .collect();
    let errs: Vec<String> = String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter(|l| l.contains("Error"))
        .map(str::to_string)
        .collect();
    assert!(out.len() >= 8 && !errs.is_empty(), "{}: {o:?}", py.id);
    (out, errs)
}

#[test]
fn typeahead_and_pastes_run_line_by_line_as_cpythons_prompt() {
    for py in testsupport::pythons()
        .into_iter()
        .chain(testsupport::sid_pythons())
    {
        let v = &py.id;
        let (want, errs) = reference(&py);
        let t = Target::run_state(&py, "sleep").unwrap();
        let Some(mut pty) = Pty::spawn(&[&t.pid().to_string()]) else {
            return;
        };
        pty.expect(">>> ");
        // Three lines typed faster than they run: all run, in order.
        pty.send("y = 40\ry += 2\rprint('got %d' % y)\r");
        pty.expect("got 42");
        pty.expect(">>> ");
        // Typed while a statement still runs: queued, run after it.
        pty.send("import time; time.sleep(1)\rprint('after' + 'sleep')\r");
        pty.expect("aftersleep");
        pty.expect(">>> ");
        // A paste as a terminal without bracketed paste sends it, then one
        // with the markers every terminal sends once rustyline asks for
        // them: the same lines, the same result as CPython's prompt.
        let mut lines = PASTE.join("\r");
        lines.push_str("\r\r");
        let bracketed = format!("\x1b[200~{}\r\x1b[201~\r", PASTE.join("\r"));
        for (how, keys) in [("plain", lines), ("bracketed", bracketed)] {
            pty.send(&keys);
            for w in &want {
                pty.expect(w);
            }
            let shown = pty.shown();
            for e in &errs {
                assert!(shown.contains(e.as_str()), "{v} {how}: no {e:?}\n{shown}");
            }
            pty.expect(">>> ");
            pty.send("print('end' + ' of %s' % 'paste')\r");
            pty.expect("end of paste");
            pty.expect(">>> ");
        }
        // Double Tab lists the candidates, as readline does.
        pty.send("import os\r");
        pty.expect(">>> ");
        pty.send("os.pat\t\t");
        pty.expect("os.pathsep");
        pty.send("\x15print('tab' + 'ok')\r");
        pty.expect("tabok");
        // A byte that is not UTF-8: a message, and the session goes on.
        pty.expect(">>> ");
        pty.send_bytes(b"\xff\r");
        pty.expect("not valid UTF-8");
        pty.send("print('utf' + 'ok')\r");
        pty.expect("utfok");
        pty.expect(">>> ");
        pty.send("\x04");
        assert_eq!(pty.wait_exit(), Some(0), "{v}: {}", pty.rest());
        assert!(t.is_alive());
        ticks_on(&t);
        assert!(!t.output().contains("OUT:"), "{v}: the target's stdout");
    }
}
