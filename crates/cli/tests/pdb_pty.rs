//! pdb as people drive it, on a terminal (pyattach under `script`), on every
//! interpreter of the matrix, with the target's own stdin at `/dev/null` and
//! at a terminal: every stop comes to pyattach's terminal, and whatever ends
//! the session (q, Ctrl-D, c, pyattach SIGKILLed at a prompt or under c),
//! the target runs on with no trace function in any thread and nothing of
//! pdb in its own output.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::pty::Pty;
use testsupport::{pyattach_bin, Python, PythonKind, Target};

/// The target's stdin.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Stdin {
    DevNull,
    /// A pty whose other end stays open and silent: a read of it would
    /// block for good, so a pdb that used it would hang the test.
    Terminal,
}

fn target(py: &Python, stdin: Stdin) -> Option<Target> {
    if stdin == Stdin::DevNull {
        return Some(Target::python(py, "pdb_target.py", &[]));
    }
    let wrapper = std::path::Path::new("/usr/bin/python3");
    if !wrapper.exists() {
        testsupport::note("/usr/bin/python3 (to give the target a terminal) is missing");
        return None;
    }
    let mut cmd = Command::new(wrapper);
    cmd.args([
        "-c",
        "import os, pty, sys\n\
         m, s = pty.openpty()\n\
         os.dup2(s, 0)\n\
         os.set_inheritable(m, True)\n\
         os.execv(sys.argv[1], sys.argv[1:])\n",
    ]);
    cmd.arg(&py.exe);
    if py.kind != PythonKind::Embedded {
        cmd.arg("-u");
    }
    cmd.arg(testsupport::fixture("py/pdb_target.py"))
        .env("PYTHONDONTWRITEBYTECODE", "1");
    Some(Target::spawn(cmd))
}

/// Run in the target with `--run`: how many threads (other than the one
/// running it, whose own trace function it reports too) have a trace
/// function, how many frames have `f_trace`, threading's hook, and how many
/// line events a trace function set now gets in a three-line function
/// (before 3.9 they need CPython's count of traced threads to be right). A
/// thread's trace function is read from its thread state, at the place this
/// thread's own `sys.settrace` is seen to write (valid on 2.7 and 3.x).
const CHECK: &str = "import sys, ctypes, threading
own = sys.gettrace() is not None
api = ctypes.PyDLL(None)
for n in ('PyThreadState_Get', 'PyInterpreterState_Head'):
    getattr(api, n).restype = ctypes.c_void_p
for n in ('PyInterpreterState_ThreadHead', 'PyThreadState_Next'):
    getattr(api, n).restype = ctypes.c_void_p
    getattr(api, n).argtypes = [ctypes.c_void_p]
def probe(*a):
    return None
me = api.PyThreadState_Get()
sys.settrace(probe)
w = (ctypes.c_void_p * 32).from_address(me)
off = 3
while w[off] != id(probe):
    off += 1
sys.settrace(None)
n = int(own)
ts = api.PyInterpreterState_ThreadHead(api.PyInterpreterState_Head())
while ts:
    if ts != me and (ctypes.c_void_p * (off + 1)).from_address(ts)[off]:
        n += 1
    ts = api.PyThreadState_Next(ts)
fr = 0
for f in sys._current_frames().values():
    while f is not None:
        fr += f.f_trace is not None
        f = f.f_back
ev = []
def tr(f, e, a):
    ev.append(e)
    return tr
def g():
    x = 1
    x += 1
    return x
sys.settrace(tr)
g()
sys.settrace(None)
print('TRACED threads=%d frames=%d hook=%r lines=%d' % (n, fr, threading._trace_hook, ev.count('line')))
";

const CLEAN: &str = "TRACED threads=0 frames=0 hook=None lines=3";

