//! Threads blocked in syscalls: after attach → remote syscalls and calls →
//! detach, each finishes as if nothing happened (a sleep sleeps its
//! remaining time, a read returns the data written after detach).

mod common;

use std::time::{Duration, Instant};

use testsupport::Target;

/// The number after `key=` in the first output line starting with `tag`.
fn result(t: &Target, tag: &str, key: &str) -> f64 {
    assert!(
        t.wait_for_output(tag, Duration::from_secs(20)),
        "no {tag} line; output: {}",
        t.output()
    );
    let out = t.output();
    let line = out.lines().find(|l| l.starts_with(tag)).unwrap();
    let prefix = format!("{key}=");
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
        .parse()
        .unwrap()
}

/// Freezes the target, makes remote syscalls in the main and the blocked
/// thread (and, if `call_blocker`, a remote call in the blocked one),
/// checks each thread's state is put back, holds it for `hold`, detaches.
/// Returns the `rax` the blocked thread had at the stop.
fn exercise(t: &Target, hold: Duration, call_blocker: bool) -> i64 {
    let pid = t.pid();
    let blocker = common::field(t, "blocker") as i32;
    let six = common::field(t, "six");
    let start = Instant::now();
    let mut p = attach::freeze(pid).unwrap();
    let before_main = p.save(pid).unwrap();
    let before_blk = p.save(blocker).unwrap();
    assert!(
        before_blk.regs.syscall().is_some(),
        "blocker not in a syscall"
    );
    for tid in [pid, blocker] {
        assert_eq!(p.syscall(tid, libc::SYS_getpid, &[]).unwrap(), pid as i64);
    }
    assert_eq!(p.call(pid, six, &[1, 2, 3, 4, 5, 6]).unwrap(), 654321);
    if call_blocker {
        assert_eq!(p.call(blocker, six, &[6, 5, 4, 3, 2, 1]).unwrap(), 123456);
    }
    common::assert_same_state(&p.save(pid).unwrap(), &before_main, "main thread");
    // Even after a call in it, the blocked thread is exactly as it was: the
    // callee made no syscall that could spoil a restart.
    common::assert_same_state(&p.save(blocker).unwrap(), &before_blk, "blocked thread");
    let rax = before_blk.regs.rax as i64;
    if let Some(rest) = hold.checked_sub(start.elapsed()) {
        std::thread::sleep(rest);
    }
    p.detach().unwrap();
    rax
}

/// The target is held for HOLD ms of a SLEEP ms wait; a wait that ended up
/// to TOLERANCE ms late passes (a busy CI machine), one that also waited
/// the time it was held (the restart bug this guards against) fails.
const SLEEP: f64 = 2000.0;
const HOLD: u64 = 600;
const TOLERANCE: f64 = 450.0;

fn sleeps_its_time(mode: &str, call_blocker: bool) {
    let Some(t) = common::start("blocking", &[mode, "2000"]) else {
        return;
    };
    let rax = exercise(&t, Duration::from_millis(HOLD), call_blocker);
    let ms = result(&t, "SLEPT", "ms");
    let eintr = result(&t, "SLEPT", "eintr");
    eprintln!("{mode}: stopped with rax {rax}, slept {ms} ms, eintr {eintr}");
    assert!(
        (SLEEP..SLEEP + TOLERANCE).contains(&ms),
        "{mode} slept {ms} ms, wanted {SLEEP}"
    );
    assert_eq!(eintr, 0.0, "{mode}: EINTR seen {eintr} times");
    assert_eq!(
        result(&t, "SLEPT", "alt"),
        1.0,
        "{mode}: an alternate signal stack changed"
    );
    assert!(common::keeps_counting(
        t.pid(),
        common::field(&t, "counter"),
        10
    ));
}

#[test]
fn nanosleep_sleeps_its_remaining_time() {
    sleeps_its_time("nanosleep", false);
}

#[test]
fn nanosleep_after_a_call_in_the_sleeper() {
    sleeps_its_time("nanosleep", true);
}

#[test]
fn clock_nanosleep_sleeps_its_remaining_time() {
    sleeps_its_time("clock_nanosleep", true);
}

#[test]
fn absolute_clock_nanosleep_restarts() {
    sleeps_its_time("clock_nanosleep_abs", true);
}

#[test]
fn futex_wait_wakes_on_time() {
    let Some(t) = common::start("blocking", &["futex", "2000"]) else {
        return;
    };
    exercise(&t, Duration::from_millis(HOLD), true);
    let ms = result(&t, "WOKE", "ms");
    assert!(
        (SLEEP..SLEEP + TOLERANCE).contains(&ms),
        "futex woke after {ms} ms"
    );
    assert_eq!(
        result(&t, "WOKE", "alt"),
        1.0,
        "an alternate signal stack changed"
    );
}

fn waits_its_time(mode: &str) {
    let Some(t) = common::start("blocking", &[mode, "2000"]) else {
        return;
    };
    let rax = exercise(&t, Duration::from_millis(HOLD), true);
    let ms = result(&t, "WAITED", "ms");
    eprintln!("{mode}: stopped with rax {rax}, waited {ms} ms");
    assert!(
        (SLEEP..SLEEP + TOLERANCE).contains(&ms),
        "{mode} waited {ms} ms"
    );
    assert_eq!(
        result(&t, "WAITED", "alt"),
        1.0,
        "{mode}: an alternate signal stack changed"
    );
}

#[test]
fn select_waits_its_time() {
    waits_its_time("select");
}

#[test]
fn epoll_wait_waits_its_time() {
    waits_its_time("epoll");
}

#[test]
fn blocked_read_gets_data_written_after_detach() {
    let dir = std::env::temp_dir().join(format!("pyattach-fifo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("fifo");
    let _ = std::fs::remove_file(&fifo);
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let Some(t) = common::start("blocking", &["read", fifo.to_str().unwrap()]) else {
        return;
    };
    // Opening the writer end lets the reader's open return; it then blocks
    // in read.
    let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let rax = exercise(&t, Duration::from_millis(100), true);
    assert_eq!(rax, -512, "read should stop with -ERESTARTSYS");
    use std::io::Write;
    w.write_all(b"after-detach").unwrap();
    drop(w);
    assert!(
        t.wait_for_output(
            "READ data=after-detach eintr=0 alt=1",
            Duration::from_secs(10)
        ),
        "output: {}",
        t.output()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
