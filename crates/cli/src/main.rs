//! `pyattach`: get into a running, unprepared CPython process.
#![forbid(unsafe_code)]

mod debuginfod;
mod dump;
mod dump_tree;
mod errors;
mod info;
mod manhole;
mod run;
mod run_tree;
mod session;
mod target;
mod term;

use clap::{Parser, Subcommand};

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
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Info(args)) => info::execute(args),
        Some(Command::Dump(args)) => dump::execute(args),
        Some(Command::Manhole(args)) => manhole::execute(args),
        None => run::execute(cli.run),
    };
    std::process::exit(errors::finish(result));
}
