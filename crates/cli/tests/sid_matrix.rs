//! The matrix of target states (tests/fixtures/py/run_states.py: sleeping,
//! CPU-bound, 20 and 200 threads, blocked in read/wait/join/lock/event,
//! deep recursion, the GIL held in C, asyncio) on Debian sid's own
//! Pythons, run chrooted in the root `scripts/setup` builds
//! (`testsupport::sid_pythons`): `info`, `dump`, `--run` and the prompt
//! (stdin piped) in each, and the target working on after each.
//! `dump`'s frames are checked against the target's own
//! `sys._current_frames()` by crates/inject/tests/dump.rs, which covers
//! these interpreters too.

use std::time::Duration;

use testsupport::{pyattach_output, sid_pythons, Python, Target};

const LIMIT: Duration = Duration::from_secs(60);

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `state` under `py`, its C library (the gilspin states) mirrored into
/// the root where the fixture loads it from.
fn target(py: &Python, state: &str) -> Option<Target> {
    if state.starts_with("gilspin") {
        let so = testsupport::build_c("run_gilspin", &["-shared", "-fPIC"])?;
        testsupport::sid_mirror(&testsupport::sid_root()?, &so);
    }
    Target::run_state(py, state)
}

/// The target works on: alive, no thread left stopped, ticking (the
/// states with a ticker), none of pyattach's output on its stdout.
fn works_on(t: &Target, state: &str, ctx: &str) {
    assert!(t.is_alive(), "{ctx}");
    assert!(
        t.thread_states()
            .iter()
            .all(|(_, s)| *s != 't' && *s != 'T'),
        "{ctx}: {:?}",
        t.thread_states()
    );
    if !matches!(
        state,
        "cpu" | "cpu_contended" | "longsleep" | "read" | "gilspin"
    ) {
        assert!(
            t.ticks_counted(2, Duration::from_secs(20)),
            "{ctx}: no ticks"
        );
    }
    assert!(!t.output().contains("hello from"), "{ctx}");
}

fn check(py: &Python, state: &str) {
    let Some(t) = target(py, state) else {
        return;
    };
    let pid = t.pid().to_string();
    let (maj, min) = (py.version.0, py.version.1);
    let ctx = |what: &str, o: &std::process::Output| {
        format!(
            "{} {state} {what}: {:?}\nstdout: {}\nstderr: {}",
            py.id,
            o.status,
            text(&o.stdout),
            text(&o.stderr)
        )
    };

    let o = pyattach_output(&["info", &pid], b"", LIMIT);
    assert!(o.status.success(), "{}", ctx("info", &o));
    assert!(
        text(&o.stdout).contains(&format!("CPython {maj}.{min}.")),
        "{}",
        ctx("info", &o)
    );

    let o = pyattach_output(&["dump", &pid], b"", LIMIT);
    assert!(o.status.success(), "{}", ctx("dump", &o));
    let out = text(&o.stdout);
    assert!(
        out.contains(&format!("Python {maj}.{min}.")),
        "{}",
        ctx("dump", &o)
    );
    assert!(out.contains("\"MainThread\""), "{}", ctx("dump", &o));
    let main_in = match state {
        "recursion" => "deep (",
        "asyncio" => "forever (",
        "threads20" | "threads200" => "sleeper (",
        _ => "main (",
    };
    assert!(out.contains(main_in), "{}", ctx("dump", &o));
    if state == "recursion" {
        assert!(out.matches("deep (").count() >= 100, "{}", ctx("dump", &o));
    }
    works_on(&t, state, &ctx("dump", &o));

    // The GIL held in native code for good: no thread can run Python code,
    // and pyattach says so within its timeout.
    let code = "import os\nprint('hello from %d' % os.getpid())\n";
    let o = pyattach_output(&["--run", code, "--timeout", "10", &pid], b"", LIMIT);
    if state == "gilspin" {
        assert_eq!(o.status.code(), Some(1), "{}", ctx("--run", &o));
        assert!(
            text(&o.stderr).contains("reached a point"),
            "{}",
            ctx("--run", &o)
        );
        works_on(&t, state, &ctx("--run", &o));
        return;
    }
    assert_eq!(o.status.code(), Some(0), "{}", ctx("--run", &o));
    assert_eq!(
        text(&o.stdout),
        format!("hello from {pid}\n"),
        "{}",
        ctx("--run", &o)
    );
    works_on(&t, state, &ctx("--run", &o));

    let o = pyattach_output(
        &[&pid],
        b"x = 6 * 7\nprint(x)\nfor i in range(2):\n    print(i)\n\n",
        LIMIT,
    );
    assert_eq!(o.status.code(), Some(0), "{}", ctx("prompt", &o));
    assert_eq!(text(&o.stdout), "42\n0\n1\n", "{}", ctx("prompt", &o));
    works_on(&t, state, &ctx("prompt", &o));
}

fn each(state: &str) {
    let all = sid_pythons();
    if all.is_empty() {
        return testsupport::note("no sid Python to test (scripts/setup)");
    }
    for py in all {
        check(&py, state);
    }
}

macro_rules! state_tests {
    ($($name:ident => $state:expr,)*) => {
        $(
            #[test]
            fn $name() {
                each($state);
            }
        )*
    };
}

state_tests! {
    sleep => "sleep",
    longsleep => "longsleep",
    except_sleep => "except_sleep",
    cpu_bound => "cpu",
    cpu_contended => "cpu_contended",
    threads20 => "threads20",
    threads200 => "threads200",
    blocked_in_read => "read",
    blocked_in_join => "join",
    blocked_in_lock => "lock",
    blocked_in_event => "event",
    blocked_in_child_wait => "child",
    asyncio => "asyncio",
    recursion => "recursion",
    gil_held_in_c => "gilspin",
    gil_held_in_c_for_3s => "gilspin3",
}
