//! Carrying a [`Plan`] out in the target: map the pages (every thread held
//! for one remote `mmap`), write them while the target runs (nothing in it
//! knows them yet), then, held again, make the code page r-x, patch the
//! entries and nudge threads towards them ([`Armed`]). Until an entry
//! jumps there a failure takes the pages back at once; after, the
//! [`Armed`] guard puts the entries back on every path, errors included.
//!
//! Everything that can be known beforehand is (the plan, the code borrowed
//! by remote syscalls). The threads are held for one remote syscall
//! (mmap), let go while the pages are written, then held again for the
//! mprotect, the patches and the nudges: the target's longest pause is
//! that of one stop, not of both, and never spans the write of the
//! payload (tens of KB).

use std::time::Duration;

use super::detour;
use super::error::RunError;
use super::leftover::{Leftover, Waiting};
use super::nudge::{Prover, Selection};
use super::orphan::{busy, read_u32, reclaim, set_flags, take_back, Orphan};
use super::plan::{Image, Plan};
use super::Report;

/// `PROT_READ | PROT_EXEC` (`<sys/mman.h>`; the same on every Linux arch).
pub(super) const PROT_RX: i32 = 0x1 | 0x4;

/// How long pages a claimed bootstrap still runs in are waited for when a
/// run fails: its wait for the ack, and a little more.
const PAGES_WAIT: Duration = Duration::from_millis(1000);

/// The futex syscall: a main thread waiting there most often runs Python
/// and waits for the GIL this instant.
const FUTEX: i64 = libc::SYS_futex;

/// What stays the same from the first stop to the last.
pub(super) struct Attempt {
    pub pid: i32,
    pub restart: attach::Restart,
    /// Filters pyattach cannot read are vouched for (`Options`).
    pub trust_seccomp: bool,
    /// Pages earlier, killed pyattach runs left (unmapped in a later stop
    /// of this run, once nothing can run in them).
    pub orphans: Vec<Orphan>,
    /// Every entry a pyattach may hook (the orphans' jumps come from them).
    pub entries: Vec<u64>,
}

/// Pages mapped and carrying our header, not yet armed; the target runs.
pub(super) struct Mapped {
    running: attach::Process,
    base: u64,
}

/// One entry point patched: where, and the bytes to put back.
struct Patched {
    name: &'static str,
    entry: u64,
    original: Vec<u8>,
}

/// The detours in place: dropping it without [`Armed::restore`] or
/// [`Armed::cancel`] cancels the claim and puts the entries back (in the
/// stop still held, or in one of its own).
pub(super) struct Armed {
    pid: i32,
    restart: attach::Restart,
    base: u64,
    total: u64,
    code: u64,
    patched: Vec<Patched>,
    orphans: Vec<Orphan>,
    entries: Vec<u64>,
    /// The stop that armed the detours, until [`Armed::nudge`] lets go.
    held: Option<attach::Stopped>,
    /// A remote call left running returns into the page some day.
    keep_pages: bool,
    waiting: Waiting,
    /// The entries are back (or were never patched).
    disarmed: bool,
    /// The pages are still ours to unmap (not unmapped, not handed over).
    pages: bool,
    /// A thread claimed: a bootstrap runs (or ran) in the pages.
    claimed: bool,
}

impl Mapped {
    /// The start of the pages.
    pub fn base(&self) -> u64 {
        self.base
    }
}

