//! gevent and eventlet processes (everything monkey-patched: sockets,
//! threads, locks): `--run`, a piped prompt and pdb work in a gevent
//! pywsgi server, an eventlet wsgi server and a `gunicorn -k gevent`
//! worker, while a steady loopback client keeps the event loop busy: no
//! request is lost or stalls over a second; a breakpoint in a request
//! handler stops there; also where a patcher no one knows replaced
//! `_thread`'s functions, and where it left no original to find (a clear
//! refusal, status 1, and `--thread` still runs code). Before, the
//! bootstrap's socket and thread primitives were the patched, cooperative
//! ones, and it waited for good on an event loop its threads never run.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use testsupport::{pythons, Python, PythonKind, Target};

/// How many requests the client sends, one every PACE.
const REQUESTS: usize = 300;
const PACE: Duration = Duration::from_millis(10);
/// Longer than this counts as a stall.
const STALL: Duration = Duration::from_secs(1);

/// The interpreters that have the libraries (scripts/setup installs them
/// where wheels exist); a note for the others.
fn green_pythons() -> Vec<Python> {
    pythons()
        .into_iter()
        .filter(|py| py.kind == PythonKind::Pyenv && py.version >= (3, 8, 0))
        .filter(|py| {
            let ok = Command::new(&py.exe)
                .args(["-c", "import gevent, eventlet, gunicorn, packaging"])
                .output()
                .is_ok_and(|o| o.status.success());
            if !ok {
                testsupport::note(&format!(
                    "{} lacks gevent, eventlet or gunicorn (run scripts/setup)",
                    py.id
                ));
            }
            ok
        })
        .collect()
}

/// One request; Err says what went wrong.
fn get(port: u16) -> Result<Duration, String> {
    let t0 = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    // A hang guard only: a stall is judged on the time measured.
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    s.write_all(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")
        .map_err(|e| format!("send: {e}"))?;
    let mut body = String::new();
    s.read_to_string(&mut body)
        .map_err(|e| format!("read: {e} after {body:?}"))?;
    if !body.contains("\r\n\r\nok ") {
        return Err(format!("answer {body:?}"));
    }
    Ok(t0.elapsed())
}

/// The loopback client: REQUESTS requests, one every PACE; `done` counts
/// them as they finish. Returns the failures and the slowest request.
fn client(port: u16, done: Arc<AtomicUsize>) -> std::thread::JoinHandle<(Vec<String>, Duration)> {
    std::thread::spawn(move || {
        let mut failures = Vec::new();
        let mut slowest = Duration::ZERO;
        for i in 0..REQUESTS {
            match get(port) {
                Ok(d) => slowest = slowest.max(d),
                Err(e) => failures.push(format!("request {i}: {e}")),
            }
            done.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(PACE);
        }
        (failures, slowest)
    })
}

/// A server of `kind` and the pid and port it announced (the worker's,
/// for gunicorn: the caller guards it with a KillPid).
fn server(py: &Python, kind: &str) -> (Target, i32, u16) {
    let t = Target::python(py, "green_server.py", &[kind]);
    let mut f = t.ready_line.split_whitespace().skip(1);
    let pid: i32 = f.next().and_then(|p| p.parse().ok()).expect("pid");
    let port: u16 = f.next().and_then(|p| p.parse().ok()).expect("port");
    (t, pid, port)
}

fn check(py: &Python, kind: &str) {
    let (t, pid, port) = server(py, kind);
    let _worker = (pid != t.pid()).then(|| testsupport::KillPid(pid));
    let ctx = format!("{} {kind}", py.id);
    get(port).unwrap_or_else(|e| panic!("{ctx}: the server does not answer: {e}"));

    let done = Arc::new(AtomicUsize::new(0));
    let load = client(port, done.clone());
    let limit = Duration::from_secs(60);
    while done.load(Ordering::SeqCst) < 20 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid_s = pid.to_string();
    for _ in 0..3 {
        let o = testsupport::pyattach_output(&["--run", "print(6 * 7)", &pid_s], b"", limit);
        let (out, err) = (
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
        );
        assert_eq!(o.status.code(), Some(0), "{ctx}: --run: {out}{err}");
        assert_eq!(out, "42\n", "{ctx}: --run: {err}");
    }
    let o = testsupport::pyattach_output(
        &[&pid_s],
        b"print(7 * 6)\nimport socket\nprint(socket.socket.__module__)\n",
        limit,
    );
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert_eq!(o.status.code(), Some(0), "{ctx}: prompt: {out}{err}");
    // The application's socket is still its own (gevent's, eventlet's).
    assert!(out.starts_with("42\n"), "{ctx}: prompt: {out}{err}");
    let module = match kind {
        "gunicorn" => "gevent",
        "patched" => "socket",
        k => k,
    };
    assert!(out.contains(module), "{ctx}: {out}");

    // pdb in the thread that runs the event loop, left at once with `c`.
    let o = testsupport::pyattach_output(&["--pdb", &pid_s], b"p 6 * 7\nc\n", limit);
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert_eq!(o.status.code(), Some(0), "{ctx}: pdb: {out}{err}");
    assert!(out.contains("(Pdb) 42\n"), "{ctx}: pdb: {out}{err}");

    let (failures, slowest) = load.join().unwrap();
    eprintln!("{ctx}: {REQUESTS} requests, slowest {slowest:.2?}");
    assert!(failures.is_empty(), "{ctx}: requests lost: {failures:?}");
    assert!(slowest < STALL, "{ctx}: a request took {slowest:?}");
    get(port).unwrap_or_else(|e| panic!("{ctx}: the server stopped answering: {e}"));
}

#[test]
fn gevent_pywsgi_serves_on_while_pyattach_runs_code_and_a_prompt() {
    for py in green_pythons() {
        check(&py, "gevent");
    }
}

#[test]
fn eventlet_wsgi_serves_on_while_pyattach_runs_code_and_a_prompt() {
    for py in green_pythons() {
        check(&py, "eventlet");
    }
}

/// A patcher no one knows: the bootstrap takes a fresh, unpatched `_thread`.
#[test]
fn a_process_whose_thread_functions_another_patcher_replaced_is_served() {
    for py in pythons()
        .into_iter()
        .filter(|py| py.kind != PythonKind::Embedded)
    {
        check(&py, "patched");
    }
}

#[test]
fn gunicorn_gevent_worker_serves_on_while_pyattach_runs_code_and_a_prompt() {
    for py in green_pythons() {
        check(&py, "gunicorn");
    }
}

/// A process whose thread functions were replaced with no original left
/// to find: `--run`, the prompt and pdb say so (status 1) instead of
/// waiting for a thread that never runs; `--thread` runs code in the
/// application's own thread; the server serves on throughout.
#[test]
fn a_process_with_no_original_thread_functions_is_refused_with_the_reason() {
    for py in pythons()
        .into_iter()
        .filter(|py| py.kind != PythonKind::Embedded)
    {
        let (t, pid, port) = server(&py, "unserved");
        let ctx = format!("{} unserved", py.id);
        let pid_s = pid.to_string();
        let limit = Duration::from_secs(60);
        for (args, input) in [
            (vec!["--run", "print(1)", &pid_s], &b""[..]),
            (vec![&pid_s], &b"print(1)\n"[..]),
            (vec!["--pdb", &pid_s], &b"c\n"[..]),
        ] {
            let o = testsupport::pyattach_output(&args, input, limit);
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(1), "{ctx}: {args:?}: {err}");
            assert!(
                err.contains("cannot serve this process")
                    && err.contains("thread functions were replaced by module"),
                "{ctx}: {args:?}: {err}"
            );
            assert!(o.stdout.is_empty(), "{ctx}: {args:?}: {:?}", o.stdout);
        }
        let o = testsupport::pyattach_output(
            &["--thread", &pid_s, "--run", "print(6 * 7)", &pid_s],
            b"",
            limit,
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "{ctx}: --thread: {err}");
        assert_eq!(o.stdout, b"42\n", "{ctx}: --thread: {err}");
        get(port).unwrap_or_else(|e| panic!("{ctx}: the server stopped answering: {e}"));
        drop(t);
    }
}

