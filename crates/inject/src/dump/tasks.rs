//! asyncio tasks read from memory (`dump --tasks`, 3.7–3.15): every task of
//! every event loop, its coroutine stack and what it awaits, without
//! running anything in the target, so a loop stuck in a callback or a
//! deadlocked pair of tasks shows as it is.
//!
//! Where the tasks are: `asyncio.tasks` keeps the set of live tasks that
//! `asyncio.all_tasks()` reads, a `weakref.WeakSet` (`_all_tasks` up to
//! 3.11, `_scheduled_tasks` from 3.12) whose `data` is a `set` of weak
//! references, plus 3.12's strong `_eager_tasks` set; the C `_asyncio`
//! module shares these very objects with `asyncio.tasks` (tasks.py imports
//! them from it). 3.14+ links native tasks into a list per thread state
//! (`asyncio_tasks_head`, through `TaskObj.task_node`; the interpreter keeps
//! those of threads that ended) and records in the thread state the loop it
//! runs and its current task; those WeakSets then only hold tasks of other
//! `Task` classes. Each task is a `TaskObj` (`Modules/_asynciomodule.c`)
//! whose `task_coro` is the coroutine and whose `task_fut_waiter` is the
//! future it waits on. A suspended coroutine's frame (`cr_frame` up to
//! 3.10, the `_PyInterpreterFrame` inside the object from 3.11) has what it
//! awaits on top of its value stack, as `_PyGen_yf` reads it; following
//! that from coroutine to coroutine gives the task's stack, outermost
//! first, down to the future it waits on (`_asyncio.FutureIter`).
//!
//! What a task awaits comes from `task_fut_waiter`: another task; a
//! `gather()` (`_GatheringFuture`, whose `_children` are the awaited
//! tasks); a `TaskGroup` (3.11+: the parent waits in `__aexit__` on the
//! group's `_on_completed_fut`, and each child carries the group's bound
//! `_on_task_done` as a done callback); or a plain future. Tasks that
//! await each other in a cycle can never finish: they are named as a
//! deadlock.

use std::collections::{HashMap, HashSet};

use symbols::offsets::{Field, Offsets};

use super::asyncio::{awaited, cycles, Asyncio, Awaits, EventLoop, Task, TaskState};
use super::frames::Walker;
use super::layout::{need, opt};
use super::mem::{le_u64, Reader, MAX_READ};
use super::names::{self, DictLayout};
use super::Frame;

mod coro;
use coro::Gen;

/// Tasks read at most; more is garbage (or not worth a freeze).
const MAX_TASKS: usize = 1 << 20;
/// Coroutines a task's await chain goes through at most.
const MAX_CHAIN: usize = 1024;

/// Why `dump --tasks` cannot read the tasks of `major.minor`, or `None`.
pub fn unsupported(major: u32, minor: u32) -> Option<String> {
    match (major, minor) {
        (3, 7..=15) => None,
        (2, _) | (3, 0..=6) => Some(format!(
            "asyncio tasks are read on 3.7 to 3.15; {major}.{minor} keeps them in \
             another form (3.6: a class attribute of a Python-level set, 2.7: none)"
        )),
        _ => Some(format!(
            "asyncio tasks are read on 3.7 to 3.15, not on {major}.{minor}: its \
             layouts are not known yet"
        )),
    }
}

/// Why the task reader cannot work with offsets `o` (a layout it lacks),
/// checked before the threads are stopped.
pub(super) fn layout_missing(o: &Offsets) -> Option<String> {
    if DictLayout::new(o).is_none() {
        return Some("no dict layout for this version".into());
    }
    TaskLayout::new(o).err()
}

/// The offsets the task reader needs.
struct TaskLayout {
    v: (u32, u32),
    ob_type: u64,
    tp_name: u64,
    tp_base: u64,
    module_dict: u64,
    list_items: u64,
    tuple_items: u64,
    var_size: u64,
    set_mask: u64,
    set_table: u64,
    set_entry: u64,
    set_key: u64,
    wr_object: u64,
    method_self: u64,
    task_loop: u64,
    task_cb0: u64,
    task_cbs: u64,
    task_state: u64,
    task_waiter: u64,
    task_coro: u64,
    task_name: Option<u64>,
    /// 3.14+: the per-thread (and per-interpreter) lists of native tasks,
    /// and what each thread runs.
    lists: Option<Lists>,
    gen: Gen,
}

