//! A prompt that ended without the user leaving it: the target process
//! exited, or its side of the session stopped. Said, with its own exit
//! status, so a script driving `pyattach PID` never takes it for success.

/// Exit status of a session that ended without the user leaving it
/// (documented in the README).
pub const EXIT_CODE_LOST: i32 = 9;

#[derive(Debug)]
pub struct Lost {
    why: String,
}

impl Lost {
    /// Why the session with `pid` ended, as far as /proc tells.
    pub fn new(pid: i32, err: Option<&std::io::Error>) -> Lost {
        let gone = exiting(pid);
        let why = if gone {
            format!("the target process {pid} exited")
        } else {
            match err {
                Some(e) => format!("the channel to the target broke ({e})"),
                None => "the target closed it (its side of the session stopped)".into(),
            }
        };
        Lost { why }
    }
}

/// True if `pid` is gone, a zombie, or on its way out: the channel closes
/// as the exiting process's descriptors are released, before it turns into
/// a zombie, and by then every thread of it has `PF_EXITING` (0x4, the
/// flags field of /proc/PID/stat) set.
fn exiting(pid: i32) -> bool {
    const PF_EXITING: u64 = 0x4;
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    // After the command's closing paren: state, ppid, pgrp, session,
    // tty_nr, tpgid, flags.
    let rest: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let state = rest.first().copied().unwrap_or("");
    let flags = rest.get(6).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    matches!(state, "Z" | "X" | "x") || flags & PF_EXITING != 0
}

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the session ended before you left it: {}", self.why)
    }
}

impl std::error::Error for Lost {}
