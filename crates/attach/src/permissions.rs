//! Whether this process may ptrace a target, and if not, why and how to fix
//! it. The kernel's rules (`ptrace_may_access` in kernel/ptrace.c, Yama in
//! security/yama/yama_lsm.c, `man 2 ptrace`, "Ptrace access mode
//! checking") are mirrored from what `/proc` shows, so the answer comes
//! before any attempt and names the cause.

use crate::procinfo::{self, ProcStatus, CAP_SYS_PTRACE};
use serde::Serialize;

/// One reason the kernel will (or may) refuse `PTRACE_SEIZE`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Denial {
    /// The target belongs to another user and we lack `CAP_SYS_PTRACE`.
    OtherUser { target_uid: u32, our_uid: u32 },
    /// The target is not dumpable (setuid, `prctl(PR_SET_DUMPABLE, 0)`).
    NotDumpable,
    /// Yama `ptrace_scope` 1: only descendants may be traced.
    YamaRestricted,
    /// Yama `ptrace_scope` 2: only with `CAP_SYS_PTRACE`.
    YamaAdminOnly,
    /// Yama `ptrace_scope` 3: no ptrace at all until reboot.
    YamaDisabled,
    /// Another tracer holds the target.
    AlreadyTraced { tracer: i32, tracer_name: String },
    /// The target has exited and waits to be reaped.
    Zombie,
    /// We run under seccomp strict mode: ptrace is impossible.
    SeccompStrict,
}

/// Something that may make ptrace fail but cannot be told for sure.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Warning {
    /// We run under a seccomp filter, which may forbid ptrace (Docker's
    /// default profile does unless `CAP_SYS_PTRACE` is added).
    SeccompFilter,
}

impl Denial {
    /// The cause, in a sentence.
    pub fn reason(&self) -> String {
        match self {
            Denial::OtherUser { target_uid, our_uid } => format!(
                "the process belongs to uid {target_uid} and pyattach runs as uid {our_uid} without CAP_SYS_PTRACE"
            ),
            Denial::NotDumpable => {
                "the process is not dumpable (it called prctl(PR_SET_DUMPABLE, 0), or runs a setuid/setgid program): \
                 the kernel lets only a tracer with CAP_SYS_PTRACE read or trace it, even as its own user"
                    .into()
            }
            Denial::YamaRestricted => {
                "kernel.yama.ptrace_scope is 1: only a parent process may trace its descendants".into()
            }
            Denial::YamaAdminOnly => {
                "kernel.yama.ptrace_scope is 2: only processes with CAP_SYS_PTRACE may trace".into()
            }
            Denial::YamaDisabled => {
                "kernel.yama.ptrace_scope is 3: ptrace is disabled on this machine until reboot".into()
            }
            Denial::AlreadyTraced { tracer, tracer_name } => format!(
                "the process is already traced by pid {tracer} ({tracer_name}); a process can have only one tracer"
            ),
            Denial::Zombie => "the process has exited (zombie) and waits for its parent to reap it".into(),
            Denial::SeccompStrict => "pyattach runs under seccomp strict mode, which forbids ptrace".into(),
        }
    }

    /// What the user can do about it.
    pub fn fix(&self) -> String {
        match self {
            Denial::OtherUser { target_uid: 0, .. } => "run pyattach as root (sudo pyattach …)".into(),
            Denial::OtherUser { target_uid, .. } => format!(
                "run pyattach as uid {target_uid} (sudo -u '#{target_uid}' pyattach …) or as root (sudo pyattach …)"
            ),
            Denial::NotDumpable => {
                "run pyattach as root (sudo pyattach …), or give it CAP_SYS_PTRACE (sudo setcap cap_sys_ptrace+ep PATH-TO-PYATTACH; \
                 in a container: docker run --cap-add=SYS_PTRACE)"
                    .into()
            }
            Denial::YamaRestricted => {
                "run with sudo, or allow it for all: sudo sysctl kernel.yama.ptrace_scope=0 (in a container: docker run --cap-add=SYS_PTRACE)".into()
            }
            Denial::YamaAdminOnly => {
                "run with sudo or give pyattach CAP_SYS_PTRACE (docker run --cap-add=SYS_PTRACE; kubectl debug)".into()
            }
            Denial::YamaDisabled => "nothing short of a reboot with another ptrace_scope allows it".into(),
            Denial::AlreadyTraced { tracer, .. } => {
                format!("detach the other tracer (quit the debugger or strace, pid {tracer}) and try again")
            }
            Denial::Zombie => "nothing to attach to: the program has ended".into(),
            Denial::SeccompStrict => "run pyattach outside the seccomp sandbox".into(),
        }
    }
}

