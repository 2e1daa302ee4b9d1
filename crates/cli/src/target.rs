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