impl Attempt {
    /// Stop 1a: seizes the threads, checks the pid still names the process
    /// discovered and that no seccomp filter forbids what follows, maps the
    /// pages near the first entry and writes our header; lets the target
    /// run again.
    pub fn map(
        &self,
        identity: &attach::procinfo::Identity,
        filtered: &[(i32, u32)],
        plan: &Plan,
        report: &mut Report,
    ) -> Result<Mapped, RunError> {
        let near = plan.sites[0].entry;
        let hints = attach::free_gaps_near(self.pid, near, plan.total)?;
        // The pid cannot change hands once its threads are seized (a traced
        // process that exits stays a zombie until released): checked then,
        // before they are held.
        let mut seized = attach::Process::attach(self.pid)?;
        seized.restart_waits(self.restart);
        if let Err(e) = identity.check() {
            seized.detach()?;
            return Err(e.into());
        }
        seized.prepare_calls()?;
        let mut st = seized.stop_all()?;
        if let Err(e) = super::seccomp::check(&st, self.pid, filtered, self.trust_seccomp) {
            st.detach()?;
            return Err(e);
        }
        report.steps.push(("stopped", st.paused()));
        // Syscalls in a thread that does not restart through its restart
        // block need no call stub of their own.
        let helper = st.syscall_thread().unwrap_or(self.pid);
        let base = st.map_near_hinted(helper, near, plan.total, &hints)?;
        // Ours from now on, should this pyattach be killed before it is
        // done: a later one recognises the pages by it (see Orphan::find).
        let header = detour::header(plan.data_len, std::process::id());
        if let Err(e) = st.memory().write(base + detour::OWNER, &header) {
            let _ = st.unmap(helper, base, plan.total);
            return Err(e.into());
        }
        report.steps.push(("mapped", st.paused()));
        report.stops.push(st.paused());
        // Until an entry jumps there, nothing can run in the pages: a
        // failure on the way (the code page cannot be made executable
        // under PR_SET_MDWE or a seccomp filter, a thread exits, pyattach
        // is asked to stop) takes them back at once, in a stop of its own.
        match st.resume_all() {
            Ok(running) => Ok(Mapped { running, base }),
            Err(e) => {
                self.take_back(base, plan.total);
                Err(e.into())
            }
        }
    }

    fn take_back(&self, base: u64, total: u64) {
        take_back(
            self.pid,
            self.restart,
            base,
            total,
            &self.orphans,
            &self.entries,
        );
    }

    /// Stop 1b: writes the image while the target runs, holds it again,
    /// makes the code page executable and patches the entries (none with
    /// `no_hooks`: the new-thread fallback alone). The threads stay held
    /// in the returned guard.
    pub fn arm(
        &self,
        mapped: Mapped,
        image: &Image,
        plan: &Plan,
        stacks: &[(u64, u64)],
        no_hooks: bool,
        report: &mut Report,
    ) -> Result<Armed, RunError> {
        let Mapped { running, base } = mapped;
        let mut armed = Armed {
            pid: self.pid,
            restart: self.restart,
            base,
            total: plan.total,
            code: image.layout.code,
            patched: Vec::new(),
            orphans: self.orphans.clone(),
            entries: self.entries.clone(),
            held: None,
            keep_pages: false,
            waiting: Waiting::default(),
            disarmed: true,
            pages: true,
            claimed: false,
        };
        let res = (|| -> Result<(), RunError> {
            running.memory().write(base, &image.bytes)?;
            let mut st = running.stop_all()?;
            report.steps.push(("written, stopped again", st.paused()));
            make_executable(&mut st, self.pid, image, report)?;
            for tid in st.threads() {
                if st
                    .regs(tid)
                    .is_ok_and(|r| !super::stacks::roomy(stacks, r.sp()))
                {
                    report.cramped.push(tid);
                }
            }
            if !no_hooks {
                armed.disarmed = false;
                patch(&mut st, plan, image, &mut armed.patched, report)?;
            }
            armed.held = Some(st);
            Ok(())
        })();
        if let Err(e) = res {
            // No entry jumps there (a failed patch writes nothing).
            armed.disarmed = true;
            armed.pages = false;
            drop(armed);
            self.take_back(base, plan.total);
            return Err(e);
        }
        if armed.patched.is_empty() && !no_hooks {
            armed.disarmed = true;
            armed.pages = false;
            if let Some(mut st) = armed.held.take() {
                let helper = st.syscall_thread().unwrap_or(self.pid);
                let _ = st.unmap(helper, base, plan.total);
                st.detach()?;
            }
            return Err(RunError::Unsupported {
                pid: self.pid,
                why: format!(
                    "no entry point could be patched ({})",
                    report.skipped.join("; ")
                ),
            });
        }
        report.steps.push(("patched", armed.held().paused()));
        Ok(armed)
    }
}

