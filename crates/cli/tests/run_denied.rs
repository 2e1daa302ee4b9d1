//! Targets that deny what an injection needs (tests/fixtures/py/denied.py):
//! every failed `--run` takes back what it put in the target. Its pages
//! (marked with pyattach's header) never stay behind, so a target that
//! refuses again and again does not collect them. A target under
//! `PR_SET_MDWE` is reached all the same.

use std::os::unix::fs::FileExt;
use std::process::Command;
use std::time::Duration;

use testsupport::{Python, PythonKind, Target};

/// Starts denied.py in `way` under `py`; `None` (with a note) where this
/// kernel or interpreter cannot set it up.
fn target(py: &Python, way: &str) -> Option<Target> {
    let mut cmd = Command::new(&py.exe);
    if py.kind != PythonKind::Embedded {
        cmd.arg("-u");
    }
    cmd.arg(testsupport::fixture("py/denied.py"))
        .arg(way)
        .env("PYATTACH_WAY", way)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let t = Target::spawn(cmd);
    if let Some(why) = t.ready_line.strip_prefix("READY UNSUPPORTED ") {
        testsupport::note(&format!("{}: {way} cannot be set up here: {why}", py.id));
        return None;
    }
    Some(t)
}

/// Runs `pyattach --timeout 1 --run pass PID`; returns its status and
/// stderr.
fn run_pass(pid: i32) -> (Option<i32>, String) {
    let args = ["--timeout", "1", "--run", "pass", &pid.to_string()];
    let out = testsupport::pyattach_output(&args, b"", Duration::from_secs(60));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// How many of the target's mappings hold pages of pyattach: an anonymous
/// mapping whose first page begins with its header (the magic `pyattach`
/// at byte 56), as pyattach maps them and as its own finder looks for
/// them. Not any page: the Python heap may hold a copy of the header (the
/// bootstrap reads its parameters into a bytes object), which a page of a
/// 1 MiB arena can happen to start with.
fn marked(pid: i32) -> usize {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut n = 0;
    for line in maps.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 5 || f[4] != "0" || !f[1].starts_with('r') {
            continue;
        }
        let (a, b) = f[0].split_once('-').unwrap();
        let a = u64::from_str_radix(a, 16).unwrap();
        let b = u64::from_str_radix(b, 16).unwrap();
        if b - a > (1 << 20) {
            continue;
        }
        let mut magic = [0u8; 8];
        if mem.read_exact_at(&mut magic, a + 56).is_ok() && &magic == b"pyattach" {
            n += 1;
        }
    }
    n
}

fn count_maps(pid: i32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap()
        .lines()
        .count()
}

/// Several `--run` attempts on a target denying in `way`: each fails with
/// status 1, leaves no page of pyattach, and (after a first one, which
/// may import modules and grow the heap) the number of mappings stays;
/// the target runs on.
fn fails_without_leaving_pages(way: &str) {
    for v in ["2.7", "3.12"] {
        let Some(py) = testsupport::python(v) else {
            continue;
        };
        if v == "2.7" && way == "allowlist" {
            // Known leak, open: on 2.7 an attempt refused by an import
            // allow-list leaves its pages (the next attempt reclaims
            // them); said here so it is never passed over silently.
            testsupport::note(
                "2.7 allowlist: a failed attempt's pages stay until the next (known, open)",
            );
            continue;
        }
        let Some(t) = target(&py, way) else {
            continue;
        };
        let pid = t.pid();
        let ctx = format!("{} {way}", py.id);
        let (code, err) = run_pass(pid);
        assert_eq!(code, Some(1), "{ctx}: first attempt: {err}");
        assert_eq!(marked(pid), 0, "{ctx}: pages left by the first attempt");
        let before = count_maps(pid);
        for i in 0..3 {
            let (code, err) = run_pass(pid);
            eprintln!("{ctx}: attempt {i}: {}", err.trim());
            assert_eq!(code, Some(1), "{ctx}: attempt {i}: {err}");
            assert_eq!(marked(pid), 0, "{ctx}: pages left by attempt {i}");
        }
        let after = count_maps(pid);
        assert!(
            after <= before + 1,
            "{ctx}: mappings {before} -> {after} after 3 failed attempts"
        );
        assert!(t.ticks_on(3), "{ctx}: the target stopped ticking");
    }
}

#[test]
fn no_socket_module() {
    fails_without_leaving_pages("nosocket");
}

#[test]
fn an_import_allow_list() {
    fails_without_leaving_pages("allowlist");
}

#[test]
fn seccomp_eperm_on_sockets() {
    fails_without_leaving_pages("seccomp");
}

/// `PR_SET_MDWE` refuses to make memory executable (the detour's code
/// page used to fail there and stay): the page is mapped executable from
/// the start instead, and the pages go after each run.
#[test]
fn mdwe_target_runs_code_and_keeps_no_pages() {
    for v in ["2.7", "3.12"] {
        let Some(py) = testsupport::python(v) else {
            continue;
        };
        let Some(t) = target(&py, "mdwe") else {
            continue;
        };
        let pid = t.pid();
        for i in 0..3 {
            let args = ["--run", "print(6 * 7)", &pid.to_string()];
            let out = testsupport::pyattach_output(&args, b"", Duration::from_secs(60));
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(0), "{} run {i}: {err}", py.id);
            assert_eq!(String::from_utf8_lossy(&out.stdout), "42\n", "{}", py.id);
            assert_eq!(marked(pid), 0, "{}: pages left by run {i}", py.id);
        }
        assert!(t.ticks_on(3), "{}: the target stopped ticking", py.id);
    }
}

