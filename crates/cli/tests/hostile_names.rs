//! A target that plants terminal escape sequences in its thread names, a
//! file and function name, a local's value and its comm cannot reach the
//! user's terminal through pyattach: `dump` (plain, `--locals --native`),
//! `info`, and a session's connect listing show them escaped, Tab
//! completion never offers a name holding them, and `--json` still carries
//! the original strings.

mod common;

use std::time::Duration;

use common::pty::Pty;
use serde_json::Value;
use testsupport::Target;

/// What the fixture names its threads (on Python 3; 2.7's name holds the
/// byte 0x9b where this has U+009B).
const EVIL: &str = "evil\x1b]0;PWNED\x07\x1b[2Jname\u{9b}31m\x7fend";

/// Runs pyattach with `args` (and `stdin`), returns (status, stdout + stderr
/// as raw bytes).
fn run(args: &[&str], stdin: &[u8]) -> (i32, Vec<u8>) {
    let out = testsupport::pyattach_output(args, stdin, Duration::from_secs(60));
    let mut all = out.stdout;
    all.extend_from_slice(&out.stderr);
    (out.status.code().unwrap_or(-1), all)
}

/// The first byte a terminal would take as a control, with some context.
fn control_in(out: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(out);
    let at = text
        .char_indices()
        .find(|&(_, c)| (c < ' ' && c != '\n' && c != '\t') || ('\x7f'..='\u{9f}').contains(&c))?;
    let from = text[..at.0]
        .char_indices()
        .rev()
        .nth(40)
        .map_or(0, |(i, _)| i);
    Some(format!("{:?}", &text[from..(at.0 + 1)]))
}

fn check(what: &str, status: i32, out: &[u8]) {
    assert_eq!(status, 0, "{what}: {}", String::from_utf8_lossy(out));
    if let Some(ctx) = control_in(out) {
        panic!("{what} wrote a control character to the terminal: …{ctx}");
    }
}

#[test]
fn escape_sequences_from_the_target_never_reach_the_terminal() {
    let mut seen = 0;
    for py in testsupport::pythons() {
        let t = Target::python(&py, "hostile_names.py", &[]);
        let pid = t.pid().to_string();
        let who = format!("{} (pid {pid})", py.id);

        let (status, out) = run(&["dump", &pid], b"");
        check(&format!("dump of {who}"), status, &out);
        let text = String::from_utf8_lossy(&out);
        // The names are there, shown rather than sent.
        assert!(
            text.contains("evil\\x1b]0;PWNED\\x07\\x1b[2Jname"),
            "{who}: {text}"
        );
        assert!(text.contains("\\x1b[31mred\\x1b[0m.py"), "{who}: {text}");

        let (status, out) = run(&["dump", "--locals", "--native", &pid], b"");
        check(&format!("dump --locals --native of {who}"), status, &out);

        let (status, out) = run(&["info", &pid], b"");
        check(&format!("info of {who}"), status, &out);

        // --json keeps the original strings (JSON escapes them itself).
        let (status, out) = run(&["dump", "--json", &pid], b"");
        assert_eq!(status, 0, "{who}");
        check(&format!("dump --json of {who}"), status, &out);
        let j: Value = serde_json::from_slice(&out).expect("JSON");
        let threads = j["threads"].as_array().unwrap();
        assert!(threads.iter().any(|th| th["frames"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["filename"] == "\x1b[31mred\x1b[0m.py")));
        if py.version.0 != 2 {
            assert!(
                threads.iter().any(|th| th["name"] == EVIL),
                "{who}: {threads:?}"
            );
        }
        assert!(t.is_alive(), "{who}");
        seen += 1;
    }
    assert!(seen > 0, "no interpreter to test with");
}

