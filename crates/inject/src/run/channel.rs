//! Meeting the bootstrap: pyattach gets its end of the channel either out
//! of the target with `pidfd_getfd` (the bootstrap made a `socketpair`), or,
//! where that is not allowed, through a unix socket in a fresh 0700
//! directory inside the target's filesystem, reached via `/proc/PID/root`.
//!
//! How pyattach finds its end of the socketpair: before injecting it notes
//! the target's socket inodes; afterwards it takes each new unix stream
//! socket with `pidfd_getfd` and peeks (without consuming) for the hello
//! frame carrying this injection's nonce, which the bootstrap writes into
//! the pair at once. Sockets that existed before are never touched.
//!
//! The unix socket's directory never outlives pyattach: pyattach removes it
//! once connected or when it gives up, the bootstrap removes it whether or
//! not its connect succeeds, a guard process removes it if pyattach is
//! killed first (`guard`), and anything left even so (no shell to run the
//! guard) is swept by the next run (`sweep_stale`).

use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use super::bootstrap::{ChannelParams, Mode, Params};
use super::error::RunError;
use super::protocol::{self, Channel, FromTarget, ToTarget};

/// Which channel to set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ChannelKind {
    /// `socketpair` + `pidfd_getfd` when the kernel allows it, else the
    /// unix socket.
    #[default]
    Auto,
    Pair,
    Unix,
}

/// The tool's side of a channel that the bootstrap will open.
pub struct Rendezvous {
    pid: i32,
    nonce: String,
    token: String,
    how: How,
}

enum How {
    Pair {
        pidfd: OwnedFd,
        /// Socket inodes the target had before the injection.
        before: HashSet<u64>,
        tried: HashSet<u64>,
    },
    Unix {
        listener: UnixListener,
        /// The directory as pyattach sees it (`/proc/self/fd/N/name`, N
        /// being `base`).
        host_dir: PathBuf,
        /// The target's temporary directory, resolved inside its root:
        /// `host_dir` goes through this descriptor, kept open as long.
        _base: OwnedFd,
        /// The socket's path as the target sees it.
        target_path: String,
        /// Removes the directory if pyattach dies before it could
        /// ([`guard`]); told to leave by closing its stdin.
        guard: Option<std::process::Child>,
    },
}

impl Rendezvous {
    /// Prepares a channel to `pid` before anything is injected.
    pub fn prepare(pid: i32, kind: ChannelKind) -> Result<Rendezvous, RunError> {
        let nonce = random_hex(8)?;
        let token = random_hex(16)?;
        // Whatever the kind: what a killed fallback run left must go even
        // if this run gets the socketpair. Costs one listing of each
        // temporary directory when nothing is stale.
        sweep_stale(pid);
        let how = match kind {
            ChannelKind::Pair => pair(pid)?,
            ChannelKind::Unix => unix(pid, &nonce)?,
            ChannelKind::Auto => match pair(pid) {
                Ok(h) => h,
                Err(RunError::TargetExited { pid }) => return Err(RunError::TargetExited { pid }),
                Err(_) => unix(pid, &nonce)?,
            },
        };
        Ok(Rendezvous {
            pid,
            nonce,
            token,
            how,
        })
    }

    /// True if this rendezvous uses the socketpair (else the unix socket).
    pub fn is_pair(&self) -> bool {
        matches!(self.how, How::Pair { .. })
    }

    /// What the bootstrap must be told to meet us.
    pub fn params(&self, mode: Mode, wait: Duration) -> Params {
        Params {
            nonce: self.nonce.clone(),
            token: self.token.clone(),
            mode,
            channel: match &self.how {
                How::Pair { .. } => ChannelParams::Pair,
                How::Unix { target_path, .. } => ChannelParams::Unix {
                    path: target_path.clone(),
                },
            },
            wait_secs: wait.as_secs_f64(),
            wakeup_fd_fn: 0,
            trip_flags: None,
        }
    }

    /// Waits until the bootstrap's channel shows up, then acks it. Fails
    /// when `deadline` passes or the target exits first.
    pub fn wait(&mut self, deadline: Instant) -> Result<Channel, RunError> {
        self.wait_then(deadline, || {})
    }

