//! `pyattach`: get into a running, unprepared CPython process.
#![forbid(unsafe_code)]

mod debuginfod;
mod dump;
mod dump_tasks;
mod dump_tree;
mod errors;
mod info;
mod manhole;
mod run;
mod run_tree;
mod session;
mod target;
mod term;

use clap::{CommandFactory, Parser, Subcommand};

/// Get into a running, unprepared CPython process: an interactive prompt
/// inside it (`pyattach PID`), code run in it (`--run`), pdb, or a stack dump
/// read from memory (`dump`).
#[derive(Parser, Debug)]
#[command(
    name = "pyattach",
    version,
    about,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    #[command(flatten)]
    run: run::Args,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show what was found in the process: Python version, binaries, symbols
    /// and where each came from, threads, and whether pyattach may attach.
    Info(info::Args),
    /// Print every thread's Python stack, read from memory without running
    /// any code in the target.
    Dump(dump::Args),
    /// Leave a prompt socket in the process (python-manhole's); --stop
    /// removes it.
    ///
    /// Prints the socket's path. `socat - unix-connect:PATH` or `nc -N -U
    /// PATH` reach it again and again, several at once, with no ptrace
    /// rights: each connection gets every thread's stack, then a prompt
    /// over the target's `__main__`. Only the process's user and root may
    /// connect (file mode 0600, SO_PEERCRED).
    Manhole(manhole::Args),
    /// Print a completion script for SHELL, e.g.
    /// `pyattach completions bash > /etc/bash_completion.d/pyattach`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print pyattach's man page (roff), e.g. `pyattach man | man -l -`.
    Man,
}

/// Writes what `completions` and `man` generate from the clap definitions.
/// Generated into memory first: clap_complete panics on a failed write,
/// and a closed pipe (`| head`) is a clean exit.
fn generate(command: &Command) -> anyhow::Result<i32> {
    use std::io::Write;
    let mut cmd = Cli::command();
    let mut text = Vec::new();
    match command {
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut cmd, "pyattach", &mut text);
        }
        _ => clap_mangen::Man::new(cmd).render(&mut text)?,
    }
    match std::io::stdout().lock().write_all(&text) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(0),
    }
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Info(args)) => info::execute(args),
        Some(Command::Dump(args)) => dump::execute(args),
        Some(Command::Manhole(args)) => manhole::execute(args),
        Some(c @ (Command::Completions { .. } | Command::Man)) => generate(&c),
        None => run::execute(cli.run),
    };
    std::process::exit(errors::finish(result));
}
