//! The relocator and the trampolines on byte literals.

use super::*;

#[test]
fn moves_a_typical_prologue_and_reaims_rip_relative_operands() {
    // f3 0f 1e fa  endbr64; 53  push rbx; 48 8b 05 10 00 00 00  mov rax, [rip+0x10]
    let bytes = [
        0xf3, 0x0f, 0x1e, 0xfa, 0x53, 0x48, 0x8b, 0x05, 0x10, 0, 0, 0, 0x90,
    ];
    let r = relocate(0x1000, &bytes).unwrap();
    assert_eq!(r.len, 5);
    let code2 = [0x48, 0x8b, 0x05, 0x10, 0, 0, 0, 0x90];
    let r2 = relocate(0x1000, &code2).unwrap();
    assert_eq!(r2.len, 7);
    assert_eq!(r2.insns[0].2, Some((3, 0x1017)));
    let l = Layout {
        data: 0x10_0000,
        code: 0x10_1000,
        run: 0x5000,
        only_tid: None,
        stacks: None,
        ensure: 0x6000,
        release: 0x7000,
        fast: None,
        keep_error: None,
        signals: None,
        import_lock: None,
    };
    let c = code(&l, &[(0x1000, &r2)]);
    let (bytes, tramps) = (c.bytes, c.tramps);
    assert!(c.thread_fn.is_some() && bytes.len() < 4096);
    assert_eq!(tramps, vec![0x10_1000]);
    // The moved mov still reads 0x1017.
    let pos = bytes
        .windows(3)
        .position(|w| w == [0x48, 0x8b, 0x05])
        .unwrap();
    let disp = i32::from_le_bytes(bytes[pos + 3..pos + 7].try_into().unwrap());
    assert_eq!((0x10_1000 + pos as i64 + 7 + disp as i64) as u64, 0x1017);
}

#[test]
fn moves_calls_and_refuses_other_branches() {
    assert!(matches!(
        relocate(0, &[0xff, 0xd0, 0x90, 0x90, 0x90, 0x90]),
        Err(DetourError::Unmovable(_))
    ));
    // push rbx; xor edi, edi; call rel32: 3.12's PyEval_SaveThread.
    let r = relocate(
        0x2af090,
        &[0x53, 0x31, 0xff, 0xe8, 0xa8, 0x84, 0x02, 0x00, 0x48],
    )
    .unwrap();
    assert_eq!(r.len, 8);
    assert_eq!(r.insns[2].2, Some((1, 0x2d7540)));
    assert!(matches!(
        relocate(0, &[0x74, 0x02, 0x90, 0x90, 0x90, 0x90]),
        Err(DetourError::Unmovable(_))
    ));
    // A short jump that would leave bytes of another path under the
    // patch does not move.
    assert!(matches!(
        relocate(0, &[0xeb, 0x10, 0x90, 0x90, 0x90, 0x90]),
        Err(DetourError::Unmovable(_))
    ));
}

#[test]
fn moves_a_tail_jump_that_ends_the_patch() {
    // endbr64; jmp rel32: Debian 3.13+'s PyEval_ReleaseThread (CET).
    let r = relocate(
        0x74c150,
        &[0xf3, 0x0f, 0x1e, 0xfa, 0xe9, 0x9b, 0xe1, 0xfa, 0xff, 0xcc],
    )
    .unwrap();
    assert_eq!(r.len, 9);
    assert_eq!(r.insns.len(), 2);
    assert_eq!(r.insns[1].1, vec![0xe9, 0, 0, 0, 0]);
    assert_eq!(r.insns[1].2, Some((1, 0x74c159 - 0x51e65)));
    // endbr64; jmp rel8: moved as a jmp rel32 to the same place.
    let r = relocate(0x1000, &[0xf3, 0x0f, 0x1e, 0xfa, 0xeb, 0x10, 0xcc]).unwrap();
    assert_eq!(r.len, 6);
    assert_eq!(r.insns[1].2, Some((1, 0x1016)));
    // A jump first, of five bytes: the whole patch.
    let r = relocate(0, &[0xe9, 0x10, 0, 0, 0, 0x90]).unwrap();
    assert_eq!(r.len, 5);
    assert_eq!(r.insns.len(), 1);
}

#[test]
fn a_code_page_leads_back_to_its_data_pages() {
    let r = relocate(0x1000, &[0x48, 0x8b, 0x05, 0x10, 0, 0, 0, 0x90]).unwrap();
    for (only_tid, stacks, import_lock) in [
        (None, None, None),
        (Some(1234), None, None),
        (Some(1234), Some(0x10_0800), None),
        (None, Some(0x10_0800), Some((0x7000, 0x8000))),
    ] {
        let l = Layout {
            data: 0x10_0000,
            code: 0x10_2000,
            run: 0x5000,
            only_tid,
            stacks,
            ensure: 0,
            release: 0,
            fast: None,
            keep_error: None,
            signals: None,
            import_lock,
        };
        let c = code(&l, &[(0x1000, &r)]);
        assert_eq!(data_of_code_page(l.code, &c.bytes), Some(l.data));
        let mut other = c.bytes.clone();
        other[0] = 0x90;
        assert_eq!(data_of_code_page(l.code, &other), None);
    }
    let d = data(b"x", 42);
    assert_eq!(&d[MAGIC_AT as usize..MAGIC_AT as usize + 8], MAGIC);
    assert_eq!(
        d[DATA_LEN as usize..DATA_LEN as usize + 4],
        4096u32.to_le_bytes()
    );
    assert_eq!(d[OWNER as usize], 42);
}

#[test]
fn entry_patch_is_a_jump_padded_with_int3() {
    let p = entry_patch(0x1000, 0x2000, 7);
    assert_eq!(p, vec![0xe9, 0xfb, 0x0f, 0, 0, 0xcc, 0xcc]);
}
