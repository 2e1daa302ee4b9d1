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

use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

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
        /// The directory as pyattach sees it (under /proc/PID/root).
        host_dir: PathBuf,
        /// The socket's path as the target sees it.
        target_path: String,
    },
}

impl Rendezvous {
    /// Prepares a channel to `pid` before anything is injected.
    pub fn prepare(pid: i32, kind: ChannelKind) -> Result<Rendezvous, RunError> {
        let nonce = random_hex(8)?;
        let token = random_hex(16)?;
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
        }
    }

    /// Waits until the bootstrap's channel shows up, then acks it. Fails
    /// when `deadline` passes or the target exits first.
    pub fn wait(&mut self, deadline: Instant) -> Result<Channel, RunError> {
        let start = Instant::now();
        let mut pause = Duration::from_micros(100);
        loop {
            if let Some(stream) = self.poll()? {
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
        if let How::Unix { host_dir, .. } = &self.how {
            let _ = fs::remove_file(host_dir.join("s"));
            let _ = fs::remove_dir(host_dir);
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

fn unix(pid: i32, nonce: &str) -> Result<How, RunError> {
    let root = PathBuf::from(format!("/proc/{pid}/root"));
    let base = ["tmp", "dev/shm", "var/tmp"]
        .into_iter()
        .find(|d| root.join(d).is_dir())
        .ok_or_else(|| {
            RunError::io(
                "no /tmp in the target's filesystem",
                std::io::Error::from(std::io::ErrorKind::NotFound),
            )
        })?;
    let name = format!("pyattach-{pid}-{nonce}");
    let host_dir = root.join(base).join(&name);
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
        target_path,
    })
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
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
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
