//! `pyattach PID` (interactive session) and `pyattach --run CODE PID`.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use inject::run::{ChannelKind, Mode, Options, Runner};

use crate::session;

/// Exit status when the code given to `--run` raised an exception
/// (documented in the README).
pub const EXIT_CODE_RAISED: i32 = 8;

/// Exit status when `--run` code ran past `--timeout` and was stopped (as
/// timeout(1) does; documented in the README).
pub const EXIT_CODE_TIMEOUT: i32 = 124;

/// The wait for a safe point when `--timeout` is not given.
pub const DEFAULT_WAIT: f64 = 5.0;

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("code").args(["run", "run_file"])))]
pub struct Args {
    /// Run CODE inside the target and show its output here.
    ///
    /// The code runs in the target's `__main__` globals, in the thread that
    /// reached a safe point first (or the one given with --thread), so
    /// `breakpoint()` opens pdb, on this terminal, in the frame that thread
    /// was executing. `-` reads the code from stdin. The exit status is 0,
    /// or 8 if the code raised (its traceback is printed).
    #[arg(long, value_name = "CODE", conflicts_with = "run_file")]
    pub run: Option<String>,
    /// Like --run, with the code read from FILE.
    #[arg(long, value_name = "FILE")]
    pub run_file: Option<PathBuf>,
    /// pdb in the frame the thread was executing (also on Python 2.7).
    ///
    /// The thread goes on under the debugger: `n`, `s`, `r` step through
    /// the target's code, breakpoints are hit in any thread, and every
    /// stop comes to this terminal. `q`, `detach`, Ctrl-D, or `c` with no
    /// breakpoint left end the session, and the target runs on with no
    /// trace of pdb; so does pyattach exiting or being killed. `--run
    /// 'breakpoint()'` does the same. Choose the thread with --thread.
    #[arg(long, conflicts_with_all = ["run", "run_file"])]
    pub pdb: bool,
    /// Run the code in this thread (a TID of the target, as `ps -L` or
    /// `pyattach dump` shows), in its context, instead of a thread of its
    /// own; the thread waits for the code meanwhile.
    ///
    /// A target in a pid namespace of its own (a container) is known by
    /// two numbers per thread: the tid this host shows and the one the
    /// target sees (`pyattach dump` shows both); either is taken.
    #[arg(long, value_name = "TID")]
    pub thread: Option<i32>,
    /// How long to wait for a thread of the target to reach a safe point
    /// (default 5). Given with --run, it bounds the code too: code still
    /// running that long after pyattach started is stopped as Ctrl-C
    /// would (KeyboardInterrupt), and the exit status is 124.
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<f64>,
    /// Say how the code got in: strategy, thread, how long the target was
    /// stopped.
    #[arg(long, short)]
    pub verbose: bool,
    /// Escape control characters in what the code and the prompt print.
    ///
    /// By default the output of your own code reaches the terminal as it
    /// would from `python` (colours, `\r` progress bars). With this flag it
    /// is shown as pyattach shows everything else that comes from the
    /// target: `\x1b` instead of an escape character. Stack listings,
    /// names and messages from the target are always escaped.
    #[arg(long)]
    pub escape_output: bool,
    /// Go on where the target's seccomp filters cannot be read.
    ///
    /// Before touching a target under seccomp, pyattach runs its filters
    /// on the syscalls an injection makes and refuses (status 10) if one
    /// would kill the process. Reading them needs CAP_SYS_ADMIN outside any
    /// container; where they cannot be read, pyattach refuses too, unless
    /// this says you know they kill for none of them (Docker's default
    /// profile answers EPERM). Filters it can read are checked regardless.
    #[arg(long)]
    pub trust_seccomp: bool,
    /// Run the --run/--run-file code in PID and then in every Python
    /// process descended from it (a pre-fork server's workers, a pool),
    /// one after another, each one's output under a `==> process PID:
    /// COMMAND LINE <==` line; the exit status is the first failure's.
    #[arg(long, requires = "code", conflicts_with = "thread")]
    pub subprocesses: bool,
    #[command(flatten)]
    pub discovery: crate::target::Discovery,
    /// Process id of the target.
    #[arg(required = true, value_parser = crate::target::pid_arg)]
    pub pid: Option<i32>,
}

