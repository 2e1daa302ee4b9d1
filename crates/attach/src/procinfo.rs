//! Read-only views of `/proc`: a process's status, its threads, and the
//! facts the permission diagnosis needs. Nothing here stops or touches the
//! target; every reader works on a process we may not ptrace.

use serde::Serialize;
use std::fs;
use std::io;

/// `capability(7)` number of `CAP_SYS_PTRACE`.
pub const CAP_SYS_PTRACE: u32 = 19;

/// The fields of `/proc/PID/status` pyattach uses.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProcStatus {
    pub pid: i32,
    /// `Tgid:`: the process a thread belongs to (its own id for a main
    /// thread; 0 when not shown).
    pub tgid: i32,
    /// `Name:` (the command name, at most 15 bytes).
    pub name: String,
    /// First letter of `State:` (`R`, `S`, `D`, `T`, `t`, `Z`, …).
    pub state: char,
    pub ppid: i32,
    /// Pid of the tracer, 0 if none.
    pub tracer_pid: i32,
    /// Real, effective, saved and filesystem uid.
    pub uids: [u32; 4],
    /// Real, effective, saved and filesystem gid.
    pub gids: [u32; 4],
    /// Effective capabilities (bit mask).
    pub cap_eff: u64,
    /// 0 none, 1 strict, 2 filter.
    pub seccomp: u32,
    /// How many seccomp filters the thread has (`Seccomp_filters:`,
    /// Linux 5.9+; 0 when not shown).
    pub seccomp_filters: u32,
    /// `NoNewPrivs:` (set before a filter can be installed without
    /// `CAP_SYS_ADMIN`).
    pub no_new_privs: bool,
    /// The pid in each nested pid namespace, outermost first.
    pub nspid: Vec<i32>,
    pub threads: u32,
}

impl ProcStatus {
    pub fn has_cap(&self, cap: u32) -> bool {
        cap < 64 && self.cap_eff & (1u64 << cap) != 0
    }
    pub fn is_zombie(&self) -> bool {
        matches!(self.state, 'Z' | 'X')
    }
}

/// What a `/proc` state letter means.
pub fn state_name(state: char) -> &'static str {
    match state {
        'R' => "running",
        'S' => "sleeping",
        'D' => "disk sleep",
        'T' => "stopped",
        't' => "tracing stop",
        'Z' => "zombie",
        'X' => "dead",
        'I' => "idle",
        'P' => "parked",
        _ => "unknown",
    }
}

fn ids(v: &str) -> [u32; 4] {
    let mut out = [0; 4];
    for (o, p) in out.iter_mut().zip(v.split_whitespace()) {
        *o = p.parse().unwrap_or(0);
    }
    out
}

/// Parses the text of a `/proc/PID/status` file.
pub fn parse_status(pid: i32, text: &str) -> ProcStatus {
    let mut st = ProcStatus {
        pid,
        state: '?',
        ..ProcStatus::default()
    };
    for line in text.lines() {
        let Some((key, val)) = line.split_once(':') else {
            continue;
        };
        let val = val.trim();
        match key {
            "Name" => st.name = val.to_string(),
            "State" => st.state = val.chars().next().unwrap_or('?'),
            "Tgid" => st.tgid = val.parse().unwrap_or(0),
            "PPid" => st.ppid = val.parse().unwrap_or(0),
            "TracerPid" => st.tracer_pid = val.parse().unwrap_or(0),
            "Uid" => st.uids = ids(val),
            "Gid" => st.gids = ids(val),
            "CapEff" => st.cap_eff = u64::from_str_radix(val, 16).unwrap_or(0),
            "Seccomp" => st.seccomp = val.parse().unwrap_or(0),
            "Seccomp_filters" => st.seccomp_filters = val.parse().unwrap_or(0),
            "NoNewPrivs" => st.no_new_privs = val == "1",
            "NSpid" => {
                st.nspid = val
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            }
            "Threads" => st.threads = val.parse().unwrap_or(0),
            _ => {}
        }
    }
    st
}

