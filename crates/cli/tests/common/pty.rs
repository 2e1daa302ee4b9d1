//! A terminal for pyattach: it runs under `script`, which gives it a pty;
//! the test types keys (Tab, Ctrl-C, Ctrl-D included) and reads the screen.
// Each test crate that includes this module uses a part of it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use testsupport::pyattach_bin;

pub struct Pty {
    child: Child,
    stdin: ChildStdin,
    screen: Arc<Mutex<String>>,
    mark: usize,
}

impl Pty {
    pub fn spawn(args: &[&str]) -> Option<Pty> {
        Pty::spawn_with(args, &[])
    }

    /// [`Pty::spawn`] with these variables in pyattach's environment.
    pub fn spawn_with(args: &[&str], envs: &[(&str, &str)]) -> Option<Pty> {
        if !std::path::Path::new("/usr/bin/script").exists() {
            testsupport::note("script(1) from util-linux is missing");
            return None;
        }
        // `exec`: a shell left waiting (dash, when $SHELL is unset) would get
        // the Ctrl-C too and kill itself with SIGINT once pyattach exits.
        let mut line = format!("exec {}", pyattach_bin().display());
        for a in args {
            line.push_str(&format!(" '{}'", a.replace('\'', "'\\''")));
        }
        let mut child = Command::new("script")
            .args(["-qfec", &line, "/dev/null"])
            .env("TERM", "xterm")
            .env("HOME", std::env::temp_dir())
            .envs(envs.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn script");
        let stdin = child.stdin.take().unwrap();
        let mut out = child.stdout.take().unwrap();
        let screen = Arc::new(Mutex::new(String::new()));
        let sink = screen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Some(Pty {
            child,
            stdin,
            screen,
            mark: 0,
        })
    }

    pub fn send(&mut self, keys: &str) {
        self.send_bytes(keys.as_bytes());
    }

    pub fn send_bytes(&mut self, keys: &[u8]) {
        self.stdin.write_all(keys).unwrap();
        self.stdin.flush().unwrap();
    }

    /// Waits until `needle` shows up after the last match; panics with the
    /// screen if it does not within 20 s.
    pub fn expect(&mut self, needle: &str) {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            {
                let s = self.screen.lock().unwrap();
                if let Some(i) = s[self.mark..].find(needle) {
                    self.mark += i + needle.len();
                    return;
                }
            }
            if Instant::now() > end {
                panic!(
                    "{needle:?} not on screen; after mark:\n{}",
                    &self.screen.lock().unwrap()[self.mark..]
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Like [`Pty::expect`], and returns what was shown on the way (from
    /// the last match up to `needle`, included).
    pub fn until(&mut self, needle: &str) -> String {
        let from = self.mark;
        self.expect(needle);
        self.screen.lock().unwrap()[from..self.mark].to_string()
    }

    /// The pid of pyattach itself: `script`'s only child (the command line
    /// `exec`s it).
    pub fn pyattach_pid(&self) -> Option<i32> {
        let me = self.child.id();
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            let kids = std::fs::read_to_string(format!("/proc/{me}/task/{me}/children"))
                .unwrap_or_default();
            if let Some(pid) = kids.split_whitespace().next() {
                return pid.parse().ok();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Everything shown since the last match (for failure messages).
    /// Everything the terminal has shown so far.
    pub fn shown(&self) -> String {
        self.screen.lock().unwrap().clone()
    }

    pub fn rest(&self) -> String {
        self.screen.lock().unwrap()[self.mark..].to_string()
    }

    pub fn wait_exit(&mut self) -> Option<i32> {
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
