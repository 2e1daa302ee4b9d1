//! `dump --core`: the same walk as a live dump, over a core file's memory
//! (a crash's or `gcore`'s), with the threads' registers and signals from
//! its notes instead of `/proc` and ptrace.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use symbols::{CoreFile, DiscoverOptions};

use super::mem::Memory;
use super::procfs::{self, KernelThread};
use super::{native, walk, DumpError, DumpOptions, StackDump, ThreadState};

/// Where the files a core names are, when not where it says.
#[derive(Clone, Debug, Default)]
pub struct CoreFiles {
    /// The program's executable (the core names it; a copy elsewhere, or
    /// the build the core came from).
    pub exe: Option<PathBuf>,
    /// The directory that stands for the crashed process's `/`: a
    /// container's image, a chroot, a copy of the machine's files.
    pub root: Option<PathBuf>,
}

impl Memory for CoreFile {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), String> {
        CoreFile::read(self, addr, buf)
    }
}

/// Dumps every Python thread of the process saved in `core_path`.
pub fn dump_core(
    core_path: &Path,
    files: &CoreFiles,
    discover: &DiscoverOptions,
    opts: &DumpOptions,
) -> Result<StackDump, DumpError> {
    let mut core = CoreFile::open(core_path).map_err(DumpError::Core)?;
    if let Some(root) = &files.root {
        core.set_root(root.clone());
    }
    let interp = symbols::discover_core(&core, files.exe.as_deref(), discover)
        .map_err(DumpError::Discover)?;
    if opts.tasks {
        super::tasks_readable(&interp, None)?;
    }
    let prep = walk::prepare_with(&interp, &core, kernel_view(&core))?;
    if opts.tasks {
        super::tasks_readable(&interp, Some(&prep))?;
    }
    let unwinder = opts.native.then(|| native::Unwinder::new(&interp));
    let regs: HashMap<i32, native::Regs> = core
        .threads
        .iter()
        .map(|t| (t.tid, native::Regs::from_user_regs(&t.regs)))
        .collect();
    // Thread states are matched to threads by their thread pointer
    // (fs_base, word 21 of the registers), as in a live dump.
    let pointers: walk::ThreadPointers = core.threads.iter().map(|t| (t.regs[21], t.tid)).collect();
    let (mut d, extra) = walk::dump(
        &interp,
        &prep,
        &core,
        opts,
        unwinder.as_ref().map(|u| (u, &regs)),
        Some(&pointers),
    )?;
    super::merge_native(&interp, &mut d, extra);
    d.core = Some(core_path.display().to_string());
    Ok(d)
}

/// What the core says of each thread in place of `/proc`: the system call
/// it was in, and the signal that ended the process on the thread that
/// took it (the kernel writes that thread first, and the signal into every
/// thread's status).
fn kernel_view(core: &CoreFile) -> HashMap<i32, KernelThread> {
    core.threads
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let syscall = (t.syscall() >= 0).then(|| procfs::syscall_name(t.syscall()));
            let description = (i == 0 && t.signal != 0).then(|| {
                let name = attach::Signal::try_from(i32::from(t.signal));
                format!(
                    "took signal {} ({})",
                    t.signal,
                    name.map_or("unknown", |s| s.as_str())
                )
            });
            let state = ThreadState {
                description,
                syscall,
                ..ThreadState::default()
            };
            let k = KernelThread {
                // A core holds the tids as the process's namespace saw them.
                ns_tid: t.tid,
                comm: String::new(),
                state,
                sp: Some(t.regs[19]),
            };
            (t.tid, k)
        })
        .collect()
}
