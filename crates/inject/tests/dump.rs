//! `inject::dump` against real targets on every interpreter of the matrix:
//! the stacks read from memory equal what the target reports of itself
//! (`sys._current_frames()` and `traceback`, printed as `EXPECT` lines by
//! tests/fixtures/py/dump_target.py before it says READY).

use inject::dump::{dump, DumpOptions, StackDump, ThreadStack};
use serde_json::Value;
use testsupport::{pythons, Python, PythonKind, Target};

/// One thread as the target sees itself.
#[derive(Debug)]
struct Expect {
    ident: u64,
    name: String,
    /// (filename, line, function), innermost first.
    frames: Vec<(String, u32, String)>,
}

fn expectations(t: &Target) -> Vec<Expect> {
    t.output()
        .lines()
        .filter_map(|l| l.strip_prefix("EXPECT "))
        .map(|j| {
            let v: Value = serde_json::from_str(j).expect("EXPECT json");
            Expect {
                ident: v["ident"].as_u64().unwrap(),
                name: v["name"].as_str().unwrap().to_string(),
                frames: v["frames"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| {
                        (
                            f[0].as_str().unwrap().to_string(),
                            f[1].as_u64().unwrap() as u32,
                            f[2].as_str().unwrap().to_string(),
                        )
                    })
                    .collect(),
            }
        })
        .collect()
}

fn frames_of(t: &ThreadStack) -> Vec<(String, u32, String)> {
    t.frames
        .iter()
        .map(|f| {
            (
                f.filename.clone().unwrap_or_default(),
                f.line.unwrap_or(0),
                f.function.clone(),
            )
        })
        .collect()
}

fn opts() -> DumpOptions {
    DumpOptions::default()
}

fn tids(pid: i32) -> Vec<i32> {
    testsupport::thread_states(pid)
        .into_iter()
        .map(|(t, _)| t)
        .collect()
}

