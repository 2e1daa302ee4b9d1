//! The tool itself interrupted or killed (SIGINT, SIGTERM, SIGKILL) at
//! random moments of attach → syscall → call → detach cycles: the target
//! must survive every time and keep working. Also: a tool without privilege
//! is refused with the reason.
//!
//! The "tool" is this test binary re-run as a helper process (the `helper`
//! entry below), so no extra program has to be built. `scripts/torture-attach`
//! runs the same test with PYATTACH_TORTURE_COUNT=100 or more.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use attach::{Error, Process};

const HELPER: &str = "PYATTACH_ATTACH_HELPER";

/// One cycle of the helper's work; `slow(3)` keeps a call in flight for
/// 3 ms, so many kills land in the middle of one.
fn cycle(pid: i32, six: u64, slow: u64) -> attach::Result<()> {
    let mut p = attach::freeze(pid)?;
    let me = p.syscall(pid, libc::SYS_getpid, &[])?;
    assert_eq!(me, pid as i64);
    let r = p.call(pid, six, &[1, 2, 3, 4, 5, 6])?;
    assert_eq!(r, 654321);
    assert_eq!(p.call(pid, slow, &[3])?, 4);
    p.detach()?;
    Ok(())
}

/// Not a test: the entry point of the helper process, active only when the
/// environment says so (`loop:PID:SIX:SLOW`, `die:PID:TID:SLOW` or
/// `once:PID`).
#[test]
fn helper() {
    let Ok(spec) = std::env::var(HELPER) else {
        return;
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let pid: i32 = parts[1].parse().unwrap();
    match parts[0] {
        "loop" => {
            attach::install_exit_handlers().unwrap();
            let six = u64::from_str_radix(parts[2], 16).unwrap();
            let slow = u64::from_str_radix(parts[3], 16).unwrap();
            loop {
                match cycle(pid, six, slow) {
                    Ok(()) => {}
                    Err(Error::Interrupted { signal }) => std::process::exit(128 + signal as i32),
                    Err(e) => {
                        eprintln!("HELPER ERROR {e}");
                        std::process::exit(1)
                    }
                }
                if let Some(signal) = attach::exit_requested() {
                    std::process::exit(128 + signal as i32)
                }
            }
        }
        "die" => {
            // Start a long call in thread TID and die (SIGKILL) in the
            // middle of it: the call must complete and the thread resume
            // through the signal frame, without us.
            let tid: i32 = parts[2].parse().unwrap();
            let slow = u64::from_str_radix(parts[3], 16).unwrap();
            let mut p = attach::freeze(pid).unwrap();
            std::thread::spawn(|| {
                std::thread::sleep(Duration::from_millis(100));
                println!("DYING");
                // SAFETY: kill(2) of this very process.
                unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
            });
            let r = p.call(tid, slow, &[400]);
            println!("RESULT call returned {r:?} (should have died first)");
            std::process::exit(3)
        }
        _ => {
            match Process::attach(pid) {
                Ok(p) => {
                    println!("RESULT attached");
                    p.detach().unwrap();
                }
                Err(e) => println!("RESULT {e}"),
            }
            std::process::exit(0)
        }
    }
}

fn helper_cmd(spec: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "helper", "--nocapture", "--test-threads=1"])
        .env(HELPER, spec)
        .stdin(Stdio::null());
    cmd
}

