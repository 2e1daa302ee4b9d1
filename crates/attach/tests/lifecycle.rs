//! Signals, many threads, fork, exec, forced EINTR, code patching, and the
//! refusals (vanished pid, zombie, already traced), on real processes.

mod common;

use std::time::{Duration, Instant};

use attach::{Error, Process};

#[test]
fn queued_signals_are_neither_lost_nor_altered() {
    let Some(t) = common::start("signals", &[]) else {
        return;
    };
    let pid = t.pid();
    let (count, sum) = (common::field(&t, "count"), common::field(&t, "sum"));
    let sig = libc::SIGRTMIN() + 1;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    // A steady stream of queued signals, each with its own value, sent from
    // another thread while this one attaches, calls and detaches.
    let sender = std::thread::spawn(move || {
        let (mut n, mut total) = (0u64, 0u64);
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) && n < 3000 {
            n += 1;
            let value = libc::sigval {
                sival_ptr: n as usize as *mut libc::c_void,
            };
            // SAFETY: sigqueue with a valid signal number and a plain value.
            let r = unsafe { libc::sigqueue(pid, sig, value) };
            assert_eq!(r, 0, "sigqueue failed");
            total += n;
            std::thread::sleep(Duration::from_micros(300));
        }
        (n, total)
    });
    for _ in 0..15 {
        let mut p = attach::freeze(pid).unwrap();
        assert_eq!(p.syscall(pid, libc::SYS_getpid, &[]).unwrap(), pid as i64);
        std::thread::sleep(Duration::from_millis(5));
        p.detach().unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sent, total) = sender.join().unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    while common::read_u64(pid, count) < sent && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        common::read_u64(pid, count),
        sent,
        "signals counted vs sent"
    );
    assert_eq!(common::read_u64(pid, sum), total, "sum of signal values");
}

