//! A target under seccomp: before anything is done to it, what its
//! filters answer to the syscalls an injection makes. A filter whose
//! action is KILL (or TRAP: SIGSYS) would kill the target the moment one
//! of them ran, our remote `mmap`/`mprotect` or the bootstrap's
//! `socketpair`; nothing undoes that. So pyattach reads every filtered
//! thread's filters and runs them on those syscalls first
//! ([`attach::Filters`]), and refuses, saying what is forbidden, when one
//! would kill, when it cannot tell (strict mode; filters it cannot read,
//! which needs `CAP_SYS_ADMIN`), or when the detour's pages cannot be
//! made at all. Filters that merely fail a call (EPERM) elsewhere let the
//! attempt go on: it fails cleanly if it must.
//!
//! The list covers what pyattach itself causes; the code the user runs
//! may make other syscalls, as any code in that process would. The
//! caller's `trusted` (the CLI's `--trust-seccomp`) skips the check where
//! the filters cannot be read (a pyattach in a container runs under
//! seccomp itself, and Docker's default profile answers EPERM, never
//! KILL); an option, not the environment, so that nothing inherited can
//! change what pyattach risks.

use attach::Verdict;

use super::error::RunError;

/// The threads of `pid` under seccomp, and their modes (1 strict, 2
/// filter), read before the stop (each thread has its own).
pub(super) fn filtered(pid: i32) -> Vec<(i32, u32)> {
    // One read per thread (its status): with a thousand threads, each
    // more file is milliseconds of wall time.
    let Ok(tids) = attach::procinfo::tids(pid) else {
        return Vec::new();
    };
    tids.into_iter()
        .filter_map(|tid| {
            let st = attach::procinfo::task_status(pid, tid).ok()?;
            (st.seccomp != 0).then_some((tid, st.seccomp))
        })
        .collect()
}

/// What the injection needs to be allowed, with the arguments it passes.
struct Call {
    what: &'static str,
    nr: i64,
    args: [u64; 6],
    /// Without it nothing can be done (else the attempt may still work,
    /// or fail cleanly).
    needed: bool,
}

fn calls() -> Vec<Call> {
    let rx = (libc::PROT_READ | libc::PROT_EXEC) as u64;
    let rw = (libc::PROT_READ | libc::PROT_WRITE) as u64;
    let anon = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
    let fixed_noreplace = 0x10_0000;
    let unix = libc::AF_UNIX as u64;
    let stream = (libc::SOCK_STREAM | libc::SOCK_CLOEXEC) as u64;
    let none = u64::MAX;
    let c = |what, nr, args, needed| Call {
        what,
        nr,
        args,
        needed,
    };
    // pthread_create's clone flags (glibc's create_thread).
    let thread = (libc::CLONE_VM
        | libc::CLONE_FS
        | libc::CLONE_FILES
        | libc::CLONE_SIGHAND
        | libc::CLONE_THREAD
        | libc::CLONE_SYSVSEM
        | libc::CLONE_SETTLS
        | libc::CLONE_PARENT_SETTID
        | libc::CLONE_CHILD_CLEARTID) as u64;
    vec![
        c(
            "mmap (read-write pages)",
            libc::SYS_mmap,
            [0, 8192, rw, anon | fixed_noreplace, none, 0],
            true,
        ),
        c(
            "mprotect (PROT_EXEC)",
            libc::SYS_mprotect,
            [0, 4096, rx, 0, 0, 0],
            false,
        ),
        c(
            "mmap (PROT_EXEC)",
            libc::SYS_mmap,
            [0, 4096, rx, anon | libc::MAP_FIXED as u64, none, 0],
            false,
        ),
        c(
            "mmap (PROT_EXEC, call stub)",
            libc::SYS_mmap,
            [0, 4096, rx, anon, none, 0],
            false,
        ),
        c("munmap", libc::SYS_munmap, [0, 8192, 0, 0, 0, 0], true),
        c("rt_sigreturn", libc::SYS_rt_sigreturn, [0; 6], true),
        c(
            "socketpair",
            libc::SYS_socketpair,
            [unix, stream, 0, 0, 0, 0],
            false,
        ),
        c(
            "socket",
            libc::SYS_socket,
            [unix, stream, 0, 0, 0, 0],
            false,
        ),
        c("sendmsg", libc::SYS_sendmsg, [0; 6], false),
        c("recvmsg", libc::SYS_recvmsg, [0; 6], false),
        c("sendto", libc::SYS_sendto, [0; 6], false),
        c("recvfrom", libc::SYS_recvfrom, [0; 6], false),
        c(
            "clone3 (a thread)",
            libc::SYS_clone3,
            [0, 88, 0, 0, 0, 0],
            false,
        ),
        c(
            "clone (a thread)",
            libc::SYS_clone,
            [thread, 0, 0, 0, 0, 0],
            false,
        ),
        c("futex", libc::SYS_futex, [0; 6], false),
        c(
            "openat",
            libc::SYS_openat,
            [libc::AT_FDCWD as u64, 0, libc::O_CLOEXEC as u64, 0, 0, 0],
            false,
        ),
        c("close", libc::SYS_close, [0; 6], false),
        c("getpid", libc::SYS_getpid, [0; 6], false),
    ]
}