/// Asserts that, within a bounded time, no thread of the target has a trace
/// function and no frame one of its own; that the target is alive and keeps
/// working; and that its own output holds nothing but its ticks.
fn assert_left_alone(t: &Target, ctx: &str) {
    let end = Instant::now() + Duration::from_secs(10);
    let mut last = String::new();
    while Instant::now() < end {
        let out = Command::new(pyattach_bin())
            .args(["--run", CHECK, &t.pid().to_string()])
            .output()
            .expect("run pyattach");
        last = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if last.trim() == CLEAN {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        last.trim(),
        CLEAN,
        "{ctx}: the debugger stayed in the target"
    );
    assert!(t.is_alive(), "{ctx}: the target died");
    assert!(t.ticks_on(2), "{ctx}: the target stopped ticking");
    let out = t.output();
    let alien: Vec<&str> = out.lines().filter(|l| !l.starts_with("TICK ")).collect();
    assert!(
        alien.is_empty(),
        "{ctx}: the target's own output: {alien:?}"
    );
}

/// The (Pdb) prompt, once the line editor reads (it draws the prompt that
/// the target printed again).
fn prompt(pty: &mut Pty) -> String {
    let mut s = pty.until("(Pdb) ");
    s.push_str(&pty.until("(Pdb) "));
    s
}

/// A command, and what it showed up to the next prompt.
fn cmd(pty: &mut Pty, line: &str) -> String {
    pty.send(&format!("{line}\r"));
    prompt(pty)
}

/// A stop in the target's code, shown on the terminal; never pyattach's.
fn assert_target_stop(shown: &str, ctx: &str) {
    assert!(
        shown.contains("pdb_target.py("),
        "{ctx}: no stop shown:\n{shown}"
    );
    for ours in ["<pyattach", "<string>", "[EOF]"] {
        assert!(!shown.contains(ours), "{ctx}: {ours} shown:\n{shown}");
    }
}

fn pdb(t: &Target) -> Option<Pty> {
    let pid = t.pid().to_string();
    Pty::spawn(&["--pdb", "--thread", &pid, &pid])
}

fn session_of_commands(py: &Python, stdin: Stdin) {
    let ctx = format!("{} (stdin {stdin:?})", py.id);
    eprintln!("pdb session: {ctx}");
    let Some(t) = target(py, stdin) else { return };
    let Some(mut pty) = pdb(&t) else { return };
    // The first stop: the frame the main thread was executing.
    let first = prompt(&mut pty);
    assert_target_stop(&first, &ctx);
    assert!(first.contains("<module>()"), "{ctx}: {first}");
    let shown = cmd(&mut pty, "where");
    assert_target_stop(&shown, &ctx);
    for i in 0..10 {
        let shown = cmd(&mut pty, "n");
        assert_target_stop(&shown, &format!("{ctx}: n #{i}"));
    }
    // s until it steps into step() (a loop turn at most), then unt.
    let mut into = false;
    for i in 0..12 {
        let shown = cmd(&mut pty, "s");
        assert_target_stop(&shown, &format!("{ctx}: s #{i}"));
        if shown.contains("step()") {
            into = true;
            break;
        }
    }
    assert!(into, "{ctx}: s never stepped into step()");
    assert_target_stop(&cmd(&mut pty, "unt"), &format!("{ctx}: unt"));
    // A breakpoint in the main thread, up and next.
    assert!(cmd(&mut pty, "b step").contains("Breakpoint 1"), "{ctx}");
    let shown = cmd(&mut pty, "c");
    assert_target_stop(&shown, &ctx);
    assert!(shown.contains("step()"), "{ctx}: {shown}");
    assert!(cmd(&mut pty, "up").contains("<module>()"), "{ctx}");
    let shown = cmd(&mut pty, "n");
    assert!(shown.contains("count += 1"), "{ctx}: {shown}");
    // Return.
    assert!(cmd(&mut pty, "c").contains("step()"), "{ctx}");
    let shown = cmd(&mut pty, "r");
    assert!(shown.contains("--Return--"), "{ctx}: {shown}");
    assert!(
        cmd(&mut pty, "cl 1").contains("Deleted breakpoint"),
        "{ctx}"
    );
    // A breakpoint in the worker thread, which was running all along.
    assert!(cmd(&mut pty, "b work").contains("Breakpoint 2"), "{ctx}");
    let shown = cmd(&mut pty, "c");
    assert_target_stop(&shown, &ctx);
    assert!(shown.contains("work()"), "{ctx}: {shown}");
    assert!(cmd(&mut pty, "where").contains("worker()"), "{ctx}");
    assert!(
        cmd(&mut pty, "cl 2").contains("Deleted breakpoint"),
        "{ctx}"
    );
    // Ctrl-C at the prompt: the half-typed line is gone, the next ones run.
    assert!(cmd(&mut pty, "p 40 + 2").contains("42"), "{ctx}");
    pty.send("p 99");
    pty.send("\x03");
    assert!(prompt(&mut pty).contains("KeyboardInterrupt"), "{ctx}");
    assert!(cmd(&mut pty, "p 1000 + 1").contains("1001"), "{ctx}");
    assert!(cmd(&mut pty, "p 2000 + 2").contains("2002"), "{ctx}");
    // Ctrl-C while a command runs, blocked in a system call. (The pause
    // lets the line editor give the terminal back first: a Ctrl-C it
    // reads itself cancels the next line instead.)
    pty.send("p __import__('time').sleep(60)\r");
    std::thread::sleep(Duration::from_millis(1000));
    pty.send("\x03");
    assert!(prompt(&mut pty).contains("KeyboardInterrupt"), "{ctx}");
    assert!(cmd(&mut pty, "p 3000 + 3").contains("3003"), "{ctx}");
    // Ctrl-C under c, with a breakpoint that is never hit.
    assert!(
        cmd(&mut pty, "b step, i < 0").contains("Breakpoint"),
        "{ctx}"
    );
    pty.send("c\r");
    assert!(t.ticks_on(2), "{ctx}: the target does not run under c");
    pty.send("\x03");
    let shown = prompt(&mut pty);
    assert_target_stop(&shown, &format!("{ctx}: Ctrl-C under c"));
    pty.send("q\r");
    assert_eq!(pty.wait_exit(), Some(0), "{ctx}: {}", pty.rest());
    assert_left_alone(&t, &ctx);

    // Ctrl-D after a step.
    let Some(mut pty) = pdb(&t) else { return };
    prompt(&mut pty);
    cmd(&mut pty, "n");
    pty.send("\x04");
    assert_eq!(pty.wait_exit(), Some(0), "{ctx}: Ctrl-D: {}", pty.rest());
    assert_left_alone(&t, &format!("{ctx}: Ctrl-D"));

    // c with no breakpoint ends the session.
    let Some(mut pty) = pdb(&t) else { return };
    prompt(&mut pty);
    pty.send("c\r");
    assert_eq!(pty.wait_exit(), Some(0), "{ctx}: c: {}", pty.rest());
    assert_left_alone(&t, &format!("{ctx}: c"));
}

#[test]
fn pdb_sessions_with_the_target_stdin_at_dev_null() {
    for py in testsupport::pythons() {
        session_of_commands(&py, Stdin::DevNull);
    }
}

/// The same on Debian sid's own 3.14 and 3.15 (and 3.13), run in their
/// chroot: what 3.14's `python -m pdb -p` offers there, through pyattach.
#[test]
fn pdb_sessions_on_debian_sids_pythons() {
    for py in testsupport::sid_pythons() {
        session_of_commands(&py, Stdin::DevNull);
    }
}

#[test]
fn pdb_sessions_with_the_target_stdin_at_a_terminal() {
    for py in testsupport::pythons() {
        session_of_commands(&py, Stdin::Terminal);
    }
}

/// pyattach SIGKILLed or SIGTERMed at the first prompt, under c with
/// breakpoints pending (in both threads), and at a breakpoint hit in the
/// worker thread: `PYATTACH_PDB_KILLS` rounds on each interpreter (default
/// 6: each way with each signal; `scripts/torture` asks for more).
#[test]
fn sigkill_of_pyattach_leaves_no_debugger() {
    use nix::sys::signal::{kill, Signal};
    let kills: usize = std::env::var("PYATTACH_PDB_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    for py in testsupport::pythons() {
        let t = Target::python(&py, "pdb_target.py", &[]);
        for round in 0..kills {
            let way = ["at the first prompt", "under c", "at a stop in the worker"][round % 3];
            let sig = [Signal::SIGKILL, Signal::SIGTERM][round / 3 % 2];
            let ctx = format!("{} round {round} ({sig} {way})", py.id);
            let Some(mut pty) = pdb(&t) else { return };
            prompt(&mut pty);
            match round % 3 {
                1 => {
                    let b = cmd(&mut pty, "b work, n < 0");
                    assert!(b.contains("Breakpoint"), "{ctx}: {b}");
                    let b = cmd(&mut pty, "b step, i < 0");
                    assert!(b.contains("Breakpoint"), "{ctx}: {b}");
                    pty.send("c\r");
                    assert!(t.ticks_on(1), "{ctx}: the target does not run under c");
                }
                2 => {
                    assert!(cmd(&mut pty, "b work").contains("Breakpoint"), "{ctx}");
                    assert!(cmd(&mut pty, "c").contains("work()"), "{ctx}");
                }
                _ => {}
            }
            let pid = pty.pyattach_pid().expect("pyattach's pid");
            // By pid: the pyattach this test started.
            kill(nix::unistd::Pid::from_raw(pid), sig).expect("signal pyattach");
            // `script` leaves once its child is gone.
            assert!(pty.wait_exit().is_some(), "{ctx}: pyattach outlived {sig}");
            assert_left_alone(&t, &ctx);
        }
    }
}

/// `breakpoint()` (or `pdb.set_trace()`) inside `--run` code opens the same
/// debugger, in the code's frame, over the target's own frames.
#[test]
fn pdb_inside_run_code() {
    for py in testsupport::pythons() {
        let ctx = py.id.clone();
        let t = Target::python(&py, "pdb_target.py", &[]);
        let code = if (py.version.0, py.version.1) >= (3, 7) {
            "x = 41\nbreakpoint()\nx += 1\nprint('x is %d' % x)\n"
        } else {
            "x = 41\nimport pdb; pdb.set_trace()\nx += 1\nprint('x is %d' % x)\n"
        };
        let pid = t.pid().to_string();
        let Some(mut pty) = Pty::spawn(&["--run", code, "--thread", &pid, &pid]) else {
            return;
        };
        prompt(&mut pty);
        let shown = cmd(&mut pty, "where");
        assert!(shown.contains("pdb_target.py("), "{ctx}: {shown}");
        assert!(!shown.contains("<pyattach>"), "{ctx}: {shown}");
        assert!(!shown.contains("<string>"), "{ctx}: {shown}");
        assert!(cmd(&mut pty, "n").contains("x += 1"), "{ctx}");
        assert!(cmd(&mut pty, "p x").contains("41"), "{ctx}");
        pty.send("c\r");
        pty.expect("x is 42");
        assert_eq!(pty.wait_exit(), Some(0), "{ctx}: {}", pty.rest());
        assert_left_alone(&t, &ctx);
    }
}

/// When pyattach gets in through a thread of its own (the new-thread
/// strategy), pdb shows where the main thread is and stops it at its next
/// line, from outside it.
#[test]
fn pdb_through_a_thread_of_pyattach() {
    for py in testsupport::pythons() {
        let ctx = py.id.clone();
        let t = Target::python(&py, "pdb_target.py", &[]);
        let pid = t.pid().to_string();
        let Some(mut pty) = Pty::spawn_with(
            &["--pdb", &pid],
            &[("PYATTACH_TEST_STRATEGY", "new-thread")],
        ) else {
            return;
        };
        let first = prompt(&mut pty);
        assert!(first.contains("a thread of its own"), "{ctx}: {first}");
        assert_target_stop(&first, &ctx);
        for i in 0..3 {
            let shown = cmd(&mut pty, "n");
            assert_target_stop(&shown, &format!("{ctx}: n #{i}"));
            assert!(shown.contains("<module>()"), "{ctx}: {shown}");
        }
        pty.send("q\r");
        assert_eq!(pty.wait_exit(), Some(0), "{ctx}: {}", pty.rest());
        assert_left_alone(&t, &ctx);
    }
}

/// A pdb session that ends because the target went away says so and
/// exits non-zero (q, Ctrl-D and c exit 0, above).
#[test]
fn pdb_says_when_the_target_went_away() {
    let Some(py) = testsupport::python("3.12") else {
        return;
    };
    let mut t = Target::python(&py, "pdb_target.py", &[]);
    let Some(mut pty) = pdb(&t) else { return };
    prompt(&mut pty);
    // By pid: the target this test started.
    t.child_mut().kill().expect("kill the target");
    let _ = t.child_mut().wait();
    // (The line editor waits for the line it was reading.)
    pty.send("p 1\r");
    assert_eq!(pty.wait_exit(), Some(1), "{}", pty.rest());
    assert!(pty.rest().contains("closed the session"), "{}", pty.rest());
}
