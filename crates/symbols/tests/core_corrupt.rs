//! A core file is hostile input: every byte of a small core's headers and
//! notes, replaced by values that break sizes and offsets, and every
//! truncation, must give a clean error or a parsed core whose reads and
//! discovery fail cleanly, never a panic or an unbounded allocation.

use std::path::Path;

/// A minimal x86_64 core: header, a PT_NOTE (PRSTATUS, PRPSINFO, AUXV,
/// FILE) and a PT_LOAD of one page.
fn core() -> Vec<u8> {
    fn note(out: &mut Vec<u8>, kind: u32, desc: &[u8]) {
        out.extend_from_slice(&5u32.to_le_bytes());
        out.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(b"CORE\0\0\0\0");
        out.extend_from_slice(desc);
        while out.len() % 4 != 0 {
            out.push(0);
        }
    }
    let mut notes = Vec::new();
    let mut prstatus = vec![0u8; 336];
    prstatus[12] = 11;
    prstatus[32..36].copy_from_slice(&1234u32.to_le_bytes());
    prstatus[112 + 16 * 8..112 + 17 * 8].copy_from_slice(&0x40_1000u64.to_le_bytes());
    note(&mut notes, 1, &prstatus);
    let mut psinfo = vec![0u8; 136];
    psinfo[24..28].copy_from_slice(&1234u32.to_le_bytes());
    psinfo[40..47].copy_from_slice(b"python3");
    note(&mut notes, 3, &psinfo);
    let mut auxv = Vec::new();
    for v in [3u64, 0x40_0040, 0, 0] {
        auxv.extend_from_slice(&v.to_le_bytes());
    }
    note(&mut notes, 6, &auxv);
    let mut file = Vec::new();
    for v in [1u64, 4096, 0x40_0000, 0x40_2000, 0] {
        file.extend_from_slice(&v.to_le_bytes());
    }
    file.extend_from_slice(b"/usr/bin/python3\0");
    note(&mut notes, 0x4649_4c45, &file);

    let phoff = 64u64;
    let notes_off = phoff + 2 * 56;
    let load_off = (notes_off + notes.len() as u64 + 0xfff) & !0xfff;
    let mut b = vec![0u8; 64];
    b[..4].copy_from_slice(b"\x7fELF");
    b[4] = 2;
    b[5] = 1;
    b[6] = 1;
    b[16..18].copy_from_slice(&4u16.to_le_bytes());
    b[18..20].copy_from_slice(&62u16.to_le_bytes());
    b[32..40].copy_from_slice(&phoff.to_le_bytes());
    b[52..54].copy_from_slice(&64u16.to_le_bytes());
    b[54..56].copy_from_slice(&56u16.to_le_bytes());
    b[56..58].copy_from_slice(&2u16.to_le_bytes());
    let phdr = |kind: u32, off: u64, vaddr: u64, size: u64| {
        let mut p = vec![0u8; 56];
        p[..4].copy_from_slice(&kind.to_le_bytes());
        p[8..16].copy_from_slice(&off.to_le_bytes());
        p[16..24].copy_from_slice(&vaddr.to_le_bytes());
        p[32..40].copy_from_slice(&size.to_le_bytes());
        p[40..48].copy_from_slice(&size.to_le_bytes());
        p
    };
    b.extend(phdr(4, notes_off, 0, notes.len() as u64));
    b.extend(phdr(1, load_off, 0x7f00_0000_0000, 4096));
    b.extend(notes);
    b.resize(load_off as usize, 0);
    b.extend(std::iter::repeat_n(0xab, 4096));
    b
}

fn exercise(path: &Path) {
    let Ok(mut c) = symbols::CoreFile::open(path) else {
        return;
    };
    let mut buf = vec![0u8; 64];
    for a in [
        0x7f00_0000_0000u64,
        0x7f00_0000_0ff0,
        0x40_0000,
        0,
        u64::MAX - 8,
    ] {
        let _ = c.read(a, &mut buf);
    }
    let _ = c.maps();
    let _ = c.executable();
    c.set_root("/nonexistent-root".into());
    let _ = symbols::discover_core(&c, None, &symbols::DiscoverOptions::default());
}

#[test]
fn the_sound_core_parses() {
    let dir = testsupport::build_dir().join(format!("core_corrupt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("core");
    std::fs::write(&path, core()).unwrap();
    let c = symbols::CoreFile::open(&path).unwrap();
    assert_eq!(c.pid, 1234);
    assert_eq!(c.command, "python3");
    assert_eq!(c.threads.len(), 1);
    assert_eq!(c.threads[0].signal, 11);
    assert_eq!(c.executable(), Some(Path::new("/usr/bin/python3")));
    let mut buf = [0u8; 16];
    c.read(0x7f00_0000_0100, &mut buf).unwrap();
    assert_eq!(buf, [0xab; 16]);
    assert!(
        c.read(0x7f00_0000_0ff8, &mut buf).is_err(),
        "past the segment"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn corrupted_cores_never_panic() {
    let good = core();
    let dir = testsupport::build_dir().join(format!("core_corrupt-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("core");
    let headers = good.len() - 4096;
    let mut variants = 0;
    for i in (0..headers).step_by(3) {
        for v in [0x00u8, 0xff, 0x7f, 0x80] {
            if good[i] == v {
                continue;
            }
            let mut b = good.clone();
            b[i] = v;
            std::fs::write(&path, &b).unwrap();
            exercise(&path);
            variants += 1;
        }
    }
    for len in (0..good.len()).step_by(97) {
        std::fs::write(&path, &good[..len]).unwrap();
        exercise(&path);
        variants += 1;
    }
    assert!(variants > 500, "{variants}");
    let _ = std::fs::remove_dir_all(&dir);
}
