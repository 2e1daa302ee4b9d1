//! `pyattach manhole PID` (#14): a persistent prompt socket in an
//! unprepared process, reached by `socat` and `nc -U` one after another
//! and two at once, refused to another user, and `--stop` leaving nothing.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{pyattach, text};
use testsupport::{exec_anon, note, python, sid_pythons, Python, Target};

/// A client program, or a note saying why the test skips it.
fn have(tool: &str, package: &str) -> bool {
    let there = Command::new(tool)
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !there {
        note(&format!(
            "{tool} is missing ({package}; scripts/setup installs it)"
        ));
    }
    there
}

/// The pyenv builds of `versions` there are (a note for each missing).
fn pyenv(versions: &[&str]) -> Vec<Python> {
    versions
        .iter()
        .filter_map(|v| {
            let p = python(v);
            if p.is_none() {
                note(&format!("no pyenv {v}"));
            }
            p
        })
        .collect()
}

/// 3.12 and 2.7 (required), 3.8, and Debian sid's 3.14 where present.
fn interpreters() -> Vec<Python> {
    let mut out = pyenv(&["3.12", "2.7", "3.8"]);
    out.extend(sid_pythons().into_iter().filter(|p| p.version.1 == 14));
    out
}

/// What the target holds that a manhole could leave behind.
#[derive(Debug, PartialEq, Eq)]
struct Holdings {
    fds: Vec<String>,
    threads: usize,
    exec_pages: usize,
}

fn holdings(pid: i32) -> Holdings {
    let mut fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .map(|e| {
            let link = std::fs::read_link(e.path()).unwrap_or_default();
            format!("{} {}", e.file_name().to_string_lossy(), link.display())
        })
        .collect();
    fds.sort();
    Holdings {
        fds,
        threads: std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .count(),
        exec_pages: exec_anon(pid),
    }
}

/// What `pid` holds before a manhole: what any injection leaves (the
/// README's list: the modules the bootstrap imports, ctypes's libffi memfd
/// with them) is there first, and the injection's thread gone.
fn before_manhole(pid: i32) -> Holdings {
    let threads = holdings(pid).threads;
    let out = pyattach(&["--run", "pass", &pid.to_string()], None);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let end = Instant::now() + Duration::from_secs(10);
    while holdings(pid).threads != threads && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    holdings(pid)
}

