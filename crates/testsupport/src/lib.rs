//! Helpers shared by pyattach's tests: start real target processes, wait until
//! they say they are ready, and always kill them by pid when the test ends.
//!
//! Tests never mock ptrace or CPython; they run the interpreters installed on
//! the machine (see [`pythons`]). A prerequisite that is missing is announced
//! with a `NOTE: skipping …` line on stderr, never passed over silently.
//!
//! ```no_run
//! let py = testsupport::python("3.12").unwrap();
//! let target = testsupport::Target::python(&py, "sleeper.py", &[]);
//! assert!(target.is_alive());
//! // dropped here: killed with SIGKILL by its pid and reaped
//! ```

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a target may take to print its ready line. Generous: only there
/// to turn a hang into a failure with a diagnosis.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/testsupport sits two levels below the root")
        .to_path_buf()
}

/// A file under `tests/fixtures/`.
pub fn fixture(rel: &str) -> PathBuf {
    repo_root().join("tests/fixtures").join(rel)
}

/// Where built fixtures go (inside cargo's target directory, never the tree).
pub fn build_dir() -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
        .join("fixtures");
    std::fs::create_dir_all(&dir).expect("create target/fixtures");
    dir
}

/// How a Python build came to the machine; decides what symbols it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PythonKind {
    /// pyenv build: shared libpython with DWARF and `.symtab`.
    Pyenv,
    /// Debian's `/usr/bin/python3.11`: stripped, `.dynsym` only (its debug
    /// file may come from `python3.11-dbg` or a debuginfod server).
    DebianStripped,
    /// A small C program embedding `libpython3.11` (built by the tests).
    Embedded,
}

/// One interpreter to test against.
#[derive(Clone, Debug)]
pub struct Python {
    /// Readable id for test names and messages, e.g. `py3_12`, `debian3_11`.
    pub id: String,
    /// (major, minor, micro) as the build says.
    pub version: (u32, u32, u32),
    /// The program to run (for [`PythonKind::Embedded`], the C program: it
    /// takes a script path as its only argument).
    pub exe: PathBuf,
    pub kind: PythonKind,
}

/// The pyenv versions the project supports and tests.
pub const PYENV_VERSIONS: &[&str] = &[
    "2.7.18", "3.6.15", "3.7.16", "3.8.18", "3.9.18", "3.10.13", "3.11.7", "3.12.1", "3.13.0",
];

fn pyenv_root() -> PathBuf {
    std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".pyenv")
        })
}

fn parse_version(v: &str) -> (u32, u32, u32) {
    let mut it = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
    )
}

/// The Debian sid root that `scripts/setup` builds for Python 3.14 and 3.15
/// (`PYATTACH_SID_ROOT`, else `/var/cache/pyattach/sid`), if it is there.
pub fn sid_root() -> Option<PathBuf> {
    let root = std::env::var_os("PYATTACH_SID_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/pyattach/sid"));
    (root.join("usr/bin/python3.14").exists() && root.join("usr/bin/python3.15").exists())
        .then_some(root)
}

