//! The unix channel's directory is made in the target's /tmp as the target
//! resolves it: a container whose /tmp is a symlink to `/` gets it in its
//! own `/`, never in ours (where the previous build made it, following the
//! symlink from /proc/PID/root into our file system).

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use inject::run::{ChannelKind, Rendezvous};

/// A chroot holding `sleep` and its libraries (hard links), and the
/// `sleep` running in it; both removed on drop.
struct Jail {
    dir: PathBuf,
    child: Option<Child>,
}

impl Drop for Jail {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn place(root: &Path, file: &Path) {
    let real = std::fs::canonicalize(file).expect("canonical path");
    for p in [&real, &file.to_path_buf()] {
        let to = root.join(p.strip_prefix("/").expect("absolute"));
        if to.symlink_metadata().is_ok() {
            continue;
        }
        std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
        if p == &real {
            if std::fs::hard_link(&real, &to).is_err() {
                std::fs::copy(&real, &to).expect("copy");
            }
        } else {
            symlink(&real, &to).expect("symlink");
        }
    }
}

fn jail(tmp_link: &str) -> Option<Jail> {
    let sleep = Path::new("/usr/bin/sleep");
    let chroot_ok = Command::new("chroot").arg("--help").output().is_ok();
    if !sleep.exists() || !chroot_ok || !testsupport::is_root() {
        eprintln!("NOTE: skipping because chroot needs root and /usr/bin/sleep");
        return None;
    }
    let dir = testsupport::build_dir().join(format!("channel-root-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut j = Jail { dir, child: None };
    place(&j.dir, sleep);
    let out = Command::new("ldd").arg(sleep).output().expect("ldd");
    for w in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        if w.starts_with('/') && Path::new(w).exists() {
            place(&j.dir, Path::new(w));
        }
    }
    symlink(tmp_link, j.dir.join("tmp")).expect("the /tmp symlink");
    j.child = Some(
        Command::new("chroot")
            .arg(&j.dir)
            .args(["/usr/bin/sleep", "60"])
            .spawn()
            .expect("chroot sleep"),
    );
    // chroot execs sleep: wait until the pid's root is the jail.
    let pid = j.child.as_ref().expect("child").id();
    for _ in 0..500 {
        if std::fs::read_link(format!("/proc/{pid}/root"))
            .ok()
            .as_deref()
            == Some(&j.dir)
        {
            return Some(j);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("the jailed sleep never ran");
}

/// Channel directories of `pid` in `dir`.
fn channel_dirs(dir: &Path, pid: i32) -> Vec<String> {
    let prefix = format!("pyattach-{pid}-");
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_tmp_symlinked_to_the_root_stays_in_the_target() {
    let Some(j) = jail("/") else {
        return;
    };
    let pid = j.child.as_ref().expect("child").id() as i32;
    let rv = Rendezvous::prepare(pid, ChannelKind::Unix).expect("prepare");
    // Ours is the host's `/`; the target's is the jail.
    assert!(
        channel_dirs(Path::new("/"), pid).is_empty(),
        "made in our /"
    );
    assert_eq!(channel_dirs(&j.dir, pid).len(), 1, "not in the target's /");
    drop(rv);
    assert!(channel_dirs(&j.dir, pid).is_empty(), "left behind");
}
