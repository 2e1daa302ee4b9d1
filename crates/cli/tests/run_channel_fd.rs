//! Found by scripts/torture: about one `--run` in 700 against the threaded
//! HTTP server lost a request. The session's reader thread was blocked in
//! `recv` on the channel when the process was stopped (by pyattach's own
//! clean-up stop; a signal or any debugger does the same), so its `recv`
//! was due to restart, with the descriptor's number in a register. The
//! session's thread meanwhile shut the channel down and closed it, the
//! server accepted a connection under the freed number, and the restarted
//! `recv` read that connection's request: the handler then waited forever
//! for data that was gone.
//!
//! Here the test holds the reader thread stopped itself (with its own
//! ptrace), lets the session end, has the target accept connections whose
//! data is waiting, and only then lets the reader go on. The channel's
//! number must not have been reused: every connection gets its answer.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::fd_count;
use nix::sys::ptrace;
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;
use testsupport::{pyattach_bin, Target};

mod common;

/// Threads of `pid` other than those in `known` that sit in `recvfrom`
/// (the session's reader, blocked on the channel).
fn reader_thread(pid: i32, known: &HashSet<i32>) -> Option<i32> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|t| !known.contains(t))
        .find(|t| {
            std::fs::read_to_string(format!("/proc/{pid}/task/{t}/syscall"))
                .is_ok_and(|s| s.split_whitespace().next() == Some("45"))
        })
}

fn threads(pid: i32) -> HashSet<i32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

#[test]
fn a_restarted_read_of_the_channel_never_eats_the_targets_data() {
    for v in ["2.7", "3.12"] {
        let Some(py) = testsupport::python(v) else {
            continue;
        };
        let t = Target::python(&py, "accept_batch.py", &[]);
        let pid = t.pid();
        let port = common::port(&t);
        let known = threads(pid);
        let fds_before = fd_count(pid);

        let run = Command::new(pyattach_bin())
            .args(["--run", "import time; time.sleep(1)", &pid.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let end = Instant::now() + Duration::from_secs(20);
        let reader = loop {
            if let Some(r) = reader_thread(pid, &known) {
                break r;
            }
            assert!(Instant::now() < end, "{v}: no reader thread in recv");
            std::thread::sleep(Duration::from_millis(5));
        };
        // Hold the reader stopped in its recv, as a stop of the process
        // would for a moment.
        let r = Pid::from_raw(reader);
        ptrace::seize(r, ptrace::Options::empty()).unwrap();
        ptrace::interrupt(r).unwrap();
        waitpid(r, Some(WaitPidFlag::__WALL)).unwrap();

        // The session ends meanwhile (pyattach cannot take the held thread
        // for its clean-up: it leaves its pages, inert).
        let out = run.wait_with_output().unwrap();
        assert!(out.status.success(), "{v}: {out:?}");

        // New connections, their data already sent, taken by the target.
        let mut conns: Vec<TcpStream> = (0..3)
            .map(|_| {
                let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
                c.write_all(b"ping\n").unwrap();
                c
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        // Now the reader goes on, restarting its recv.
        ptrace::detach(r, None).unwrap();
        for c in &mut conns {
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut got = [0u8; 10];
            let n = c.read(&mut got).unwrap_or(0);
            assert_eq!(&got[..n], b"echo ping\n", "{v}: a connection lost its data");
        }
        // The channel's descriptor is closed once the reader is done.
        let end = Instant::now() + Duration::from_secs(10);
        while fd_count(pid) != fds_before + conns.len() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(fd_count(pid), fds_before + conns.len(), "{v}");
        assert!(t.is_alive());
    }
}