pub fn execute(args: Args) -> anyhow::Result<i32> {
    crate::term::set_escape_output(args.escape_output);
    let started = Instant::now();
    let pid = args.pid.context("a PID is required")?;
    let mode = mode_of(&args)?;
    let wait = args.timeout.unwrap_or(DEFAULT_WAIT);
    if !(wait > 0.0 && wait < 1e6) {
        anyhow::bail!("--timeout must be a positive number of seconds");
    }
    crate::target::check_process(pid, crate::target::Command::Run)?;
    attach::install_exit_handlers().context("installing signal handlers")?;
    if args.subprocesses {
        return crate::run_tree::execute(&args, pid, &mode);
    }
    let target = open(&args, pid)?;
    run_in(&args, &target, mode, started)
}

/// What to do in the target, from the arguments: the code (read from
/// stdin or its file now, checked before the target is touched), pdb, or
/// a session.
fn mode_of(args: &Args) -> anyhow::Result<Mode> {
    let mode = match (&args.run, &args.run_file) {
        // Bytes, as the file holds them: the target's compiler reads a
        // coding cookie as it does for any file, and tracebacks name it.
        (Some(c), _) if c == "-" => {
            let mut source = Vec::new();
            std::io::stdin()
                .read_to_end(&mut source)
                .context("reading the code from stdin")?;
            Mode::RunFile {
                path: "<stdin>".into(),
                runner: runner(&String::from_utf8_lossy(&source), args.thread),
                source,
            }
        }
        (Some(c), _) => Mode::Run {
            code: c.clone(),
            runner: runner(c, args.thread),
        },
        (None, Some(f)) => {
            let source = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
            Mode::RunFile {
                path: f.display().to_string(),
                runner: runner(&String::from_utf8_lossy(&source), args.thread),
                source,
            }
        }
        (None, None) => Mode::Repl,
    };
    if let Mode::RunFile { path, source, .. } = &mode {
        check_encoding(path, source)?;
    }
    warn_if_large(&mode);
    Ok(match mode {
        _ if args.pdb => Mode::Pdb,
        Mode::Run { code, .. } if session::starts_pdb(&code) => Mode::Pdb,
        m => m,
    })
}

/// Opens process `pid` with the user's discovery options.
pub fn open(args: &Args, pid: i32) -> anyhow::Result<std::sync::Arc<inject::Target>> {
    Ok(std::sync::Arc::new(
        args.discovery
            .open(pid)
            .map_err(inject::run::RunError::from)
            .with_context(|| format!("running code in process {pid}"))?,
    ))
}

/// Runs `mode` in `target` (its clock, for --timeout, from `started`);
/// the exit status.
pub fn run_in(
    args: &Args,
    target: &std::sync::Arc<inject::Target>,
    mode: Mode,
    started: Instant,
) -> anyhow::Result<i32> {
    let pid = target.leader();
    let wait = args.timeout.unwrap_or(DEFAULT_WAIT);
    let repl = matches!(mode, Mode::Repl);
    // pdb lasts as long as the user wants, and says when it ended (a
    // session closed without that means the target or the channel went).
    let bounded = matches!(
        mode,
        Mode::Run { .. } | Mode::RunFile { .. } | Mode::Manhole { .. }
    );
    // The host's tid, whichever of its ids the user gave.
    let thread = args
        .thread
        .map(|t| crate::target::resolve_thread(target.pid(), t))
        .transpose()?;
    let opts = Options {
        mode,
        thread,
        timeout: Duration::from_secs_f64(wait),
        channel: ChannelKind::Auto,
        trust_seccomp: args.trust_seccomp,
    };
    let (channel, report, leftover) = match inject::run::start_in(target, &opts) {
        Err(e @ inject::run::RunError::NoSafePoint { .. }) => {
            show_stacks_instead(target);
            return Err(e).with_context(|| format!("running code in process {pid}"));
        }
        started => started.with_context(|| format!("running code in process {pid}"))?,
    };
    if args.verbose {
        say_how(&report, target);
    }
    let limit = args
        .timeout
        .filter(|_| bounded)
        .map(|s| started + Duration::from_secs_f64(s));
    let pages: session::Pages = std::sync::Arc::new(std::sync::Mutex::new(Some(leftover)));
    let end = session::drive(channel, repl, target.clone(), limit, pages.clone());
    session::await_leaving();
    // Unmap the injection's pages; if they must stay (a thread still
    // returns through them), they are inert. (Held meanwhile: a SIGTERM
    // now waits for it.)
    let mut slot = pages.lock().unwrap_or_else(|e| e.into_inner());
    match slot.take().map(|l| l.remove(session::PAGES_WAIT)) {
        Some(Ok(Some(pause))) if args.verbose => {
            eprintln!("pyattach: injected pages unmapped (target stopped {pause:.2?})")
        }
        Some(Ok(None)) if args.verbose => {
            eprintln!("pyattach: injected pages left mapped (inert)")
        }
        Some(Err(e)) if args.verbose => eprintln!("pyattach: injected pages left mapped: {e}"),
        _ => {}
    }
    drop(slot);
    let end = end?;
    if args.verbose && bounded {
        eprintln!(
            "pyattach: {}",
            which_thread(&opts.mode, report.tid, target.pid())
        );
    }
    Ok(exit_status(end, wait, pid))
}

