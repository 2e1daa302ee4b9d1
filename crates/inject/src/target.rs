//! The process a command works on, opened once: which process the pid
//! names, and the interpreter found in it with the user's discovery
//! options (`--debug-dir`, a debuginfod fetcher). `dump`, `--run`, Ctrl-C
//! of blocked code and the stacks shown when no thread reaches a safe
//! point all use the one `Target`, so each finds the same symbols and
//! none discovers again.

use std::sync::Arc;

use symbols::{DiscoverOptions, Interpreter};

/// Why a process could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Discovery failed (the cause says why; kept in the chain so the CLI
    /// maps it to its exit code).
    #[error("cannot find the interpreter")]
    Discover(#[source] symbols::Error),
    /// The process is gone, or cannot be read.
    #[error("cannot read the process")]
    Attach(#[source] attach::Error),
}

impl OpenError {
    /// The exit status its cause declares.
    pub fn exit_code(&self) -> i32 {
        match self {
            OpenError::Discover(e) => e.exit_code(),
            OpenError::Attach(e) => e.exit_code(),
        }
    }
}

/// A CPython process, as discovered once.
pub struct Target {
    /// The pid as the user gave it.
    leader: i32,
    /// The pid it is read through: the leader, or a live thread of it when
    /// the main thread has exited (`pthread_exit`) while others run on
    /// (its `/proc/TID` has the memory, maps and descriptors the zombie
    /// leader's has not).
    pid: i32,
    /// Which process `pid` named when it was opened: discovery takes
    /// milliseconds, and the pid could be another process's by the time
    /// it is attached.
    identity: attach::procinfo::Identity,
    /// Shared with the work done beside the main line (the nudge proof's
    /// preparation runs on a thread of its own).
    py: Arc<Interpreter>,
    /// When opening began: a command's deadlines count discovery in.
    opened_at: std::time::Instant,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("leader", &self.leader)
            .field("pid", &self.pid)
            .field("py", &self.py)
            .finish_non_exhaustive()
    }
}

impl Target {
    /// Finds the interpreter of process `pid` with `opts`.
    pub fn open(pid: i32, opts: &DiscoverOptions) -> Result<Target, OpenError> {
        let opened_at = std::time::Instant::now();
        let leader = pid;
        let pid = attach::procinfo::live_member(pid).unwrap_or(pid);
        let identity = attach::procinfo::Identity::of(pid).map_err(OpenError::Attach)?;
        let py = Arc::new(symbols::discover(pid, opts).map_err(OpenError::Discover)?);
        Ok(Target {
            leader,
            pid,
            identity,
            py,
            opened_at,
        })
    }

    /// The pid the process is read and attached through.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The pid as the user gave it.
    pub fn leader(&self) -> i32 {
        self.leader
    }

    pub fn interpreter(&self) -> &Interpreter {
        &self.py
    }

    /// The interpreter, for work on another thread.
    pub(crate) fn shared_interpreter(&self) -> Arc<Interpreter> {
        self.py.clone()
    }

    /// Fails if the pid no longer names the process that was opened.
    pub fn check_identity(&self) -> attach::Result<()> {
        self.identity.check()
    }

    /// When opening began (before discovery).
    pub fn opened_at(&self) -> std::time::Instant {
        self.opened_at
    }

    /// The identity recorded when the process was opened.
    pub(crate) fn identity(&self) -> &attach::procinfo::Identity {
        &self.identity
    }
}
