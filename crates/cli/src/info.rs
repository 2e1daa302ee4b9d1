//! `pyattach info PID`: what was found in the process (Python version and
//! build, binaries, each symbol pyattach needs with its address and where it
//! came from, call sites of the safe points, threads) and whether pyattach
//! may ptrace it, with the reason and the fix when not. Reads only: nothing
//! is stopped or written in the target.

use anyhow::Context;
use attach::permissions::{self, Verdict};
use attach::procinfo::{self, ThreadInfo};
use inject::callsites::{self, CallSites};
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;
use symbols::{Interpreter, Module, PyVersion, Symbol, SymbolSource};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Process id of the target.
    #[arg(value_parser = crate::target::pid_arg)]
    pub pid: i32,
    /// Print a JSON document (format version 1) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also resolve this symbol and show where it came from (repeatable).
    #[arg(long = "symbol", value_name = "NAME")]
    pub symbols: Vec<String>,
    #[command(flatten)]
    pub discovery: crate::target::Discovery,
}

/// The kernel will not let us read the process: the diagnosis says why.
#[derive(Debug)]
pub struct Denied {
    pub pid: i32,
    pub verdict: Verdict,
}

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "permission denied to inspect process {}", self.pid)?;
        for d in &self.verdict.denials {
            write!(f, "\n  why: {}\n  fix: {}", d.reason(), d.fix())?;
        }
        for w in &self.verdict.warnings {
            write!(f, "\n  note: {}\n  fix:  {}", w.reason(), w.fix())?;
        }
        if self.verdict.denials.is_empty() {
            write!(f, "\n  why: the kernel refused (a security module or another user namespace); try sudo")?;
        }
        Ok(())
    }
}

impl std::error::Error for Denied {}

/// One symbol pyattach needs.
#[derive(Serialize)]
struct NeededSymbol {
    name: String,
    /// What it is used for.
    role: &'static str,
    #[serde(flatten)]
    found: Option<Symbol>,
}

/// The whole report; `--json` prints exactly this.
#[derive(Serialize)]
/// Format version 1; fields are only ever added within a version.
struct Report {
    /// 1.
    format_version: u32,
    /// The pid as pyattach sees it.
    pid: i32,
    /// The pid in each nested pid namespace, outermost first (`NSpid`); in a
    /// container the last one is what the program itself sees.
    nspid: Vec<i32>,
    /// The target lives in other mount/pid namespaces than pyattach (a
    /// container): its files are read through `/proc/PID/root`.
    in_container: bool,
    /// `comm` of the process.
    command: String,
    /// Version, how it was detected and every method's answer.
    version: PyVersion,
    build: symbols::BuildInfo,
    /// What pyattach cannot do with this interpreter and why, in words
    /// (a version newer than it knows, a free-threaded or debug build);
    /// empty when every command is supported.
    support: Vec<String>,
    /// The process's executable, as a path in its own file system.
    executable: PathBuf,
    /// The module holding the interpreter: path, load address and bias,
    /// build id.
    interpreter_module: Module,
    /// Each symbol pyattach needs: name, role, and when found `addr`,
    /// `file_addr`, `size`, `is_function` and `source` (`kind`: `dyn_sym`,
    /// `sym_tab`, `gnu_debug_data`, `build_id_file`, `debug_link`,
    /// `debuginfod`; `path` for files).
    symbols: Vec<NeededSymbol>,
    /// Call sites of each safe-point function in the interpreter's module.
    call_sites: Vec<CallSiteReport>,
    /// The debug sources found for the interpreter's module, in chain order.
    debug_sources: Vec<SymbolSource>,
    /// Mapped files of the target's that were not read, each with why (a
    /// FIFO, a file replaced since it was mapped, …).
    refused_files: Vec<String>,
    /// Every thread: tid, name, state, kernel wait channel.
    threads: Vec<ThreadInfo>,
    /// Whether pyattach may ptrace the target; if not, `denials` with
    /// reasons (the human output adds the fixes).
    ptrace: Verdict,
    /// Each denial and warning of `ptrace` in words: `reason` and `fix`.
    ptrace_advice: Vec<Advice>,
    /// What the debuginfod client did (empty when not configured).
    debuginfod: Vec<String>,
    /// The seccomp state of the process's threads.
    seccomp: Seccomp,
}

