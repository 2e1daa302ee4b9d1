//! The REPL and pdb on a terminal: pyattach runs under `script`, which
//! gives it a pty; the test types keys (Tab, Ctrl-C, Ctrl-D included) and
//! reads the screen.

mod common;

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