/// A dump taken once every thread is where the target said it would be:
/// the main thread prints READY from `ready()` and parks a few bytecodes
/// later, and a fast dump on a loaded machine can land in between. Gives
/// up after 10 s and returns the last dump (for `check` to report).
fn dump_parked(py: &Python, t: &Target, o: &DumpOptions) -> StackDump {
    let want = expectations(t);
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let d = dump(t.pid(), o).unwrap_or_else(|e| panic!("{}: {e}", py.id));
        let parked = want.iter().all(|e| {
            d.threads
                .iter()
                .any(|th| th.thread_id == e.ident && frames_of(th) == e.frames)
        });
        if parked || std::time::Instant::now() > end {
            return d;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Checks every expected thread against the dump; returns the dump.
fn check(py: &Python, t: &Target, d: &StackDump) {
    let want = expectations(t);
    assert!(
        !want.is_empty(),
        "{}: the target printed no EXPECT lines",
        py.id
    );
    let live = tids(t.pid());
    for e in &want {
        let got = d
            .threads
            .iter()
            .find(|th| th.thread_id == e.ident)
            .unwrap_or_else(|| panic!("{}: no thread {} ({}) in {d:#?}", py.id, e.ident, e.name));
        assert_eq!(
            frames_of(got),
            e.frames,
            "{}: stack of thread {}",
            py.id,
            e.name
        );
        let tid = got
            .native_id
            .unwrap_or_else(|| panic!("{}: no tid for {}", py.id, e.name));
        assert!(
            live.contains(&tid),
            "{}: tid {tid} of {} is not a thread",
            py.id,
            e.name
        );
        assert_eq!(
            got.is_main,
            e.name == "MainThread",
            "{}: is_main of {}",
            py.id,
            e.name
        );
        assert!(got.truncated.is_none(), "{}: {:?}", py.id, got.truncated);
    }
    assert_eq!(
        d.threads.len(),
        want.len(),
        "{}: threads in the dump vs in the target",
        py.id
    );
    assert!(d.warnings.is_empty(), "{}: {:?}", py.id, d.warnings);
    released(py, t, d);
}

/// After a frozen dump, the target runs on: alive, no thread left stopped.
fn released(py: &Python, t: &Target, d: &StackDump) {
    assert!(t.is_alive(), "{}: the target died", py.id);
    if d.frozen {
        assert!(d.pause_us.is_some(), "{}: pause reported", py.id);
        let stopped: Vec<_> = t
            .thread_states()
            .into_iter()
            .filter(|(_, s)| matches!(s, 't' | 'T'))
            .collect();
        assert!(
            stopped.is_empty(),
            "{}: threads left stopped: {stopped:?}",
            py.id
        );
    }
}

/// Runs `f` for each interpreter of the matrix, and Debian sid's, run
/// chrooted (testsupport::sid_pythons).
fn each_python(f: impl Fn(&Python)) {
    let mut all = pythons();
    all.extend(testsupport::sid_pythons());
    assert!(!all.is_empty(), "no interpreter at all on this machine");
    for py in &all {
        f(py);
    }
}

#[test]
fn mixed_states_match_what_the_target_reports() {
    each_python(|py| {
        let t = Target::python(py, "dump_target.py", &["mixed"]);
        let d = dump_parked(py, &t, &opts());
        check(py, &t, &d);
        // 3.13 describes its own structs; older versions use the tables.
        let own = py.version >= (3, 13, 0);
        assert_eq!(
            d.offsets == symbols::offsets::OffsetsSource::DebugOffsets,
            own,
            "{}: {:?}",
            py.id,
            d.offsets
        );
        assert!(
            !d.threads.iter().any(|t| t.holds_gil),
            "{}: all threads sleep",
            py.id
        );
        let reader = d
            .threads
            .iter()
            .find(|th| th.frames.first().is_some_and(|f| f.function == "reader"));
        assert_eq!(
            reader.and_then(|r| r.state.syscall.as_deref()),
            Some("read"),
            "{}: the reader is blocked in read()",
            py.id
        );
        if py.version.0 == 3 {
            // Non-ASCII function names decode (UCS-2 kind in CPython).
            assert!(
                d.threads
                    .iter()
                    .any(|th| th.frames.iter().any(|f| f.function == "naïve_λ")),
                "{}: non-ASCII name",
                py.id
            );
        }
    });
}

#[test]
fn two_hundred_threads() {
    each_python(|py| {
        let t = Target::python(py, "dump_target.py", &["threads", "200"]);
        let d = dump_parked(py, &t, &opts());
        check(py, &t, &d);
        assert_eq!(d.threads.len(), 201);
    });
}

#[test]
fn recursion_of_a_thousand_frames() {
    each_python(|py| {
        let t = Target::python(py, "dump_target.py", &["recurse", "1000"]);
        let d = dump_parked(py, &t, &opts());
        check(py, &t, &d);
        let main = d.threads.iter().find(|t| t.is_main).unwrap();
        assert_eq!(
            main.frames
                .iter()
                .filter(|f| f.function == "recurse")
                .count(),
            1000,
            "{}",
            py.id
        );
    });
}

#[test]
fn max_depth_cuts_and_says_so() {
    let Some(py) = testsupport::python("3.12") else {
        return testsupport::note("pyenv 3.12 is missing");
    };
    let t = Target::python(&py, "dump_target.py", &["recurse", "50"]);
    let o = DumpOptions {
        max_depth: 10,
        ..opts()
    };
    let d = dump(t.pid(), &o).unwrap();
    let main = d.threads.iter().find(|t| t.is_main).unwrap();
    assert_eq!(main.frames.len(), 10);
    assert!(main.truncated.as_deref().unwrap().contains("maximum depth"));
}

/// A dump taken once the GIL holder of the `gil` fixture holds it (it takes
/// it just after READY; a loaded machine may take a while).
fn dump_when_held(py: &Python, t: &Target, o: &DumpOptions) -> StackDump {
    let want = expectations(t);
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let d = dump(t.pid(), o).unwrap_or_else(|e| panic!("{}: {e}", py.id));
        // Holding it where the target said it would (a fast dump can land
        // between taking the GIL and reaching the reported line); native
        // frames, when asked for, are not in the target's report.
        let held = d.threads.iter().any(|t| {
            let python: Vec<_> = frames_of(t)
                .into_iter()
                .zip(&t.frames)
                .filter(|(_, f)| f.kind == inject::dump::FrameKind::Python)
                .map(|(p, _)| p)
                .collect();
            t.holds_gil
                && t.frames.iter().any(|f| f.function == "hold_gil")
                && want
                    .iter()
                    .any(|e| e.ident == t.thread_id && python == e.frames)
        });
        if held || std::time::Instant::now() > end {
            return d;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn gil_held_in_native_code() {
    each_python(|py| {
        let t = Target::python(py, "dump_target.py", &["gil"]);
        let want = expectations(&t);
        // The holder takes the GIL right after READY; the main thread wakes
        // every 10 ms and then waits for it.
        let d = dump_when_held(py, &t, &opts());
        let holder: Vec<&ThreadStack> = d.threads.iter().filter(|t| t.holds_gil).collect();
        assert_eq!(holder.len(), 1, "{}: one GIL holder in {d:#?}", py.id);
        assert_eq!(holder[0].thread_id, want[0].ident, "{}: the holder", py.id);
        assert_eq!(frames_of(holder[0]), want[0].frames, "{}", py.id);
        assert_eq!(d.gil_locked, Some(true), "{}", py.id);
        let main = d.threads.iter().find(|t| t.is_main).unwrap();
        assert_eq!(main.frames[0].function, "main_wait_for_gil", "{}", py.id);
        if py.kind == PythonKind::Pyenv {
            // Seen through return addresses into the GIL-taking functions,
            // which need .symtab (pyenv) for their size. The waiter wakes
            // every 5 ms to ask for the GIL (3.x), so a snapshot may catch
            // it between two waits: try a few.
            let seen = (0..20).any(|_| {
                let d = dump(t.pid(), &opts()).unwrap();
                d.threads
                    .iter()
                    .any(|t| t.is_main && t.state.waiting_for_gil)
            });
            assert!(seen, "{}: main waits for the GIL: {main:#?}", py.id);
        }
        assert!(!holder[0].state.waiting_for_gil);
    });
}

/// CPU time of the process so far, in clock ticks (utime + stime).
fn cpu_ticks(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = s.rsplit(')').next().unwrap().split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn cpu_bound_thread_frozen_dumps_are_consistent_and_the_target_runs_on() {
    each_python(|py| {
        let t = Target::python(py, "dump_target.py", &["cpu"]);
        for _ in 0..10 {
            let d = dump(t.pid(), &opts()).unwrap_or_else(|e| panic!("{}: {e}", py.id));
            assert!(d.frozen, "{}", py.id);
            let spinner = d.threads.iter().find(|th| !th.is_main).unwrap();
            // Frozen: the chain is whole, innermost is spin() on a line of
            // its loop.
            assert!(
                spinner.truncated.is_none(),
                "{}: {:?}",
                py.id,
                spinner.truncated
            );
            assert_eq!(spinner.frames[0].function, "spin", "{}", py.id);
            let first = spinner.frames[0].first_line.unwrap();
            let line = spinner.frames[0].line.unwrap();
            assert!(
                line > first && line <= first + 5,
                "{}: line {line} in spin()",
                py.id
            );
            assert!(spinner.frames.len() >= 3, "{}", py.id);
            released(py, &t, &d);
        }
        // The spinner keeps spinning after the dumps.
        let before = cpu_ticks(t.pid());
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(
            cpu_ticks(t.pid()) > before,
            "{}: the target stopped running",
            py.id
        );
    });
}

#[test]
fn cpu_bound_thread_under_repeated_nonblocking_dumps() {
    each_python(|py| {
        let t = Target::python(py, "dump_target.py", &["cpu"]);
        let o = DumpOptions {
            freeze: false,
            ..opts()
        };
        for _ in 0..20 {
            let d = dump(t.pid(), &o).unwrap_or_else(|e| panic!("{}: {e}", py.id));
            let spinner = d
                .threads
                .iter()
                .find(|th| !th.is_main)
                .unwrap_or_else(|| panic!("{}: no spinner in {d:#?}", py.id));
            // A torn read may cut the chain, but what is there is right.
            if let Some(f) = spinner.frames.first() {
                if spinner.truncated.is_none() {
                    assert_eq!(f.function, "spin", "{}", py.id);
                }
            }
        }
        assert!(t.is_alive());
    });
}

#[test]
fn locals_have_the_reprs_python_gives() {
    each_python(|py| {
        let t = Target::python(py, "dump_target.py", &["locals"]);
        let want: std::collections::BTreeMap<String, String> = t
            .output()
            .lines()
            .find_map(|l| l.strip_prefix("LOCALS "))
            .map(|j| serde_json::from_str(j).unwrap())
            .expect("LOCALS line");
        let o = DumpOptions {
            locals: true,
            ..opts()
        };
        let d = dump_parked(py, &t, &o);
        check(py, &t, &d);
        let main = d.threads.iter().find(|t| t.is_main).unwrap();
        let locals = main.frames[0]
            .locals
            .as_ref()
            .unwrap_or_else(|| panic!("{}: no locals", py.id));
        let get = |n: &str| {
            locals
                .iter()
                .find(|l| l.name == n)
                .unwrap_or_else(|| panic!("{}: no local {n} in {locals:?}", py.id))
        };
        // Every local equals the target's own repr(), or, cut, its start.
        for (name, repr) in &want {
            let got = get(name).repr.clone().unwrap_or_default();
            match got.strip_suffix('…') {
                Some(start) => assert!(
                    got.chars().count() == 80
                        && repr.chars().count() > 80
                        && repr.starts_with(start),
                    "{}: {name} is {got:?}, repr() says {repr:?}",
                    py.id
                ),
                None => assert_eq!(&got, repr, "{}: {name}", py.id),
            }
        }
        // Long values are cut, not left out.
        for n in ["long_text", "many"] {
            assert!(
                get(n).repr.as_ref().unwrap().ends_with('…'),
                "{}: {n}",
                py.id
            );
        }
        assert_eq!(get("d").type_name.as_deref(), Some("dict"));
        assert!(
            get("an_arg").is_arg && get("other").is_arg && !get("i").is_arg,
            "{}",
            py.id
        );
        // Frames further out have their locals too (main's `mode`).
        let outer = &main.frames[1];
        assert!(
            outer
                .locals
                .as_ref()
                .unwrap()
                .iter()
                .any(|l| l.name == "mode"),
            "{}",
            py.id
        );
    });
}

#[test]
fn native_frames_show_where_the_gil_holder_blocks() {
    each_python(|py| {
        let t = Target::python(py, "dump_target.py", &["gil"]);
        let want = expectations(&t);
        let o = DumpOptions {
            native: true,
            ..opts()
        };
        // The main thread may still be in its last `time.sleep(0.01)` when
        // the holder takes the GIL: wait until it waits for the GIL.
        let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let d = loop {
            let d = dump_when_held(py, &t, &o);
            let main = d.threads.iter().find(|t| t.is_main).unwrap();
            let waiting = main
                .frames
                .iter()
                .any(|f| f.function == "take_gil" || f.function == "PyEval_RestoreThread");
            if waiting || py.kind != PythonKind::Pyenv || std::time::Instant::now() > end {
                break d;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let holder = d.threads.iter().find(|t| t.holds_gil).unwrap();
        // The Python frames are all there, in order, among the native ones.
        let python: Vec<_> = holder
            .frames
            .iter()
            .filter(|f| f.kind == inject::dump::FrameKind::Python)
            .map(|f| {
                (
                    f.filename.clone().unwrap(),
                    f.line.unwrap(),
                    f.function.clone(),
                )
            })
            .collect();
        assert_eq!(python, want[0].frames, "{}", py.id);
        // libc's sleep() is below (inner to) the Python caller.
        let pos = |name: &str| holder.frames.iter().position(|f| f.function == name);
        let sleep = pos("sleep").unwrap_or_else(|| panic!("{}: no sleep() in {holder:#?}", py.id));
        assert!(sleep < pos("hold_gil").unwrap(), "{}", py.id);
        assert_eq!(holder.frames[sleep].kind, inject::dump::FrameKind::Native);
        assert!(holder.frames[sleep]
            .module
            .as_deref()
            .unwrap()
            .starts_with("libc"));
        if py.kind == PythonKind::Pyenv {
            // The waiter's native stack goes through the GIL-taking code,
            // and the Python frames sit where the evaluation loop was.
            let main = d.threads.iter().find(|t| t.is_main).unwrap();
            let names: Vec<&str> = main.frames.iter().map(|f| f.function.as_str()).collect();
            let restore = names
                .iter()
                .position(|n| *n == "take_gil" || *n == "PyEval_RestoreThread");
            let py_frame = names.iter().position(|n| *n == "main_wait_for_gil");
            assert!(
                restore.is_some() && restore < py_frame,
                "{}: {names:?}",
                py.id
            );
            assert!(
                !names
                    .iter()
                    .any(|n| n.starts_with("_PyEval_EvalFrameDefault")),
                "{}: {names:?}",
                py.id
            );
        }
        released(py, &t, &d);
    });
}

/// Real memory of a target, with reads corrupted on purpose.
struct Corrupt {
    mem: attach::ProcessMemory,
    seed: std::cell::Cell<u64>,
    /// Corrupt one read in `every`.
    every: u64,
}

impl Corrupt {
    fn next(&self) -> u64 {
        // xorshift64*: deterministic, no dependency.
        let mut x = self.seed.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.seed.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

impl inject::dump::Memory for Corrupt {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), String> {
        self.mem.read(addr, buf).map_err(|e| e.to_string())?;
        if self.next() % self.every == 0 && !buf.is_empty() {
            match self.next() % 4 {
                // A pointer-sized word replaced by something random.
                0 if buf.len() >= 8 => {
                    let at = (self.next() as usize % (buf.len() / 8)) * 8;
                    buf[at..at + 8].copy_from_slice(&self.next().to_le_bytes());
                }
                // A pointer pointing back at the block (a cycle).
                1 if buf.len() >= 8 => {
                    let at = (self.next() as usize % (buf.len() / 8)) * 8;
                    buf[at..at + 8].copy_from_slice(&addr.to_le_bytes());
                }
                // A truncated read.
                2 => return Err("injected short read".into()),
                _ => buf.iter_mut().for_each(|b| *b = self.next() as u8),
            }
        }
        Ok(())
    }
}

#[test]
fn garbage_in_memory_never_crashes_or_hangs() {
    for v in ["2.7", "3.10", "3.12", "3.13"] {
        let Some(py) = testsupport::python(v) else {
            testsupport::note(&format!("pyenv {v} is missing"));
            continue;
        };
        let t = Target::python(&py, "dump_target.py", &["mixed"]);
        let interp = symbols::discover(t.pid(), &symbols::DiscoverOptions::default()).unwrap();
        let o = DumpOptions {
            freeze: false,
            locals: true,
            ..opts()
        };
        let start = std::time::Instant::now();
        let mut hurt = 0;
        for seed in 1..200u64 {
            let mem = Corrupt {
                mem: attach::ProcessMemory::open(t.pid()).unwrap(),
                seed: std::cell::Cell::new(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                every: 1 + seed % 7,
            };
            // Any outcome but a panic or a hang is fine: an error, or a
            // dump that says what it could not read.
            match inject::dump::dump_with(&interp, &mem, &o) {
                Ok(d) => {
                    for th in &d.threads {
                        assert!(th.frames.len() <= o.max_depth);
                        hurt += th.truncated.is_some() as usize;
                    }
                    hurt += !d.warnings.is_empty() as usize;
                }
                Err(_) => hurt += 1,
            }
        }
        // The corruption did reach the walk.
        assert!(hurt > 50, "{}: only {hurt} damaged dumps", py.id);
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "{}: too slow",
            py.id
        );
        // Uncorrupted, the same reader gives the right dump.
        let mem = Corrupt {
            mem: attach::ProcessMemory::open(t.pid()).unwrap(),
            seed: std::cell::Cell::new(1),
            every: u64::MAX,
        };
        let d = inject::dump::dump_with(&interp, &mem, &o).unwrap();
        check(&py, &t, &d);
    }
}

/// Debian's stripped python3.11 and the embedding program with symbols from
/// `.dynsym` alone (no debug file): offsets from the 3.11 table, and the
/// stacks still right.
#[test]
fn stripped_builds_with_dynsym_only() {
    let only_dynsym = symbols::DiscoverOptions {
        debug_dirs: Vec::new(),
        use_debuglink: false,
        debuginfod: None,
    };
    for py in pythons()
        .into_iter()
        .filter(|p| p.kind != PythonKind::Pyenv)
    {
        let t = Target::python(&py, "dump_target.py", &["mixed"]);
        let interp = symbols::discover(t.pid(), &only_dynsym).unwrap();
        assert!(
            interp.symbol("take_gil").is_none(),
            "{}: a static symbol resolved without debug info",
            py.id
        );
        // Wait until the target has parked where it says (see dump_parked),
        // then read it with the stripped symbols.
        dump_parked(&py, &t, &opts());
        let mem = attach::ProcessMemory::open(t.pid()).unwrap();
        let d = inject::dump::dump_with(
            &interp,
            &mem,
            &DumpOptions {
                freeze: false,
                ..opts()
            },
        )
        .unwrap_or_else(|e| panic!("{}: {e}", py.id));
        check(&py, &t, &d);
    }
}