/// Debian sid's own builds in [`sid_root`] (3.13 while sid has it, 3.14,
/// 3.15; stripped, their debug files installed), for the tests that cover
/// them. Each `exe` is a wrapper that execs `chroot ROOT /usr/bin/pythonX.Y`
/// with its arguments, so a test starts it as any other interpreter and
/// the pid it gets is Python's; the fixtures are mirrored into the root at
/// their own absolute path ([`sid_mirror`]), so the paths tests pass mean
/// the same inside. A missing root or version is announced and left out.
pub fn sid_pythons() -> Vec<Python> {
    let Some(root) = sid_root() else {
        note("the Debian sid root is missing (scripts/setup builds it)");
        return Vec::new();
    };
    let py_dir = fixture("py");
    for e in std::fs::read_dir(&py_dir)
        .expect("tests/fixtures/py")
        .flatten()
    {
        sid_mirror(&root, &e.path());
    }
    let mut out = Vec::new();
    for minor in [13, 14, 15] {
        let inside = format!("/usr/bin/python3.{minor}");
        if !root.join(&inside[1..]).exists() {
            note(&format!("the sid root has no {inside} (scripts/setup)"));
            continue;
        }
        let exe = build_dir().join(format!("sid-python3.{minor}"));
        let script = format!(
            "#!/bin/sh\nexec chroot '{}' {inside} \"$@\"\n",
            root.display()
        );
        write_atomically(&exe, script.as_bytes(), 0o755);
        let out_v = Command::new(&exe)
            .args(["-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"])
            .output()
            .ok();
        let Some(o) = out_v.filter(|o| o.status.success()) else {
            note(&format!("{inside} does not run in the sid root"));
            continue;
        };
        out.push(Python {
            id: format!("sid3_{minor}"),
            version: parse_version(String::from_utf8_lossy(&o.stdout).trim()),
            exe,
            kind: PythonKind::DebianStripped,
        });
    }
    if let Some(p) = sid_embedded(&root, out.iter().find(|p| p.id == "sid3_14")) {
        out.push(p);
    }
    out
}

/// The embedding fixture linked against sid's `libpython3.14` (from
/// `libpython3.14-dev`), built here against the root's headers and copied
/// into it, run by a chroot wrapper like the others.
fn sid_embedded(root: &Path, py314: Option<&Python>) -> Option<Python> {
    let py314 = py314?;
    let lib = root.join("usr/lib/x86_64-linux-gnu/libpython3.14.so");
    if !lib.exists() {
        note("the sid root has no libpython3.14.so (libpython3.14-dev; scripts/setup)");
        return None;
    }
    let include = root.join("usr/include/python3.14");
    let libdir = root.join("usr/lib/x86_64-linux-gnu");
    // The root's own C library headers are not ours: only what our
    // compiler lacks (Python's arch-specific pyconfig.h) comes from there.
    let flags = [
        format!("-I{}", include.display()),
        "-idirafter".to_string(),
        root.join("usr/include").display().to_string(),
        format!("-L{}", libdir.display()),
        "-lpython3.14".to_string(),
        // libpython's own needs are the root's libc's, not ours.
        "-Wl,--allow-shlib-undefined".to_string(),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let built = build_c_as("embed", "embed-sid3.14", &flags)?;
    sid_mirror(root, &built);
    let exe = build_dir().join("sid-embed3.14");
    let script = format!(
        "#!/bin/sh\nexec chroot '{}' '{}' \"$@\"\n",
        root.display(),
        built.display()
    );
    write_atomically(&exe, script.as_bytes(), 0o755);
    Some(Python {
        id: "sid_embed3_14".into(),
        version: py314.version,
        exe,
        kind: PythonKind::Embedded,
    })
}

/// Copies the host file `path` into the sid root at the same absolute
/// path (a fixture, a built shared object), so a chrooted target finds it
/// where a test names it.
pub fn sid_mirror(root: &Path, path: &Path) {
    if !path.is_file() {
        return;
    }
    let dst = root.join(path.strip_prefix("/").unwrap_or(path));
    std::fs::create_dir_all(dst.parent().expect("a file has a parent"))
        .expect("mkdir in the sid root");
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    if std::fs::read(&dst).ok().as_deref() != Some(&data[..]) {
        use std::os::unix::fs::PermissionsExt;
        // A program stays executable.
        let mode = std::fs::metadata(path).map_or(0o644, |m| m.permissions().mode() & 0o755);
        write_atomically(&dst, &data, mode);
    }
}

/// Writes `path` through a temporary name and a rename, so that tests
/// running at the same time never see it half written.
fn write_atomically(path: &Path, data: &[u8], mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = PathBuf::from(format!("{}.tmp{}-{n}", path.display(), std::process::id()));
    std::fs::write(&tmp, data).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).expect("chmod");
    std::fs::rename(&tmp, path).unwrap_or_else(|e| panic!("rename to {}: {e}", path.display()));
}

