//! The client side of a session with the bootstrap: output of the code
//! streamed to this terminal as it comes, lines read here when the target
//! asks for one (the REPL's prompt, `input()`, pdb), Tab completion asked
//! of the target, and Ctrl-C forwarded as KeyboardInterrupt.

mod input;

use std::io::{IsTerminal, Write};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use inject::run::{Channel, FromTarget, ToTarget};

use input::{Input, Line};

enum Event {
    Msg(FromTarget),
    Closed(Option<std::io::Error>),
}

/// Runs the session until the target closes the channel. Returns true if
/// `--run` code raised.
pub fn drive(channel: Channel, repl: bool) -> anyhow::Result<bool> {
    let writer = Arc::new(Mutex::new(
        channel.try_clone().context("duplicating the channel")?,
    ));
    // Bounded: when this terminal is slower than the target's output, the
    // reader stops reading and the socket applies back-pressure.
    let (ev_tx, ev_rx) = mpsc::sync_channel(256);
    let (comp_tx, comp_rx) = mpsc::channel();
    spawn_reader(channel, ev_tx, comp_tx);
    forward_signals(writer.clone())?;

    let tty = std::io::stdin().is_terminal();
    let mut input = Input::new(tty, repl, writer.clone(), comp_rx);
    let mut stdout = std::io::stdout().lock();
    let mut partial = String::new();
    let mut finished = None;
    loop {
        let ev = ev_rx.recv().unwrap_or(Event::Closed(None));
        match ev {
            Event::Msg(FromTarget::Stdout(b)) => {
                let text = String::from_utf8_lossy(&b);
                match text.rfind('\n') {
                    Some(i) => partial = text[i + 1..].to_string(),
                    None => partial.push_str(&text),
                }
                keep_tail(&mut partial, PROMPT_MAX);
                write_out(&mut stdout, &b)?;
            }
            Event::Msg(FromTarget::Stderr(b)) => {
                stdout.flush().ok();
                let mut err = std::io::stderr().lock();
                let _ = err.write_all(&b);
                let _ = err.flush();
            }
            Event::Msg(FromTarget::Stacks(s)) => {
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
                let reply = match input.read(&prompt, echoed) {
                    Line::Text(l) => ToTarget::Line(l),
                    Line::Interrupted => ToTarget::Interrupt,
                    Line::Eof => ToTarget::Eof,
                };
                partial.clear();
                if writer.lock().unwrap().send(&reply).is_err() {
                    break;
                }
            }
            Event::Msg(FromTarget::Finished { raised }) => finished = Some(raised),
            Event::Msg(FromTarget::Hello { .. } | FromTarget::Completions(_)) => {}
            Event::Closed(err) => {
                stdout.flush().ok();
                if let Some(e) = err {
                    if finished.is_none() && !repl {
                        return Err(e).context("the channel to the target broke");
                    }
                }
                break;
            }
        }
    }
    input.save_history();
    stdout.flush().ok();
    if !repl && finished.is_none() {
        anyhow::bail!("the target closed the session before the code finished");
    }
    Ok(finished.unwrap_or(false))
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

fn spawn_reader(
    mut channel: Channel,
    ev_tx: mpsc::SyncSender<Event>,
    comp_tx: mpsc::Sender<Vec<String>>,
) {
    std::thread::spawn(move || loop {
        match channel.recv() {
            Ok(Some(FromTarget::Completions(c))) => {
                let _ = comp_tx.send(c);
            }
            Ok(Some(m)) => {
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
/// SIGTERM and SIGHUP end the session (closing the channel ends it in the
/// target too).
fn forward_signals(writer: Arc<Mutex<Channel>>) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals =
        signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]).context("signals")?;
    std::thread::spawn(move || {
        for sig in signals.forever() {
            if sig == SIGINT {
                let _ = writer.lock().unwrap().send(&ToTarget::Interrupt);
            } else {
                std::process::exit(128 + sig);
            }
        }
    });
    // Give the handler thread a moment to be in place before the code
    // starts producing output (a Ctrl-C typed at once still counts).
    std::thread::sleep(Duration::from_millis(0));
    Ok(())
}
