//! Real injections (ptrace, detour, trampoline), several in a row into one
//! target, on every interpreter: the first defines the bootstrap through
//! `PyRun_SimpleString`, the later ones call the bootstrap kept in the
//! target straight from the trampoline. Each runs the code, brings its
//! output back, leaves `__main__` as it found it, and the target runs on.

use std::time::Duration;

mod common;

use inject::run::{ChannelKind, Mode, Options, Runner};
use testsupport::{pythons, Target};

/// Runs `code` in `pid`, in the thread that ran the bootstrap (so the
/// code sees how it was called); what it printed, and whether it raised.
fn run(pid: i32, code: &str) -> (String, bool) {
    let opts = Options {
        mode: Mode::Run {
            code: code.to_string(),
            runner: Runner::Caught,
        },
        thread: None,
        timeout: Duration::from_secs(10),
        channel: ChannelKind::Auto,
        trust_seccomp: false,
    };
    let (mut ch, _report, leftover) = inject::run::start(pid, &opts).expect("injected");
    let (out, raised) = common::output_of(&mut ch);
    leftover
        .remove(Duration::from_millis(500))
        .expect("pages removed");
    (out, raised.expect("a result"))
}

#[test]
fn injections_after_the_first_call_the_kept_bootstrap_on_every_interpreter() {
    // Expressions only: the code runs in __main__'s globals and binds
    // nothing there itself.
    let names =
        "__import__('sys').stdout.write(' '.join(sorted(vars(__import__('__main__')))) + '\\n')";
    // Whether the code was called from a text that PyRun_SimpleString ran
    // (a frame of file "<string>" down its stack).
    let via_text = "__import__('sys').stdout.write(str((lambda g: g(g, __import__('sys')._getframe()))(lambda g, f: f is not None and (f.f_code.co_filename == '<string>' or g(g, f.f_back)))))";
    for py in pythons() {
        let Some(t) = Target::run_state(&py, "sleep") else {
            continue;
        };
        let (out, _) = run(t.pid(), via_text);
        assert_eq!(
            out, "True",
            "{}: the first injection defines the bootstrap",
            py.id
        );
        let (out, _) = run(t.pid(), via_text);
        assert_eq!(out, "False", "{}: a later one calls it directly", py.id);
        let (first, raised) = run(t.pid(), names);
        assert!(!raised && first.contains("counter"), "{}: {first}", py.id);
        for round in 1..4 {
            let (out, raised) = run(t.pid(), names);
            assert!(!raised, "{} round {round}: {out}", py.id);
            assert_eq!(out, first, "{} round {round}: __main__ changed", py.id);
        }
        let (out, raised) = run(t.pid(), "1/0");
        assert!(
            raised && out.contains("ZeroDivisionError"),
            "{}: {out}",
            py.id
        );
        let (out, _) = run(
            t.pid(),
            "__import__('sys').stdout.write('%d\\n' % len(__import__('sys')._pyattach_code))",
        );
        assert_eq!(out.trim(), "1", "{}: one bootstrap kept", py.id);
        let ticks = t.output().matches("TICK").count();
        assert!(
            t.wait_for_output(&format!("TICK {}\n", ticks + 2), Duration::from_secs(10)),
            "{}: the target stopped ticking",
            py.id
        );
        assert!(
            !t.output().contains("Traceback"),
            "{}: {}",
            py.id,
            t.output()
        );
    }
}