/// pdb's most common use in a server: a breakpoint in the request
/// handler (a greenlet of the hub's thread), a request that hits it, a
/// look, the breakpoint cleared, `c`: the request is answered and the
/// server serves on. On the newest interpreter with the libraries.
#[test]
fn a_breakpoint_in_a_green_request_handler_stops_there() {
    let Some(py) = green_pythons().pop() else {
        return;
    };
    let fixture = testsupport::fixture("py/green_server.py");
    let line = std::fs::read_to_string(&fixture)
        .expect("fixture")
        .lines()
        .position(|l| l.contains("served[0] += 1"))
        .expect("the handler's first line")
        + 1;
    for kind in ["gevent", "eventlet"] {
        let (t, pid, port) = server(&py, kind);
        let ctx = format!("{} {kind}", py.id);
        let mut child = Command::new(testsupport::pyattach_bin())
            .args(["--pdb", &pid.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pyattach");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut so = child.stdout.take().expect("stdout");
        let sink = seen.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = so.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let shown = |what: &str| String::from_utf8_lossy(&seen.lock().unwrap()).contains(what);
        let wait_for = |what: &str| {
            let end = Instant::now() + Duration::from_secs(30);
            while !shown(what) {
                if Instant::now() > end {
                    let _ = kill_target(pid);
                    panic!(
                        "{ctx}: no {what:?} in {:?}",
                        String::from_utf8_lossy(&seen.lock().unwrap())
                    );
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        let mut si = child.stdin.take().expect("stdin");
        writeln!(si, "b {}:{line}\nc", fixture.display()).unwrap();
        wait_for(&format!("Breakpoint 1 at {}:{line}", fixture.display()));
        let request = std::thread::spawn(move || get(port));
        wait_for("app()");
        write!(si, "p served\nclear 1\nc\n").unwrap();
        drop(si);
        let answered = request.join().unwrap();
        let end = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < end,
                "{ctx}: pyattach did not end after `c`"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        reader.join().unwrap();
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let out = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
        assert_eq!(status.code(), Some(0), "{ctx}: {out}{err}");
        assert!(
            out.contains("(Pdb) [0]\n"),
            "{ctx}: the handler's state: {out}{err}"
        );
        answered.unwrap_or_else(|e| panic!("{ctx}: the request stopped at the breakpoint: {e}"));
        get(port).unwrap_or_else(|e| panic!("{ctx}: the server stopped answering: {e}"));
        drop(t);
    }
}

/// A hang guard's last resort: the target, by its pid (the Target guard
/// kills it too when the panic unwinds).
fn kill_target(pid: i32) -> nix::Result<()> {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
}
