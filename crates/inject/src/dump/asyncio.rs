//! What `dump --tasks` reports (the `asyncio` object of the JSON, see
//! `docs/dump-json.md`), and the await graph's cycles: tasks that wait on
//! each other can never finish, so each cycle is named as a deadlock.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;

use super::Frame;

/// Every task the target's asyncio knows, by event loop.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Asyncio {
    pub loops: Vec<EventLoop>,
    /// Tasks that await each other in a cycle and so can never finish.
    pub deadlocks: Vec<Deadlock>,
    /// What could not be read (the rest is still right).
    pub warnings: Vec<String>,
}

/// One event loop and its tasks.
#[derive(Clone, Debug, Serialize)]
pub struct EventLoop {
    /// The loop object's address (what tasks' `_loop` point at).
    pub address: u64,
    /// Its type (`_UnixSelectorEventLoop`, `Loop` for uvloop).
    pub type_name: Option<String>,
    /// The kernel id of the thread running it (its `run_forever` frame),
    /// when one does.
    pub thread: Option<i32>,
    /// The task being run right now, if any (`asyncio.current_task`).
    pub current_task: Option<u64>,
    pub tasks: Vec<Task>,
}

/// One task.
#[derive(Clone, Debug, Serialize)]
pub struct Task {
    /// The task object's address: its identity in `awaits`, `awaited_by`
    /// and `deadlocks`.
    pub address: u64,
    /// `Task.get_name()` (3.8+; 3.7 tasks have no name).
    pub name: Option<String>,
    pub state: TaskState,
    /// Whether the task is the one its loop runs right now.
    pub running: bool,
    /// The coroutine stack: outermost first, innermost last (where the
    /// task is suspended).
    pub coroutine: Vec<Frame>,
    /// What the task waits on, when it is suspended on something.
    pub awaits: Option<Awaits>,
    /// The tasks that wait on this one (directly, through `gather` or a
    /// `TaskGroup`).
    pub awaited_by: Vec<u64>,
    /// Why the stack stops early.
    pub truncated: Option<String>,
}

/// `Future._state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    Pending,
    Done,
    Cancelled,
}

/// What a suspended task waits on (its `_fut_waiter`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Awaits {
    /// Another task.
    Task { task: u64 },
    /// `asyncio.gather()`: its tasks, and how many other awaitables.
    Gather {
        future: u64,
        tasks: Vec<u64>,
        others: usize,
    },
    /// The end of an `async with TaskGroup()` block: the group's tasks
    /// still running.
    TaskGroup { group: u64, tasks: Vec<u64> },
    /// A future that no task stands for (a timer, I/O, a lock, `Event`).
    Future {
        future: u64,
        type_name: Option<String>,
    },
}

/// A cycle of tasks awaiting each other.
#[derive(Clone, Debug, Serialize)]
pub struct Deadlock {
    /// Each awaits the next, the last the first.
    pub tasks: Vec<u64>,
}

/// The tasks `t` waits on.
pub(super) fn awaited(t: &Task) -> Vec<u64> {
    match &t.awaits {
        Some(Awaits::Task { task }) => vec![*task],
        Some(Awaits::Gather { tasks, .. } | Awaits::TaskGroup { tasks, .. }) => tasks.clone(),
        _ => Vec::new(),
    }
}

/// Cycles of tasks awaiting each other: each back edge of a depth-first
/// walk of the awaits graph closes one, listed in await order from its
/// lowest address (a cycle reached twice is listed once).
pub(super) fn cycles<'a>(tasks: impl Iterator<Item = &'a Task>) -> Vec<Deadlock> {
    let edges: HashMap<u64, Vec<u64>> = tasks.map(|t| (t.address, awaited(t))).collect();
    // 1: on the current path, 2: finished.
    let mut colour: HashMap<u64, u8> = HashMap::new();
    let mut found = BTreeSet::new();
    let mut starts: Vec<u64> = edges.keys().copied().collect();
    starts.sort_unstable();
    for s in starts {
        if colour.contains_key(&s) {
            continue;
        }
        let mut path: Vec<(u64, usize)> = vec![(s, 0)];
        colour.insert(s, 1);
        while let Some(&mut (at, ref mut next)) = path.last_mut() {
            let out = edges.get(&at).map(Vec::as_slice).unwrap_or(&[]);
            let Some(&n) = out.get(*next) else {
                colour.insert(at, 2);
                path.pop();
                continue;
            };
            *next += 1;
            match colour.get(&n) {
                None if edges.contains_key(&n) => {
                    colour.insert(n, 1);
                    path.push((n, 0));
                }
                Some(1) => {
                    let i = path.iter().position(|&(a, _)| a == n).unwrap_or(0);
                    let cyc: Vec<u64> = path[i..].iter().map(|&(a, _)| a).collect();
                    let low = (0..cyc.len()).min_by_key(|&j| cyc[j]).unwrap_or(0);
                    let mut tasks = cyc[low..].to_vec();
                    tasks.extend_from_slice(&cyc[..low]);
                    found.insert(tasks);
                }
                _ => {}
            }
        }
    }
    found.into_iter().map(|tasks| Deadlock { tasks }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(address: u64, awaits: Option<Awaits>) -> Task {
        Task {
            address,
            name: None,
            state: TaskState::Pending,
            running: false,
            coroutine: Vec::new(),
            awaits,
            awaited_by: Vec::new(),
            truncated: None,
        }
    }

    fn on(task: u64) -> Option<Awaits> {
        Some(Awaits::Task { task })
    }

    #[test]
    fn cycles_are_found_once_from_their_lowest_task() {
        let ts = [
            task(3, on(1)),
            task(1, on(2)),
            task(2, on(3)),
            // A task awaiting the cycle is not part of it.
            task(9, on(2)),
            // Itself.
            task(5, on(5)),
            task(7, None),
        ];
        let found: Vec<Vec<u64>> = cycles(ts.iter()).into_iter().map(|d| d.tasks).collect();
        assert_eq!(found, vec![vec![1, 2, 3], vec![5]]);
    }

    #[test]
    fn cycles_go_through_gathers_and_groups() {
        let ts = [
            task(
                1,
                Some(Awaits::Gather {
                    future: 100,
                    tasks: vec![2, 3],
                    others: 1,
                }),
            ),
            task(2, None),
            task(
                3,
                Some(Awaits::TaskGroup {
                    group: 200,
                    tasks: vec![4],
                }),
            ),
            task(4, on(1)),
            // Awaiting a task that was not read ends the path.
            task(6, on(60)),
        ];
        let found: Vec<Vec<u64>> = cycles(ts.iter()).into_iter().map(|d| d.tasks).collect();
        assert_eq!(found, vec![vec![1, 3, 4]]);
        assert!(cycles([task(1, on(2)), task(2, None)].iter()).is_empty());
    }
}