/// `/proc/PID/status` of `pid` (`ErrorKind::NotFound` when there is none).
pub fn status(pid: i32) -> io::Result<ProcStatus> {
    if pid <= 0 {
        return Err(io::Error::new(io::ErrorKind::NotFound, "no such process"));
    }
    Ok(parse_status(
        pid,
        &fs::read_to_string(format!("/proc/{pid}/status"))?,
    ))
}

/// `/proc/PID/task/TID/status`: one thread's (its seccomp state is its
/// own).
pub fn task_status(pid: i32, tid: i32) -> io::Result<ProcStatus> {
    Ok(parse_status(
        tid,
        &fs::read_to_string(format!("/proc/{pid}/task/{tid}/status"))?,
    ))
}

/// The id through which the process `pid` can be read: `pid` itself, or,
/// when its main thread has exited (`pthread_exit`) while other threads
/// run on, one of those. Such a leader stays a zombie until the last
/// thread exits, and the kernel gives its `/proc/PID` no memory, maps or
/// files any more; `/proc/TID` of a live thread has them all (and
/// `/proc/TID/task` lists every thread). `None` if every thread has
/// exited (a real zombie).
pub fn live_member(pid: i32) -> Option<i32> {
    let st = status(pid).ok()?;
    if !st.is_zombie() {
        return Some(pid);
    }
    let mut tids: Vec<i32> = fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&t| t != pid)
        .collect();
    tids.sort_unstable();
    tids.into_iter()
        .find(|&t| task_status(pid, t).is_ok_and(|s| !s.is_zombie()))
}

/// Our own status (uid, capabilities, seccomp).
pub fn own_status() -> io::Result<ProcStatus> {
    Ok(parse_status(
        std::process::id() as i32,
        &fs::read_to_string("/proc/self/status")?,
    ))
}

/// One thread of a process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ThreadInfo {
    pub tid: i32,
    /// `comm` of the thread (`threading` names it on Python 3.x when it can).
    pub name: String,
    pub state: char,
    pub state_name: &'static str,
    /// The kernel function the thread sleeps in (`/proc/…/wchan`), if told.
    pub wchan: Option<String>,
    /// The thread's id in its own pid namespace (the last `NSpid:` field):
    /// what `gettid()` returns inside the target, and what CPython and
    /// libc store. The same as `tid` unless the target runs in a pid
    /// namespace of its own (a container, `unshare --pid`).
    pub ns_tid: i32,
}

/// The ids of `pid`'s threads (`/proc/PID/task`), in the kernel's order.
pub fn tids(pid: i32) -> io::Result<Vec<i32>> {
    Ok(fs::read_dir(format!("/proc/{pid}/task"))?
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .collect())
}

/// Every thread of `pid`, main thread first.
pub fn threads(pid: i32) -> io::Result<Vec<ThreadInfo>> {
    let mut out = Vec::new();
    for tid in tids(pid)? {
        // A thread may exit between readdir and these reads: skip it.
        let Ok(st) = fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")) else {
            continue;
        };
        let st = parse_status(tid, &st);
        let wchan = fs::read_to_string(format!("/proc/{pid}/task/{tid}/wchan"))
            .ok()
            .map(|w| w.trim().to_string())
            .filter(|w| !w.is_empty() && w != "0");
        out.push(ThreadInfo {
            tid,
            name: st.name,
            state: st.state,
            state_name: state_name(st.state),
            wchan,
            ns_tid: st.nspid.last().copied().unwrap_or(tid),
        });
    }
    out.sort_by_key(|t| (t.tid != pid, t.tid));
    Ok(out)
}

/// Each thread of `pid` as `(tid, ns_tid)`: its id as pyattach sees it
/// (`/proc`, `ps -L` here) and its id in the target's own pid namespace
/// (the last `NSpid:` field: what the target's `gettid()` returns).
pub fn thread_ids(pid: i32) -> io::Result<Vec<(i32, i32)>> {
    Ok(tids(pid)?
        .into_iter()
        .filter_map(|tid| {
            let st = task_status(pid, tid).ok()?;
            Some((tid, st.nspid.last().copied().unwrap_or(tid)))
        })
        .collect())
}

