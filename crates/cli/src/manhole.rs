//! `pyattach manhole PID`: a persistent prompt socket in the target, and
//! `--stop` to remove it. The listener is the bootstrap's own code
//! (`bootstrap/manhole.py`), run through the same injection as `--run`.

use std::time::Instant;

use anyhow::Context;
use inject::run::Mode;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where the socket goes (a path in the target's filesystem; default
    /// /tmp/manhole-PID, python-manhole's). With --stop: which manhole to
    /// stop (default every one of the process).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<String>,
    /// Stop the manhole instead: its thread and its connections end, its
    /// socket is closed and its file removed.
    #[arg(long)]
    pub stop: bool,
    /// How long to wait for a thread of the target to reach a safe point
    /// (default 5).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<f64>,
    /// Say how the code got in: strategy, thread, how long the target was
    /// stopped.
    #[arg(long, short)]
    pub verbose: bool,
    /// Accept seccomp filters pyattach cannot read, as --run does.
    #[arg(long)]
    pub trust_seccomp: bool,
    #[command(flatten)]
    pub discovery: crate::target::Discovery,
    /// Process id of the target.
    #[arg(value_parser = crate::target::pid_arg)]
    pub pid: i32,
}

pub fn execute(args: Args) -> anyhow::Result<i32> {
    let started = Instant::now();
    // The target's working directory is not this one: a relative path is
    // made absolute here, as the user meant it.
    let socket = match &args.socket {
        Some(p) => Some(
            std::path::absolute(p)
                .with_context(|| format!("--socket {p}"))?
                .to_str()
                .context("--socket must be valid UTF-8")?
                .to_string(),
        ),
        None => None,
    };
    let run = crate::run::Args {
        run: None,
        run_file: None,
        pdb: false,
        thread: None,
        timeout: args.timeout,
        verbose: args.verbose,
        escape_output: false,
        subprocesses: false,
        trust_seccomp: args.trust_seccomp,
        discovery: args.discovery,
        pid: Some(args.pid),
    };
    let wait = run.timeout.unwrap_or(crate::run::DEFAULT_WAIT);
    if !(wait > 0.0 && wait < 1e6) {
        anyhow::bail!("--timeout must be a positive number of seconds");
    }
    attach::install_exit_handlers().context("installing signal handlers")?;
    let target = crate::run::open(&run, args.pid)?;
    let mode = Mode::Manhole {
        socket,
        stop: args.stop,
    };
    // The target said what failed (on stderr): a plain failure.
    match crate::run::run_in(&run, &target, mode, started)? {
        crate::run::EXIT_CODE_RAISED => Ok(1),
        code => Ok(code),
    }
}