/// Every interpreter on the machine that the matrix covers: the pyenv builds,
/// Debian's stripped `python3.11`, and the embedding fixture. Missing ones are
/// announced on stderr and left out.
pub fn pythons() -> Vec<Python> {
    let mut out = Vec::new();
    for v in PYENV_VERSIONS {
        if let Some(p) = pyenv_python(v) {
            out.push(p);
        }
    }
    if let Some(p) = debian_python() {
        out.push(p);
    }
    if let Some(p) = embedded_python() {
        out.push(p);
    }
    out
}

fn pyenv_python(v: &str) -> Option<Python> {
    let (maj, min, _) = parse_version(v);
    let prefix = pyenv_root().join("versions").join(v);
    let exe = prefix.join("bin").join(format!("python{maj}.{min}"));
    if !exe.exists() {
        note(&format!("pyenv {v} is not installed ({})", exe.display()));
        return None;
    }
    Some(Python {
        id: format!("py{maj}_{min}"),
        version: parse_version(v),
        exe,
        kind: PythonKind::Pyenv,
    })
}

/// Debian's stripped `/usr/bin/python3.11`.
pub fn debian_python() -> Option<Python> {
    let exe = PathBuf::from("/usr/bin/python3.11");
    if !exe.exists() {
        note("/usr/bin/python3.11 is missing (run scripts/setup)");
        return None;
    }
    let out = Command::new(&exe)
        .args(["-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"])
        .output()
        .ok()?;
    Some(Python {
        id: "debian3_11".into(),
        version: parse_version(String::from_utf8_lossy(&out.stdout).trim()),
        exe,
        kind: PythonKind::DebianStripped,
    })
}

/// The C program that embeds `libpython3.11`, built on first use.
pub fn embedded_python() -> Option<Python> {
    let cfg = Command::new("/usr/bin/python3.11-config")
        .args(["--cflags", "--ldflags", "--embed"])
        .output();
    let flags = match cfg {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        _ => {
            note("/usr/bin/python3.11-config is missing (libpython3.11-dev; run scripts/setup)");
            return None;
        }
    };
    let flags: Vec<&str> = flags.split_whitespace().collect();
    let exe = build_c("embed", &flags)?;
    let version = debian_python().map(|p| p.version).unwrap_or((3, 11, 0));
    Some(Python {
        id: "embed3_11".into(),
        version,
        exe,
        kind: PythonKind::Embedded,
    })
}

/// The first interpreter whose version starts with `prefix` ("3.12", "2.7",
/// "debian3_11" and "embed3_11" also match by id).
pub fn python(prefix: &str) -> Option<Python> {
    pythons().into_iter().find(|p| {
        p.id == prefix || {
            let v = format!("{}.{}.{}", p.version.0, p.version.1, p.version.2);
            p.kind == PythonKind::Pyenv && (v == prefix || v.starts_with(&format!("{prefix}.")))
        }
    })
}

/// xorshift64*: deterministic, so a failure is reproducible from its seed
/// (for tests that corrupt files).
pub struct Rng(pub u64);

