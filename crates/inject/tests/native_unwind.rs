//! `dump --native` of a busy recursion (tests/fixtures/py/dump_target.py
//! `busy`) on 3.8–3.10, sampled again and again: wherever a sample stops
//! the main thread (in the evaluation loop, in a function it calls, in a
//! PLT stub such as `_PyTrash_begin@plt` between the two), every Python
//! frame is merged at its evaluation-loop frame, and the stack ends at the
//! process's native entry, not at a frame the unwinder could not step out
//! of with the Python frames appended after it.
//!
//! Each sample is checked on its own, whatever instant it caught: nothing
//! depends on timing. `PYATTACH_TEST_NATIVE_SAMPLES` sets the number of
//! samples per interpreter (100 by default; 500 by hand).

use inject::dump::{dump, DumpOptions, FrameKind};
use testsupport::{pythons, PythonKind, Target};

fn is_eval(name: &str) -> bool {
    let base = name.split('.').next().unwrap_or(name);
    base == "_PyEval_EvalFrameDefault" || base == "PyEval_EvalFrameEx"
}

#[test]
fn every_python_frame_of_a_busy_recursion_is_merged_in_every_sample() {
    let samples: usize = std::env::var("PYATTACH_TEST_NATIVE_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let matrix: Vec<_> = pythons()
        .into_iter()
        .filter(|p| p.kind == PythonKind::Pyenv && (8..=10).contains(&p.version.1))
        .filter(|p| p.version.0 == 3)
        .collect();
    if matrix.is_empty() {
        eprintln!("NOTE: skipping: no pyenv Python 3.8-3.10 on this machine");
        return;
    }
    let o = DumpOptions {
        native: true,
        ..DumpOptions::default()
    };
    for py in &matrix {
        let t = Target::python(py, "dump_target.py", &["busy", "20"]);
        let mut in_plt = 0;
        for i in 0..samples {
            let d = dump(t.pid(), &o).unwrap_or_else(|e| panic!("{}: sample {i}: {e}", py.id));
            let main = d
                .threads
                .iter()
                .find(|t| t.is_main)
                .unwrap_or_else(|| panic!("{}: no main thread in {d:#?}", py.id));
            let f = &main.frames;
            let names: Vec<&str> = f.iter().map(|f| f.function.as_str()).collect();
            let python = f.iter().filter(|f| f.kind == FrameKind::Python).count();
            // <module>, main, busy_loop at least, under native frames.
            assert!(python >= 3, "{}: sample {i}: {names:?}", py.id);
            assert!(
                f.last().is_some_and(|f| f.kind == FrameKind::Native),
                "{}: sample {i}: Python frames left after the native stack: {names:?}",
                py.id
            );
            // An evaluation loop caught as it starts or ends a frame runs
            // none: it is inner to every Python frame. Any other one has
            // its Python frame in its place.
            let first_py = f.iter().position(|f| f.kind == FrameKind::Python).unwrap();
            assert!(
                !names[first_py..].iter().any(|n| is_eval(n)),
                "{}: sample {i}: an evaluation loop without its Python frame: {names:?}",
                py.id
            );
            // Nothing unnamed: a frame the unwinder stopped at shows as an
            // address.
            assert!(
                !names.iter().any(|n| n.starts_with("0x")),
                "{}: sample {i}: {names:?}",
                py.id
            );
            if f[0].function.ends_with("@plt") {
                in_plt += 1;
            }
        }
        eprintln!(
            "{}: {samples} samples, {in_plt} stopped in a PLT stub",
            py.id
        );
        assert!(t.is_alive(), "{}: the target died", py.id);
    }
}
