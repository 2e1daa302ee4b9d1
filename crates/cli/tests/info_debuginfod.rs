//! The last link of the symbol chain against a real debuginfod server on
//! loopback: Debian's stripped python3.11 with its debug file served by
//! `debuginfod -F`, the build-id directories made unavailable, a private
//! client cache. The server is killed by pid when the test ends.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use testsupport::{debian_python, note, pyattach_bin, Target};

/// Kills and reaps the server (by pid) and removes the scratch directory.
struct Server {
    child: Child,
    dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A static function of CPython: only in the debug file's `.symtab`.
const STATIC_FN: &str = "_pythread_pthread_set_stacksize";

fn find<'a>(j: &'a Value, name: &str) -> &'a Value {
    j["symbols"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn build_id(exe: &Path) -> Option<String> {
    let out = Command::new("readelf").arg("-n").arg(exe).output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: ").map(str::to_string))
}

fn info(pid: i32, url: &str, cache: &Path) -> Output {
    Command::new(pyattach_bin())
        .args(["info", "--json", "--debug-dir", "/nonexistent-debug-dir"])
        .args(["--symbol", STATIC_FN])
        .arg(pid.to_string())
        .env("DEBUGINFOD_URLS", url)
        .env("DEBUGINFOD_CACHE_PATH", cache)
        .env("DEBUGINFOD_TIMEOUT", "20")
        .output()
        .unwrap()
}

fn json(o: &Output) -> Value {
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

/// A debuginfod server on loopback serving the debug file of Debian's
/// python3.11 (and nothing else), once it has indexed it; `None` (with a
/// note saying why) when a prerequisite is missing.
struct Served {
    server: Server,
    url: String,
    cache: PathBuf,
    id: String,
    py: testsupport::Python,
}

fn serve(name: &str) -> Option<Served> {
    if Command::new("debuginfod")
        .arg("--version")
        .output()
        .is_err()
    {
        note("debuginfod is missing (Debian package debuginfod; run scripts/setup)");
        return None;
    }
    let py = debian_python()?;
    let Some(id) = build_id(&py.exe) else {
        note("readelf could not read the build id");
        return None;
    };
    let debug = PathBuf::from(format!(
        "/usr/lib/debug/.build-id/{}/{}.debug",
        &id[..2],
        &id[2..]
    ));
    if !debug.exists() {
        note(&format!("{} is missing (python3.11-dbg)", debug.display()));
        return None;
    }
    let dir = testsupport::build_dir().join(format!("debuginfod-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let served = dir.join("served");
    std::fs::create_dir_all(&served).unwrap();
    std::fs::copy(&debug, served.join("python3.11.debug")).unwrap();
    let cache = dir.join("cache");
    let port = free_port();
    let child = Command::new("debuginfod")
        .args(["-F", "-c", "1", "-p", &port.to_string(), "-d"])
        .arg(dir.join("db.sqlite"))
        .arg(&served)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut server = Server { child, dir };
    let url = format!("http://127.0.0.1:{port}");

    // Wait until the server has indexed the file (debuginfod answers HEAD
    // with 400, so ask with GET and drop the body unread).
    let probe = format!("{url}/buildid/{id}/debuginfo");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        if agent.get(&probe).call().is_ok() {
            break;
        }
        assert!(
            server.child.try_wait().unwrap().is_none(),
            "debuginfod exited"
        );
        assert!(Instant::now() < end, "debuginfod never served {id}");
        std::thread::sleep(Duration::from_millis(100));
    }

    Some(Served {
        server,
        url,
        cache,
        id,
        py,
    })
}

#[test]
fn symbols_come_from_a_real_debuginfod_server() {
    let Some(Served {
        mut server,
        url,
        cache,
        id,
        py,
    }) = serve("info")
    else {
        return;
    };
    let t = Target::python(&py, "sleeper.py", &[]);
    let j = json(&info(t.pid(), &url, &cache));
    let cached = cache.join(&id).join("debuginfo");
    assert_eq!(
        j["debug_sources"],
        serde_json::json!([{"kind": "debuginfod", "path": cached}]),
        "{j:#}"
    );
    assert!(cached.exists(), "the standard client cache holds the file");
    assert!(
        j["debuginfod"][0]
            .as_str()
            .unwrap()
            .contains("fetched from"),
        "{}",
        j["debuginfod"]
    );
    let s = find(&j, STATIC_FN);
    assert_eq!(
        s["source"],
        serde_json::json!({"kind": "debuginfod", "path": cached}),
        "{s}"
    );
    // Exported symbols still come from .dynsym, first in the chain.
    assert_eq!(find(&j, "PyRun_SimpleString")["source"]["kind"], "dyn_sym");

    // Server gone: the cache answers.
    let _ = server.child.kill();
    let _ = server.child.wait();
    let j = json(&info(t.pid(), &url, &cache));
    assert_eq!(j["debug_sources"][0]["kind"], "debuginfod");
    assert!(j["debuginfod"][0].as_str().unwrap().contains("cached"));

    // Server gone and no cache: no debug info, and still a clean report.
    let empty = server.dir.join("empty-cache");
    let j = json(&info(t.pid(), &url, &empty));
    assert_eq!(j["debug_sources"], serde_json::json!([]));
    assert!(
        find(&j, STATIC_FN)["addr"].is_null(),
        "not found without debug info"
    );
    assert!(
        j["debuginfod"][0].as_str().unwrap().contains(&url),
        "{}",
        j["debuginfod"]
    );
}

/// `dump` and `--run` discover the interpreter with the user's options as
/// `info` does (they once ignored `--debug-dir` and `DEBUGINFOD_URLS`):
/// with the local debug directory out of reach, the static functions of a
/// stripped interpreter are named only through the server's file.
#[test]
fn dump_and_run_find_internal_symbols_through_debuginfod() {
    let Some(s) = serve("dump") else {
        return;
    };
    let t = Target::python(&s.py, "sleeper.py", &[]);
    let pid = t.pid().to_string();
    let run = |args: &[&str], with_server: bool| {
        let mut c = Command::new(pyattach_bin());
        c.args(args)
            .args(["--debug-dir", "/nonexistent-debug-dir", &pid])
            .env("DEBUGINFOD_CACHE_PATH", &s.cache)
            .env("DEBUGINFOD_TIMEOUT", "20")
            .stdin(Stdio::null());
        if with_server {
            c.env("DEBUGINFOD_URLS", &s.url);
        } else {
            c.env_remove("DEBUGINFOD_URLS");
        }
        let o = c.output().unwrap();
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(0), "{args:?}: {out}{err}");
        (out, err)
    };
    // time.sleep's C function is static: `time_sleep` (LTO names it
    // `time_sleep.lto_priv.0`), in the debug file's .symtab only.
    let (out, _) = run(&["dump", "--native"], false);
    assert!(
        !out.contains("time_sleep"),
        "the premise: no local debug file reachable\n{out}"
    );
    let (out, _) = run(&["dump", "--native"], true);
    assert!(out.contains("time_sleep"), "{out}");
    let cached = s.cache.join(&s.id).join("debuginfo");
    assert!(cached.exists(), "fetched into the client cache");

    let (out, err) = run(&["--run", "print(6 * 7)", "-v"], true);
    assert_eq!(out.trim(), "42", "{err}");
    assert!(
        err.contains(&format!(
            "debug symbols from debuginfod {}",
            cached.display()
        )),
        "{err}"
    );
    assert!(t.is_alive());
}
