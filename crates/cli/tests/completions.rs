//! `pyattach completions SHELL` and `pyattach man`: generated from the
//! command line's own definitions, so they name every subcommand and flag;
//! the bash script parses; a closed pipe is a clean exit, never a panic.

use std::process::{Command, Stdio};
use std::time::Duration;

use testsupport::{pyattach_bin, pyattach_output};

fn out(args: &[&str]) -> (i32, String, String) {
    let o = pyattach_output(args, b"", Duration::from_secs(30));
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn completions_name_the_subcommands_and_flags() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let (code, text, err) = out(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {err}");
        // fish names long flags without their dashes (`-l native`).
        for word in ["dump", "info", "run", "native", "core", "subprocesses"] {
            assert!(text.contains(word), "{shell}: no {word}");
        }
    }
    let (_, script, _) = out(&["completions", "bash"]);
    let mut bash = Command::new("bash")
        .arg("-n")
        .stdin(Stdio::piped())
        .spawn()
        .expect("bash");
    std::io::Write::write_all(&mut bash.stdin.take().unwrap(), script.as_bytes()).unwrap();
    assert!(
        bash.wait().unwrap().success(),
        "the bash script does not parse"
    );
    let (code, _, err) = out(&["completions", "tcsh"]);
    assert_eq!(code, 2, "an unknown shell is a usage error: {err}");
}

#[test]
fn the_man_page_is_roff_naming_the_commands() {
    let (code, page, err) = out(&["man"]);
    assert_eq!(code, 0, "{err}");
    assert!(page.contains(".TH pyattach 1"), "{page}");
    assert!(
        page.contains("dump") && page.contains("\\-\\-run"),
        "{page}"
    );
}

#[test]
fn a_closed_pipe_is_a_clean_exit() {
    for args in [&["completions", "zsh"][..], &["man"][..]] {
        let mut child = Command::new(pyattach_bin())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("pyattach");
        drop(child.stdout.take());
        let o = child.wait_with_output().unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            !String::from_utf8_lossy(&o.stderr).contains("panicked"),
            "{args:?}"
        );
    }
}
