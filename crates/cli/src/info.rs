//! `pyattach info PID`.

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Process id of the target.
    pub pid: i32,
}

pub fn execute(args: Args) -> anyhow::Result<i32> {
    anyhow::bail!("info for {} is not implemented yet", args.pid)
}
