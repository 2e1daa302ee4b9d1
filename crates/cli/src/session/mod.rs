//! The client side of a session with the bootstrap: output of the code
//! streamed to this terminal as it comes, lines read here when the target
//! asks for one (the REPL's prompt, `input()`, pdb), Tab completion asked
//! of the target, and Ctrl-C forwarded as KeyboardInterrupt.

mod input;
mod lost;

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use inject::run::{Channel, FromTarget, ToTarget};

use input::{Input, Line};
pub use lost::{Lost, EXIT_CODE_LOST};

enum Event {
    Msg(FromTarget),
    Closed(Option<std::io::Error>),
}

/// What the session's code is doing, for Ctrl-C.
#[derive(Default)]
struct Running {
    /// The thread running the code (as the target numbers it), 0 if none.
    tid: AtomicI32,
    /// Bumped each time code starts or stops.
    generation: AtomicU64,
    /// The target waits for a line typed here (pdb, input()): a Ctrl-C
    /// then only cancels the line.
    asking: AtomicBool,
    /// The session is over: no more cutting calls short.
    closed: AtomicBool,
}

/// Held while a blocking call is being cut short: one at a time, and the
/// session waits for it before pyattach goes on to its own clean-up.
static UNBLOCKING: Mutex<()> = Mutex::new(());

/// The thread that last ran the session's code (its tid), for `-v`.
pub static CODE_TID: AtomicI32 = AtomicI32::new(0);

/// The injection's pages while a session runs: taken back by whoever ends
/// it, the session's own thread or the thread that handles SIGTERM and
/// SIGHUP (held while they are being taken back, so pyattach never exits
/// in the middle of it).
pub type Pages = Arc<Mutex<Option<inject::run::Leftover>>>;

/// How long the injection's pages are waited for: until the target's end
/// of the session has returned through them.
pub const PAGES_WAIT: Duration = Duration::from_millis(500);

/// Held by the thread that handles SIGTERM and SIGHUP from the moment one
/// arrives until it exits the process; [`LEAVING_SIG`] says which.
static LEAVING: Mutex<()> = Mutex::new(());
static LEAVING_SIG: AtomicI32 = AtomicI32::new(0);

/// Once the session is over: if it ended because pyattach was asked to
/// leave, waits for the thread handling that (it takes the pages back and
/// exits with 128+N), so that no other ending is reported meanwhile.
pub fn await_leaving() {
    if LEAVING_SIG.load(Ordering::SeqCst) != 0 {
        let _wait = LEAVING.lock();
    }
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The code finished (or the REPL was left).
    Done,
    /// The `--run` code raised.
    Raised,
    /// The `--run` code was still running at its deadline; `stopped` if
    /// KeyboardInterrupt then ended it.
    TimedOut { stopped: bool },
}

/// True for `--run` code that only opens pdb where it runs (`breakpoint()`,
/// `import pdb; pdb.set_trace()`): that is the pdb session (`--pdb`), which
/// stops in the target's own frame and lasts as long as the debugger is
/// active, rather than code run to its end with pdb's trace function left
/// behind in the target.
pub fn starts_pdb(code: &str) -> bool {
    let bare: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    let bare = bare.trim_end_matches(';');
    [
        "breakpoint()",
        "importpdb;pdb.set_trace()",
        "__import__('pdb').set_trace()",
        "__import__(\"pdb\").set_trace()",
    ]
    .contains(&bare)
}