/// The target runs as an executable whose path holds escape sequences (a
/// hard link: `/proc/PID/exe` names the path it was started through), and
/// holds the GIL in C: `info` shows the path escaped, and `--run`'s report
/// that no thread reaches a safe point lists the threads escaped.
#[test]
fn the_executable_path_and_the_no_safe_point_report_are_escaped() {
    let Some(so) = testsupport::build_c("run_gilspin", &["-shared", "-fPIC"]) else {
        return testsupport::note("cc is missing: run_gilspin cannot be built");
    };
    for v in ["2.7", "3.12"] {
        let Some(py) = testsupport::python(v) else {
            testsupport::note(&format!("pyenv {v} is missing"));
            continue;
        };
        let dir = testsupport::build_dir().join(format!("hostile-exe-{}-{v}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let exe = dir.join("py\x1b]0;PWNED\x07thon");
        if let Err(e) = std::fs::hard_link(&py.exe, &exe) {
            testsupport::note(&format!("{v}: cannot link {} here: {e}", py.exe.display()));
            continue;
        }
        let mut cmd = std::process::Command::new(&exe);
        cmd.arg("-u")
            .arg(testsupport::fixture("py/hostile_names.py"))
            .env("PYATTACH_SO", &so)
            .env("PYTHONDONTWRITEBYTECODE", "1");
        let t = Target::spawn(cmd);
        let pid = t.pid().to_string();
        let (status, out) = run(&["info", &pid], b"");
        check(&format!("info of {v}"), status, &out);
        assert!(
            String::from_utf8_lossy(&out).contains("py\\x1b]0;PWNED\\x07thon"),
            "{v}: {}",
            String::from_utf8_lossy(&out)
        );
        let (status, out) = run(&["--run", "pass", "--timeout", "2", &pid], b"");
        assert_ne!(status, 0, "{v}: no thread can run code");
        check(&format!("no safe point in {v}"), 0, &out);
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("safe point"), "{v}: {text}");
        assert!(
            text.contains("evil\\x1b]0;PWNED"),
            "{v}: the threads are listed: {text}"
        );
        assert!(t.is_alive(), "{v}");
        drop(t);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn a_sessions_connect_listing_is_escaped() {
    for v in ["2.7", "3.12"] {
        let Some(py) = testsupport::python(v) else {
            testsupport::note(&format!("pyenv {v} is missing"));
            continue;
        };
        let t = Target::python(&py, "hostile_names.py", &[]);
        let pid = t.pid().to_string();
        let (status, out) = run(&[&pid], b"print('done')\n");
        check(&format!("session with {v}"), status, &out);
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("\\x1b[31mred\\x1b[0m.py"), "{v}: {text}");
        assert!(text.contains("done"), "{v}: {text}");
        assert!(t.is_alive(), "{v}");
    }
}

/// Tab, then Tab again (the listing), on `evil_`: the target's answer
/// holds a global whose name carries an OSC title sequence; it never
/// reaches the terminal (the line editor's own sequences do, which is why
/// this looks for the planted one rather than for any escape).
#[test]
fn tab_completion_never_shows_a_name_holding_control_characters() {
    let Some(py) = testsupport::python("3.12") else {
        testsupport::note("pyenv 3.12 is missing");
        return;
    };
    let t = Target::python(&py, "hostile_names.py", &[]);
    let Some(mut pty) = Pty::spawn(&[&t.pid().to_string()]) else {
        return;
    };
    pty.expect(">>> ");
    pty.send("evil_\t\t");
    std::thread::sleep(Duration::from_millis(800));
    pty.send("\x15print('after')\r");
    pty.expect("after");
    pty.send("\x04");
    assert_eq!(pty.wait_exit(), Some(0), "{}", pty.rest());
    let screen = pty.shown();
    assert!(!screen.contains("\x1b]0;PWNED"), "{screen:?}");
    assert!(t.is_alive());
}

#[test]
fn escape_output_escapes_what_the_code_prints() {
    let Some(py) = testsupport::python("3.12") else {
        return testsupport::note("pyenv 3.12 is missing");
    };
    let t = Target::python(&py, "sleeper.py", &[]);
    let pid = t.pid().to_string();
    let code = "print('\\x1b[2Jhi')";
    // By default the user's own output passes as a terminal would show it.
    let (status, out) = run(&["--run", code, &pid], b"");
    assert_eq!(status, 0);
    assert!(out.windows(4).any(|w| w == b"\x1b[2J"), "{out:?}");
    let (status, out) = run(&["--escape-output", "--run", code, &pid], b"");
    check("--escape-output", status, &out);
    assert!(String::from_utf8_lossy(&out).contains("\\x1b[2Jhi"));
}