#[test]
fn hundred_threads_all_stop_and_all_run_on() {
    let Some(t) = common::start("threads", &["100"]) else {
        return;
    };
    let pid = t.pid();
    let mut p = attach::freeze(pid).unwrap();
    let tids = p.threads();
    assert_eq!(tids.len(), 101);
    for (tid, state) in t.thread_states() {
        assert_eq!(state, 't', "thread {tid} not held");
    }
    for tid in tids.iter().step_by(20) {
        assert_eq!(p.syscall(*tid, libc::SYS_gettid, &[]).unwrap(), *tid as i64);
    }
    p.detach().unwrap();
    assert!(common::keeps_counting(
        pid,
        common::field(&t, "counter"),
        10
    ));
    std::thread::sleep(Duration::from_millis(50));
    for (tid, state) in t.thread_states() {
        assert!(
            state != 't' && state != 'T',
            "thread {tid} left in state {state}"
        );
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(status.contains("TracerPid:\t0"), "still traced");
}

#[test]
fn a_forking_process_forks_on() {
    let Some(t) = common::start("forkexec", &["fork"]) else {
        return;
    };
    let pid = t.pid();
    let counter = common::field(&t, "counter");
    for _ in 0..5 {
        let mut p = attach::freeze(pid).unwrap();
        assert_eq!(p.syscall(pid, libc::SYS_getpid, &[]).unwrap(), pid as i64);
        p.detach().unwrap();
        std::thread::sleep(Duration::from_millis(30));
    }
    assert!(common::keeps_counting(pid, counter, 10));
}

#[test]
fn exec_during_attach_is_reported() {
    let Some(t) = common::start("forkexec", &["exec", "200"]) else {
        return;
    };
    let pid = t.pid();
    let p = Process::attach(pid).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    match p.stop_all() {
        Err(Error::TargetExeced { .. }) => {}
        other => panic!("expected TargetExeced, got {other:?}"),
    }
    assert!(t.wait_for_output("EXECED", Duration::from_secs(10)));
    assert!(t.is_alive());
}

#[test]
fn forced_eintr_wakes_a_sleeper() {
    let Some(t) = common::start("blocking", &["nanosleep", "1500"]) else {
        return;
    };
    let pid = t.pid();
    let blocker = common::field(&t, "blocker") as i32;
    let mut p = attach::freeze(pid).unwrap();
    assert!(
        !p.interrupt_syscall(pid).unwrap(),
        "busy thread is in no syscall"
    );
    assert!(p.interrupt_syscall(blocker).unwrap());
    p.detach().unwrap();
    assert!(t.wait_for_output("SLEPT", Duration::from_secs(10)));
    assert!(t.output().contains("eintr=1"), "output: {}", t.output());
}

#[test]
fn patch_a_function_through_a_near_page_and_back() {
    let Some(t) = common::start("busy", &[]) else {
        return;
    };
    let pid = t.pid();
    let six = common::field(&t, "six");
    let text_before = common::text_checksum(pid);
    let mut p = attach::freeze(pid).unwrap();
    let page = p.map_near(pid, six, 4096).unwrap();
    assert!(page.abs_diff(six) < 1 << 31, "{page:#x} not near {six:#x}");
    // 48 c7 c0 2a 00 00 00   mov $42, %rax
    // c3                     ret
    p.memory()
        .write(page, &[0x48, 0xc7, 0xc0, 0x2a, 0, 0, 0, 0xc3])
        .unwrap();
    p.protect(pid, page, 4096, libc::PROT_READ | libc::PROT_EXEC)
        .unwrap();
    // e9 rel32   jmp page
    let rel = (page as i64 - (six as i64 + 5)) as i32;
    let mut jmp = vec![0xe9];
    jmp.extend_from_slice(&rel.to_le_bytes());
    let old = p.patch(six, &jmp).unwrap();
    assert_eq!(p.call(pid, six, &[1, 2, 3, 4, 5, 6]).unwrap(), 42);
    p.patch(six, &old).unwrap();
    assert_eq!(p.call(pid, six, &[1, 2, 3, 4, 5, 6]).unwrap(), 654321);
    p.unmap(pid, page, 4096).unwrap();

    // Never under a thread's feet.
    let pc = p.regs(pid).unwrap().pc();
    match p.patch(pc - 1, &[0x90, 0x90]) {
        Err(Error::ThreadInPatch { tid, .. }) => assert_eq!(tid, pid),
        other => panic!("expected ThreadInPatch, got {other:?}"),
    }
    p.detach().unwrap();
    assert_eq!(text_before, common::text_checksum(pid), "code changed");
    assert!(common::keeps_counting(
        pid,
        common::field(&t, "counter"),
        10
    ));
}

#[test]
fn hinted_page_adopted_call_stub_and_patch_many() {
    let Some(t) = common::start("busy", &[]) else {
        return;
    };
    let pid = t.pid();
    let six = common::field(&t, "six");
    let text_before = common::text_checksum(pid);
    // Places read while the target runs; the page goes in one of them.
    let hints = attach::free_gaps_near(pid, six, 4096).unwrap();
    assert!(!hints.is_empty());
    let mut p = attach::freeze(pid).unwrap();
    let page = p.map_near_hinted(pid, six, 4096, &hints).unwrap();
    assert!(hints.contains(&page), "{page:#x} not among {hints:x?}");
    // mov $42, %rax; ret, then (16-aligned) the call stub of our own.
    let mut code = vec![0x48, 0xc7, 0xc0, 0x2a, 0, 0, 0, 0xc3];
    code.resize(16, 0xcc);
    code.extend_from_slice(attach::CALL_STUB);
    p.memory().write(page, &code).unwrap();
    p.protect(pid, page, 4096, libc::PROT_READ | libc::PROT_EXEC)
        .unwrap();
    assert!(
        p.adopt_call_stub(page).is_err(),
        "no stub at the page start"
    );
    p.adopt_call_stub(page + 16).unwrap();
    assert_eq!(p.call(pid, six, &[1, 2, 3, 4, 5, 6]).unwrap(), 654321);
    // Two ranges in one go: one patched, one under the thread's feet.
    let rel = (page as i64 - (six as i64 + 5)) as i32;
    let mut jmp = vec![0xe9];
    jmp.extend_from_slice(&rel.to_le_bytes());
    let pc = p.regs(pid).unwrap().pc();
    let nops = [0x90, 0x90];
    let r = p.patch_many(&[(six, &jmp), (pc - 1, &nops)]).unwrap();
    assert!(matches!(r[1], Err(Error::ThreadInPatch { tid, .. }) if tid == pid));
    let old = r.into_iter().next().unwrap().unwrap();
    assert_eq!(p.call(pid, six, &[1, 2, 3, 4, 5, 6]).unwrap(), 42);
    assert!(p.patch_many(&[(six, &old)]).unwrap()[0].is_ok());
    assert_eq!(p.call(pid, six, &[1, 2, 3, 4, 5, 6]).unwrap(), 654321);
    p.unmap(pid, page, 4096).unwrap();
    p.release_last(pid);
    p.detach().unwrap();
    assert_eq!(text_before, common::text_checksum(pid), "code changed");
    assert!(common::keeps_counting(
        pid,
        common::field(&t, "counter"),
        10
    ));
}

#[test]
fn resume_and_stop_again() {
    let Some(t) = common::start("busy", &[]) else {
        return;
    };
    let pid = t.pid();
    let counter = common::field(&t, "counter");
    let p = attach::freeze(pid).unwrap();
    let a = common::read_u64(pid, counter);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(a, common::read_u64(pid, counter), "counted while held");
    let running = p.resume_all().unwrap();
    assert!(common::keeps_counting(pid, counter, 10));
    let p = running.stop_all().unwrap();
    p.detach().unwrap();
    assert!(common::keeps_counting(pid, counter, 10));
}

#[test]
fn refusals_name_their_cause() {
    // A pid that is gone.
    let mut c = std::process::Command::new("true").spawn().unwrap();
    let gone = c.id() as i32;
    c.wait().unwrap();
    assert!(matches!(
        Process::attach(gone),
        Err(Error::NoSuchProcess { .. })
    ));

    // A zombie (exited, not yet reaped).
    let mut z = std::process::Command::new("true").spawn().unwrap();
    let zpid = z.id() as i32;
    let end = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(format!("/proc/{zpid}/stat"))
        .unwrap()
        .contains(") Z")
        && Instant::now() < end
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    match Process::attach(zpid) {
        Err(e @ Error::Zombie { .. }) => assert!(e.to_string().contains("zombie")),
        other => panic!("expected Zombie, got {other:?}"),
    }
    z.wait().unwrap();

    // Already traced (by us): the error says by whom.
    let Some(t) = common::start("busy", &[]) else {
        return;
    };
    let first = Process::attach(t.pid()).unwrap();
    match Process::attach(t.pid()) {
        Err(Error::AlreadyTraced { tracer, .. }) => {
            // The tracer is a thread: this test's.
            assert_eq!(tracer, nix::unistd::gettid().as_raw())
        }
        other => panic!("expected AlreadyTraced, got {other:?}"),
    }
    first.detach().unwrap();
}

#[test]
fn job_control_stop_is_reported_and_kept() {
    let Some(t) = common::start("busy", &[]) else {
        return;
    };
    let pid = t.pid();
    let counter = common::field(&t, "counter");
    let six = common::field(&t, "six");
    // A SIGSTOP arriving while we hold the threads: the next call meets
    // the group-stop, reports it and leaves the process stopped.
    let mut p = attach::freeze(pid).unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), attach::Signal::SIGSTOP).unwrap();
    match p.call(pid, six, &[1, 2, 3, 4, 5, 6]) {
        Err(Error::GroupStop { .. }) => {}
        other => panic!("expected GroupStop, got {other:?}"),
    }
    drop(p);
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        t.thread_states().iter().all(|(_, s)| *s == 'T'),
        "{:?}",
        t.thread_states()
    );
    // Already stopped: refused up front, with the remedy.
    match Process::attach(pid) {
        Err(e @ Error::GroupStop { .. }) => assert!(e.to_string().contains("kill -CONT")),
        other => panic!("expected GroupStop, got {other:?}"),
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), attach::Signal::SIGCONT).unwrap();
    assert!(common::keeps_counting(pid, counter, 10));
}