/// Where 3.14+ keeps its native tasks and each thread's running loop.
#[derive(Clone, Copy)]
struct Lists {
    task_node: u64,
    tstate_head: u64,
    interp_head: u64,
    running_loop: u64,
    running_task: u64,
}

impl TaskLayout {
    fn new(o: &Offsets) -> Result<TaskLayout, String> {
        let v = (o.major, o.minor);
        let gen = Gen::new(o)?;
        let lists = if v >= (3, 14) {
            Some(Lists {
                task_node: need(o, Field::TaskNode)?,
                tstate_head: need(o, Field::TstateAsyncioTasksHead)?,
                interp_head: need(o, Field::InterpAsyncioTasksHead)?,
                running_loop: need(o, Field::TstateAsyncioRunningLoop)?,
                running_task: need(o, Field::TstateAsyncioRunningTask)?,
            })
        } else {
            None
        };
        Ok(TaskLayout {
            v,
            ob_type: need(o, Field::ObType)?,
            tp_name: need(o, Field::TypeName)?,
            tp_base: need(o, Field::TypeBase)?,
            module_dict: need(o, Field::ModuleDict)?,
            list_items: need(o, Field::ListItems)?,
            tuple_items: need(o, Field::TupleItems)?,
            var_size: need(o, Field::VarSize)?,
            set_mask: need(o, Field::SetMask)?,
            set_table: need(o, Field::SetTable)?,
            set_entry: need(o, Field::SetEntrySize)?,
            set_key: need(o, Field::SetEntryKey)?,
            wr_object: need(o, Field::WeakrefObject)?,
            method_self: need(o, Field::MethodSelf)?,
            task_loop: need(o, Field::TaskLoop)?,
            task_cb0: need(o, Field::TaskCallback0)?,
            task_cbs: need(o, Field::TaskCallbacks)?,
            task_state: need(o, Field::TaskState)?,
            task_waiter: need(o, Field::TaskFutWaiter)?,
            task_coro: need(o, Field::TaskCoro)?,
            task_name: opt(o, Field::TaskName),
            lists,
            gen,
        })
    }
}

/// A Python thread as the task reader sees it: its kernel id and its
/// frames' addresses with their functions, innermost first.
pub(super) struct ThreadFrames<'a> {
    /// Its `PyThreadState`.
    pub(super) tstate: u64,
    pub(super) native_id: Option<i32>,
    pub(super) addrs: &'a [u64],
    pub(super) frames: &'a [Frame],
}

struct Reading<'w, 'a> {
    w: &'w mut Walker<'a>,
    l: TaskLayout,
    dicts: DictLayout,
    /// Type object → its `tp_name` and its bases' (cached).
    chains: HashMap<u64, Vec<String>>,
    warnings: Vec<String>,
}

