//! The discovery path's file opening, on a fake `/proc/PID/root`: the
//! interpreter's path holds corrupted and truncated copies of a real ELF
//! file, or is a FIFO, a directory, a symlink out of the root, a symlink
//! loop, a `..` escape. Each answer comes at once, as a summary or an
//! error that names what was found; nothing blocks, nothing panics, and
//! nothing of ours is read through a link.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use symbols::inspect_in_root;
use testsupport::Rng;

/// Makes the trap at a path.
type Make<'a> = &'a dyn Fn(&Path);

struct Root(PathBuf);

impl Drop for Root {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const EXE: &str = "/usr/bin/python3.11";

/// `tag` keeps apart the roots of tests that run at once.
fn root(tag: &str) -> Root {
    let d = testsupport::build_dir().join(format!("fake-root-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("usr/bin")).unwrap();
    Root(d)
}

impl Root {
    fn exe(&self) -> PathBuf {
        self.0.join(&EXE[1..])
    }
    fn set(&self, f: impl FnOnce(&Path)) {
        let _ = std::fs::remove_file(self.exe());
        let _ = std::fs::remove_dir(self.exe());
        f(&self.exe());
    }
    fn inspect(&self, what: &str) -> Result<symbols::FileSummary, String> {
        let t = Instant::now();
        let r = inspect_in_root(&self.0, Path::new(EXE)).map_err(|e| {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(c) = src {
                s.push_str(&format!(": {c}"));
                src = c.source();
            }
            s
        });
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{what}: took {:?}",
            t.elapsed()
        );
        r
    }
}

#[test]
fn traps_in_a_fake_root_are_named() {
    let r = root("traps");
    let fifo = |p: &Path| {
        let ok = std::process::Command::new("mkfifo")
            .arg(p)
            .status()
            .unwrap();
        assert!(ok.success());
    };
    let cases: [(&str, Make, &str); 6] = [
        ("a FIFO", &fifo, "a FIFO, not a regular file"),
        (
            "a directory",
            &|p| std::fs::create_dir(p).unwrap(),
            "a directory",
        ),
        // Resolved inside the root, where /etc/hostname is not.
        (
            "a link out",
            &|p| symlink("/etc/hostname", p).unwrap(),
            "cannot read",
        ),
        (
            "a .. escape",
            &|p| symlink("../../../../../etc/hostname", p).unwrap(),
            "cannot read",
        ),
        (
            "a loop",
            &|p| symlink(p.file_name().unwrap(), p).unwrap(),
            "cannot read",
        ),
        (
            "10 GB",
            &|p| std::fs::File::create(p).unwrap().set_len(10 << 30).unwrap(),
            "more than the",
        ),
    ];
    for (what, make, want) in cases {
        r.set(make);
        let err = r.inspect(what).expect_err(what);
        assert!(err.contains(want), "{what}: {err}");
    }
    // A link inside the root is followed (as the target would).
    let Ok(real) = std::fs::read(EXE) else {
        return testsupport::note("/usr/bin/python3.11 is missing (run scripts/setup)");
    };
    std::fs::write(r.0.join("usr/bin/real"), &real).unwrap();
    r.set(|p| symlink("/usr/bin/real", p).unwrap());
    let s = r.inspect("a link inside").expect("a link inside the root");
    assert!(s.dynamic_symbols > 1000, "{s:?}");
}

#[test]
fn corrupted_files_in_a_fake_root_never_panic() {
    let Ok(real) = std::fs::read(EXE) else {
        return testsupport::note("/usr/bin/python3.11 is missing (run scripts/setup)");
    };
    let r = root("corrupt");
    let mut rng = Rng(0x5eed_f00d);
    for round in 0..60 {
        let mut b = real.clone();
        // Headers are what decide what is read: corrupt mostly there.
        for _ in 0..(1 + rng.next() % 16) {
            let at = if rng.next() % 2 == 0 {
                rng.below(4096)
            } else {
                rng.below(b.len())
            };
            b[at] = rng.next() as u8;
        }
        if round % 5 == 0 {
            b.truncate(rng.below(b.len()));
        }
        r.set(|p| std::fs::write(p, &b).unwrap());
        let _ = r.inspect(&format!("round {round}"));
    }
}
