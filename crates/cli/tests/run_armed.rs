//! A run that fails once its detours are armed (here forced by a test
//! hook; in real runs a thread state that cannot be read, a stop that
//! fails) leaves nothing behind: the `Armed` guard puts every entry's
//! original bytes back and unmaps the pages, so no entry of the target
//! jumps into pages nobody waits on, and the next pyattach finds no
//! detour to replace.

use std::io::{Read, Seek, SeekFrom};
use std::process::{Command, Stdio};

use testsupport::{exec_anon, pyattach_bin, pythons, Target};

/// The entries a run hooks, and their addresses (from `pyattach info`).
fn entries(pid: i32) -> Vec<(String, u64)> {
    let out = Command::new(pyattach_bin())
        .args(["info", "--json", &pid.to_string()])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    j["symbols"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            s["role"]
                .as_str()
                .is_some_and(|r| r.contains("hooked entry"))
        })
        .filter_map(|s| {
            let addr = s["addr"].as_str()?.trim_start_matches("0x");
            Some((
                s["name"].as_str()?.to_string(),
                u64::from_str_radix(addr, 16).ok()?,
            ))
        })
        .collect()
}

/// 16 bytes of the target's memory at `addr`.
fn bytes_at(pid: i32, addr: u64) -> Vec<u8> {
    let mut f = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    f.seek(SeekFrom::Start(addr)).unwrap();
    let mut b = vec![0u8; 16];
    f.read_exact(&mut b).unwrap();
    b
}

#[test]
fn a_run_failing_with_its_detours_armed_takes_them_back() {
    for py in pythons() {
        let Some(t) = Target::run_state(&py, "sleep") else {
            continue;
        };
        let pid = t.pid();
        let hooked = entries(pid);
        assert!(!hooked.is_empty(), "{}: no hooked entry listed", py.id);
        let before: Vec<Vec<u8>> = hooked.iter().map(|(_, a)| bytes_at(pid, *a)).collect();
        let pages = exec_anon(pid);
        let out = Command::new(pyattach_bin())
            .args(["--run", "print('never')", "-v", &pid.to_string()])
            .env("PYATTACH_TEST_FAIL_AFTER_ARM", "1")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {err}", py.id);
        assert!(err.contains("test hook"), "{}: {err}", py.id);
        assert!(out.stdout.is_empty(), "{}: {err}", py.id);
        for ((name, addr), was) in hooked.iter().zip(&before) {
            assert_eq!(
                &bytes_at(pid, *addr),
                was,
                "{}: {name} still patched",
                py.id
            );
        }
        assert_eq!(exec_anon(pid), pages, "{}: the code page stayed", py.id);
        assert!(t.ticks_on(2), "{}: not ticking", py.id);
        // The next run finds the entries as the file has them.
        let out = Command::new(pyattach_bin())
            .args(["--run", "print('next')", "-v", &pid.to_string()])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "next\n",
            "{}: {err}",
            py.id
        );
        assert!(!err.contains("replaced a detour"), "{}: {err}", py.id);
        assert!(t.ticks_on(2), "{}: not ticking", py.id);
    }
}
