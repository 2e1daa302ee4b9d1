//! Opening the target once per command, with the user's discovery options:
//! `--debug-dir` and debuginfod (`DEBUGINFOD_URLS`, unless
//! `--no-debuginfod`). `info`, `dump` and `--run` (its Ctrl-C and the
//! stacks shown when no thread reaches a safe point included) find the
//! same symbols the same way.

use std::path::PathBuf;

use symbols::DiscoverOptions;

use crate::debuginfod;

/// Where symbols are looked for, beyond the interpreter's own file.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Discovery {
    /// Directory searched for build-id and debuglink debug files, instead of
    /// /usr/lib/debug (repeatable; inside the target's root first, then here).
    #[arg(long = "debug-dir", value_name = "DIR")]
    pub debug_dirs: Vec<PathBuf>,
    /// Never ask a debuginfod server, even with DEBUGINFOD_URLS set.
    #[arg(long)]
    pub no_debuginfod: bool,
}

impl Discovery {
    /// The options for `symbols::discover`, and the debuginfod client they
    /// hold (for its log), if one is configured.
    pub fn options(&self) -> (DiscoverOptions, Option<debuginfod::Client>) {
        let client = if self.no_debuginfod {
            None
        } else {
            debuginfod::Client::from_env()
        };
        let mut opts = DiscoverOptions::default();
        if !self.debug_dirs.is_empty() {
            opts.debug_dirs = self.debug_dirs.clone();
        }
        opts.debuginfod = client.clone().map(debuginfod::Client::fetcher);
        (opts, client)
    }

    /// Opens process `pid`.
    pub fn open(&self, pid: i32) -> Result<inject::Target, inject::OpenError> {
        inject::Target::open(pid, &self.options().0)
    }
}

/// An id given where a process id is expected, or with `--thread`, that
/// does not name what it must: exit status 2, as for any usage error.
/// Said before anything touches the target.
#[derive(Debug)]
pub enum WrongId {
    /// A thread's id (as `ps -L` and `pyattach dump` show them) given as
    /// the pid: `/proc/TID` answers as if it were a process, so without
    /// this check a command would work on the whole process through it
    /// and call that thread its main one.
    ThreadGiven {
        tid: i32,
        pid: i32,
        /// What to run instead.
        advice: String,
    },
    /// `--thread TID` names no thread of the process.
    NoSuchThread { tid: i32, pid: i32 },
}

impl std::fmt::Display for WrongId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WrongId::ThreadGiven { tid, pid, advice } => write!(
                f,
                "{tid} is a thread of process {pid}, not a process; {advice}"
            ),
            WrongId::NoSuchThread { tid, pid } => write!(
                f,
                "process {pid} has no thread {tid} (`pyattach dump {pid}` lists its threads, \
                 each with the id --thread takes)"
            ),
        }
    }
}

impl std::error::Error for WrongId {}

/// A process id on the command line: a positive number (`0` and `-5` are
/// no process's: kill(2) and waitpid(2) read them as process groups).
pub fn pid_arg(s: &str) -> Result<i32, String> {
    match s.parse::<i32>() {
        Ok(pid) if pid > 0 => Ok(pid),
        Ok(_) => Err("a process id is a positive number".into()),
        Err(e) => Err(format!("not a process id: {e}")),
    }
}

/// The commands a thread's id may be given to by mistake, for the advice.
#[derive(Clone, Copy, Debug)]
pub enum Command {
    Run,
    Dump,
    Info,
}

/// Fails if `id` names a thread that is not a process's main thread: the
/// message says whose thread it is and the command line meant.
pub fn check_process(id: i32, command: Command) -> Result<(), WrongId> {
    let Some(pid) = attach::procinfo::process_of_thread(id) else {
        return Ok(());
    };
    let advice = match command {
        Command::Run => format!(
            "use `--thread {id} {pid}` to run in that thread (or `{pid}` alone for any thread)"
        ),
        Command::Dump => format!("use `pyattach dump {pid}` (thread {id} is among its threads)"),
        Command::Info => format!("use `pyattach info {pid}`"),
    };
    Err(WrongId::ThreadGiven {
        tid: id,
        pid,
        advice,
    })
}

/// The thread of process `pid` that `--thread ID` names: `ID` as `ps -L`
/// on this host shows it, or as the target itself sees it (its own pid
/// namespace); the host's tid, which pyattach works with.
pub fn resolve_thread(pid: i32, id: i32) -> Result<i32, WrongId> {
    attach::procinfo::find_thread(pid, id)
        .map(|(tid, _)| tid)
        .ok_or(WrongId::NoSuchThread { tid: id, pid })
}

/// Where the interpreter's symbols came from, in chain order (`-v`,
/// `info`).
pub fn source_text(s: &symbols::SymbolSource) -> String {
    use symbols::SymbolSource;
    match s {
        SymbolSource::DynSym => ".dynsym".into(),
        SymbolSource::SymTab => ".symtab".into(),
        SymbolSource::GnuDebugData => ".gnu_debugdata (MiniDebugInfo)".into(),
        SymbolSource::BuildIdFile(p) => format!("build-id file {}", p.display()),
        SymbolSource::DebugLink(p) => format!("debuglink {}", p.display()),
        SymbolSource::Debuginfod(p) => format!("debuginfod {}", p.display()),
    }
}