/// Reads every task of the interpreter at `interp`, whose `sys.modules` is
/// at `modules`; `threads` tell which thread runs which loop and hold the
/// frames of a task that runs right now.
pub(super) fn read(
    w: &mut Walker,
    o: &Offsets,
    interp: u64,
    modules: u64,
    threads: &[ThreadFrames],
) -> Result<Asyncio, String> {
    let l = TaskLayout::new(o)?;
    let dicts = DictLayout::new(o).ok_or("no dict layout for this version")?;
    let mut rd = Reading {
        w,
        l,
        dicts,
        chains: HashMap::new(),
        warnings: Vec::new(),
    };
    let Some(tasks_mod) = names::lookup(&rd.dicts, &rd.w.obj, modules, "asyncio.tasks")? else {
        return Ok(Asyncio {
            warnings: vec!["asyncio is not imported: no tasks".into()],
            ..Asyncio::default()
        });
    };
    let d = rd.r().u64(tasks_mod.wrapping_add(rd.l.module_dict))?;
    let mut addrs = rd.task_addresses(d)?;
    let mut current: HashMap<u64, u64> = names::lookup(&rd.dicts, &rd.w.obj, d, "_current_tasks")?
        .map(|c| names::items(&rd.dicts, &rd.w.obj, c))
        .transpose()?
        .unwrap_or_default()
        .into_iter()
        .collect();
    // 3.14+: native tasks are in lists, and each thread says what it runs.
    let mut runs: HashMap<u64, i32> = HashMap::new();
    if let Some(ls) = rd.l.lists {
        let mut heads = vec![interp.wrapping_add(ls.interp_head)];
        for t in threads {
            heads.push(t.tstate.wrapping_add(ls.tstate_head));
            let lp = rd.r().u64(t.tstate.wrapping_add(ls.running_loop));
            if let (Ok(lp), Some(tid)) = (lp, t.native_id) {
                if lp != 0 {
                    runs.insert(lp, tid);
                    match rd.r().u64(t.tstate.wrapping_add(ls.running_task)) {
                        Ok(task) if task != 0 => {
                            current.insert(lp, task);
                        }
                        _ => {}
                    }
                }
            }
        }
        let mut seen: HashSet<u64> = addrs.iter().copied().collect();
        for h in heads {
            for task in rd.list_tasks(h, ls.task_node) {
                if seen.insert(task) {
                    addrs.push(task);
                }
            }
        }
        rd.prefetch(&addrs);
    }
    let mut raw = Vec::new();
    let mut python_level = 0;
    for a in addrs {
        if !rd.derives(a, "_asyncio.Task") {
            python_level += 1;
            continue;
        }
        raw.push(rd.task(a, &current));
    }
    let coros: Vec<u64> = raw.iter().map(|(_, t)| t.coro).collect();
    for ((_, t), (frames, cut)) in raw.iter_mut().zip(rd.coroutines(&coros, threads)) {
        t.task.coroutine = frames;
        t.task.truncated = cut;
    }
    if python_level > 0 {
        rd.warnings.push(format!(
            "{python_level} tasks are Python-level Task objects (no _asyncio module): not read"
        ));
    }
    rd.awaits_of(&mut raw);
    let deadlocks = cycles(raw.iter().map(|(_, t)| &t.task));
    let mut loops: Vec<EventLoop> = Vec::new();
    for (lp, t) in raw {
        match loops.iter_mut().find(|e| e.address == lp) {
            Some(e) => e.tasks.push(t.task),
            None => loops.push(EventLoop {
                address: lp,
                type_name: rd.w.obj.type_name(lp),
                thread: runs
                    .get(&lp)
                    .copied()
                    .or_else(|| rd.loop_thread(lp, threads)),
                current_task: current.get(&lp).copied(),
                tasks: vec![t.task],
            }),
        }
    }
    // The order of a set means nothing: the running task first, then by
    // name as people number them (Task-2 before Task-10).
    for e in &mut loops {
        e.tasks.sort_by_cached_key(order_key);
    }
    // Loops by the thread that runs them (the main thread's id is the
    // lowest), those no thread runs last.
    loops.sort_by_key(|e| (e.thread.is_none(), e.thread, e.address));
    Ok(Asyncio {
        loops,
        deadlocks,
        warnings: rd.warnings,
    })
}