/// Seccomp, from `/proc/PID/task/*/status` (each thread has its own).
#[derive(Serialize, Default)]
struct Seccomp {
    /// The strictest mode of any thread: 0 none, 1 strict, 2 filter.
    mode: u32,
    /// The most filters any thread has (`Seccomp_filters:`, Linux 5.9+).
    filters: u32,
    /// How many threads run under seccomp, of how many.
    threads: usize,
    of_threads: usize,
    /// `NoNewPrivs:` of the main thread.
    no_new_privs: bool,
}

impl Seccomp {
    fn of(pid: i32, threads: &[ThreadInfo], main: &procinfo::ProcStatus) -> Seccomp {
        let mut s = Seccomp {
            of_threads: threads.len(),
            no_new_privs: main.no_new_privs,
            ..Seccomp::default()
        };
        for t in threads {
            let Ok(st) = procinfo::task_status(pid, t.tid) else {
                continue;
            };
            if st.seccomp != 0 {
                s.threads += 1;
                s.mode = s.mode.max(st.seccomp);
                s.filters = s.filters.max(st.seccomp_filters);
            }
        }
        s
    }

    /// The human line.
    fn text(&self) -> String {
        let mode = match self.mode {
            0 => return "none".into(),
            1 => "strict mode: --run refused (any other syscall than read, write, exit, sigreturn kills the process)".to_string(),
            _ => format!(
                "filter ({} filter{}{}): --run reads them first and refuses if one could kill the process (reading them needs CAP_SYS_ADMIN)",
                self.filters,
                if self.filters == 1 { "" } else { "s" },
                if self.no_new_privs { ", no_new_privs" } else { "" },
            ),
        };
        format!("{} of {} threads, {mode}", self.threads, self.of_threads)
    }
}

#[derive(Serialize)]
struct Advice {
    reason: String,
    fix: String,
}

/// Whether `pid` lives in other mount or pid namespaces than we do.
fn in_container(pid: i32) -> bool {
    ["mnt", "pid"].iter().any(|ns| {
        let theirs = std::fs::read_link(format!("/proc/{pid}/ns/{ns}"));
        let ours = std::fs::read_link(format!("/proc/self/ns/{ns}"));
        matches!((theirs, ours), (Ok(a), Ok(b)) if a != b)
    })
}

#[derive(Serialize)]
struct CallSiteReport {
    function: &'static str,
    #[serde(flatten)]
    found: Option<CallSites>,
    error: Option<String>,
}

/// What pyattach cannot do with `py`, each named with what is missing.
fn support_notes(py: &Interpreter) -> Vec<String> {
    let (v, b) = (&py.version, &py.build);
    let mut out = Vec::new();
    if v.is_newer_than_known() {
        out.push(format!(
            "Python {}.{} is newer than this pyattach knows (2.7, 3.6 to 3.15): dump lacks its \
             struct layouts (its _Py_DebugOffsets layout, the per-version rows); --run and the \
             prompt need none and are tried",
            v.major, v.minor
        ));
    }
    if b.free_threaded {
        out.push(
            "a free-threaded build (Py_GIL_DISABLED): not supported yet (dump needs its struct \
             layouts, --run relies on the GIL)"
                .to_string(),
        );
    }
    if b.debug_build && !b.free_threaded {
        // 3.13+ describe their own layout (`_Py_DebugOffsets`), and
        // without Py_TRACE_REFS the rest matches the release build's.
        out.push(if (v.major, v.minor) >= (3, 13) {
            "a debug build: dump reads it through its own _Py_DebugOffsets; --run works".to_string()
        } else {
            "a debug build: dump does not know its struct layouts; --run works".to_string()
        });
    }
    out
}

/// Functions whose call sites decide whether the entry hook can fire.
const SAFE_POINTS: &[&str] = inject::catalogue::SAFE_POINTS;

/// Call sites decoded per safe point: a few prove that real calls exist;
/// decoding all would cost tens of milliseconds.
const VERIFY_LIMIT: usize = 8;