/// After the deadline, how long the code gets to stop on its
/// KeyboardInterrupt (blocking calls cut short included) before pyattach
/// leaves without it.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Runs the session with the target until the target closes the
/// channel, or, for `--run` code given a `deadline`, until then: the code
/// is stopped as Ctrl-C would.
pub fn drive(
    channel: Channel,
    repl: bool,
    target: Arc<inject::Target>,
    deadline: Option<Instant>,
    pages: Pages,
) -> anyhow::Result<End> {
    let pid = target.leader();
    let writer = Arc::new(Mutex::new(
        channel.try_clone().context("duplicating the channel")?,
    ));
    // Bounded: when this terminal is slower than the target's output, the
    // reader stops reading and the socket applies back-pressure: at 256
    // messages, or once more than QUEUED_MAX bytes wait (output comes in
    // pieces of 256 KiB, other frames are at most 8 MiB), whatever the
    // target sends. Completions come only when asked for: 4 at most.
    let (ev_tx, ev_rx) = mpsc::sync_channel(256);
    let (comp_tx, comp_rx) = mpsc::sync_channel(4);
    let queued = Arc::new(AtomicUsize::new(0));
    spawn_reader(channel, ev_tx, comp_tx, queued.clone());
    let running = Arc::new(Running::default());
    forward_signals(writer.clone(), running.clone(), target.clone(), pages)?;

    let tty = std::io::stdin().is_terminal();
    let mut input = Input::new(tty, repl, writer.clone(), comp_rx);
    let mut stdout = std::io::stdout().lock();
    let mut partial = String::new();
    let mut finished = None;
    // Past the deadline: when the code must have stopped.
    let mut grace: Option<Instant> = None;
    loop {
        // (Code that finished in time only has its session to close.)
        let wake = grace.or(deadline.filter(|_| finished.is_none()));
        let ev = match wake {
            Some(at) => match ev_rx.recv_timeout(at.saturating_duration_since(Instant::now())) {
                Ok(ev) => ev,
                Err(mpsc::RecvTimeoutError::Disconnected) => Event::Closed(None),
                Err(mpsc::RecvTimeoutError::Timeout) if grace.is_none() => {
                    grace = Some(Instant::now() + STOP_GRACE);
                    interrupt(&writer, &running, &target);
                    continue;
                }
                // It did not stop (a long computation in C): leave it.
                Err(mpsc::RecvTimeoutError::Timeout) => break,
            },
            None => ev_rx.recv().unwrap_or(Event::Closed(None)),
        };
        if let Event::Msg(m) = &ev {
            queued.fetch_sub(queued_size(m), Ordering::SeqCst);
        }
        match ev {
            Event::Msg(FromTarget::Stdout(b)) => {
                let text = String::from_utf8_lossy(&b);
                match text.rfind('\n') {
                    Some(i) => partial = text[i + 1..].to_string(),
                    None => partial.push_str(&text),
                }
                keep_tail(&mut partial, PROMPT_MAX);
                write_out(&mut stdout, &crate::term::output(&b))?;
            }
            Event::Msg(FromTarget::Stderr(b)) => {
                stdout.flush().ok();
                let mut err = std::io::stderr().lock();
                let _ = err.write_all(&crate::term::output(&b));
                let _ = err.flush();
            }
            Event::Msg(FromTarget::Stacks(s)) => {
                // Thread and file names of the target's: escaped.
                let s = crate::term::text(&s);
                if tty {
                    write_out(&mut stdout, s.as_bytes())?;
                } else {
                    eprint!("{s}");
                }
            }
            Event::Msg(FromTarget::WantLine(prompt)) => {
                // pdb and input() print their prompt themselves: it is the
                // partial line on screen; the REPL sends its prompt here.
                let (prompt, echoed) = if prompt.is_empty() {
                    (std::mem::take(&mut partial), true)
                } else {
                    (prompt, false)
                };
                stdout.flush().ok();
                running.asking.store(true, Ordering::SeqCst);
                let reply = match input.read(&prompt, echoed) {
                    Line::Text(l) => ToTarget::Line(l),
                    Line::Interrupted => ToTarget::Interrupt,
                    Line::Eof => ToTarget::Eof,
                };
                running.asking.store(false, Ordering::SeqCst);
                partial.clear();
                if writer.lock().unwrap().send(&reply).is_err() {
                    break;
                }
            }
            Event::Msg(FromTarget::Finished { raised }) => {
                finished = Some(raised);
                // The last frame of code or pdb: the session is over, and
                // waiting for the target to close its end would wait for
                // its thread to take the GIL once more (a switch interval
                // where the application runs Python).
                if !repl {
                    break;
                }
            }
            Event::Msg(FromTarget::Failed(why)) => {
                anyhow::bail!("the target could not run the session: {why}")
            }
            Event::Msg(FromTarget::Executing(tid)) => {
                if let Some(t) = tid {
                    CODE_TID.store(t, Ordering::SeqCst);
                }
                running.tid.store(tid.unwrap_or(0), Ordering::SeqCst);
                running.generation.fetch_add(1, Ordering::SeqCst);
            }
            Event::Msg(FromTarget::Blocked(tid)) => unblock_other(tid, &target),
            Event::Msg(FromTarget::Hello { .. } | FromTarget::Completions(_)) => {}
            Event::Closed(err) => {
                stdout.flush().ok();
                if repl && finished.is_none() {
                    input.save_history();
                    return Err(Lost::new(pid, err.as_ref()).into());
                }
                if let Some(e) = err {
                    if finished.is_none() && !repl {
                        return Err(e).context("the channel to the target broke");
                    }
                }
                break;
            }
        }
    }
    running.closed.store(true, Ordering::SeqCst);
    queued.store(0, Ordering::SeqCst);
    drop(UNBLOCKING.lock());
    input.save_history();
    stdout.flush().ok();
    if grace.is_some() {
        return Ok(End::TimedOut {
            stopped: finished.is_some(),
        });
    }
    if !repl && finished.is_none() {
        anyhow::bail!("the target closed the session before the code (or pdb) finished");
    }
    if repl && finished.is_none() {
        // A line could not be sent: the channel is gone.
        return Err(Lost::new(pid, None).into());
    }
    Ok(if finished == Some(true) {
        End::Raised
    } else {
        End::Done
    })
}

