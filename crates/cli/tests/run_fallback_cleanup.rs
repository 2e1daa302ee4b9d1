//! The socket fallback's channel directory (`pyattach-<pid>-<nonce>` in the
//! target's /tmp) never outlives pyattach, even when pyattach is SIGKILLed:
//! a bootstrap that fires after pyattach died removes it although its
//! connect is refused, and a directory left by a pyattach killed before
//! anything fired is swept by the next run (but never one whose listener is
//! alive).
//!
//! The fallback is forced the way a kernel older than 5.6 forces it: a
//! seccomp filter (installed by a small Python launcher that then execs
//! pyattach, keeping its pid) makes `pidfd_getfd` fail with ENOSYS.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use testsupport::{pyattach_bin, Python, Target};

/// Installs the seccomp filter, then execs pyattach with the arguments.
const NO_PIDFD_GETFD: &str = r#"
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
class F(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]
class Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(F))]
insns = (F * 4)(F(0x20, 0, 0, 0), F(0x15, 0, 1, 438), F(0x06, 0, 0, 0x00050000 | 38), F(0x06, 0, 0, 0x7FFF0000))
prog = Prog(4, insns)
assert libc.prctl(38, 1, 0, 0, 0) == 0, "PR_SET_NO_NEW_PRIVS"
assert libc.prctl(22, 2, ctypes.byref(prog), 0, 0) == 0, "PR_SET_SECCOMP"
os.execv(sys.argv[1], sys.argv[1:])
"#;

/// `pyattach ARGS` with `pidfd_getfd` denied, so it takes the unix socket.
fn fallback_pyattach(launcher: &Python, args: &[&str]) -> Command {
    let mut cmd = Command::new(&launcher.exe);
    cmd.args(["-c", NO_PIDFD_GETFD])
        .arg(pyattach_bin())
        .args(args)
        .stdin(Stdio::null());
    cmd
}

