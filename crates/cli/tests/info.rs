//! `pyattach info` end to end: every interpreter of the matrix, and every
//! kind of bad input with its own exit code.

use serde_json::Value;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use testsupport::{pyattach_bin, pythons, Target};

fn info(args: &[&str]) -> Output {
    Command::new(pyattach_bin())
        .arg("info")
        .args(args)
        .env_remove("DEBUGINFOD_URLS")
        .output()
        .expect("run pyattach")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn reports_every_interpreter() {
    for p in pythons() {
        let t = Target::python(&p, "sleeper.py", &[]);
        let pid = t.pid().to_string();
        let o = info(&["--json", &pid]);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{}: {err}", p.id);
        let j: Value = serde_json::from_str(&out).expect("valid JSON");
        assert_eq!(j["format_version"], 1);
        let v = &j["version"];
        assert_eq!(
            (
                v["major"].as_u64(),
                v["minor"].as_u64(),
                v["micro"].as_u64()
            ),
            (
                Some(p.version.0 as u64),
                Some(p.version.1 as u64),
                Some(p.version.2 as u64)
            ),
            "{}",
            p.id
        );
        let syms = j["symbols"].as_array().unwrap();
        for name in [
            "PyRun_SimpleString",
            "PyEval_SaveThread",
            "PyGILState_Ensure",
        ] {
            let s = syms.iter().find(|s| s["name"] == name).unwrap();
            assert!(
                s["addr"].as_str().unwrap().starts_with("0x"),
                "{}: {s}",
                p.id
            );
            assert_eq!(s["source"]["kind"], "dyn_sym", "{}: {s}", p.id);
        }
        let runtime = if p.version >= (3, 7, 0) {
            "_PyRuntime"
        } else {
            "interp_head"
        };
        assert!(
            syms.iter()
                .any(|s| s["name"] == runtime && s["addr"].is_string()),
            "{}: {runtime}",
            p.id
        );
        let save = j["call_sites"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["function"] == "PyEval_SaveThread")
            .unwrap();
        assert!(!save["sites"].as_array().unwrap().is_empty(), "{}", p.id);
        let threads = j["threads"].as_array().unwrap();
        assert_eq!(threads[0]["tid"].as_i64(), Some(t.pid() as i64));
        assert_eq!(j["ptrace"]["allowed"], true, "{}: {}", p.id, j["ptrace"]);

        // The human form says the same, aligned.
        let o = info(&[&pid]);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{err}");
        let ver = format!("CPython {}.{}.{}", p.version.0, p.version.1, p.version.2);
        assert!(out.contains(&ver), "{}: {out}", p.id);
        assert!(
            out.contains("PyRun_SimpleString") && out.contains("ptrace      allowed"),
            "{out}"
        );
        assert!(t.is_alive(), "info must not harm the target");
    }
}

#[test]
fn no_such_process() {
    // Above the largest pid_max Linux allows: never a process.
    let o = info(&["4194305"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(err.contains("no process with pid 4194305"), "{err}");
}

#[test]
fn not_python() {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "echo READY; exec sleep 600"]);
    let t = Target::spawn(cmd);
    // Wait for the exec to have happened.
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end
        && !std::fs::read_link(format!("/proc/{}/exe", t.pid()))
            .is_ok_and(|p| p.to_string_lossy().contains("sleep"))
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    let o = info(&[&t.pid().to_string()]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("is not CPython"), "{err}");
}

#[test]
fn zombie() {
    // A child we do not reap yet stays a zombie.
    let mut child = Command::new("true").stdout(Stdio::null()).spawn().unwrap();
    let pid = child.id();
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end
        && testsupport::thread_states(pid as i32).first().map(|t| t.1) != Some('Z')
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    let o = info(&[&pid.to_string()]);
    child.wait().unwrap();
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(6), "{err}");
    assert!(err.contains("zombie"), "{err}");
}

#[test]
fn other_user_is_refused_with_the_reason_and_fix() {
    let Some(mut cmd) = testsupport::as_nobody() else {
        return;
    };
    let Some(p) = testsupport::python("3.12").or_else(testsupport::debian_python) else {
        return;
    };
    let t = Target::python(&p, "sleeper.py", &[]);
    let o = cmd
        .arg(pyattach_bin())
        .args(["info", &t.pid().to_string()])
        .env_remove("DEBUGINFOD_URLS")
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(5), "{err}");
    assert!(err.contains("belongs to uid 0"), "{err}");
    assert!(err.contains("without CAP_SYS_PTRACE"), "{err}");
    // Root's process: one fix, not "as uid 0 (sudo -u '#0' …) or as root".
    let fix = err
        .lines()
        .find(|l| l.trim_start().starts_with("fix:"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(fix.contains("sudo pyattach"), "{fix}");
    assert!(!fix.contains("'#0'"), "said twice: {fix}");
    assert!(t.is_alive());
}

#[test]
fn root_may_inspect_another_users_python() {
    let Some(mut cmd) = testsupport::as_nobody() else {
        return;
    };
    let Some(p) = testsupport::debian_python() else {
        return;
    };
    cmd.arg(&p.exe)
        .arg("-u")
        .arg(testsupport::fixture("py/sleeper.py"))
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let t = Target::spawn(cmd);
    let o = info(&["--json", &t.pid().to_string()]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let j: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["ptrace"]["allowed"], true);
    assert_eq!(j["ptrace"]["tracer"]["cap_sys_ptrace"], true);
}

#[test]
fn already_traced_names_the_tracer() {
    if Command::new("strace").arg("-V").output().is_err() {
        testsupport::note("strace is missing");
        return;
    }
    let Some(p) = testsupport::python("3.12").or_else(testsupport::debian_python) else {
        return;
    };
    let t = Target::python(&p, "sleeper.py", &[]);
    let mut strace = Command::new("strace")
        .args(["-q", "-o", "/dev/null", "-p", &t.pid().to_string()])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let strace_pid = strace.id() as i64;
    let _guard = Kill(&mut strace);
    let end = Instant::now() + Duration::from_secs(20);
    let tracer = || {
        std::fs::read_to_string(format!("/proc/{}/status", t.pid()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("TracerPid:"))
                    .and_then(|v| v.trim().parse::<i64>().ok())
            })
            .unwrap_or(0)
    };
    while tracer() == 0 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(tracer(), strace_pid);
    let o = info(&["--json", &t.pid().to_string()]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let j: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["ptrace"]["allowed"], false);
    let d = &j["ptrace"]["denials"][0];
    assert_eq!(d["kind"], "already_traced");
    assert_eq!(d["tracer"].as_i64(), Some(strace_pid));
    assert_eq!(d["tracer_name"], "strace");
    let advice = &j["ptrace_advice"][0];
    assert!(
        advice["fix"].as_str().unwrap().contains("detach"),
        "{advice}"
    );
    let o = info(&[&t.pid().to_string()]);
    let (out, _) = text(&o);
    assert!(
        out.contains(&format!("already traced by pid {strace_pid} (strace)")),
        "{out}"
    );
}