impl Rng {
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Whether this test runs as root (effective uid 0): chroot, other users.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// Prints the standard skip note for a missing prerequisite.
pub fn note(why: &str) {
    eprintln!("NOTE: skipping because {why}");
}

/// Compiles `tests/fixtures/c/NAME.c` into the build directory (once per
/// change of the source) and returns the program's path. `extra` are further
/// compiler arguments (libraries, flags). Returns `None`, with a note, if gcc
/// is missing; panics if the fixture does not build.
pub fn build_c(name: &str, extra: &[&str]) -> Option<PathBuf> {
    build_c_as(name, name, extra)
}

/// [`build_c`] into the program `out_name` (one source, several builds).
pub fn build_c_as(name: &str, out_name: &str, extra: &[&str]) -> Option<PathBuf> {
    // One build at a time in this test process: two threads building the
    // same fixture would otherwise let one exec the program while the other's
    // linker still holds it open for writing (ETXTBSY).
    static BUILD: Mutex<()> = Mutex::new(());
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let src = fixture(&format!("c/{name}.c"));
    let out = build_dir().join(out_name);
    let fresh = match (std::fs::metadata(&src), std::fs::metadata(&out)) {
        (Ok(s), Ok(o)) => o.modified().ok() >= s.modified().ok(),
        _ => false,
    };
    if fresh {
        return Some(out);
    }
    // Build under a name unique to this process and rename, so test
    // processes building the same fixture at once never see a half-written
    // program.
    let tmp = build_dir().join(format!(".{out_name}.{}", std::process::id()));
    let built = Command::new("gcc")
        .args(["-O1", "-g", "-pthread", "-o"])
        .arg(&tmp)
        .arg(&src)
        .args(extra)
        .output();
    match built {
        Ok(o) if o.status.success() => {
            std::fs::rename(&tmp, &out).ok()?;
            Some(out)
        }
        // A fixture of ours that does not compile is a broken test, not a
        // machine without gcc: fail, never skip.
        Ok(o) => panic!(
            "gcc could not build {}:\n{}",
            src.display(),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(_) => {
            note(&format!("no gcc to build {}", src.display()));
            None
        }
    }
}

/// A running target process. Killed with SIGKILL (by its pid, never by name)
/// and reaped when dropped. Its stdout is drained in the background into
/// [`Target::output`], so a chatty target never blocks on a full pipe.
pub struct Target {
    child: Child,
    /// The line the target printed to say it is ready (e.g. `READY 1234`).
    pub ready_line: String,
    output: Arc<Mutex<String>>,
}

/// `cmd.spawn()`, again for a while on ETXTBSY: a program a test has just
/// written may still be open for writing in a child that another test
/// thread forked in that moment (the descriptor goes at its exec), as Go's
/// os/exec knows too.
pub fn spawn_retrying(cmd: &mut Command) -> std::io::Result<Child> {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(10));
            }
            r => return r,
        }
    }
}