impl Warning {
    pub fn reason(&self) -> String {
        match self {
            Warning::SeccompFilter => {
                "pyattach runs under a seccomp filter, which may forbid ptrace".into()
            }
        }
    }
    pub fn fix(&self) -> String {
        match self {
            Warning::SeccompFilter => {
                "in Docker: docker run --cap-add=SYS_PTRACE (or --security-opt seccomp=unconfined)"
                    .into()
            }
        }
    }
}

/// Our side of the question.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Tracer {
    pub pid: i32,
    pub uids: [u32; 4],
    pub gids: [u32; 4],
    pub cap_sys_ptrace: bool,
    pub seccomp: u32,
    /// `None`: Yama is not in this kernel.
    pub yama_ptrace_scope: Option<u32>,
    /// We are the target's parent, grandparent, … (Yama scope 1).
    pub is_ancestor: bool,
}

/// The answer for one target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub allowed: bool,
    pub denials: Vec<Denial>,
    pub warnings: Vec<Warning>,
    pub tracer: Tracer,
}

/// The rules, on facts already gathered: testable without processes.
/// `proc_owner` is the uid owning `/proc/PID` (root when not dumpable).
pub fn judge(target: &ProcStatus, proc_owner: Option<u32>, us: &Tracer) -> Verdict {
    let mut denials = Vec::new();
    let mut warnings = Vec::new();
    if target.is_zombie() {
        denials.push(Denial::Zombie);
    }
    if us.seccomp == 1 {
        denials.push(Denial::SeccompStrict);
    } else if us.seccomp == 2 {
        warnings.push(Warning::SeccompFilter);
    }
    // ptrace_may_access: our fsuid must equal the target's real, effective
    // and saved uid (gids likewise), unless we have CAP_SYS_PTRACE.
    let fsuid = us.uids[3];
    let fsgid = us.gids[3];
    let same_user = target.uids[..3].iter().all(|&u| u == fsuid)
        && target.gids[..3].iter().all(|&g| g == fsgid);
    if !us.cap_sys_ptrace {
        if !same_user {
            denials.push(Denial::OtherUser {
                target_uid: target.uids[0],
                our_uid: us.uids[1],
            });
        } else if proc_owner == Some(0) && target.uids[0] != 0 {
            denials.push(Denial::NotDumpable);
        }
    }
    match us.yama_ptrace_scope {
        Some(1) if !us.cap_sys_ptrace && !us.is_ancestor => denials.push(Denial::YamaRestricted),
        Some(2) if !us.cap_sys_ptrace => denials.push(Denial::YamaAdminOnly),
        Some(s) if s >= 3 => denials.push(Denial::YamaDisabled),
        _ => {}
    }
    if target.tracer_pid != 0 && target.tracer_pid != us.pid {
        denials.push(Denial::AlreadyTraced {
            tracer: target.tracer_pid,
            tracer_name: procinfo::status(target.tracer_pid)
                .map(|s| s.name)
                .unwrap_or_else(|_| "?".into()),
        });
    }
    Verdict {
        allowed: denials.is_empty(),
        denials,
        warnings,
        tracer: us.clone(),
    }
}

