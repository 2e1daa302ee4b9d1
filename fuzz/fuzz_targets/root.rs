//! The discovery path's opening of a target's file, on a fake
//! `/proc/PID/root`: the first byte says what the interpreter's path is (a
//! file of the other bytes, a FIFO, a directory, a symlink out of the root
//! or to a file inside it, a 10 GB sparse file), the other bytes are the
//! file's content. Each run must answer (a summary or an error), never
//! panic, block or read anything of ours through a link.
#![no_main]

use std::path::Path;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&kind, content)) = data.split_first() else {
        return;
    };
    let root = std::env::temp_dir().join(format!("pyattach-fuzz-root-{}", std::process::id()));
    let bin = root.join("usr/bin");
    let _ = std::fs::create_dir_all(&bin);
    let exe = bin.join("python");
    let _ = std::fs::remove_file(&exe);
    let _ = std::fs::remove_dir(&exe);
    let _ = std::fs::write(bin.join("real"), content);
    let _ = match kind % 6 {
        0 => std::fs::write(&exe, content),
        1 => std::process::Command::new("mkfifo").arg(&exe).status().map(drop),
        2 => std::fs::create_dir(&exe),
        3 => std::os::unix::fs::symlink("/etc/passwd", &exe),
        4 => std::os::unix::fs::symlink("real", &exe),
        _ => std::fs::write(&exe, content)
            .and_then(|()| std::fs::OpenOptions::new().write(true).open(&exe))
            .and_then(|f| f.set_len(10 << 30)),
    };
    let _ = symbols::inspect_in_root(&root, Path::new("/usr/bin/python"));
});
