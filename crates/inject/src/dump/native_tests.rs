//! Stepping out of PLT stubs, on real libpythons (3.8–3.10, whose frames
//! call `_PyTrash_begin` or `_Py_Dealloc` through `.plt`), without waiting for a sample to
//! land in one: a thread parked in `time.sleep` is stopped, its innermost
//! frame is stepped out of with the CFI (registers `caller`, whose stack
//! pointer is that frame's CFA, with the return address just below it),
//! and the registers a stub called from there would have are made: same
//! callee-saved registers, the pc in the stub, the stack pointer on the
//! return address (and below what the stub pushed). Unwinding from there
//! must give the stub, then exactly the frames of the real unwind.

use super::*;
use testsupport::{pythons, PythonKind, Target};

#[test]
fn plt_cfa_follows_the_stub_layouts() {
    let lazy = PltSection {
        start: 0x1000,
        end: 0x2000,
        kind: PltKind::Lazy,
    };
    // PLT0: the index pushed by the entry, then `push GOT+8` (6 bytes).
    assert_eq!(plt_cfa(&lazy, 0x1000, 0x100), 0x110);
    assert_eq!(plt_cfa(&lazy, 0x1006, 0x100), 0x118);
    // An entry: `jmp *slot` (6), `push n` (5), `jmp PLT0`.
    assert_eq!(plt_cfa(&lazy, 0x1010, 0x100), 0x108);
    assert_eq!(plt_cfa(&lazy, 0x1016, 0x100), 0x108);
    assert_eq!(plt_cfa(&lazy, 0x101b, 0x100), 0x110);
    let ibt = PltSection {
        kind: PltKind::LazyIbt,
        ..lazy
    };
    // `endbr64` (4), `push n` (5), `bnd jmp PLT0`.
    assert_eq!(plt_cfa(&ibt, 0x1014, 0x100), 0x108);
    assert_eq!(plt_cfa(&ibt, 0x1019, 0x100), 0x110);
    let jump = PltSection {
        kind: PltKind::Jump,
        ..lazy
    };
    assert_eq!(plt_cfa(&jump, 0x1008, 0x100), 0x108);
}

#[test]
fn a_thread_in_a_plt_stub_unwinds_to_its_caller_and_on() {
    let matrix: Vec<_> = pythons()
        .into_iter()
        .filter(|p| p.kind == PythonKind::Pyenv && p.version.0 == 3)
        .filter(|p| (8..=10).contains(&p.version.1))
        .collect();
    if matrix.is_empty() {
        eprintln!("NOTE: skipping: no pyenv Python 3.8-3.10 on this machine");
    }
    for py in &matrix {
        let t = Target::python(py, "dump_target.py", &["recurse", "20"]);
        let target = crate::Target::open(t.pid(), &Default::default()).unwrap();
        let interp = target.interpreter();
        let libpython = interp.module.clone();
        let plt = PltNames::of(interp, &libpython);
        // 3.8 has no `_PyTrash_begin`; every version calls `_Py_Dealloc`.
        let name = if py.version.1 == 8 {
            "_Py_Dealloc@plt"
        } else {
            "_PyTrash_begin@plt"
        };
        let (&stub, _) = plt
            .names
            .iter()
            .find(|(_, n)| *n == name)
            .unwrap_or_else(|| panic!("{}: no {name}", py.id));
        let plt0 = plt.sections.iter().find(|s| s.2 == 16).unwrap().0;
        let stopped = attach::freeze(t.pid()).unwrap();
        let regs = Regs::from_thread(&stopped.regs(t.pid()).unwrap());
        let r = Reader::new(stopped.memory());
        let u = Unwinder::new(interp);
        let real = u.unwind(&r, regs);
        assert!(real.len() > 40, "{}: {real:x?}", py.id);
        let caller = u.step(&r, &regs, true).unwrap();
        let cfa = caller.r[RSP as usize];
        // (pc in the stub, words the stub pushed)
        for (pc, pushed) in [(stub, 0), (stub + 6, 0), (stub + 11, 1), (plt0 + 6, 2)] {
            let mut at = caller;
            at.r[RA as usize] = pc;
            at.r[RSP as usize] = cfa - 8 - 8 * pushed;
            // ld's CFI describes the stubs (an expression for the entries).
            let c = u.cfi_for(&libpython).unwrap();
            let rule = u.rule(&c, pc).expect("CFI for the PLT");
            let by_cfi = match &rule.cfa {
                Cfa::Expression(e) => eval_cfa(e, &at, &r),
                Cfa::Register(reg, off) => Some(at.r[*reg as usize].wrapping_add(*off as u64)),
            };
            assert_eq!(by_cfi, Some(cfa), "{}: stub at +{:#x}", py.id, pc - stub);
            let got = u.unwind(&r, at);
            assert_eq!(got[0], pc);
            assert_eq!(
                &got[1..],
                &real[1..],
                "{}: stub at +{:#x}",
                py.id,
                pc - stub
            );
            // Without CFI for libpython, the layout of the stubs gives the
            // same first step.
            let bare = Unwinder::only(interp, |m| *m == libpython);
            let c = bare.cfi_for(&libpython).unwrap();
            bare.cfi.borrow_mut().insert(
                libpython.path.clone(),
                Some(Rc::new(Cfi {
                    eh: None,
                    bases: c.bases.clone(),
                    bias: c.bias,
                    plt: c.plt.clone(),
                })),
            );
            let want = [pc, real[1]];
            assert_eq!(bare.unwind_n(&r, at, 2), want, "{}: no CFI", py.id);
        }
        drop(stopped);
        let lines = Lines::new(interp);
        let s = symbolize(interp, &lines, stub + 6, true);
        assert_eq!(s.name.as_deref(), Some(name), "{}", py.id);
        assert!(t.is_alive(), "{}: the target died", py.id);
    }
}