/// Makes the code page read+exec (never writable and executable at once).
fn make_executable(
    st: &mut attach::Stopped,
    pid: i32,
    image: &Image,
    report: &mut Report,
) -> Result<(), RunError> {
    let helper = st.syscall_thread().unwrap_or(pid);
    if let Err(e) = st.protect(helper, image.layout.code, 4096, PROT_RX) {
        // PR_SET_MDWE refuses to make memory executable (EACCES), not an
        // executable mapping made as such: the code page is made anew,
        // read+exec, and written as debuggers write breakpoints. A seccomp
        // filter refusing PROT_EXEC refuses this too.
        if !matches!(e, attach::Error::Os { .. }) {
            return Err(e.into());
        }
        st.map_code(helper, image.layout.code, 4096, &image.page)?;
        report.steps.push(("mapped executable (MDWE)", st.paused()));
    }
    report.steps.push(("protected", st.paused()));
    Ok(())
}

/// Replaces each site's first instructions with a `jmp` to its
/// trampoline; those patched go into `patched`.
fn patch(
    st: &mut attach::Stopped,
    plan: &Plan,
    image: &Image,
    patched: &mut Vec<Patched>,
    report: &mut Report,
) -> Result<(), RunError> {
    let jumps: Vec<Vec<u8>> = plan
        .sites
        .iter()
        .zip(&image.code.tramps)
        .map(|(s, &tramp)| detour::entry_patch(s.entry, tramp, s.reloc.len))
        .collect();
    let ranges: Vec<(u64, &[u8])> = plan
        .sites
        .iter()
        .zip(&jumps)
        .map(|(s, j)| (s.entry, j.as_slice()))
        .collect();
    for (s, r) in plan.sites.iter().zip(st.patch_many(&ranges)?) {
        match r {
            Ok(_) => {
                patched.push(Patched {
                    name: s.name,
                    entry: s.entry,
                    original: s.reloc.original.clone(),
                });
                report.hooked.push(format!("{} at {:#x}", s.name, s.entry));
            }
            Err(e) => report.skipped.push(format!("{}: {e}", s.name)),
        }
    }
    Ok(())
}

/// How the threads held in [`Armed::nudge`] are brought to a hook.
pub(super) struct Nudges<'a> {
    pub prover: Option<&'a Prover<'a>>,
    /// Only this thread may run the code (`--thread`).
    pub thread: Option<i32>,
    /// Python 3 (retries on EINTR, PEP 475).
    pub py3: bool,
    /// The new-thread fallback alone: no thread is nudged.
    pub none: bool,
}

impl Armed {
    fn held(&self) -> &attach::Stopped {
        self.held.as_ref().expect("held until nudged")
    }