/// Waits for `child` (by pid; killed if it hangs).
fn finish(mut child: Child, what: &str) -> Output {
    let end = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("{what} hung: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.wait_with_output().unwrap()
}

/// The channel directories of `pid` in the temporary directories.
fn channel_dirs(pid: i32) -> Vec<PathBuf> {
    let prefix = format!("pyattach-{pid}-");
    let mut out = Vec::new();
    for base in ["/tmp", "/dev/shm", "/var/tmp"] {
        let Ok(dir) = fs::read_dir(base) else {
            continue;
        };
        for e in dir.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

fn gilspin3(py: &Python) -> Option<Target> {
    Target::run_state(py, "gilspin3")
}

fn launcher() -> Option<Python> {
    let py = testsupport::python("3.12");
    if py.is_none() {
        testsupport::note("skipping because no Python 3.12 to launch pyattach under seccomp");
    }
    py
}

/// The target holds the GIL in native code for three seconds, so pyattach
/// creates its directory, arms the detour and waits; it is SIGKILLed then.
/// When the target gets back to Python the bootstrap fires, its connect is
/// refused (nobody listens any more), and it must still remove the socket
/// and the directory: nothing else ever will.
#[test]
fn fallback_directory_is_removed_when_pyattach_is_killed() {
    let Some(launcher) = launcher() else {
        return;
    };
    for v in ["3.12", "2.7"] {
        let Some(py) = testsupport::python(v) else {
            testsupport::note(&format!("skipping {v} because it is not installed"));
            continue;
        };
        let Some(t) = gilspin3(&py) else {
            testsupport::note("skipping because the gilspin fixture cannot be built");
            return;
        };
        let pid = t.pid();
        let mut child = fallback_pyattach(&launcher, &["--run", "print(1)", &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let end = Instant::now() + Duration::from_secs(2);
        while channel_dirs(pid).is_empty() {
            assert!(Instant::now() < end, "{v}: no channel directory appeared");
            std::thread::sleep(Duration::from_millis(2));
        }
        // Time to arm the detour (milliseconds); the spin lasts 3 s.
        std::thread::sleep(Duration::from_millis(400));
        assert!(
            !t.output().contains("SPUN"),
            "{v}: the spin ended too early"
        );
        let _ = child.kill();
        let _ = child.wait();
        // The guard removes it at once, while the target still spins (no
        // bootstrap has run: it could not have removed it).
        let end = Instant::now() + Duration::from_secs(1);
        while !channel_dirs(pid).is_empty() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            channel_dirs(pid),
            Vec::<PathBuf>::new(),
            "{v}: a SIGKILLed pyattach left its directory"
        );
        assert!(
            !t.output().contains("SPUN"),
            "{v}: the spin ended too early to tell who removed it"
        );
        // The bootstrap fires once the thread is back in Python, finds
        // nobody, and leaves: the target ticks on.
        assert!(
            t.wait_for_output("TICK 2\n", Duration::from_secs(10)),
            "{v}: target not ticking after the spin"
        );
        assert_eq!(channel_dirs(pid), Vec::<PathBuf>::new(), "{v}");
        assert!(t.is_alive(), "{v}: target died");
    }
}

/// Makes `/tmp/pyattach-<pid>-<nonce>` the way pyattach does (0700, a
/// socket `s` bound in it), dated `age` back; returns it and the listener.
fn channel_dir(pid: i32, nonce: &str, age: Duration) -> (PathBuf, UnixListener) {
    let dir = PathBuf::from(format!("/tmp/pyattach-{pid}-{nonce}"));
    fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
    let listener = UnixListener::bind(dir.join("s")).unwrap();
    listener.set_nonblocking(true).unwrap();
    backdate(&dir, age);
    (dir, listener)
}

fn backdate(path: &Path, age: Duration) {
    fs::File::open(path)
        .unwrap()
        .set_modified(SystemTime::now() - age)
        .unwrap();
}

/// Removes what a test made, whatever happened.
struct Cleanup(Vec<PathBuf>);
impl Drop for Cleanup {
    fn drop(&mut self) {
        for p in &self.0 {
            if let Ok(m) = fs::symlink_metadata(p) {
                if m.is_dir() {
                    let _ = fs::remove_dir_all(p);
                } else {
                    let _ = fs::remove_file(p);
                }
            }
        }
    }
}

/// A directory left by a pyattach killed before its injection fired (its
/// socket bound, then closed) is removed by the next run; one whose
/// listener is alive, one holding anything else, a young one and a symlink
/// with the same kind of name are left alone, and the live listener gets no
/// connection.
#[test]
fn stale_fallback_directories_are_swept_but_live_ones_kept() {
    let Some(launcher) = launcher() else {
        return;
    };
    let Some(py) = testsupport::python("3.12") else {
        return;
    };
    let t = Target::python(&py, "run_states.py", &["sleep"]);
    let pid = t.pid();
    let old = Duration::from_secs(30);
    let (stale, gone) = channel_dir(pid, "00112233445566aa", old);
    drop(gone); // the socket file stays, nobody listens
    let (live, listener) = channel_dir(pid, "00112233445566bb", old);
    let (cluttered, gone) = channel_dir(pid, "00112233445566cc", old);
    drop(gone);
    fs::write(cluttered.join("other"), "x").unwrap();
    backdate(&cluttered, old);
    let empty = PathBuf::from(format!("/tmp/pyattach-{pid}-00112233445566dd"));
    fs::DirBuilder::new().mode(0o700).create(&empty).unwrap();
    backdate(&empty, old);
    let (young, gone) = channel_dir(pid, "00112233445566ee", Duration::ZERO);
    drop(gone);
    let elsewhere = std::env::temp_dir().join(format!("pyattach-sweep-decoy-{pid}"));
    fs::create_dir_all(&elsewhere).unwrap();
    let _ = UnixListener::bind(elsewhere.join("s")).unwrap();
    let link = PathBuf::from(format!("/tmp/pyattach-{pid}-00112233445566ff"));
    std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
    let _cleanup = Cleanup(vec![
        stale.clone(),
        live.clone(),
        cluttered.clone(),
        empty.clone(),
        young.clone(),
        elsewhere.clone(),
        link.clone(),
    ]);

    let child = fallback_pyattach(&launcher, &["-v", "--run", "print(6*7)", &pid.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = finish(child, "pyattach --run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "42\n", "{stderr}");
    assert!(
        stderr.contains("channel: unix socket"),
        "the fallback was not taken: {stderr}"
    );

    assert!(!stale.exists(), "the stale directory was not swept");
    assert!(!empty.exists(), "the old empty directory was not swept");
    assert!(
        live.join("s").exists(),
        "a live listener's directory was removed"
    );
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the live listener got a connection"
    );
    assert!(
        cluttered.join("other").exists(),
        "a directory with other files was touched"
    );
    assert!(
        cluttered.join("s").exists(),
        "a directory with other files was touched"
    );
    assert!(young.join("s").exists(), "a young directory was removed");
    assert!(
        fs::symlink_metadata(&link).is_ok_and(|m| m.file_type().is_symlink()),
        "the symlink was removed"
    );
    assert!(elsewhere.join("s").exists(), "a symlink was followed");
    assert!(t.is_alive());
}
