//! ELF files whose headers claim absurd sizes, laid over a sparse file so
//! the claims lie inside it: a symbol table of 800 MB, 65,535 section
//! headers. Parsing through a file (not bytes in memory) refuses what is
//! over its caps instead of reading it: this test's process stays under
//! 100 MB (its own test binary: VmHWM is per process).

use std::path::Path;

const MB: u64 = 1 << 20;

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}
fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// `elf` with its `.dynsym` and `.dynstr` claiming 800 MB at 64 MB into the
/// file, written at `path` and extended (sparse) to 900 MB.
fn huge_dynsym(elf: &[u8], path: &Path) {
    let mut b = elf.to_vec();
    let shoff = u64_at(&b, 0x28) as usize;
    let (size, num) = (u16_at(&b, 0x3a) as usize, u16_at(&b, 0x3c) as usize);
    let header = |i: usize| shoff + i * size;
    let dynsym = (0..num)
        .find(|&i| u32_at(&b, header(i) + 4) == 11)
        .expect("a .dynsym");
    let dynstr = u32_at(&b, header(dynsym) + 0x28) as usize;
    for i in [dynsym, dynstr] {
        put_u64(&mut b, header(i) + 0x18, 64 * MB);
        put_u64(&mut b, header(i) + 0x20, 800 * MB);
    }
    write_sparse(path, &b);
}

/// `elf` with 65,535 section headers at 64 MB (all zero), 900 MB sparse.
fn many_sections(elf: &[u8], path: &Path) {
    let mut b = elf.to_vec();
    put_u64(&mut b, 0x28, 64 * MB);
    b[0x3c..0x3e].copy_from_slice(&u16::MAX.to_le_bytes());
    write_sparse(path, &b);
}

/// `b` at `path`, extended with a hole to 900 MB.
fn write_sparse(path: &Path, b: &[u8]) {
    std::fs::write(path, b).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(900 * MB)
        .unwrap();
}

fn peak_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn absurd_sizes_are_refused_not_read() {
    let Ok(elf) = std::fs::read("/usr/bin/python3.11") else {
        return testsupport::note("/usr/bin/python3.11 is missing (run scripts/setup)");
    };
    let dir = testsupport::build_dir().join(format!("absurd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (a, b) = (dir.join("huge-dynsym"), dir.join("many-sections"));
    huge_dynsym(&elf, &a);
    many_sections(&elf, &b);
    let start = std::time::Instant::now();
    let summary = symbols::inspect_file(&a).expect("the headers parse");
    // The table was refused, not read.
    assert_eq!(summary.dynamic_symbols, 0, "{summary:?}");
    let _ = symbols::inspect_file(&b);
    let kb = peak_kb();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(kb < 100 * 1024, "peaked at {kb} KiB");
    assert!(start.elapsed().as_secs() < 30, "took {:?}", start.elapsed());
}
