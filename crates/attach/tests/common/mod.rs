//! Shared by the attach tests: start a C fixture and read the addresses it
//! announces on its READY line.
#![allow(dead_code)]

use std::process::Command;

use testsupport::Target;

/// Builds `tests/fixtures/c/NAME.c` and starts it with `args`; `None` (with a
/// note) when gcc is missing.
pub fn start(name: &str, args: &[&str]) -> Option<Target> {
    let exe = testsupport::build_c(name, &[])?;
    let mut cmd = Command::new(exe);
    cmd.args(args);
    Some(Target::spawn(cmd))
}

/// The value of `key=` on the READY line, as a number (hex with 0x, or
/// decimal).
pub fn field(t: &Target, key: &str) -> u64 {
    let prefix = format!("{key}=");
    let v = t
        .ready_line
        .split_whitespace()
        .find_map(|w| w.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {key}= in {:?}", t.ready_line));
    match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).unwrap(),
        None => v.parse().unwrap(),
    }
}

/// The counter at `addr`, read without ptrace.
pub fn read_u64(pid: i32, addr: u64) -> u64 {
    attach::ProcessMemory::open(pid)
        .unwrap()
        .read_u64(addr)
        .unwrap()
}

/// Waits until the u64 at `addr` changes (the target runs on); false if it
/// stays still for `secs` seconds.
pub fn keeps_counting(pid: i32, addr: u64, secs: u64) -> bool {
    let start = read_u64(pid, addr);
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < end {
        if read_u64(pid, addr) != start {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    false
}

/// A CRC of the bytes of every executable mapping of a file in `pid` (the
/// program's and libraries' code).
pub fn text_checksum(pid: i32) -> Vec<(String, u32)> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mem = attach::ProcessMemory::open(pid).unwrap();
    let mut out = Vec::new();
    for line in maps.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() < 6 || !cols[1].contains('x') || !cols[5].starts_with('/') {
            continue;
        }
        let (a, b) = cols[0].split_once('-').unwrap();
        let a = u64::from_str_radix(a, 16).unwrap();
        let b = u64::from_str_radix(b, 16).unwrap();
        let bytes = mem.read_vec(a, (b - a) as usize).unwrap();
        out.push((line.to_string(), crc32fast::hash(&bytes)));
    }
    out
}

/// Asserts two saved thread states are equal, printing only what differs
/// (the FP area is kilobytes).
pub fn assert_same_state(a: &attach::SavedState, b: &attach::SavedState, what: &str) {
    assert_eq!(a.regs, b.regs, "{what}: general registers differ");
    assert_eq!(a.sigmask, b.sigmask, "{what}: signal mask differs");
    assert_eq!(a.fp_is_xstate, b.fp_is_xstate, "{what}: FP layout differs");
    if a.fp != b.fp {
        let first = a.fp.iter().zip(&b.fp).position(|(x, y)| x != y);
        panic!(
            "{what}: FP state differs (lengths {} and {}, first difference at byte {first:?})",
            a.fp.len(),
            b.fp.len()
        );
    }
}
