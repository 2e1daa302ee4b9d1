//! A container-like target (a chroot holding copies of an interpreter and
//! its libraries) whose files turn hostile after it started: its
//! executable or libpython replaced by a FIFO, by a symlink to a file of
//! ours, by a 10 GB sparse file; a FIFO where its build-id debug file
//! would be. `info`, `dump` and `--run` never hang and stay under 100 MB;
//! as root they read the very files mapped (`/proc/PID/map_files`) and
//! work; without the privilege map_files needs they name the file they
//! refused and why. The target runs on.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use testsupport::{Python, Target};

const LIMIT: Duration = Duration::from_secs(60);
const PEAK_KB: u64 = 100 * 1024;
/// What `setpriv` runs pyattach and the target as, where map_files is
/// closed to them.
const NOBODY: [&str; 4] = [
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
];

const SCRIPT: &str = "import os, sys, time\n\
sys.stdout.write('READY %d\\n' % os.getpid()); sys.stdout.flush()\n\
while True:\n    time.sleep(0.05)\n";

/// A chroot under the build directory, removed on drop.
struct Root {
    dir: PathBuf,
    exe: PathBuf,
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Root {
    /// `p` (a path of the target's) on our side.
    fn host(&self, p: &Path) -> PathBuf {
        self.dir.join(p.strip_prefix("/").unwrap_or(p))
    }

    /// Places `from` (a file or a tree) at the same path inside the root:
    /// hard links where the file system allows (nothing is ever written
    /// into them), else a copy.
    fn place(&self, from: &Path) {
        let to = self.host(from);
        if to.exists() {
            return;
        }
        std::fs::create_dir_all(to.parent().expect("a parent")).expect("mkdir");
        for flags in ["-al", "-a"] {
            let ok = Command::new("cp").arg(flags).arg(from).arg(&to).status();
            if ok.is_ok_and(|s| s.success()) {
                return;
            }
            let _ = std::fs::remove_dir_all(&to);
        }
        panic!("cannot copy {} into the chroot", from.display());
    }

    /// The shared libraries `ldd` lists for `exe`, each at its path and at
    /// the path its symlinks resolve to.
    fn place_libraries(&self, exe: &Path) {
        let out = Command::new("ldd").arg(exe).output().expect("ldd");
        for word in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let lib = Path::new(word);
            if !lib.is_absolute() || !lib.exists() {
                continue;
            }
            let real = std::fs::canonicalize(lib).expect("canonical library path");
            self.place(&real);
            let link = self.host(lib);
            if real != lib && !link.exists() {
                std::fs::create_dir_all(link.parent().expect("a parent")).expect("mkdir");
                symlink(&real, &link).expect("library symlink");
            }
        }
    }