impl<'a> Reading<'_, 'a> {
    fn r(&self) -> &Reader<'a> {
        &self.w.obj.r
    }

    /// Loads the pages of the tasks with a few batched reads (then, a level
    /// at a time, those of their coroutines: see [`Self::coroutines`]), as
    /// the thread walk does: a thousand tasks then cost a few dozen system
    /// calls rather than one per object, and the freeze is that much
    /// shorter.
    fn prefetch(&self, tasks: &[u64]) {
        let r = self.r();
        let len = self.l.task_coro.max(self.l.task_name.unwrap_or(0)) as usize + 8;
        r.prefetch(&tasks.iter().map(|&a| (a, len)).collect::<Vec<_>>());
    }

    /// The names of `obj`'s type and its bases, innermost first.
    fn chain(&mut self, obj: u64) -> Vec<String> {
        let Ok(mut ty) = self.r().u64(obj.wrapping_add(self.l.ob_type)) else {
            return Vec::new();
        };
        if let Some(c) = self.chains.get(&ty) {
            return c.clone();
        }
        let first = ty;
        let mut out = Vec::new();
        for _ in 0..32 {
            if ty == 0 {
                break;
            }
            let name = self
                .r()
                .u64(ty.wrapping_add(self.l.tp_name))
                .and_then(|p| self.r().c_string(p, 128));
            match name {
                Ok(n) => out.push(n),
                Err(_) => break,
            }
            ty = self.r().u64(ty.wrapping_add(self.l.tp_base)).unwrap_or(0);
        }
        self.chains.insert(first, out.clone());
        out
    }

    fn derives(&mut self, obj: u64, name: &str) -> bool {
        obj != 0 && self.chain(obj).iter().any(|n| n == name)
    }

    /// Every task in `asyncio.tasks`' sets (module dict `d`), deduplicated.
    fn task_addresses(&mut self, d: u64) -> Result<Vec<u64>, String> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for (name, weak) in [
            ("_all_tasks", true),
            ("_scheduled_tasks", true),
            ("_eager_tasks", false),
        ] {
            let Some(obj) = names::lookup(&self.dicts, &self.w.obj, d, name)? else {
                continue;
            };
            let set = if weak {
                match names::attribute(&self.dicts, &self.w.obj, obj, "data")? {
                    Some(s) => s,
                    None => {
                        self.warnings
                            .push(format!("asyncio.tasks.{name} has no readable data"));
                        continue;
                    }
                }
            } else {
                obj
            };
            let keys = self.set_keys(set)?;
            let tasks: Vec<u64> = if weak {
                let at = self.l.wr_object as usize + 8;
                self.r()
                    .prefetch(&keys.iter().map(|&k| (k, at)).collect::<Vec<_>>());
                keys.iter()
                    .filter_map(|&k| self.r().u64(k.wrapping_add(self.l.wr_object)).ok())
                    .collect()
            } else {
                keys
            };
            self.prefetch(&tasks);
            for task in tasks {
                // A dead reference points at None: not a task.
                if self.w.obj.type_name(task).as_deref() == Some("NoneType") {
                    continue;
                }
                if seen.insert(task) {
                    out.push(task);
                }
            }
        }
        if out.len() > MAX_TASKS {
            self.warnings
                .push(format!("only the first {MAX_TASKS} tasks are read"));
            out.truncate(MAX_TASKS);
        }
        Ok(out)
    }

    /// The keys of the `set` at `set` (dummies of removed keys included:
    /// callers check what they point at).
    fn set_keys(&self, set: u64) -> Result<Vec<u64>, String> {
        let mask = self.r().u64(set.wrapping_add(self.l.set_mask))?;
        if mask >= (MAX_TASKS as u64) * 4 {
            return Err(format!("implausible set size {mask}"));
        }
        let table = self.r().u64(set.wrapping_add(self.l.set_table))?;
        let n = mask as usize + 1;
        let size = self.l.set_entry as usize;
        if !(8..=64).contains(&size) {
            return Err(format!("implausible set entry size {size}"));
        }
        // In pieces: the table of 100,000 tasks is more than one read may
        // be (`MAX_READ`).
        let per = MAX_READ / size;
        let mut out = Vec::new();
        for first in (0..n).step_by(per) {
            let count = per.min(n - first);
            let at = table.wrapping_add((first * size) as u64);
            let b = self.r().bytes(at, count * size)?;
            out.extend(
                (0..count)
                    .map(|i| le_u64(&b, i * size + self.l.set_key as usize))
                    .filter(|&k| k != 0),
            );
        }
        Ok(out)
    }

    /// The tasks linked from the list head at `head` (3.14+), each through
    /// its `task_node`.
    fn list_tasks(&mut self, head: u64, task_node: u64) -> Vec<u64> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let mut node = self.r().u64(head).unwrap_or(0);
        while node != head && node != 0 {
            if !seen.insert(node) || out.len() >= MAX_TASKS {
                self.warnings
                    .push(format!("the task list at {head:#x} loops or is too long"));
                break;
            }
            out.push(node.wrapping_sub(task_node));
            node = match self.r().u64(node) {
                Ok(n) => n,
                Err(e) => {
                    self.warnings.push(format!("task list at {head:#x}: {e}"));
                    break;
                }
            };
        }
        out
    }

    /// The items of a list.
    fn list(&self, list: u64) -> Result<Vec<u64>, String> {
        let n = self.r().u64(list.wrapping_add(self.l.var_size))? as i64;
        if !(0..=MAX_TASKS as i64).contains(&n) {
            return Err(format!("implausible list size {n}"));
        }
        let items = self.r().u64(list.wrapping_add(self.l.list_items))?;
        if n == 0 {
            return Ok(Vec::new());
        }
        let b = self.r().bytes(items, n as usize * 8)?;
        Ok((0..n as usize).map(|i| le_u64(&b, i * 8)).collect())
    }

    /// One task, with its loop; its coroutine stack, `awaits` and
    /// `awaited_by` come later.
    fn task(&mut self, a: u64, current: &HashMap<u64, u64>) -> (u64, RawTask) {
        let b = self
            .r()
            .bytes(
                a,
                self.l.task_coro.max(self.l.task_name.unwrap_or(0)) as usize + 8,
            )
            .unwrap_or_default();
        let f = |off: u64| le_u64(&b, off as usize);
        let lp = f(self.l.task_loop);
        let state = match le_u64(&b, self.l.task_state as usize) as u32 {
            0 => TaskState::Pending,
            1 => TaskState::Cancelled,
            _ => TaskState::Done,
        };
        let name = self.l.task_name.map(&f).filter(|&n| n != 0).and_then(|n| {
            match self.w.obj.type_name(n).as_deref() {
                Some("str") => self.w.obj.string(n).ok(),
                // 3.12+ keeps the task counter until `get_name()` makes
                // the default name from it (`Task-N`).
                Some("int") => names::int_u64(&self.dicts, &self.w.obj, n)
                    .ok()
                    .map(|i| format!("Task-{i}")),
                _ => None,
            }
        });
        let running = current.get(&lp) == Some(&a);
        let task = Task {
            address: a,
            name,
            state,
            running,
            coroutine: Vec::new(),
            awaits: None,
            awaited_by: Vec::new(),
            truncated: None,
        };
        let callbacks = self.callbacks(f(self.l.task_cb0), f(self.l.task_cbs));
        (
            lp,
            RawTask {
                task,
                coro: f(self.l.task_coro),
                waiter: f(self.l.task_waiter),
                callbacks,
            },
        )
    }

    /// The done callbacks of a future: the first, then the list's.
    fn callbacks(&self, first: u64, rest: u64) -> Vec<u64> {
        let mut out: Vec<u64> = [first].into_iter().filter(|&c| c != 0).collect();
        if rest != 0 {
            for t in self.list(rest).unwrap_or_default().into_iter().take(64) {
                // `(callback, context)` tuples.
                if let Ok(cb) = self.r().u64(t.wrapping_add(self.l.tuple_items)) {
                    out.push(cb);
                }
            }
        }
        out
    }

    /// Fills in `awaits` and `awaited_by` of every task.
    fn awaits_of(&mut self, raw: &mut [(u64, RawTask)]) {
        let is_task: HashSet<u64> = raw.iter().map(|(_, t)| t.task.address).collect();
        // Their types are read next: one batch for all.
        let heads: Vec<(u64, usize)> = raw
            .iter()
            .flat_map(|(_, t)| t.callbacks.iter().chain([&t.waiter]))
            .filter(|&&a| a != 0)
            .map(|&a| (a, self.l.method_self as usize + 8))
            .collect();
        self.r().prefetch(&heads);
        // TaskGroups (3.11+): each child has the group's bound
        // `_on_task_done` among its done callbacks.
        let mut groups: HashMap<u64, Vec<u64>> = HashMap::new();
        for (_, t) in raw.iter() {
            for &cb in &t.callbacks {
                if self.w.obj.type_name(cb).as_deref() != Some("method") {
                    continue;
                }
                let Ok(me) = self.r().u64(cb.wrapping_add(self.l.method_self)) else {
                    continue;
                };
                if self.derives(me, "TaskGroup") {
                    groups.entry(me).or_default().push(t.task.address);
                }
            }
        }
        let mut group_of_future = HashMap::new();
        for (&g, tasks) in &groups {
            if let Ok(Some(fut)) =
                names::attribute(&self.dicts, &self.w.obj, g, "_on_completed_fut")
            {
                group_of_future.insert(fut, (g, tasks.clone()));
            }
        }
        for (_, t) in raw.iter_mut() {
            let w = t.waiter;
            if w == 0 || self.w.obj.type_name(w).as_deref() == Some("NoneType") {
                continue;
            }
            t.task.awaits = Some(if is_task.contains(&w) {
                Awaits::Task { task: w }
            } else if let Some((g, tasks)) = group_of_future.get(&w) {
                Awaits::TaskGroup {
                    group: *g,
                    tasks: tasks.clone(),
                }
            } else if self.derives(w, "_GatheringFuture") {
                let children = match names::attribute(&self.dicts, &self.w.obj, w, "_children") {
                    Ok(Some(c)) => self.list(c).unwrap_or_default(),
                    _ => Vec::new(),
                };
                let tasks: Vec<u64> = children
                    .iter()
                    .copied()
                    .filter(|c| is_task.contains(c))
                    .collect();
                Awaits::Gather {
                    future: w,
                    others: children.len() - tasks.len(),
                    tasks,
                }
            } else {
                Awaits::Future {
                    future: w,
                    type_name: self.w.obj.type_name(w),
                }
            });
        }
        let mut by: HashMap<u64, Vec<u64>> = HashMap::new();
        for (_, t) in raw.iter() {
            for x in awaited(&t.task) {
                by.entry(x).or_default().push(t.task.address);
            }
        }
        for (_, t) in raw.iter_mut() {
            t.task.awaited_by = by.remove(&t.task.address).unwrap_or_default();
        }
    }

    /// The thread whose `run_forever` frame has `lp` as `self`.
    fn loop_thread(&self, lp: u64, threads: &[ThreadFrames]) -> Option<i32> {
        // `self` is the first local.
        let locals = self.w.l.frame_localsplus?;
        threads.iter().find_map(|t| {
            t.frames
                .iter()
                .zip(t.addrs)
                .filter(|(fr, _)| fr.function == "run_forever")
                .any(|(_, &a)| self.r().u64(a.wrapping_add(locals)).ok() == Some(lp))
                .then_some(t.native_id)
                .flatten()
        })
    }
}

