//! `pyattach dump PID`: every thread's Python stack, read from memory
//! without running code in the target.

use std::io::{IsTerminal, Write};

use anyhow::Context;
use inject::dump::{DumpOptions, Frame, FrameKind, StackDump, ThreadStack};
use serde::Serialize;

use crate::term::field;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Process id of the target; several may be given, each dumped in turn
    /// (one freeze per process).
    #[arg(required_unless_present = "core", value_name = "PID", value_parser = crate::target::pid_arg)]
    pub pids: Vec<i32>,
    /// Read a core file instead of a live process: a crash's (`ulimit -c`)
    /// or one saved with `gcore`. The files it names (the executable,
    /// libpython) are read from this machine, or from --root.
    #[arg(long, value_name = "CORE", conflicts_with_all = ["pids", "subprocesses", "nonblocking"])]
    pub core: Option<std::path::PathBuf>,
    /// With --core: the program's executable, when it is not where the core
    /// file says (a copy, the build the core came from).
    #[arg(long, value_name = "PATH")]
    pub exe: Option<std::path::PathBuf>,
    /// With --core: the directory that stands for the crashed process's
    /// root (a container's image, a chroot): the files the core names are
    /// read inside it.
    #[arg(long, value_name = "DIR")]
    pub root: Option<std::path::PathBuf>,
    /// Also dump every Python process descended from each PID (a gunicorn
    /// or uWSGI master's workers, a multiprocessing pool), each labelled
    /// with its command line. Descendants that are not Python are skipped.
    #[arg(long)]
    pub subprocesses: bool,
    /// Do not stop the target's threads while reading.
    ///
    /// By default every thread is stopped for the read (a consistent
    /// snapshot; the pause is reported). With this flag the target runs on,
    /// and frames that change during the read may come out torn or cut.
    #[arg(long)]
    pub nonblocking: bool,
    /// Show each frame's local variables with short reprs.
    ///
    /// Read from memory like the frames: None, bool, int, float, str and
    /// bytes, and tuples, lists, dicts and sets of those, exactly as
    /// `repr()` prints them in the target (cut at 80 characters, with
    /// `…`); a container holding anything else as its type and length;
    /// any other object as its type and address. Nothing is called in the
    /// target.
    #[arg(long)]
    pub locals: bool,
    /// Show native (C, C++, Rust) frames too, with the Python frames merged
    /// in at the interpreter's evaluation loop.
    ///
    /// Unwinds each thread's stack from its registers with the modules'
    /// .eh_frame (frame pointers where there is none), so it needs the
    /// threads stopped: ignored with --nonblocking.
    #[arg(long)]
    pub native: bool,
    /// Show every asyncio task instead of the threads (Python 3.7-3.15).
    ///
    /// Each event loop with the thread that runs it, then its tasks as a
    /// tree of who awaits whom: each task's name, state and coroutine stack
    /// (outermost first, innermost last), and what it waits on (a task, a
    /// gather, a TaskGroup or a plain future). Tasks that await each other
    /// in a cycle are named as a deadlock. Read from memory like the
    /// stacks, so a loop stuck in a callback shows too. With --json, the
    /// document gains an "asyncio" object.
    #[arg(long, conflicts_with = "native")]
    pub tasks: bool,
    /// Print a JSON document (see docs/dump-json.md) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Print threads whose stacks are identical once, with a count.
    ///
    /// Typical for pools of idle workers. The GIL holder and the main thread
    /// are always printed on their own. Text output only; --json always
    /// lists every thread.
    #[arg(long)]
    pub condense: bool,
    /// Show at most this many frames per thread.
    #[arg(long, default_value_t = 4096, value_name = "N")]
    pub max_depth: usize,
    #[command(flatten)]
    pub discovery: crate::target::Discovery,
}

/// The JSON envelope: the format version, then the dump itself.
#[derive(Serialize)]
pub struct JsonDump<'a> {
    format_version: u32,
    #[serde(flatten)]
    dump: &'a StackDump,
}

impl<'a> JsonDump<'a> {
    pub fn new(dump: &'a StackDump) -> Self {
        JsonDump {
            format_version: inject::dump::JSON_FORMAT_VERSION,
            dump,
        }
    }
}

pub fn execute(args: Args) -> anyhow::Result<i32> {
    let opts = DumpOptions {
        freeze: !args.nonblocking,
        locals: args.locals,
        native: args.native,
        max_depth: args.max_depth.max(1),
        tasks: args.tasks,
    };
    // SIGINT/SIGTERM during the freeze must not skip the release: they are
    // recorded, the dump finishes (milliseconds), the threads are released,
    // and then we exit as the signal asked.
    attach::install_exit_handlers().context("install signal handlers")?;
    if args.core.is_none() && (args.exe.is_some() || args.root.is_some()) {
        // clap's `requires` does not hold against a positional PID.
        eprintln!("pyattach: --exe and --root go with --core CORE (they name a core file's files)");
        return Ok(2);
    }
    if let Some(core) = &args.core {
        let files = inject::dump::CoreFiles {
            exe: args.exe.clone(),
            root: args.root.clone(),
        };
        let dump = inject::dump::dump_core(core, &files, &args.discovery.options().0, &opts)
            .with_context(|| format!("cannot dump the core file {}", core.display()))?;
        return print(&args, &dump);
    }
    if args.pids.len() > 1 || args.subprocesses {
        return crate::dump_tree::execute(&args, &opts);
    }
    let pid = args.pids[0];
    let dump = dump_one(&args, &opts, pid)?;
    if let Some(sig) = attach::exit_requested() {
        return Ok(128 + sig as i32);
    }
    print(&args, &dump)
}

