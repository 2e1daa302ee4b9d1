//! Truncated and corrupted copies of real ELF files: parsing must return an
//! error or a partial answer, never panic, never hang.

use symbols::inspect_bytes;
use testsupport::Rng;

fn samples() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut paths = vec![std::path::PathBuf::from("/usr/bin/python3.11")];
    if let Some(p) = testsupport::python("2.7") {
        let lib = p.exe.parent().unwrap().join("../lib/libpython2.7.so.1.0");
        paths.push(lib);
    }
    for p in paths {
        match std::fs::read(&p) {
            Ok(b) => out.push((p.display().to_string(), b)),
            Err(e) => testsupport::note(&format!("{} unreadable: {e}", p.display())),
        }
    }
    out
}

#[test]
fn truncated_files_never_panic() {
    for (name, bytes) in samples() {
        let whole = inspect_bytes(bytes.clone()).expect("the intact file parses");
        assert!(whole.dynamic_symbols > 1000, "{name}: {whole:?}");
        assert!(whole.version.is_some(), "{name}");
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        // Inside the headers, then anywhere.
        let mut cuts: Vec<usize> = vec![0, 1, 4, 16, 52, 63, 64, 65, 120, 4096];
        cuts.extend((0..30).map(|_| rng.below(bytes.len())));
        for cut in cuts {
            let _ = inspect_bytes(bytes[..cut.min(bytes.len())].to_vec());
        }
    }
}

#[test]
fn flipped_bytes_never_panic() {
    for (_name, bytes) in samples() {
        let mut rng = Rng(0xdead_beef_cafe_f00d);
        // Section headers sit at the end, program headers at the start: hit
        // both often, the rest sometimes.
        let shoff = u64::from_le_bytes(bytes[0x28..0x30].try_into().unwrap()) as usize;
        for round in 0..60 {
            let mut b = bytes.clone();
            for _ in 0..1 + rng.below(8) {
                let at = match round % 3 {
                    0 => rng.below(0x400),
                    1 => shoff + rng.below(bytes.len().saturating_sub(shoff).max(1)),
                    _ => rng.below(bytes.len()),
                };
                if at < b.len() {
                    b[at] ^= 1 << rng.below(8);
                    if rng.below(4) == 0 {
                        b[at] = 0xff;
                    }
                }
            }
            let _ = inspect_bytes(b);
        }
    }
}

#[test]
fn garbage_is_an_error() {
    assert!(inspect_bytes(Vec::new()).is_err());
    assert!(inspect_bytes(b"#!/bin/sh\necho hi\n".to_vec()).is_err());
    let err = symbols::inspect_file(std::path::Path::new("/nonexistent/x")).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/x"), "{err}");
}