/// Waits up to 10 s for the target to hold what it held `before`.
fn holds_again(pid: i32, before: &Holdings) -> Holdings {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let now = holdings(pid);
        if &now == before || Instant::now() > end {
            return now;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The client command line for `path`: `socat` or `nc -U` (`-N`: shut
/// the socket down at the end of input, as socat does). socat waits only
/// half a second for the rest of the output after the end of its input
/// unless told (`-t`): a loaded machine's first session takes longer.
fn client(tool: &str, path: &Path) -> Command {
    let mut cmd = Command::new(tool);
    match tool {
        "socat" => cmd
            .args(["-t", "30", "-"])
            .arg(format!("UNIX-CONNECT:{}", path.display())),
        _ => cmd.args(["-N", "-U"]).arg(path),
    };
    cmd
}

/// A client started with its stdin open, its stdout gathered meanwhile.
struct Conn {
    child: Child,
    out: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Conn {
    fn open(mut cmd: Command) -> Conn {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the client");
        let mut stdout = child.stdout.take().unwrap();
        let out = Arc::new(Mutex::new(String::new()));
        let sink = out.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Conn {
            child,
            out,
            reader: Some(reader),
        }
    }

    fn send(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    /// Waits up to 20 s for `needle` in the output.
    fn expect(&self, needle: &str) -> String {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let out = self.out.lock().unwrap().clone();
            if out.contains(needle) {
                return out;
            }
            assert!(Instant::now() < end, "no {needle:?} in {out:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Ends the input and waits (20 s at most) for the client to exit:
    /// its output.
    fn finish(mut self) -> String {
        drop(self.child.stdin.take());
        let end = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().unwrap().is_none() {
            if Instant::now() > end {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("client hung: {}", self.out.lock().unwrap());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // The reader has the rest once the pipe is closed (the client
        // gone, it reads to the end).
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        let out = self.out.lock().unwrap().clone();
        if out.is_empty() {
            // What the client said, for a failure's message.
            if let Some(mut e) = self.child.stderr.take() {
                let mut err = String::new();
                let _ = e.read_to_string(&mut err);
                eprintln!("client stderr: {err}");
            }
        }
        out
    }
}

/// One whole session: the banner, every thread's stack, then the prompt;
/// an expression's value and a print come back.
fn session(tool: &str, path: &Path, pid: i32) -> String {
    let out = session_in(tool, path, pid, "run_states.py");
    assert!(out.contains("(main):"), "{tool}: {out}");
    out
}

/// [`session`] with `script` in the stacks (a gevent process's main
/// thread is in its hub, outside any Python frame: "Thread " there).
fn session_in(tool: &str, path: &Path, pid: i32, script: &str) -> String {
    let mut c = Conn::open(client(tool, path));
    c.send("6 * 7\nprint('hi' + 'ho')\n");
    let out = c.finish();
    assert!(
        out.contains(&format!("pyattach manhole in process {pid}"))
            && out.contains("Thread ")
            && out.contains(script)
            && out.contains(">>> 42\n")
            && out.contains("hiho\n"),
        "{tool}: {out}"
    );
    // The stacks come before the first prompt.
    assert!(out.find(script) < out.find(">>> "), "{tool}: {out}");
    out
}

fn start(py: &Python) -> Target {
    Target::run_state(py, "sleep").expect("a sleeping target")
}

/// `pyattach manhole PID`: its stdout, the socket's path.
fn manhole(args: &[&str]) -> String {
    let out = pyattach(&[&["manhole"], args].concat(), None);
    let (so, se) = text(&out);
    assert_eq!(out.status.code(), Some(0), "manhole {args:?}: {se}");
    so.trim_end().to_string()
}

#[test]
fn a_manhole_serves_socat_and_nc_in_turn_and_together_and_stop_leaves_nothing() {
    if !have("socat", "socat") || !have("nc", "netcat-openbsd") {
        return;
    }
    for py in interpreters() {
        let t = start(&py);
        let pid = t.pid();
        let p = pid.to_string();
        let before = before_manhole(pid);
        assert_eq!(manhole(&[&p]), format!("/tmp/manhole-{pid}"), "{}", py.id);
        // The path in the target's filesystem (sid's runs in a chroot).
        let host = PathBuf::from(format!("/proc/{pid}/root/tmp/manhole-{pid}"));
        let meta = std::fs::symlink_metadata(&host).unwrap();
        assert!(meta.file_type().is_socket(), "{}", py.id);
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{}", py.id);

        // One after another, again and again.
        for tool in ["socat", "nc", "socat"] {
            session(tool, &host, pid);
        }
        assert!(!t.output().contains("hiho"), "{}: {}", py.id, t.output());
        assert!(!t.output().contains(">>>"), "{}: {}", py.id, t.output());

        // Two at once: the first stays at its prompt, with a name bound,
        // while the second comes and goes.
        let mut first = Conn::open(client("socat", &host));
        first.expect(">>> ");
        first.send("mine = 'first'\n");
        let other = session("nc", &host, pid);
        assert!(!other.contains("first"), "{}: {other}", py.id);
        first.send("print(mine * 2)\n");
        first.expect("firstfirst\n");

        // --stop with a connection open: it ends too.
        let out = pyattach(&["manhole", "--stop", &p], None);
        let (so, se) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{}: {se}", py.id);
        assert_eq!(so, format!("stopped /tmp/manhole-{pid}\n"), "{}", py.id);
        first.finish();
        assert!(!host.exists(), "{}", py.id);
        let tmp = format!("/proc/{pid}/root/tmp");
        let stray: Vec<String> = std::fs::read_dir(&tmp)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".pyattach-"))
            .collect();
        assert!(stray.is_empty(), "{}: {stray:?}", py.id);
        assert_eq!(holds_again(pid, &before), before, "{}", py.id);
        assert!(t.ticks_on(2), "{}: the target stopped ticking", py.id);

        // Nothing in sys either, and a second stop says there is none.
        let out = pyattach(
            &[
                "--run",
                "import sys; print('%s %s' % (hasattr(sys, '_pyattach_manholes'), hasattr(sys, 'ps1')))",
                &p,
            ],
            None,
        );
        assert_eq!(text(&out).0, "False False\n", "{}: {:?}", py.id, out);
        let out = pyattach(&["manhole", "--stop", &p], None);
        assert_eq!(out.status.code(), Some(1), "{}", py.id);
        assert!(
            text(&out).1.contains("no manhole of pyattach listens"),
            "{}: {:?}",
            py.id,
            out
        );
    }
}

/// Another user cannot connect (the file's mode is 0600), and with the
/// mode opened is closed at once by the listener (`SO_PEERCRED`), which
/// serves its own user on.
#[test]
fn another_user_is_refused_by_the_file_mode_and_by_peer_credentials() {
    if !have("socat", "socat") {
        return;
    }
    if !testsupport::is_root() || !Path::new("/usr/bin/setpriv").exists() {
        return note("not root, or setpriv is missing (util-linux): no other user to be");
    }
    for py in pyenv(&["3.12", "2.7"]) {
        let t = start(&py);
        let pid = t.pid();
        let p = pid.to_string();
        let path = PathBuf::from(manhole(&[&p]));
        let nobody = |input: &str| {
            let mut cmd = Command::new("setpriv");
            cmd.args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "socat",
                "-t",
                "30",
                "-",
            ])
            .arg(format!("UNIX-CONNECT:{}", path.display()));
            let mut c = Conn::open(cmd);
            c.send(input);
            let mut err = String::new();
            let out = {
                let mut stderr = c.child.stderr.take().unwrap();
                let out = c.finish();
                let _ = stderr.read_to_string(&mut err);
                out
            };
            (out, err)
        };
        let (out, err) = nobody("print('in')\n");
        assert!(
            out.is_empty() && err.contains("Permission denied"),
            "{}: {out:?} {err:?}",
            py.id
        );
        // Opened to all: the kernel lets the connection in, the listener
        // closes it before a byte is sent or a line run.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let (out, err) = nobody("print('in' + 'side')\n");
        assert!(out.is_empty(), "{}: {out:?} {err:?}", py.id);
        assert!(!t.output().contains("inside"), "{}", py.id);
        session("socat", &path, pid);
        let out = pyattach(&["manhole", "--stop", &p], None);
        assert_eq!(out.status.code(), Some(0), "{}: {:?}", py.id, out);
        assert!(!path.exists(), "{}", py.id);
    }
}

/// The file a killed manhole's process left does not block the next
/// listener at that path; a live listener and a file that is not a socket
/// are refused, and left as they are.
#[test]
fn a_dead_manholes_file_is_replaced_and_a_live_one_or_a_file_is_not() {
    if !have("socat", "socat") {
        return;
    }
    let Some(py) = python("3.12") else {
        return note("no pyenv 3.12");
    };
    let dir = std::env::temp_dir().join(format!("pyattach-manhole-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    let sock = dir.join("m");
    let s = sock.to_str().unwrap();
    let first = start(&py);
    let second = start(&py);
    let p2 = second.pid().to_string();
    assert_eq!(manhole(&["--socket", s, &first.pid().to_string()]), s);

    // Live: refused, the first one serves on.
    let out = pyattach(&["manhole", "--socket", s, &p2], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).1.contains("something already listens"),
        "{out:?}"
    );
    session("socat", &sock, first.pid());

    // Killed (SIGKILL): the file stays, and the next listener takes its
    // place.
    drop(first);
    assert!(sock.exists());
    assert_eq!(manhole(&["--socket", s, &p2]), s);
    session("socat", &sock, second.pid());
    assert_eq!(
        pyattach(&["manhole", "--stop", "--socket", s, &p2], None)
            .status
            .code(),
        Some(0)
    );
    assert!(!sock.exists());

    // A path connect() could never reach (sun_path holds 107 bytes).
    let long = dir.join("l".repeat(110));
    let out = pyattach(&["manhole", "--socket", long.to_str().unwrap(), &p2], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).1.contains("too long for a unix socket"),
        "{out:?}"
    );

    // Not a socket: refused, untouched.
    std::fs::write(&sock, "keep").unwrap();
    let out = pyattach(&["manhole", "--socket", s, &p2], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("is not a socket"), "{out:?}");
    assert_eq!(std::fs::read_to_string(&sock).unwrap(), "keep");
    let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--stop` while a connection's code is blocked in a long call: pyattach
/// cuts the call short (as Ctrl-C does for `pyattach PID`), so the code
/// gets KeyboardInterrupt there and the thread ends; the listener and its
/// file go, and the process holds what it held before.
#[test]
fn stop_during_a_blocked_statement_interrupts_it_and_leaves_nothing() {
    if !have("socat", "socat") {
        return;
    }
    for py in pyenv(&["3.12", "2.7"]) {
        let t = start(&py);
        let pid = t.pid();
        let p = pid.to_string();
        let before = before_manhole(pid);
        let path = PathBuf::from(manhole(&[&p]));
        let mut c = Conn::open(client("socat", &path));
        c.expect(">>> ");
        // Longer than any test's patience: only being cut short ends it.
        c.send("import time; time.sleep(3600); print('slept')\n");
        std::thread::sleep(Duration::from_millis(300));
        let out = pyattach(&["manhole", "--stop", &p], None);
        let (so, se) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{}: {so}{se}", py.id);
        assert!(!path.exists(), "{}", py.id);
        let out = c.finish();
        assert!(!out.contains("slept"), "{}: {out}", py.id);
        assert!(!t.output().contains("slept"), "{}: {}", py.id, t.output());
        assert!(
            !t.output().contains("KeyboardInterrupt"),
            "{}: {}",
            py.id,
            t.output()
        );
        assert_eq!(holds_again(pid, &before), before, "{}", py.id);
        assert!(t.ticks_on(2), "{}", py.id);
    }
}

/// gevent and eventlet servers (everything monkey-patched): the listener
/// and its connections run on the interpreter's own thread and socket
/// primitives, so the connections are served while the event loop serves
/// requests, and `--stop` leaves what the process held.
#[test]
fn gevent_and_eventlet_processes_get_a_manhole_that_serves_beside_their_loop() {
    if !have("socat", "socat") {
        return;
    }
    let Some(py) = python("3.12") else {
        return note("no pyenv 3.12");
    };
    let ok = Command::new(&py.exe)
        .args(["-c", "import gevent, eventlet"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        return note("pyenv 3.12 lacks gevent or eventlet (scripts/setup)");
    }
    for kind in ["gevent", "eventlet"] {
        let t = Target::python(&py, "green_server.py", &[kind]);
        let pid = t.pid();
        let port: u16 = t
            .ready_line
            .split_whitespace()
            .nth(2)
            .and_then(|p| p.parse().ok())
            .expect("READY <pid> <port>");
        let get = || {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")
                .unwrap();
            let mut body = String::new();
            s.read_to_string(&mut body).unwrap();
            assert!(body.contains("\r\n\r\nok "), "{kind}: {body}");
        };
        get();
        let before = before_manhole(pid);
        let path = PathBuf::from(manhole(&[&pid.to_string()]));
        // A connection open at its prompt while the loop serves.
        let mut c = Conn::open(client("socat", &path));
        c.expect(">>> ");
        get();
        c.send("import socket; print(socket.socket.__module__)\n");
        let out = c.expect(">>> ");
        get();
        let out = out + &c.finish();
        assert!(out.contains(kind), "{kind}: {out}");
        session_in("nc", &path, pid, "Thread ");
        let out = pyattach(&["manhole", "--stop", &pid.to_string()], None);
        assert_eq!(out.status.code(), Some(0), "{kind}: {out:?}");
        assert!(!path.exists(), "{kind}");
        assert_eq!(holds_again(pid, &before), before, "{kind}");
        get();
    }
}

/// A child the target forks while its manhole listens inherits the
/// listening socket but not the thread: `--stop` in the child closes its
/// copy only, and the parent's manhole serves on.
#[test]
fn stop_in_a_forked_child_leaves_the_parents_manhole_serving() {
    if !have("socat", "socat") {
        return;
    }
    for py in pyenv(&["3.12", "2.7"]) {
        let dir = std::env::temp_dir().join(format!(
            "pyattach-manhole-fork-{}-{}",
            std::process::id(),
            py.id
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let go = dir.join("go");
        let script = "import os, sys, time\n\
            print('READY %d' % os.getpid()); sys.stdout.flush()\n\
            while not os.path.exists(sys.argv[1]): time.sleep(0.02)\n\
            if os.fork() == 0:\n    print('CHILD %d' % os.getpid()); sys.stdout.flush()\n\
            while True: time.sleep(0.1)\n";
        let mut cmd = Command::new(&py.exe);
        cmd.args(["-u", "-c", script]).arg(&go);
        let t = Target::spawn(cmd);
        let pid = t.pid();
        let path = PathBuf::from(manhole(&[&pid.to_string()]));
        std::fs::write(&go, "").unwrap();
        assert!(
            t.wait_for_output("CHILD ", Duration::from_secs(20)),
            "{}",
            py.id
        );
        let child: i32 = t
            .output()
            .lines()
            .find_map(|l| l.strip_prefix("CHILD "))
            .and_then(|c| c.trim().parse().ok())
            .unwrap();
        // The child is not the test's to reap: killed by pid at the end.
        struct Kill(i32);
        impl Drop for Kill {
            fn drop(&mut self) {
                let _ = Command::new("kill")
                    .args(["-9", &self.0.to_string()])
                    .status();
            }
        }
        let _child = Kill(child);
        let out = pyattach(&["manhole", "--stop", &child.to_string()], None);
        assert_eq!(out.status.code(), Some(0), "{}: {out:?}", py.id);
        assert!(path.exists(), "{}", py.id);
        session_in("socat", &path, pid, "Thread ");
        let out = pyattach(&["manhole", "--stop", &pid.to_string()], None);
        assert_eq!(out.status.code(), Some(0), "{}: {out:?}", py.id);
        assert!(!path.exists(), "{}", py.id);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