pub fn execute(args: Args) -> anyhow::Result<i32> {
    let pid = args.pid;
    let status = match procinfo::status(pid) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(symbols::Error::NoSuchProcess(pid).into())
        }
        Err(e) => return Err(e).context(format!("reading /proc/{pid}/status")),
    };
    crate::target::check_process(pid, crate::target::Command::Info)?;
    // A main thread that exited while others run on leaves a zombie
    // leader: the process is read through a thread that runs.
    let Some(via) = procinfo::live_member(pid) else {
        return Err(symbols::Error::Zombie(pid).into());
    };
    let verdict = permissions::diagnose(pid).context("checking ptrace permissions")?;

    let (opts, client) = args.discovery.options();
    let py = match symbols::discover(via, &opts) {
        Ok(py) => py,
        Err(symbols::Error::Proc { source, .. })
            if source.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            return Err(Denied { pid, verdict }.into())
        }
        Err(e) => return Err(e.into()),
    };

    let asked = args.symbols.iter().map(|n| (n.as_str(), "asked for"));
    let symbols = inject::catalogue::needed(py.version.short())
        .into_iter()
        .chain(asked)
        .map(|(name, role)| NeededSymbol {
            name: name.to_string(),
            role,
            found: py.symbol(name),
        })
        .collect();
    let call_sites = SAFE_POINTS
        .iter()
        .zip(callsites::find_many(
            &py,
            &py.module,
            SAFE_POINTS,
            Some(VERIFY_LIMIT),
        ))
        .map(|(&function, r)| match r {
            Ok(c) => CallSiteReport {
                function,
                found: Some(c),
                error: None,
            },
            Err(e) => CallSiteReport {
                function,
                found: None,
                error: Some(e.to_string()),
            },
        })
        .collect();
    let threads = procinfo::threads(pid).unwrap_or_default();
    let report = Report {
        format_version: 1,
        pid,
        nspid: status.nspid.clone(),
        in_container: in_container(pid),
        command: status.name.clone(),
        version: py.version.clone(),
        support: support_notes(&py),
        build: py.build.clone(),
        executable: py.executable.clone(),
        interpreter_module: py.module.clone(),
        symbols,
        call_sites,
        debug_sources: py.debug_sources(),
        refused_files: py.refused.clone(),
        seccomp: Seccomp::of(pid, &threads, &status),
        threads,
        ptrace_advice: verdict
            .denials
            .iter()
            .map(|d| Advice {
                reason: d.reason(),
                fix: d.fix(),
            })
            .chain(verdict.warnings.iter().map(|w| Advice {
                reason: w.reason(),
                fix: w.fix(),
            }))
            .collect(),
        ptrace: verdict,
        debuginfod: match client {
            Some(c) if c.log().is_empty() => {
                vec![format!("{} (not needed)", c.urls().join(" "))]
            }
            Some(c) => c.log(),
            None => Vec::new(),
        },
    };
    let mut out = std::io::stdout().lock();
    let written = if args.json {
        crate::term::write_json(&mut out, &report)
    } else {
        // Paths, `comm`, symbol and thread names come from the target.
        render(&mut crate::term::Escaping(&mut out), &report, &py)
    };
    match written {
        Ok(()) => Ok(0),
        // A closed pipe (`| head`) is a normal end.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(0),
        Err(e) => Err(e.into()),
    }
}