/// Whether we may ptrace `pid`, from `/proc` (`NotFound` if it does not
/// exist).
pub fn diagnose(pid: i32) -> std::io::Result<Verdict> {
    let target = procinfo::status(pid)?;
    let me = procinfo::own_status()?;
    let us = Tracer {
        pid: me.pid,
        uids: me.uids,
        gids: me.gids,
        cap_sys_ptrace: me.has_cap(CAP_SYS_PTRACE),
        seccomp: me.seccomp,
        yama_ptrace_scope: procinfo::yama_ptrace_scope(),
        is_ancestor: procinfo::is_ancestor(me.pid, pid),
    };
    Ok(judge(&target, procinfo::proc_owner(pid), &us))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(uid: u32) -> ProcStatus {
        ProcStatus {
            pid: 100,
            name: "python3".into(),
            state: 'S',
            uids: [uid; 4],
            gids: [uid; 4],
            ..ProcStatus::default()
        }
    }

    fn us(uid: u32, cap: bool, yama: Option<u32>) -> Tracer {
        Tracer {
            pid: 200,
            uids: [uid; 4],
            gids: [uid; 4],
            cap_sys_ptrace: cap,
            seccomp: 0,
            yama_ptrace_scope: yama,
            is_ancestor: false,
        }
    }

    #[test]
    fn same_user_no_yama_is_allowed() {
        let v = judge(&target(1000), Some(1000), &us(1000, false, None));
        assert!(v.allowed, "{v:?}");
    }

    #[test]
    fn other_user_needs_the_capability() {
        let v = judge(&target(1001), Some(1001), &us(1000, false, None));
        assert_eq!(
            v.denials,
            vec![Denial::OtherUser {
                target_uid: 1001,
                our_uid: 1000
            }]
        );
        assert!(v.denials[0].fix().contains("sudo"));
        assert!(judge(&target(1001), Some(1001), &us(0, true, None)).allowed);
    }

    #[test]
    fn setuid_saved_uid_counts() {
        let mut t = target(1000);
        t.uids[2] = 0;
        let v = judge(&t, Some(0), &us(1000, false, None));
        assert!(matches!(v.denials[0], Denial::OtherUser { .. }));
    }

    #[test]
    fn not_dumpable_is_seen_through_proc_ownership() {
        let v = judge(&target(1000), Some(0), &us(1000, false, None));
        assert_eq!(v.denials, vec![Denial::NotDumpable]);
        assert!(v.denials[0].fix().contains("CAP_SYS_PTRACE"));
    }

    #[test]
    fn a_root_process_gets_one_fix_not_the_same_one_twice() {
        let v = judge(&target(0), Some(0), &us(1000, false, None));
        assert_eq!(v.denials[0].fix(), "run pyattach as root (sudo pyattach …)");
    }

    #[test]
    fn yama_scopes() {
        let t = target(1000);
        let r = judge(&t, Some(1000), &us(1000, false, Some(1)));
        assert_eq!(r.denials, vec![Denial::YamaRestricted]);
        let mut parent = us(1000, false, Some(1));
        parent.is_ancestor = true;
        assert!(judge(&t, Some(1000), &parent).allowed);
        assert!(judge(&t, Some(1000), &us(1000, true, Some(1))).allowed);
        let a = judge(&t, Some(1000), &us(1000, false, Some(2)));
        assert_eq!(a.denials, vec![Denial::YamaAdminOnly]);
        assert!(judge(&t, Some(1000), &us(0, true, Some(2))).allowed);
        let d = judge(&t, Some(1000), &us(0, true, Some(3)));
        assert_eq!(d.denials, vec![Denial::YamaDisabled]);
    }

    #[test]
    fn traced_zombie_and_seccomp() {
        let mut t = target(1000);
        t.tracer_pid = std::process::id() as i32;
        t.state = 'Z';
        let mut me = us(1000, false, None);
        me.seccomp = 2;
        let v = judge(&t, Some(1000), &me);
        assert!(v.denials.contains(&Denial::Zombie));
        assert!(v.denials.iter().any(
            |d| matches!(d, Denial::AlreadyTraced { tracer_name, .. } if !tracer_name.is_empty())
        ));
        assert_eq!(v.warnings, vec![Warning::SeccompFilter]);
        // Our own tracing is no denial.
        let mut t2 = target(1000);
        t2.tracer_pid = 200;
        assert!(judge(&t2, Some(1000), &us(1000, false, None)).allowed);
    }
}