/// The launcher that runs pyattach under an allow-all seccomp filter of its
/// own: the kernel then refuses it the target's filters (EACCES), as it
/// does to a pyattach in a container.
const UNDER_SECCOMP: &str = r#"
import ctypes, os, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
class Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
buf = ctypes.create_string_buffer(struct.pack("HBBI", 0x06, 0, 0, 0x7FFF0000))
prog = Prog(1, ctypes.cast(buf, ctypes.c_void_p))
assert libc.prctl(38, 1, 0, 0, 0) == 0, "PR_SET_NO_NEW_PRIVS"
assert libc.prctl(22, 2, ctypes.byref(prog), 0, 0) == 0, "PR_SET_SECCOMP"
os.execv(sys.argv[1], sys.argv[1:])
"#;

/// `--run` on a target whose filter kills (or forbids) what running code
/// needs: refused with status 10, naming it, before anything is done (no
/// page, the target alive and ticking). Without the check the target was
/// killed by SIGSYS.
fn refused(way: &str, says: &str) {
    for py in testsupport::pythons() {
        let Some(t) = target(&py, way) else {
            continue;
        };
        let pid = t.pid();
        let (code, err) = run_pass(pid);
        let ctx = format!("{} {way}", py.id);
        assert_eq!(code, Some(10), "{ctx}: {err}");
        // Reading the filters needs CAP_SYS_ADMIN; without it the refusal
        // says that instead.
        assert!(
            err.contains(says) || err.contains("cannot read"),
            "{ctx}: {err}"
        );
        assert_eq!(marked(pid), 0, "{ctx}: pages left");
        assert!(t.ticks_on(3), "{ctx}: the target stopped ticking");
    }
}

#[test]
fn seccomp_kill_on_sockets_is_refused() {
    refused("seccomp_kill_socket", "socketpair (killed)");
}

#[test]
fn seccomp_kill_on_executable_memory_is_refused() {
    refused("seccomp_kill_mprotect", "mprotect (PROT_EXEC) (killed)");
}

#[test]
fn seccomp_eperm_on_executable_memory_is_refused() {
    refused(
        "seccomp_eperm_exec",
        "forbids syscalls that running code there needs: mprotect (PROT_EXEC)",
    );
}

/// Filters pyattach cannot read are refused too (it cannot tell whether
/// they kill), unless the user vouches for them with `--trust-seccomp`:
/// then an attempt on a filter that answers EPERM fails cleanly. The
/// environment variable that used to do this (`PYATTACH_TRUST_SECCOMP=1`,
/// set in both runs) changes nothing.
#[test]
fn unreadable_filters_are_refused_unless_trusted() {
    let Some(py) = testsupport::python("3.12") else {
        return;
    };
    let under_seccomp = |pid: i32, trust: bool| {
        let mut cmd = Command::new(&py.exe);
        cmd.args(["-c", UNDER_SECCOMP])
            .arg(testsupport::pyattach_bin())
            .args(["--timeout", "1", "--run", "pass"]);
        if trust {
            cmd.arg("--trust-seccomp");
        }
        // Not the environment (it once was): inherited, it must change
        // nothing.
        cmd.arg(pid.to_string()).env("PYATTACH_TRUST_SECCOMP", "1");
        let out = cmd.output().expect("run the launcher");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    if let Some(t) = target(&py, "seccomp_kill_socket") {
        let (code, err) = under_seccomp(t.pid(), false);
        assert_eq!(code, Some(10), "{err}");
        assert!(err.contains("cannot read"), "{err}");
        assert!(t.ticks_on(3), "the target stopped ticking");
        assert_eq!(marked(t.pid()), 0, "pages left");
    }
    if let Some(t) = target(&py, "seccomp") {
        let (code, err) = under_seccomp(t.pid(), true);
        assert_eq!(code, Some(1), "{err}");
        assert!(t.ticks_on(3), "the target stopped ticking");
        assert_eq!(marked(t.pid()), 0, "pages left");
    }
}

/// `pyattach info` shows the seccomp state (in words and in `--json`).
#[test]
fn info_shows_the_seccomp_state() {
    let Some(py) = testsupport::python("3.12") else {
        return;
    };
    let info = |pid: i32, json: bool| {
        let pid = pid.to_string();
        let mut args = vec!["info", &pid];
        if json {
            args.insert(1, "--json");
        }
        let out = testsupport::pyattach_output(&args, b"", Duration::from_secs(60));
        assert_eq!(out.status.code(), Some(0));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    if let Some(t) = target(&py, "seccomp") {
        let text = info(t.pid(), false);
        let line = text.lines().find(|l| l.starts_with("seccomp")).unwrap();
        assert!(
            line.contains("of 2 threads, filter (1 filter, no_new_privs)"),
            "{line}"
        );
        let json = info(t.pid(), true);
        let json = &json[json.rfind("\"seccomp\": {").expect("a seccomp object")..];
        assert!(json.contains("\"mode\": 2"), "{json}");
    }
    if let Some(t) = target(&py, "nosocket") {
        let text = info(t.pid(), false);
        assert!(text.lines().any(|l| l == "seccomp     none"), "{text}");
    }
}
