//! Ctrl-C sent to code blocked in a system call, at the prompt and in
//! pdb, leaves no KeyboardInterrupt pending behind it: not for the session's
//! thread, nor as the interpreter's flag that makes every thread look for
//! one. A flag left set once made a main thread that runs under a trace
//! function of its own (coverage, a profiler) spin on 3.11 at its next
//! call, the GIL held, for good.

mod common;

use std::time::Duration;

use common::pty::Pty;
use testsupport::{PythonKind, Target};

/// The target: pdb_target.py, its main thread traced by the application.
fn traced_targets() -> Vec<(String, Target)> {
    let mut out = Vec::new();
    for py in testsupport::pythons() {
        if py.kind == PythonKind::Embedded {
            testsupport::note("the embedding fixture passes no arguments (traced)");
            continue;
        }
        out.push((
            py.id.clone(),
            Target::python(&py, "pdb_target.py", &["traced"]),
        ));
    }
    out
}

/// Lets the line editor give the terminal back before the Ctrl-C (one it
/// reads itself cancels the next line instead).
fn settle() {
    std::thread::sleep(Duration::from_millis(1000));
}

#[test]
fn ctrl_c_at_the_prompt_leaves_the_traced_main_thread_running() {
    for (id, t) in traced_targets() {
        let Some(mut pty) = Pty::spawn(&[&t.pid().to_string()]) else {
            return;
        };
        pty.expect(">>> ");
        settle();
        pty.send("import time; time.sleep(60)\r");
        settle();
        pty.send("\x03");
        pty.expect("KeyboardInterrupt");
        pty.expect(">>> ");
        pty.send("\x04");
        assert_eq!(pty.wait_exit(), Some(0), "{id}: {}", pty.rest());
        assert!(t.ticks_on(3), "{id}: the main thread stopped");
    }
}

#[test]
fn ctrl_c_in_a_pdb_command_leaves_the_traced_main_thread_running() {
    for (id, t) in traced_targets() {
        eprintln!("pdb in {id}");
        // pdb in the worker thread: the main thread keeps its own tracer.
        let worker = t
            .thread_states()
            .into_iter()
            .map(|(tid, _)| tid)
            .find(|&tid| tid != t.pid())
            .expect("the worker thread");
        let (pid, worker) = (t.pid().to_string(), worker.to_string());
        let Some(mut pty) = Pty::spawn(&["--pdb", "--thread", &worker, &pid]) else {
            return;
        };
        pty.expect("(Pdb) ");
        pty.expect("(Pdb) ");
        pty.send("p __import__('time').sleep(60)\r");
        settle();
        pty.send("\x03");
        pty.expect("KeyboardInterrupt");
        pty.expect("(Pdb) ");
        pty.send("q\r");
        assert_eq!(pty.wait_exit(), Some(0), "{id}: {}", pty.rest());
        assert!(t.ticks_on(3), "{id}: the main thread stopped");
    }
}