    /// [`Rendezvous::wait`] that calls `before_ack` once the channel is
    /// found, before acking it: the bootstrap can go no further than its
    /// wait for the ack (where it holds no interpreter lock) meanwhile.
    pub fn wait_then(
        &mut self,
        deadline: Instant,
        before_ack: impl FnOnce(),
    ) -> Result<Channel, RunError> {
        let start = Instant::now();
        let mut pause = Duration::from_micros(100);
        loop {
            if let Some(stream) = self.poll()? {
                before_ack();
                let mut ch = Channel::new(stream);
                ch.send(&ToTarget::Ack)
                    .map_err(|e| RunError::io("acknowledging the bootstrap", e))?;
                self.cleanup();
                return Ok(ch);
            }
            if !alive(self.pid) {
                return Err(RunError::TargetExited { pid: self.pid });
            }
            if Instant::now() >= deadline {
                return Err(RunError::NoCallback {
                    pid: self.pid,
                    secs: start.elapsed().as_secs_f64(),
                });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(2));
        }
    }

    fn poll(&mut self) -> Result<Option<UnixStream>, RunError> {
        match &mut self.how {
            How::Pair {
                pidfd,
                before,
                tried,
            } => {
                for (fd, inode) in socket_fds(self.pid) {
                    if before.contains(&inode) || !tried.insert(inode) {
                        continue;
                    }
                    let Ok(dup) = attach::pidfd::pidfd_getfd(pidfd, fd) else {
                        continue;
                    };
                    if !attach::pidfd::is_unix_stream(&dup) {
                        continue;
                    }
                    let mut buf = [0u8; 64];
                    let n = attach::pidfd::peek(&dup, &mut buf).unwrap_or(0);
                    if n == 0 {
                        // Not written to yet: may be ours an instant
                        // before the hello; look again next time.
                        tried.remove(&inode);
                        continue;
                    }
                    if protocol::hello_prefix_matches(&buf[..n], &self.nonce) {
                        let mut stream = UnixStream::from(dup);
                        self.read_hello(&mut stream)?;
                        return Ok(Some(stream));
                    }
                }
                Ok(None)
            }
            How::Unix { listener, .. } => {
                let (mut stream, _) = match listener.accept() {
                    Ok(s) => s,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
                    Err(e) => return Err(RunError::io("accepting the bootstrap's connection", e)),
                };
                stream
                    .set_nonblocking(false)
                    .map_err(|e| RunError::io("channel", e))?;
                // Only the target itself may be the peer (SO_PEERCRED is
                // what the kernel recorded at connect, not a claim).
                match attach::pidfd::peer_credentials(&stream) {
                    Ok((peer, _)) if peer == self.pid => {}
                    _ => return Ok(None),
                }
                stream
                    .set_read_timeout(Some(Duration::from_secs(2)))
                    .map_err(|e| RunError::io("channel", e))?;
                if self.read_hello(&mut stream).is_err() {
                    return Ok(None);
                }
                stream
                    .set_read_timeout(None)
                    .map_err(|e| RunError::io("channel", e))?;
                Ok(Some(stream))
            }
        }
    }

    /// Consumes the hello frame and checks nonce and token.
    fn read_hello(&self, stream: &mut impl Read) -> Result<(), RunError> {
        match protocol::read_frame(stream) {
            Ok(Some(FromTarget::Hello { nonce, token }))
                if nonce == self.nonce && token == self.token =>
            {
                Ok(())
            }
            Ok(_) => Err(RunError::io(
                "the bootstrap's hello",
                std::io::Error::new(std::io::ErrorKind::InvalidData, "unexpected hello"),
            )),
            Err(e) => Err(RunError::io("reading the bootstrap's hello", e)),
        }
    }