impl Target {
    /// Starts `cmd` with stdout piped and waits until it prints a line that
    /// starts with `READY`. Panics (after dumping the target's state) if the
    /// line does not come within [`READY_TIMEOUT`].
    pub fn spawn(mut cmd: Command) -> Target {
        cmd.stdout(Stdio::piped()).stdin(Stdio::null());
        let mut child = spawn_retrying(&mut cmd).unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let output = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = output.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let mut sent = false;
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if !sent && line.starts_with("READY") {
                            sent = true;
                            let _ = tx.send(line.trim_end().to_string());
                        } else {
                            sink.lock().unwrap().push_str(&line);
                        }
                    }
                }
            }
            let mut rest = String::new();
            let _ = reader.read_to_string(&mut rest);
            sink.lock().unwrap().push_str(&rest);
        });
        let ready_line = match rx.recv_timeout(READY_TIMEOUT) {
            Ok(l) => l,
            Err(_) => {
                let pid = child.id();
                let diag = describe(pid);
                let _ = child.kill();
                let _ = child.wait();
                panic!("target {cmd:?} (pid {pid}) did not print READY within {READY_TIMEOUT:?}\n{diag}");
            }
        };
        Target {
            child,
            ready_line,
            output,
        }
    }

    /// tests/fixtures/py/run_states.py in `state` (sleep, cpu, read, ...,
    /// gilspin, gilspin3) under `py`. The state also goes in the
    /// environment, since the embedding fixture passes no arguments on;
    /// the gilspin states get their shared object built (`None`, with a
    /// note, if it cannot be).
    pub fn run_state(py: &Python, state: &str) -> Option<Target> {
        let mut cmd = Command::new(&py.exe);
        if py.kind != PythonKind::Embedded {
            cmd.arg("-u");
        }
        cmd.arg(fixture("py/run_states.py"))
            .arg(state)
            .env("PYATTACH_STATE", state)
            .env("PYTHONDONTWRITEBYTECODE", "1");
        if state.starts_with("gilspin") || state == "nogilspin" {
            cmd.env(
                "PYATTACH_SO",
                build_c("run_gilspin", &["-shared", "-fPIC"])?,
            );
        }
        Some(Target::spawn(cmd))
    }

    /// Runs `fixture(py/SCRIPT)` under `py` with `args`.
    pub fn python(py: &Python, script: &str, args: &[&str]) -> Target {
        let mut cmd = Command::new(&py.exe);
        if py.kind != PythonKind::Embedded {
            cmd.arg("-u");
        }
        cmd.arg(fixture(&format!("py/{script}"))).args(args);
        cmd.env("PYTHONDONTWRITEBYTECODE", "1");
        Target::spawn(cmd)
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// What the target wrote to stdout after its ready line, so far.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Waits until the target's stdout contains `needle`, up to `timeout`.
    pub fn wait_for_output(&self, needle: &str, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.output().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// For the fixtures that print `TICK n` as they work (run_states.py):
    /// waits until `more` further ticks come, up to 10 s. The proof that a
    /// target still runs its own code after pyattach was there.
    pub fn ticks_on(&self, more: usize) -> bool {
        let n = self.output().matches("TICK").count();
        self.wait_for_output(&format!("TICK {}\n", n + more), Duration::from_secs(10))
    }

    /// Like [`Target::ticks_on`], counting `TICK` lines rather than reading
    /// their numbers (several threads of a state may tick), up to `timeout`.
    pub fn ticks_counted(&self, more: usize, timeout: Duration) -> bool {
        let ticks = || self.output().matches("TICK").count();
        let want = ticks() + more;
        let end = Instant::now() + timeout;
        while ticks() < want {
            if Instant::now() > end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// True while the process exists and is not a zombie.
    pub fn is_alive(&self) -> bool {
        match std::fs::read_to_string(format!("/proc/{}/stat", self.pid())) {
            Ok(s) => {
                s.rsplit(')')
                    .next()
                    .and_then(|r| r.split_whitespace().next())
                    != Some("Z")
            }
            Err(_) => false,
        }
    }

    /// The state letter of every thread (`R`, `S`, `t` for traced-stopped…).
    pub fn thread_states(&self) -> Vec<(i32, char)> {
        thread_states(self.pid())
    }

    /// The underlying child, e.g. to wait for a chosen exit.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        // SIGKILL by pid; `Child::kill` does exactly that and never by name.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `setpriv` command that runs what is appended as uid/gid 65534
/// (nobody) with no capabilities at all, or `None` with a note why it
/// cannot (switching users needs root; setpriv comes with util-linux).
pub fn as_nobody() -> Option<Command> {
    if !is_root() {
        note("skipping: switching to another user needs root");
        return None;
    }
    if Command::new("setpriv").arg("--version").output().is_err() {
        note("skipping: setpriv (util-linux) is missing");
        return None;
    }
    let mut c = Command::new("setpriv");
    c.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--",
    ]);
    Some(c)
}

/// A child the test started (a tracer, a pyattach it kills on purpose),
/// killed with SIGKILL by its pid and reaped when dropped, however the
/// test ends.
pub struct KillChild(pub Child);

impl Drop for KillChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A process the test started indirectly (a server's worker, a target's
/// fork), killed with SIGKILL by its pid when dropped: the [`Target`] is its
/// parent, whose death it may notice late or never.
pub struct KillPid(pub i32);

impl Drop for KillPid {
    fn drop(&mut self) {
        // kill(1) by pid (no `unsafe` outside the attach crate); never 0
        // or a negative process group.
        if self.0 > 0 {
            let _ = Command::new("kill")
                .args(["-KILL", &self.0.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// `(tid, state)` for each thread of `pid`, read from `/proc`.
pub fn thread_states(pid: i32) -> Vec<(i32, char)> {
    let mut out = Vec::new();
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for e in dir.flatten() {
            let Ok(tid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")) {
                if let Some(c) = s
                    .rsplit(')')
                    .next()
                    .and_then(|r| r.trim_start().chars().next())
                {
                    out.push((tid, c));
                }
            }
        }
    }
    out
}

/// What a hung test prints about its target before killing it.
pub fn describe(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let stack = std::fs::read_to_string(format!("/proc/{pid}/stack")).unwrap_or_default();
    format!("--- /proc/{pid}/status\n{status}--- /proc/{pid}/stack\n{stack}")
}

/// Runs the `pyattach` binary with `args`, `stdin` fed to it from a thread
/// of its own (pyattach may read it only as the target asks for lines),
/// and returns its output (drained as it comes: a long stack listing must
/// not fill a pipe and stall pyattach). Panics, after killing it by its
/// pid, if it runs past `limit`: a generous hang guard, never a timing
/// assert.
pub fn pyattach_output(args: &[&str], stdin: &[u8], limit: Duration) -> std::process::Output {
    let mut cmd = Command::new(pyattach_bin());
    cmd.args(args);
    guarded_output(cmd, stdin, limit, false)
}

/// [`pyattach_output`] under `/usr/bin/time`, with pyattach's peak
/// resident memory in KiB; `None` (with a note) if `/usr/bin/time` is
/// missing. `wrapper` (e.g. `setpriv --reuid=…`) must exec pyattach in
/// its own process.
pub fn pyattach_output_peak(
    wrapper: &[&str],
    args: &[&str],
    limit: Duration,
) -> Option<(std::process::Output, u64)> {
    if !Path::new("/usr/bin/time").exists() {
        note("/usr/bin/time is missing (GNU time; apt-get install time)");
        return None;
    }
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let file = build_dir().join(format!("peak-{}-{n}", std::process::id()));
    let mut cmd = Command::new("/usr/bin/time");
    cmd.args(["-f", "%M", "-o"])
        .arg(&file)
        .args(wrapper)
        .arg(pyattach_bin())
        .args(args);
    let out = guarded_output(cmd, b"", limit, true);
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    let _ = std::fs::remove_file(&file);
    // time(1) writes "Command exited with non-zero status N" first then.
    let kb = text
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak memory from /usr/bin/time: {text:?}"));
    Some((out, kb))
}

/// Runs `cmd`, `stdin` fed from a thread, and kills it if it runs past
/// `limit`; with `own_group` it runs in a process group of its own and the
/// whole group (what it started and nothing else) is killed: a wrapper's
/// child too.
fn guarded_output(
    mut cmd: Command,
    stdin: &[u8],
    limit: Duration,
    own_group: bool,
) -> std::process::Output {
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    if own_group {
        cmd.process_group(0);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut si = child.stdin.take().expect("piped stdin");
    let data = stdin.to_vec();
    std::thread::spawn(move || {
        let _ = si.write_all(&data);
    });
    // Read while it runs: output larger than a pipe holds must not stall it.
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut v);
            }
            v
        })
    };
    let so = drain(
        child
            .stdout
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let se = drain(
        child
            .stderr
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let end = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for pyattach") {
            break status;
        }
        if Instant::now() > end {
            if own_group {
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", child.id())])
                    .status();
            }
            let _ = child.kill();
            let _ = child.wait();
            let err = se.join().unwrap_or_default();
            panic!("{cmd:?} hung: {}", String::from_utf8_lossy(&err));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    std::process::Output {
        status,
        stdout: so.join().expect("stdout reader"),
        stderr: se.join().expect("stderr reader"),
    }
}

/// The `pyattach` binary built for this test run: the one beside the
/// running test executable (`target/<profile>/deps/..` → `target/<profile>`),
/// so a `--release` test run never picks up a stale debug build.
pub fn pyattach_bin() -> PathBuf {
    let here = std::env::current_exe().expect("test executable path");
    let profile_dir = here
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable in target/<profile>/deps");
    let p = profile_dir.join("pyattach");
    if p.exists() {
        return p;
    }
    panic!(
        "pyattach binary not built in {} (cargo build -p pyattach)",
        profile_dir.display()
    )
}

/// Anonymous read-execute mappings of `pid` (pyattach's code pages are
/// such: a test compares the count before and after).
pub fn exec_anon(pid: i32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() == 5 && f[1] == "r-xp" && f[4] == "0"
        })
        .count()
}