/// `-v`: how the code got in, and where the debug symbols came from.
fn say_how(report: &inject::run::Report, target: &inject::Target) {
    eprintln!("pyattach: {}", crate::term::text(&describe(report)));
    let sources: Vec<String> = target
        .interpreter()
        .debug_sources()
        .iter()
        .map(crate::target::source_text)
        .collect();
    let sources = if sources.is_empty() {
        "none (the interpreter's own symbol tables only)".to_string()
    } else {
        sources.join(", ")
    };
    eprintln!(
        "pyattach: debug symbols from {}",
        crate::term::text(&sources)
    );
}

/// The exit status of a session or run that ended as `end`.
fn exit_status(end: session::End, wait: f64, pid: i32) -> i32 {
    match end {
        session::End::TimedOut { stopped } => {
            if stopped {
                eprintln!("pyattach: the code ran past --timeout ({wait}s) and was stopped");
            } else {
                eprintln!(
                    "pyattach: the code ran past --timeout ({wait}s) and did not stop on \
                     KeyboardInterrupt (a long call in C, or code that catches it); it \
                     runs on in the target until it returns (`pyattach dump {pid}` shows \
                     where it is)"
                );
            }
            EXIT_CODE_TIMEOUT
        }
        session::End::Raised => EXIT_CODE_RAISED,
        session::End::Done => 0,
    }
}

/// Code that is not UTF-8 needs a coding declaration (PEP 263), as a file
/// Python runs does; said here, before the target is touched.
fn check_encoding(path: &str, source: &[u8]) -> anyhow::Result<()> {
    if let Err(e) = std::str::from_utf8(source) {
        if !declares_encoding(source) {
            anyhow::bail!(
                "{path} is not valid UTF-8 (byte {} of it) and declares no other encoding \
                 (`# -*- coding: NAME -*-` on its first or second line, PEP 263)",
                e.valid_up_to() + 1
            );
        }
    }
    Ok(())
}

/// A `coding[:=]` comment on the first or second line (PEP 263).
fn declares_encoding(source: &[u8]) -> bool {
    source.split(|&b| b == b'\n').take(2).any(|line| {
        let line = String::from_utf8_lossy(line);
        let line = line.trim_start_matches([' ', '\t', '\x0c']);
        line.starts_with('#')
            && line
                .match_indices("coding")
                .any(|(i, _)| matches!(line.as_bytes().get(i + 6), Some(b':' | b'=')))
    })
}

/// Code of this many bytes or more gets a warning.
const LARGE_CODE: usize = 1 << 20;

/// The target compiles the code while it holds the GIL: its other threads
/// wait that long (22 s for 11.7 MB of simple statements, measured on the
/// 2-core development machine under load).
fn warn_if_large(mode: &Mode) {
    let n = match mode {
        Mode::Run { code, .. } => code.len(),
        Mode::RunFile { source, .. } => source.len(),
        Mode::Repl | Mode::Pdb | Mode::Manhole { .. } => 0,
    };
    if n >= LARGE_CODE {
        eprintln!(
            "pyattach: warning: the code is {:.1} MB; the target compiles it while it holds \
             the GIL, which may stall its other threads for seconds",
            n as f64 / 1e6
        );
    }
}