/// Checks, with every thread held, that no filter of the `filtered`
/// threads could kill the target for a syscall of the injection; the
/// reason to refuse otherwise. `trusted`: filters that cannot be read are
/// taken to kill for none of them.
pub(super) fn check(
    st: &attach::Stopped,
    pid: i32,
    filtered: &[(i32, u32)],
    trusted: bool,
) -> Result<(), RunError> {
    let refuse = |why: String| Err(RunError::Seccomp { pid, why });
    let held = st.threads();
    let mut seen: Vec<attach::Filters> = Vec::new();
    for &(tid, mode) in filtered {
        if !held.contains(&tid) {
            continue; // exited meanwhile
        }
        if mode == 1 {
            return refuse(format!(
                "thread {tid} runs in seccomp strict mode, where any syscall but read, write, exit and sigreturn kills the process"
            ));
        }
        let filters = match st.seccomp_filters(tid) {
            Ok(f) => f,
            // The user vouches for filters pyattach cannot read.
            Err(attach::Error::Unsupported(_)) if trusted => continue,
            Err(attach::Error::Unsupported(why)) => {
                return refuse(format!(
                    "it runs under a seccomp filter that pyattach cannot read ({why}); a filter may kill the process for a syscall pyattach makes (mmap, mprotect with PROT_EXEC, socketpair, clone); run pyattach as root outside any container to let it check, or pass --trust-seccomp if you know the filter kills for none of them"
                ))
            }
            Err(e) => return Err(e.into()),
        };
        if seen.contains(&filters) {
            continue;
        }
        let mut kills = Vec::new();
        let mut denied = Vec::new();
        for call in calls() {
            match filters.verdict(call.nr, &call.args, 0) {
                Some(Verdict::Allow) => {}
                Some(Verdict::Errno(e)) => denied.push((call, e)),
                Some(Verdict::Kill) => kills.push(format!("{} (killed)", call.what)),
                Some(Verdict::Supervised) => {
                    kills.push(format!("{} (sent to a supervisor)", call.what))
                }
                None => kills.push(format!("{} (filter not understood)", call.what)),
            }
        }
        if !kills.is_empty() {
            return refuse(format!(
                "the seccomp filter of thread {tid} would kill the process, or might, for syscalls that running code there needs: {}",
                kills.join(", ")
            ));
        }
        let forbidden = |what: &str| denied.iter().any(|(c, _)| c.what.starts_with(what));
        let no_code_page = forbidden("mprotect (PROT_EXEC)") && forbidden("mmap (PROT_EXEC)");
        if no_code_page || denied.iter().any(|(c, _)| c.needed) {
            let list: Vec<String> = denied
                .iter()
                .map(|(c, e)| {
                    let errno = std::io::Error::from_raw_os_error(i32::from(*e));
                    format!("{} ({errno})", c.what)
                })
                .collect();
            return refuse(format!(
                "the seccomp filter of thread {tid} forbids syscalls that running code there needs: {}",
                list.join(", ")
            ));
        }
        seen.push(filters);
    }
    Ok(())
}