#[test]
fn a_python_in_other_namespaces_is_found() {
    // unshare(1) gives the target its own pid and mount namespaces, as a
    // container would; the Python is unshare's child, pid 1 inside.
    if !testsupport::is_root() || Command::new("unshare").arg("--version").output().is_err() {
        testsupport::note("unshare as root is needed for the namespace test");
        return;
    }
    let Some(p) = testsupport::debian_python() else {
        return;
    };
    let mut cmd = Command::new("unshare");
    // --kill-child: when the guard kills unshare, the kernel kills its child
    // (the namespace's init) too.
    cmd.args(["--pid", "--fork", "--mount-proc", "--kill-child"])
        .arg(&p.exe)
        .arg("-u")
        .arg(testsupport::fixture("py/sleeper.py"));
    let t = Target::spawn(cmd);
    assert_eq!(t.ready_line, "READY 1", "pid 1 in its namespace");
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", t.pid()))
        .unwrap_or_default();
    let inner: i32 = children.split_whitespace().next().unwrap().parse().unwrap();
    let o = info(&["--json", &inner.to_string()]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let j: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["nspid"], serde_json::json!([inner, 1]));
    assert_eq!(j["in_container"], true);
    assert_eq!(j["version"]["minor"], 11);
    let o = info(&[&inner.to_string()]);
    let (out, _) = text(&o);
    assert!(out.contains("pid 1 in its namespace"), "{out}");
    drop(t);
    let end = Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{inner}")).exists() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        !std::path::Path::new(&format!("/proc/{inner}/exe")).exists(),
        "the namespaced Python outlived unshare"
    );
}

/// `(vaddr, file offset)` of section `name` in `exe`, from readelf.
fn section(exe: &std::path::Path, name: &str) -> Option<(u64, u64)> {
    let out = Command::new("readelf")
        .args(["-S", "-W"])
        .arg(exe)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text.lines().find(|l| l.contains(&format!(" {name} ")))?;
    let after = line.split_once(']')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    Some((
        u64::from_str_radix(f.get(2)?, 16).ok()?,
        u64::from_str_radix(f.get(3)?, 16).ok()?,
    ))
}

#[test]
fn unsupported_version_is_refused_with_code_3() {
    // A copy of Debian's python3.11 whose Py_Version constant says 3.5
    // (older than pyattach supports; a newer one is described instead, see
    // sid_pythons.rs): the interpreter runs as before (Py_Version is only
    // read by others).
    let Some(p) = testsupport::debian_python() else {
        return;
    };
    let nm = Command::new("nm").arg("-D").arg(&p.exe).output();
    let Some(vaddr) = nm.ok().and_then(|o| {
        String::from_utf8_lossy(&o.stdout).lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 3 && f[2] == "Py_Version").then(|| u64::from_str_radix(f[0], 16).ok())?
        })
    }) else {
        testsupport::note("nm could not find Py_Version");
        return;
    };
    let Some((addr, off)) = section(&p.exe, ".rodata") else {
        return;
    };
    let dir = testsupport::build_dir().join(format!("unsupported-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("python3.11");
    let mut bytes = std::fs::read(&p.exe).unwrap();
    let at = (vaddr - addr + off) as usize;
    assert_eq!(
        u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) >> 16,
        0x030b,
        "Py_Version of 3.11 at the computed offset"
    );
    bytes[at..at + 4].copy_from_slice(&0x0305_00f0u32.to_le_bytes());
    std::fs::write(&copy, bytes).unwrap();
    std::fs::set_permissions(&copy, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let t = Target::python(
        &testsupport::Python {
            exe: copy.clone(),
            ..p.clone()
        },
        "sleeper.py",
        &[],
    );
    let o = info(&[&t.pid().to_string()]);
    drop(t);
    let _ = std::fs::remove_dir_all(&dir);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        err.contains("CPython 3.5.0") && err.contains("not supported"),
        "{err}"
    );
}