/// No code can run, so show what the threads are doing instead: the stack
/// dump needs nothing from the target. Best effort; its failure only loses
/// the extra information.
fn show_stacks_instead(target: &inject::Target) {
    let pid = target.leader();
    let Ok(dump) = inject::dump::dump_target(target, &inject::dump::DumpOptions::default()) else {
        return;
    };
    eprintln!("pyattach: no thread reached a safe point; what every thread is doing (pyattach dump {pid}):\n");
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let mut err = std::io::stderr().lock();
    let _ = crate::dump::write_human(&mut err, &dump, colour, true);
    eprintln!();
}

fn describe(r: &inject::run::Report) -> String {
    let stops: Vec<String> = r.stops.iter().map(|d| format!("{d:.2?}")).collect();
    let mut s = format!(
        "{} in thread {}; channel: {}; target stopped {} ({} stops); {:.1?} in all",
        r.strategy,
        r.tid.map_or("?".into(), |t| t.to_string()),
        r.channel,
        stops.join(" + "),
        stops.len(),
        r.elapsed
    );
    let steps: Vec<String> = r
        .steps
        .iter()
        .map(|(n, d)| format!("{n} {d:.2?}"))
        .collect();
    s.push_str(&format!("\npyattach: first stop: {}", steps.join(", ")));
    s.push_str(&format!("\npyattach: hooked: {}", r.hooked.join(", ")));
    if !r.skipped.is_empty() {
        s.push_str(&format!("; not hooked: {}", r.skipped.join(", ")));
    }
    if !r.replaced.is_empty() {
        s.push_str(&format!(
            "\npyattach: replaced a detour left by an earlier pyattach at {}",
            r.replaced.join(", ")
        ));
    }
    if !r.nudged.is_empty() {
        s.push_str(&format!(
            "\npyattach: syscalls cut short (EINTR) in threads {:?}",
            r.nudged
        ));
    }
    if !r.cramped.is_empty() {
        s.push_str(&format!(
            "\npyattach: not run in threads {:?}: too little stack left where they were (the bootstrap wants 256 KiB)",
            r.cramped
        ));
    }
    for b in &r.blocked {
        s.push_str(&format!("\npyattach: {b}"));
    }
    if r.new_thread {
        s.push_str("\npyattach: new-thread fallback started");
    }
    if r.pending_call {
        s.push_str("\npyattach: pending call queued for the main thread");
    }
    s
}

/// Where `--run` code runs. In a thread of its own unless it needs the
/// caught thread's context: `--thread` asks for it, and pdb stops in the
/// frame that thread was executing (`breakpoint()`, `pdb.set_trace()`:
/// found in the text, a call hidden elsewhere in the code gets pdb in the
/// code's own thread instead).
fn runner(code: &str, thread: Option<i32>) -> Runner {
    if thread.is_some() || code.contains("breakpoint(") || code.contains("set_trace(") {
        Runner::Caught
    } else {
        Runner::OwnThread
    }
}

/// For `-v`: which thread ran the code.
fn which_thread(mode: &Mode, caught: Option<i32>, pid: i32) -> String {
    // The target says its own pid namespace's number.
    let ran = session::CODE_TID.load(std::sync::atomic::Ordering::SeqCst);
    let ran = if ran > 0 {
        attach::procinfo::host_tid(pid, ran)
            .unwrap_or(ran)
            .to_string()
    } else {
        "?".into()
    };
    let caught = caught.map_or("?".into(), |t| t.to_string());
    match mode {
        Mode::Run {
            runner: Runner::Caught,
            ..
        }
        | Mode::RunFile {
            runner: Runner::Caught,
            ..
        } => format!("the code ran in thread {ran}, the thread that was caught"),
        _ => format!(
            "the code ran in thread {ran}, a thread of its own (thread {caught}, \
             the one caught, went back to the application once that thread had \
             started and taken the GIL: within 20 ms and a switch interval)"
        ),
    }
}
