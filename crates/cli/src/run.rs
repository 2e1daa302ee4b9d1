//! `pyattach PID` (interactive session) and `pyattach --run CODE PID`.

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Python code to run inside the target.
    #[arg(long)]
    pub run: Option<String>,
    /// Process id of the target.
    #[arg(required = true)]
    pub pid: Option<i32>,
}

pub fn execute(args: Args) -> anyhow::Result<i32> {
    anyhow::bail!("sessions in {:?} are not implemented yet", args.pid)
}
