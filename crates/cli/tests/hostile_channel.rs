//! A target that speaks the channel's protocol badly. The code `--run`
//! gives it is the target's own code once it runs, and here it does what a
//! compromised process could: it takes the bootstrap's socket and writes
//! frames of an unknown kind, a 4 GB length, a frame cut off in its middle,
//! floods pyattach with 180 MiB of output without a newline, or never
//! answers again (bounded by `--timeout`). pyattach ends with a clear
//! message (or, for the flood, passes it on), its peak
//! memory stays under 100 MB, and the target runs on: the next `--run`
//! works.

use std::time::Duration;

use testsupport::Target;

const LIMIT: Duration = Duration::from_secs(120);
const PEAK_KB: u64 = 100 * 1024;

/// Code that finds the session's socket among the bootstrap's frames, as
/// `s`, then runs `then`.
fn with_socket(then: &str) -> String {
    format!(
        "import sys, socket, time\n\
f = sys._getframe()\n\
while 'sess' not in f.f_locals:\n    f = f.f_back\n\
s = f.f_locals['sess'].sock\n\
{then}\n"
    )
}

/// Runs pyattach on `pid`; checks its peak memory; (status, stdout len,
/// stdout head, stderr).
fn pyattach(who: &str, args: &[&str]) -> Option<(i32, usize, String, String)> {
    let (out, kb) = testsupport::pyattach_output_peak(&[], args, LIMIT)?;
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(kb < PEAK_KB, "{who}: pyattach peaked at {kb} KiB\n{err}");
    let head = String::from_utf8_lossy(&out.stdout[..out.stdout.len().min(200)]).into_owned();
    Some((out.status.code().unwrap_or(-1), out.stdout.len(), head, err))
}

#[test]
fn a_target_that_speaks_the_protocol_badly_gets_a_clear_error() {
    let bad: [(&str, String, &str); 3] = [
        (
            "unknown kind",
            with_socket("s.sendall(b'Z\\0\\0\\0\\0')"),
            "unknown kind 0x5a",
        ),
        (
            "4 GB length",
            with_socket("s.sendall(b'O\\xff\\xff\\xff\\xff')"),
            "frame of 4294967295 bytes",
        ),
        (
            "cut-off frame",
            with_socket(
                "s.sendall(b'S\\0\\x7f\\0\\0abc'); time.sleep(0.5); s.shutdown(socket.SHUT_WR)",
            ),
            "middle of a frame",
        ),
    ];
    for py in testsupport::pythons() {
        let Some(t) = Target::run_state(&py, "sleep") else {
            continue;
        };
        let pid = t.pid().to_string();
        for (what, code, want) in &bad {
            let who = format!("{} ({what})", py.id);
            let Some((status, _, _, err)) = pyattach(&who, &["--run", code, &pid]) else {
                return;
            };
            assert_eq!(status, 1, "{who}: {err}");
            assert!(err.contains(want), "{who}: {err}");
            assert!(t.is_alive(), "{who}: the target died");
        }
        // A target that holds the session and never answers again: as
        // code that runs for good, bounded by --timeout (status 124), the
        // code stopped with KeyboardInterrupt.
        let silent = with_socket("time.sleep(3600)");
        let who = format!("{} (never answering)", py.id);
        let (status, _, _, err) =
            pyattach(&who, &["--run", &silent, "--timeout", "2", &pid]).expect("time");
        assert_eq!(status, 124, "{who}: {err}");
        assert!(t.is_alive(), "{who}: the target died");
        // Output without a newline in frames of 60 MiB, far more than
        // pyattach may hold (the previous build peaked at 160-340 MB on 20
        // frames of 32 MiB, 700 MB when the reader was slow).
        let flood = with_socket(
            "import struct\n\
for i in range(3):\n    s.sendall(b'O' + struct.pack('>I', 60 << 20) + b'x' * (60 << 20))",
        );
        let who = format!("{} (flood)", py.id);
        let (status, len, _, err) = pyattach(&who, &["--run", &flood, &pid]).expect("time");
        assert_eq!((status, len), (0, 3 * (60 << 20)), "{who}: {err}");
        // The target is unharmed: its bootstrap went away each time.
        let who = format!("{} (after)", py.id);
        let (status, _, head, err) =
            pyattach(&who, &["--run", "print(6 * 7)", &pid]).expect("time");
        assert_eq!((status, head.as_str()), (0, "42\n"), "{who}: {err}");
    }
}