#[test]
fn process_exit_while_held_is_reported_without_hanging() {
    let Some(mut t) = common::start("busy", &[]) else {
        return;
    };
    let pid = t.pid();
    let six = common::field(&t, "six");
    let mut p = attach::freeze(pid).unwrap();
    t.child_mut().kill().unwrap(); // SIGKILL ends even a held process
    let start = Instant::now();
    let r = p.call(pid, six, &[1, 2, 3, 4, 5, 6]);
    assert!(
        matches!(&r, Err(e) if e.target_gone()),
        "expected the target gone, got {r:?}"
    );
    let _ = p.detach();
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn threads_born_and_dying_during_attach() {
    let Some(t) = common::start("threads", &["4", "churn"]) else {
        return;
    };
    let pid = t.pid();
    let six = common::field(&t, "six");
    for _ in 0..20 {
        let mut p = attach::freeze(pid).unwrap();
        assert_eq!(p.call(pid, six, &[1, 2, 3, 4, 5, 6]).unwrap(), 654321);
        p.detach().unwrap();
    }
    std::thread::sleep(Duration::from_millis(50));
    for (tid, state) in t.thread_states() {
        assert!(
            state != 't' && state != 'T',
            "thread {tid} left in state {state}"
        );
    }
    assert!(common::keeps_counting(
        pid,
        common::field(&t, "counter"),
        10
    ));
}

#[test]
fn a_call_past_its_deadline_finishes_on_its_own() {
    let Some(t) = common::start("busy", &[]) else {
        return;
    };
    let pid = t.pid();
    let slow = common::field(&t, "slow");
    let counter = common::field(&t, "counter");
    let mut p = attach::freeze(pid).unwrap();
    p.set_call_timeout(Duration::from_millis(200));
    let start = Instant::now();
    // The main thread (the counting loop) runs slow(1500) for us.
    match p.call(pid, slow, &[1500]) {
        Err(Error::CallLeftRunning { tid, .. }) => assert_eq!(tid, pid),
        other => panic!("expected CallLeftRunning, got {other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(5));
    p.detach().unwrap();
    // Still inside slow(): the loop does not count yet …
    let a = common::read_u64(pid, counter);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(a, common::read_u64(pid, counter), "counted during the call");
    // … then the call returns through its frame and the loop goes on.
    assert!(common::keeps_counting(pid, counter, 10));
    assert!(t.is_alive());
}

#[test]
fn realtime_signal_stops_are_passed_on() {
    let Some(t) = common::start("signals", &[]) else {
        return;
    };
    let pid = t.pid();
    let (count, sum) = (common::field(&t, "count"), common::field(&t, "sum"));
    // Attached but running: each queued signal stops the thread in a
    // signal-delivery-stop (a real-time one, which nix's types cannot
    // name); stop_all must pass every one on with its value.
    let p = Process::attach(pid).unwrap();
    for n in 1..=5u64 {
        let value = libc::sigval {
            sival_ptr: n as usize as *mut libc::c_void,
        };
        // SAFETY: sigqueue with a valid signal number and a plain value.
        let r = unsafe { libc::sigqueue(pid, libc::SIGRTMIN() + 1, value) };
        assert_eq!(r, 0);
    }
    std::thread::sleep(Duration::from_millis(50));
    let p = p.stop_all().unwrap();
    p.detach().unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    while common::read_u64(pid, count) < 5 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(common::read_u64(pid, count), 5);
    assert_eq!(common::read_u64(pid, sum), 15);
}