fn tracer_of(pid: i32) -> i32 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn killing_the_tool_never_harms_the_target() {
    let count: u32 = std::env::var("PYATTACH_TORTURE_COUNT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(21);
    let Some(t) = common::start("busy", &[]) else {
        return;
    };
    let pid = t.pid();
    let six = common::field(&t, "six");
    let slow = common::field(&t, "slow");
    let counter = common::field(&t, "counter");
    let text_before = common::text_checksum(pid);
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        | 1;
    eprintln!("seed {seed}");
    // Kill moments spread over one and a half cycles (as long as a cycle
    // takes in this build), so every phase is hit: attach, stop, stub
    // mapping, syscall, calls in flight, detach.
    let start = Instant::now();
    cycle(pid, six, slow).unwrap();
    let span = (start.elapsed().as_micros() as u64 * 3 / 2).max(1000);
    eprintln!("one cycle takes {:?}", start.elapsed());
    let sigs = [libc::SIGINT, libc::SIGTERM, libc::SIGKILL];
    let (mut graceful, mut cycles_seen) = (0, 0);
    for i in 0..count {
        // xorshift: the moment of the kill after the helper is seen
        // attached.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_micros(seed % span);
        let sig = sigs[i as usize % 3];
        let mut child = helper_cmd(&format!("loop:{pid}:{six:x}:{slow:x}"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let end = Instant::now() + Duration::from_secs(20);
        while tracer_of(pid) == 0 && Instant::now() < end {
            if let Ok(Some(st)) = child.try_wait() {
                panic!("helper exited early: {st:?}");
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        std::thread::sleep(delay);
        // SAFETY: kill(2) of our own child, by pid.
        unsafe { libc::kill(child.id() as i32, sig) };
        let end = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if Instant::now() > end {
                let _ = child.kill();
                panic!(
                    "helper did not exit after signal {sig}\n{}",
                    testsupport::describe(pid as u32)
                );
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        use std::os::unix::process::ExitStatusExt;
        if status.code() == Some(128 + sig) {
            graceful += 1;
        } else if status.code() == Some(1) {
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("helper failed: {err}");
        } else {
            assert_eq!(status.signal(), Some(sig), "helper ended with {status:?}");
        }
        // The kernel detaches a dead tracer's tracees; then the target must
        // run on, with no thread left stopped.
        let end = Instant::now() + Duration::from_secs(10);
        while tracer_of(pid) != 0 && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(tracer_of(pid), 0, "round {i}: still traced");
        assert!(t.is_alive(), "round {i}: target died (signal {sig})");
        assert!(
            common::keeps_counting(pid, counter, 10),
            "round {i}: target stopped counting (signal {sig})\n{}",
            testsupport::describe(pid as u32)
        );
        cycles_seen += 1;
    }
    eprintln!("{cycles_seen} kills survived, {graceful} graceful exits");
    assert!(t.is_alive());
    // And it still works normally: a clean cycle from here.
    cycle(pid, six, slow).unwrap();
    assert_eq!(text_before, common::text_checksum(pid), "code changed");
    // A tool killed mid-call may leave its 4 KiB call stub mapped (the call
    // may still return into it); the next run reuses it, so at most one.
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let stubs = maps
        .lines()
        .filter(|l| l.split_whitespace().count() == 5 && l.contains(" r-xp "))
        .count();
    assert!(stubs <= 1, "{stubs} stub pages left:\n{maps}");
}

#[test]
fn another_users_process_is_refused_with_the_reason() {
    if !nix::unistd::geteuid().is_root() {
        testsupport::note("this test needs root to start a tool as another user");
        return;
    }
    if !std::path::Path::new("/usr/bin/setpriv").exists() {
        testsupport::note("setpriv (util-linux) is missing");
        return;
    }
    let Some(t) = common::start("busy", &[]) else {
        return;
    };
    // The tool runs as nobody without capabilities; the target is root's.
    let mut cmd = Command::new("/usr/bin/setpriv");
    cmd.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
    ])
    .arg(std::env::current_exe().unwrap())
    .args(["--exact", "helper", "--nocapture", "--test-threads=1"])
    .env(HELPER, format!("once:{}", t.pid()));
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.find("RESULT").map(|i| &l[i..]))
        .unwrap_or_else(|| panic!("no RESULT from helper: {text}"));
    eprintln!("{line}");
    assert!(line.contains("permission denied"), "{line}");
    assert!(line.contains("belongs to uid 0"), "{line}");
    assert!(line.contains("sudo"), "no remedy given: {line}");
    assert!(common::keeps_counting(
        t.pid(),
        common::field(&t, "counter"),
        10
    ));
}

/// Runs the `die` helper on `t`'s blocked thread and waits for its death and
/// the kernel's release of the target.
fn die_mid_call(t: &testsupport::Target) {
    let pid = t.pid();
    let blocker = common::field(t, "blocker");
    let slow = common::field(t, "slow");
    let out = helper_cmd(&format!("die:{pid}:{blocker}:{slow:x}"))
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGKILL),
        "helper: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("DYING") && !said.contains("RESULT"),
        "the helper did not die mid-call: {said}"
    );
    let end = Instant::now() + Duration::from_secs(10);
    while tracer_of(pid) != 0 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(tracer_of(pid), 0);
}

#[test]
fn tool_killed_mid_call_in_a_reader_the_read_resumes() {
    let dir = std::env::temp_dir().join(format!("pyattach-die-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("fifo");
    let _ = std::fs::remove_file(&fifo);
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let Some(t) = common::start("blocking", &["read", fifo.to_str().unwrap()]) else {
        return;
    };
    let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    die_mid_call(&t);
    // The call (400 ms) finishes on its own, then rt_sigreturn restarts the
    // read with the original registers: the data lands where it should.
    std::thread::sleep(Duration::from_millis(500));
    use std::io::Write;
    w.write_all(b"after-death").unwrap();
    drop(w);
    assert!(
        t.wait_for_output(
            "READ data=after-death eintr=0 alt=1",
            Duration::from_secs(10)
        ),
        "output: {}",
        t.output()
    );
    assert!(common::keeps_counting(
        t.pid(),
        common::field(&t, "counter"),
        10
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tool_killed_mid_call_in_a_sleeper_the_sleep_goes_on() {
    let Some(t) = common::start("blocking", &["nanosleep", "1500"]) else {
        return;
    };
    die_mid_call(&t);
    assert!(
        t.wait_for_output("SLEPT", Duration::from_secs(10)),
        "output: {}",
        t.output()
    );
    // Without the tool the restart block cannot be trusted (rt_sigreturn
    // resets it), so nanosleep returns EINTR once and the program sleeps
    // the rest, as after any signal with a handler.
    let out = t.output();
    let line = out.lines().find(|l| l.starts_with("SLEPT")).unwrap();
    // And the frame the killed tool left gave the thread its alternate
    // signal stacks back untouched.
    assert!(line.ends_with("eintr=1 alt=1"), "{line}");
    let ms: f64 = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("ms="))
        .unwrap()
        .parse()
        .unwrap();
    eprintln!("{line}");
    assert!((1500.0..3000.0).contains(&ms), "{line}");
    assert!(common::keeps_counting(
        t.pid(),
        common::field(&t, "counter"),
        10
    ));
}