/// The thread of `pid` that `id` names, as `(tid, ns_tid)`: `id` is its
/// tid as pyattach sees it or, failing that, its tid in the target's pid
/// namespace (a container shows its own numbers; both are accepted).
pub fn find_thread(pid: i32, id: i32) -> Option<(i32, i32)> {
    let ids = thread_ids(pid).ok()?;
    ids.iter()
        .find(|&&(tid, _)| tid == id)
        .or_else(|| ids.iter().find(|&&(_, ns)| ns == id))
        .copied()
}

/// The tid as pyattach sees it of the thread of `pid` whose id in the
/// target's own pid namespace is `ns_tid` (what the target reports).
pub fn host_tid(pid: i32, ns_tid: i32) -> Option<i32> {
    thread_ids(pid)
        .ok()?
        .into_iter()
        .find_map(|(tid, ns)| (ns == ns_tid).then_some(tid))
}

/// The process `id` is a thread of, when `id` names a thread that is not
/// a process's main thread (its `Tgid:` differs): `ps -L` and `pyattach
/// dump` show such ids, and `/proc/TID` answers for them as if they were
/// processes.
pub fn process_of_thread(id: i32) -> Option<i32> {
    let st = status(id).ok()?;
    (st.tgid > 0 && st.tgid != id).then_some(st.tgid)
}

/// `kernel.yama.ptrace_scope`, or `None` when Yama is not in this kernel.
pub fn yama_ptrace_scope() -> Option<u32> {
    fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// The uid that owns the files in `/proc/PID`: the kernel gives a
/// non-dumpable process's files to root, which is how "not dumpable" can
/// be seen from outside. (The directory itself keeps the process's uid:
/// only its files change hands, so `status` is looked at.)
pub fn proc_owner(pid: i32) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(format!("/proc/{pid}/status"))
        .ok()
        .map(|m| m.uid())
}

/// Whether `ancestor` is `pid`'s parent, grandparent, … (Yama scope 1 lets
/// a process trace its descendants).
pub fn is_ancestor(ancestor: i32, pid: i32) -> bool {
    let mut cur = pid;
    for _ in 0..4096 {
        let Ok(st) = status(cur) else { return false };
        if st.ppid == ancestor {
            return true;
        }
        if st.ppid <= 1 {
            return false;
        }
        cur = st.ppid;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status() {
        let st = parse_status(
            42,
            "Name:\tpython3\nState:\tS (sleeping)\nTgid:\t40\nPPid:\t1\nTracerPid:\t77\n\
             Uid:\t1000\t1000\t1000\t1000\nGid:\t5\t6\t7\t8\nCapEff:\t0000000000080000\n\
             Seccomp:\t2\nSeccomp_filters:\t3\nNoNewPrivs:\t1\nNSpid:\t42\t1\nThreads:\t3\n",
        );
        assert_eq!(st.name, "python3");
        assert_eq!(st.state, 'S');
        assert_eq!(st.tracer_pid, 77);
        assert_eq!(st.uids, [1000; 4]);
        assert_eq!(st.gids, [5, 6, 7, 8]);
        assert!(st.has_cap(CAP_SYS_PTRACE));
        assert_eq!(st.seccomp, 2);
        assert_eq!(st.seccomp_filters, 3);
        assert!(st.no_new_privs);
        assert_eq!(st.nspid, vec![42, 1]);
        assert_eq!(st.threads, 3);
        assert_eq!(st.tgid, 40);
    }

    #[test]
    fn reads_own_threads() {
        let me = std::process::id() as i32;
        let t = threads(me).unwrap();
        assert_eq!(t[0].tid, me);
        assert!(t.iter().all(|t| t.state != '?'));
        assert!(status(-1).is_err());
    }
}

/// Which process a pid names: the pid and the process's start time (clock
/// ticks since boot, `/proc/PID/stat` field 22), which a later process
/// given the same pid cannot share. Taken before the slow work that comes
/// ahead of attaching (finding the interpreter, reading symbols), checked
/// once attached: from then on the pid cannot change hands (a traced
/// process that exits stays a zombie until released).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    pub pid: i32,
    pub start_time: u64,
}

