//! `pyattach dump --core`: a core file saved with `gcore` reads as the live
//! dump taken just before it (threads, names, frames, lines, locals), on
//! every interpreter, Debian sid's in their root included; a real crash's
//! core (the kernel's, SIGSEGV) names the thread that took the signal and
//! its Python frames; files that are not cores are refused with status 7.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use testsupport::{build_dir, fixture, pyattach_output, Python, PythonKind, Target};

fn run(args: &[&str]) -> (String, String, i32) {
    let out = pyattach_output(args, b"", Duration::from_secs(120));
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

/// Each thread as (native id, name, main, frames as function/file/line,
/// locals as name=repr): what must be the same live and from the core.
fn threads(dump: &Value) -> Vec<(i64, String, bool, Vec<String>)> {
    let mut out: Vec<_> = dump["threads"]
        .as_array()
        .expect("threads")
        .iter()
        .map(|t| {
            let frames = t["frames"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| {
                    let locals: Vec<String> = f["locals"]
                        .as_array()
                        .map(|l| {
                            l.iter()
                                .map(|v| format!("{}={}", v["name"], v["repr"]))
                                .collect()
                        })
                        .unwrap_or_default();
                    format!(
                        "{} {} {} [{}]",
                        f["function"],
                        f["filename"],
                        f["line"],
                        locals.join(", ")
                    )
                })
                .collect();
            (
                t["native_id"].as_i64().unwrap_or(-1),
                t["name"].to_string(),
                t["is_main"].as_bool().unwrap(),
                frames,
            )
        })
        .collect();
    out.sort();
    out
}

/// Saves a core of `pid` with gdb's `gcore` under `dir`.
fn gcore(pid: i32, dir: &Path) -> Option<PathBuf> {
    let prefix = dir.join("gcore");
    let out = Command::new("gcore")
        .arg("-o")
        .arg(&prefix)
        .arg(pid.to_string())
        .output()
        .ok()?;
    let core = PathBuf::from(format!("{}.{pid}", prefix.display()));
    if !core.exists() {
        testsupport::note(&format!(
            "gcore made no core of {pid}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
        return None;
    }
    Some(core)
}

fn scratch(name: &str) -> PathBuf {
    let dir = build_dir().join(format!("dump_core-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn check_gcore(py: &Python, root: Option<&Path>) {
    let ctx = &py.id;
    let t = Target::python(py, "core_target.py", &[]);
    let pid = t.pid().to_string();
    let (live, err, code) = run(&["dump", "--locals", "--json", &pid]);
    assert_eq!(code, 0, "{ctx}: {err}");
    let live: Value = serde_json::from_str(&live).unwrap();
    let dir = scratch(ctx);
    let Some(core) = gcore(t.pid(), &dir) else {
        return;
    };
    let core_s = core.to_str().unwrap();
    let mut args = vec!["dump", "--locals", "--json", "--core", core_s];
    if let Some(root) = root {
        args.extend(["--root", root.to_str().unwrap()]);
    }
    let (saved, err, code) = run(&args);
    assert_eq!(code, 0, "{ctx}: {err}");
    let saved: Value = serde_json::from_str(&saved).unwrap();
    assert_eq!(saved["core"].as_str(), Some(core_s), "{ctx}");
    assert_eq!(saved["pid"], live["pid"], "{ctx}");
    assert_eq!(saved["python_version"], live["python_version"], "{ctx}");
    let (l, s) = (threads(&live), threads(&saved));
    assert!(
        s.iter()
            .flat_map(|t| &t.3)
            .any(|f| f.contains("worker_wait")),
        "{ctx}: {s:?}"
    );
    if py.id.starts_with("sid") {
        // glibc 2.42 guards thread stacks with MADV_GUARD_INSTALL, which
        // gdb cannot read past: gcore saves a worker's stack as zeros, so
        // its frames stop at the first C-stack entry frame (README, "Core
        // files"). The main thread's stack and every frame before that
        // are still the live ones.
        for (lt, st) in l.iter().zip(&s) {
            assert_eq!((lt.0, &lt.1, lt.2), (st.0, &st.1, st.2), "{ctx}");
            assert!(
                lt.3.starts_with(&st.3) && !st.3.is_empty(),
                "{ctx}: {lt:?} {st:?}"
            );
            if lt.2 {
                assert_eq!(lt.3, st.3, "{ctx}: the main thread");
            }
        }
    } else {
        assert_eq!(l, s, "{ctx}: the core's dump differs from the live one");
    }

    // The text form says where it comes from; native frames are merged.
    args.retain(|a| *a != "--json" && *a != "--locals");
    args.push("--native");
    let (text, err, code) = run(&args);
    assert_eq!(code, 0, "{ctx}: {err}");
    assert!(
        text.lines()
            .next()
            .unwrap()
            .ends_with(&format!(", from the core file {core_s}")),
        "{ctx}: {text}"
    );
    assert!(text.contains("level1 ("), "{ctx}: {text}");
    if py.version >= (3, 0, 0) && py.kind == PythonKind::Pyenv {
        assert!(
            text.contains("time_sleep"),
            "{ctx}: no native frames\n{text}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_gcore_core_dumps_as_the_live_process_on_every_interpreter() {
    if Command::new("gcore").arg("--version").output().is_err() {
        return testsupport::note("gcore (gdb) is missing: run scripts/setup");
    }
    let mut seen = std::collections::HashSet::new();
    for py in testsupport::pythons() {
        // The embedding fixture runs the same libpython as Debian's python.
        if py.kind == PythonKind::Embedded || !seen.insert(py.exe.clone()) {
            continue;
        }
        check_gcore(&py, None);
    }
    let root = testsupport::sid_root();
    for py in testsupport::sid_pythons() {
        check_gcore(&py, root.as_deref());
    }
}

/// Whether the kernel writes cores as `core` in the crashing process's
/// directory (a pipe to systemd-coredump or apport keeps them elsewhere).
fn kernel_cores_land_in_cwd() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/core_pattern")
        .is_ok_and(|p| p.trim() == "core" || p.trim() == "core.%p")
}

#[test]
fn a_crash_core_names_the_thread_that_took_sigsegv() {
    if !kernel_cores_land_in_cwd() {
        return testsupport::note(
            "kernel.core_pattern does not write ./core: the crash case needs it",
        );
    }
    for v in ["2.7", "3.12"] {
        let Some(py) = testsupport::pythons()
            .into_iter()
            .find(|p| p.kind == PythonKind::Pyenv && p.id == format!("py{}", v.replace('.', "_")))
        else {
            continue;
        };
        let ctx = &py.id;
        let dir = scratch(&format!("crash-{ctx}"));
        let script = fixture("py/core_target.py");
        let mut cmd = Command::new("sh");
        cmd.current_dir(&dir).arg("-c").arg(format!(
            "ulimit -c unlimited; exec {} -u {} crash",
            py.exe.display(),
            script.display()
        ));
        let mut t = Target::spawn(cmd);
        let status = t.child_mut().wait().unwrap();
        assert!(!status.success(), "{ctx}: the target did not crash");
        let core = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("core"));
        let Some(core) = core else {
            testsupport::note(&format!("{ctx}: the crash left no core (ulimit, limits?)"));
            continue;
        };
        let (out, err, code) = run(&["dump", "--json", "--core", core.to_str().unwrap()]);
        assert_eq!(code, 0, "{ctx}: {err}");
        let d: Value = serde_json::from_str(&out).unwrap();
        let main = d["threads"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["is_main"] == true)
            .expect("a main thread");
        assert_eq!(
            main["state"]["description"].as_str(),
            Some("took signal 11 (SIGSEGV)"),
            "{ctx}: {main}"
        );
        let funcs: Vec<&str> = main["frames"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["function"].as_str().unwrap())
            .collect();
        let at = funcs.iter().position(|f| *f == "level2").expect("level2");
        assert_eq!(
            funcs[at + 1..at + 3],
            ["level1", "<module>"],
            "{ctx}: {funcs:?}"
        );
        let others: Vec<&Value> = d["threads"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["is_main"] == false)
            .collect();
        assert_eq!(others.len(), 1, "{ctx}: {out}");
        assert!(
            others[0]["state"]["description"].is_null(),
            "{ctx}: only the main thread took it"
        );
        assert!(
            others[0]["frames"].to_string().contains("worker_wait"),
            "{ctx}: {out}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn files_that_are_not_cores_are_refused_with_status_7() {
    let dir = scratch("notcore");
    let text = dir.join("text");
    std::fs::write(
        &text,
        "not a core, but long enough to hold an ELF header: ".repeat(4),
    )
    .unwrap();
    let python = testsupport::pythons()
        .into_iter()
        .find(|p| p.kind == PythonKind::Pyenv)
        .map(|p| p.exe);
    let mut cases = vec![(text.clone(), "it is not an ELF file")];
    if let Some(exe) = &python {
        cases.push((exe.clone(), "not a core file (e_type is not ET_CORE)"));
    }
    cases.push((dir.clone(), "it is not a regular file"));
    for (path, why) in cases {
        let (out, err, code) = run(&["dump", "--core", path.to_str().unwrap()]);
        assert_eq!(code, 7, "{}: {err}{out}", path.display());
        assert!(err.contains(why), "{}: {err}", path.display());
    }
    let (_, err, code) = run(&["dump", "--exe", text.to_str().unwrap(), "1"]);
    assert_eq!(code, 2, "--exe without --core: {err}");
    let missing = dir.join("missing");
    let (_, err, code) = run(&[
        "dump",
        "--core",
        text.to_str().unwrap(),
        "--exe",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(code, 7, "a core that is not one comes first: {err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--tasks` reads a core's asyncio tasks as a live dump reads them (the
/// same readability checks go first, `dump::tasks_readable`).
#[test]
fn a_cores_asyncio_tasks_read_as_the_live_ones() {
    let Some(py) = testsupport::python("3.12") else {
        return testsupport::note("pyenv 3.12 is missing");
    };
    if Command::new("gcore").arg("--version").output().is_err() {
        return testsupport::note("gcore (gdb) is missing: run scripts/setup");
    }
    let code = "import asyncio, os\n\
async def leaf(): await asyncio.sleep(1000)\n\
async def mid(): await leaf()\n\
async def main():\n    t = asyncio.create_task(mid(), name='worker')\n    \
await asyncio.sleep(0.1)\n    print('READY', os.getpid(), flush=True)\n    await t\n\
asyncio.run(main())\n";
    let mut cmd = Command::new(&py.exe);
    cmd.args(["-u", "-c", code]);
    let t = Target::spawn(cmd);
    let pid = t.pid().to_string();
    let (live, err, status) = run(&["dump", "--tasks", "--json", &pid]);
    assert_eq!(status, 0, "{err}");
    let dir = scratch("tasks");
    let Some(core) = gcore(t.pid(), &dir) else {
        return;
    };
    let (saved, err, status) = run(&[
        "dump",
        "--tasks",
        "--json",
        "--core",
        core.to_str().unwrap(),
    ]);
    assert_eq!(status, 0, "{err}");
    let (live, saved): (Value, Value) = (
        serde_json::from_str(&live).unwrap(),
        serde_json::from_str(&saved).unwrap(),
    );
    assert!(live["asyncio"].to_string().contains("worker"), "{live}");
    assert_eq!(live["asyncio"], saved["asyncio"]);
    let _ = std::fs::remove_dir_all(&dir);
}
