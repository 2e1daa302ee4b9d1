//! A process whose main thread called `pthread_exit` while its workers run
//! on is alive, though the kernel shows it as a zombie (its main thread
//! is one): `dump`, `--run` and `info` reach it through a thread that runs.

use std::time::Duration;

use testsupport::{pythons, Target};

#[test]
fn dump_and_run_reach_a_process_whose_main_thread_exited() {
    for py in pythons() {
        let t = Target::python(&py, "main_exits.py", &[]);
        let pid = t.pid();
        let end = std::time::Instant::now() + Duration::from_secs(10);
        while testsupport::thread_states(pid)
            .iter()
            .all(|&(tid, s)| tid != pid || s != 'Z')
        {
            assert!(
                std::time::Instant::now() < end,
                "{}: main thread still there",
                py.id
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let p = pid.to_string();
        let out = testsupport::pyattach_output(&["dump", &p], b"", Duration::from_secs(60));
        let text = String::from_utf8_lossy(&out.stdout);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{}: dump: {err}", py.id);
        assert!(
            text.contains(&format!("Process {pid}:")),
            "{}: {text}",
            py.id
        );
        assert!(
            text.contains("work (") && text.contains("<module>"),
            "{}: {text}",
            py.id
        );
        let out = testsupport::pyattach_output(
            &["--run", "print(6 * 7)", &p],
            b"",
            Duration::from_secs(60),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{}: --run: {err}", py.id);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "42\n", "{}", py.id);
        let out = testsupport::pyattach_output(&["info", &p], b"", Duration::from_secs(60));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{}: info: {err}", py.id);
        assert!(t.ticks_on(3), "{}: the worker stopped", py.id);
    }
}
