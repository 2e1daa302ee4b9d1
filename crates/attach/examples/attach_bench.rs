//! Measures what attaching costs a target: how long its threads are held
//! for attach + one remote call + detach, and for a bare freeze + detach
//! (the stack dumper's case), plus the tool's own wall time. Medians of N
//! runs. Used by `scripts/bench.d/attach`.
//!
//! usage: attach_bench PID FUNC_HEX [RUNS]

use std::time::{Duration, Instant};

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() -> attach::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: attach_bench PID FUNC_HEX [RUNS]");
        std::process::exit(2);
    }
    let pid: i32 = args[1].parse().expect("pid");
    let func = u64::from_str_radix(args[2].trim_start_matches("0x"), 16).expect("func");
    let runs: usize = args.get(3).and_then(|r| r.parse().ok()).unwrap_or(50);

    let (mut pause, mut wall, mut freeze_pause, mut freeze_wall) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut threads = 0;
    let mut stop_only = Vec::new();
    for _ in 0..runs {
        let t0 = Instant::now();
        let mut p = attach::Process::attach(pid)?;
        p.prepare_calls()?; // reads memory only; the target runs meanwhile
        let mut s = p.stop_all()?;
        threads = s.threads().len();
        let r = s.call(pid, func, &[1, 2, 3, 4, 5, 6])?;
        assert_eq!(r, 654321);
        pause.push(s.detach()?);
        wall.push(t0.elapsed());

        let t0 = Instant::now();
        let s = attach::freeze(pid)?;
        stop_only.push(s.paused());
        freeze_pause.push(s.detach()?);
        freeze_wall.push(t0.elapsed());
        std::thread::sleep(Duration::from_millis(5));
    }
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "attach + 1 remote call + detach, {threads} threads: target held {:.0} µs (median of {runs}; goal < 1000), tool wall time {:.0} µs",
        us(median(&mut pause)),
        us(median(&mut wall))
    );
    println!(
        "freeze + detach (read-only dump), {threads} threads: target held {:.0} µs, tool wall time {:.0} µs",
        us(median(&mut freeze_pause)),
        us(median(&mut freeze_wall))
    );
    println!(
        "  of which stopping every thread: {:.0} µs",
        us(median(&mut stop_only))
    );
    Ok(())
}
