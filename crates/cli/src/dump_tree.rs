//! `pyattach dump PID PID…` and `dump --subprocesses PID`: several
//! processes in one run (a gunicorn or uWSGI master and its workers, a
//! multiprocessing pool), each frozen on its own, in turn, and labelled
//! with its command line.

use std::io::Write;

use inject::dump::{DumpOptions, StackDump};
use serde::Serialize;

use crate::dump::{Args, JsonDump};

/// One process to dump.
struct Wanted {
    pid: i32,
    /// The process it was found under with `--subprocesses`; `None` for a
    /// pid the user gave.
    parent: Option<i32>,
    command: String,
}

/// A process's dump, or the message and exit status of its failure.
type Outcome = Result<StackDump, (String, i32)>;

/// One element of the `--json` list: a dump, or why there is none.
#[derive(Serialize)]
#[serde(untagged)]
enum JsonEntry<'a> {
    Dump {
        command_line: &'a str,
        parent_pid: Option<i32>,
        #[serde(flatten)]
        dump: JsonDump<'a>,
    },
    Failed {
        pid: i32,
        command_line: &'a str,
        parent_pid: Option<i32>,
        error: String,
        exit_code: i32,
    },
}

/// The pids given, in order and once each, each followed (with
/// `--subprocesses`) by its descendants.
fn wanted(args: &Args) -> anyhow::Result<Vec<Wanted>> {
    let mut out: Vec<Wanted> = Vec::new();
    let mut push = |pid: i32, parent: Option<i32>| {
        if !out.iter().any(|w| w.pid == pid) {
            let command = attach::tree::cmdline(pid).unwrap_or_default();
            out.push(Wanted {
                pid,
                parent,
                command,
            });
        }
    };
    for &pid in &args.pids {
        push(pid, None);
        if args.subprocesses {
            for child in attach::tree::descendants(pid)? {
                push(child, Some(pid));
            }
        }
    }
    Ok(out)
}

/// Dumps every process wanted; the exit status is that of the first
/// failure (0 if none). A descendant that is not Python, has exited or is
/// a zombie is left out silently: pools come and go, and a tree holds
/// shells and helpers.
pub fn execute(args: &Args, opts: &DumpOptions) -> anyhow::Result<i32> {
    let wanted = wanted(args)?;
    let mut code = 0;
    let mut dumps: Vec<(&Wanted, Outcome)> = Vec::new();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut shown = 0;
    for w in &wanted {
        if let Some(sig) = attach::exit_requested() {
            return Ok(128 + sig as i32);
        }
        let res = match crate::dump::dump_one(args, opts, w.pid) {
            Ok(d) => Ok(d),
            Err(err) => {
                let c = crate::errors::exit_code(&err);
                if w.parent.is_some() && matches!(c, 3 | 4 | 6) {
                    continue;
                }
                let msg = format!("{err:#}");
                crate::errors::finish(Err(err));
                if code == 0 {
                    code = c;
                }
                Err((msg, c))
            }
        };
        if args.json {
            dumps.push((w, res));
        } else if let Ok(d) = res {
            let res = write_one(&mut out, w, &d, args.condense, shown > 0);
            shown += 1;
            if let Err(e) = res {
                return broken_pipe_is_clean(e);
            }
        }
    }
    if args.json {
        let list: Vec<JsonEntry> = dumps
            .iter()
            .map(|(w, r)| match r {
                Ok(d) => JsonEntry::Dump {
                    command_line: &w.command,
                    parent_pid: w.parent,
                    dump: JsonDump::new(d),
                },
                Err((error, exit_code)) => JsonEntry::Failed {
                    pid: w.pid,
                    command_line: &w.command,
                    parent_pid: w.parent,
                    error: error.clone(),
                    exit_code: *exit_code,
                },
            })
            .collect();
        if let Err(e) = crate::term::write_json(&mut out, &list) {
            return broken_pipe_is_clean(e);
        }
    }
    Ok(code)
}

/// One process's dump in text, after a blank line if another came before.
fn write_one(
    out: &mut impl Write,
    w: &Wanted,
    d: &StackDump,
    condense: bool,
    after_another: bool,
) -> std::io::Result<()> {
    if after_another {
        writeln!(out)?;
    }
    let mut label = format!("Command line: {}", crate::term::field(&w.command));
    if let Some(parent) = w.parent {
        label.push_str(&format!(" (descendant of {parent})"));
    }
    crate::dump::write_human_labelled(out, d, crate::dump::colour(), condense, Some(&label))
}

fn broken_pipe_is_clean(e: std::io::Error) -> anyhow::Result<i32> {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Ok(0)
    } else {
        Err(e.into())
    }
}