    /// Removes the unix socket and its directory (nothing is left in the
    /// target's filesystem once the bootstrap is connected).
    fn cleanup(&mut self) {
        if let How::Unix {
            host_dir, guard, ..
        } = &mut self.how
        {
            let _ = fs::remove_file(host_dir.join("s"));
            let _ = fs::remove_dir(&*host_dir);
            if let Some(mut g) = guard.take() {
                // End of its stdin: it finds nothing left to remove, and
                // exits; reaped here if quick, else by init once we exit.
                drop(g.stdin.take());
                let end = Instant::now() + Duration::from_millis(100);
                while matches!(g.try_wait(), Ok(None)) && Instant::now() < end {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
}

impl Drop for Rendezvous {
    fn drop(&mut self) {
        self.cleanup();
    }
}

fn pair(pid: i32) -> Result<How, RunError> {
    let pidfd = attach::pidfd::pidfd_open(pid).map_err(|e| {
        if alive(pid) {
            RunError::io("pidfd_open", e)
        } else {
            RunError::TargetExited { pid }
        }
    })?;
    // Check now that pidfd_getfd is allowed (kernel 5.6+, ptrace access),
    // on any descriptor of the target.
    let probe = fs::read_dir(format!("/proc/{pid}/fd"))
        .map_err(|e| RunError::io(format!("listing /proc/{pid}/fd"), e))?
        .flatten()
        .find_map(|e| e.file_name().to_str()?.parse::<i32>().ok());
    if let Some(fd) = probe {
        attach::pidfd::pidfd_getfd(&pidfd, fd).map_err(|e| RunError::io("pidfd_getfd", e))?;
    }
    let before = socket_fds(pid).into_iter().map(|(_, i)| i).collect();
    Ok(How::Pair {
        pidfd,
        before,
        tried: HashSet::new(),
    })
}

/// The target's temporary directories, in the order pyattach tries them.
const TMP_DIRS: [&str; 3] = ["tmp", "dev/shm", "var/tmp"];

/// The first of [`TMP_DIRS`] the target has, opened inside its root (a
/// `/tmp` that is a symlink to `/` means the target's `/`, never ours),
/// and its name.
fn tmp_dir(pid: i32) -> Option<(OwnedFd, &'static str)> {
    TMP_DIRS
        .into_iter()
        .find_map(|d| Some((attach::procinfo::open_dir_in_root(pid, d).ok()?, d)))
}

/// How a process reaches the directory behind `fd` of ours.
fn fd_path(fd: &OwnedFd, who: u32) -> PathBuf {
    use std::os::fd::AsRawFd;
    PathBuf::from(format!("/proc/{who}/fd/{}", fd.as_raw_fd()))
}

fn unix(pid: i32, nonce: &str) -> Result<How, RunError> {
    let (base_fd, base) = tmp_dir(pid).ok_or_else(|| {
        RunError::io(
            "no /tmp in the target's filesystem",
            std::io::Error::from(std::io::ErrorKind::NotFound),
        )
    })?;
    let name = format!("pyattach-{pid}-{nonce}");
    let host_dir = fd_path(&base_fd, std::process::id()).join(&name);
    // First the guard, so that no moment exists with the directory and
    // nobody bound to remove it.
    let guard = guard(&fd_path(&base_fd, std::process::id()), &name);
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&host_dir)
        .map_err(|e| RunError::io(format!("creating {}", host_dir.display()), e))?;
    let target_path = format!("/{base}/{name}/s");
    let listener = UnixListener::bind(host_dir.join("s"));
    let listener = match listener {
        Ok(l) => l,
        Err(e) => {
            let _ = fs::remove_dir(&host_dir);
            return Err(RunError::io("binding the channel's unix socket", e));
        }
    };
    // When pyattach runs as root for another user's target, that user must
    // be able to reach the socket; nobody else can (0700).
    if let Some(uid) = target_uid(pid) {
        let _ = std::os::unix::fs::chown(&host_dir, Some(uid), None);
        let _ = std::os::unix::fs::chown(host_dir.join("s"), Some(uid), None);
    }
    listener
        .set_nonblocking(true)
        .map_err(|e| RunError::io("channel", e))?;
    Ok(How::Unix {
        listener,
        host_dir,
        _base: base_fd,
        target_path,
        guard,
    })
}

/// A small process that removes the channel's directory `name` in `parent`
/// when pyattach's end of its stdin closes: at once if pyattach is killed
/// (even with SIGKILL) before it could remove the directory itself, as a
/// no-op after it did. In a process group of its own, so a Ctrl-C at the
/// terminal does not take it away with pyattach; it enters `parent` first,
/// which keeps working if the target (and its /proc/PID/root) goes. It
/// removes only the socket `s` and the then empty directory, never follows
/// a symlink put in the directory's place. `None` (no guard: the next run's
/// sweep is the fallback) if no shell can be started. Returns once the
/// guard is in `parent`: `parent` names a descriptor of pyattach's
/// (`/proc/PID/fd/N`), gone with pyattach, so a guard still starting when
/// pyattach is killed could not enter it and would leave the directory.
fn guard(parent: &Path, name: &str) -> Option<std::process::Child> {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    const SCRIPT: &str = r#"cd -- "$1" || exit 0; echo in; read -r _; [ -L "$2" ] || { rm -f -- "$2/s"; rmdir -- "$2"; } 2>/dev/null; exit 0"#;
    let mut child = std::process::Command::new("/bin/sh")
        .args(["-c", SCRIPT, "pyattach-guard"])
        .arg(parent)
        .arg(name)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .ok()?;
    // "in", or end of file if it could not enter (it has exited then).
    if let Some(mut out) = child.stdout.take() {
        let mut buf = [0u8; 3];
        let _ = out.read(&mut buf);
    }
    Some(child)
}

/// `(fd, inode)` of every socket the target has open.
fn socket_fds(pid: i32) -> Vec<(i32, u64)> {
    let mut out = Vec::new();
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return out;
    };
    for e in dir.flatten() {
        let Some(fd) = e.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        if let Ok(link) = fs::read_link(e.path()) {
            let link = link.to_string_lossy();
            if let Some(ino) = link
                .strip_prefix("socket:[")
                .and_then(|s| s.strip_suffix(']'))
                .and_then(|s| s.parse().ok())
            {
                out.push((fd, ino));
            }
        }
    }
    out
}

fn target_uid(pid: i32) -> Option<u32> {
    status_uid(&pid.to_string())
}

/// The effective uid of `/proc/<who>` (`self` or a pid).
fn status_uid(who: &str) -> Option<u32> {
    let status = fs::read_to_string(format!("/proc/{who}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

// -- stale directories -------------------------------------------------

/// A directory younger than this is never swept: a live pyattach creates
/// its directory and binds the socket in it microseconds apart, and a
/// concurrent sweep must not catch it in between.
const SWEEP_GRACE: Duration = Duration::from_secs(2);

/// Removes what earlier, killed pyattach runs left for this target: a
/// `pyattach-<pid>-<nonce>` directory in the target's temporary directories
/// whose socket nobody listens on any more. A pyattach SIGKILLed after
/// creating it and before its bootstrap ran leaves it, and nothing in the
/// target ever will remove it (the bootstrap removes its own directory
/// whether or not it could connect).
///
/// Liveness is decided without connecting (a live pyattach must never get a
/// stray connection on its listener): a listening unix socket, and the
/// sockets accepted from it, are listed with their bound path in
/// `/proc/net/unix` of the network namespace of the process that bound
/// them, i.e. of the pyattach that made the directory, which bound it as
/// `/proc/<pid>/root/tmp/pyattach-<pid>-<nonce>/s`. So the directory is live
/// if a path ending in `/pyattach-<pid>-<nonce>/s` (the nonce is random:
/// unique to one run) shows in the listing of our own namespace, of the
/// target's, or of any other namespace some process we can see lives in.
/// If our own or the target's listing cannot be read, nothing is removed.
///
/// Only a directory (never a symlink: /tmp is world-writable) with the
/// exact name, owned by us or by the target's user, older than
/// [`SWEEP_GRACE`], holding nothing or just a socket named `s` of the same
/// owners, is removed. Its contents are read and unlinked through an open
/// descriptor of the checked directory (`/proc/self/fd/N/s`), so swapping
/// the name for a symlink meanwhile redirects nothing; `rmdir` by name
/// removes only an empty directory and never follows a symlink.
fn sweep_stale(pid: i32) {
    let prefix = format!("pyattach-{pid}-");
    let mut candidates = Vec::new();
    // Each directory resolved inside the target's root, kept open while
    // its entries are looked at (reached as /proc/self/fd/N).
    let bases: Vec<OwnedFd> = TMP_DIRS
        .into_iter()
        .filter_map(|d| attach::procinfo::open_dir_in_root(pid, d).ok())
        .collect();
    for base_fd in &bases {
        let base = fd_path(base_fd, std::process::id());
        let Ok(dir) = fs::read_dir(&base) else {
            continue;
        };
        for e in dir.flatten() {
            let name = e.file_name();
            let Some(name) = name.to_str() else {
                continue;
            };
            let is_ours = name.strip_prefix(&prefix).is_some_and(|n| {
                n.len() == 16 && n.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            });
            if is_ours {
                candidates.push((base.clone(), name.to_string()));
            }
        }
    }
    if candidates.is_empty() {
        return;
    }
    let owners: Vec<u32> = [status_uid("self"), target_uid(pid)]
        .into_iter()
        .flatten()
        .collect();
    let Some(bound) = bound_unix_paths(pid) else {
        return;
    };
    for (base, name) in candidates {
        let suffix = format!("/{name}/s");
        if bound.iter().any(|p| p.ends_with(&suffix)) {
            continue;
        }
        let _ = remove_stale(&base, &name, &owners);
    }
}

/// Removes `base/name` if it is a stale channel directory (see
/// [`sweep_stale`]); `None` when it is not (or not any more) removable.
fn remove_stale(base: &Path, name: &str, owners: &[u32]) -> Option<()> {
    let path = base.join(name);
    let meta = fs::symlink_metadata(&path).ok()?;
    if !meta.file_type().is_dir() || !owners.contains(&meta.uid()) {
        return None;
    }
    let age = SystemTime::now()
        .duration_since(meta.modified().ok()?)
        .ok()?;
    if age < SWEEP_GRACE {
        return None;
    }
    let dir = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(&path)
        .ok()?;
    let opened = dir.metadata().ok()?;
    if (opened.dev(), opened.ino()) != (meta.dev(), meta.ino()) {
        return None;
    }
    let inside = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    let mut entries = Vec::new();
    for e in fs::read_dir(&inside).ok()? {
        entries.push(e.ok()?.file_name());
    }
    match entries.as_slice() {
        [] => {}
        [s] if s == "s" => {
            let sock = fs::symlink_metadata(inside.join("s")).ok()?;
            if !sock.file_type().is_socket() || !owners.contains(&sock.uid()) {
                return None;
            }
            fs::remove_file(inside.join("s")).ok()?;
        }
        _ => return None,
    }
    drop(dir);
    fs::remove_dir(&path).ok()
}

/// The bound paths of every unix socket listed in `/proc/<p>/net/unix` for
/// ourselves, the target, and one process of every other network namespace
/// we can see. `None` if our own or the target's listing cannot be read.
fn bound_unix_paths(pid: i32) -> Option<Vec<String>> {
    let mut seen = HashSet::new();
    let mut paths = Vec::new();
    let mut read = |who: &str, paths: &mut Vec<String>| -> Option<()> {
        let ns = fs::read_link(format!("/proc/{who}/ns/net")).ok();
        if let Some(ns) = ns.clone() {
            if !seen.insert(ns) {
                return Some(());
            }
        }
        let text = fs::read_to_string(format!("/proc/{who}/net/unix")).ok()?;
        // Num RefCount Protocol Flags Type St Inode [Path]
        paths.extend(
            text.lines()
                .skip(1)
                .filter_map(|l| l.split_whitespace().nth(7))
                .map(str::to_string),
        );
        Some(())
    };
    read("self", &mut paths)?;
    read(&pid.to_string(), &mut paths)?;
    if let Ok(procs) = fs::read_dir("/proc") {
        for e in procs.flatten() {
            let name = e.file_name();
            if let Some(p) = name
                .to_str()
                .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
            {
                // Best effort: a process may have exited, or be another
                // user's (its namespace link unreadable).
                if fs::read_link(format!("/proc/{p}/ns/net")).is_ok() {
                    let _ = read(p, &mut paths);
                }
            }
        }
    }
    Some(paths)
}

fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next())
            .is_some_and(|st| st != "Z" && st != "X"),
        Err(_) => false,
    }
}

fn random_hex(bytes: usize) -> Result<String, RunError> {
    let mut buf = vec![0u8; bytes];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| RunError::io("reading /dev/urandom", e))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}