/// How tasks are listed: running first, then unnamed ones last, names
/// compared with their trailing number as a number.
fn order_key(t: &Task) -> (bool, bool, String, u64, u64) {
    let name = t.name.as_deref().unwrap_or("");
    let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (stem, num) = name.split_at(name.len() - digits);
    (
        !t.running,
        t.name.is_none(),
        stem.to_string(),
        num.parse().unwrap_or(0),
        t.address,
    )
}

/// A task as read, with what `awaits_of` needs.
struct RawTask {
    task: Task,
    coro: u64,
    waiter: u64,
    callbacks: Vec<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every version `unsupported` accepts has every offset the reader
    /// needs (a row left out of a table would fail each dump instead).
    #[test]
    fn every_accepted_version_has_the_offsets() {
        for minor in 6..=16 {
            let Some(o) = Offsets::for_version(3, minor) else {
                assert!(unsupported(3, minor).is_some(), "3.{minor}");
                continue;
            };
            match unsupported(3, minor) {
                None => assert_eq!(layout_missing(&o), None, "3.{minor}"),
                Some(_) => assert!(minor < 7, "3.{minor}"),
            }
        }
        assert!(unsupported(2, 7).is_some());
        let old = Offsets::for_version(3, 6).unwrap();
        assert!(layout_missing(&old).is_some());
    }

    #[test]
    fn generator_states_per_version() {
        use coro::GenState::{self, *};
        type States = &'static [(i8, Option<GenState>)];
        let cases: &[((u32, u32), States)] = &[
            (
                (3, 11),
                &[
                    (-2, Some(Created)),
                    (-1, Some(Suspended)),
                    (0, Some(Running)),
                    (1, None),
                    (4, None),
                ],
            ),
            (
                (3, 13),
                &[
                    (-3, Some(Created)),
                    (-2, Some(Suspended)),
                    (-1, Some(Suspended)),
                    (0, Some(Running)),
                    (1, None),
                ],
            ),
            (
                (3, 14),
                &[
                    (-3, Some(Created)),
                    (-1, Some(Suspended)),
                    (0, Some(Running)),
                    (4, None),
                ],
            ),
            (
                (3, 15),
                &[
                    (0, Some(Created)),
                    (1, Some(Suspended)),
                    (3, Some(Suspended)),
                    (4, Some(Running)),
                    (5, None),
                ],
            ),
        ];
        for (v, states) in cases {
            for &(s, want) in states.iter() {
                assert_eq!(coro::gen_state(*v, s), want, "{v:?} {s}");
            }
        }
    }
}
