//! The bootstrap and its channel, tested without ptrace: the target runs
//! the bootstrap text itself (as the injected `PyRun_SimpleString` would)
//! when a trigger file appears, and the test meets it through
//! `Rendezvous`. Every interpreter of the matrix, both channel kinds.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use inject::run::{bootstrap, Channel, ChannelKind, FromTarget, Mode, Rendezvous, ToTarget};
use testsupport::{pythons, Python, PythonKind, Target};

struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let d = std::env::temp_dir().join(format!(
            "pyattach-test-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Scratch(d)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn start(py: &Python, dir: &Scratch) -> (Target, PathBuf) {
    let trigger = dir.0.join("trigger");
    // The trigger goes in the environment: the embedding fixture does not
    // pass its arguments through to sys.argv.
    let mut cmd = std::process::Command::new(&py.exe);
    if py.kind != PythonKind::Embedded {
        cmd.arg("-u");
    }
    cmd.arg(testsupport::fixture("py/run_selfboot.py"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYATTACH_TEST_TRIGGER", &trigger);
    (Target::spawn(cmd), trigger)
}

/// Makes the target run the bootstrap for `mode` and returns the channel.
fn connect(t: &Target, trigger: &PathBuf, kind: ChannelKind, mode: Mode) -> Channel {
    let mut rv = Rendezvous::prepare(t.pid(), kind).expect("prepare");
    let text = bootstrap::script(&rv.params(mode, Duration::from_secs(5)));
    let tmp = trigger.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, trigger).unwrap();
    rv.wait(Instant::now() + Duration::from_secs(20))
        .expect("bootstrap called back")
}

#[derive(Default, Debug)]
struct Outcome {
    stdout: String,
    stderr: String,
    raised: Option<bool>,
    /// Some(true) once the code started, Some(false) once it stopped.
    executing: Option<bool>,
}

fn collect(ch: &mut Channel) -> Outcome {
    let mut out = Outcome::default();
    while let Some(msg) = ch.recv().expect("frame") {
        match msg {
            FromTarget::Stdout(b) => out.stdout.push_str(&String::from_utf8_lossy(&b)),
            FromTarget::Stderr(b) => out.stderr.push_str(&String::from_utf8_lossy(&b)),
            FromTarget::Finished { raised } => out.raised = Some(raised),
            // The code starts in a thread of the target (its tid), then
            // stops (None), in that order.
            FromTarget::Executing(tid) => {
                assert_eq!(tid.is_some(), out.executing.is_none(), "{tid:?}");
                out.executing = Some(tid.is_some());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    out
}

fn run_case(py: &Python, kind: ChannelKind) {
    let dir = Scratch::new(&format!("{}-{kind:?}", py.id));
    let (t, trigger) = start(py, &dir);
    let pidfile = dir.0.join("pid");
    let code = format!(
        "import os, sys\nopen({:?}, 'w').write(str(os.getpid()))\nprint('hello from %d' % os.getpid())\nsys.stderr.write('to stderr\\n')\n",
        pidfile.to_str().unwrap()
    );
    let mut ch = connect(&t, &trigger, kind, Mode::run(code));
    let out = collect(&mut ch);
    let ctx = format!("{} {kind:?}: {out:?}", py.id);
    assert_eq!(out.raised, Some(false), "{ctx}");
    assert_eq!(out.executing, Some(false), "{ctx}: started and stopped");
    assert!(
        out.stdout.contains(&format!("hello from {}", t.pid())),
        "{ctx}"
    );
    assert!(out.stderr.contains("to stderr"), "{ctx}");
    assert_eq!(
        std::fs::read_to_string(&pidfile).unwrap(),
        t.pid().to_string(),
        "{ctx}"
    );
    // The target goes on: the main loop returns from the bootstrap and the
    // ticker keeps counting on the real stdout; none of the session's
    // output went there.
    assert!(t.wait_for_output("FIRED", Duration::from_secs(10)), "{ctx}");
    let ticks = t.output().matches("TICK").count();
    assert!(
        t.wait_for_output(&format!("TICK {}\n", ticks + 3), Duration::from_secs(10)),
        "{ctx}"
    );
    assert!(!t.output().contains("hello from"), "{ctx}");
    assert!(!t.output().contains("to stderr"), "{ctx}");

    // A raising snippet: traceback back here, raised status, target fine.
    let mut ch = connect(&t, &trigger, kind, Mode::run("x = 1\n1 / 0\n"));
    let out = collect(&mut ch);
    let ctx = format!("{} {kind:?}: {out:?}", py.id);
    assert_eq!(out.raised, Some(true), "{ctx}");
    assert!(out.stderr.contains("ZeroDivisionError"), "{ctx}");
    assert!(out.stderr.contains("<pyattach-run>"), "{ctx}");
    assert!(!out.stderr.contains("bootstrap"), "{ctx}");
    assert!(t.is_alive());
    let end = Instant::now() + Duration::from_secs(10);
    while t.output().matches("FIRED").count() < 2 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(t.output().matches("FIRED").count(), 2, "{ctx}");

    // Nothing left in __main__ but what the code itself assigned, and the
    // std streams are the originals again.
    let mut ch = connect(
        &t,
        &trigger,
        kind,
        Mode::run(
            "print(sorted(k for k in globals() if 'pyattach' in k or k in ('P', '_main')))\n",
        ),
    );
    let out = collect(&mut ch);
    assert!(
        out.stdout.starts_with("[]\n"),
        "{} {kind:?}: {out:?}",
        py.id
    );
    assert!(t.is_alive());
}

#[test]
fn run_over_socketpair_on_every_interpreter() {
    for py in pythons() {
        run_case(&py, ChannelKind::Pair);
    }
}

#[test]
fn run_over_unix_socket_on_every_interpreter() {
    for py in pythons() {
        run_case(&py, ChannelKind::Unix);
    }
}

fn expect_prompt(ch: &mut Channel, out: &mut String) -> String {
    loop {
        match ch.recv().expect("frame").expect("open") {
            FromTarget::WantLine(p) => return p,
            FromTarget::Stdout(b) | FromTarget::Stderr(b) => {
                out.push_str(&String::from_utf8_lossy(&b))
            }
            FromTarget::Stacks(s) => out.push_str(&s),
            FromTarget::Completions(c) => out.push_str(&c.join(" ")),
            FromTarget::Executing(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn repl_session_on_every_interpreter() {
    for py in pythons() {
        let dir = Scratch::new(&format!("{}-repl", py.id));
        let (t, trigger) = start(&py, &dir);
        let mut ch = connect(&t, &trigger, ChannelKind::Auto, Mode::Repl);
        let mut out = String::new();
        assert_eq!(expect_prompt(&mut ch, &mut out), ">>> ", "{}", py.id);
        assert!(
            out.contains("ticker"),
            "{}: stacks on connect: {out}",
            py.id
        );
        out.clear();
        ch.send(&ToTarget::Line(
            "print('%s %s' % (counter[0] > 0, 6 * 7))".into(),
        ))
        .unwrap();
        assert_eq!(expect_prompt(&mut ch, &mut out), ">>> ");
        assert_eq!(out, "True 42\n", "{}", py.id);
        out.clear();
        ch.send(&ToTarget::Line("def f(x):".into())).unwrap();
        assert_eq!(expect_prompt(&mut ch, &mut out), "... ");
        ch.send(&ToTarget::Line("    return x + 1".into())).unwrap();
        assert_eq!(expect_prompt(&mut ch, &mut out), "... ");
        ch.send(&ToTarget::Line("".into())).unwrap();
        assert_eq!(expect_prompt(&mut ch, &mut out), ">>> ");
        ch.send(&ToTarget::Line("f(1)".into())).unwrap();
        assert_eq!(expect_prompt(&mut ch, &mut out), ">>> ");
        assert_eq!(out, "2\n", "{}", py.id);
        out.clear();
        // Tab completion answered by the target, in __main__'s namespace.
        ch.send(&ToTarget::Complete("coun".into())).unwrap();
        match ch.recv().unwrap().unwrap() {
            FromTarget::Completions(c) => assert_eq!(c, vec!["counter".to_string()], "{}", py.id),
            other => panic!("{}: {other:?}", py.id),
        }
        // Ctrl-C at a prompt cancels the line; Ctrl-C while code runs
        // raises KeyboardInterrupt in it; the session goes on.
        ch.send(&ToTarget::Interrupt).unwrap();
        assert_eq!(expect_prompt(&mut ch, &mut out), ">>> ");
        assert!(out.contains("KeyboardInterrupt"), "{}: {out}", py.id);
        out.clear();
        ch.send(&ToTarget::Line("while True: pass".into())).unwrap();
        assert_eq!(expect_prompt(&mut ch, &mut out), "... ");
        ch.send(&ToTarget::Line("".into())).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        ch.send(&ToTarget::Interrupt).unwrap();
        assert_eq!(expect_prompt(&mut ch, &mut out), ">>> ");
        assert!(out.contains("KeyboardInterrupt"), "{}: {out}", py.id);
        // The helper is there, and gone after the session.
        ch.send(&ToTarget::Line("dump_stacktraces()".into()))
            .unwrap();
        out.clear();
        assert_eq!(expect_prompt(&mut ch, &mut out), ">>> ");
        assert!(out.contains("ticker"), "{}: {out}", py.id);
        // The user left: the target says so before it closes the session.
        ch.send(&ToTarget::Eof).unwrap();
        let mut left = false;
        while let Some(msg) = ch.recv().unwrap() {
            match msg {
                FromTarget::Finished { raised: false } => left = true,
                FromTarget::Stderr(_) => {}
                other => panic!("{}: {other:?}", py.id),
            }
        }
        assert!(left, "{}: no end-of-session frame", py.id);
        let mut ch = connect(
            &t,
            &trigger,
            ChannelKind::Auto,
            // During this run sys.stdout is the run's proxy; the one of the
            // finished REPL session must not be left under it.
            Mode::run("import sys\nprint('%s %s' % ('dump_stacktraces' in globals(), type(sys.stdout.__dict__['_orig']).__name__))"),
        );
        let o = collect(&mut ch);
        assert!(o.stdout.starts_with("False "), "{}: {o:?}", py.id);
        assert!(!o.stdout.contains("Proxy"), "{}: {o:?}", py.id);
        assert!(t.is_alive());
    }
}
