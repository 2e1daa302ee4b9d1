//! Small read-only looks at `/proc/PID/status`, used to give errors a reason
//! (who traces the target, whose process it is). The fuller diagnosis for the
//! CLI lives in `permissions`.

use std::fs;

/// The fields of `/proc/PID/status` this crate cares about.
#[derive(Debug, Default)]
pub(crate) struct Status {
    /// First letter of `State:` (`R`, `S`, `T`, `t`, `Z`…).
    pub state: char,
    pub tracer_pid: i32,
    pub real_uid: u32,
}

pub(crate) fn status(pid: i32) -> Option<Status> {
    parse_status(&fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// The status of one thread of `pid`.
pub(crate) fn task_status(pid: i32, tid: i32) -> Option<Status> {
    parse_status(&fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).ok()?)
}

fn parse_status(text: &str) -> Option<Status> {
    let mut st = Status::default();
    for line in text.lines() {
        let Some((key, val)) = line.split_once(':') else {
            continue;
        };
        let val = val.trim();
        match key {
            "State" => st.state = val.chars().next().unwrap_or('?'),
            "TracerPid" => st.tracer_pid = val.parse().unwrap_or(0),
            "Uid" => {
                st.real_uid = val
                    .split_whitespace()
                    .next()
                    .and_then(|u| u.parse().ok())
                    .unwrap_or(0)
            }
            _ => {}
        }
    }
    Some(st)
}

/// True while the process exists and has not exited (zombie or dead).
pub(crate) fn alive(pid: i32) -> bool {
    status(pid).is_some_and(|s| !matches!(s.state, 'Z' | 'X'))
}

/// True if the process runs with a CET shadow stack (Linux 6.6+, glibc
/// opt-in): a `ret` to an address the shadow stack does not hold faults.
pub(crate) fn shadow_stack(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("x86_Thread_features:"))
            .is_some_and(|f| f.split_whitespace().any(|w| w == "shstk"))
    })
}

/// The command name of a process, or `?`.
pub(crate) fn comm(pid: i32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Why `EPERM` was likely returned for `pid`, in a sentence, with the fix:
/// the rules of [`crate::permissions`], and a generic word when none of
/// them explains it (a security module, another user namespace).
pub(crate) fn permission_reason(pid: i32) -> String {
    if let Ok(verdict) = crate::permissions::diagnose(pid) {
        if let Some(d) = verdict.denials.first() {
            return format!("{}; {}", d.reason(), d.fix());
        }
        if !verdict.tracer.cap_sys_ptrace {
            return "the kernel refused (a security module or another user namespace?); CAP_SYS_PTRACE may help".into();
        }
    }
    "the kernel refused even with CAP_SYS_PTRACE (a security module such as SELinux/AppArmor, or another user namespace)".into()
}