/// What Ctrl-C does to the running code: KeyboardInterrupt, and its
/// blocking call cut short if it sits in one.
fn interrupt(writer: &Mutex<Channel>, running: &Arc<Running>, target: &Arc<inject::Target>) {
    let _ = writer.lock().unwrap().send(&ToTarget::Interrupt);
    unblock_later(running, target);
}

/// Another session's code, KeyboardInterrupt pending in thread `tid` (a
/// manhole connection `--stop` ends): its blocking call cut short, in a
/// thread of its own while the target waits for it. Failures only leave
/// the code blocked, which the target reports. At most [`UNBLOCK_MAX`]
/// wait their turn: a hostile target's flood of such frames is dropped.
fn unblock_other(tid: i32, target: &Arc<inject::Target>) {
    static WAITING: AtomicUsize = AtomicUsize::new(0);
    if WAITING.fetch_add(1, Ordering::SeqCst) >= UNBLOCK_MAX {
        WAITING.fetch_sub(1, Ordering::SeqCst);
        return;
    }
    let target = target.clone();
    std::thread::spawn(move || {
        if let Ok(_one) = UNBLOCKING.lock() {
            let _ = inject::run::interrupt_blocked(&target, tid, Duration::from_secs(2));
        }
        WAITING.fetch_sub(1, Ordering::SeqCst);
    });
}

/// How many blocked threads of other sessions pyattach cuts short at once
/// (`manhole --stop` with that many connections running code).
const UNBLOCK_MAX: usize = 64;

/// The KeyboardInterrupt just sent is raised between bytecodes: if the
/// code is still running a moment later, it is probably blocked in a
/// system call (`time.sleep`, a read, a lock), which pyattach then cuts
/// short so that the exception is raised there, as Ctrl-C does in a main
/// thread. One at a time; failures only leave the code blocked (say so).
fn unblock_later(running: &Arc<Running>, target: &Arc<inject::Target>) {
    let (tid, generation) = (
        running.tid.load(Ordering::SeqCst),
        running.generation.load(Ordering::SeqCst),
    );
    if tid == 0 || running.asking.load(Ordering::SeqCst) {
        return;
    }
    let running = running.clone();
    let target = target.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(250));
        let Ok(_one) = UNBLOCKING.try_lock() else {
            return;
        };
        if running.generation.load(Ordering::SeqCst) != generation
            || running.asking.load(Ordering::SeqCst)
            || running.closed.load(Ordering::SeqCst)
        {
            return;
        }
        let why = match inject::run::interrupt_blocked(&target, tid, Duration::from_secs(2)) {
            Err(e) => format!("{:#}", anyhow::Error::from(e)),
            // Cut short, but it went back to waiting without a hooked check.
            Ok(inject::run::Unblocked::Missed) => "it went back to waiting".into(),
            Ok(inject::run::Unblocked::Unproved(why)) => {
                format!("it is not known to be safe to cut short ({why})")
            }
            Ok(_) => return,
        };
        eprintln!(
            "pyattach: could not cut the code's blocking call short: {why}; \
             the KeyboardInterrupt is raised when the call returns (Ctrl-C again to retry)"
        );
    });
}

/// The longest prompt kept from the output's last line (pdb's and input()'s
/// prompts are that line); output without newlines must not pile up here.
const PROMPT_MAX: usize = 4096;

/// Cuts `s` to at most its last `max` bytes, at a character boundary.
fn keep_tail(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = s.len() - max;
        while !s.is_char_boundary(cut) {
            cut += 1;
        }
        s.drain(..cut);
    }
}