impl Identity {
    pub fn of(pid: i32) -> crate::Result<Identity> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
            .map_err(|_| crate::Error::NoSuchProcess { pid })?;
        // After the last ')' (comm may hold anything): state is field 3,
        // starttime field 22.
        let start_time = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(19))
            .and_then(|v| v.parse().ok())
            .ok_or(crate::Error::NoSuchProcess { pid })?;
        Ok(Identity { pid, start_time })
    }

    /// `Err(PidReused)` if the pid now names another process.
    pub fn check(&self) -> crate::Result<()> {
        match Identity::of(self.pid) {
            Ok(now) if now == *self => Ok(()),
            Ok(_) => Err(crate::Error::PidReused { pid: self.pid }),
            Err(e) => Err(e),
        }
    }
}

/// A directory of the target's file system (`rel`, e.g. `tmp` or
/// `dev/shm`), opened `O_PATH` inside its root: resolved as the target
/// would (`openat2` with `RESOLVE_IN_ROOT`), so a symlink the target put
/// there (`/tmp -> /`) never leads into our file system. On kernels
/// without `openat2`, one component at a time with `O_NOFOLLOW`: any
/// symlink is refused. Reach it as `/proc/self/fd/N` while it is open.
pub fn open_dir_in_root(pid: i32, rel: &str) -> io::Result<std::os::fd::OwnedFd> {
    use nix::fcntl::{open, openat, openat2, OFlag, OpenHow, ResolveFlag};
    use nix::sys::stat::Mode;
    let dir = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let root = open(format!("/proc/{pid}/root").as_str(), dir, Mode::empty())?;
    let how = OpenHow::new()
        .flags(dir)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    match openat2(&root, rel, how) {
        Err(nix::errno::Errno::ENOSYS) => {}
        r => return r.map_err(io::Error::from),
    }
    let mut at = root;
    for c in rel.split('/').filter(|c| !c.is_empty() && *c != ".") {
        if c == ".." {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        at = openat(&at, c, dir | OFlag::O_NOFOLLOW, Mode::empty())?;
    }
    Ok(at)
}

#[cfg(test)]
mod identity_tests {
    use super::Identity;

    #[test]
    fn a_process_keeps_its_identity_and_a_new_one_differs() {
        let me = Identity::of(std::process::id() as i32).unwrap();
        me.check().unwrap();
        let other = Identity {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(matches!(other.check(), Err(crate::Error::PidReused { .. })));
        assert!(Identity::of(i32::MAX).is_err());
    }
}

/// Pagemap's "guard region" bit (Linux 6.14+): a page made inaccessible
/// with `MADV_GUARD_INSTALL`, which leaves no mapping of its own in
/// `/proc/PID/maps`.
const PM_GUARD_REGION: u64 = 1 << 58;

/// Most pages [`guard_pages`] looks at in one call (16 MiB of pagemap,
/// 8 GiB of address space): bounded work for a huge mapping.
const MOST_GUARD_PAGES: u64 = 2 << 20;

/// The pages in `[start, end)` of `pid` that are guard regions (first
/// addresses, in order). Newer C libraries guard thread stacks this way
/// instead of with an inaccessible mapping (glibc 2.42+ where the kernel
/// has it), so a stack and its guard look like one read-write mapping, and
/// adjacent stacks may even be one. Empty where the kernel does not mark
/// guard regions (before 6.14) or the range is larger than the bound.
pub fn guard_pages(pid: i32, start: u64, end: u64) -> io::Result<Vec<u64>> {
    use std::os::unix::fs::FileExt;
    const PAGE: u64 = 4096;
    let pages = end.saturating_sub(start) / PAGE;
    if pages == 0 || pages > MOST_GUARD_PAGES {
        return Ok(Vec::new());
    }
    let f = std::fs::File::open(format!("/proc/{pid}/pagemap"))?;
    let mut buf = vec![0u8; pages as usize * 8];
    f.read_exact_at(&mut buf, start / PAGE * 8)?;
    Ok(buf
        .chunks_exact(8)
        .enumerate()
        .filter(|(_, e)| {
            u64::from_le_bytes((*e).try_into().expect("8 bytes")) & PM_GUARD_REGION != 0
        })
        .map(|(i, _)| start + i as u64 * PAGE)
        .collect())
}
