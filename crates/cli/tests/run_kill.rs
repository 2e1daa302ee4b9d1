//! pyattach killed with SIGKILL at random moments of `--run`: the target
//! never dies, no thread is left stopped, it keeps ticking, and a later
//! `--run` works (a detour left behind by a killed pyattach is harmless and
//! replaced). `PYATTACH_RUN_KILLS` sets the count (default 12 per
//! interpreter; scripts/torture-run runs 100+).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testsupport::{pyattach_bin, Python, Target};

/// A small deterministic generator (xorshift) so failures replay.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn assert_healthy(t: &Target, ctx: &str) {
    assert!(t.is_alive(), "{ctx}: target died");
    // Threads may be caught in a ptrace stop for an instant by a pyattach
    // that is still being reaped; none may stay there.
    let end = Instant::now() + Duration::from_secs(5);
    while t
        .thread_states()
        .iter()
        .any(|(_, s)| *s == 't' || *s == 'T')
    {
        assert!(
            Instant::now() < end,
            "{ctx}: stopped threads {:?}",
            t.thread_states()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    if !t.ticks_on(2) {
        let dump = Command::new(pyattach_bin())
            .args(["dump", &t.pid().to_string()])
            .output()
            .unwrap();
        panic!(
            "{ctx}: no longer ticking\n{}{}",
            String::from_utf8_lossy(&dump.stdout),
            String::from_utf8_lossy(&dump.stderr)
        );
    }
}

fn torture(py: &Python, kills: u64, seed: u64) {
    let t = Target::run_state(py, "sleep").unwrap();
    let pid = t.pid().to_string();
    let mut rng = Rng(seed);
    for i in 0..kills {
        let code = "import time\nfor i in range(3):\n    print(i)\n    time.sleep(0.02)\n";
        let mut child = Command::new(pyattach_bin())
            .args(["--run", code, &pid])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill anywhere from before the attach to the end of the session.
        let delay = rng.below(160);
        std::thread::sleep(Duration::from_millis(delay));
        let _ = child.kill();
        let _ = child.wait();
        assert_healthy(&t, &format!("{} kill {i} after {delay} ms", py.id));
    }
    // A later session works.
    let out = Command::new(pyattach_bin())
        .args(["--run", "print('after the kills')", "--timeout", "10", &pid])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "after the kills\n",
        "{}: {}",
        py.id,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!t.output().contains("after the kills"));
    assert_healthy(&t, &py.id);
}

#[test]
fn sigkill_of_pyattach_during_run_never_harms_the_target() {
    let kills = std::env::var("PYATTACH_RUN_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    for (v, seed) in [
        ("3.12", 0x9e37_79b9_7f4a_7c15),
        ("2.7", 0x1234_5678_9abc_def1),
    ] {
        if let Some(py) = testsupport::python(v) {
            torture(&py, kills, seed);
        }
    }
}

#[test]
fn code_that_never_returns_stops_when_pyattach_is_killed() {
    for v in ["3.12", "2.7"] {
        let Some(py) = testsupport::python(v) else {
            continue;
        };
        let t = Target::run_state(&py, "sleep").unwrap();
        let pid = t.pid().to_string();
        let mut child = Command::new(pyattach_bin())
            .args(["--run", "print('looping')\nwhile True: pass", &pid])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Wait until the code runs, then kill pyattach: the bootstrap sees
        // its channel close and stops the code, so whichever thread was
        // hijacked goes back to its own work.
        let mut out = child.stdout.take().unwrap();
        let mut buf = [0u8; 8];
        let _ = std::io::Read::read(&mut out, &mut buf);
        let _ = child.kill();
        let _ = child.wait();
        assert_healthy(&t, v);
    }
}
