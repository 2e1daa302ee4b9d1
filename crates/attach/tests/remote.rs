//! Attach → remote syscalls and calls → detach on a real process, and the
//! proof that nothing changed: code bytes, registers, FP state, signal mask,
//! and the target keeps running.

mod common;

use attach::{Error, Process};

#[test]
fn calls_leave_no_trace() {
    let Some(t) = common::start("busy", &[]) else {
        return;
    };
    let pid = t.pid();
    let counter = common::field(&t, "counter");
    let six = common::field(&t, "six");
    let text_before = common::text_checksum(pid);
    let maps_before = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();

    let mut p = Process::attach(pid).unwrap().stop_all().unwrap();
    let before = p.save(pid).unwrap();

    assert_eq!(p.syscall(pid, libc::SYS_getpid, &[]).unwrap(), pid as i64);
    let r = p.call(pid, six, &[1, 2, 3, 4, 5, 6]).unwrap();
    assert_eq!(r, 654321);
    let page = p
        .syscall(
            pid,
            libc::SYS_mmap,
            &[
                0,
                4096,
                (libc::PROT_READ | libc::PROT_WRITE) as u64,
                (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64,
                u64::MAX,
                0,
            ],
        )
        .unwrap();
    assert!(page > 0, "mmap returned {page}");
    p.memory().write(page as u64, b"hello").unwrap();
    assert_eq!(p.memory().read_vec(page as u64, 5).unwrap(), b"hello");
    assert_eq!(
        p.syscall(pid, libc::SYS_munmap, &[page as u64, 4096])
            .unwrap(),
        0
    );

    let after = p.save(pid).unwrap();
    common::assert_same_state(&before, &after, "main thread");
    let paused = p.detach().unwrap();
    eprintln!("paused for {paused:?}");

    assert_eq!(text_before, common::text_checksum(pid), "code changed");
    let maps_after = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    assert_eq!(maps_before, maps_after, "a mapping was left behind");
    assert!(common::keeps_counting(pid, counter, 10));
    assert!(t.is_alive());
}

#[test]
fn a_crashing_call_is_reported_and_undone() {
    let Some(t) = common::start("busy", &[]) else {
        return;
    };
    let pid = t.pid();
    let counter = common::field(&t, "counter");
    let mut p = Process::attach(pid).unwrap().stop_all().unwrap();
    let before = p.save(pid).unwrap();
    // Calling address 8 faults at once.
    match p.call(pid, 8, &[]) {
        Err(Error::RemoteCrash { pc: 8, .. }) => {}
        other => panic!("expected RemoteCrash at pc 8, got {other:?}"),
    }
    common::assert_same_state(&before, &p.save(pid).unwrap(), "after the crash");
    // Still usable afterwards.
    assert_eq!(p.syscall(pid, libc::SYS_getpid, &[]).unwrap(), pid as i64);
    p.detach().unwrap();
    assert!(common::keeps_counting(pid, counter, 10));
    assert!(t.is_alive());
}