    /// Still in the arming stop: cuts short the blocked calls proved to
    /// return into a retry loop, queues a pending call for a main thread
    /// running Python, then lets the target go. Returns the selection
    /// made and whether the main thread was running.
    pub fn nudge(
        &mut self,
        n: &Nudges,
        pending: Option<u64>,
        stub: u64,
        call_stub: u64,
        report: &mut Report,
    ) -> Result<(Selection, bool), RunError> {
        let pid = self.pid;
        let base = self.base;
        let mut st = self.held.take().expect("held until nudged");
        let selection = match n.prover {
            Some(p) if !n.none => p.select(&st, n.thread),
            _ => Default::default(),
        };
        let (main_running, caller) = cut_short(&mut st, pid, n, &selection, report);
        let main_running = match main_running {
            Ok(m) => m,
            Err(e) => {
                self.held = Some(st);
                return Err(e);
            }
        };
        report.steps.push(("nudged", st.paused()));
        if main_running && n.thread.is_none_or(|t| t == pid) {
            if let Some(add) = pending {
                // Queue the stub from a thread parked in a syscall (it
                // holds no interpreter lock), else from the main thread
                // itself. A call that cannot take the pending-calls lock
                // soon is abandoned (restored) rather than waited for.
                st.set_call_timeout(Duration::from_millis(300));
                let by = caller.unwrap_or(pid);
                if st.adopt_call_stub(call_stub).is_ok() {
                    // Said in the page first, for a later pyattach should
                    // this one be killed during the call.
                    set_flags(&st, base, &[(detour::PENDING_QUEUED, 1), (detour::KEEP, 1)]);
                    match st.call(by, add, &[stub, 0]) {
                        Ok(r) if r as i32 == 0 => {
                            report.pending_call = true;
                            self.waiting.pending = true;
                            st.release_last(pid);
                            set_flags(&st, base, &[(detour::KEEP, 0)]);
                        }
                        // It returns into the call stub some day: the
                        // pages must stay.
                        Err(attach::Error::CallLeftRunning { .. }) => self.keep_pages = true,
                        _ => {
                            set_flags(&st, base, &[(detour::PENDING_QUEUED, 0), (detour::KEEP, 0)])
                        }
                    }
                }
            }
        }
        report.steps.push(("queued", st.paused()));
        report.stops.push(st.detach()?);
        Ok((selection, main_running))
    }

    /// Says in the page that the new-thread fallback was started (the
    /// thread runs code in the page until it sets its done flag).
    pub fn thread_started(&mut self) {
        self.waiting.thread = true;
    }

    /// The process (as attached).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The start of the pages.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// The name of the entry whose trampoline is site `n` (1-based).
    pub fn site_name(&self, n: usize) -> &'static str {
        self.patched.get(n.wrapping_sub(1)).map_or("?", |p| p.name)
    }

    /// Stop 2, once the bootstrap has called back: puts the entries back,
    /// letting the bootstrap's thread (`tid`) go last.
    pub fn restore(&mut self, report: &mut Report) -> Result<(), RunError> {
        let mut st = attach::freeze_with(self.pid, self.restart)?;
        self.restore_entries(&mut st)?;
        let mem = st.memory();
        if let Some(tid) = read_u32(mem, self.base + detour::TID) {
            st.release_last(tid as i32);
        }
        report.stops.push(st.detach()?);
        Ok(())
    }

    fn restore_entries(&mut self, st: &mut attach::Stopped) -> Result<(), RunError> {
        let ranges: Vec<(u64, &[u8])> = self
            .patched
            .iter()
            .map(|p| (p.entry, p.original.as_slice()))
            .collect();
        let results = st.patch_many(&ranges)?;
        self.disarmed = true;
        for r in results {
            r?;
        }
        Ok(())
    }

    /// No claim by the deadline, or a bootstrap that never called back:
    /// puts the entries back; if nothing claimed, cancels the claim first
    /// and unmaps the pages when nothing can run in them. `describe` says,
    /// with the threads held, what they are doing (for the error); `None`
    /// when something had claimed.
    pub fn cancel(
        &mut self,
        describe: impl FnOnce(&attach::Stopped) -> String,
        report: &mut Report,
    ) -> Result<Option<String>, RunError> {
        let mut st = match self.held.take() {
            Some(st) => st,
            None => attach::freeze_with(self.pid, self.restart)?,
        };
        let flag = read_u32(st.memory(), self.base + detour::FLAG);
        let cancel = flag == Some(detour::FREE);
        self.claimed = !cancel;
        if cancel {
            st.memory()
                .write(self.base + detour::FLAG, &detour::CANCELLED.to_le_bytes())?;
        }
        self.restore_entries(&mut st)?;
        let mut holders = None;
        if cancel {
            // A pending call left running (its timeout) returns into the
            // page; one still queued, or a new thread still starting, will
            // run code in it (the stub finds the flag cancelled and
            // returns).
            if !self.keep_pages
                && self.waiting.settled(st.memory(), self.base)
                && !busy(&st, self.code)
            {
                let helper = st.syscall_thread().unwrap_or(self.pid);
                self.pages = st.unmap(helper, self.base, self.total).is_err();
            }
            reclaim(&mut st, &self.orphans, &self.entries);
            holders = Some(describe(&st));
        }
        report.stops.push(st.detach()?);
        Ok(holders)
    }

    /// The pages, for the caller to unmap once the session is over.
    pub fn into_leftover(mut self) -> Leftover {
        self.disarmed = true;
        self.pages = false;
        Leftover {
            pid: self.pid,
            base: self.base,
            total: self.total,
            code: self.code,
            keep: self.keep_pages,
            waiting: self.waiting,
            orphans: std::mem::take(&mut self.orphans),
            entries: std::mem::take(&mut self.entries),
            restart: self.restart,
            removed: false,
        }
    }
}