/// Prints one dump as the arguments ask.
fn print(args: &Args, dump: &StackDump) -> anyhow::Result<i32> {
    let stdout = std::io::stdout();
    // Buffered: a thousand tasks are thousands of lines.
    let mut out = std::io::BufWriter::new(stdout.lock());
    let res = if args.json {
        crate::term::write_json(&mut out, &JsonDump::new(dump))
    } else {
        write_human(&mut out, dump, colour(), args.condense)
    }
    .and_then(|()| out.flush());
    match res {
        Ok(()) => Ok(0),
        // A closed pipe (`| head`) is a clean exit.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// Process `pid`'s dump, opened with the user's discovery options.
pub fn dump_one(args: &Args, opts: &DumpOptions, pid: i32) -> anyhow::Result<StackDump> {
    crate::target::check_process(pid, crate::target::Command::Dump)?;
    args.discovery
        .open(pid)
        .map_err(inject::dump::DumpError::from)
        .and_then(|target| inject::dump::dump_target(&target, opts))
        .with_context(|| format!("cannot dump process {pid}"))
}

/// True if text output to stdout is coloured (a terminal, no `NO_COLOR`).
pub fn colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

pub(crate) struct Style {
    colour: bool,
}

impl Style {
    /// `s` (escaped: see [`crate::term`]) in colour `code` if colour is on.
    pub(crate) fn paint(&self, code: &str, s: &str) -> String {
        let s = crate::term::field(s);
        if self.colour {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
}

/// The human format: a header, then per thread a header line and its
/// frames innermost first (`py-spy dump` users will find their way).
pub fn write_human(
    out: &mut impl Write,
    d: &StackDump,
    colour: bool,
    condense: bool,
) -> std::io::Result<()> {
    write_human_labelled(out, d, colour, condense, None)
}

/// [`write_human`], with a `label` line (already escaped) under the header
/// (which process of several this is).
pub fn write_human_labelled(
    out: &mut impl Write,
    d: &StackDump,
    colour: bool,
    condense: bool,
    label: Option<&str>,
) -> std::io::Result<()> {
    let st = Style { colour };
    let pause = match d.pause_us {
        Some(us) => format!(", paused {:.2} ms", us as f64 / 1000.0),
        None if d.frozen => String::new(),
        None => match (&d.core, d.not_paused.as_deref()) {
            (Some(core), _) => format!(", from the core file {}", field(core)),
            (None, None | Some("--nonblocking")) => ", not paused (--nonblocking)".into(),
            (None, Some(why)) => format!(", not paused: {}", field(why)),
        },
    };
    writeln!(
        out,
        "Process {}: Python {} ({}){}",
        d.pid,
        field(&d.python_version),
        field(&d.module),
        pause
    )?;
    if let Some(label) = label {
        writeln!(out, "{label}")?;
    }
    match d.gil_locked {
        _ if !d.gil_exists => writeln!(
            out,
            "GIL: none yet (Python 3.6 creates it when the process starts its first thread; \
             until then its one thread runs without it)"
        )?,
        Some(false) => writeln!(out, "GIL: released")?,
        Some(true) if !d.threads.iter().any(|t| t.holds_gil) => {
            writeln!(out, "GIL: held by a thread without a Python thread state")?
        }
        _ => {}
    }
    for w in &d.warnings {
        writeln!(out, "{}", st.paint("33", &format!("warning: {w}")))?;
    }
    if let Some(a) = &d.asyncio {
        return crate::dump_tasks::write(out, d, a, &st);
    }
    // With --condense, threads that share a stack (and state) are grouped
    // under the first of them.
    let key = |t: &ThreadStack| {
        let frames: Vec<_> = t
            .frames
            .iter()
            .map(|f| (f.function.clone(), f.filename.clone(), f.line))
            .collect();
        (
            frames,
            t.state.syscall.clone(),
            t.truncated.clone(),
            t.stale,
        )
    };
    // Interpreters are named only when there are several (subinterpreters).
    let first_interp = d.threads.iter().find_map(|t| t.interpreter_id);
    let several = d
        .threads
        .iter()
        .any(|t| t.interpreter_id.is_some_and(|i| Some(i) != first_interp));
    let mut done = vec![false; d.threads.len()];
    for (i, t) in d.threads.iter().enumerate() {
        if done[i] {
            continue;
        }
        let mut same = Vec::new();
        if condense && !t.holds_gil && !t.is_main {
            let k = key(t);
            for (j, u) in d.threads.iter().enumerate().skip(i + 1) {
                if !done[j] && !u.holds_gil && !u.is_main && key(u) == k {
                    done[j] = true;
                    same.push(u);
                }
            }
        }
        writeln!(out)?;
        write_thread(out, t, &st, interpreter_label(d, t, several).as_deref())?;
        if !same.is_empty() {
            let ids: Vec<String> = same
                .iter()
                .map(|u| u.native_id.map_or("?".into(), |n| n.to_string()))
                .collect();
            writeln!(
                out,
                "    {}",
                st.paint(
                    "2",
                    &format!(
                        "(and {} more threads with this stack: {})",
                        same.len(),
                        ids.join(", ")
                    )
                )
            )?;
        }
    }
    Ok(())
}

/// Which interpreter `t` belongs to, when the process has several; for an
/// OS thread that runs a subinterpreter (a thread state in each), which
/// way it went.
fn interpreter_label(d: &StackDump, t: &ThreadStack, several: bool) -> Option<String> {
    let id = t.interpreter_id?;
    if !several {
        return None;
    }
    let same: Vec<i64> = d
        .threads
        .iter()
        .filter(|u| t.native_id.is_some() && u.native_id == t.native_id)
        .filter_map(|u| u.interpreter_id)
        .filter(|&u| u != id)
        .collect();
    let mut label = format!("interpreter {id}");
    if let Some(inner) = same.iter().filter(|&&u| u > id).max() {
        label.push_str(&format!(", now running interpreter {inner}"));
    } else if let Some(outer) = same.iter().max() {
        label.push_str(&format!(", entered from interpreter {outer}"));
    }
    Some(label)
}

fn write_thread(
    out: &mut impl Write,
    t: &ThreadStack,
    st: &Style,
    interpreter: Option<&str>,
) -> std::io::Result<()> {
    let mut head = if t.stale {
        "Stale thread state".to_string()
    } else {
        format!(
            "Thread {}",
            t.native_id.map_or("?".into(), |n| n.to_string())
        )
    };
    if let Some(ns) = t.ns_id {
        head.push_str(&format!(" (tid {ns} in its pid namespace)"));
    }
    if let Some(n) = t.name.as_ref().or(t.os_name.as_ref()) {
        head.push_str(&format!(" \"{n}\""));
    }
    if t.is_main {
        head.push_str(" (main)");
    }
    if t.stale {
        head.push_str(
            " (its thread is not in this process: a fork copied it from the parent, \
             where that thread was at the fork)",
        );
    }
    if let Some(i) = interpreter {
        head.push_str(&format!(" ({i})"));
    }
    let mut what = Vec::new();
    if let Some(d) = &t.state.description {
        what.push(field(d).into_owned());
    }
    if let Some(s) = &t.state.syscall {
        what.push(format!("in {}()", field(s)));
    }
    if t.state.waiting_for_gil {
        what.push("waiting for the GIL".into());
    }
    let mut line = st.paint("1", &head);
    if !what.is_empty() {
        line.push_str(&format!(" [{}]", what.join(", ")));
    }
    if t.holds_gil {
        line.push_str(&format!(" {}", st.paint("1;31", "<- holds the GIL")));
    }
    writeln!(out, "{line}")?;
    if t.frames.is_empty() && t.truncated.is_none() {
        writeln!(out, "    (no Python frames)")?;
    }
    for f in &t.frames {
        write_frame(out, f, st, "")?;
    }
    if let Some(why) = &t.truncated {
        writeln!(out, "    {}", st.paint("33", &format!("... {why}")))?;
    }
    Ok(())
}

/// One frame (and its locals), each line after `indent`.
pub(crate) fn write_frame(
    out: &mut impl Write,
    f: &Frame,
    st: &Style,
    indent: &str,
) -> std::io::Result<()> {
    let name = f.qualname.as_deref().unwrap_or(&f.function);
    let loc = match (&f.filename, f.line) {
        (Some(file), Some(l)) => format!("{file}:{l}"),
        (Some(file), None) => file.clone(),
        (None, _) => String::new(),
    };
    match f.kind {
        FrameKind::Python => writeln!(
            out,
            "{indent}    {} ({})",
            st.paint("32", name),
            st.paint("36", &loc)
        )?,
        FrameKind::Native => {
            let at = match (&f.module, &loc) {
                (Some(m), l) if l.is_empty() => format!("({m})"),
                (_, l) => format!("({l})"),
            };
            writeln!(
                out,
                "{indent}    {} {}",
                st.paint("2", name),
                st.paint("2", &at)
            )?
        }
    }
    if let Some(locals) = &f.locals {
        for l in locals {
            let kind = if l.is_arg { "arg" } else { "local" };
            match (&l.repr, &l.type_name) {
                (Some(v), Some(t)) => writeln!(
                    out,
                    "{indent}        {} = {}  ({kind}, {})",
                    field(&l.name),
                    field(v),
                    field(t)
                )?,
                _ => writeln!(out, "{indent}        {}  ({kind}, unbound)", field(&l.name))?,
            }
        }
    }
    Ok(())
}
