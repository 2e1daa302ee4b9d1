//! `pyattach dump --tasks PID`, as text: each event loop with the thread
//! that runs it, then its tasks as a tree of who awaits whom (as 3.14's
//! `python -m asyncio pstree` draws it): a task, its coroutine stack
//! (outermost first, innermost last, where it is suspended), then the
//! tasks it waits on, one level deeper. Tasks that await each other in a
//! cycle are named as a deadlock.

use std::collections::{HashMap, HashSet};
use std::io::Write;

use inject::dump::{Asyncio, Awaits, StackDump, Task, TaskState, ThreadStack};

use crate::dump::{write_frame, Style};
use crate::term::field;

/// Every loop's task tree, then the deadlocks.
pub fn write(out: &mut impl Write, d: &StackDump, a: &Asyncio, st: &Style) -> std::io::Result<()> {
    for w in &a.warnings {
        writeln!(out, "{}", st.paint("33", &format!("warning: {w}")))?;
    }
    let all: HashMap<u64, &Task> = a
        .loops
        .iter()
        .flat_map(|l| &l.tasks)
        .map(|t| (t.address, t))
        .collect();
    if a.loops.is_empty() {
        writeln!(out, "\nNo asyncio tasks.")?;
    }
    for lp in &a.loops {
        writeln!(out)?;
        let mut head = format!(
            "Event loop {:#x} ({})",
            lp.address,
            lp.type_name.as_deref().unwrap_or("?")
        );
        let n = lp.tasks.len();
        head.push_str(&format!(", {n} task{}", if n == 1 { "" } else { "s" }));
        writeln!(out, "{}", st.paint("1", &head))?;
        match lp.thread.and_then(|tid| thread(d, tid)) {
            Some(t) => writeln!(out, "  run by {}", thread_line(t))?,
            None => writeln!(out, "  run by no thread (not running)")?,
        }
        let mut printed = HashSet::new();
        // Roots: tasks no task waits on; then what is left (cycles).
        let roots = lp
            .tasks
            .iter()
            .filter(|t| t.awaited_by.is_empty())
            .chain(lp.tasks.iter().filter(|t| !t.awaited_by.is_empty()));
        for t in roots {
            if !printed.contains(&t.address) {
                write_task(out, t, &all, &mut printed, "", true, st)?;
            }
        }
    }
    for dl in &a.deadlocks {
        let mut names: Vec<String> = dl.tasks.iter().map(|&t| label(&all, t)).collect();
        if let Some(first) = names.first().cloned() {
            names.push(first);
        }
        writeln!(out)?;
        writeln!(
            out,
            "{} {}",
            st.paint("1;31", "Deadlock:"),
            names.join(" awaits ")
        )?;
    }
    Ok(())
}

fn thread(d: &StackDump, tid: i32) -> Option<&ThreadStack> {
    d.threads.iter().find(|t| t.native_id == Some(tid))
}

/// `thread 1234 "MainThread", now in f (file:line)`.
fn thread_line(t: &ThreadStack) -> String {
    let mut s = format!("thread {}", t.native_id.unwrap_or(0));
    if let Some(n) = t.name.as_ref().or(t.os_name.as_ref()) {
        s.push_str(&format!(" \"{}\"", field(n)));
    }
    if let Some(f) = t.frames.first() {
        let at = match (&f.filename, f.line) {
            (Some(file), Some(l)) => format!("{}:{l}", field(file)),
            (Some(file), None) => field(file).into_owned(),
            _ => String::new(),
        };
        s.push_str(&format!(
            ", now in {} ({at})",
            field(f.qualname.as_deref().unwrap_or(&f.function))
        ));
    }
    s
}

/// `Task "name"`, or `Task 0x…` for an unnamed one (3.7).
fn label(all: &HashMap<u64, &Task>, t: u64) -> String {
    match all.get(&t).and_then(|t| t.name.as_deref()) {
        Some(n) => format!("Task \"{}\"", field(n)),
        None => format!("Task {t:#x}"),
    }
}

/// One task and, under it, its frames and the tasks it waits on. `indent`
/// is what comes before its branch; `last`: no sibling follows it, so the
/// lines below it need no `│` to reach one.
fn write_task(
    out: &mut impl Write,
    t: &Task,
    all: &HashMap<u64, &Task>,
    printed: &mut HashSet<u64>,
    indent: &str,
    last: bool,
    st: &Style,
) -> std::io::Result<()> {
    let (branch, below) = if last {
        ("└─", "   ")
    } else {
        ("├─", "│  ")
    };
    let first = printed.insert(t.address);
    let state = match t.state {
        TaskState::Pending if t.running => "running",
        TaskState::Pending => "pending",
        TaskState::Done => "done",
        TaskState::Cancelled => "cancelled",
    };
    let mut head = format!(
        "{indent}{branch} {} [{state}]",
        st.paint("1", &label(all, t.address))
    );
    if !first {
        head.push_str(" (shown above)");
        return writeln!(out, "{head}");
    }
    if let Some(w) = &t.awaits {
        head.push_str(&format!(", awaits {}", awaits(all, w)));
    }
    writeln!(out, "{head}")?;
    let inner = format!("{indent}{below}");
    for f in &t.coroutine {
        write_frame(out, f, st, &inner)?;
    }
    if let Some(why) = &t.truncated {
        writeln!(out, "{inner}    {}", st.paint("33", &format!("... {why}")))?;
    }
    let children: Vec<u64> = match &t.awaits {
        Some(Awaits::Task { task }) => vec![*task],
        Some(Awaits::Gather { tasks, .. } | Awaits::TaskGroup { tasks, .. }) => tasks.clone(),
        _ => Vec::new(),
    };
    for (i, &c) in children.iter().enumerate() {
        let last = i + 1 == children.len();
        match all.get(&c) {
            Some(ct) => write_task(out, ct, all, printed, &inner, last, st)?,
            None => writeln!(
                out,
                "{inner}{} Task {c:#x} (not read)",
                if last { "└─" } else { "├─" }
            )?,
        }
    }
    Ok(())
}

/// What a task waits on, in words.
fn awaits(all: &HashMap<u64, &Task>, w: &Awaits) -> String {
    let names = |ts: &[u64]| {
        ts.iter()
            .map(|&t| label(all, t))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match w {
        Awaits::Task { task } => label(all, *task),
        Awaits::Gather { tasks, others, .. } => {
            let mut s = format!("gather({})", names(tasks));
            if *others > 0 {
                s.push_str(&format!(" and {others} other awaitables"));
            }
            s
        }
        Awaits::TaskGroup { tasks, .. } => format!("TaskGroup({})", names(tasks)),
        Awaits::Future { future, type_name } => format!(
            "{} {future:#x}",
            field(type_name.as_deref().unwrap_or("future"))
        ),
    }
}
