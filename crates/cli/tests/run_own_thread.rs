//! `--run` code runs in a thread of its own by default (issue #18): the
//! thread that reached the safe point goes back to the application at
//! once, so a server keeps serving while the code works, and code that
//! takes a lock waits for it like any other thread. `--thread` still runs
//! it in the thread asked for, which then waits for it (the stall shows).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{case, pyattach, text};
use testsupport::{pythons, Python, Target};

/// Code that keeps a CPU busy in Python for two seconds.
const SPIN: &str = "import time\nt = time.time()\nwhile time.time() - t < 2: pass\nprint('spun')";

/// A loopback client sending `GET /` every 10 ms until `stop`; the
/// slowest answer.
fn client(port: u16, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Duration> {
    std::thread::spawn(move || {
        let mut worst = Duration::ZERO;
        while !stop.load(Ordering::SeqCst) {
            let t = Instant::now();
            let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
            let mut answer = String::new();
            s.read_to_string(&mut answer).expect("an answer");
            assert!(answer.starts_with("HTTP/1."), "{answer}");
            worst = worst.max(t.elapsed());
            std::thread::sleep(Duration::from_millis(10));
        }
        worst
    })
}

/// The slowest request to the http_counter fixture under `py` while
/// pyattach runs SPIN, in the main thread (the accept loop) if `main`.
fn worst_request_during_spin(py: &Python, main: bool) -> Duration {
    let t = Target::python(py, "http_counter.py", &[]);
    let port = common::port(&t);
    let pid = t.pid().to_string();
    // Warm: the bootstrap defined and its imports done, so the measured
    // run is what every later one costs.
    assert_eq!(
        pyattach(&["--run", "pass", &pid], None).status.code(),
        Some(0)
    );
    let stop = Arc::new(AtomicBool::new(false));
    let c = client(port, stop.clone());
    std::thread::sleep(Duration::from_millis(200));
    let mut args = vec!["--run", SPIN];
    if main {
        args.extend_from_slice(&["--thread", &pid]);
    }
    args.push(&pid);
    let out = pyattach(&args, None);
    stop.store(true, Ordering::SeqCst);
    let worst = c.join().unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{}: {stderr}", py.id);
    assert_eq!(stdout, "spun\n", "{}", py.id);
    assert!(t.is_alive(), "{}", py.id);
    worst
}

#[test]
fn a_server_keeps_serving_while_run_code_spins() {
    for py in pythons() {
        let worst = worst_request_during_spin(&py, false);
        eprintln!("{}: slowest request {worst:?}", py.id);
        assert!(
            worst < Duration::from_millis(500),
            "{}: a request waited {worst:?}",
            py.id
        );
    }
}

/// The documented price of `--thread`: the thread asked for runs the code
/// and nothing else meanwhile (here the server's accept loop).
#[test]
fn run_in_the_main_thread_stalls_it_as_documented() {
    for v in ["2.7", "3.12"] {
        let Some(py) = testsupport::python(v) else {
            continue;
        };
        let worst = worst_request_during_spin(&py, true);
        eprintln!("{v}: slowest request with --thread MAIN {worst:?}");
        assert!(
            worst > Duration::from_millis(1500),
            "{v}: the accept loop ran code for 2 s, yet the slowest request took {worst:?}"
        );
    }
}

/// A worker holds `lock` a second at a time: `--run 'with lock: ...'`
/// waits for it in its own thread and prints once the worker let go; the
/// worker is never held up (it would deadlock if the code ran in it).
#[test]
fn run_code_waits_for_a_lock_like_any_other_thread() {
    for py in pythons() {
        let t = case(&py, "lock", &[]);
        let pid = t.pid().to_string();
        assert!(
            t.wait_for_output("HOLD 2\n", Duration::from_secs(10)),
            "{}: {}",
            py.id,
            t.output()
        );
        let before: Vec<i32> = t.thread_states().iter().map(|(tid, _)| *tid).collect();
        for _ in 0..2 {
            let holds = last(&t.output(), "HOLD ");
            let out = pyattach(
                &["-v", "--run", "with lock: print(released[0])", &pid],
                None,
            );
            let (stdout, stderr) = text(&out);
            assert_eq!(out.status.code(), Some(0), "{}: {stderr}", py.id);
            let released: usize = stdout.trim().parse().expect(&stdout);
            // The hold under way when pyattach came had ended.
            assert!(released >= holds, "{}: {released} < {holds}", py.id);
            // In a thread that was not there before.
            let ran = stderr
                .split("the code ran in thread ")
                .nth(1)
                .and_then(|s| s.split(',').next())
                .and_then(|s| s.parse::<i32>().ok())
                .expect(&stderr);
            assert!(!before.contains(&ran), "{}: ran in {ran}: {stderr}", py.id);
            assert!(
                stderr.contains("a thread of its own"),
                "{}: {stderr}",
                py.id
            );
        }
        let n = last(&t.output(), "HOLD ");
        assert!(
            t.wait_for_output(&format!("HOLD {}\n", n + 2), Duration::from_secs(10)),
            "{}: the worker stopped: {}",
            py.id,
            t.output()
        );
        assert!(!t.output().contains("STALLED"), "{}", py.id);
    }
}

/// The number in the last line of `out` that starts with `prefix`.
fn last(out: &str, prefix: &str) -> usize {
    out.lines()
        .rev()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}