/// Writes to stdout; a closed pipe (`pyattach ... | head`) is not an error
/// worth a message, but the session ends.
fn write_out(out: &mut impl Write, b: &[u8]) -> anyhow::Result<()> {
    match out.write_all(b).and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => Err(e).context("writing to stdout"),
    }
}

/// Most bytes of messages the reader queues before it waits for the
/// session to take them.
const QUEUED_MAX: usize = 16 << 20;

/// What a message holds in memory while queued.
fn queued_size(m: &FromTarget) -> usize {
    match m {
        FromTarget::Stdout(b) | FromTarget::Stderr(b) => b.len(),
        FromTarget::Stacks(s) | FromTarget::WantLine(s) | FromTarget::Failed(s) => s.len(),
        _ => 0,
    }
}

fn spawn_reader(
    mut channel: Channel,
    ev_tx: mpsc::SyncSender<Event>,
    comp_tx: mpsc::SyncSender<Vec<String>>,
    queued: Arc<AtomicUsize>,
) {
    std::thread::spawn(move || loop {
        match channel.recv() {
            Ok(Some(FromTarget::Completions(c))) => {
                if comp_tx.send(c).is_err() {
                    return;
                }
            }
            Ok(Some(m)) => {
                // A flood the terminal cannot take: wait (the session
                // zeroes the count when it ends, so this never outlives it).
                while queued.load(Ordering::SeqCst) > QUEUED_MAX {
                    std::thread::sleep(Duration::from_millis(1));
                }
                queued.fetch_add(queued_size(&m), Ordering::SeqCst);
                if ev_tx.send(Event::Msg(m)).is_err() {
                    return;
                }
            }
            Ok(None) => {
                let _ = ev_tx.send(Event::Closed(None));
                return;
            }
            Err(e) => {
                let _ = ev_tx.send(Event::Closed(Some(e)));
                return;
            }
        }
    });
}

/// Ctrl-C while the target runs the code becomes KeyboardInterrupt there;
/// SIGTERM and SIGHUP end the session: its code stopped, the channel
/// closed (which ends the session in the target), the injection's pages
/// taken back, then pyattach exits with 128+N.
fn forward_signals(
    writer: Arc<Mutex<Channel>>,
    running: Arc<Running>,
    target: Arc<inject::Target>,
    pages: Pages,
) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals =
        signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]).context("signals")?;
    std::thread::spawn(move || {
        for sig in signals.forever() {
            if sig == SIGINT {
                // Meant for the code, not for pyattach's own work.
                attach::forget_exit_request(attach::Signal::SIGINT);
                interrupt(&writer, &running, &target);
            } else {
                let _leaving = LEAVING.lock();
                LEAVING_SIG.store(sig, Ordering::SeqCst);
                // Handled here: it must not abort this last work on the
                // target.
                if let Ok(s) = attach::Signal::try_from(sig) {
                    attach::forget_exit_request(s);
                }
                // Leaving: the bootstrap stops the code when the channel
                // closes, but code blocked in a system call must be cut
                // short first, while pyattach is still here to do it.
                let tid = running.tid.load(Ordering::SeqCst);
                if tid != 0 {
                    let _one = UNBLOCKING.lock();
                    let _ = writer.lock().unwrap().send(&ToTarget::Interrupt);
                    let _ = inject::run::interrupt_blocked(&target, tid, Duration::from_secs(1));
                }
                running.closed.store(true, Ordering::SeqCst);
                writer.lock().unwrap().shutdown();
                let mut slot = pages.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(l) = slot.take() {
                    let _ = l.remove(PAGES_WAIT);
                }
                std::process::exit(128 + sig);
            }
        }
    });
    // Give the handler thread a moment to be in place before the code
    // starts producing output (a Ctrl-C typed at once still counts).
    std::thread::sleep(Duration::from_millis(0));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::starts_pdb;

    #[test]
    fn only_code_that_just_opens_pdb_is_a_pdb_session() {
        for c in [
            "breakpoint()",
            " breakpoint( )\n",
            "import pdb; pdb.set_trace()",
            "import pdb;pdb.set_trace();",
            "__import__('pdb').set_trace()",
        ] {
            assert!(starts_pdb(c), "{c:?}");
        }
        for c in ["x = 1; breakpoint()", "print(1)", "breakpoint", ""] {
            assert!(!starts_pdb(c), "{c:?}");
        }
    }
}