fn render(w: &mut impl Write, r: &Report, py: &Interpreter) -> std::io::Result<()> {
    const L: usize = 12;
    let ns = match r.nspid.last() {
        Some(inner) if r.nspid.len() > 1 => format!(", pid {inner} in its namespace"),
        _ => String::new(),
    };
    let container = if r.in_container {
        "; in a container: files read through /proc/PID/root"
    } else {
        ""
    };
    writeln!(
        w,
        "{:L$}{} ({}{ns}){container}",
        "Process", r.pid, r.command
    )?;
    let v = &r.version;
    let checks: Vec<String> = v
        .checks
        .iter()
        .map(|c| {
            let how = match c.source {
                symbols::VersionSource::PyVersionSymbol => "Py_Version",
                symbols::VersionSource::VersionString => "version string",
                symbols::VersionSource::FileName => "file name",
            };
            if c.source == v.detected_by {
                how.to_string()
            } else if c.agrees {
                format!("{how} agrees")
            } else {
                format!("{how} says {} (disagrees)", c.found)
            }
        })
        .collect();
    writeln!(
        w,
        "{:L$}CPython {}  (from {})",
        "Python",
        v,
        checks.join(", ")
    )?;
    writeln!(
        w,
        "{:L$}{}, {} build",
        "Build",
        if r.build.shared_library {
            "shared libpython"
        } else {
            "interpreter in the executable"
        },
        match (r.build.debug_build, r.build.free_threaded) {
            (false, false) => "release",
            (true, false) => "debug",
            (false, true) => "free-threaded",
            (true, true) => "free-threaded debug",
        }
    )?;
    for note in &r.support {
        writeln!(w, "{:L$}{note}", "Support")?;
    }
    writeln!(w, "{:L$}{}", "Executable", r.executable.display())?;
    let m = &r.interpreter_module;
    writeln!(w, "{:L$}{}", "Interpreter", m.path.display())?;
    writeln!(
        w,
        "{:L$}loaded at {}, load bias {:#x}, build id {}",
        "",
        m.base,
        m.load_bias,
        m.build_id.as_deref().unwrap_or("(none)")
    )?;

    let debug: Vec<String> = r
        .debug_sources
        .iter()
        .map(crate::target::source_text)
        .collect();
    writeln!(
        w,
        "{:L$}{}",
        "Debug info",
        if debug.is_empty() {
            "none beyond the module's own symbol tables".to_string()
        } else {
            debug.join("; ")
        }
    )?;

    for (i, why) in r.refused_files.iter().enumerate() {
        writeln!(w, "{:L$}{why}", if i == 0 { "Refused" } else { "" })?;
    }

    writeln!(w, "\nSymbols")?;
    let width = r.symbols.iter().map(|s| s.name.len()).max().unwrap_or(0);
    for s in &r.symbols {
        match &s.found {
            Some(f) => writeln!(
                w,
                "  {:width$}  {:>14}  {:<28}  {}",
                s.name,
                f.addr.to_string(),
                s.role,
                crate::target::source_text(&f.source)
            )?,
            None => writeln!(w, "  {:width$}  {:>14}  {}", s.name, "not found", s.role)?,
        }
    }

    writeln!(w, "\nSafe points (call sites in {})", m.file_name())?;
    for c in &r.call_sites {
        let text = match (&c.found, &c.error) {
            (Some(cs), _) if cs.inlined_away() => {
                "no call site in this module (inlined away or unused)".to_string()
            }
            (Some(cs), _) => {
                let plural =
                    |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
                let mut t = format!(
                    "{} ({} decoded: {}, {})",
                    plural(cs.sites.len() + cs.unverified, "call site"),
                    cs.sites.len(),
                    plural(cs.calls(), "call"),
                    plural(cs.sites.len() - cs.calls(), "tail jump")
                );
                if let Some(p) = cs.plt_entry {
                    t += &format!(" (PLT entry {p})");
                }
                t
            }
            (None, Some(e)) => e.clone(),
            (None, None) => String::new(),
        };
        writeln!(w, "  {:width$}  {}", c.function, text)?;
    }

    writeln!(w, "\nThreads ({})", r.threads.len())?;
    let nw = r
        .threads
        .iter()
        .map(|t| t.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    // A target in a pid namespace of its own knows its threads by other
    // numbers: both are shown (`--thread` takes either).
    let ns = r.threads.iter().any(|t| t.ns_tid != t.tid);
    let ns_col = |v: String| {
        if ns {
            format!("  {v:>8}")
        } else {
            String::new()
        }
    };
    writeln!(
        w,
        "  {:>8}{}  {:nw$}  {:12}  waiting in",
        "tid",
        ns_col("ns tid".into()),
        "name",
        "state"
    )?;
    for t in &r.threads {
        writeln!(
            w,
            "  {:>8}{}  {:nw$}  {:12}  {}",
            t.tid,
            ns_col(t.ns_tid.to_string()),
            t.name,
            t.state_name,
            t.wchan.as_deref().unwrap_or("")
        )?;
    }

    writeln!(w)?;
    let p = &r.ptrace;
    let who = format!(
        "uid {}{}; Yama {}",
        p.tracer.uids[1],
        if p.tracer.cap_sys_ptrace {
            " with CAP_SYS_PTRACE"
        } else {
            ""
        },
        match p.tracer.yama_ptrace_scope {
            Some(s) => format!("ptrace_scope {s}"),
            None => "not present".into(),
        }
    );
    if p.allowed {
        writeln!(w, "{:L$}allowed ({who})", "ptrace")?;
    } else {
        writeln!(w, "{:L$}NOT allowed ({who})", "ptrace")?;
        for d in &p.denials {
            writeln!(w, "  why: {}\n  fix: {}", d.reason(), d.fix())?;
        }
    }
    for warn in &p.warnings {
        writeln!(w, "  note: {}\n  fix:  {}", warn.reason(), warn.fix())?;
    }
    writeln!(w, "{:L$}{}", "seccomp", r.seccomp.text())?;
    for line in &r.debuginfod {
        writeln!(w, "{:L$}{line}", "debuginfod")?;
    }
    let _ = py;
    Ok(())
}