/// For each held thread (those `n.thread` allows): cuts the blocked calls
/// of `selection` short. Returns whether the main thread runs Python (or
/// waits for the GIL) and a thread parked in a plain syscall, to queue
/// the pending call from.
fn cut_short(
    st: &mut attach::Stopped,
    pid: i32,
    n: &Nudges,
    selection: &Selection,
    report: &mut Report,
) -> (Result<bool, RunError>, Option<i32>) {
    let mut main_running = false;
    let mut caller = None;
    for tid in st.threads() {
        if n.none || n.thread.is_some_and(|t| t != tid) {
            continue;
        }
        let regs = match st.regs(tid) {
            Ok(r) => r,
            Err(e) => return (Err(e.into()), caller),
        };
        // A main thread in a futex wait is most often one that runs Python
        // but waits for the GIL this instant (a CPU-bound main thread
        // spends part of every switch interval there): no detour catches
        // it, the pending call does, once it has the GIL. On Python 3 the
        // wait is also cut short below, and lock waits run pending calls
        // on EINTR. On 2.7 (no EINTR) only when that thread was asked for.
        if tid == pid && regs.syscall() == Some(FUTEX) && (n.py3 || n.thread == Some(pid)) {
            main_running = true;
        }
        match regs.syscall() {
            Some(nr) if selection.nudge.contains(&tid) => {
                match st.interrupt_syscall(tid) {
                    Ok(true) => {
                        report.nudged.push(tid);
                        st.release_last(tid);
                    }
                    Ok(false) => {}
                    Err(e) => return (Err(e.into()), caller),
                }
                if nr != FUTEX && caller.is_none() {
                    caller = Some(tid);
                }
            }
            Some(_) => {}
            None if tid == pid => main_running = true,
            None => {}
        }
    }
    (Ok(main_running), caller)
}

impl Drop for Armed {
    fn drop(&mut self) {
        if !self.disarmed {
            // An error between arming and the end: no entry may keep
            // jumping into pages nobody waits on.
            let _ = self.cancel(|_| String::new(), &mut Report::default());
        }
        if let Some(st) = self.held.take() {
            let _ = st.detach();
        }
        if self.pages && self.claimed {
            // A bootstrap that claimed still runs in them: they go once its
            // call has returned (it finds nobody to talk to, and leaves
            // after its wait for an ack).
            let pages = Armed {
                disarmed: true,
                pages: false,
                held: None,
                patched: Vec::new(),
                orphans: std::mem::take(&mut self.orphans),
                entries: std::mem::take(&mut self.entries),
                ..*self
            };
            let _ = pages.into_leftover().remove(PAGES_WAIT);
        }
    }
}
