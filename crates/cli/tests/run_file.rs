//! `--run-file` and `--run -` on every interpreter: the file's bytes go to
//! the target's compiler, so a coding cookie counts as in any file, and
//! tracebacks name the file (`<stdin>` for `--run -`); code of many
//! megabytes gets a warning.

use std::time::Duration;

use testsupport::{pythons, Target};

const LATIN1: &[u8] = b"# -*- coding: latin-1 -*-\ns = u\"caf\xe9\"\nprint('%d %r' % (len(s), s.encode('utf-8')))\n\n1 / 0\n";

#[test]
fn a_file_keeps_its_coding_cookie_and_its_name_in_tracebacks() {
    let path = std::env::temp_dir().join(format!("pyattach-runfile-{}.py", std::process::id()));
    std::fs::write(&path, LATIN1).unwrap();
    let file = path.to_str().unwrap();
    for py in pythons() {
        let Some(t) = Target::run_state(&py, "sleep") else {
            continue;
        };
        let pid = t.pid().to_string();
        for (args, stdin, name) in [
            (vec!["--run-file", file, &pid], &b""[..], file),
            (vec!["--run", "-", &pid], LATIN1, "<stdin>"),
        ] {
            let o = testsupport::pyattach_output(&args, stdin, Duration::from_secs(60));
            let (out, err) = (
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr),
            );
            let ctx = format!("{} {args:?}: {out}{err}", py.id);
            assert_eq!(o.status.code(), Some(8), "{ctx}");
            assert!(
                out.starts_with("4 ") && out.contains(r"caf\xc3\xa9"),
                "{ctx}"
            );
            assert!(err.contains(&format!("File \"{name}\", line 5")), "{ctx}");
            assert!(err.contains("ZeroDivisionError"), "{ctx}");
            assert!(!err.contains("<pyattach-run>"), "{ctx}");
        }
        assert!(t.ticks_on(2), "{}: the target stopped ticking", py.id);
    }
    let _ = std::fs::remove_file(&path);
}

#[test]
fn code_not_utf8_without_a_coding_declaration_is_refused_before_the_target_is_touched() {
    // No such process is needed: pyattach says so before it looks.
    let o = testsupport::pyattach_output(
        &["--run", "-", "999999999"],
        b"print('\xff')\n",
        Duration::from_secs(60),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("<stdin> is not valid UTF-8 (byte 8 of it)"),
        "{err}"
    );
    assert!(err.contains("PEP 263"), "{err}");
}

#[test]
fn code_of_many_megabytes_gets_a_warning() {
    let Some(py) = testsupport::python("3.12") else {
        return;
    };
    let Some(t) = Target::run_state(&py, "sleep") else {
        return;
    };
    // 1.2 MB that compiles at once: comments.
    let mut code = "# padding\n".repeat(120_000);
    code.push_str("print('big' + ' ran')\n");
    let o = testsupport::pyattach_output(
        &["--run", "-", &t.pid().to_string()],
        code.as_bytes(),
        Duration::from_secs(60),
    );
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert_eq!(out, "big ran\n", "{err}");
    assert!(err.contains("warning: the code is 1.2 MB"), "{err}");
    assert!(err.contains("holds the GIL"), "{err}");
}
