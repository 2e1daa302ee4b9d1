//! `pyattach`: get into a running, unprepared CPython process.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};

/// Get into a running, unprepared CPython process: a REPL, `--run CODE`, pdb,
/// or a stack dump read from memory.
#[derive(Parser, Debug)]
#[command(name = "pyattach", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show what was found in the process: Python version, binaries, symbols.
    Info {
        /// Process id of the target.
        pid: i32,
    },
}

fn main() {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Info { pid }) => {
            eprintln!("pyattach: info for {pid} is not implemented yet");
            std::process::exit(1);
        }
        None => {
            eprintln!("pyattach: nothing to do (see --help)");
            std::process::exit(2);
        }
    }
}
