//! ProcessMemory on a running process, without ptrace.

mod common;

use attach::{Error, ProcessMemory};

#[test]
fn reads_and_writes_a_running_process() {
    let Some(t) = common::start("busy", &[]) else {
        return;
    };
    let mem = ProcessMemory::open(t.pid()).unwrap();
    let msg = common::field(&t, "message");
    let text = b"pyattach fixture message: do no harm";
    assert_eq!(mem.read_vec(msg, text.len()).unwrap(), text);

    // Batched: the message, the buffer and the counter in one call.
    let buf = common::field(&t, "buf");
    let counter = common::field(&t, "counter");
    let (mut a, mut b, mut c) = ([0u8; 8], [0u8; 8], [0u8; 8]);
    mem.read_many(&mut [(msg, &mut a[..]), (buf, &mut b[..]), (counter, &mut c[..])])
        .unwrap();
    assert_eq!(&a, b"pyattach");
    assert_eq!(&b, b"writable");

    mem.write(buf, b"changed!").unwrap();
    assert_eq!(mem.read_vec(buf, 8).unwrap(), b"changed!");
    assert!(common::keeps_counting(t.pid(), counter, 10));
}

#[test]
fn unmapped_reads_name_the_address() {
    let Some(t) = common::start("busy", &[]) else {
        return;
    };
    let mem = ProcessMemory::open(t.pid()).unwrap();
    let mut buf = [0u8; 16];
    match mem.read(0x10, &mut buf) {
        Err(Error::BadAddress { addr: 0x10, .. }) => {}
        other => panic!("expected BadAddress at 0x10, got {other:?}"),
    }
    // A batch whose second range is bad: the error names that range.
    let buf_addr = common::field(&t, "buf");
    let (mut a, mut b) = ([0u8; 8], [0u8; 8]);
    match mem.read_many(&mut [(buf_addr, &mut a[..]), (0x20, &mut b[..])]) {
        Err(Error::BadAddress { addr: 0x20, .. }) => {}
        other => panic!("expected BadAddress at 0x20, got {other:?}"),
    }
    assert_eq!(&a, b"writable");
}

#[test]
fn vanished_process_is_reported() {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id() as i32;
    child.wait().unwrap();
    match ProcessMemory::open(pid) {
        Err(Error::NoSuchProcess { .. }) => {}
        other => panic!("expected NoSuchProcess, got {other:?}"),
    }
}

#[test]
fn proc_mem_fallback_reads_and_writes() {
    let Some(t) = common::start("busy", &[]) else {
        return;
    };
    let mem = ProcessMemory::open(t.pid()).unwrap().proc_mem_only();
    let msg = common::field(&t, "message");
    let buf = common::field(&t, "buf");
    let (mut a, mut b) = ([0u8; 8], [0u8; 8]);
    mem.read_many(&mut [(msg, &mut a[..]), (buf, &mut b[..])])
        .unwrap();
    assert_eq!(&a, b"pyattach");
    assert_eq!(&b, b"writable");
    mem.write(buf, b"via-proc").unwrap();
    assert_eq!(mem.read_vec(buf, 8).unwrap(), b"via-proc");
    match mem.read(0x10, &mut a) {
        Err(Error::BadAddress { addr: 0x10, .. }) => {}
        other => panic!("expected BadAddress, got {other:?}"),
    }
}