    /// `tag` keeps apart the roots of tests that run at once.
    fn build(py: &Python, tag: &str) -> Root {
        let dir = testsupport::build_dir().join(format!(
            "hostile-root-{tag}-{}-{}",
            py.id,
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let exe = std::fs::canonicalize(&py.exe).expect("interpreter path");
        let root = Root { dir, exe };
        // The prefix holds the stdlib (and a pyenv build's libpython).
        let prefix = root.exe.parent().and_then(Path::parent).expect("prefix");
        if prefix == Path::new("/usr") {
            root.place(&root.exe);
            root.place(&PathBuf::from(format!(
                "/usr/lib/python{}.{}",
                py.version.0, py.version.1
            )));
        } else {
            root.place(prefix);
        }
        root.place_libraries(&root.exe);
        // The bootstrap uses ctypes: its libffi.
        let dynload = prefix.join(format!(
            "lib/python{}.{}/lib-dynload",
            py.version.0, py.version.1
        ));
        for e in std::fs::read_dir(dynload).expect("lib-dynload").flatten() {
            if e.file_name().to_string_lossy().starts_with("_ctypes.") {
                root.place_libraries(&e.path());
            }
        }
        // --run's channel lives in the target's /tmp.
        let tmp = root.dir.join("tmp");
        std::fs::create_dir_all(&tmp).expect("mkdir tmp");
        let ok = Command::new("chmod").arg("1777").arg(&tmp).status();
        assert!(ok.is_ok_and(|s| s.success()), "chmod 1777 tmp");
        root
    }

    fn start(&self, as_nobody: bool) -> Target {
        let mut cmd = Command::new("chroot");
        if as_nobody {
            cmd.arg("--userspec=65534:65534");
        }
        cmd.arg(&self.dir)
            .arg(&self.exe)
            .args(["-S", "-u", "-c", SCRIPT])
            .env("PYTHONDONTWRITEBYTECODE", "1");
        Target::spawn(cmd)
    }
}

#[derive(Clone, Copy, Debug)]
enum Trap {
    Fifo,
    HostLink,
    Sparse,
}

/// Puts `trap` where `file` (a host path inside the root) was, the way an
/// attacker would (a rename over it); the original waits beside it.
fn plant(file: &Path, trap: Trap) {
    let tmp = file.with_extension("trap");
    let _ = std::fs::remove_file(&tmp);
    match trap {
        Trap::Fifo => {
            let ok = Command::new("mkfifo").arg(&tmp).status().expect("mkfifo");
            assert!(ok.success());
        }
        // A file of ours, outside the target's root.
        Trap::HostLink => symlink(testsupport::pyattach_bin(), &tmp).expect("symlink"),
        Trap::Sparse => std::fs::File::create(&tmp)
            .and_then(|f| f.set_len(10 << 30))
            .expect("sparse file"),
    }
    std::fs::hard_link(file, file.with_extension("orig")).expect("keep the original");
    std::fs::rename(&tmp, file).expect("plant the trap");
}

fn restore(file: &Path) {
    std::fs::rename(file.with_extension("orig"), file).expect("restore");
}

/// Runs pyattach (under `wrapper`), checks it finished in time and under
/// 100 MB; returns (status, stdout, stderr).
fn pyattach(who: &str, wrapper: &[&str], args: &[&str]) -> Option<(i32, String, String)> {
    let (out, kb) = testsupport::pyattach_output_peak(wrapper, args, LIMIT)?;
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        kb < PEAK_KB,
        "{who}: pyattach {args:?} peaked at {kb} KiB\n{err}"
    );
    Some((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        err,
    ))
}

/// `info`, `dump` and `--run` all work on `t`.
fn all_work(who: &str, t: &Target, version: &str) -> Option<()> {
    let pid = t.pid().to_string();
    let runs: [(&[&str], &str); 3] = [
        (&["info", &pid], version),
        (&["dump", &pid], version),
        (&["--run", "print(6 * 7)", &pid], "42"),
    ];
    for (args, want) in runs {
        let (code, out, err) = pyattach(who, &[], args)?;
        assert_eq!(code, 0, "{who}: pyattach {args:?}: {err}");
        assert!(out.contains(want), "{who}: pyattach {args:?}: {out}{err}");
    }
    assert!(t.is_alive(), "{who}: the target died");
    Some(())
}

fn pythons() -> Vec<Python> {
    if !testsupport::is_root() {
        testsupport::note("a chroot needs root");
        return Vec::new();
    }
    let mut v: Vec<Python> = testsupport::debian_python().into_iter().collect();
    // A pyenv build: CPython in a shared libpython.
    match testsupport::python("3.12") {
        Some(p) => v.push(p),
        None => testsupport::note("pyenv's 3.12 is missing (scripts/setup)"),
    }
    v
}

#[test]
fn replaced_interpreter_files_are_read_through_map_files() {
    for py in pythons() {
        let root = Root::build(&py, "traps");
        let version = format!("{}.{}.{}", py.version.0, py.version.1, py.version.2);
        let mut files = vec![root.host(&root.exe)];
        let prefix = root.exe.parent().and_then(Path::parent).expect("prefix");
        let lib = prefix.join(format!(
            "lib/libpython{}.{}.so.1.0",
            py.version.0, py.version.1
        ));
        if lib.exists() {
            files.push(root.host(&lib));
        }
        for file in &files {
            for trap in [Trap::Fifo, Trap::HostLink, Trap::Sparse] {
                let t = root.start(false);
                plant(file, trap);
                let who = format!("{} with {} a {trap:?}", py.id, file.display());
                let worked = all_work(&who, &t, &version);
                restore(file);
                worked.expect("/usr/bin/time");
            }
        }
    }
}

/// The build id of `exe`, lowercase hex, from `readelf -n`.
fn build_id(exe: &Path) -> Option<String> {
    let out = Command::new("readelf").arg("-n").arg(exe).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let at = text.find("Build ID: ")?;
    text[at + 10..]
        .split_whitespace()
        .next()
        .map(str::to_string)
}

#[test]
fn a_fifo_for_a_debug_file_is_passed_over() {
    let Some(py) = pythons().into_iter().find(|p| p.id == "debian3_11") else {
        return;
    };
    let Some(id) = build_id(&py.exe) else {
        return testsupport::note("readelf is missing (binutils)");
    };
    let root = Root::build(&py, "debugfifo");
    let fifo = root.host(Path::new(&format!(
        "/usr/lib/debug/.build-id/{}/{}.debug",
        &id[..2],
        &id[2..]
    )));
    std::fs::create_dir_all(fifo.parent().expect("a parent")).expect("mkdir");
    let ok = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(ok.success());
    let t = root.start(false);
    let version = format!("{}.{}.{}", py.version.0, py.version.1, py.version.2);
    // `info` opens every debug source of the chain.
    all_work(&format!("{} with a FIFO debug file", py.id), &t, &version).expect("/usr/bin/time");
}

#[test]
fn without_map_files_a_replaced_interpreter_is_named_and_refused() {
    let Some(py) = pythons().into_iter().find(|p| p.id == "debian3_11") else {
        return;
    };
    if !Path::new("/usr/bin/setpriv").exists() {
        return testsupport::note("setpriv is missing (util-linux)");
    }
    let root = Root::build(&py, "nobody");
    let exe = root.host(&root.exe);
    // Unchanged, the files are read by path inside the root, checked to be
    // the mapped ones.
    let t = root.start(true);
    let pid = t.pid().to_string();
    let Some((code, out, err)) = pyattach("nobody", &NOBODY, &["info", &pid]) else {
        return;
    };
    assert_eq!(code, 0, "info as nobody: {err}");
    assert!(out.contains("3.11"), "info as nobody: {out}");
    // A library replaced by a FIFO: named, and the rest works.
    let libz = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .expect("maps")
        .lines()
        .find_map(|l| {
            l.split_whitespace()
                .nth(5)
                .filter(|p| p.contains("/libz."))
                .map(PathBuf::from)
        })
        .expect("libz mapped");
    plant(&libz, Trap::Fifo);
    let r = pyattach("nobody", &NOBODY, &["info", &pid]);
    restore(&libz);
    let (code, out, err) = r.expect("/usr/bin/time");
    assert_eq!(code, 0, "info as nobody, libz a FIFO: {err}");
    assert!(
        out.contains("Refused") && out.contains("libz") && out.contains("deleted or replaced"),
        "info as nobody, libz a FIFO: {out}"
    );
    drop(t);
    for trap in [Trap::Fifo, Trap::HostLink, Trap::Sparse] {
        let t = root.start(true);
        let pid = t.pid().to_string();
        plant(&exe, trap);
        let who = format!("nobody, the interpreter a {trap:?}");
        let mut results = Vec::new();
        for args in [
            &["info", &pid][..],
            &["dump", &pid],
            &["--run", "pass", &pid],
        ] {
            results.push((args.to_vec(), pyattach(&who, &NOBODY, args)));
        }
        restore(&exe);
        for (args, r) in results {
            let (code, _, err) = r.expect("/usr/bin/time");
            assert_eq!(code, 3, "{who}: pyattach {args:?}: {err}");
            for want in ["was not read", "deleted or replaced since it was mapped"] {
                assert!(err.contains(want), "{who}: pyattach {args:?}: {err}");
            }
        }
        assert!(t.is_alive(), "{who}: the target died");
    }
}
