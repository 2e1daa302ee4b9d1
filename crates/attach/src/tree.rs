//! Process trees as `/proc` shows them: a process's descendants (a
//! gunicorn master's workers, a multiprocessing pool) and the command line
//! each was started with, to label them.

use std::collections::HashMap;
use std::fs;
use std::io;

/// The parent of every process on the system, read from each
/// `/proc/PID/stat` (the kernel's `children` files exist only with
/// `CONFIG_PROC_CHILDREN` and list one thread's children each, so the full
/// scan is the one that works everywhere). Processes that exit during the
/// scan are left out.
fn parents() -> io::Result<HashMap<i32, i32>> {
    let mut out = HashMap::new();
    for e in fs::read_dir("/proc")?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if let Some(ppid) = ppid_of_stat(&stat) {
            out.insert(pid, ppid);
        }
    }
    Ok(out)
}

/// The parent pid in a `/proc/PID/stat` line. The command name before it
/// is in parentheses and may itself hold spaces and parentheses, so the
/// fields are counted from the last `)`.
fn ppid_of_stat(stat: &str) -> Option<i32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Every descendant of `pid` (children, grandchildren, …), breadth first,
/// each level in pid order; `pid` itself is not included.
pub fn descendants(pid: i32) -> io::Result<Vec<i32>> {
    let parents = parents()?;
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for (&child, &parent) in &parents {
        children.entry(parent).or_default().push(child);
    }
    let mut out = Vec::new();
    let mut level = vec![pid];
    while !level.is_empty() {
        let mut next: Vec<i32> = level
            .iter()
            .flat_map(|p| children.get(p).cloned().unwrap_or_default())
            .filter(|c| *c != pid && !out.contains(c))
            .collect();
        next.sort_unstable();
        out.extend(&next);
        level = next;
    }
    Ok(out)
}

/// The command line `pid` runs (its arguments joined by spaces; what `ps`
/// shows, including the titles servers such as gunicorn and uWSGI give
/// their workers). Empty for a kernel thread or a zombie.
pub fn cmdline(pid: i32) -> io::Result<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline"))?;
    let args: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    Ok(args.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parent_is_read_after_the_last_parenthesis() {
        assert_eq!(ppid_of_stat("12 (a) b) S 7 12 12 0"), Some(7));
        assert_eq!(ppid_of_stat("12 (python3) R 1 12"), Some(1));
        assert_eq!(ppid_of_stat("garbage"), None);
    }

    #[test]
    fn children_of_this_process_are_found() {
        let mut a = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let found = descendants(std::process::id() as i32).unwrap();
        // Until the child has exec'd, its command line is not sleep's.
        let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut line = cmdline(a.id() as i32).unwrap();
        while line != "sleep 30" && std::time::Instant::now() < end {
            std::thread::sleep(std::time::Duration::from_millis(5));
            line = cmdline(a.id() as i32).unwrap();
        }
        let _ = a.kill();
        let _ = a.wait();
        assert!(found.contains(&(a.id() as i32)), "{found:?}");
        assert_eq!(line, "sleep 30");
    }
}
