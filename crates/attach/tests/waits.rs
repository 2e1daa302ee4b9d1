//! Waits the kernel does not restart after a stop (`rt_sigtimedwait`,
//! `epoll_wait`, a `recvfrom` with `SO_RCVTIMEO`, `io_getevents`) go on
//! through our stops as if nothing happened (those with a timeout of more
//! than 5 ms only with `Restart::Always`), while a real signal that
//! arrives during a stop still cuts its wait short with EINTR.

mod common;

use std::time::{Duration, Instant};

use testsupport::Target;

const LOOPS: usize = 6;
const NAMES: [&str; LOOPS] = [
    "rt_sigtimedwait 2 ms",
    "epoll_wait 2 ms",
    "recvfrom (SO_RCVTIMEO 2 ms)",
    "io_getevents 2 ms",
    "sigwaitinfo",
    "epoll_wait 200 ms",
];
/// The loops whose timeout is too long for the default policy, or not
/// known (a socket's SO_RCVTIMEO).
const LONG: usize = 5;
const SOCKET: usize = 2;

/// `counts` (calls and EINTRs of each loop) and `odd` (other results).
fn counters(t: &Target) -> (Vec<u64>, Vec<u64>) {
    let read = |key: &str, n: usize| -> Vec<u64> {
        let at = common::field(t, key);
        (0..n)
            .map(|i| common::read_u64(t.pid(), at + 8 * i as u64))
            .collect()
    };
    (read("counts", 2 * LOOPS), read("odd", LOOPS))
}

fn eintrs(counts: &[u64]) -> Vec<u64> {
    counts.iter().skip(1).step_by(2).copied().collect()
}

/// Waits until every looping wait (the first four; io_getevents only if
/// the machine has AIO) has made `more` more calls than in `from`.
fn loops_go_on(t: &Target, from: &[u64], more: u64) -> bool {
    let aio = common::field(t, "aio") == 1;
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end {
        let (now, _) = counters(t);
        if (0..4).all(|i| (i == 3 && !aio) || now[2 * i] >= from[2 * i] + more) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// Stops the target `rounds` times (every other one with a remote
/// syscall, as `--run`'s stops do) with `restart`; returns the loops'
/// counters before and after, once every short loop went round again.
fn stop_often(t: &Target, restart: attach::Restart, rounds: usize) -> (Vec<u64>, Vec<u64>) {
    let pid = t.pid();
    let (start, _) = counters(t);
    assert!(loops_go_on(t, &start, 5), "the waits never ran");
    let (before, _) = counters(t);
    for round in 0..rounds {
        let mut p = attach::freeze_with(pid, restart).unwrap();
        if round % 2 == 1 {
            let tid = p.syscall_thread().unwrap_or(pid);
            assert_eq!(p.syscall(tid, libc::SYS_getpid, &[]).unwrap(), pid as i64);
        }
        p.detach().unwrap();
        // Let each loop go round again, so that the next stop finds it
        // blocked afresh.
        std::thread::sleep(Duration::from_millis(3));
    }
    assert!(loops_go_on(t, &counters(t).0, 3), "the waits stopped");
    let (after, odd) = counters(t);
    for (i, name) in NAMES.iter().enumerate() {
        eprintln!(
            "{restart:?}: {name}: {} calls, {} EINTR, {} odd",
            after[2 * i] - before[2 * i],
            after[2 * i + 1] - before[2 * i + 1],
            odd[i]
        );
    }
    assert_eq!(odd, vec![0; LOOPS], "a wait returned something else");
    (before, after)
}

#[test]
fn stops_do_not_make_short_or_endless_waits_fail() {
    let Some(t) = common::start("waits", &[]) else {
        return;
    };
    let (before, after) = stop_often(&t, attach::Restart::default(), 60);
    let (mut b, mut a) = (eintrs(&before), eintrs(&after));
    for v in [&mut a, &mut b] {
        v[SOCKET] = 0;
    }
    assert_eq!(
        a[..LONG],
        b[..LONG],
        "a stop made a wait fail with EINTR (per loop, {SOCKET} not counted: {NAMES:?})"
    );
    // A long timeout keeps its EINTR by default (restarted, it would end
    // late by up to all of it; the application retries with the time
    // left).
    assert!(a[LONG] > b[LONG], "the long epoll_wait was restarted");
}

#[test]
fn with_restart_always_no_wait_fails() {
    let Some(t) = common::start("waits", &[]) else {
        return;
    };
    let (before, after) = stop_often(&t, attach::Restart::Always, 20);
    assert_eq!(
        eintrs(&after),
        eintrs(&before),
        "a stop made a wait fail with EINTR (per loop: {NAMES:?})"
    );
}

#[test]
fn a_signal_sent_during_a_stop_keeps_its_eintr() {
    let Some(t) = common::start("waits", &[]) else {
        return;
    };
    let pid = t.pid();
    let waiter = common::field(&t, "handler_tid") as i32;
    let handled_at = common::field(&t, "handled");
    let long = 4; // sigwaitinfo
    for n in 1..=5u64 {
        let p = attach::freeze(pid).unwrap();
        // SAFETY: tgkill takes no pointers; the ids are our child's.
        let r = unsafe { libc::syscall(libc::SYS_tgkill, pid, waiter, libc::SIGUSR1) };
        assert_eq!(r, 0, "tgkill");
        p.detach().unwrap();
        let end = Instant::now() + Duration::from_secs(10);
        while common::read_u64(pid, handled_at) < n && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(common::read_u64(pid, handled_at), n, "handler runs");
        // The wait failed with EINTR, once per signal.
        let end = Instant::now() + Duration::from_secs(10);
        let (mut c, _) = counters(&t);
        while c[2 * long] < n && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(2));
            c = counters(&t).0;
        }
        assert_eq!(c[2 * long + 1], n, "EINTRs of the long wait");
        assert_eq!(c[2 * long], n, "calls of the long wait that returned");
    }
    assert_eq!(
        counters(&t).1,
        vec![0; LOOPS],
        "a wait returned something else"
    );
}
