//! `pyattach --run CODE --subprocesses PID`: the code run in a process and
//! in every Python process descended from it, one after another, each
//! one's output labelled as `tail` labels files.

use std::io::Write;
use std::time::Instant;

use inject::run::Mode;

use crate::run::Args;

/// The exit status of a usage error, as clap's.
const USAGE: i32 = 2;

/// Runs `mode` in `root` and its Python descendants; the exit status is
/// the first failure's (0 if none). A descendant that is not Python, has
/// exited or is a zombie is skipped silently; any other failure is
/// reported and the next process gets its turn.
pub fn execute(args: &Args, root: i32, mode: &Mode) -> anyhow::Result<i32> {
    if matches!(mode, Mode::Repl | Mode::Pdb) {
        // clap asks for --run or --run-file; pdb comes from the code.
        eprintln!(
            "pyattach: --subprocesses runs code, not pdb: debug one process at a time \
             (`pyattach dump --subprocesses {root}` lists them)"
        );
        return Ok(USAGE);
    }
    let mut pids = vec![root];
    pids.extend(attach::tree::descendants(root)?);
    let mut status = 0;
    let mut shown = 0;
    for pid in pids {
        if let Some(sig) = attach::exit_requested() {
            return Ok(128 + sig as i32);
        }
        let started = Instant::now();
        let target = match crate::run::open(args, pid) {
            Ok(t) => t,
            Err(e) => {
                let code = crate::errors::exit_code(&e);
                if pid != root && matches!(code, 3 | 4 | 6) {
                    continue;
                }
                crate::errors::finish(Err(e));
                status = first_failure(status, code);
                continue;
            }
        };
        label(pid, root, shown > 0)?;
        shown += 1;
        let code = crate::errors::finish(crate::run::run_in(args, &target, mode.clone(), started));
        status = first_failure(status, code);
    }
    Ok(status)
}

fn first_failure(status: i32, code: i32) -> i32 {
    if status == 0 {
        code
    } else {
        status
    }
}

/// `==> process PID: COMMAND LINE <==` on stdout, where the code's output
/// follows (after a blank line if another process came before).
fn label(pid: i32, root: i32, after_another: bool) -> std::io::Result<()> {
    let command = attach::tree::cmdline(pid).unwrap_or_default();
    let mut out = std::io::stdout().lock();
    if after_another {
        writeln!(out)?;
    }
    let under = if pid == root {
        String::new()
    } else {
        format!(" (descendant of {root})")
    };
    writeln!(
        out,
        "==> process {pid}{under}: {} <==",
        crate::term::field(&command)
    )?;
    out.flush()
}
